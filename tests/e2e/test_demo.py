"""`arsync demo` walked over a test sandbox: the service itself did the work, told truly.

What the demo reports is what the platforms, the mail server and the store say; every effect
was claimed and carried out by `arsync run`'s own loop, once."""

from __future__ import annotations

import stat
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest

from arsync.config import load
from arsync.demo import MAIL_FROM, CompanyDemo, DemoRun, collect, render
from arsync.domain import HoldKind, HoldState
from arsync.sandbox import LedgerEntry, Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits
from arsync.store import Store
from arsync.store.states import OutboxState
from arsync.writeback.dispatch import marker
from arsync.writeback.handover import slug
from tests.support import make_sandbox, store_for

#: the kinds of action whose effect leaves arsync (a claim by the service comes first)
EFFECTS = ("email", "note", "letter", "call", "handover", "expect")


@dataclass
class Walked:
    """One demo walk over a test sandbox (its clock fixed), with what it returned."""

    sandbox: Sandbox
    store: Store
    run: DemoRun
    home: Path

    def company(self, platform: str) -> CompanyDemo:
        return next(d for d in self.run.companies if d.tenant.platform == platform)

    def connector_id(self, demo: CompanyDemo) -> int:
        with self.store.reading() as tx:
            row = tx.connectors.by_name(demo.name)
            assert row is not None
            return row.id


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walked]:
    # QuickBooks' daily cap on emails set low, so that the email channel is parked some days
    sandbox = make_sandbox(customers=15, invoices=120, qbo=QboLimits(emails_per_day=6))
    home = tmp_path_factory.mktemp("demo")
    with SandboxServer(sandbox) as server:
        walk = collect(server, home)
    store = store_for(sandbox, walk.store_url)
    try:
        yield Walked(sandbox, store, walk, home)
    finally:
        store.engine.dispose()


def test_the_demo_sets_arsync_up_as_a_firm_would(walked: Walked) -> None:
    config = load(walked.home)
    assert config.settings.daemon.listen == ""  # no health port inside the demo's process
    assert config.settings.mail is not None and config.settings.mail.from_address == MAIL_FROM
    assert walked.run.store_url == config.settings.store_url()
    assert sorted(config.connectors) == ["demo-quickbooks", "demo-xero"]
    for connector in config.connectors.values():
        assert connector.sandbox_url is not None and connector.policy == "standard"
    secrets = [*(walked.home / "secrets").iterdir()]
    assert secrets and all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in secrets)
    with walked.store.reading() as tx:
        rows = {r.name: r for r in tx.connectors.all()}
    assert set(rows) == set(config.connectors)
    assert all(r.linked for r in rows.values())


def test_the_service_did_the_work(walked: Walked) -> None:
    """Every action with an effect was claimed by the service's loop, under its own name, before
    it was carried out; every cycle began with a sync of its own."""
    run = walked.run
    assert run.passes > 0 and run.owner
    for demo in run.companies:
        cid = walked.connector_id(demo)
        with walked.store.reading() as tx:
            claims = tx.events.of(cid, actions=["action_claimed"])
            done = [r for r in tx.outbox.of(cid, states=(OutboxState.DONE,)) if r.kind in EFFECTS]
            runs = tx.runs.of(cid)
        assert claims and {e.detail["owner"] for e in claims} == {run.owner}
        claimed = {e.detail["action"] for e in claims}
        assert done and all(r.id in claimed for r in done)
        # one sync a cycle: the first (the whole company), then at least one each day
        assert len(runs) == demo.syncs >= run.days + 1
        assert all(r.outcome == "ok" for r in runs)
        assert demo.first.outcome == "ok" and demo.first.records > 0


@pytest.mark.parametrize("platform", ["qbo", "xero"])
def test_the_platform_saw_each_email_and_note_once(walked: Walked, platform: str) -> None:
    """The sandbox's ledger: every email went once, under the id of an action done in the
    outbox; every note carries the marker of one action done, and no marker twice."""
    demo = walked.company(platform)
    tenant = demo.tenant.tenant_id
    entries = walked.sandbox.ledger.entries(platform=platform, tenant=tenant)
    keys = Counter(e.idempotency_key for e in entries if e.kind == "email_sent")
    refs = Counter(
        note_text(e).rsplit("ref ", 1)[1].strip() for e in entries if e.kind == "note_added"
    )
    assert keys and set(keys.values()) == {1}
    assert refs and set(refs.values()) == {1}
    with walked.store.reading() as tx:
        done = tx.outbox.of(walked.connector_id(demo), states=(OutboxState.DONE,))
    assert set(keys) == {r.id for r in done if r.kind == "email"}
    assert set(refs) == {marker(r.id) for r in done if r.kind == "note"}


