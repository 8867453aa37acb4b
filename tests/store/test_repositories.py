"""The store's repositories on SQLite and PostgreSQL: the unit of work, read-only reads, states
CHECKed by the database, runs, usage, holds and payment plans, and the migration from 0001."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from arsync.clock import FrozenClock
from arsync.domain import CompanyInfo, Kind, Page
from arsync.store import (
    ConnectorState,
    Entity,
    HoldKind,
    HoldSource,
    HoldState,
    PlanState,
    RunOutcome,
    Store,
    open_store,
)
from arsync.store.engine import open_engine
from arsync.store.schema import metadata
from tests.support import invoice

T = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T)


@pytest.fixture
def store(db_url: str, clock: FrozenClock) -> Iterator[Store]:
    made = open_store(db_url, clock)
    yield made
    made.close()


def connector(store: Store, name: str = "acme", platform: str = "xero") -> int:
    with store.transaction() as tx:
        return tx.connectors.ensure(name, platform).id


# -- the schema -----------------------------------------------------------------------------------
def test_the_migrations_build_exactly_the_tables_the_code_declares(db_url: str) -> None:
    engine = open_engine(db_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert differences == []


def test_a_0001_store_with_data_migrates_and_keeps_it(db_url: str) -> None:
    from alembic import command

    from arsync.store.engine import _alembic_config

    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
            conn.execute(
                text(
                    "INSERT INTO connectors (name, platform, status, created_at) "
                    "VALUES ('acme', 'qbo', 'connected', :at)"
                ),
                {"at": T.replace(tzinfo=None) if engine.dialect.name == "sqlite" else T},
            )
    finally:
        engine.dispose()
    migrated = open_store(db_url, FrozenClock(T))
    try:
        with migrated.reading() as tx:
            row = tx.connectors.by_name("acme")
        assert row is not None and row.status is ConnectorState.CONNECTED
        assert row.platform_timezone is None
    finally:
        migrated.close()


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("connectors", "status", "sleeping"),
        ("invoices", "status", "overdue"),
        ("sync_runs", "outcome", "maybe"),
        ("events", "entity", "planet"),
        ("holds", "kind", "forgive"),
        ("holds", "state", "snoozed"),
        ("payment_plans", "state", "later"),
    ],
)
def test_the_database_refuses_a_state_outside_its_enum(
    store: Store, table: str, column: str, value: str
) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        sync = tx.runs.begin(cid, full=False)
        tx.records.apply_page(cid, sync, Page("t", [invoice("1")], {}))
        tx.events.append(cid, Entity.INVOICE, "noted", external_id="1")
        hold = tx.holds.add(cid, HoldKind.DISPUTE, invoice_id="1", reason="r", set_by="me")
        plan = tx.plans.add(
            cid, "c1", ["1"], "GBP", [(date(2026, 12, 1), Decimal("50"))],
            missed_allowed=1, reason="r", set_by="me",
        )  # fmt: skip
    key = {
        "connectors": ("id", cid),
        "invoices": ("external_id", "1"),
        "sync_runs": ("id", sync),
        "events": ("connector_id", cid),
        "holds": ("id", hold.id),
        "payment_plans": ("id", plan.id),
    }[table]
    with pytest.raises((IntegrityError, DBAPIError)), store.engine.begin() as conn:
        conn.execute(
            text(f"UPDATE {table} SET {column} = :v WHERE {key[0]} = :k"),
            {"v": value, "k": key[1]},
        )


# -- the unit of work ---------------------------------------------------------------------------
def test_repositories_in_one_transaction_commit_together_or_not_at_all(store: Store) -> None:
    cid = connector(store)

    def unit_that_fails() -> None:
        with store.transaction() as tx:
            sync = tx.runs.begin(cid, full=False)
            tx.records.apply_page(cid, sync, Page("t", [invoice("1")], {"at": 1}))
            tx.connectors.park(cid, T + timedelta(hours=1), "day limit")
            raise RuntimeError("the process fails before the end of the unit")

    with pytest.raises(RuntimeError):
        unit_that_fails()
    with store.reading() as tx:
        assert tx.runs.of(cid) == []
        assert tx.records.live(cid, Kind.INVOICE) == {}
        assert tx.records.cursor(cid) is None
        assert tx.connectors.get(cid).parked_until is None
        assert tx.events.of(cid) == []
    with store.transaction() as tx:
        sync = tx.runs.begin(cid, full=False)
        tx.records.apply_page(cid, sync, Page("t", [invoice("1")], {"at": 1}))
        tx.connectors.park(cid, T + timedelta(hours=1), "day limit")
    with store.reading() as tx:
        assert len(tx.runs.of(cid)) == 1 and set(tx.records.live(cid, Kind.INVOICE)) == {"1"}
        assert tx.connectors.get(cid).parked_until == T + timedelta(hours=1)
        assert [e.action for e in tx.events.of(cid)] == ["created", "parked"]


def test_a_reading_transaction_cannot_write(store: Store) -> None:
    cid = connector(store)
    with pytest.raises(DBAPIError), store.reading() as tx:
        tx.connectors.park(cid, T, "no")
    with store.reading() as tx:
        assert tx.connectors.get(cid).parked_until is None
    with store.transaction() as tx:  # and the connection it used writes again afterwards
        tx.connectors.park(cid, T, "yes")


def test_a_sqlite_reader_never_holds_up_a_writer(tmp_path: Path, clock: FrozenClock) -> None:
    path = tmp_path / "a.db"
    store = open_store(f"sqlite:///{path}", clock)
    try:
        cid = connector(store)
        with store.reading() as tx:
            tx.connectors.get(cid)  # the read transaction is open
            with sqlite3.connect(path, timeout=0, isolation_level=None) as other:
                other.execute("BEGIN IMMEDIATE")  # a writer gets the lock at once
                other.execute("UPDATE connectors SET last_error = 'x'")
                other.execute("COMMIT")
    finally:
        store.close()


# -- connectors and runs -------------------------------------------------------------------------
def test_read_models_are_typed(store: Store) -> None:
    with store.transaction() as tx:
        row, again = tx.connectors.link(
            "acme",
            "xero",
            "tenant-1",
            CompanyInfo("Acme Ltd", "GBP", "GB", timezone="GMTSTANDARDTIME", edition="STANDARD"),
            at=T,
        )
    assert again is False
    assert row.status is ConnectorState.CONNECTED and row.linked
    assert (row.company_name, row.base_currency, row.country) == ("Acme Ltd", "GBP", "GB")
    assert (row.platform_timezone, row.edition) == ("GMTSTANDARDTIME", "STANDARD")
    with store.transaction() as tx:
        tx.connectors.mark_reconnect_needed(row.id, "refused")
    with store.reading() as tx:
        assert tx.connectors.get(row.id).status is ConnectorState.RECONNECT_NEEDED
        events = tx.events.of(row.id)
    assert [(e.entity, e.action) for e in events] == [
        (Entity.CONNECTOR, "connected"),
        (Entity.CONNECTOR, "reconnect_needed"),
    ]


def test_a_run_is_ok_only_when_finished_ok(store: Store, clock: FrozenClock) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        first = tx.runs.begin(cid, full=True)
    clock.advance(60)
    with store.transaction() as tx:
        tx.runs.finish(first, RunOutcome.FAILED, api_calls=3, error="the platform failed")
    with store.reading() as tx:
        row = tx.connectors.get(cid)
        assert row.last_sync_at == T and row.last_sync_ok_at is None
        assert row.last_error == "the platform failed"
    with store.transaction() as tx:
        second = tx.runs.begin(cid, full=False)
        tx.runs.finish(second, RunOutcome.OK, api_calls=1)
    with store.reading() as tx:
        row = tx.connectors.get(cid)
        assert row.last_sync_ok_at == T + timedelta(seconds=60) and row.last_error is None
        assert tx.runs.last_finished()[cid].id == second
    with pytest.raises(ValueError, match="finished with its outcome"), store.transaction() as tx:
        tx.runs.finish(second, RunOutcome.RUNNING, api_calls=None)


# -- usage ---------------------------------------------------------------------------------------
def test_usage_adds_up_by_the_minute_and_forgets_the_old(store: Store) -> None:
    cid = connector(store)
    minute = T.replace(second=0)
    with store.transaction() as tx:
        tx.usage.add(cid, {minute: 3, minute + timedelta(minutes=1): 2})
    with store.transaction() as tx:
        tx.usage.add(cid, {minute: 4, minute - timedelta(days=3): 9})
    with store.reading() as tx:
        assert tx.usage.since(cid, minute - timedelta(days=1)) == [
            (minute, 7),
            (minute + timedelta(minutes=1), 2),
        ]
    with store.transaction() as tx:
        tx.usage.forget_before(cid, minute - timedelta(days=2))
    with store.reading() as tx:
        assert len(tx.usage.since(cid, minute - timedelta(days=10))) == 2


# -- holds and plans -----------------------------------------------------------------------------
def test_a_hold_is_set_and_ended_with_its_paper_trail(store: Store, clock: FrozenClock) -> None:
    cid = connector(store)
    with store.transaction() as tx:
        promise = tx.holds.add(
            cid,
            HoldKind.PROMISE,
            invoice_id="inv-1",
            customer_id="c1",
            until=date(2026, 12, 10),
            amount=Decimal("400.00"),
            currency="GBP",
            reason="will pay when the grant lands",
            set_by="Sam (bookkeeper)",
        )
        pause = tx.holds.add(
            cid,
            HoldKind.PAUSE,
            customer_id="c2",
            reason="bereavement",
            set_by="QuickBooks customer type",
            source=HoldSource.LEDGER,
        )
    assert promise.state is HoldState.ACTIVE and promise.set_at == T
    clock.advance(timedelta(days=20))
    with store.transaction() as tx:
        broken = tx.holds.end(promise.id, HoldState.BROKEN, by="arsync", reason="unpaid on 10 Dec")
    assert (broken.state, broken.ended_at) == (HoldState.BROKEN, T + timedelta(days=20))
    with store.reading() as tx:
        assert [h.id for h in tx.holds.active(cid)] == [pause.id]
        assert [h.kind for h in tx.holds.history(cid, invoice_id="inv-1")] == [HoldKind.PROMISE]
        trail = tx.events.of(cid, entity=Entity.INVOICE, external_id="inv-1")
    assert [e.action for e in trail] == ["hold_set", "hold_ended"]
    assert trail[0].detail["by"] == "Sam (bookkeeper)"
    assert trail[0].detail["amount"] == "400.00"
    assert trail[1].detail["state"] == "broken"
    with pytest.raises(ValueError, match="already ended"), store.transaction() as tx:
        tx.holds.end(promise.id, HoldState.CLEARED, by="me", reason="again")


@pytest.mark.parametrize(
    ("kind", "fields", "problem"),
    [
        (HoldKind.PAUSE, {"invoice_id": "1", "customer_id": "c"}, "holds a customer"),
        (HoldKind.DISPUTE, {"customer_id": "c"}, "holds an invoice"),
        (HoldKind.PROMISE, {"invoice_id": "1"}, "has a date"),
        (HoldKind.SETTLEMENT, {"invoice_id": "1"}, "agreed amount"),
        (
            HoldKind.EXCLUDE,
            {"invoice_id": "1", "amount": Decimal("-1"), "currency": "GBP"},
            "above",
        ),
    ],
)
def test_a_hold_that_makes_no_sense_is_refused(
    store: Store, kind: HoldKind, fields: dict[str, object], problem: str
) -> None:
    cid = connector(store)
    with pytest.raises(ValueError, match=problem), store.transaction() as tx:
        tx.holds.add(cid, kind, reason="r", set_by="me", **fields)  # type: ignore[arg-type]


def test_a_payment_plan_keeps_its_instalments_in_order(store: Store) -> None:
    cid = connector(store)
    dues = [(date(2026, 12, 1), Decimal("100.00")), (date(2027, 1, 1), Decimal("150.50"))]
    with store.transaction() as tx:
        plan = tx.plans.add(
            cid, "c1", ["inv-1", "inv-2", "inv-1"], "GBP", dues,
            missed_allowed=1, reason="hard winter", set_by="Sam",
        )  # fmt: skip
    assert plan.invoice_ids == ("inv-1", "inv-2")
    assert [(i.seq, i.due, i.amount) for i in plan.instalments] == [
        (1, date(2026, 12, 1), Decimal("100.00")),
        (2, date(2027, 1, 1), Decimal("150.50")),
    ]
    assert plan.total == Decimal("250.50") and plan.state is PlanState.ACTIVE
    with store.transaction() as tx:
        tx.plans.end(plan.id, PlanState.ENDED, by="arsync", reason="two instalments missed")
    with store.reading() as tx:
        assert tx.plans.active(cid) == []
        trail = tx.events.of(cid, entity=Entity.CUSTOMER, external_id="c1")
    assert [e.action for e in trail] == ["plan_set", "plan_ended"]
    with pytest.raises(ValueError, match="in order"), store.transaction() as tx:
        tx.plans.add(
            cid, "c1", ["inv-1"], "GBP", list(reversed(dues)),
            missed_allowed=0, reason="r", set_by="me",
        )  # fmt: skip
