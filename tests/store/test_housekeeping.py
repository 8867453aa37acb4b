"""Store housekeeping on SQLite and PostgreSQL: old runs go, what the schedule reads stays."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from arsync.clock import FrozenClock
from arsync.store import Entity, RunOutcome, Store, open_store
from arsync.store.housekeeping import _tidy, housekeep
from arsync.store.schema import events

T0 = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T0)


@pytest.fixture
def store(db_url: str, clock: FrozenClock) -> Iterator[Store]:
    made = open_store(db_url, clock)
    yield made
    made.close()


def run(store: Store, cid: int, *, full: bool, outcome: RunOutcome) -> int:
    with store.transaction() as tx:
        sync_id = tx.runs.begin(cid, full=full)
        tx.runs.finish(sync_id, outcome, api_calls=1)
        return sync_id


def test_old_runs_go_but_each_connectors_last_run_and_last_full_pass_stay(
    store: Store, clock: FrozenClock
) -> None:
    with store.transaction() as tx:
        a = tx.connectors.ensure("acme", "xero").id
        b = tx.connectors.ensure("bolt", "qbo").id
    full_a = run(store, a, full=True, outcome=RunOutcome.OK)
    for _ in range(30):
        clock.advance(timedelta(hours=6))
        run(store, a, full=False, outcome=RunOutcome.OK)
        run(store, b, full=False, outcome=RunOutcome.FAILED)
    last_b = run(store, b, full=False, outcome=RunOutcome.OK)
    clock.advance(timedelta(days=100))
    last_a = run(store, a, full=False, outcome=RunOutcome.FAILED)
    with store.transaction() as tx:
        tx.events.append(a, Entity.INVOICE, "created", external_id="1", at=T0)
        tx.events.append(a, Entity.INVOICE, "changed", external_id="1", at=clock.now())

    done = housekeep(store, runs_before=clock.now() - timedelta(days=90), events_before=None)

    with store.reading() as tx:
        kept_a = {r.id for r in tx.runs.of(a)}
        kept_b = {r.id for r in tx.runs.of(b)}
        assert len(tx.events.of(a)) == 2  # the paper trail is kept unless the firm says
        assert tx.runs.last_full_ok() == {a: T0}
        assert tx.runs.last_finished()[a].id == last_a
        assert tx.runs.last_finished()[b].id == last_b
    assert kept_a == {full_a, last_a}
    assert kept_b == {last_b}
    assert done.runs_deleted == 30 + 30  # all but the kept ones: a had 32, b 31


def test_events_go_only_past_the_firms_retention(store: Store, clock: FrozenClock) -> None:
    with store.transaction() as tx:
        a = tx.connectors.ensure("acme", "xero").id
        for days in (0, 400, 800):
            tx.events.append(
                a, Entity.INVOICE, "created", external_id=str(days), at=T0 + timedelta(days=days)
            )
    clock.set(T0 + timedelta(days=800))
    done = housekeep(
        store, runs_before=clock.now(), events_before=clock.now() - timedelta(days=500)
    )
    assert done.events_deleted == 1
    with store.reading() as tx:
        assert sorted(e.external_id or "" for e in tx.events.of(a)) == ["400", "800"]


def test_housekeeping_with_nothing_to_do_changes_nothing(store: Store) -> None:
    done = housekeep(store, runs_before=T0, events_before=T0)
    assert (done.runs_deleted, done.events_deleted) == (0, 0)


def test_a_quarter_free_is_vacuumed_even_by_a_connection_last_used_to_read(
    store: Store, db_url: str
) -> None:
    with store.transaction() as tx:
        a = tx.connectors.ensure("acme", "xero").id
        for n in range(400):
            tx.events.append(a, Entity.INVOICE, "created", external_id=str(n), detail="x" * 2000)
    done = housekeep(store, runs_before=T0, events_before=T0 + timedelta(days=1))
    assert done.events_deleted == 400
    # the deletes' own connection tidied; now reads (two at once, as the daemon's threads
    # do) leave the pooled connections query_only, and the tidying must still write
    with store.transaction() as tx:
        for n in range(400):
            tx.events.append(a, Entity.INVOICE, "created", external_id=str(n), detail="x" * 2000)
    with store.transaction() as tx:
        tx.conn.execute(events.delete())
    with store.reading() as tx, store.reading() as other:
        tx.connectors.all()
        other.connectors.all()
    # SQLite only: PostgreSQL's autovacuum does this itself
    assert _tidy(store) is db_url.startswith("sqlite")
