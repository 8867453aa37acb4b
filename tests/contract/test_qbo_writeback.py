"""The QBO writer against the sandbox over loopback HTTP, its calls counted from the ledger."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta

import pytest
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from quickbooks import QuickBooks
from quickbooks.objects.attachable import Attachable
from quickbooks.objects.base import AttachableRef, Ref
from quickbooks.objects.invoice import Invoice

from arsync.connectors.base import Endpoints, Limits, Link, NoteWrite, Writer
from arsync.connectors.quickbooks.connector import QuickBooksConnector
from arsync.errors import EmailCapReached, NoEmailAddress, OutcomeUnknown, PermanentError
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits
from arsync.sandbox.faults import FaultKind
from arsync.sandbox.qbo.model import Company
from arsync.sandbox.qbo.model import Invoice as SandboxInvoice
from tests.contract.qbo_support import (
    CLIENT,
    REDIRECT_URI,
    api_base,
    consent,
    discovery_url,
    redirect_params,
)
from tests.support import session_for

LIMITS = Limits(per_minute=100_000, per_second=10_000, concurrent=10, per_day=None)
SEND = "POST /v3/company/{realmId}/invoice/{id}/send"
BATCH = "POST /v3/company/{realmId}/batch"


class SandboxTokens:
    """Tokens from the sandbox's control plane; a new one when the sandbox refuses the old."""

    def __init__(self, sandbox: Sandbox, realm: str) -> None:
        self.sandbox, self.realm = sandbox, realm
        self.token = sandbox.connect("qbo", realm).access_token

    def access_token(self) -> str:
        return self.token

    def invalidate(self, token: str) -> None:
        self.token = self.sandbox.connect("qbo", self.realm).access_token


@dataclass
class World:
    sandbox: Sandbox
    server: SandboxServer
    realm: str
    connector: QuickBooksConnector

    @property
    def company(self) -> Company:
        return self.sandbox.qbo.company(self.realm)

    def requests(self, endpoint: str | None = None) -> int:
        return self.sandbox.ledger.count(
            platform="qbo", kind="request", tenant=self.realm, endpoint=endpoint
        )

    def count(self, kind: str) -> int:
        return self.sandbox.ledger.count(platform="qbo", kind=kind, tenant=self.realm)

    def invoices(self, n: int, *, emailed: bool | None = None) -> list[SandboxInvoice]:
        found = [
            inv
            for inv in self.company.invoices.values()
            if emailed is None or (inv.delivery_time is not None) is emailed
        ]
        assert len(found) >= n
        return found[:n]


@pytest.fixture
def world(sandbox_factory: Callable[..., Sandbox]) -> Iterator[World]:
    # The clock is frozen, so rate windows never slide: the per-minute limits are raised; the
    # email cap (40 a day) and the batch limit (40 a minute) are Intuit's.
    sandbox = sandbox_factory(qbo=QboLimits(per_second=10_000, per_minute=100_000))
    with SandboxServer(sandbox) as server:
        realm = sandbox.qbo.tenants()[0].tenant_id
        link = Link("harbor", "qbo", realm, Endpoints.sandbox("qbo", server.url).api_base, LIMITS)
        session = session_for(sandbox, "qbo", SandboxTokens(sandbox, realm), LIMITS)
        try:
            yield World(sandbox, server, realm, QuickBooksConnector(link, session))
        finally:
            session.close()


def next_local_midnight(world: World) -> datetime:
    local = world.sandbox.clock.now().astimezone(world.company.tz)
    midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=local.tzinfo)
    return midnight.astimezone(UTC)


def notes_on(invoices: list[SandboxInvoice], tag: str) -> list[NoteWrite]:
    return [
        NoteWrite(str(inv.id), f"arsync: {tag} on {inv.doc_number}", f"{tag}-{inv.id}")
        for inv in invoices
    ]


# -- fresh reads ----------------------------------------------------------------------------------
def test_sixty_invoices_are_read_fresh_in_one_call(world: World) -> None:
    assert isinstance(world.connector, Writer)
    chosen = world.invoices(30, emailed=True) + world.invoices(30, emailed=False)
    before = world.requests()
    fresh = world.connector.fresh([str(inv.id) for inv in chosen] + ["999999"])
    assert world.requests() - before == 1
    assert set(fresh) == {str(inv.id) for inv in chosen}  # the unknown id is absent
    for inv in chosen:
        got = fresh[str(inv.id)]
        assert got.invoice.balance == inv.balance
        assert got.bill_email == inv.bill_email
        if inv.delivery_time is None:
            assert got.delivered_at is None
        else:
            assert got.delivered_at == inv.delivery_time.replace(microsecond=0)
            assert got.invoice.sent is True


