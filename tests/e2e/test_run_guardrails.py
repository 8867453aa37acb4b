"""The write-back's guardrails and a person's hand on it, over the sandbox and the real CLI.

- `run --once --dry-run` says what would go out and writes nothing (the sandbox's ledger and the
  outbox unchanged);
- quiet hours are checked again when sending, not only when planning: an action planned inside
  the customer's window but dispatched after it closes waits for the next business morning;
- nothing is sent while the last good sync is older than the policy allows;
- a platform's daily email cap parks the email channel until the next day (nothing fails, and
  `status` says so), and the rest goes out then;
- a policy that wants everything approved first sends nothing until `arsync approve`, and
  `arsync reject` skips an action for good with the reason in the trail;
- a lost reply on a Xero email past the key's window waits for a person, who settles it with
  `arsync resolve`; a lost reply on a note is settled by reading the platform back.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from arsync.collecting import firm_of
from arsync.config import Config, load
from arsync.connectors.base import Writer
from arsync.escalation.planner import plan
from arsync.escalation.reading import snapshot
from arsync.logs import configure
from arsync.runtime import Runtime
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sandbox.faults import FaultKind, FaultRule
from arsync.store.outbox import OutboxRow
from arsync.store.states import OutboxState
from arsync.sync import sync_connector
from arsync.writeback.dispatch import Dispatcher
from arsync.writeback.outbox import enqueue
from arsync.writeback.run import run_once
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_sync_e2e import SECRETS, arsync, write_home
from tests.support import clock_of, make_sandbox

#: Tue 24 Nov 2026, 18:00 UTC: 18:00 in London, 10:00 in Los Angeles (both inside 08:00-21:00)
NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
S = OutboxState


@dataclass
class World:
    sandbox: Sandbox
    server: SandboxServer
    home: Path
    xero_tenant: str
    qbo_tenant: str

    @property
    def config(self) -> Config:
        return load(self.home)

    def runtime(self) -> Runtime:
        return Runtime.open(self.config, clock_of(self.sandbox))

    def rows(self, name: str, **filters: object) -> list[OutboxRow]:
        runtime = self.runtime()
        try:
            with runtime.store.reading() as tx:
                row = tx.connectors.by_name(name)
                assert row is not None
                return tx.outbox.of(row.id, **filters)  # type: ignore[arg-type]
        finally:
            runtime.close()

    def performed(self, kind: str, since: int = 0) -> int:
        return len(self.sandbox.ledger.entries(kind=kind, since_seq=since))

    def mark(self) -> int:
        return len(self.sandbox.ledger.entries())


def _overdue(world: World, platform: str, n: int, due: date, amount: str = "500.00") -> list[str]:
    """Invoices raised to `n` distinct customers with an email address, due on `due`."""
    sandbox = world.sandbox
    made: list[str] = []
    if platform == "xero":
        org = sandbox.xero.org(world.xero_tenant)
        taken = {i.contact.contact_id for i in org.invoices.values()}
        contacts = [
            c
            for c in org.contact_list
            if c.currency == "GBP" and c.email and c.contact_id not in taken
        ]
        for contact in contacts[:n]:
            inv = sandbox.event(
                "xero",
                world.xero_tenant,
                {
                    "type": "create_invoice",
                    "contact": contact.contact_id,
                    "amount": amount,
                    "currency": "GBP",
                },
            )
            ident = str(inv["InvoiceID"])
            sandbox.event(
                "xero",
                world.xero_tenant,
                {"type": "edit", "invoice": ident, "due_date": due.isoformat()},
            )
            made.append(ident)
    else:
        company = sandbox.qbo.company(world.qbo_tenant)
        taken = {str(i.customer_id) for i in company.invoices.values()}
        customers = [
            str(i) for i, c in sorted(company.customers.items()) if c.email and str(i) not in taken
        ]
        for customer in customers[:n]:
            inv = sandbox.event(
                "qbo",
                world.qbo_tenant,
                {
                    "type": "create_invoice",
                    "customer": customer,
                    "amount": amount,
                    "due_date": due.isoformat(),
                },
            )
            made.append(str(inv["invoice"]))
    assert len(made) == n
    return made


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    sandbox = make_sandbox(
        customers=12,
        invoices=0,
        start=NOW,
        qbo=QboLimits(per_second=10_000, per_minute=100_000, emails_per_day=2),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    with pytest.MonkeyPatch.context() as env, SandboxServer(sandbox) as server:
        for key, value in SECRETS.items():
            env.setenv(key, value)
        configure(level="warning", fmt="json")
        home = tmp_path / "home"
        write_home(home, server.url, f"sqlite:///{tmp_path / 'arsync.db'}")
        connect(home, "books-xero")
        connect(home, "books-qbo")
        tenants = {t.platform: t.tenant_id for t in sandbox.tenants()}
        yield World(sandbox, server, home, tenants["xero"], tenants["qbo"])


def test_a_dry_run_shows_what_would_go_and_writes_nothing(world: World) -> None:
    _overdue(world, "xero", 2, date(2026, 10, 20))
    assert arsync(world.home, "sync").returncode == 0
    before = world.mark()
    out = arsync(world.home, "run", "--once", "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "books-xero: would do 4 thing(s) now" in out.stdout
    assert out.stdout.count("30-day reminder") == 4
    assert world.mark() == before
    assert world.rows("books-xero") == []


def test_quiet_hours_are_checked_again_when_sending(world: World) -> None:
    _overdue(world, "xero", 2, date(2026, 10, 20))
    clock = world.sandbox.clock
    clock.set(datetime(2026, 11, 24, 20, 30, tzinfo=UTC))  # 20:30 London: still allowed
    runtime = world.runtime()
    try:
        config = world.config
        connector = config.connector("books-xero")
        policy = config.policy_of(connector)
        sync_connector(runtime.store, runtime.coordinator("books-xero"))
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            firm = firm_of(connector, row)
            snap = snapshot(tx, row, policy, firm, tx.now)
        result = plan(snap, policy, clock.now())
        with runtime.store.transaction() as tx:
            assert enqueue(tx, row, result, policy).added == 4
        # the dispatch comes late: 21:30 London, past the quiet hours' end (21:00)
        clock.set(datetime(2026, 11, 24, 21, 30, tzinfo=UTC))
        writer = runtime.coordinator("books-xero").connector
        assert isinstance(writer, Writer)
        before = world.mark()
        report = Dispatcher(
            store=runtime.store, row=row, writer=writer, policy=policy, firm=firm
        ).run()
        assert world.performed("email_sent", before) == 0
        assert report.released >= 2
        emails = [r for r in world.rows("books-xero", kinds=["email"])]
        assert {r.state for r in emails} == {S.READY}
        # the next morning at 08:00 London, not before
        assert {r.next_at for r in emails} == {datetime(2026, 11, 25, 8, 0, tzinfo=UTC)}
        assert all("quiet hours" in (r.reason or "") for r in emails)
        clock.set(datetime(2026, 11, 25, 8, 0, tzinfo=UTC))
        Dispatcher(store=runtime.store, row=row, writer=writer, policy=policy, firm=firm).run()
        assert world.performed("email_sent", before) == 2
    finally:
        runtime.close()


def test_nothing_is_sent_while_the_last_good_sync_is_stale(world: World) -> None:
    _overdue(world, "xero", 1, date(2026, 10, 20))
    clock = world.sandbox.clock
    runtime = world.runtime()
    try:
        config = world.config
        connector = config.connector("books-xero")
        policy = config.policy_of(connector)
        sync_connector(runtime.store, runtime.coordinator("books-xero"))
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            firm = firm_of(connector, row)
            snap = snapshot(tx, row, policy, firm, tx.now)
        with runtime.store.transaction() as tx:
            enqueue(tx, row, plan(snap, policy, clock.now()), policy)
        clock.set(NOW + timedelta(days=1, hours=1))  # 25 h after the sync
        writer = runtime.coordinator("books-xero").connector
        assert isinstance(writer, Writer)
        before = world.mark()
        report = Dispatcher(
            store=runtime.store, row=row, writer=writer, policy=policy, firm=firm
        ).run()
        assert report.stopped is not None and "last good sync" in report.stopped
        assert world.performed("email_sent", before) == 0
        assert {r.state for r in world.rows("books-xero")} == {S.READY}
    finally:
        runtime.close()


def test_a_daily_email_cap_parks_the_channel_until_the_next_day(world: World) -> None:
    # the QuickBooks sandbox here allows 2 emails a day (Intuit's own allows 40)
    _overdue(world, "qbo", 3, date(2026, 10, 20))
    before = world.mark()
    out = arsync(world.home, "run", "--once", "books-qbo")
    assert out.returncode == 0, out.stderr + out.stdout
    assert world.performed("email_sent", before) == 2
    status = arsync(world.home, "status", "books-qbo")
    assert "parked" in status.stdout and "email" in status.stdout, status.stdout
    waiting = world.rows("books-qbo", kinds=["email"], states=[S.READY])
    assert len(waiting) == 1 and "cap" in (waiting[0].reason or "")
    # the note of the capped invoice waits for its email; the others are written
    assert world.performed("note_added", before) == 2
    # the next day (after the firm's midnight in Los Angeles) the rest goes out, once
    world.sandbox.clock.set(datetime(2026, 11, 25, 18, 0, tzinfo=UTC))
    out = arsync(world.home, "run", "--once", "books-qbo")
    assert out.returncode == 0, out.stderr + out.stdout
    assert world.performed("email_sent", before) == 3
    assert world.performed("note_added", before) == 3
    assert {r.state for r in world.rows("books-qbo")} == {S.DONE}


def test_a_policy_that_wants_approval_sends_nothing_until_approved(world: World) -> None:
    strict = world.home / "config" / "policies"
    strict.mkdir(parents=True, exist_ok=True)
    from arsync.escalation.policy import builtin_text

    text = builtin_text("standard").replace("approval = false", "approval = true", 1)
    assert "approval = true" in text
    (strict / "careful.toml").write_text(text)
    conn = world.home / "connectors" / "books-xero.toml"
    conn.write_text('policy = "careful"\n' + conn.read_text())
    ids = _overdue(world, "xero", 2, date(2026, 10, 20))
    before = world.mark()
    out = arsync(world.home, "run", "--once", "books-xero")
    assert out.returncode == 0, out.stderr + out.stdout
    assert world.performed("email_sent", before) == 0
    rows = world.rows("books-xero")
    assert {r.state for r in rows} == {S.AWAITING_APPROVAL}
    listed = arsync(world.home, "outbox", "books-xero")
    assert "awaiting approval" in listed.stdout
    # one invoice's reminder is rejected, with the reason in the trail; the rest approved
    rejected = next(r for r in rows if r.kind == "email" and r.invoice_id == ids[0])
    out = arsync(world.home, "reject", rejected.id[:8], "--reason", "paying via their solicitor")
    assert out.returncode == 0, out.stderr
    out = arsync(world.home, "reject", rejected.id[:8], "--reason", "again")
    assert out.returncode == 2 and "only an action not yet begun" in out.stderr + out.stdout
    out = arsync(world.home, "approve", "--all")
    assert out.returncode == 0 and "approved" in out.stdout, out.stderr
    out = arsync(world.home, "run", "--once", "books-xero")
    assert out.returncode == 0, out.stderr + out.stdout
    emails = world.sandbox.ledger.entries(kind="email_sent", since_seq=before)
    assert [e.detail["invoice"] for e in emails] == [ids[1]]
    final = {(r.invoice_id, r.kind): r for r in world.rows("books-xero")}
    assert final[(ids[0], "email")].state is S.SKIPPED
    assert "paying via their solicitor" in (final[(ids[0], "email")].reason or "")
    # nothing of the rejected invoice's stage happened, so its note is skipped too
    assert final[(ids[0], "note")].state is S.SKIPPED
    assert final[(ids[1], "note")].state is S.DONE


def test_a_lost_email_reply_past_the_keys_window_waits_for_a_person(world: World) -> None:
    # Xero here writes nothing into History after an email (its behaviour is undocumented)
    world.sandbox.settings.xero = XeroLimits(
        per_minute=100_000, per_day=1_000_000, email_history=False
    )
    ids = _overdue(world, "xero", 1, date(2026, 10, 20))
    world.sandbox.faults.add(
        # every answer to the email is lost, the first try's and its retries' under the key
        FaultRule(FaultKind.LOST_REPLY, platform="xero", endpoint="POST */Email", times=20)
    )
    before = world.mark()
    run_once(world.config, ["books-xero"], clock=clock_of(world.sandbox))
    assert world.performed("email_sent", before) == 1
    (email,) = world.rows("books-xero", kinds=["email"])
    assert email.state is S.UNKNOWN, email
    # past the window arsync takes Xero to remember a key, nothing was sent again
    world.sandbox.clock.set(NOW + timedelta(minutes=30))
    run_once(world.config, ["books-xero"], clock=clock_of(world.sandbox))
    assert world.performed("email_sent", before) == 1
    (email,) = world.rows("books-xero", kinds=["email"])
    assert email.state is S.NEEDS_PERSON, email
    out = arsync(world.home, "status", "books-xero")
    assert "wait for a person" in out.stdout
    out = arsync(world.home, "resolve", email.id[:8], "--sent", "--reason", "seen in Xero")
    assert out.returncode == 0, out.stderr
    (email,) = world.rows("books-xero", kinds=["email"])
    assert email.state is S.DONE
    run_once(world.config, ["books-xero"], clock=clock_of(world.sandbox))
    assert world.performed("email_sent", before) == 1
    notes = world.sandbox.ledger.entries(kind="note_added", since_seq=before)
    assert [n.detail["invoice"] for n in notes] == ids


def test_a_lost_note_reply_is_settled_by_reading_back(world: World) -> None:
    ids = _overdue(world, "xero", 1, date(2026, 10, 20))
    world.sandbox.faults.add(
        FaultRule(FaultKind.LOST_REPLY, platform="xero", endpoint="PUT */History", times=1)
    )
    before = world.mark()
    run_once(world.config, ["books-xero"], clock=clock_of(world.sandbox))
    world.sandbox.clock.set(NOW + timedelta(minutes=30))
    run_once(world.config, ["books-xero"], clock=clock_of(world.sandbox))
    notes = world.sandbox.ledger.entries(kind="note_added", since_seq=before)
    assert [n.detail["invoice"] for n in notes] == ids
    (note,) = world.rows("books-xero", kinds=["note"])
    assert note.state is S.DONE
