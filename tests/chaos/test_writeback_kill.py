"""Write-back killed at chosen points by SIGKILL, or beset by faults: each email and note once."""

# Each kill is a real SIGKILL sent to a real process running `arsync run --once` when the
# sandbox's ledger records the entry chosen for it: the watcher runs before the sandbox's reply
# leaves, so the process dies without seeing that reply. In the first round of each store the
# process is the command itself; in the others it is a fork of the test's process that runs what
# the command runs (`run_once` on the configuration it loads, with its logging) and reaches the
# sandbox only over loopback, as the command does: a fork has arsync imported already, where the
# command spends a second on imports before its first request, and that is what makes room for
# the 208 kills (13 rounds of 8 on each store; the last test checks that at least 200 landed).
# After each kill the test checks where it landed, from the ledger entry that triggered it and
# from the store's outbox:
#
# - fresh: a run's first fresh read (Xero `GET /Invoices?IDs=`, the QBO query after the claim):
#   the claim committed, nothing sent, `sent_at` NULL;
# - email, note: the platform performed the write ("email_sent", "note_added") and arsync had
#   not committed it: the row claimed with `sent_at` set;
# - read-back: a later run reading back what a killed one left unknown (Xero's History, the QBO
#   queries between the sync and the first claim): nothing sent, rows still unknown;
# - batch: the 5th note of a QBO batch of 30 (the sandbox writes the whole batch regardless).
#
# The clock is the sandbox's, frozen, moved by the test only. Rounds happen on business days at
# 18:00 UTC: 18:00 in London, 10:00 in Los Angeles, inside both companies' quiet hours (08:00 to
# 21:00 in the standard policy); a lease (15 minutes) is passed by moving 16 minutes, so a
# round ends before 19:00 in London.

from __future__ import annotations

import contextlib
import dataclasses
import functools
import gc
import importlib
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, Row, create_engine, func, select
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arsync.config import load
from arsync.connectors.base import load_builtin
from arsync.escalation.policy import builtin_text
from arsync.logs import configure
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sandbox.faults import FaultKind
from arsync.sandbox.ledger import LedgerEntry
from arsync.store.schema import connectors, outbox, sync_runs
from arsync.store.states import OutboxState
from arsync.writeback.dispatch import marker
from arsync.writeback.run import render_units, run_once
from tests.e2e.test_sync_e2e import ARSYNC, SECRETS, arsync, connect, write_home
from tests.support import make_sandbox

S = OutboxState
PLATFORMS = ("qbo", "xero")
#: the rounds' days: business days in London and in California (not Thanksgiving, nor the day
#: after, a holiday in California), all within 25 days of the first: no invoice raised in a round
#: reaches its next stage in a later one
DAYS = (
    date(2026, 11, 24),
    date(2026, 11, 25),
    date(2026, 11, 30),
    date(2026, 12, 1),
    date(2026, 12, 2),
    date(2026, 12, 3),
    date(2026, 12, 4),
    date(2026, 12, 7),
    date(2026, 12, 8),
    date(2026, 12, 9),
    date(2026, 12, 10),
    date(2026, 12, 11),
    date(2026, 12, 14),
)
#: rounds on each store, 8 kills each: 13 on both stores make 208 kills. A run killed as an
#: `arsync run --once` process costs its start (about a second of imports before its first
#: request): only the first round's are; the others' runs are forks of this process, with
#: arsync imported already, which cost only their work
ROUNDS = 13
LEASE_PASSED = timedelta(minutes=16)
#: due dates that make a stage of the standard policy due on the day: the reminder three days
#: before, the 30-day reminder (35 days late) and the 60-day call and reminder (65 days late)
DUE_IN = (3, -35, -65)
#: past this many actions a run, the planner has the rest wait for approval: raised here, where
#: a round plans more
CAP = "max_actions_per_run = 50"
QBO_QUERY = "POST /v3/company/{realmId}/query"
XERO_INVOICES = "GET /api.xro/2.0/Invoices"
XERO_HISTORY = "GET /api.xro/2.0/Invoices/{InvoiceID}/History"
WRITES = ("email_sent", "note_added")
#: real-time limits (time.monotonic) of a killed run: to reach the sandbox, to be killed, and
#: for the sandbox to end the killed request; and the pause between looks
FIRST_REQUEST = 30.0
KILLED_WITHIN = 120.0
ANSWERED_WITHIN = 60.0
POLL = 0.005
PENDING = (S.PLANNED, S.AWAITING_APPROVAL, S.READY, S.CLAIMED, S.RETRYING, S.UNKNOWN)


