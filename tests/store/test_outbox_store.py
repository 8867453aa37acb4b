"""The outbox repository on SQLite and PostgreSQL: adding, conditional moves, trail, claims."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import text

from arsync.clock import FrozenClock
from arsync.store import Entity, Store, Tx, open_store
from arsync.store.outbox import OutboxRow
from arsync.store.states import OutboxState

S = OutboxState
T = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)
LEASE = timedelta(minutes=15)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T)


@pytest.fixture
def store(db_url: str, clock: FrozenClock) -> Iterator[Store]:
    made = open_store(db_url, clock)
    yield made
    made.close()


def connector(store: Store, name: str = "acme") -> int:
    with store.transaction() as tx:
        return tx.connectors.ensure(name, "xero").id


def add(
    tx: Tx,
    cid: int,
    action: str,
    *,
    state: OutboxState = S.READY,
    at: datetime = T,
    invoice: str | None = "inv-1",
    customer: str = "c1",
    kind: str = "email",
    stage: str = "due-soon",
) -> bool:
    """One action with fields of no interest to the test filled in."""
    subject = f"invoice:{invoice}" if invoice else f"customer:{customer}"
    return tx.outbox.add(
        cid,
        id=action,
        key=f"acme/{subject}/{stage}/{kind}/{action}",
        kind=kind,
        subject=subject,
        customer_id=customer,
        invoice_id=invoice,
        stage=stage,
        stage_title="friendly reminder",
        tone="friendly",
        amount=Decimal("120.50"),
        currency="GBP",
        due_date=date(2026, 10, 31),
        at=at,
        state=state,
    )


def get(store: Store, cid: int, action: str) -> OutboxRow:
    with store.reading() as tx:
        row = tx.outbox.get(cid, action)
    assert row is not None
    return row


def trail(store: Store, cid: int, *actions: str) -> list[tuple[str, str | None, str]]:
    """(event, external id, action id) of the outbox's events, in order."""
    with store.reading() as tx:
        found = tx.events.of(cid, actions=actions)
    return [(e.action, e.external_id, e.detail["action"]) for e in found]


# -- adding ---------------------------------------------------------------------------------------
def test_an_action_added_twice_is_stored_once_with_one_enqueued_event(store: Store) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        assert add(tx, cid, "a1") is True
    with store.transaction() as tx:
        assert add(tx, cid, "a1", state=S.PLANNED, kind="note") is False
    row = get(store, cid, "a1")
    # the second add changed nothing
    assert (row.state, row.kind, row.attempts, row.amount) == (
        S.READY,
        "email",
        0,
        Decimal("120.50"),
    )
    assert row.created_at == row.updated_at == T
    with store.reading() as tx:
        assert len(tx.outbox.of(cid)) == 1
        (event,) = tx.events.of(cid, actions=("action_enqueued",))
    assert (event.entity, event.external_id) == (Entity.INVOICE, "inv-1")
    assert event.detail == {
        "customer": "c1",
        "action": "a1",
        "kind": "email",
        "stage": "due-soon",
        "state": "ready",
    }


def test_the_same_action_id_under_two_connectors_is_two_actions(store: Store) -> None:
    one, two = connector(store, "acme"), connector(store, "zenith")
    with store.transaction() as tx:
        assert add(tx, one, "a1") and add(tx, two, "a1")
    with store.reading() as tx:
        assert [r.connector_id for r in tx.outbox.find("a1")] == sorted([one, two])


# -- moving ---------------------------------------------------------------------------------------
def test_a_move_happens_only_from_the_state_it_expects(store: Store) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        add(tx, cid, "a1")
    read = get(store, cid, "a1")
    with store.transaction() as tx:
        assert tx.outbox.move(read, S.SKIPPED, reason="paid", reason_code="paid") is True
    with store.transaction() as tx:
        # `read` still says ready: the row is no longer, so nothing moves
        assert tx.outbox.move(read, S.DONE) is False
        assert tx.outbox.move(read, S.READY, expect=(S.PLANNED, S.READY)) is False
        # an empty `expect` moves nothing at all
        assert tx.outbox.move(get(store, cid, "a1"), S.READY, expect=()) is False
    row = get(store, cid, "a1")
    assert (row.state, row.reason, row.reason_code) == (S.SKIPPED, "paid", "paid")
    assert trail(store, cid, "action_skipped", "action_done", "action_ready") == [
        ("action_skipped", "inv-1", "a1")
    ]


