"""Replicas on one store: connectors split, none owned twice, fair shares, takeover; SQLite's one.

PostgreSQL: replicas in this process, each with its own lock connection, on one schema; an
admin connection terminates a replica's session as a dead network would. SQLite: the one
daemon's flock, refused to a second replica (in this process and in another) and given up when
its holder closes or is killed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, event, text

from arsync.clock import FrozenClock
from arsync.errors import Busy
from arsync.store import Store, open_store
from arsync.store.leases import Replica, Timing, lock_classes
from tests.conftest import POSTGRES_URL

T = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
IDS = range(1, 101)
postgresql_only = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T)


@pytest.fixture
def store(db_url: str, clock: FrozenClock) -> Iterator[Store]:
    made = open_store(db_url, clock)
    yield made
    made.close()


@pytest.fixture
def admin() -> Iterator[Engine]:
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def replicas(store: Store) -> Iterator[Callable[[], Replica]]:
    """`replicas()`: a started replica on the store, named uniquely, closed after the test."""
    made: list[Replica] = []

    def make() -> Replica:
        replica = Replica(store, name=f"r{len(made)}-{uuid.uuid4().hex[:8]}")
        replica.start()
        made.append(replica)
        return replica

    yield make
    for replica in made:
        replica.close()


def backend(admin: Engine, replica: Replica) -> int:
    """The server pid of a replica's lock connection, found by its application_name."""
    with admin.connect() as conn:
        return int(
            conn.execute(
                text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
                {"n": f"arsync run {replica.name}"},
            ).scalar_one()
        )


def terminate(admin: Engine, pid: int) -> None:
    """End a backend as a dead network would, and wait until it is gone with its locks."""
    with admin.connect() as conn:
        assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        deadline = time.monotonic() + 10
        while conn.execute(
            text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
        ).scalar():
            assert time.monotonic() < deadline, f"backend {pid} outlived its termination"
            time.sleep(0.01)


def disjoint(*owned: frozenset[int]) -> bool:
    return sum(len(o) for o in owned) == len(frozenset().union(*owned))


@postgresql_only
def test_two_replicas_split_the_connectors_with_none_owned_twice(
    replicas: Callable[[], Replica],
) -> None:
    a, b = replicas(), replicas()
    first_a, first_b = a.claim(IDS), b.claim(IDS)
    assert len(first_a) == 50  # two present: each reaches for its share only
    assert disjoint(first_a, first_b)
    owned_a, owned_b = a.claim(IDS), b.claim(IDS)
    assert disjoint(owned_a, owned_b)
    assert owned_a | owned_b == frozenset(IDS)
    assert len(owned_a) == len(owned_b) == 50
    assert all(a.owns(c) != b.owns(c) for c in IDS)
    assert a.owned == owned_a
    assert a.problem is None


@postgresql_only
def test_a_replica_that_starts_gets_its_share_from_the_others_next_claim(
    replicas: Callable[[], Replica],
) -> None:
    a = replicas()
    assert a.claim(IDS) == frozenset(IDS)  # alone: everything
    b = replicas()
    assert b.claim(IDS) == frozenset()  # all held: nothing free yet
    owned_a = a.claim(IDS)
    assert len(owned_a) == 50  # releases what is beyond its share
    owned_b = b.claim(IDS)
    assert owned_b == frozenset(IDS) - owned_a
    c = replicas()
    for _ in range(2):
        owned = [r.claim(IDS) for r in (a, b, c)]
        assert disjoint(*owned)
    assert sorted(len(o) for o in owned) == [32, 34, 34]
    # ceil(100 / 3) = 34 each at most, what is left for the third
    assert frozenset().union(*owned) == frozenset(IDS)


@postgresql_only
def test_closing_one_lets_the_other_take_everything_at_its_next_claim(
    replicas: Callable[[], Replica],
) -> None:
    a, b = replicas(), replicas()
    a.claim(IDS), b.claim(IDS)
    assert len(b.claim(IDS)) == 50
    a.close()
    assert not a.owns(next(iter(IDS)))
    assert b.claim(IDS) == frozenset(IDS)


@postgresql_only
def test_a_terminated_lock_connection_loses_everything_and_never_takes_anothers(
    replicas: Callable[[], Replica], admin: Engine
) -> None:
    a, b = replicas(), replicas()
    a.claim(IDS), b.claim(IDS)
    owned_a, owned_b = a.claim(IDS), b.claim(IDS)
    assert len(owned_a) == len(owned_b) == 50
    terminate(admin, backend(admin, a))
    # the loss is seen at the next claim: all of it dropped at once, nothing taken in that round
    assert a.claim(IDS) == frozenset()
    assert a.owned == frozenset()
    assert not any(a.owns(c) for c in IDS)
    assert a.problem is not None
    assert "lost" in a.problem
    # a reconnected at once: it is present again, so b keeps only its share of the whole
    rounds = []
    for _ in range(4):
        owned_b = b.claim(IDS)
        owned_a = a.claim(IDS)
        assert disjoint(owned_a, owned_b)
        rounds.append((len(owned_a), len(owned_b)))
    assert rounds[0] == (50, 50)  # b took half at once, a took the other half
    assert rounds[-1] == (50, 50)
    assert a.problem is None


