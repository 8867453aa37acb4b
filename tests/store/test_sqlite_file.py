"""A SQLite store's file: made whole and private, damage reported as damage, probes that write
nothing."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arsync.clock import FrozenClock
from arsync.domain import Kind, Page
from arsync.errors import ConfigError, StoreDamaged
from arsync.store import open_store, probe
from arsync.store.engine import RECOVERY_ADVICE, open_engine
from tests.support import invoice

T = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def filled(path: Path, invoices: int = 3000) -> None:
    """A store holding one connector and `invoices` invoices (several hundred pages)."""
    store = open_store(f"sqlite:///{path}", FrozenClock(T))
    # long numbers, so the invoices fill many pages of the database file
    items: list[object] = [invoice(n, number=f"INV-{n:06d}-" + "x" * 60) for n in range(invoices)]
    with store.transaction() as tx:
        cid = tx.connectors.ensure("acme", "xero").id
        tx.records.apply_page(cid, None, Page("t", items, {}))  # type: ignore[arg-type]
    store.close()


def read_everything(path: Path) -> None:
    store = open_store(f"sqlite:///{path}", FrozenClock(T))
    try:
        with store.reading() as tx:
            for row in tx.connectors.all():
                tx.records.counts(row.id)
                tx.records.live(row.id, Kind.INVOICE)
    finally:
        store.close()


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def garble(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.seek(4096 * 20)
        handle.write(bytes((n * 97 + 13) % 251 for n in range(4096 * 30)))


def wrong_header(path: Path) -> None:
    with open(path, "r+b") as handle:
        handle.write(b"This is no SQLit")


def empty(path: Path) -> None:
    os.truncate(path, 0)


@pytest.mark.parametrize("damage", [truncate, garble, wrong_header, empty])
def test_a_damaged_store_is_reported_as_damaged_and_left_alone(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    path = tmp_path / "arsync.db"
    filled(path)
    damage(path)
    before = path.read_bytes()
    with pytest.raises(StoreDamaged) as caught:
        read_everything(path)
    message = str(caught.value)
    assert str(path) in message and "damaged" in message
    assert RECOVERY_ADVICE in message
    assert caught.value.exit_code == 6
    assert path.read_bytes() == before  # never repaired, replaced or emptied behind anyone's back


def test_an_empty_file_never_becomes_a_new_store(tmp_path: Path) -> None:
    path = tmp_path / "arsync.db"
    path.touch()
    with pytest.raises(StoreDamaged, match="empty"):
        open_engine(f"sqlite:///{path}")
    assert path.stat().st_size == 0
    with pytest.raises(StoreDamaged, match="empty"):
        probe(f"sqlite:///{path}")


def test_a_new_store_is_made_whole_and_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "arsync.db"
    store = open_store(f"sqlite:///{path}", FrozenClock(T))
    try:
        with store.transaction() as tx:
            tx.connectors.ensure("acme", "qbo")
        made = sorted(p.name for p in path.parent.iterdir() if p.is_file())
        assert made == ["arsync.db", "arsync.db-shm", "arsync.db-wal"]
        for name in made:
            assert (path.parent / name).stat().st_mode & 0o777 == 0o600, name
        assert path.parent.stat().st_mode & 0o777 == 0o700
    finally:
        store.close()
    assert sorted(p.name for p in path.parent.iterdir() if p.is_file()) == ["arsync.db"]


def test_a_store_killed_while_being_made_leaves_nothing_half_made(tmp_path: Path) -> None:
    # What a kill between creating the file and writing the database would leave behind: a
    # temporary file, never the store's own name.
    path = tmp_path / "arsync.db"
    (tmp_path / ".arsync.db.new-dead0000").touch()
    open_engine(f"sqlite:///{path}").dispose()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT count(*) FROM connectors").fetchone() == (0,)


def test_a_probe_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state" / "arsync.db"
    probe(f"sqlite:///{path}")
    assert not (tmp_path / "deep").exists()
    filled(tmp_path / "a.db", invoices=1)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    probe(f"sqlite:///{tmp_path / 'a.db'}")
    after = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before


def test_a_probe_refuses_what_opening_would(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="not a folder"):
        probe(f"sqlite:///{blocker / 'arsync.db'}")
    folder = tmp_path / "db-is-a-folder"
    folder.mkdir()
    with pytest.raises(ConfigError, match="is a folder"):
        probe(f"sqlite:///{folder}")
    path = tmp_path / "newer.db"
    open_engine(f"sqlite:///{path}").dispose()
    with contextlib.closing(sqlite3.connect(path)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    with pytest.raises(ConfigError, match="newer arsync"):
        probe(f"sqlite:///{path}")