def test_every_move_is_in_the_trail_under_the_invoice_or_else_the_customer(
    store: Store, clock: FrozenClock
) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        add(tx, cid, "a1")
        add(tx, cid, "c1", invoice=None, kind="call")
    later = T + timedelta(minutes=5)
    with store.transaction() as tx:
        row = tx.outbox.get(cid, "a1")
        assert row is not None
        assert tx.outbox.move(
            row, S.RETRYING, reason="timeout", reason_code="retry", attempts=1, next_at=later
        )
    clock.advance(timedelta(minutes=6))
    with store.transaction() as tx:
        row = tx.outbox.get(cid, "a1")
        assert row is not None
        assert tx.outbox.move(row, S.DONE, event="action_written", detail={"ref": "n-9"})
        other = tx.outbox.get(cid, "c1")
        assert other is not None
        assert tx.outbox.move(other, S.NEEDS_PERSON, reason="cannot tell")
    with store.reading() as tx:
        events = tx.events.of(cid)
    moves = [e for e in events if e.action != "action_enqueued"]
    assert [(e.action, e.entity, e.external_id, e.detail["action"]) for e in moves] == [
        ("action_retrying", Entity.INVOICE, "inv-1", "a1"),
        ("action_written", Entity.INVOICE, "inv-1", "a1"),
        ("action_needs_person", Entity.CUSTOMER, "c1", "c1"),
    ]
    assert moves[0].detail == {
        "customer": "c1",
        "action": "a1",
        "kind": "email",
        "stage": "due-soon",
        "reason": "timeout",
        "reason_code": "retry",
        "attempts": 1,
        "next_at": later.isoformat(),
    }
    assert moves[1].detail["ref"] == "n-9" and moves[1].at == T + timedelta(minutes=6)
    assert moves[2].detail == {
        "action": "c1",
        "kind": "call",
        "stage": "due-soon",
        "reason": "cannot tell",
    }
    done = get(store, cid, "a1")
    # a final state is stamped; a state not pending again
    assert (done.done_at, done.updated_at) == (T + timedelta(minutes=6),) * 2
    assert get(store, cid, "c1").done_at is None


def test_a_move_out_of_a_claim_drops_its_lease(store: Store) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        add(tx, cid, "a1")
        (claimed,) = tx.outbox.claim(cid, owner="w1", lease=LEASE, limit=5)
    with store.transaction() as tx:
        # a claim moved to itself (about to send) keeps a lease, the new one given
        assert tx.outbox.move(
            claimed, S.CLAIMED, sent_at=T, lease_owner="w1", lease_until=T + 2 * LEASE
        )
    row = get(store, cid, "a1")
    assert (row.lease_owner, row.lease_until, row.sent_at) == ("w1", T + 2 * LEASE, T)
    with store.transaction() as tx:
        assert tx.outbox.move(row, S.UNKNOWN, reason="reply lost")
    row = get(store, cid, "a1")
    assert (row.state, row.lease_owner, row.lease_until, row.sent_at) == (S.UNKNOWN, None, None, T)