# -- the world ---------------------------------------------------------------------------------
@dataclass
class World:
    sandbox: Sandbox
    home: Path
    engine: Engine
    tenants: dict[str, str]
    #: the connector's id in the store, by platform
    ids: dict[str, int]
    #: customers never contacted, by platform (the policy spaces a customer's contacts a week)
    pool: dict[str, list[str]]
    #: invoice → the ledger's last entry when its payment was recorded
    paid: dict[str, int] = field(default_factory=dict)
    #: actions the test expects to wait for a person
    person: set[str] = field(default_factory=set)
    #: actions the platform performed whose run was killed before it committed them
    unheard: set[str] = field(default_factory=set)
    kills: Counter[str] = field(default_factory=Counter)

    # -- the store, as it is now
    def rows(self, platform: str, *states: OutboxState, kind: str | None = None) -> list[Row[Any]]:
        query = select(outbox).where(outbox.c.connector_id == self.ids[platform])
        if states:
            query = query.where(outbox.c.state.in_([s.value for s in states]))
        if kind is not None:
            query = query.where(outbox.c.kind == kind)
        with self.engine.connect() as conn:
            return list(conn.execute(query.order_by(outbox.c.id)))

    def claimed_by(self, platform: str, pid: int) -> list[Row[Any]]:
        return [r for r in self.rows(platform, S.CLAIMED) if f":{pid}:" in (r.lease_owner or "")]

    def last_sync(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(select(func.max(sync_runs.c.id))).scalar_one() or 0)

    def synced(self, platform: str, after: int) -> bool:
        """Has a sync of `platform` begun after sync run `after`, and ended?"""
        with self.engine.connect() as conn:
            outcomes = conn.execute(
                select(sync_runs.c.outcome).where(
                    sync_runs.c.connector_id == self.ids[platform], sync_runs.c.id > after
                )
            ).scalars()
            return any(o != "running" for o in outcomes)

    # -- the ledger
    def writes(self, platform: str | None = None, since: int = 0) -> list[LedgerEntry]:
        entries = self.sandbox.ledger.entries(since_seq=since, platform=platform)
        return [e for e in entries if e.kind in WRITES]

    def action_of(self, entry: LedgerEntry, rows: list[Row[Any]] | None = None) -> Row[Any]:
        """The outbox row a write was made for (among `rows`, by default the platform's): its
        key, or for a QBO note (a batch's items carry no key of their own) its text's marker."""
        rows = self.rows(entry.platform) if rows is None else rows
        if entry.platform == "qbo" and entry.kind == "note_added":
            text = str(entry.detail.get("note"))
            found = [r for r in rows if r.kind == "note" and marker(r.id) in text]
        else:
            found = [r for r in rows if r.id == entry.idempotency_key]
        assert len(found) == 1, (entry, found)
        return found[0]

    # -- the sandbox
    def later(self, delta: timedelta) -> None:
        self.sandbox.clock.advance(delta)

    def raise_invoices(self, platform: str, count: int) -> list[str]:
        """`count` invoices to customers not contacted yet, a third at each stage due today."""
        sandbox, tenant = self.sandbox, self.tenants[platform]
        today = sandbox.clock.now().date()  # at 18:00 UTC, the day in London and in LA
        made: list[str] = []
        for n in range(count):
            customer = self.pool[platform].pop(0)
            due = (today + timedelta(days=DUE_IN[n % 3])).isoformat()
            amount = f"{150 + 7 * n}.00"
            if platform == "qbo":
                event = {"type": "create_invoice", "customer": customer, "amount": amount}
                made.append(
                    str(sandbox.event("qbo", tenant, {**event, "due_date": due})["invoice"])
                )
                continue
            event = {"type": "create_invoice", "contact": customer, "amount": amount}
            ident = str(sandbox.event("xero", tenant, {**event, "currency": "GBP"})["InvoiceID"])
            sandbox.event("xero", tenant, {"type": "edit", "invoice": ident, "due_date": due})
            made.append(ident)
        return made

    def pay(self, platform: str, invoice: str) -> None:
        self.sandbox.event(
            platform, self.tenants[platform], {"type": "payment", "invoice": invoice}
        )
        self.paid[invoice.lower()] = self.sandbox.ledger.last_seq

    def xero_limits(self, **changes: Any) -> None:
        self.sandbox.settings.xero = dataclasses.replace(self.sandbox.settings.xero, **changes)