# -- email ----------------------------------------------------------------------------------------
def test_an_email_under_a_key_is_sent_once_and_its_evidence_given_twice(world: World) -> None:
    inv = next(i for i in world.invoices(50, emailed=False) if i.bill_email)
    now = world.sandbox.clock.now()
    first = world.connector.email(str(inv.id), key="reminder-1")
    again = world.connector.email(str(inv.id), key="reminder-1")

    assert first is not None and first == again
    assert first.at == now.replace(microsecond=0)
    assert first.to == inv.bill_email
    assert first.evidence.startswith("QuickBooks EmailStatus EmailSent, DeliveryInfo Email at")
    assert world.count("email_sent") == 1
    replays = world.sandbox.ledger.entries(platform="qbo", kind="replayed", tenant=world.realm)
    assert [(e.endpoint, e.idempotency_key) for e in replays] == [(SEND, "reminder-1")]
    trail = world.connector.read_back([str(inv.id)])[str(inv.id)]
    assert trail.emails == (first,) and trail.emails_recorded


def test_after_the_requestid_window_the_same_key_sends_again(world: World) -> None:
    inv = world.invoices(1, emailed=False)[0]
    world.connector.email(str(inv.id), key="reminder-2", send_to="ap@customer.example")
    window = world.sandbox.settings.qbo.requestid_window
    world.sandbox.clock.advance(window - timedelta(minutes=1))
    world.connector.email(str(inv.id), key="reminder-2", send_to="ap@customer.example")
    assert (world.count("email_sent"), world.count("replayed")) == (1, 1)
    world.sandbox.clock.advance(timedelta(minutes=2))
    later = world.connector.email(str(inv.id), key="reminder-2", send_to="ap@customer.example")
    # QBO has forgotten the id: the send is performed again, as a real platform would.
    assert (world.count("email_sent"), world.count("replayed")) == (2, 1)
    assert later is not None and later.at == world.sandbox.clock.now().replace(microsecond=0)


def test_send_to_is_where_the_email_goes(world: World) -> None:
    inv = world.invoices(1, emailed=False)[0]
    found = world.connector.email(str(inv.id), key="r3", send_to="payables@customer.example")
    assert found is not None and found.to == "payables@customer.example"
    [sent] = world.sandbox.ledger.entries(platform="qbo", kind="email_sent")
    assert sent.detail["to"] == "payables@customer.example"
    assert sent.idempotency_key == "r3"


def test_an_invoice_without_an_address_is_no_email_address(world: World) -> None:
    customer = next(c for c in world.company.customers.values() if c.email is None)
    made = world.sandbox.event(
        "qbo", world.realm, {"type": "create_invoice", "customer": customer.id, "amount": "80"}
    )
    assert world.connector.fresh([made["invoice"]])[made["invoice"]].bill_email is None
    with pytest.raises(NoEmailAddress):
        world.connector.email(made["invoice"], key="r4")
    with pytest.raises(NoEmailAddress):
        world.connector.email(made["invoice"], key="r5", send_to="not-an-address")
    assert world.count("email_sent") == 0
    # A refusal is not remembered under its requestid: with an address the same key sends.
    assert world.connector.email(made["invoice"], key="r4", send_to="a@customer.example")
    assert world.count("email_sent") == 1


def test_the_41st_email_of_a_local_day_is_the_cap_and_the_next_day_sends(world: World) -> None:
    cap = world.sandbox.settings.qbo.emails_per_day
    assert cap == 40
    invoices = world.invoices(cap + 2)
    for n, inv in enumerate(invoices[:cap]):
        world.connector.email(str(inv.id), key=f"cap-{n}", send_to="ap@customer.example")
    over = invoices[cap]
    with pytest.raises(EmailCapReached):
        world.connector.email(str(over.id), key="cap-over", send_to="ap@customer.example")
    midnight = next_local_midnight(world)
    world.sandbox.clock.set(midnight - timedelta(minutes=1))
    with pytest.raises(EmailCapReached):
        world.connector.email(str(over.id), key="cap-over", send_to="ap@customer.example")
    assert world.count("email_sent") == cap
    world.sandbox.clock.set(midnight + timedelta(minutes=1))  # a new day where the company is
    found = world.connector.email(str(over.id), key="cap-over", send_to="ap@customer.example")
    assert found is not None and world.count("email_sent") == cap + 1


# -- notes ----------------------------------------------------------------------------------------
def test_45_notes_go_in_two_batches_and_read_back_in_two_calls(world: World) -> None:
    invoices = world.invoices(45)
    syncs = {inv.id: inv.sync for inv in invoices}
    notes = notes_on(invoices, "first-reminder")
    before = world.requests()
    outcomes = world.connector.notes(notes)

    assert world.requests() - before == 2 == world.requests(BATCH)
    assert [o.key for o in outcomes] == [n.key for n in notes]
    assert all(o.written and o.ref for o in outcomes)
    assert world.count("note_added") == 45
    made = list(world.company.attachables.values())
    assert {a.refs[0]["EntityRef"]["value"] for a in made} == {str(i.id) for i in invoices}
    assert all(a.refs[0]["IncludeOnSend"] is False for a in made)
    # the invoices themselves are untouched: no PrivateNote, no memo, no new SyncToken
    assert all(inv.sync == syncs[inv.id] and inv.customer_memo is None for inv in invoices)

    before = world.requests()
    trails = world.connector.read_back([str(inv.id) for inv in invoices])
    assert world.requests() - before == 2
    for note, outcome in zip(notes, outcomes, strict=True):
        [found] = trails[note.invoice_id].notes
        assert (found.text, found.ref) == (note.text, outcome.ref)
        assert found.at == world.sandbox.clock.now().replace(microsecond=0)