# -- claiming -------------------------------------------------------------------------------------
def test_claim_takes_ready_and_retrying_rows_whose_moment_came_oldest_first(
    store: Store,
) -> None:
    cid = connector(store)
    hour = timedelta(hours=1)
    with store.transaction() as tx:
        add(tx, cid, "r-old", at=T - 3 * hour)
        add(tx, cid, "r-now", at=T)
        add(tx, cid, "r-later", at=T + hour)  # its moment has not come
        add(tx, cid, "r-held", at=T - 2 * hour)  # ready, but from next_at
        add(tx, cid, "t-due", state=S.RETRYING, at=T - 4 * hour)
        add(tx, cid, "t-early", state=S.RETRYING, at=T - 5 * hour)
        for state in (S.PLANNED, S.AWAITING_APPROVAL, S.UNKNOWN, S.NEEDS_PERSON, S.DONE, S.DEAD):
            add(tx, cid, f"x-{state.value}", state=state, at=T - 6 * hour)
        add(tx, cid, "a-note", at=T - 2 * hour, kind="note")
    with store.transaction() as tx:
        for action, next_at in (("r-held", T + hour), ("t-due", T), ("t-early", T + hour)):
            row = tx.outbox.get(cid, action)
            assert row is not None
            tx.outbox.move(row, row.state, next_at=next_at)
        assert tx.outbox.due_count(cid, T) == 4
    with store.transaction() as tx:
        first = tx.outbox.claim(cid, owner="w1", lease=LEASE, limit=2, exclude_kinds=("note",))
    with store.transaction() as tx:
        rest = tx.outbox.claim(cid, owner="w2", lease=LEASE, limit=10)
    assert [r.id for r in first] == ["t-due", "r-old"]
    assert [r.id for r in rest] == ["a-note", "r-now"]
    for row in first:
        stored = get(store, cid, row.id)
        assert stored == row  # what claim hands back is what the store holds
        assert (stored.state, stored.lease_owner, stored.lease_until, stored.attempts) == (
            S.CLAIMED,
            "w1",
            T + LEASE,
            1,
        )
    with store.reading() as tx:
        assert tx.outbox.due_count(cid, T) == 0
        claims = tx.events.of(cid, actions=("action_claimed",))
    assert [(e.detail["action"], e.detail["owner"], e.detail["attempt"]) for e in claims] == [
        ("t-due", "w1", 1),
        ("r-old", "w1", 1),
        ("a-note", "w2", 1),
        ("r-now", "w2", 1),
    ]
    with store.transaction() as tx:
        # a claimed row is no longer there to claim
        assert tx.outbox.claim(cid, owner="w3", lease=LEASE, limit=10) == []


def test_claim_counts_attempts_and_keeps_to_the_kinds_asked(store: Store) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        add(tx, cid, "e1", at=T - timedelta(minutes=2))
        add(tx, cid, "n1", at=T - timedelta(minutes=1), kind="note")
    with store.transaction() as tx:
        assert [
            r.id for r in tx.outbox.claim(cid, owner="w", lease=LEASE, limit=5, kinds=("note",))
        ] == ["n1"]
    with store.transaction() as tx:
        (row,) = tx.outbox.claim(cid, owner="w", lease=LEASE, limit=5)
        tx.outbox.move(row, S.RETRYING, attempts=row.attempts, next_at=T)
    with store.transaction() as tx:
        (again,) = tx.outbox.claim(cid, owner="w", lease=LEASE, limit=5)
    assert (again.id, again.attempts) == ("e1", 2)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_two_claimers_at_once_on_postgresql_skip_each_others_rows(store: Store) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        for n in range(6):
            add(tx, cid, f"a{n}", at=T - timedelta(minutes=10 - n))
    with contextlib.ExitStack() as first_open:
        first = first_open.enter_context(store.transaction())
        mine = first.outbox.claim(cid, owner="w1", lease=LEASE, limit=2)
        # the first claim's transaction is still open, its rows locked: the second skips them.
        # Were it to wait for them instead, the lock timeout turns the wait into a failure.
        with store.transaction() as second:
            second.conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            theirs = second.outbox.claim(cid, owner="w2", lease=LEASE, limit=10)
        assert [r.id for r in mine] == ["a0", "a1"]
        assert [r.id for r in theirs] == ["a2", "a3", "a4", "a5"]
    with store.reading() as tx:
        rows = tx.outbox.of(cid)
        claims = tx.events.of(cid, actions=("action_claimed",))
    assert {(r.id, r.lease_owner, r.attempts) for r in rows} == {
        *((f"a{n}", "w1", 1) for n in range(2)),
        *((f"a{n}", "w2", 1) for n in range(2, 6)),
    }
    assert sorted(e.detail["action"] for e in claims) == [f"a{n}" for n in range(6)]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_a_claim_left_uncommitted_on_postgresql_is_not_claimed_twice(store: Store) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        add(tx, cid, "a0")
    with contextlib.ExitStack() as first_open:
        first = first_open.enter_context(store.transaction())
        assert [r.id for r in first.outbox.claim(cid, owner="w1", lease=LEASE, limit=1)] == ["a0"]
        with store.transaction() as second:
            second.conn.execute(text("SET LOCAL lock_timeout = '5s'"))
            assert second.outbox.claim(cid, owner="w2", lease=LEASE, limit=1) == []
    assert get(store, cid, "a0").lease_owner == "w1"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_two_stores_on_one_sqlite_file_claiming_in_turn_never_overlap(
    db_url: str, store: Store, clock: FrozenClock
) -> None:
    cid = connector(store)
    other = open_store(db_url, clock)
    try:
        with store.transaction() as tx:
            for n in range(7):
                add(tx, cid, f"a{n}", at=T - timedelta(minutes=10 - n))
        taken: list[list[str]] = []
        for turn in range(4):
            claimer = (store, other)[turn % 2]
            with claimer.transaction() as tx:
                taken.append(
                    [r.id for r in tx.outbox.claim(cid, owner=f"w{turn}", lease=LEASE, limit=3)]
                )
    finally:
        other.close()
    assert taken == [["a0", "a1", "a2"], ["a3", "a4", "a5"], ["a6"], []]
    with store.reading() as tx:
        assert {r.state for r in tx.outbox.of(cid)} == {S.CLAIMED}
        assert len(tx.events.of(cid, actions=("action_claimed",))) == 7