def limits() -> dict[str, Any]:
    # Rate limits out of the way (the frozen clock's minute never ends), and no daily email cap
    # on QBO (Intuit's sandbox has 40): a round sends more than that in a day.
    return {
        "qbo": QboLimits(
            per_second=10_000, per_minute=100_000, batch_per_minute=10_000, emails_per_day=None
        ),
        "xero": XeroLimits(per_minute=100_000, per_day=1_000_000, app_per_minute=100_000),
    }


@contextlib.contextmanager
def opened(
    tmp_path: Path,
    db_url: str,
    *,
    customers: int = 500,
    wrap: Any = None,
    xero: XeroLimits | None = None,
    synced: bool = True,
    xero_window: str | None = None,
) -> Iterator[World]:
    """Two linked companies with `customers` each and no invoice, at 18:00 UTC on the first day;
    `synced`: after a first run (a full sync, nothing due)."""
    first = datetime.combine(DAYS[0], datetime.min.time(), UTC) + timedelta(hours=18)
    chosen = limits()
    sandbox = make_sandbox(
        customers=customers,
        invoices=0,
        start=first - timedelta(days=1),
        qbo=chosen["qbo"],
        xero=xero or chosen["xero"],
    )
    engine = create_engine(db_url)
    try:
        with SandboxServer(sandbox, wrap=wrap) as server:
            home = tmp_path / "home"
            write_home(home, server.url, db_url)
            policy = builtin_text("standard")
            assert CAP in policy
            (home / "config" / "policies").mkdir()
            (home / "config" / "policies" / "standard.toml").write_text(
                policy.replace(CAP, "max_actions_per_run = 1000")
            )
            if xero_window is not None:
                # what the firm tells arsync of Xero's idempotency window
                conn_file = home / "connectors" / "books-xero.toml"
                conn_file.write_text(
                    conn_file.read_text().replace(
                        "[limits]\n", f'[limits]\nidempotency_window = "{xero_window}"\n'
                    )
                )
            connect(home, "books-qbo")
            connect(home, "books-xero")
            tenants = {t.platform: t.tenant_id for t in sandbox.tenants()}
            company = sandbox.qbo.company(tenants["qbo"])
            org = sandbox.xero.org(tenants["xero"])
            pool = {
                # QBO's customers are all in California; Xero's in pounds in the UK
                "qbo": [str(i) for i, c in sorted(company.customers.items()) if c.email],
                "xero": [c.contact_id for c in org.contact_list if c.currency == "GBP" and c.email],
            }
            with engine.connect() as conn:
                ids = {
                    str(r.platform): int(r.id)
                    for r in conn.execute(select(connectors.c.id, connectors.c.platform))
                }
            sandbox.clock.set(first)
            world = World(sandbox, home, engine, tenants, ids, pool)
            if synced:
                settled(world)
            yield world
    finally:
        engine.dispose()


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    # each round invoices 38 QBO customers never contacted (and 12 Xero ones): 600 have 511
    # with an email address
    with opened(tmp_path, db_url, customers=600) as made:
        yield made


def settled(world: World) -> None:
    """`arsync run --once`, left to finish."""
    done = arsync(world.home, "run", "--once")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def settle_all(world: World) -> None:
    """Runs, each after a lease, until nothing is left to do."""
    for _ in range(6):
        world.later(LEASE_PASSED)
        settled(world)
        if not any(world.rows(p, *PENDING) for p in PLATFORMS):
            return
    left = [(r.id, r.kind, r.state, r.reason) for p in PLATFORMS for r in world.rows(p, *PENDING)]
    raise AssertionError(f"still pending after six runs: {left}")


# -- kill points -------------------------------------------------------------------------------
@dataclass
class Run:
    """One `arsync run --once` process, watched."""

    world: World
    #: the ledger's last entry and the store's last sync run before it started
    since: int
    synced_before: int
    pid: int = 0
    seen: int = 0
    #: the entry that killed it, and the killed request's end in the ledger
    entry: LedgerEntry | None = None
    answered: bool = False
    #: it has reached the sandbox; it has been reaped
    started: bool = False
    over: bool = False