@postgresql_only
def test_a_replica_alone_after_the_other_died_takes_everything_in_one_claim(
    replicas: Callable[[], Replica], admin: Engine
) -> None:
    a, b = replicas(), replicas()
    a.claim(IDS), b.claim(IDS)
    a.claim(IDS), b.claim(IDS)
    victim = backend(admin, a)
    terminate(admin, victim)
    assert b.claim(IDS) == frozenset(IDS)
    # a's memory says yes until its next claim (or until its trust runs out, see below): a
    # loss is heard at a claim, which is why the daemon claims every renew_every
    assert len(a.owned) == 50
    assert a.claim(IDS) == frozenset()


@postgresql_only
def test_a_lock_is_never_stacked_so_one_release_frees_it(
    replicas: Callable[[], Replica],
) -> None:
    a = replicas()
    for _ in range(3):
        assert a.claim([1, 2]) == {1, 2}
    b = replicas()
    assert b.claim([1, 2]) == frozenset()
    a.release(1)
    assert not a.owns(1)
    assert a.owns(2)
    assert b.claim([1, 2]) == {1}
    assert a.claim([1, 2]) == {2}


@postgresql_only
def test_connectors_no_longer_listed_are_released(replicas: Callable[[], Replica]) -> None:
    a = replicas()
    assert a.claim(range(1, 11)) == frozenset(range(1, 11))
    assert a.claim(range(1, 6)) == frozenset(range(1, 6))
    b = replicas()
    assert b.claim(range(1, 11)) == frozenset(range(6, 11))  # what a let go, its share
    assert a.claim([]) == frozenset()
    owned_b = b.claim(range(1, 6))  # drops 6-10 (not listed), takes its share of what a let go
    assert len(owned_b) == 3
    assert owned_b < frozenset(range(1, 6))


@postgresql_only
def test_ownership_is_trusted_only_for_a_while_after_the_last_claim(
    replicas: Callable[[], Replica], clock: FrozenClock
) -> None:
    a = replicas()
    a.claim(IDS)
    trust = a.timing.trust
    clock.advance(trust - 0.5)
    assert a.owns(1)
    clock.advance(1)
    assert not a.owns(1)
    assert a.owned == frozenset()
    assert a.claim(IDS) == frozenset(IDS)  # the locks were held all along: a claim renews
    assert a.owns(1)


