"""Syncs killed (SIGKILL) at chosen points resume to a store equal to the books, with nothing
recorded twice.

Each kill lands where the test says, and the test checks that it did:
- at the Nth API request, counted in the sandbox's ledger: the sandbox has the request, the
  process dies before the answer reaches it, and the store shows the sync run still "running"
  with the pages before it committed (so the kill was mid-sync, not at start-up or after the end);
- inside a page's transaction: the process is held inside the transaction that applies a page
  (on PostgreSQL by a row lock the test holds; on SQLite by a trigger that will not finish), seen
  to be there (a backend waiting on the lock; a write lock held), and killed; the page and its
  cursor are then found not committed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select, text

from arsync.domain import Kind
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sandbox.ledger import LedgerEntry
from arsync.store.schema import events, sync_runs
from tests.books import actual, differences, expected
from tests.e2e.test_sync_e2e import ARSYNC, SECRETS, arsync, connect, write_home
from tests.support import connector_row, make_sandbox, store_for

#: what an API call of each platform looks like in the ledger (not OAuth, not the control plane)
API = {"qbo": "/v3/company/", "xero": "/api.xro/2.0/"}


@dataclass
class World:
    sandbox: Sandbox
    home: Path
    url: str
    engine: Engine

    def runs(self, name: str) -> list[tuple[str, int]]:
        """(outcome, pages committed) of every sync run of connector `name`, oldest first."""
        with self.engine.connect() as conn:
            return [
                (str(r.outcome), int(r.pages))
                for r in conn.execute(
                    text(
                        "SELECT r.outcome, r.pages FROM sync_runs r JOIN connectors c "
                        "ON c.id = r.connector_id WHERE c.name = :n ORDER BY r.id"
                    ),
                    {"n": name},
                )
            ]

    def api_calls(self, platform: str) -> int:
        return sum(
            1
            for e in self.sandbox.ledger.entries(platform=platform, kind="request")
            if API[platform] in (e.endpoint or "")
        )


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[World]:
    sandbox = make_sandbox(
        customers=60,
        invoices=2600,
        # small Xero pages, so a sync has many pages to be killed between
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000, max_page_size=100),
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
    )
    engine = create_engine(db_url)
    with SandboxServer(sandbox) as server:
        home = tmp_path / "home"
        write_home(home, server.url, db_url)
        connect(home, "books-qbo")
        connect(home, "books-xero")
        yield World(sandbox, home, db_url, engine)
    engine.dispose()


def start_sync(world: World, name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*ARSYNC, "sync", name, "--home", str(world.home)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **SECRETS},
    )


def at_request(
    world: World, platform: str, n: int, act: Callable[[LedgerEntry], None]
) -> Callable[[], None]:
    """Run `act` when the Nth API request from now reaches the sandbox (before its answer
    leaves); returns what stops watching."""
    seen = 0
    lock = threading.Lock()

    def watch(entry: LedgerEntry) -> None:
        nonlocal seen
        if entry.kind != "request" or API[platform] not in (entry.endpoint or ""):
            return
        with lock:
            seen += 1
            if seen != n:
                return
        act(entry)

    return world.sandbox.ledger.watch(watch)


def killed_at_request(world: World, name: str, platform: str, n: int) -> None:
    """`arsync sync NAME`, killed when its Nth API request reaches the sandbox."""
    proc = start_sync(world, name)
    fired = threading.Event()

    def kill(_entry: LedgerEntry) -> None:
        os.kill(proc.pid, signal.SIGKILL)
        fired.set()

    stop = at_request(world, platform, n, kill)
    try:
        proc.wait(timeout=120)
    finally:
        stop()
    # It died of the kill, at that request: not before it started, not after it finished.
    assert fired.is_set(), f"the sync finished before its request {n}"
    assert proc.returncode == -signal.SIGKILL


def no_event_twice(world: World) -> None:
    with world.engine.connect() as conn:
        trail = conn.execute(
            select(events.c.entity, events.c.external_id, events.c.action, events.c.detail).where(
                events.c.entity != "connector"
            )
        ).all()
        imported = conn.execute(
            select(events.c.connector_id, events.c.entity, events.c.detail).where(
                events.c.action == "imported"
            )
        ).all()
    seen = Counter(
        (entity, ext, action, json.dumps(detail, sort_keys=True))
        for entity, ext, action, detail in trail
    )
    assert [event for event, n in seen.items() if n > 1] == []
    ids: dict[tuple[int, str], list[str]] = {}
    for connector_id, entity, detail in imported:
        ids.setdefault((connector_id, entity), []).extend(detail["ids"])
    for key, listed in ids.items():
        assert len(listed) == len(set(listed)), f"{key}: a record imported twice"


def books_equal_store(world: World) -> None:
    store = store_for(world.sandbox, world.url)
    try:
        for tenant in world.sandbox.tenants():
            row = connector_row(store, f"books-{tenant.platform}")
            assert row is not None
            want = expected(world.sandbox, tenant.platform, tenant.tenant_id)
            assert differences(want, actual(store, row.id, want)) == []
    finally:
        store.close()


def finish(world: World) -> None:
    done = arsync(world.home, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    books_equal_store(world)
    no_event_twice(world)


def test_syncs_killed_at_chosen_requests_resume_without_losing_or_duplicating(
    world: World,
) -> None:
    # Xero's first sync asks for the organisation (1), contacts (2), then invoice pages (3...);
    # a resumed one starts at the page the last one had not committed.
    calls = world.api_calls("xero")
    for n, committed in ((3, 1), (6, 5), (4, 3)):
        killed_at_request(world, "books-xero", "xero", n)
        # still running, with every page before the killed request committed
        assert world.runs("books-xero")[-1] == ("running", committed)
    assert world.api_calls("xero") - calls == 3 + 6 + 4  # every request counted was a kill point
    # QuickBooks' first sync: company info (1), preferences (2), customers (3), invoices (4...)
    killed_at_request(world, "books-qbo", "qbo", 5)
    assert world.runs("books-qbo")[-1] == ("running", 2)
    finish(world)
    assert [o for o, _ in world.runs("books-xero")] == ["killed", "killed", "killed", "ok"]

    # An incremental cycle killed after its first request, with changes waiting.
    qbo = next(t for t in world.sandbox.tenants() if t.platform == "qbo")
    xero = next(t for t in world.sandbox.tenants() if t.platform == "xero")
    open_qbo = [
        i.id for i in world.sandbox.qbo.company(qbo.tenant_id).invoices.values() if i.balance > 0
    ][:3]
    open_xero = [
        i.invoice_id
        for i in world.sandbox.xero.org(xero.tenant_id).invoices.values()
        if i.type == "ACCREC" and i.status == "AUTHORISED" and i.amount_due > 0
    ][:3]
    for qbo_id, xero_id in zip(open_qbo, open_xero, strict=True):
        world.sandbox.event("qbo", qbo.tenant_id, {"type": "payment", "invoice": qbo_id})
        world.sandbox.event("xero", xero.tenant_id, {"type": "payment", "invoice": xero_id})
    world.sandbox.event(
        "qbo", qbo.tenant_id, {"type": "create_invoice", "customer": 1, "amount": "7.00"}
    )
    killed_at_request(world, "books-xero", "xero", 2)  # invoices read, contacts asked
    assert world.runs("books-xero")[-1] == ("running", 1)
    finish(world)


def held_in_a_page_transaction(world: World, name: str, platform: str, n: int) -> int:
    """Start `arsync sync NAME`, hold it inside the transaction applying the page its Nth API
    request brings, kill it there, and return the pages its run had committed."""
    proc = start_sync(world, name)
    try:
        if world.engine.dialect.name == "postgresql":
            held = _hold_postgresql(world, platform, n, proc)
        else:
            held = _hold_sqlite(world, proc)
        with held:
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    outcome, pages = world.runs(name)[-1]
    assert outcome == "running"  # killed, never finished
    return pages


@contextlib.contextmanager
def _hold_postgresql(
    world: World, platform: str, n: int, proc: subprocess.Popen[bytes]
) -> Iterator[None]:
    """A row lock on the running sync run, taken when the Nth request arrives: the page that
    request brings is applied up to its last statement (the run's page count), which waits."""
    locker = world.engine.connect()
    locker_pid = locker.execute(text("SELECT pg_backend_pid()")).scalar_one()
    locker.rollback()
    locked = threading.Event()

    def lock(_entry: LedgerEntry) -> None:
        locker.execute(
            select(sync_runs.c.id).where(sync_runs.c.outcome == "running").with_for_update()
        ).all()
        locked.set()

    stop = at_request(world, platform, n, lock)
    try:
        waiting = 0
        for _ in range(600):
            if locked.is_set():
                with world.engine.connect() as conn:
                    # only the sync this test holds: other tests may share the database
                    waiting = conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND query LIKE 'UPDATE sync_runs%' AND xact_start IS NOT NULL"
                            " AND :locker = ANY(pg_blocking_pids(pid))"
                        ),
                        {"locker": locker_pid},
                    ).scalar_one()
                if waiting:
                    break
            assert proc.poll() is None, "the sync ended before it was held"
            time.sleep(0.1)
        assert waiting == 1, "never saw the sync wait inside its page transaction"
        yield
    finally:
        stop()
        locker.rollback()
        locker.close()