@dataclass(frozen=True)
class Point:
    """A kill point: the `nth` ledger entry of a run that `hits`; `landed` checks it."""

    platform: str
    nth: int = 1

    @property
    def name(self) -> str:
        return f"{type(self).__name__.lower()}:{self.platform}"

    def hits(self, run: Run, entry: LedgerEntry) -> bool:
        raise NotImplementedError

    def landed(self, run: Run) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Fresh(Point):
    """The claim committed, the fresh read asked for, nothing sent yet."""

    def hits(self, run: Run, entry: LedgerEntry) -> bool:
        if entry.kind != "request" or entry.platform != self.platform:
            return False
        if self.platform == "xero":
            read = entry.endpoint == XERO_INVOICES and "IDs=" in str(entry.detail.get("query"))
        else:
            read = entry.endpoint == QBO_QUERY
        w = run.world
        return (
            read
            and not w.writes(self.platform, run.since)
            and bool(w.claimed_by(self.platform, run.pid))
        )

    def landed(self, run: Run) -> None:
        claimed = run.world.claimed_by(self.platform, run.pid)
        assert claimed, "nothing claimed"
        assert [r.id for r in claimed if r.sent_at is not None] == []
        assert run.world.writes(self.platform, run.since) == []


@dataclass(frozen=True)
class Wrote(Point):
    """The platform performed the write (`kind` in the ledger); arsync never heard back."""

    kind: str = "email_sent"

    @property
    def name(self) -> str:
        return f"{self.kind.split('_')[0]}:{self.platform}"

    def hits(self, run: Run, entry: LedgerEntry) -> bool:
        return entry.kind == self.kind and entry.platform == self.platform

    def landed(self, run: Run) -> None:
        assert run.entry is not None
        w = run.world
        row = w.action_of(run.entry)
        assert row.state == S.CLAIMED.value and row.sent_at is not None, row
        assert f":{run.pid}:" in row.lease_owner
        # every write the platform performed for this run and arsync did not commit: each must
        # be found when read back, never written again
        rows = w.rows(self.platform)
        for entry in w.writes(self.platform, run.since):
            action = w.action_of(entry, rows)
            if action.state == S.CLAIMED.value:
                assert action.sent_at is not None
                w.unheard.add(action.id)


@dataclass(frozen=True)
class Batch(Wrote):
    """The 5th note of a QBO batch of 30; the platform writes the whole batch."""

    platform: str = "qbo"
    nth: int = 5
    kind: str = "note_added"

    @property
    def name(self) -> str:
        return "batch:qbo"

    def landed(self, run: Run) -> None:
        super().landed(run)
        w = run.world
        batch = {r.id for r in w.claimed_by("qbo", run.pid) if r.kind == "note"}
        assert len(batch) == 30
        assert batch <= w.unheard  # all 30 written, none committed


@dataclass(frozen=True)
class ReadBack(Point):
    """A run reading back what a killed one left unknown, killed there."""

    def hits(self, run: Run, entry: LedgerEntry) -> bool:
        if entry.kind != "request" or entry.platform != self.platform:
            return False
        if self.platform == "xero":
            return entry.endpoint == XERO_HISTORY  # asked only to read back
        # QBO reads back with queries, after the sync and before any claim
        w = run.world
        return (
            entry.endpoint == QBO_QUERY
            and w.synced("qbo", run.synced_before)
            and not w.claimed_by("qbo", run.pid)
            and bool(w.rows("qbo", S.UNKNOWN))
        )

    def landed(self, run: Run) -> None:
        w = run.world
        assert w.rows(self.platform, S.UNKNOWN)
        assert w.claimed_by(self.platform, run.pid) == []
        assert w.writes(self.platform, run.since) == []


def killed(world: World, point: Point, *, cli: bool) -> Run:
    """A run killed at `point` and checked to have died there: `arsync run --once` itself
    (`cli`), or what it runs in a fork of this process."""
    run = Run(world, world.sandbox.ledger.last_seq, world.last_sync())
    # taken by the watcher (in the sandbox's threads) and by the reaping here: a kill never
    # reaches a process reaped already, whose id may be another's by then
    lock = threading.Lock()

    def watch(entry: LedgerEntry) -> None:
        with lock:
            if not run.pid:
                return
            run.started = True
            if run.entry is not None:
                # the sandbox goes on with the killed request (a whole batch) to its end
                if entry.kind == "request" and entry.platform == run.entry.platform:
                    run.answered = True
                return
            if run.over or not point.hits(run, entry):
                return
            run.seen += 1
            if run.seen == point.nth:
                os.kill(run.pid, signal.SIGKILL)
                run.entry = entry
                if entry.kind == "request":
                    run.answered = True

    said = world.home / "run.out"
    stop = world.sandbox.ledger.watch(watch)
    try:
        with lock:
            if cli:
                with said.open("wb") as out:
                    proc = subprocess.Popen(
                        [*ARSYNC, "run", "--once", "--home", str(world.home)],
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        env={**os.environ, **SECRETS},
                    )
                run.pid, poll = proc.pid, proc.poll
            else:
                run.pid = forked(world, said)
                poll = functools.partial(reaped, run.pid)
        code = ended(run, lock, poll, said, point)
        assert run.entry is not None, (
            f"{point.name}: the run ended ({code}) before its kill point ({world.kills} before "
            "it): " + said.read_text()[-4000:]
        )
        assert code == -signal.SIGKILL
        deadline = time.monotonic() + ANSWERED_WITHIN
        while not run.answered:
            assert time.monotonic() < deadline, "the sandbox never finished the killed request"
            time.sleep(POLL)
    finally:
        stop()
    point.landed(run)
    world.kills[point.name] += 1
    return run