@postgresql_only
def test_the_lock_connection_idles_outside_a_transaction_with_keepalives(
    replicas: Callable[[], Replica], admin: Engine
) -> None:
    a = replicas()
    a.claim(IDS)
    pid = backend(admin, a)
    with admin.connect() as conn:
        state = conn.execute(
            text("SELECT state FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
        ).scalar()
    assert state == "idle"
    assert a._conn is not None
    shown = {
        name: setting
        for name, setting in a._conn.execute(
            text(
                "SELECT name, setting FROM pg_settings WHERE name IN ('tcp_keepalives_idle', "
                "'tcp_keepalives_interval', 'tcp_keepalives_count', 'tcp_user_timeout', "
                "'idle_session_timeout')"
            )
        )
    }
    assert shown == {
        "tcp_keepalives_idle": str(a.timing.idle),  # seconds
        "tcp_keepalives_interval": str(a.timing.interval),
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": str(a.timing.drop * 1000),  # milliseconds
        "idle_session_timeout": "0",
    }


@postgresql_only
def test_connector_locks_never_meet_the_stores_other_advisory_locks(
    store: Store, replicas: Callable[[], Replica], admin: Engine
) -> None:
    a = replicas()
    a.claim([7])
    pid = backend(admin, a)
    with admin.connect() as conn:
        classid, objid, objsubid = conn.execute(
            text(
                "SELECT classid::int8, objid::int8, objsubid FROM pg_locks "
                "WHERE pid = :p AND locktype = 'advisory' AND objid = 7"
            ),
            {"p": pid},
        ).one()
        assert objsubid == 2
        with store.engine.connect() as schema_conn:
            schema = schema_conn.execute(text("SELECT current_schema()")).scalar_one()
        assert (classid, objid) == (lock_classes(schema)[0], 7)
        # the one-bigint key with the very same bits (what Store.exclusive and the migration
        # lock take) is another lock altogether
        same_bits = (classid << 32) | objid
        assert conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": same_bits}).scalar()
        conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": same_bits})
    with store.exclusive("sync:acme"):
        assert a.claim([7]) == {7}


@postgresql_only
def test_two_stores_in_one_database_never_share_a_lock(
    store: Store, replicas: Callable[[], Replica], admin: Engine, clock: FrozenClock
) -> None:
    other_schema = f"t_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{other_schema}"'))
    other = open_store(f"{POSTGRES_URL}?options=-csearch_path%3D{other_schema}", clock)
    try:
        with Replica(other, name=f"other-{uuid.uuid4().hex[:8]}") as theirs:
            ours = replicas()
            assert ours.claim(IDS) == frozenset(IDS)
            assert theirs.claim(IDS) == frozenset(IDS)
    finally:
        other.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{other_schema}" CASCADE'))


@postgresql_only
def test_one_claim_of_a_thousand_connectors_is_a_few_statements(
    replicas: Callable[[], Replica],
) -> None:
    ids = range(1, 1001)
    a, b = replicas(), replicas()
    statements: list[str] = []
    for replica in (a, b):
        assert replica._engine is not None
        event.listen(
            replica._engine,
            "before_cursor_execute",
            lambda _c, _cur, sql, *_: statements.append(sql),
        )

    def counted(replica: Replica) -> tuple[int, int]:
        statements.clear()
        owned = replica.claim(ids)
        return len(owned), len(statements)

    assert counted(a) == (500, 2)  # read pg_locks, try-lock its share
    assert counted(b) == (500, 2)
    assert counted(a) == (500, 1)  # steady: one read
    assert counted(b) == (500, 1)
    b.close()
    assert counted(a) == (1000, 2)  # the other's half, taken in one batch
    replicas()
    assert counted(a) == (500, 2)  # and given back in one batch


def test_a_lease_leaves_room_for_a_takeover_within_one_lease() -> None:
    for seconds in range(10, 601):
        timing = Timing.of(timedelta(seconds=seconds))
        # the server ends a silent replica's session no sooner than half a lease ...
        assert timing.drop >= seconds / 2
        # ... and late enough that the others' next claim still falls inside the lease
        assert timing.drop + timing.renew <= seconds
        # the silent replica stops trusting what it owns before the server frees it, and a
        # replica that claims on time never stops trusting it
        assert timing.renew < timing.trust < timing.drop
    default = Timing.of(timedelta(seconds=60))
    assert (default.renew, default.idle, default.interval, default.drop, default.trust) == (
        15,
        15,
        5,
        30,
        22.5,
    )


def test_a_claim_before_start_is_a_mistake(store: Store) -> None:
    replica = Replica(store, name="early")
    with pytest.raises(RuntimeError, match="before start"):
        replica.claim(IDS)
    with replica:
        with pytest.raises(ValueError, match="int4"):
            replica.claim([0])
        assert replica.claim([3]) == {3}
        assert replica.owns(3)
        replica.release(3)
        assert not replica.owns(3)
    assert not replica.owns(3)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_serves_one_daemon_which_owns_every_connector(store: Store) -> None:
    first = Replica(store, name="first")
    first.start()
    try:
        assert first.claim(IDS) == frozenset(IDS)
        assert first.owns(1)
        second = Replica(store, name="second")
        with pytest.raises(Busy) as refused:
            second.start()
        message = str(refused.value)
        assert f"another `arsync run` (pid {os.getpid()}, started 2026-11-24 10:00:00 UTC)" in (
            message
        )
        assert "SQLite allows one" in message
        assert "PostgreSQL for several replicas" in message
        assert str(store.engine.url.database) in message
    finally:
        first.close()
    with second:
        assert second.claim(IDS) == frozenset(IDS)


def test_sqlite_stores_side_by_side_each_have_their_daemon(tmp_path: Path) -> None:
    stores = [open_store(f"sqlite:///{tmp_path / name}", FrozenClock(T)) for name in "ab"]
    try:
        with Replica(stores[0]), Replica(stores[1]) as second:
            assert second.claim(IDS) == frozenset(IDS)
    finally:
        for store in stores:
            store.close()


HOLDER = """
import sys, time
from arsync.clock import SystemClock
from arsync.store import open_store
from arsync.store.leases import Replica
replica = Replica(open_store(sys.argv[1], SystemClock()), name="holder")
replica.start()
print("started", flush=True)
time.sleep(60)
"""


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_sqlite_a_killed_daemon_leaves_its_place(store: Store, db_url: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, db_url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "started"
        with pytest.raises(Busy, match=f"pid {holder.pid}, started"):
            Replica(store).start()
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    with Replica(store) as successor:
        assert successor.claim(IDS) == frozenset(IDS)