# -- leases, planned actions, parked channels -----------------------------------------------------
def test_lapsed_are_the_claims_whose_lease_has_passed(store: Store, clock: FrozenClock) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        add(tx, cid, "short")
        add(tx, cid, "long", at=T + timedelta(seconds=1))
        add(tx, cid, "unclaimed", state=S.UNKNOWN, at=T - timedelta(days=1))
    with store.transaction() as tx:
        tx.outbox.claim(cid, owner="w1", lease=LEASE, limit=1)
    clock.advance(timedelta(seconds=1))
    with store.transaction() as tx:
        tx.outbox.claim(cid, owner="w2", lease=timedelta(hours=1), limit=1)
    with store.reading() as tx:
        assert tx.outbox.lapsed(cid) == []
    clock.set(T + LEASE)
    with store.reading() as tx:
        assert tx.outbox.lapsed(cid) == []  # the lease runs to its last moment
    clock.advance(timedelta(microseconds=1))
    with store.reading() as tx:
        assert [(r.id, r.lease_owner) for r in tx.outbox.lapsed(cid)] == [("short", "w1")]
        assert [r.id for r in tx.outbox.release_owner(cid, "w2")] == ["long"]
    clock.advance(timedelta(hours=1))
    with store.reading() as tx:
        assert sorted(r.id for r in tx.outbox.lapsed(cid)) == ["long", "short"]


def test_promote_makes_planned_actions_whose_moment_came_ready(
    store: Store, clock: FrozenClock
) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        add(tx, cid, "past", state=S.PLANNED, at=T - timedelta(hours=1))
        add(tx, cid, "now", state=S.PLANNED, at=T)
        add(tx, cid, "soon", state=S.PLANNED, at=T + timedelta(hours=1))
        add(tx, cid, "waits", state=S.AWAITING_APPROVAL, at=T - timedelta(hours=1))
    with store.transaction() as tx:
        assert tx.outbox.promote(cid) == 2
    with store.transaction() as tx:
        assert tx.outbox.promote(cid) == 0
    with store.reading() as tx:
        states = {r.id: r.state for r in tx.outbox.of(cid)}
    assert states == {
        "past": S.READY,
        "now": S.READY,
        "soon": S.PLANNED,
        "waits": S.AWAITING_APPROVAL,
    }
    assert sorted(trail(store, cid, "action_ready")) == [
        ("action_ready", "inv-1", "now"),
        ("action_ready", "inv-1", "past"),
    ]
    clock.advance(timedelta(hours=1))
    with store.transaction() as tx:
        assert tx.outbox.promote(cid) == 1
        assert tx.outbox.get(cid, "soon").state is S.READY  # type: ignore[union-attr]