def ended(
    run: Run, lock: threading.Lock, poll: Callable[[], int | None], said: Path, point: Point
) -> int:
    """How the run's process ended (-9: killed), reaped by polling against a real-time deadline
    (the suite also runs under a faked clock, where timed waits on locks misbehave); one that
    never reaches the sandbox (a lock held at the fork) or is never killed fails loudly."""
    begun = time.monotonic()
    while True:
        with lock:
            code = poll()
            run.over = code is not None
            started = run.started
        if code is not None:
            return code
        waited = time.monotonic() - begun
        if (not started and waited > FIRST_REQUEST) or waited > KILLED_WITHIN:
            with lock:
                run.over = True
                os.kill(run.pid, signal.SIGKILL)
                while poll() is None:
                    time.sleep(POLL)
            what = "never reached the sandbox" if not started else "was never killed"
            pytest.fail(
                f"{point.name}: the run (pid {run.pid}) {what} in {waited:.0f} s: "
                + said.read_text(errors="replace")[-4000:]
            )
        time.sleep(POLL)


def reaped(pid: int) -> int | None:
    """A forked child's exit code once it has ended (-9: killed), as `Popen.poll` gives it."""
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None


@functools.cache
def warmed() -> None:
    """What `run_once` imports on its way (the connectors, the commands, every country's public
    holidays), imported here once instead of in every child."""
    load_builtin()
    for module in ("arsync.commands", "arsync.collecting", "holidays.countries"):
        importlib.import_module(module)


