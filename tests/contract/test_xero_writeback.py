"""The Xero writer side against the sandbox over loopback HTTP, counted by the sandbox's ledger.

arsync's connector reads invoices fresh, emails them, puts notes into their History, reads the
History back and sets the Expected Date; the sandbox's write fidelity is held to what the
references say (the day's email cap by plan and local day, Details in UTF-16 code units, the
Idempotency-Key's length, reuse and window). The official xero-python SDK, unmodified, makes the
same writes. Every request goes through the OpenAPI gate, and every answer is checked against
Xero's OpenAPI file.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from openapi_core import OpenAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from xero_python.accounting import AccountingApi
from xero_python.accounting.models import (
    HistoryRecord,
    HistoryRecords,
    Invoice,
    Invoices,
    RequestEmpty,
)
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token
from xero_python.exceptions import AccountingBadRequestException

from arsync.connectors.base import Endpoints, Limits, Link, NoteWrite, StaticTokens, Writer
from arsync.connectors.xero.connector import XeroConnector
from arsync.domain import InvoiceStatus
from arsync.errors import EmailCapReached, NoEmailAddress, PermanentError
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import XeroLimits
from arsync.sandbox.xero import state as xstate
from tests.contract import xero_support as xs
from tests.contract.openapi_gate import GATED, OpenApiGate, load_accounting_spec
from tests.contract.test_xero_openapi import check
from tests.support import make_sandbox, session_for

LIMITS = Limits(per_minute=100_000, per_second=None, concurrent=5, per_day=None)
EMOJI = "\N{GRINNING FACE}"  # outside the BMP: two UTF-16 code units


@pytest.fixture(scope="module")
def spec() -> OpenAPI:
    return load_accounting_spec()


@dataclass
class Exchange:
    """One Accounting API request and the answer the sandbox (or the gate) gave it."""

    method: str
    path: str
    query: str
    request_headers: list[tuple[str, str]]
    request_body: bytes
    status: int
    response_headers: list[tuple[str, str]]
    response_body: bytes


class Recorder:
    """ASGI layer keeping every Accounting API exchange whole, to check the answers afterwards."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.exchanges: list[Exchange] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").lower().startswith(GATED):
            await self.app(scope, receive, send)
            return
        sent: list[bytes] = []
        start: dict[str, Any] = {}
        answer: list[bytes] = []

        async def reading() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                sent.append(message.get("body", b""))
            return message

        async def writing(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(status=message["status"], headers=list(message.get("headers", [])))
            elif message["type"] == "http.response.body":
                answer.append(message.get("body", b""))
                if not message.get("more_body", False):
                    # kept before the answer's end is sent: the client, in another thread, may
                    # act on it (and the test check the exchanges) before this coroutine resumes
                    self.exchanges.append(
                        Exchange(
                            method=scope["method"],
                            path=scope["path"],
                            query=scope.get("query_string", b"").decode("latin-1"),
                            request_headers=_text_headers(scope.get("headers", [])),
                            request_body=b"".join(sent),
                            status=int(start["status"]),
                            response_headers=_text_headers(start["headers"]),
                            response_body=b"".join(answer),
                        )
                    )
            await send(message)

        await self.app(scope, reading, writing)


def _text_headers(raw: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(k.decode("latin-1"), v.decode("latin-1")) for k, v in raw]


@dataclass
class Rig:
    """A sandbox behind the OpenAPI gate and the recorder, and arsync's connector on it."""

    sandbox: Sandbox
    server: SandboxServer
    gate: OpenApiGate
    recorder: Recorder
    sessions: list[Any] = field(default_factory=list)

    @property
    def tenant(self) -> str:
        return self.sandbox.xero.tenants()[0].tenant_id

    @property
    def org(self) -> xstate.Organisation:
        return self.sandbox.xero.orgs[self.tenant]

    def connector(self) -> XeroConnector:
        """The connector with a fresh access token (a test that moves the clock by hours
        outlives the 30-minute one), built as the coordinator builds it."""
        api_base = Endpoints.sandbox("xero", self.server.url).api_base
        link = Link("kestrel", "xero", self.tenant, api_base, LIMITS)
        tokens = StaticTokens(self.sandbox.connect("xero", self.tenant).access_token)
        session = session_for(self.sandbox, "xero", tokens, LIMITS)
        self.sessions.append(session)
        return XeroConnector(link, session)

    def event(self, **event: Any) -> dict[str, Any]:
        return self.sandbox.event("xero", self.tenant, event)

    def mark(self) -> int:
        return self.sandbox.ledger.last_seq

    def requests(self, since: int) -> list[str]:
        """The API calls the sandbox answered after `since`, as endpoint templates."""
        entries = self.sandbox.ledger.entries(kind="request", tenant=self.tenant, since_seq=since)
        return [e.endpoint or "" for e in entries]

    def count(self, kind: str, since: int = 0, **filters: Any) -> int:
        return len(
            self.sandbox.ledger.entries(kind=kind, tenant=self.tenant, since_seq=since, **filters)
        )

    def emailable(self, count: int, *, sent: bool | None = None) -> list[xstate.Invoice]:
        """Open sales invoices whose contact has an address."""
        found = [
            i
            for i in self.org.invoice_list
            if i.type == "ACCREC"
            and i.status == "AUTHORISED"
            and i.contact.email
            and (sent is None or i.sent is sent)
        ]
        assert len(found) >= count
        return found[:count]

    def check_answers(self, spec: OpenAPI) -> None:
        """No request refused by the gate, and every answer as Xero's OpenAPI file documents."""
        assert self.gate.refused == [], [(c.method, c.path, c.errors) for c in self.gate.refused]
        assert self.recorder.exchanges
        for exchange in self.recorder.exchanges:
            if exchange.status == 404:
                continue  # Xero's answer for an unknown id, which the file documents nowhere
            url = f"{self.server.url}{exchange.path}" + (
                f"?{exchange.query}" if exchange.query else ""
            )
            request = httpx.Request(
                exchange.method,
                url,
                headers=exchange.request_headers,
                content=exchange.request_body,
            )
            response = httpx.Response(
                exchange.status,
                headers=exchange.response_headers,
                content=exchange.response_body,
                request=request,
            )
            check(spec, response)


@contextmanager
def rig_for(spec: OpenAPI, *, gated: bool = True, **limits: Any) -> Iterator[Rig]:
    """A rig on a sandbox with these XeroLimits. `gated=False` records the exchanges without
    holding the requests to the spec (xero-python sends read-only flags the gate refuses)."""
    # The clock is frozen, so the minute window never slides: lift the limits for many calls.
    settings = XeroLimits(per_minute=100_000, per_day=1_000_000, **limits)
    sandbox = make_sandbox(xero=settings)
    layers: list[Any] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        gate = OpenApiGate(app, spec)
        recorder = Recorder(gate if gated else app)
        layers.extend([gate, recorder])
        return recorder

    with SandboxServer(sandbox, wrap=wrap) as server:
        rig = Rig(sandbox, server, layers[0], layers[1])
        try:
            yield rig
        finally:
            for session in rig.sessions:
                session.close()


@pytest.fixture
def rig(spec: OpenAPI) -> Iterator[Rig]:
    with rig_for(spec) as running:
        yield running


def raw(rig: Rig) -> httpx.Client:
    """A plain HTTP client on the Accounting API, for what arsync's connector will not send."""
    token = rig.sandbox.connect("xero", rig.tenant).access_token
    return httpx.Client(
        base_url=f"{rig.server.urls()['api.xero.com']}/api.xro/2.0",
        headers={
            "Authorization": f"Bearer {token}",
            "xero-tenant-id": rig.tenant,
            "Accept": "application/json",
        },
        timeout=10.0,
    )


# -- the fresh read -------------------------------------------------------------------------------
def test_sixty_invoices_are_read_fresh_in_one_call(rig: Rig, spec: OpenAPI) -> None:
    connector = rig.connector()
    assert isinstance(connector, Writer)
    wanted = [i for i in rig.org.invoice_list if i.type == "ACCREC" and i.status != "DELETED"][:60]
    assert len(wanted) == 60
    since = rig.mark()
    found = connector.fresh([i.invoice_id for i in wanted])
    assert rig.requests(since) == ["GET /api.xro/2.0/Invoices"]
    assert set(found) == {i.invoice_id for i in wanted}
    for inv in wanted:
        fresh = found[inv.invoice_id]
        assert (fresh.invoice.balance, fresh.invoice.sent) == (inv.amount_due, inv.sent)
        assert fresh.bill_email is None and fresh.delivered_at is None
    # An id Xero does not know is left out: the invoice is gone.
    ghost = "00000000-dead-4000-8000-000000000000"
    assert set(connector.fresh([wanted[0].invoice_id, ghost])) == {wanted[0].invoice_id}
    rig.check_answers(spec)


# -- emailing -------------------------------------------------------------------------------------
def test_an_email_repeated_under_its_key_inside_the_window_is_sent_once(
    rig: Rig, spec: OpenAPI
) -> None:
    connector = rig.connector()
    inv = rig.emailable(1, sent=False)[0]
    since = rig.mark()
    sent_at = rig.sandbox.clock.now()
    assert connector.email(inv.invoice_id, key="mail-1") is None
    rig.sandbox.clock.advance(timedelta(minutes=5, seconds=59))
    assert connector.email(inv.invoice_id, key="mail-1") is None
    assert rig.requests(since) == ["POST /api.xro/2.0/Invoices/{InvoiceID}/Email"] * 2
    assert rig.count("email_sent", since) == 1
    assert rig.count("replayed", since, idempotency_key="mail-1") == 1

    # By default the sandbox marks it sent and writes its own record into History.
    assert connector.fresh([inv.invoice_id])[inv.invoice_id].invoice.sent is True
    trail = connector.read_back([inv.invoice_id])[inv.invoice_id]
    recipients = ", ".join(inv.contact.email_recipients())
    assert [(e.to, e.at) for e in trail.emails] == [(recipients, sent_at)]
    assert trail.emails_recorded is False, "Xero's record of an API email is undocumented"
    assert f"This invoice has been sent to {recipients}." in [n.text for n in trail.notes]

    # From the window's end the key is forgotten: the same request is performed again.
    rig.sandbox.clock.advance(timedelta(seconds=1))
    connector.email(inv.invoice_id, key="mail-1")
    assert rig.count("email_sent", since) == 2
    assert rig.count("replayed", since) == 1
    rig.check_answers(spec)


def test_a_window_of_zero_replays_nothing(spec: OpenAPI) -> None:
    with rig_for(spec, idempotency_window=timedelta(0)) as rig:
        connector = rig.connector()
        inv = rig.emailable(1)[0]
        since = rig.mark()
        connector.email(inv.invoice_id, key="mail-1")
        connector.email(inv.invoice_id, key="mail-1")  # the same moment: the clock is frozen
        assert rig.count("email_sent", since) == 2
        assert rig.count("replayed", since) == 0
        rig.check_answers(spec)


def test_what_an_email_leaves_behind_is_a_setting(spec: OpenAPI) -> None:
    with rig_for(spec, email_history=False, email_marks_sent=False) as rig:
        connector = rig.connector()
        inv = rig.emailable(1, sent=False)[0]
        history = len(inv.history())
        connector.email(inv.invoice_id, key="mail-1")
        assert rig.count("email_sent") == 1
        assert connector.fresh([inv.invoice_id])[inv.invoice_id].invoice.sent is False
        trail = connector.read_back([inv.invoice_id])[inv.invoice_id]
        assert trail.emails == () and len(trail.notes) == history
        assert trail.emails_recorded is False
        rig.check_answers(spec)


def test_a_contact_without_an_address_is_no_email_address(rig: Rig, spec: OpenAPI) -> None:
    connector = rig.connector()
    inv = rig.emailable(1)[0]
    rig.event(type="email_change", contact=inv.contact.contact_id, email=None, persons=[])
    with pytest.raises(NoEmailAddress):
        connector.email(inv.invoice_id, key="mail-1")
    draft = next(i for i in rig.org.invoice_list if i.type == "ACCREC" and i.status == "DRAFT")
    with pytest.raises(PermanentError) as refused:
        connector.email(draft.invoice_id, key="mail-2")
    assert type(refused.value) is PermanentError
    assert rig.count("email_sent") == 0
    rig.check_answers(spec)


def test_a_trial_organisation_sends_twenty_a_day_of_its_own(rig: Rig, spec: OpenAPI) -> None:
    # Auckland: the sandbox's start (15:00 UTC) is 04:00 the next morning there, and that
    # local day outlasts the UTC day by eleven hours.
    rig.event(type="organisation", zone="Pacific/Auckland", **{"class": "TRIAL"})
    targets = rig.emailable(22)
    connector = rig.connector()
    for n, inv in enumerate(targets[:20]):
        connector.email(inv.invoice_id, key=f"mail-{n}")
    with pytest.raises(EmailCapReached):
        connector.email(targets[20].invoice_id, key="mail-20")
    assert rig.count("email_sent") == 20

    rig.sandbox.clock.advance(timedelta(hours=9, minutes=30))  # a new UTC day, not a local one
    with pytest.raises(EmailCapReached):
        rig.connector().email(targets[20].invoice_id, key="mail-21")
    rig.sandbox.clock.advance(timedelta(hours=11))  # 00:30 the next local day
    rig.connector().email(targets[20].invoice_id, key="mail-22")
    assert rig.count("email_sent") == 21
    rig.check_answers(spec)


@pytest.mark.parametrize(
    "event", [{"is_demo_company": True}, {"class": "DEMO"}], ids=["IsDemoCompany", "DEMO"]
)
def test_the_demo_company_sends_none(rig: Rig, spec: OpenAPI, event: dict[str, Any]) -> None:
    rig.event(type="organisation", **event)
    with pytest.raises(EmailCapReached):
        rig.connector().email(rig.emailable(1)[0].invoice_id, key="mail-1")
    assert rig.count("email_sent") == 0
    rig.check_answers(spec)


def test_the_caps_by_plan_are_settings() -> None:
    limits = XeroLimits()
    assert [limits.email_cap(c, False) for c in ("STANDARD", "PREMIUM", "TRIAL", "DEMO")] == [
        1000,
        1000,
        20,
        0,
    ]
    assert limits.email_cap("STANDARD", True) == 0
    assert XeroLimits(emails_per_day_trial=5).email_cap("TRIAL", False) == 5
    assert XeroLimits(emails_per_day_paying=None).email_cap("STARTER", False) is None
    assert XeroLimits(emails_per_day=3).email_cap("TRIAL", True) == 3


# -- notes ----------------------------------------------------------------------------------------
def test_notes_are_counted_in_utf16_code_units(rig: Rig, spec: OpenAPI) -> None:
    connector = rig.connector()
    inv = rig.emailable(1)[0]
    since = rig.mark()
    with pytest.raises(ValueError, match="400 UTF-16 code units"):
        connector.notes([NoteWrite(inv.invoice_id, EMOJI * 200, "note-1")])
    assert rig.requests(since) == [], "refused before any call"
    with raw(rig) as client:
        # The sandbox refuses what the connector would: 126 emoji are 252 code units.
        path = f"/Invoices/{inv.invoice_id}/History"
        over = client.put(path, json={"HistoryRecords": [{"Details": EMOJI * 126}]})
        assert over.status_code == 400 and over.json()["ErrorNumber"] == 10
        assert "250" in over.json()["Elements"][0]["ValidationErrors"][0]["Message"]
    outcomes = connector.notes(
        [
            NoteWrite(inv.invoice_id, EMOJI * 125, "note-2"),
            NoteWrite(inv.invoice_id, "Reminder 1 sent [arsync:a1]", "note-3"),
        ]
    )
    assert [(o.key, o.written, o.error) for o in outcomes] == [
        ("note-2", True, None),
        ("note-3", True, None),
    ]
    assert rig.count("note_added", since) == 2
    texts = [n.text for n in connector.read_back([inv.invoice_id])[inv.invoice_id].notes]
    assert EMOJI * 125 in texts and "Reminder 1 sent [arsync:a1]" in texts
    rig.check_answers(spec)


def test_a_note_repeated_under_its_key_is_written_once(rig: Rig, spec: OpenAPI) -> None:
    connector = rig.connector()
    first, second = rig.emailable(2)
    since = rig.mark()
    note = NoteWrite(first.invoice_id, "Reminder 1 sent [arsync:a1]", "note-a1")
    assert connector.notes([note])[0].written
    again = connector.notes([note, NoteWrite(second.invoice_id, "Final notice", "note-a2")])
    assert [o.written for o in again] == [True, True]
    assert rig.requests(since) == ["PUT /api.xro/2.0/Invoices/{InvoiceID}/History"] * 3
    assert rig.count("note_added", since) == 2
    assert rig.count("replayed", since, idempotency_key="note-a1") == 1
    # The same key with another note is refused: that note alone, as its outcome.
    reused = connector.notes([NoteWrite(first.invoice_id, "Something else", "note-a1")])
    assert not reused[0].written and isinstance(reused[0].error, PermanentError)
    assert reused[0].error.status == 400
    texts = [n.text for n in connector.read_back([first.invoice_id])[first.invoice_id].notes]
    assert texts.count("Reminder 1 sent [arsync:a1]") == 1 and "Something else" not in texts
    rig.check_answers(spec)


def test_read_back_leaves_out_an_invoice_xero_does_not_have(rig: Rig, spec: OpenAPI) -> None:
    connector = rig.connector()
    inv = rig.emailable(1)[0]
    ghost = "00000000-dead-4000-8000-000000000000"
    since = rig.mark()
    trails = connector.read_back([inv.invoice_id, ghost])
    assert set(trails) == {inv.invoice_id}
    assert rig.requests(since) == ["GET /api.xro/2.0/Invoices/{InvoiceID}/History"] * 2
    assert [n.text for n in trails[inv.invoice_id].notes] == [e.details for e in inv.history()]
    rig.check_answers(spec)


# -- keys -----------------------------------------------------------------------------------------
def test_a_key_of_129_characters_is_refused(rig: Rig, spec: OpenAPI) -> None:
    connector = rig.connector()
    inv = rig.emailable(1)[0]
    since = rig.mark()
    with pytest.raises(ValueError, match="128"):
        connector.email(inv.invoice_id, key="k" * 129)
    assert rig.requests(since) == []
    with raw(rig) as client:
        path = f"/Invoices/{inv.invoice_id}/Email"
        refused = client.post(path, json={}, headers={"Idempotency-Key": "k" * 129})
        assert refused.status_code == 400 and refused.json()["Type"] == "ValidationException"
    assert rig.count("email_sent") == 0
    connector.email(inv.invoice_id, key="k" * 128)
    assert rig.count("email_sent") == 1
    rig.check_answers(spec)


# -- the expected payment date --------------------------------------------------------------------
def test_the_expected_date_is_set_replayed_under_its_key_and_cleared(
    rig: Rig, spec: OpenAPI
) -> None:
    connector = rig.connector()
    inv = rig.emailable(1)[0]
    since = rig.mark()
    assert connector.expect_payment(inv.invoice_id, date(2026, 12, 20), key="promise-1") is True
    assert inv.expected_payment_date == date(2026, 12, 20)
    fresh = connector.fresh([inv.invoice_id])[inv.invoice_id].invoice
    assert fresh.expected_date == date(2026, 12, 20) and fresh.status is InvoiceStatus.OPEN

    # A bookkeeper moves it; the same write repeated under its key is a replay, not a write.
    rig.event(type="expected_date", invoice=inv.invoice_id, date="2027-01-08")
    assert connector.expect_payment(inv.invoice_id, date(2026, 12, 20), key="promise-1")
    assert inv.expected_payment_date == date(2027, 1, 8)
    assert rig.count("replayed", since, idempotency_key="promise-1") == 1
    # The same key with another date is refused.
    with pytest.raises(PermanentError):
        connector.expect_payment(inv.invoice_id, date(2027, 2, 1), key="promise-1")
    assert inv.expected_payment_date == date(2027, 1, 8)

    assert connector.expect_payment(inv.invoice_id, None, key="promise-2") is True
    assert inv.expected_payment_date is None
    assert connector.fresh([inv.invoice_id])[inv.invoice_id].invoice.expected_date is None
    assert rig.requests(since).count("POST /api.xro/2.0/Invoices/{InvoiceID}") == 4

    paid = next(i for i in rig.org.invoice_list if i.type == "ACCREC" and i.status == "PAID")
    with pytest.raises(PermanentError):
        connector.expect_payment(paid.invoice_id, date(2026, 12, 20), key="promise-3")
    rig.check_answers(spec)


# -- the official SDK -----------------------------------------------------------------------------
def sdk_for(rig: Rig) -> AccountingApi:
    """xero-python's AccountingApi with tokens from the consent page; only its URL is ours."""
    token = xs.connect(rig.server)
    client = ApiClient(
        Configuration(oauth2_token=OAuth2Token(xs.CLIENT.client_id, xs.CLIENT.client_secret)),
        pool_threads=1,
    )
    client.oauth2_token_getter(lambda: dict(token))
    client.oauth2_token_saver(lambda new: token.update(new))
    return AccountingApi(client, base_url=f"{rig.server.urls()['api.xero.com']}/api.xro/2.0")


@pytest.fixture
def ungated(spec: OpenAPI) -> Iterator[Rig]:
    with rig_for(spec, gated=False) as running:
        yield running


def test_the_sdk_writes_the_same_way(ungated: Rig, spec: OpenAPI) -> None:
    rig = ungated
    api = sdk_for(rig)
    tenant = rig.tenant
    inv, other = rig.emailable(2, sent=False)

    api.email_invoice(tenant, inv.invoice_id, RequestEmpty(), idempotency_key="sdk-mail-1")
    api.email_invoice(tenant, inv.invoice_id, RequestEmpty(), idempotency_key="sdk-mail-1")
    assert rig.count("email_sent") == 1 and rig.count("replayed") == 1
    assert api.get_invoice(tenant, inv.invoice_id).invoices[0].sent_to_contact is True

    note = HistoryRecords(history_records=[HistoryRecord(details="Reminder 1 sent " + EMOJI)])
    made = api.create_invoice_history(tenant, inv.invoice_id, note, idempotency_key="sdk-note-1")
    assert made.history_records[0].details == "Reminder 1 sent " + EMOJI
    too_long = HistoryRecords(history_records=[HistoryRecord(details=EMOJI * 126)])
    with pytest.raises(AccountingBadRequestException) as refused:
        api.create_invoice_history(tenant, inv.invoice_id, too_long, idempotency_key="sdk-note-2")
    assert refused.value.error_data["Type"] == "ValidationException"

    history = api.get_invoice_history(tenant, inv.invoice_id).history_records
    sent = [h for h in history if h.changes == "Sent"]
    recipients = ", ".join(inv.contact.email_recipients())
    assert [(h.details, h.user) for h in sent] == [
        (f"This invoice has been sent to {recipients}.", "System Generated")
    ]
    assert any(h.details == "Reminder 1 sent " + EMOJI for h in history)

    promised = Invoices(invoices=[Invoice(expected_payment_date=date(2026, 12, 20))])
    updated = api.update_invoice(tenant, other.invoice_id, promised, idempotency_key="sdk-p-1")
    assert updated.invoices[0].expected_payment_date == date(2026, 12, 20)
    assert other.expected_payment_date == date(2026, 12, 20)

    # Over a trial's cap, the SDK meets the refusal arsync's connector reads as EmailCapReached.
    rig.event(type="organisation", **{"class": "TRIAL"})
    for n, target in enumerate(rig.emailable(20)[1:20]):
        api.email_invoice(tenant, target.invoice_id, RequestEmpty(), idempotency_key=f"sdk-{n}")
    with pytest.raises(AccountingBadRequestException) as capped:
        api.email_invoice(tenant, other.invoice_id, RequestEmpty(), idempotency_key="sdk-over")
    message = capped.value.error_data["Elements"][0]["ValidationErrors"][0]["Message"]
    assert "daily limit" in message
    with pytest.raises(EmailCapReached):
        rig.connector().email(other.invoice_id, key="arsync-over")
    rig.check_answers(spec)