def test_a_batch_sent_again_is_replayed_whole(world: World) -> None:
    notes = notes_on(world.invoices(5), "second-reminder")
    first = world.connector.notes(notes)
    again = world.connector.notes(list(reversed(notes)))
    assert world.count("note_added") == 5
    assert world.count("replayed") == 1
    assert {o.key: o.ref for o in first} == {o.key: o.ref for o in again}


def test_a_note_on_a_missing_invoice_is_its_own_refusal(world: World) -> None:
    invoices = world.invoices(2)
    notes = [*notes_on(invoices, "n"), NoteWrite("999999", "arsync: lost", "n-lost")]
    outcomes = world.connector.notes(notes)
    assert [o.written for o in outcomes] == [True, True, False]
    assert isinstance(outcomes[2].error, PermanentError)
    assert world.count("note_added") == 2


def test_a_single_note_is_one_post_under_its_key(world: World) -> None:
    [note] = notes_on(world.invoices(1), "alone")
    [outcome] = world.connector.notes([note])
    assert outcome.written
    request = world.sandbox.ledger.entries(platform="qbo", kind="request", tenant=world.realm)[-1]
    assert request.endpoint == "POST /v3/company/{realmId}/attachable"
    assert request.idempotency_key == note.key


def test_a_lost_batch_reply_is_resent_under_its_requestid_and_replayed(world: World) -> None:
    world.sandbox.faults.add(kind=FaultKind.LOST_REPLY, platform="qbo", endpoint=f"{BATCH}")
    outcomes = world.connector.notes(notes_on(world.invoices(3), "lost-once"))
    assert all(o.written for o in outcomes)
    assert world.count("note_added") == 3 and world.count("replayed") == 1


def test_a_batch_whose_replies_are_all_lost_is_unknown_and_read_back_settles_it(
    world: World,
) -> None:
    invoices = world.invoices(3)
    world.sandbox.faults.add(
        kind=FaultKind.LOST_REPLY, platform="qbo", endpoint=f"{BATCH}", times=None
    )
    notes = notes_on(invoices, "lost")
    with pytest.raises(OutcomeUnknown):
        world.connector.notes(notes)
    assert world.count("note_added") == 3  # performed once, every resend replayed
    trails = world.connector.read_back([n.invoice_id for n in notes])
    assert [t.notes[0].text for t in (trails[n.invoice_id] for n in notes)] == [
        n.text for n in notes
    ]


# -- the official SDK, unmodified -----------------------------------------------------------------
@pytest.fixture
def sdk(world: World, monkeypatch: pytest.MonkeyPatch) -> QuickBooks:
    # requests-oauthlib puts a bearer token on http:// only when told the transport is trusted;
    # the sandbox listens on loopback only.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")
    auth = AuthClient(
        client_id=CLIENT.client_id,
        client_secret=CLIENT.client_secret,
        redirect_uri=REDIRECT_URI,
        environment=discovery_url(world.server),
    )
    params = redirect_params(consent(auth.get_authorization_url([Scopes.ACCOUNTING])))
    auth.get_bearer_token(params["code"], realm_id=params["realmId"])
    qb = QuickBooks(auth_client=auth, company_id=params["realmId"], minorversion=75)
    # The only change to the SDK: its base URLs point at the sandbox.
    qb.api_url_v3 = api_base(world.server) + "/v3"
    qb.sandbox_api_url_v3 = api_base(world.server) + "/v3"
    return qb


def test_the_sdk_notes_and_sends_what_the_connector_reads_back(
    world: World, sdk: QuickBooks
) -> None:
    first, second = [inv for inv in world.invoices(10, emailed=False) if inv.bill_email][:2]
    made = []
    for inv in (first, second):
        note = Attachable()
        ref = AttachableRef()
        ref.EntityRef = Ref()
        ref.EntityRef.type = "Invoice"
        ref.EntityRef.value = str(inv.id)
        ref.IncludeOnSend = False
        note.AttachableRef.append(ref)
        note.Note = f"arsync: note by the SDK on {inv.doc_number}"
        made.append(note.save(qb=sdk))
    found = Attachable.where(
        "AttachableRef.EntityRef.Type = 'Invoice' AND "
        f"AttachableRef.EntityRef.Value IN ('{first.id}', '{second.id}')",
        qb=sdk,
    )
    assert sorted(a.Id for a in found) == sorted(a.Id for a in made)

    sent = Invoice.get(str(first.id), qb=sdk).send(qb=sdk)["Invoice"]
    assert sent["EmailStatus"] == "EmailSent" and sent["DeliveryInfo"]["DeliveryType"] == "Email"

    trails = world.connector.read_back([str(first.id), str(second.id)])
    assert [n.ref for n in trails[str(first.id)].notes] == [made[0].Id]
    assert [n.text for n in trails[str(second.id)].notes] == [made[1].Note]
    [email] = trails[str(first.id)].emails
    assert email.to == first.bill_email
    assert trails[str(second.id)].emails == ()