def forked(world: World, said: Path) -> int:
    """What `arsync run --once` runs (`run_once` on the configuration it loads, with its
    logging), in a fork of this process, which has arsync imported already: no second's worth
    of imports before its first request. Its output goes to `said`, not into the test's
    captured output. Nothing of the test's crosses the fork: its store connections are closed
    first, the garbage collector never reaches (and so never closes) what the child inherits,
    and the sandbox, served by this process's threads, the child reaches only over loopback."""
    warmed()
    world.engine.dispose()
    gc.freeze()
    try:
        pid = os.fork()
    except BaseException:
        gc.unfreeze()
        raise
    if pid:
        gc.unfreeze()
        return pid
    code = 70
    try:
        out = os.open(said, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        sys.stdout = sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.update(SECRETS)
        config = load(world.home)
        configure(level=config.settings.log.level, fmt=config.settings.log.format)
        reports = run_once(config, [])
        print(render_units(reports, dry_run=False))
        code = max((r.exit_code for r in reports), default=0)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        os._exit(code)


def unsent_email(world: World, platform: str, run: Run) -> str:
    """An invoice whose email the killed run had claimed and not sent."""
    rows = world.claimed_by(platform, run.pid)
    emails = sorted(str(r.invoice_id) for r in rows if r.kind == "email" and r.sent_at is None)
    assert emails
    return emails[0]


# -- exactly once ------------------------------------------------------------------------------
def invoice_of(entry: LedgerEntry) -> str:
    refs = entry.detail.get("refs")  # a QBO note: the attachable's links
    if refs:
        return str(refs[0]).split(":", 1)[1]
    return str(entry.detail.get("invoice")).lower()


def exactly_once(world: World) -> None:
    """No key performed twice; each email and note done performed once and nothing else
    performed; nothing for an invoice after its payment; every action settled; what a killed
    run left unheard found by reading back."""
    ledger = world.sandbox.ledger
    emails = ledger.entries(kind="email_sent")
    keys = Counter(str(e.idempotency_key) for e in emails)
    assert [k for k, n in keys.items() if n > 1] == [], "an email performed twice"
    assert all(e.idempotency_key for e in emails)
    final = {S.DONE.value, S.SKIPPED.value}
    for platform in PLATFORMS:
        rows = world.rows(platform)
        assert [(r.id, r.state) for r in rows if r.state not in final] == []
        by_id = {r.id: r for r in rows}
        done = {r.id for r in rows if r.kind in ("email", "note") and r.state == S.DONE.value}
        writes = Counter(world.action_of(e, rows).id for e in world.writes(platform))
        assert [a for a, n in writes.items() if n > 1] == [], "a write performed twice"
        assert set(writes) == done
        # one email and one note per invoice and stage
        stages = Counter((by_id[a].invoice_id, by_id[a].stage, by_id[a].kind) for a in writes)
        assert [s for s, n in stages.items() if n > 1] == []
        for action in world.unheard & set(by_id):
            row = by_id[action]
            assert row.state == S.DONE.value, row
            assert row.result.get("read_back") or row.reason_code == "person_sent", row
    for entry in [*emails, *ledger.entries(kind="note_added")]:
        paid_at = world.paid.get(invoice_of(entry))
        assert paid_at is None or entry.seq < paid_at, f"{entry} after the invoice was paid"
    for platform in PLATFORMS:
        for row in world.rows(platform, kind="email"):
            if str(row.invoice_id).lower() in world.paid:
                assert (row.state, row.reason_code) == (S.SKIPPED.value, "paid")


# -- the kills ---------------------------------------------------------------------------------
def a_round(world: World, day: date, *, cli: bool, email_history: bool = True) -> None:
    """Fresh invoices on `day` and a run killed at each kind of point; what a round leaves (Xero's
    last notes) the next round's runs settle before they are killed elsewhere."""
    world.sandbox.clock.set(datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=18))
    world.xero_limits(email_history=True)

    # 30 QBO invoices emailed (and 10 calls), their 30 notes in one batch, killed at its 5th
    world.raise_invoices("qbo", 30)
    world.raise_invoices("xero", 12)
    killed(world, Batch(), cli=cli)
    # QBO's batch is claimed: the next run goes on to Xero, killed at its fresh read; then a
    # new QBO wave, killed the same way; an invoice claimed and not emailed is paid each time
    run = killed(world, Fresh("xero"), cli=cli)
    world.pay("xero", unsent_email(world, "xero", run))
    world.raise_invoices("qbo", 8)
    run = killed(world, Fresh("qbo"), cli=cli)
    world.pay("qbo", unsent_email(world, "qbo", run))

    world.later(LEASE_PASSED)
    # the batch's notes are unknown: read back (killed), read back again and found; the claims
    # without a write are released: QBO's wave and Xero's are emailed, killed at the 3rd email
    killed(world, ReadBack("qbo"), cli=cli)
    killed(world, Wrote("qbo", 3), cli=cli)
    world.xero_limits(email_history=email_history)
    run = killed(world, Wrote("xero", 3), cli=cli)
    if not email_history:
        assert run.entry is not None
        # Xero keeps no record of that email, and its key's window will have passed
        world.person.add(str(run.entry.idempotency_key))

    world.later(LEASE_PASSED)
    # QBO finds its unknown email in DeliveryInfo and finishes; Xero reads its unknown email
    # back (killed), again (found, or left for a person), emails the rest and is killed at the
    # 4th note of this round: the notes the last round's kill left unwritten go first (read back
    # as missing, they wait a minute to be retried), and are not caught by a kill again, which
    # would count as another try each time
    killed(world, ReadBack("xero"), cli=cli)
    retried = len(world.rows("xero", S.RETRYING, kind="note"))
    killed(world, Wrote("xero", retried + 4, "note_added"), cli=cli)
    assert {r.id for p in PLATFORMS for r in world.rows(p, S.NEEDS_PERSON)} == world.person
    for action in sorted(world.person):
        # what a person does: finds the email among those the company sent, and says so
        said = arsync(world.home, "resolve", action, "--sent", "-r", "found in the sent mail")
        assert said.returncode == 0, said.stdout + said.stderr
    world.person.clear()


#: the kills of the test below on each store, by point: together at least WANTED
KILLS: dict[str, Counter[str]] = {}
WANTED = 200
#: the kill points of one round
ROUND = Counter(
    {
        "batch:qbo": 1,
        "fresh:xero": 1,
        "fresh:qbo": 1,
        "readback:qbo": 1,
        "email:qbo": 1,
        "email:xero": 1,
        "readback:xero": 1,
        "note:xero": 1,
    }
)