def test_demo_figures_equal_the_books_read_over_http(walked: Walked) -> None:
    sandbox, walk = walked.sandbox, walked.run
    assert {d.tenant.platform for d in walk.companies} == {"qbo", "xero"}
    for demo in walk.companies:
        assert demo.first.outcome == "ok" and demo.failed_syncs == []
        assert demo.start is not None and demo.end is not None and demo.status is not None
        assert (demo.end - demo.start).days == walk.days - 1 and demo.today == demo.end
        # the aging, from the store after the service's last sync, is what the books say now
        by_currency = {row["currency"]: Decimal(row["total"]) for row in demo.status.aging}
        assert by_currency == open_balances_now(sandbox, demo.tenant.platform)
        # every payment the demo made is in the books, and counted once in its week
        assert demo.payments
        for paid in demo.payments:
            assert balance_of(sandbox, demo, paid.invoice_id) == 0
        weeks = Counter[str]()
        for week in demo.weeks.values():
            weeks.update(week)
        assert weeks["paid"] == len(demo.payments)
        # the weeks' emails and notes are the platform's own count of them
        tenant = demo.tenant
        sent = sandbox.ledger.entries(
            platform=tenant.platform, kind="email_sent", tenant=tenant.tenant_id
        )
        noted = sandbox.ledger.entries(
            platform=tenant.platform, kind="note_added", tenant=tenant.tenant_id
        )
        assert weeks["emailed"] == len(sent) > 0
        assert weeks["notes"] == len(noted) > 0
        # every call the service made to the company, as the sandbox counted them
        requests = sandbox.ledger.entries(
            platform=tenant.platform, kind="request", tenant=tenant.tenant_id
        )
        assert demo.api_calls == sum(1 for e in requests if e.seq <= walk.ledger_seq) > 0


def test_each_company_tells_its_story(walked: Walked) -> None:
    qbo, xero = walked.company("qbo"), walked.company("xero")
    said = {d.tenant.platform: " | ".join(w for _, w in d.highlights) for d in (qbo, xero)}
    with walked.store.reading() as tx:
        disputes = [
            h for h in tx.holds.history(walked.connector_id(qbo)) if h.kind is HoldKind.DISPUTE
        ]
        promises = [
            h for h in tx.holds.history(walked.connector_id(xero)) if h.kind is HoldKind.PROMISE
        ]
        expected = tx.outbox.of(walked.connector_id(xero), kinds=("expect",))
    # QuickBooks: a customer disputes, and the invoice is held (the dispute noted on it)
    assert [(h.state, h.invoice_id) for h in disputes] == [(HoldState.ACTIVE, qbo.story_invoice)]
    assert "disputed" in said["qbo"] and "arsync noted the dispute on" in said["qbo"]
    # ... a customer pays in the middle of a cycle, after its sync: nothing of the stage goes
    assert sum(w["skipped_paid"] for w in qbo.weeks.values()) >= 1
    assert "had paid it since the cycle's sync, so nothing of its" in said["qbo"]
    # ... and QuickBooks' daily cap on emails parked the email channel
    assert qbo.parked
    # Xero: a customer promises, the Expected Date is set, the payment keeps the promise
    (promise,) = promises
    assert promise.state is HoldState.KEPT and promise.invoice_id == xero.story_invoice
    assert [r.state for r in expected] == [OutboxState.DONE]
    assert "set its Expected Date to" in said["xero"]
    assert "arsync recorded the promise as kept" in said["xero"]
    # the backlog over the policy's cap waited for the owner, who approved it the next day
    (capped,) = [at for at, w in qbo.highlights if "over the standard policy's cap" in w]
    (approved,) = [at for at, w in qbo.highlights if "approved the" in w]
    assert approved.date() > capped.date()
    # one hand-over, approved by the owner: its evidence pack, whole
    packs = [d.pack for d in (qbo, xero) if d.pack is not None]
    assert len(packs) == 1
    assert {"MANIFEST.sha256", "pack.json", "index.html", "trail.csv"} <= set(packs[0].files)
    assert packs[0].folder.startswith(slug(packs[0].customer))


def test_the_notes_shown_are_read_back_from_the_platform(walked: Walked) -> None:
    for demo in walked.run.companies:
        shown = demo.shown
        assert shown is not None and shown.notes
        assert all(n.at is not None for n in shown.notes)
        written = [
            note_text(e)
            for e in walked.sandbox.ledger.entries(
                platform=demo.tenant.platform, kind="note_added", tenant=demo.tenant.tenant_id
            )
            if ledger_invoice(e) == shown.invoice_id.lower()
        ]
        texts = [n.text for n in shown.notes]
        assert written and set(written) <= set(texts)
        if demo.tenant.platform == "qbo":
            assert sorted(texts) == sorted(written)  # QuickBooks holds only arsync's notes


