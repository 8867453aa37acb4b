"""Write-back end to end: `run --once` over real loopback HTTP writes each due step exactly once.

Two linked companies (a Xero organisation in London, a QuickBooks company in California) hold
invoices at different stages of the standard policy on Tue 24 Nov 2026, 18:00 UTC (18:00 in
London, 10:00 in Los Angeles: inside both quiet-hours windows, a business day in both):

- `thirty`: due Tue 20 Oct, 35 days overdue: the 30-day reminder (the reminder before the due
  date is superseded) emailed by the platform, and a note saying so;
- `soon`: due Fri 27 Nov: the friendly reminder three days before, emailed, and its note;
- `sixty`: due Sun 20 Sep, 65 days overdue: the 60-day stage: an email, a call task, a note;
- `silent` (Xero): 35 days overdue, to a contact with no email address: no email (a call task
  instead) and a note that says why.

What the platforms performed is counted from the sandbox's ledger, never from arsync's counters.
A second run at the same moment performs nothing more; an invoice paid before the next stage's
run gets nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from arsync.config import Config, load
from arsync.logs import configure
from arsync.runtime import Runtime
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sandbox.ledger import LedgerEntry
from arsync.store.states import OutboxState
from arsync.writeback.dispatch import marker
from arsync.writeback.run import UnitReport, run_once
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_sync_e2e import SECRETS, write_home
from tests.support import clock_of, make_sandbox

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
INVOICES = {
    # label: (due date, amount)
    "thirty": (date(2026, 10, 20), Decimal("1200.00")),
    "soon": (date(2026, 11, 27), Decimal("300.00")),
    "sixty": (date(2026, 9, 20), Decimal("724.64")),
}


@dataclass
class Company:
    name: str
    platform: str
    tenant: str
    ids: dict[str, str] = field(default_factory=dict)
    customers: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    sandbox: Sandbox
    config: Config
    home: Path
    xero: Company
    qbo: Company
    first: list[UnitReport] = field(default_factory=list)
    second: list[UnitReport] = field(default_factory=list)
    #: ledger position before the first run and before the second
    before: int = 0
    between: int = 0

    def run(self) -> list[UnitReport]:
        return run_once(self.config, [], clock=clock_of(self.sandbox))


def _raise(world: World, company: Company, labels: dict[str, tuple[date, Decimal]]) -> None:
    sandbox = world.sandbox
    for label, (due, amount) in labels.items():
        who = company.customers[label]
        if company.platform == "qbo":
            made = sandbox.event(
                "qbo",
                company.tenant,
                {
                    "type": "create_invoice",
                    "customer": who,
                    "amount": str(amount),
                    "due_date": due.isoformat(),
                },
            )
            company.ids[label] = str(made["invoice"])
        else:
            made = sandbox.event(
                "xero",
                company.tenant,
                {
                    "type": "create_invoice",
                    "contact": who,
                    "amount": str(amount),
                    "currency": "GBP",
                },
            )
            ident = str(made["InvoiceID"])
            sandbox.event(
                "xero",
                company.tenant,
                {"type": "edit", "invoice": ident, "due_date": due.isoformat()},
            )
            company.ids[label] = ident


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sandbox = make_sandbox(
        customers=8,
        invoices=0,
        start=NOW - timedelta(days=1),
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    tmp = tmp_path_factory.mktemp("writeback")
    with pytest.MonkeyPatch.context() as env, SandboxServer(sandbox) as server:
        for key, value in SECRETS.items():
            env.setenv(key, value)
        configure(level="warning", fmt="json")
        home = tmp / "home"
        write_home(home, server.url, f"sqlite:///{tmp / 'arsync.db'}")
        connect(home, "books-xero")
        connect(home, "books-qbo")
        config = load(home)
        tenants = {t.platform: t.tenant_id for t in sandbox.tenants()}
        xero = Company("books-xero", "xero", tenants["xero"])
        qbo = Company("books-qbo", "qbo", tenants["qbo"])
        org = sandbox.xero.org(xero.tenant)
        british = [c for c in org.contact_list if c.currency == "GBP" and c.email]
        labels = [*INVOICES, "silent"]
        xero.customers = {label: c.contact_id for label, c in zip(labels, british, strict=False)}
        company = sandbox.qbo.company(qbo.tenant)
        with_email = [str(i) for i, c in sorted(company.customers.items()) if c.email]
        qbo.customers = dict(zip(INVOICES, with_email, strict=False))
        world = World(sandbox, config, home, xero, qbo)
        _raise(world, xero, {**INVOICES, "silent": (date(2026, 10, 20), Decimal("410.00"))})
        sandbox.event(
            "xero",
            xero.tenant,
            {"type": "email_change", "contact": xero.customers["silent"], "email": None},
        )
        _raise(world, qbo, INVOICES)
        sandbox.clock.set(NOW)
        world.before = len(sandbox.ledger.entries())
        world.first = world.run()
        world.between = len(sandbox.ledger.entries())
        world.second = world.run()
        yield world


def performed(
    world: World, kind: str, since: int = 0, until: int | None = None
) -> list[LedgerEntry]:
    entries = world.sandbox.ledger.entries(kind=kind, since_seq=since)
    return [e for e in entries if until is None or e.seq <= until]


def invoice_of(entry: LedgerEntry) -> str:
    if entry.kind == "email_sent":
        return str(entry.detail.get("invoice") or entry.detail.get("InvoiceID"))
    refs = entry.detail.get("refs")
    if refs:
        return str(refs[0]).split(":", 1)[1]
    return str(entry.detail.get("invoice") or entry.detail.get("InvoiceID"))


def test_the_first_run_emails_each_due_invoice_once_with_its_action_id(world: World) -> None:
    for report in world.first:
        assert report.error is None, report.error
    emails = performed(world, "email_sent", world.before, world.between)
    by_invoice = sorted(invoice_of(e) for e in emails)
    expected = sorted([world.xero.ids[x] for x in INVOICES] + [world.qbo.ids[x] for x in INVOICES])
    assert by_invoice == expected
    # the platform was handed the action's id as its idempotency key
    assert all(e.idempotency_key for e in emails)


def test_each_stage_gets_one_note_naming_what_happened(world: World) -> None:
    notes = performed(world, "note_added", world.before, world.between)
    by_invoice: dict[str, list[str]] = {}
    for e in notes:
        by_invoice.setdefault(invoice_of(e), []).append(str(e.detail.get("note") or e.detail))
    expected = {world.xero.ids[x] for x in [*INVOICES, "silent"]} | {
        world.qbo.ids[x] for x in INVOICES
    }
    assert set(by_invoice) == expected
    assert all(len(texts) == 1 for texts in by_invoice.values()), by_invoice
    thirty = by_invoice[world.xero.ids["thirty"]][0]
    assert "30-day reminder" in thirty and "emailed to" in thirty
    assert "1,200.00 GBP" in thirty
    assert "24 Nov 2026" in thirty
    silent = by_invoice[world.xero.ids["silent"]][0]
    assert "not emailed" in silent and "no email address" in silent


def test_a_second_run_performs_nothing_more(world: World) -> None:
    assert performed(world, "email_sent", world.between) == []
    assert performed(world, "note_added", world.between) == []
    for report in world.second:
        assert report.error is None, report.error
        assert report.enqueued is not None and report.enqueued.added == 0


def test_no_email_address_becomes_a_call_task(world: World) -> None:
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            rows = tx.outbox.of(row.id, invoice_id=world.xero.ids["silent"])
    finally:
        runtime.close()
    kinds = {(r.kind, r.state) for r in rows}
    assert ("email", OutboxState.SKIPPED) in kinds
    assert ("call", OutboxState.DONE) in kinds
    assert ("note", OutboxState.DONE) in kinds


def test_every_done_note_is_found_by_its_marker_in_the_ledger(world: World) -> None:
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        for company in (world.xero, world.qbo):
            with runtime.store.reading() as tx:
                row = tx.connectors.by_name(company.name)
                assert row is not None
                notes = tx.outbox.of(row.id, kinds=["note"], states=[OutboxState.DONE])
            writer = runtime.coordinator(company.name).connector
            trails = writer.read_back(sorted({n.invoice_id for n in notes if n.invoice_id}))  # type: ignore[attr-defined]
            for note in notes:
                assert note.invoice_id is not None
                texts = [n.text for n in trails[note.invoice_id].notes]
                assert sum(f"ref {marker(note.id)}" in t for t in texts) == 1, texts
    finally:
        runtime.close()


def test_a_promise_recorded_in_arsync_reaches_the_ledger_once(world: World) -> None:
    from arsync.collecting import Collecting
    from arsync.domain import HoldKind, Invoice, Kind

    clock = clock_of(world.sandbox)
    xero_invoice = world.xero.ids["thirty"]
    qbo_invoice = world.qbo.ids["thirty"]
    with Collecting(world.config, clock) as collecting:
        with collecting.store.reading() as tx:
            qbo = tx.connectors.by_name("books-qbo")
            assert qbo is not None
            found = tx.records.by_ids(qbo.id, Kind.INVOICE, [qbo_invoice])[qbo_invoice]
            assert isinstance(found, Invoice) and found.number
        collecting.promise(
            xero_invoice, "2026-12-15", reason="will pay on the 15th", connector="books-xero"
        )
        collecting.promise(
            found.number, "2026-12-15", reason="cheque in the post", connector="books-qbo"
        )
    start = len(world.sandbox.ledger.entries())
    world.run()
    middle = len(world.sandbox.ledger.entries())
    world.run()
    notes = performed(world, "note_added", start)
    assert sorted(invoice_of(e) for e in notes) == sorted([xero_invoice, qbo_invoice])
    text = str(notes[0].detail.get("note") or notes[0].detail.get("details"))
    assert "promised 1,200.00" in text and "by 15 Dec 2026" in text
    assert performed(world, "note_added", middle) == []
    assert performed(world, "email_sent", start) == []
    # Xero shows the promise as the invoice's Expected Date; QuickBooks has no such field
    org = world.sandbox.xero.org(world.xero.tenant)
    assert org.invoices[xero_invoice.lower()].expected_payment_date == date(2026, 12, 15)
    # the next sync reads the Expected Date back: it is the same promise, not a second one
    with Collecting(world.config, clock) as collecting, collecting.store.reading() as tx:
        row = tx.connectors.by_name("books-xero")
        assert row is not None
        promises = [
            h
            for h in tx.holds.history(row.id, invoice_id=xero_invoice)
            if h.kind is HoldKind.PROMISE
        ]
    assert len(promises) == 1, promises


def test_reminders_go_where_the_firm_says_on_quickbooks_and_xero_refuses_it(world: World) -> None:
    from arsync.collecting import BadInput, Collecting

    clock = clock_of(world.sandbox)
    company = world.sandbox.qbo.company(world.qbo.tenant)
    taken = set(world.qbo.customers.values())
    spare = next(
        str(i) for i, c in sorted(company.customers.items()) if c.email and str(i) not in taken
    )
    made = world.sandbox.event(
        "qbo",
        world.qbo.tenant,
        {"type": "create_invoice", "customer": spare, "amount": "90.00", "due_date": "2026-10-20"},
    )
    with Collecting(world.config, clock) as collecting:
        said = collecting.customer_settings(
            spare, zone=None, send_to="payables@example.com", connector="books-qbo"
        )
        assert "payables@example.com" in said
        with pytest.raises(BadInput, match="Contact persons"):
            collecting.customer_settings(
                world.xero.customers["soon"],
                zone=None,
                send_to="payables@example.com",
                connector="books-xero",
            )
        with pytest.raises(BadInput, match="not an email address"):
            collecting.customer_settings(
                spare, zone=None, send_to="payables at example", connector="books-qbo"
            )
    start = len(world.sandbox.ledger.entries())
    world.run()
    sent = [
        e
        for e in performed(world, "email_sent", start)
        if e.detail.get("invoice") == str(made["invoice"])
    ]
    assert [e.detail["to"] for e in sent] == ["payables@example.com"]