def test_runs_killed_at_chosen_points_write_each_email_and_note_once(
    world: World, db_url: str
) -> None:
    KILLS["sqlite" if db_url.startswith("sqlite") else "postgresql"] = world.kills
    for n, day in enumerate(DAYS[:ROUNDS]):
        # the first round's runs are `arsync run --once` processes, the others' forks of this
        # one; in the second round Xero writes no record of an API email into History
        a_round(world, day, cli=n == 0, email_history=n != 1)
    settle_all(world)
    exactly_once(world)
    expected = Counter({k: n * ROUNDS for k, n in ROUND.items()})
    assert world.kills == expected, f"kills by point: {dict(world.kills)}"


def test_the_runs_killed_on_both_stores_add_up_to_200_sigkills() -> None:
    """The test above, on each store, each kill checked to have landed where it was aimed."""
    if set(KILLS) != {"sqlite", "postgresql"}:
        pytest.skip("counts the kills of the test above on both stores, run before it")
    total = sum(sum(kills.values()) for kills in KILLS.values())
    by_point = {store: dict(sorted(kills.items())) for store, kills in sorted(KILLS.items())}
    assert total >= WANTED, f"{total} SIGKILLs, by store and point: {by_point}"


# -- faults ------------------------------------------------------------------------------------
class AfterPerforming:
    """A layer before the sandbox that answers 503 once the sandbox has performed a request (the
    fault plan can only drop such a reply): `arm("PUT", "/History", 2)`."""

    def __init__(self) -> None:
        self.armed: dict[tuple[str, str], int] = {}
        self.fired = 0

    def arm(self, method: str, suffix: str, times: int) -> None:
        self.armed[(method, suffix)] = times

    def __call__(self, app: ASGIApp) -> ASGIApp:
        async def layer(scope: Scope, receive: Receive, send: Send) -> None:
            path = str(scope.get("path", ""))
            armed = next(
                (
                    (method, suffix)
                    for (method, suffix), left in self.armed.items()
                    if left and scope.get("method") == method and path.endswith(suffix)
                ),
                None,
            )
            if scope["type"] != "http" or armed is None:
                await app(scope, receive, send)
                return
            held: list[Message] = []

            async def hold(message: Message) -> None:
                held.append(message)

            await app(scope, receive, hold)
            if not held or not 200 <= int(held[0]["status"]) < 300:
                # refused or faulted by the sandbox: nothing performed, passed on as it is
                for message in held:
                    await send(message)
                return
            self.armed[armed] -= 1
            self.fired += 1
            start = {"type": "http.response.start", "status": 503, "headers": []}
            await send(start)
            await send({"type": "http.response.body", "body": b""})

        return layer


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'arsync.db'}"


def test_lost_replies_5xx_and_429_storms_write_each_email_and_note_once(tmp_path: Path) -> None:
    # Xero remembers a key for a day here, longer than arsync assumes (5 minutes)
    layer = AfterPerforming()
    xero = dataclasses.replace(limits()["xero"], idempotency_window=timedelta(days=1))
    db = sqlite_url(tmp_path)
    with opened(tmp_path, db, customers=60, wrap=layer, xero=xero, synced=False) as world:
        world.raise_invoices("qbo", 30)
        world.raise_invoices("xero", 15)
        add = world.sandbox.faults.add
        status_503 = {"status": 503}
        one_second = {"retry_after": 1}
        # QBO's sends: replies lost after it performed them, 503s before, 429s; its batch of
        # notes answered 503 after it was written
        add(kind=FaultKind.LOST_REPLY, platform="qbo", endpoint="* */send", times=2)
        add(
            kind=FaultKind.SERVER_ERROR,
            platform="qbo",
            endpoint="* */send",
            skip=4,
            times=2,
            params=status_503,
        )
        # QBO's 429 carries no Retry-After, so arsync waits a minute on its own clock, which
        # runs ahead of the sandbox's frozen one: two keep it inside the read-back's margin
        add(kind=FaultKind.RATE_LIMIT, platform="qbo", endpoint="* */send", skip=6, times=2)
        layer.arm("POST", "/batch", 1)
        # Xero's emails: the same, and a storm of 429s longer than arsync's six tries, which
        # leaves that email for a later run
        add(kind=FaultKind.LOST_REPLY, platform="xero", endpoint="* */Email", times=2)
        add(
            kind=FaultKind.SERVER_ERROR,
            platform="xero",
            endpoint="* */Email",
            skip=3,
            times=2,
            params=status_503,
        )
        add(
            kind=FaultKind.RATE_LIMIT,
            platform="xero",
            endpoint="* */Email",
            skip=5,
            times=3,
            params=one_second,
        )
        add(
            kind=FaultKind.RATE_LIMIT,
            platform="xero",
            endpoint="* */Email",
            skip=9,
            times=6,
            params=one_second,
        )
        # Xero's notes: answered 503 after they were written, and a short 429 storm
        layer.arm("PUT", "/History", 2)
        add(
            kind=FaultKind.RATE_LIMIT,
            platform="xero",
            endpoint="PUT */History",
            skip=4,
            times=3,
            params=one_second,
        )
        # reads, retried inside the call
        add(kind=FaultKind.SERVER_ERROR, platform="qbo", endpoint="POST */query", times=2)
        add(kind=FaultKind.DROP, platform="xero", endpoint="GET */Invoices", skip=1, times=1)

        settled(world)
        settle_all(world)
        exactly_once(world)
        rules = world.sandbox.faults.rules
        assert [(r.kind, r.endpoint) for r in rules if r.fired != r.times] == []
        assert layer.fired == 3
        # each reply lost after the platform performed it was asked again under its key, and
        # answered from the platform's memory
        assert world.sandbox.ledger.count(kind="replayed") >= 2 + 1 + 2 + 2
        assert world.sandbox.ledger.count(kind="email_sent") == 30 + 15