@pytest.mark.parametrize("platform", ["qbo", "xero"])
def test_the_ledger_holds_one_email_and_one_note_per_stage_reported(
    walked: Walked, platform: str
) -> None:
    """Counted from the sandbox's ledger: each stage the demo reports was emailed once (when
    it emailed) and noted once on its invoice; nothing else was emailed; and nothing was
    emailed or noted on an invoice after it was paid."""
    demo = walked.company(platform)
    tenant = demo.tenant.tenant_id
    entries = walked.sandbox.ledger.entries(platform=platform, tenant=tenant)
    emails = Counter(ledger_invoice(e) for e in entries if e.kind == "email_sent")
    stage_notes: Counter[tuple[str, str]] = Counter()
    with walked.store.reading() as tx:
        for e in entries:
            if e.kind != "note_added":
                continue
            (row,) = tx.outbox.find(note_text(e).rsplit("ref ", 1)[1].strip())
            if not row.stage.startswith("recorded:"):  # a dispute's, a letter's own notes
                stage_notes[(ledger_invoice(e), row.stage)] += 1
    reported = Counter((s.invoice_id.lower(), s.stage) for s in demo.stages)
    assert reported and set(reported.values()) == {1}
    assert stage_notes == reported
    assert emails == Counter(s.invoice_id.lower() for s in demo.stages if s.emailed)
    for paid in demo.payments:
        (event,) = [
            e
            for e in entries
            if e.kind == "business_event"
            and e.detail["event"].get("type") == "payment"
            and str(e.detail["event"]["invoice"]).lower() == paid.invoice_id.lower()
        ]
        after = [
            e
            for e in entries
            if e.seq > event.seq
            and e.kind in ("email_sent", "note_added")
            and ledger_invoice(e) == paid.invoice_id.lower()
        ]
        assert after == [], paid


def test_the_letters_reached_the_sandboxs_mail_server(walked: Walked) -> None:
    walk = walked.run
    with walked.store.reading() as tx:
        sent = {
            r.result["message_id"]
            for d in walk.companies
            for r in tx.outbox.of(walked.connector_id(d), kinds=("letter",))
            if r.state is OutboxState.DONE
        }
    assert sent and {str(m.message["Message-ID"]).strip() for m in walk.letters} == sent
    assert len(walk.letters) == len(sent)
    for demo in walk.companies:
        assert demo.letters and all(m.sender == demo.from_address for m in demo.letters)
        # each under its own company's name
        assert all(demo.tenant.name in str(m.message["From"]) for m in demo.letters)
    assert sum(len(d.letters) for d in walk.companies) == len(walk.letters)


def test_the_demo_says_what_happened(
    walked: Walked, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    render(walked.run)
    out = capsys.readouterr().out
    qbo, xero = walked.company("qbo"), walked.company("xero")
    assert out.count("then 100 days of the standard policy") == 2
    for demo in (qbo, xero):
        assert f"{demo.syncs} cycles of `arsync run`, {demo.api_calls:,} API calls" in out
    for _, words in qbo.highlights + xero.highlights:
        assert words in out
    assert f"the email channel was parked {len(qbo.parked)} day" in out
    assert "by QuickBooks' daily cap on emails" in out
    for demo, where in ((qbo, "QuickBooks Online"), (xero, "Xero")):
        assert demo.shown is not None
        assert f"of {demo.shown.customer} as {where} shows it now" in out
        for note in demo.shown.notes:
            assert note.text in out
    assert f"received {len(walked.run.letters)} letters, e.g." in out
    assert "Days overdue" in out


def open_balances_now(sandbox: Sandbox, platform: str) -> dict[str, Decimal]:
    """What the sandbox's books say is owed right now, per currency."""
    totals: dict[str, Decimal] = {}
    for tenant in sandbox.tenants():
        if tenant.platform != platform:
            continue
        if platform == "qbo":
            items = [
                (i.currency, i.balance)
                for i in sandbox.qbo.company(tenant.tenant_id).invoices.values()
            ]
        else:
            items = [
                (i.currency, i.amount_due)
                for i in sandbox.xero.org(tenant.tenant_id).invoices.values()
                if i.type == "ACCREC" and i.status == "AUTHORISED"
            ]
        for currency, balance in items:
            if balance > 0:
                totals[currency] = totals.get(currency, Decimal(0)) + balance
    return totals


def balance_of(sandbox: Sandbox, demo: CompanyDemo, invoice_id: str) -> Decimal:
    """What the sandbox's books say is owed on one invoice now."""
    tenant = demo.tenant.tenant_id
    if demo.tenant.platform == "qbo":
        return sandbox.qbo.company(tenant).invoices[int(invoice_id)].balance
    return sandbox.xero.org(tenant).invoices[invoice_id.lower()].amount_due


def ledger_invoice(entry: LedgerEntry) -> str:
    """The invoice a ledger entry (an email, a note) is about, in lower case."""
    refs = entry.detail.get("refs")
    if refs:
        return str(refs[0]).split(":", 1)[1].lower()
    return str(entry.detail.get("invoice")).lower()


def note_text(entry: LedgerEntry) -> str:
    """A note's words as the platform took them (QuickBooks' attachable, Xero's History)."""
    return str(entry.detail.get("note") or entry.detail.get("details"))