def test_a_channel_is_parked_until_its_moment_then_no_longer(
    store: Store, clock: FrozenClock
) -> None:
    cid, other = connector(store), connector(store, "zenith")
    until = T + timedelta(hours=14)
    with store.transaction() as tx:
        tx.outbox.park(cid, "email", T + timedelta(hours=1), "first")
        tx.outbox.park(cid, "email", until, "the day's email cap")  # replaces the first
    with store.reading() as tx:
        assert tx.outbox.parked(cid) == {"email": (until, "the day's email cap")}
        assert tx.outbox.parked(other) == {}
        events = tx.events.of(cid, entity=Entity.CONNECTOR, actions=("channel_parked",))
    assert [e.detail for e in events][-1] == {
        "channel": "email",
        "until": until.isoformat(),
        "reason": "the day's email cap",
    }
    clock.set(until - timedelta(microseconds=1))
    with store.reading() as tx:
        assert set(tx.outbox.parked(cid)) == {"email"}
    clock.set(until)
    with store.reading() as tx:
        assert tx.outbox.parked(cid) == {}


# -- reading --------------------------------------------------------------------------------------
def test_of_existing_counts_and_find(store: Store) -> None:
    cid, other = connector(store), connector(store, "zenith")
    with store.transaction() as tx:
        add(tx, cid, "abc-e1", at=T - timedelta(hours=2))
        add(tx, cid, "abc-n1", kind="note", at=T - timedelta(hours=2))
        add(tx, cid, "abd-e2", invoice="inv-2", customer="c2", state=S.PLANNED, at=T)
        add(tx, cid, "abd-c", invoice=None, customer="c2", kind="call", at=T - timedelta(hours=3))
        add(tx, other, "abx-e9")
        for n in range(25):
            add(tx, other, f"zz{n:02}")
    with store.reading() as tx:
        of = tx.outbox.of
        assert [r.id for r in of(cid)] == ["abd-c", "abc-e1", "abc-n1", "abd-e2"]
        assert [r.id for r in of(cid, states=(S.PLANNED,))] == ["abd-e2"]
        assert [r.id for r in of(cid, subject="invoice:inv-1")] == ["abc-e1", "abc-n1"]
        assert [r.id for r in of(cid, subjects=("invoice:inv-2", "customer:c2"))] == [
            "abd-c",
            "abd-e2",
        ]
        assert [r.id for r in of(cid, customer_id="c2", kinds=("email", "note"))] == ["abd-e2"]
        assert [r.id for r in of(cid, invoice_id="inv-1", kinds=("note",))] == ["abc-n1"]
        # more ids than one query takes at once
        wanted = [f"nope{n}" for n in range(1200)] + ["abc-n1", "abd-e2", "abc-n1", "abx-e9"]
        assert sorted(tx.outbox.existing(cid, wanted)) == ["abc-n1", "abd-e2"]
        assert tx.outbox.counts(cid) == {S.READY: 3, S.PLANNED: 1}
        assert tx.outbox.counts(other) == {S.READY: 26}
        # a prefix a person types: any connector, any case, at most 20, no wildcards
        assert sorted(r.id for r in tx.outbox.find("AB")) == [
            "abc-e1",
            "abc-n1",
            "abd-c",
            "abd-e2",
            "abx-e9",
        ]
        assert [r.id for r in tx.outbox.find("abc-n")] == ["abc-n1"]
        assert len(tx.outbox.find("zz")) == 20
        assert tx.outbox.find("ab_") == [] and tx.outbox.find("%") == []
        assert tx.outbox.get(cid, "abx-e9") is None