# -- what arsync cannot keep today -------------------------------------------------------------
def performed_twice(world: World) -> list[tuple[str, str]]:
    keys = Counter(
        (e.kind, str(e.idempotency_key))
        for e in world.sandbox.ledger.entries()
        if e.kind in WRITES and e.idempotency_key
    )
    return [key for key, n in keys.items() if n > 1]


def test_a_lost_email_reply_on_a_xero_without_replays_is_not_sent_twice(tmp_path: Path) -> None:
    # Xero here honours no key at all, and the firm has said so in the connector file
    xero = dataclasses.replace(limits()["xero"], idempotency_window=timedelta(0))
    with opened(
        tmp_path, sqlite_url(tmp_path), customers=20, xero=xero, synced=False, xero_window="0s"
    ) as world:
        world.raise_invoices("xero", 3)
        world.sandbox.faults.add(
            kind=FaultKind.LOST_REPLY, platform="xero", endpoint="* */Email", times=1
        )
        settled(world)
        assert performed_twice(world) == []


def test_an_unknown_xero_email_is_not_resent_after_xero_forgets_its_key(tmp_path: Path) -> None:
    # Xero writes no record of an API email into History here: only the key's window can tell
    xero = dataclasses.replace(limits()["xero"], email_history=False)
    with opened(tmp_path, sqlite_url(tmp_path), customers=20, xero=xero, synced=False) as world:
        world.raise_invoices("xero", 3)
        # every try's reply lost: the first performed, the others replayed; then unknown
        world.sandbox.faults.add(
            kind=FaultKind.LOST_REPLY, platform="xero", endpoint="* */Email", times=6
        )
        settled(world)
        assert len(world.rows("xero", S.UNKNOWN, kind="email")) == 1
        world.later(timedelta(minutes=4))
        # read back 4 minutes after: inside the window, so resent at once under the key, and
        # Xero answers with the first reply instead of sending again
        settled(world)
        assert len(world.rows("xero", S.DONE, kind="email")) == 3
        assert world.sandbox.ledger.count(platform="xero", kind="replayed") >= 1
        world.later(LEASE_PASSED)
        settled(world)
        assert performed_twice(world) == []
        assert [e.kind for e in world.writes("xero")].count("email_sent") == 3


def test_a_429_storm_amid_xero_notes_writes_no_note_twice(tmp_path: Path) -> None:
    with opened(tmp_path, sqlite_url(tmp_path), customers=20, synced=False) as world:
        world.raise_invoices("xero", 3)
        # the first note goes; the second meets more 429s than arsync tries
        world.sandbox.faults.add(
            kind=FaultKind.RATE_LIMIT,
            platform="xero",
            endpoint="PUT */History",
            skip=1,
            times=6,
            params={"retry_after": 1},
        )
        settled(world)
        assert [e.kind for e in world.writes("xero")].count("note_added") == 1
        # the written note is done; only the two not written wait for their retry
        assert len(world.rows("xero", S.DONE, kind="note")) == 1
        assert len(world.rows("xero", S.RETRYING, kind="note")) == 2
        world.later(LEASE_PASSED)
        settled(world)  # the three notes again, past Xero's six minutes
        assert performed_twice(world) == []
