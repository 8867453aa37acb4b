"""The call list, call outcomes and history end to end over loopback HTTP: `arsync calls`,
`called` and `history` as a person runs them (typer's runner, and a few real processes).

Two linked companies (a Xero organisation in London, a QuickBooks company in California) on
Tue 24 Nov 2026, 18:00 UTC (18:00 in London, 10:00 in Los Angeles: a business day in both,
inside both quiet-hours windows). `run --once` opens call tasks:

- Xero `ada`: two invoices 65 and 70 days overdue (the 60-day stage: an email, a call task and
  a note each) and a third not yet due: one call, three invoices owed;
- Xero `bob`: one invoice 65 days overdue: one call;
- Xero `silent`: 35 days overdue, no email address: the reminder becomes a call task;
- QuickBooks `quinn` and `pia`: one invoice 65 days overdue each.

Then the calls are made: ada promises to pay, bob does not answer, silent disputes, quinn is
reached, pia agrees a payment plan. What the platforms performed is counted from the sandbox's
ledger, never from arsync's own records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from arsync.cli import app
from arsync.config import Config, load
from arsync.domain import HoldKind, HoldState
from arsync.logs import configure
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sandbox.ledger import LedgerEntry
from arsync.store.outbox import OutboxRow
from arsync.store.unit import Store
from arsync.writeback.run import UnitReport, run_once
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_sync_e2e import SECRETS, arsync, write_home
from tests.e2e.test_writeback_e2e import invoice_of
from tests.support import clock_of, make_sandbox, store_for

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
PERSON = "pat"
RUNNER = CliRunner(
    env={**SECRETS, "COLUMNS": "250", "NO_COLOR": "1", "LOGNAME": PERSON, "USER": PERSON}
)
#: label: (customer label, due date, amount)
XERO_INVOICES = {
    "ada-70": ("ada", date(2026, 9, 15), Decimal("1000.00")),
    "ada-65": ("ada", date(2026, 9, 20), Decimal("724.64")),
    "ada-soon": ("ada", date(2026, 12, 10), Decimal("300.00")),
    "bob-65": ("bob", date(2026, 9, 20), Decimal("510.00")),
    "silent-35": ("silent", date(2026, 10, 20), Decimal("410.00")),
}
QBO_INVOICES = {
    "quinn-65": ("quinn", date(2026, 9, 20), Decimal("640.00")),
    "pia-65": ("pia", date(2026, 9, 20), Decimal("724.64")),
}


@dataclass
class Company:
    name: str
    platform: str
    tenant: str
    #: invoice label -> platform id, and -> number
    ids: dict[str, str] = field(default_factory=dict)
    numbers: dict[str, str] = field(default_factory=dict)
    #: customer label -> platform id, -> name, -> phone, -> email
    customers: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    phones: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)


@dataclass
class World:
    sandbox: Sandbox
    config: Config
    home: Path
    store_url: str
    xero: Company
    qbo: Company
    #: `calls --json` and `calls` after the first run, before any call was made
    listed: dict[str, Any] = field(default_factory=dict)
    shown: str = ""

    def run(self) -> list[UnitReport]:
        # a command run through typer's runner left logging writing to its (closed) stderr
        configure(level="warning", fmt="json")
        reports = run_once(self.config, [], clock=clock_of(self.sandbox))
        for report in reports:
            assert report.error is None, report.error
        return reports

    def store(self) -> Store:
        return store_for(self.sandbox, self.store_url)


def cli(home: Path, *args: str) -> Result:
    return RUNNER.invoke(app, [*args, "--home", str(home)])


def ok(home: Path, *args: str) -> str:
    done = cli(home, *args)
    assert done.exit_code == 0, f"{args}: {done.output} {done.exception!r}"
    return done.stdout


def refused(home: Path, *args: str) -> str:
    done = cli(home, *args)
    assert done.exit_code == 2, f"{args}: {done.exit_code} {done.output} {done.exception!r}"
    assert done.stdout == "", done.stdout
    return " ".join(done.stderr.split())


def _raise(sandbox: Sandbox, company: Company, invoices: dict[str, Any]) -> None:
    for label, (who, due, amount) in invoices.items():
        if company.platform == "qbo":
            made = sandbox.event(
                "qbo",
                company.tenant,
                {
                    "type": "create_invoice",
                    "customer": company.customers[who],
                    "amount": str(amount),
                    "due_date": due.isoformat(),
                },
            )
            company.ids[label] = str(made["invoice"])
            company.numbers[label] = str(made["doc_number"])
        else:
            made = sandbox.event(
                "xero",
                company.tenant,
                {
                    "type": "create_invoice",
                    "contact": company.customers[who],
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
            company.numbers[label] = str(made["InvoiceNumber"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sandbox = make_sandbox(
        customers=24,
        invoices=0,
        start=NOW - timedelta(days=1),
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    tmp = tmp_path_factory.mktemp("calls")
    with pytest.MonkeyPatch.context() as env, SandboxServer(sandbox) as server:
        for key, value in SECRETS.items():
            env.setenv(key, value)
        configure(level="warning", fmt="json")
        home = tmp / "home"
        store_url = f"sqlite:///{tmp / 'arsync.db'}"
        write_home(home, server.url, store_url)
        connect(home, "books-xero")
        connect(home, "books-qbo")
        tenants = {t.platform: t.tenant_id for t in sandbox.tenants()}
        xero = Company("books-xero", "xero", tenants["xero"])
        qbo = Company("books-qbo", "qbo", tenants["qbo"])
        org = sandbox.xero.org(xero.tenant)
        reachable = [c for c in org.contact_list if c.currency == "GBP" and c.email and c.phone]
        for label, contact in zip(("ada", "bob", "silent"), reachable, strict=False):
            xero.customers[label] = contact.contact_id
            xero.names[label] = contact.name
            xero.phones[label] = str(contact.phone)
            xero.emails[label] = str(contact.email)
        company = sandbox.qbo.company(qbo.tenant)
        people = [(str(i), c) for i, c in sorted(company.customers.items()) if c.email and c.phone]
        for label, (ident, person) in zip(("quinn", "pia"), people, strict=False):
            qbo.customers[label] = ident
            qbo.names[label] = person.display_name
            qbo.phones[label] = str(person.phone)
            qbo.emails[label] = str(person.email)
        assert len(xero.customers) == 3 and len(qbo.customers) == 2
        _raise(sandbox, xero, XERO_INVOICES)
        sandbox.event(
            "xero",
            xero.tenant,
            {"type": "email_change", "contact": xero.customers["silent"], "email": None},
        )
        _raise(sandbox, qbo, QBO_INVOICES)
        sandbox.clock.set(NOW)
        world = World(sandbox, load(home), home, store_url, xero, qbo)
        world.run()
        world.listed = json.loads(ok(home, "calls", "--json"))
        world.shown = ok(home, "calls")
        yield world


def recorded(world: World) -> tuple[Any, ...]:
    """Everything `called` may record: holds, plans, events, the outbox."""
    store = world.store()
    try:
        with store.reading() as tx:
            out: list[Any] = []
            for name in ("books-xero", "books-qbo"):
                row = tx.connectors.by_name(name)
                assert row is not None
                out += [
                    tx.holds.history(row.id),
                    tx.plans.active(row.id),
                    len(tx.events.of(row.id)),
                    tx.outbox.of(row.id),
                ]
            return tuple(out)
    finally:
        store.close()


def outbox(world: World, company: Company, label: str) -> list[OutboxRow]:
    store = world.store()
    try:
        with store.reading() as tx:
            row = tx.connectors.by_name(company.name)
            assert row is not None
            return tx.outbox.of(row.id, invoice_id=company.ids[label])
    finally:
        store.close()


def notes_on(world: World, since: int, invoice: str) -> list[str]:
    found: list[LedgerEntry] = [
        e
        for e in world.sandbox.ledger.entries(kind="note_added", since_seq=since)
        if invoice_of(e) == invoice
    ]
    return [str(e.detail.get("details") or e.detail.get("note")) for e in found]


def calls_of(listed: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        call["customer"]: {**call, "connector": c["connector"]}
        for c in listed["connectors"]
        for call in c["calls"]
    }


# -- the list ------------------------------------------------------------------------------------
def test_the_list_has_one_call_per_customer_with_phone_and_what_is_owed(world: World) -> None:
    calls = calls_of(world.listed)
    x, q = world.xero, world.qbo
    expected = {x.names[n] for n in ("ada", "bob", "silent")} | {q.names[n] for n in q.names}
    assert set(calls) == expected
    ada = calls[x.names["ada"]]
    assert ada["phone"] == x.phones["ada"]
    assert ada["owed"] == {"GBP": "2024.64"}
    assert ada["oldest_days_overdue"] == 70
    assert ada["oldest_invoice"] == x.numbers["ada-70"]
    assert len(ada["tasks"]) == 2
    assert sorted(ada["about"]) == sorted([x.numbers["ada-70"], x.numbers["ada-65"]])
    assert ada["tone"] == "firm" and ada["stage"] == "60-day call and reminder"
    assert [i["number"] for i in ada["invoices"]] == [
        x.numbers["ada-70"],
        x.numbers["ada-65"],
        x.numbers["ada-soon"],
    ]
    # what has happened so far: the reminders the platform emailed, to the address it used
    emailed = [
        h["words"]
        for h in ada["history"]
        if h["words"].startswith("60-day call and reminder: reminder emailed")
    ]
    assert len(emailed) == 2
    assert all(x.emails["ada"] in w for w in emailed)
    assert any(h["words"].startswith(f"note on {x.numbers['ada-65']}") for h in ada["history"])
    assert "firm" in ada["script"].lower() or "specific day" in ada["script"]
    assert f'arsync called "{x.names["ada"]}"' in ada["script"]
    silent = calls[x.names["silent"]]
    assert silent["tone"] == "polite" and silent["owed"] == {"GBP": "410.00"}
    assert silent["oldest_days_overdue"] == 35
    quinn = calls[q.names["quinn"]]
    assert quinn["connector"] == "books-qbo"
    assert quinn["owed"] == {"USD": "640.00"} and quinn["phone"] == q.phones["quinn"]


def test_the_terminal_list_gives_each_customer_one_line(world: World) -> None:
    lines = world.shown.splitlines()
    for company in (world.xero, world.qbo):
        for label, name in company.names.items():
            heads = [line for line in lines if line.startswith(f"  {name} · ")]
            assert len(heads) == 1, (name, world.shown)
            assert company.phones[label] in heads[0]
            assert "owes" in heads[0] and "days overdue" in heads[0]
    ada = next(line for line in lines if line.startswith(f"  {world.xero.names['ada']} · "))
    assert "2,024.64 GBP" in ada and "70 days overdue" in ada


# -- bad input ------------------------------------------------------------------------------------
def test_bad_input_exits_2_says_why_and_records_nothing(world: World) -> None:
    home, ada = world.home, world.xero.names["ada"]
    before = recorded(world)
    said = refused(home, "called", "Nobody Ltd", "--outcome", "reached")
    assert "no invoice or customer 'Nobody Ltd'" in said
    said = refused(home, "called", ada, "--outcome", "promised")
    assert "--on DATE" in said
    said = refused(home, "called", ada, "--outcome", "promised", "--on", "2026-11-20")
    assert "2026-11-20 is in the past (today is 2026-11-24)" in said
    said = refused(home, "called", ada, "--outcome", "promised", "--on", "15 Dec")
    assert "not a date" in said
    said = refused(home, "called", ada, "--outcome", "disputed")
    assert "--reason" in said
    said = refused(home, "called", ada, "--outcome", "plan")
    assert "--instalments" in said
    said = refused(home, "called", ada, "--outcome", "reached", "--on", "2026-12-15")
    assert "--on" in said and "promised" in said
    said = refused(
        home, "called", ada, "--outcome", "promised", "--on", "2026-12-15", "--amount", "9999"
    )
    assert "above" in said
    said = refused(home, "called", ada, "--outcome", "maybe")
    assert "maybe" in said
    said = refused(home, "called", world.xero.numbers["ada-65"], "--outcome", "reached")
    assert "is an invoice; this needs a customer" in said
    assert recorded(world) == before


# -- outcomes --------------------------------------------------------------------------------------
@dataclass
class Called:
    said: dict[str, str]
    #: the ledger before the run that follows the calls, and after it
    start: int
    middle: int
    after: dict[str, Any]
    later: dict[str, Any]


@pytest.fixture(scope="module")
def called(world: World) -> Called:
    home, x, q = world.home, world.xero, world.qbo
    said = {
        "ada": ok(
            home, "called", x.names["ada"], "--outcome", "promised", "--on", "2026-12-15",
            "--reason", "cheque in the post",
        ),
        "bob": ok(home, "called", x.names["bob"], "--outcome", "no-answer"),
        "silent": ok(
            home, "called", x.names["silent"], "--outcome", "disputed",
            "--reason", "says the goods never arrived",
        ),
        "quinn": ok(
            home, "called", q.names["quinn"], "--outcome", "reached",
            "--reason", "will check with accounts",
        ),
        "pia": ok(
            home, "called", q.names["pia"], "--outcome", "plan",
            "--instalments", "2026-12-15:400,2027-01-15:324.64",
        ),
    }  # fmt: skip
    after = json.loads(ok(home, "calls", "--json"))
    # the next business day in London: bob's unanswered call is back on the list
    world.sandbox.clock.set(NOW + timedelta(days=1))
    try:
        later = json.loads(ok(home, "calls", "--json"))
    finally:
        world.sandbox.clock.set(NOW)
    start = len(world.sandbox.ledger.entries())
    world.run()
    middle = len(world.sandbox.ledger.entries())
    world.run()
    return Called(said, start, middle, after, later)


def test_a_promise_holds_each_overdue_invoice_and_leaves_the_list(
    world: World, called: Called
) -> None:
    x = world.xero
    assert "promised 1,724.64 GBP by 15 Dec" in called.said["ada"]
    store = world.store()
    try:
        with store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            promises = [h for h in tx.holds.history(row.id) if h.kind is HoldKind.PROMISE]
            outcomes = tx.events.of(
                row.id, external_id=x.customers["ada"], actions=["call_outcome"]
            )
    finally:
        store.close()
    held = {h.invoice_id: h for h in promises if h.state is HoldState.ACTIVE}
    assert set(held) == {x.ids["ada-70"], x.ids["ada-65"]}
    for hold in held.values():
        assert hold.until == date(2026, 12, 15)
        assert hold.set_by == PERSON
        assert "cheque in the post" in hold.reason
    (event,) = outcomes
    assert event.detail["outcome"] == "promised"
    assert event.detail["by"] == PERSON
    assert event.detail["reason"] == "cheque in the post"
    assert event.detail["on"] == "2026-12-15"
    assert x.names["ada"] not in calls_of(called.after)


def test_the_next_run_writes_one_note_per_invoice_saying_the_outcome(
    world: World, called: Called
) -> None:
    x, q = world.xero, world.qbo
    for label in ("ada-70", "ada-65"):
        (text,) = notes_on(world, called.start, x.ids[label])
        assert "promised" in text and "15 Dec 2026" in text
    assert notes_on(world, called.start, x.ids["ada-soon"]) == []
    (bob,) = notes_on(world, called.start, x.ids["bob-65"])
    assert "call: no answer" in bob
    (silent,) = notes_on(world, called.start, x.ids["silent-35"])
    assert "dispute" in silent and "goods never arrived" in silent
    (quinn,) = notes_on(world, called.start, q.ids["quinn-65"])
    assert f"call: reached {q.names['quinn']}" in quinn
    assert "24 Nov 2026" in quinn
    (pia,) = notes_on(world, called.start, q.ids["pia-65"])
    assert "payment plan" in pia
    # a second run performs nothing more, and no email went to anyone called
    assert world.sandbox.ledger.entries(kind="note_added", since_seq=called.middle) == []
    assert world.sandbox.ledger.entries(kind="email_sent", since_seq=called.start) == []


def test_the_outcome_note_goes_through_the_outbox_once(world: World, called: Called) -> None:
    rows = [r for r in outbox(world, world.qbo, "quinn-65") if r.stage == "recorded:call"]
    assert len(rows) == 1
    (row,) = rows
    assert row.kind == "note" and row.state.value == "done"
    assert row.stage_title == "call" and row.tone == "firm"
    assert row.amount == Decimal("640.00") and row.currency == "USD"


def test_an_unanswered_call_comes_back_on_the_next_business_day(
    world: World, called: Called
) -> None:
    bob = world.xero.names["bob"]
    assert "back on the call list on Wed 25 Nov 2026" in called.said["bob"]
    assert bob not in calls_of(called.after)
    (xero,) = [c for c in called.after["connectors"] if c["connector"] == "books-xero"]
    assert bob in xero["later"]
    again = calls_of(called.later)[bob]
    assert again["tries"] == 1
    assert any("call: no answer" in h["words"] for h in again["history"])
    # the others answered: their calls are done
    names = {world.xero.names["ada"], world.xero.names["silent"], *world.qbo.names.values()}
    assert not names & set(calls_of(called.later))


def test_a_dispute_and_a_plan_become_their_holds(world: World, called: Called) -> None:
    x, q = world.xero, world.qbo
    store = world.store()
    try:
        with store.reading() as tx:
            xero = tx.connectors.by_name("books-xero")
            qbo = tx.connectors.by_name("books-qbo")
            assert xero is not None and qbo is not None
            disputes = [
                h
                for h in tx.holds.active(xero.id)
                if h.kind is HoldKind.DISPUTE and h.invoice_id == x.ids["silent-35"]
            ]
            plans = [p for p in tx.plans.active(qbo.id) if p.customer_id == q.customers["pia"]]
    finally:
        store.close()
    assert len(disputes) == 1 and "goods never arrived" in disputes[0].reason
    (plan,) = plans
    assert plan.invoice_ids == (q.ids["pia-65"],)
    assert [(i.due, i.amount) for i in plan.instalments] == [
        (date(2026, 12, 15), Decimal("400.00")),
        (date(2027, 1, 15), Decimal("324.64")),
    ]


def test_a_call_with_its_outcome_recorded_is_refused_a_second_outcome(
    world: World, called: Called
) -> None:
    before = recorded(world)
    said = refused(world.home, "called", world.qbo.names["quinn"], "--outcome", "reached")
    assert "no call task open" in said and "reached" in said and PERSON in said
    assert recorded(world) == before


# -- history ---------------------------------------------------------------------------------------
def test_history_of_an_invoice_tells_the_email_the_note_the_call_and_its_outcome(
    world: World, called: Called
) -> None:
    x = world.xero
    found = json.loads(
        ok(world.home, "history", x.numbers["ada-65"], "--connector", "books-xero", "--json")
    )
    entries = found["entries"]
    assert [e["at"] for e in entries] == sorted(e["at"] for e in entries)

    def first(test: Any) -> int:
        return next(i for i, e in enumerate(entries) if test(e))

    emailed = [
        e
        for e in world.sandbox.ledger.entries(kind="email_sent")
        if invoice_of(e) == x.ids["ada-65"]
    ]
    (sent,) = emailed
    email = first(lambda e: e["kind"] == "email" and e["what"] == "done")
    assert entries[email]["evidence"]["to"] == sent.detail["to"]
    assert sent.detail["to"] in entries[email]["words"]
    note = first(lambda e: e["kind"] == "note" and e["what"] == "done" and "60-day" in e["words"])
    call = first(lambda e: e["kind"] == "call" and e["what"] == "done")
    outcome = first(lambda e: e["what"] == "call")
    promise_note = first(
        lambda e: e["kind"] == "note" and e["what"] == "done" and "15 Dec 2026" in e["words"]
    )
    assert email < note < outcome < promise_note
    assert call < outcome
    assert "promised" in entries[outcome]["words"] and PERSON in entries[outcome]["words"]
    assert any(e["what"] == "hold" and "promise" in e["words"] for e in entries)
    assert any(e["what"] == "planned" for e in entries)


def test_history_in_a_terminal_and_of_a_customer(world: World, called: Called) -> None:
    x = world.xero
    shown = ok(world.home, "history", x.numbers["ada-65"], "--connector", "books-xero")
    assert f"invoice {x.numbers['ada-65']}" in shown
    assert "reminder emailed to" in shown and "call task opened" in shown
    assert "call: reached" in shown
    customer = json.loads(ok(world.home, "history", x.names["ada"], "--json"))
    invoices = {e["invoice"] for e in customer["entries"] if e["invoice"]}
    assert {x.numbers["ada-70"], x.numbers["ada-65"]} <= invoices
    said = refused(world.home, "history", "no-such-thing")
    assert "no invoice or customer" in said


def test_the_commands_as_processes(world: World, called: Called) -> None:
    listed = arsync(world.home, "calls", "--json")
    assert listed.returncode == 0, listed.stderr
    assert calls_of(json.loads(listed.stdout)) == calls_of(called.after)
    trail = arsync(world.home, "history", world.qbo.numbers["quinn-65"], "--connector", "books-qbo")
    assert trail.returncode == 0, trail.stderr
    assert "call: reached" in trail.stdout
    bad = arsync(world.home, "called", world.xero.names["bob"], "--outcome", "promised")
    assert bad.returncode == 2
    assert "--on DATE" in bad.stderr