@contextlib.contextmanager
def _hold_sqlite(world: World, proc: subprocess.Popen[bytes]) -> Iterator[None]:
    """A trigger that never finishes fires inside the transaction applying page 3 (as the run's
    page count moves to 3); the test sees the write lock held and the process stuck there."""
    path = str(world.engine.url.database)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute(
            "CREATE TRIGGER chaos_hold AFTER UPDATE OF pages ON sync_runs WHEN NEW.pages = 3 "
            "BEGIN SELECT count(*) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL "
            "SELECT x + 1 FROM c WHERE x < 4000000000) SELECT x FROM c); END"
        )
    try:
        held = 0
        for _ in range(600):
            assert proc.poll() is None, "the sync ended before it was held"
            held = held + 1 if _write_locked(path) else 0
            if held >= 3:  # locked on three looks in a row: stuck in the trigger
                break
            time.sleep(0.2)
        assert held >= 3, "never saw the sync held inside its page transaction"
        yield
    finally:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=30)) as db:
            db.execute("DROP TRIGGER IF EXISTS chaos_hold")


def _write_locked(path: str) -> bool:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as db:
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as err:
            if "locked" in str(err):
                return True
            raise
        db.execute("ROLLBACK")
        return False


def test_a_sync_killed_inside_a_page_transaction_commits_none_of_that_page(
    world: World,
) -> None:
    pages = held_in_a_page_transaction(world, "books-xero", "xero", 4)
    # Requests 2, 3 and 4 brought pages 1, 2 and 3; the kill landed inside page 3's
    # transaction, so only two pages (and their cursor) were committed.
    assert pages == 2
    store = store_for(world.sandbox, world.url)
    try:
        row = connector_row(store, "books-xero")
        assert row is not None
        with store.reading() as tx:
            cursor = tx.records.cursor(row.id)
            invoices = len(tx.records.live(row.id, Kind.INVOICE))
    finally:
        store.close()
    # the cursor of page 2: the invoices' second page is next
    assert cursor is not None and cursor["phase"] == "initial"
    assert (cursor["endpoint"], cursor["page"]) == (1, 2)
    assert invoices == 100  # one page of a hundred invoices, not two
    finish(world)
