"""The store on SQLite and PostgreSQL: migrations, exact money, pages applied atomically."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select, text

from arsync.clock import FrozenClock
from arsync.domain import (
    Allocation,
    Deleted,
    DocStatus,
    Kind,
    Page,
    Payment,
    Quarantined,
)
from arsync.errors import ConfigError
from arsync.store import PageOutcome, Store, open_store
from arsync.store.engine import filesystem_type, head_revision, open_engine
from arsync.store.schema import events, quarantine
from tests.support import invoice

T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def page(items: list[object], cursor: dict[str, object], **kw: object) -> Page:
    return Page(stream="test", items=items, cursor=cursor, **kw)  # type: ignore[arg-type]


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    made = open_store(db_url, FrozenClock(T))
    yield made
    made.close()


def begin(
    store: Store, name: str = "acme", platform: str = "qbo", full: bool = False
) -> tuple[int, int]:
    """A connector and a sync run of it: (connector id, sync id)."""
    with store.transaction() as tx:
        cid = tx.connectors.ensure(name, platform).id
        return cid, tx.runs.begin(cid, full=full)


def apply(store: Store, cid: int, sync: int, pg: Page) -> PageOutcome:
    with store.transaction() as tx:
        return tx.records.apply_page(cid, sync, pg)


def live(store: Store, cid: int, kind: Kind) -> dict[str, object]:
    with store.reading() as tx:
        return dict(tx.records.live(cid, kind))


def gone(store: Store, cid: int, kind: Kind) -> set[str]:
    with store.reading() as tx:
        return tx.records.deleted_ids(cid, kind)


def cursor(store: Store, cid: int) -> object:
    with store.reading() as tx:
        return tx.records.cursor(cid)


def test_migrations_reach_head_and_are_idempotent(db_url: str) -> None:
    engine = open_engine(db_url)
    open_engine(db_url).dispose()  # a second start finds nothing to do
    with engine.connect() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version == head_revision()
    engine.dispose()


def test_a_store_from_a_newer_arsync_is_refused(db_url: str) -> None:
    open_engine(db_url).dispose()
    engine = create_engine(db_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(ConfigError, match="newer arsync"):
        open_engine(db_url)


def test_sqlite_runs_in_wal_with_full_synchronous(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'x' / 'a.db'}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    engine.dispose()
    assert (tmp_path / "x").stat().st_mode & 0o077 == 0


def test_network_file_systems_are_recognised() -> None:
    mounts = (
        "/dev/sda1 / ext4 rw 0 0\n"
        "server:/export /srv/books nfs4 rw 0 0\n"
        "//nas/share /mnt/my\\040share cifs rw 0 0\n"
    )
    assert filesystem_type(Path("/var/lib/arsync"), mounts) == "ext4"
    assert filesystem_type(Path("/srv/books/state"), mounts) == "nfs4"
    assert filesystem_type(Path("/srv/booksx"), mounts) == "ext4"
    assert filesystem_type(Path("/mnt/my share/a.db"), mounts) == "cifs"


def test_unreachable_or_foreign_databases_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="SQLite or PostgreSQL"):
        open_engine("mysql://root@127.0.0.1/test")
    with pytest.raises(ConfigError, match="cannot open"):
        open_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")


def test_money_is_exact_and_records_round_trip(store: Store) -> None:
    cid, sync = begin(store, full=True)
    odd = invoice("1", balance="0.10", total=Decimal("1234567890.1234"))
    pay = Payment(
        id="p1",
        customer_id="c1",
        date=date(2026, 11, 2),
        currency="EUR",
        amount=Decimal("0.30"),
        unapplied=Decimal("0.10"),
        status=DocStatus.ACTIVE,
        allocations=(Allocation("1", Decimal("0.20")),),
        updated_at=T,
    )
    apply(store, cid, sync, page([odd, pay], {"v": 1}))
    assert live(store, cid, Kind.INVOICE) == {"1": odd}
    assert live(store, cid, Kind.PAYMENT) == {"p1": pay}
    assert cursor(store, cid) == {"v": 1}


def test_changes_are_logged_once_with_old_and_new_values(store: Store) -> None:
    cid, sync = begin(store)
    first = apply(store, cid, sync, page([invoice("1"), invoice("2")], {"n": 1}))
    assert (first.created, first.changed) == (2, 0)
    again = apply(store, cid, sync, page([invoice("1"), invoice("2")], {"n": 2}))
    assert (again.created, again.changed, again.unchanged) == (0, 0, 2)
    paid = apply(store, cid, sync, page([invoice("1", balance="0")], {"n": 3}))
    assert paid.changed == 1
    with store.engine.connect() as conn:
        logged = conn.execute(
            select(events.c.action, events.c.detail).where(events.c.external_id == "1")
        ).all()
    assert [a for a, _ in logged] == ["created", "changed"]
    assert logged[1][1] == {"balance": ["100.00", "0"], "status": ["open", "paid"]}


def test_deleted_then_restored(store: Store) -> None:
    cid, sync = begin(store, platform="xero")
    apply(store, cid, sync, page([invoice("1")], {}))
    out = apply(store, cid, sync, page([Deleted(Kind.INVOICE, "1")], {}))
    assert out.deleted == 1 and gone(store, cid, Kind.INVOICE) == {"1"}
    with store.reading() as tx:
        assert tx.records.open_invoice_ids(cid) == set()
    # deleting what is already gone, or was never here, logs nothing more
    out = apply(
        store, cid, sync, page([Deleted(Kind.INVOICE, "1"), Deleted(Kind.INVOICE, "9")], {})
    )
    assert out.deleted == 0
    apply(store, cid, sync, page([invoice("1")], {}))
    assert gone(store, cid, Kind.INVOICE) == set()
    with store.engine.connect() as conn:
        actions = conn.execute(select(events.c.action).order_by(events.c.id)).scalars().all()
    assert actions == ["created", "deleted", "restored"]


def test_a_completed_full_pass_deletes_what_it_did_not_see(store: Store) -> None:
    cid, sync = begin(store, full=True)
    apply(store, cid, sync, page([invoice("1"), invoice("2"), invoice("3")], {}, full_pass="p1"))
    apply(store, cid, sync, page([], {}, full_pass="p1", completed=frozenset({Kind.INVOICE})))
    assert gone(store, cid, Kind.INVOICE) == set()
    # a second full pass sees only 1 and 3, over two pages
    apply(store, cid, sync, page([invoice("1")], {}, full_pass="p2"))
    out = apply(
        store,
        cid,
        sync,
        page([invoice("3")], {}, full_pass="p2", completed=frozenset({Kind.INVOICE})),
    )
    assert out.deleted == 1
    assert gone(store, cid, Kind.INVOICE) == {"2"}
    assert set(live(store, cid, Kind.INVOICE)) == {"1", "3"}


def test_a_page_that_fails_leaves_neither_records_nor_cursor(store: Store) -> None:
    cid, sync = begin(store)
    apply(store, cid, sync, page([invoice("1")], {"at": "before"}))
    broken = invoice("2", total=Decimal("1.000001"))  # beyond four places: refused by the store
    with pytest.raises(Exception, match="four decimal places"):
        apply(store, cid, sync, page([invoice("1", balance="5.00"), broken], {"at": "after"}))
    assert cursor(store, cid) == {"at": "before"}
    assert live(store, cid, Kind.INVOICE) == {"1": invoice("1")}


def test_quarantine_keeps_the_raw_payload(store: Store) -> None:
    cid, sync = begin(store)
    raw = {"Id": "7", "TotalAmt": "abc", "Balance": Decimal("1.50")}
    out = apply(
        store,
        cid,
        sync,
        page([Quarantined(Kind.INVOICE, "7", "TotalAmt: not a number", raw), invoice("8")], {}),
    )
    assert (out.quarantined, out.created) == (1, 1)
    with store.engine.connect() as conn:
        held = conn.execute(select(quarantine)).one()
    assert held.payload == {"Id": "7", "TotalAmt": "abc", "Balance": "1.50"}
    assert held.reason == "TotalAmt: not a number"
    with store.reading() as tx:
        assert tx.records.counts(cid).quarantined == 1


def test_a_connector_cannot_change_platform(store: Store) -> None:
    with store.transaction() as tx:
        first = tx.connectors.ensure("acme", "qbo")
        assert tx.connectors.ensure("acme", "qbo") == first
    with pytest.raises(ConfigError, match="cannot change platform"), store.transaction() as tx:
        tx.connectors.ensure("acme", "xero")


def test_a_killed_run_is_marked_when_the_next_begins(store: Store) -> None:
    cid, first = begin(store, full=True)
    _, second = begin(store)
    with store.reading() as tx:
        outcomes = {run.id: run.outcome.value for run in tx.runs.of(cid)}
    assert outcomes == {first: "killed", second: "running"}


def test_the_exclusive_lock_excludes_a_second_holder(store: Store) -> None:
    from arsync.store import Busy

    with store.exclusive("sync:acme"):
        other = Store(store.engine, store.clock)
        with pytest.raises(Busy), other.exclusive("sync:acme"):
            pass
    with store.exclusive("sync:acme"):
        pass


def test_stores_in_two_schemas_of_one_database_do_not_share_their_locks() -> None:
    from arsync.store import Busy
    from tests.conftest import postgres_schema

    clock = FrozenClock(datetime(2026, 12, 1, tzinfo=UTC))
    with postgres_schema() as first_url, postgres_schema() as second_url:
        first = open_store(first_url, clock)
        second = open_store(second_url, clock)
        try:
            # advisory locks belong to the database: the schema is part of the key
            with first.exclusive("sync:acme"), second.exclusive("sync:acme"):
                again = Store(first.engine, clock)
                with pytest.raises(Busy), again.exclusive("sync:acme"):
                    pass
        finally:
            first.engine.dispose()
            second.engine.dispose()


def test_an_unknown_revision_is_refused_and_nothing_is_copied(tmp_path: Path) -> None:
    path = tmp_path / "a.db"
    open_engine(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0000'")
    # '0000' is unknown to this arsync: refused, and nothing is copied or changed
    with pytest.raises(ConfigError):
        open_engine(f"sqlite:///{path}")
    assert not list(tmp_path.glob("a.db.before-*"))
