"""Backup and restore of a SQLite store: consistent under writers, every refusal, round trips."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from arsync.clock import FrozenClock
from arsync.domain import Page
from arsync.errors import Busy, ConfigError, StoreDamaged
from arsync.store import RunOutcome, Store, open_store
from arsync.store.backup import (
    STOP_FIRST,
    Restored,
    backup,
    restoring,
    sqlite_store,
)
from arsync.store.engine import _alembic_config, head_revision, sole_user
from arsync.store.leases import Replica
from tests.conftest import POSTGRES_URL
from tests.support import invoice

T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STAMP = "20261101-120000"


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'arsync.db'}"


@pytest.fixture
def db(url: str) -> Path:
    """The store's file, made and migrated, with a connector, its runs and two invoices."""
    store = open_store(url, FrozenClock(T))
    try:
        fill(store, "acme", ["1", "2"])
    finally:
        store.close()
    return sqlite_store(url, "test")


def fill(store: Store, name: str, invoices: list[str]) -> None:
    with store.transaction() as tx:
        cid = tx.connectors.ensure(name, "qbo").id
        sync = tx.runs.begin(cid, full=True)
    with store.transaction() as tx:
        page = Page(stream="test", items=[invoice(i) for i in invoices], cursor={"n": 1})
        tx.records.apply_page(cid, sync, page)
    with store.transaction() as tx:
        tx.runs.finish(sync, RunOutcome.OK, api_calls=3)


def rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, in rowid order (alembic_version has no rowid alias)."""
    with connected(f"file:{path}?mode=ro", uri=True) as conn:
        tables = [
            str(name)
            for (name,) in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
            )
        ]
        return {t: conn.execute(f'SELECT * FROM "{t}" ORDER BY rowid').fetchall() for t in tables}


@contextlib.contextmanager
def connected(path: Path | str, **options: Any) -> Iterator[sqlite3.Connection]:
    """A raw connection, committed and closed at the end (sqlite3's own `with` only commits)."""
    with contextlib.closing(sqlite3.connect(path, **options)) as conn, conn:
        yield conn


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path) -> list[str]:
    """Temporary files a backup or restore may have left (none, ever)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def restore(url: str, source: Path, stamp: str = STAMP) -> Restored:
    with restoring(url, source) as candidate:
        return candidate.install(stamp)


# -- backup ---------------------------------------------------------------------------------------
def test_a_backup_is_a_private_checked_file_that_stands_alone(
    url: str, db: Path, tmp_path: Path
) -> None:
    made = backup(url, tmp_path / "out" / "copy.db")
    assert made.path == tmp_path / "out" / "copy.db"
    assert made.revision == head_revision()
    assert made.size == made.path.stat().st_size > 0
    assert made.path.stat().st_mode & 0o777 == 0o600
    assert rows(made.path) == rows(db)
    # one file, in rollback-journal mode: readable with nothing beside it
    assert sorted(p.name for p in made.path.parent.iterdir()) == ["copy.db"]
    assert made.path.read_bytes()[18:20] == b"\x01\x01"


def test_a_backup_never_overwrites_and_needs_a_store(url: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no store at .* nothing to back up"):
        backup(url, tmp_path / "copy.db")
    open_store(url, FrozenClock(T)).close()
    (tmp_path / "copy.db").write_text("mine")
    with pytest.raises(ConfigError, match="already exists: a backup never overwrites"):
        backup(url, tmp_path / "copy.db")
    assert (tmp_path / "copy.db").read_text() == "mine"


def test_a_postgresql_store_is_sent_to_pg_dump_and_pg_restore(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"on PostgreSQL .*use pg_dump instead"):
        backup(POSTGRES_URL, tmp_path / "copy.db")
    with pytest.raises(ConfigError, match="use pg_restore"), restoring(POSTGRES_URL, tmp_path):
        pass


def test_a_backup_taken_while_another_connection_writes_is_one_moment(
    url: str, db: Path, tmp_path: Path
) -> None:
    """The copy holds whole transactions only, and the copying waits for no writer."""
    with connected(db) as conn:
        conn.execute("CREATE TABLE ledger (batch INTEGER NOT NULL, n INTEGER NOT NULL)")
    per_batch = 50

    # A write transaction open, half done, all through a backup: none of it is in the copy,
    # and the backup did not wait for it (in WAL mode a reader holds up no writer).
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany("INSERT INTO ledger VALUES (-1, ?)", [(n,) for n in range(25)])
        half = backup(url, tmp_path / "half.db")
        writer.execute("COMMIT")
    finally:
        writer.close()
    assert rows(half.path)["ledger"] == []

    # A writer committing batches in a loop while three backups are taken.
    first_commit, stop = threading.Event(), threading.Event()
    failures: list[BaseException] = []

    def write() -> None:
        conn = sqlite3.connect(db, isolation_level=None, timeout=30)
        conn.execute("PRAGMA synchronous=OFF")  # commits as fast as it can: more overlap
        try:
            batch = 0
            while not stop.is_set():
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany(
                    "INSERT INTO ledger VALUES (?, ?)", [(batch, n) for n in range(per_batch)]
                )
                conn.execute("COMMIT")
                batch += 1
                first_commit.set()
        except BaseException as err:
            failures.append(err)
        finally:
            first_commit.set()  # never leave the test waiting on a writer that failed
            conn.close()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        first_commit.wait()
        copies = [backup(url, tmp_path / f"copy-{i}.db") for i in range(3)]
    finally:
        stop.set()
        thread.join()
    assert failures == []
    with connected(db) as conn:
        written = {batch for (batch,) in conn.execute("SELECT batch FROM ledger")}
    taken = []
    for copy in copies:
        with connected(copy.path) as conn:
            assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            sizes = dict(conn.execute("SELECT batch, count(*) FROM ledger GROUP BY batch"))
        assert sizes.pop(-1) == 25  # the transaction held open above, committed whole since
        # whole batches only: the first ones the writer committed, in order, none cut short
        assert set(sizes.values()) == {per_batch}, sizes  # the first was in before the copy
        assert sorted(sizes) == list(range(len(sizes)))
        assert set(sizes) <= written
        taken.append(len(sizes))
    assert taken == sorted(taken)  # each copy a later moment than the one before


# -- restore: refusals ----------------------------------------------------------------------------
def refused(url: str, source: Path) -> pytest.ExceptionInfo[BaseException]:
    """Restore `source` expecting a refusal: the store and its folder are left as they were."""
    path = sqlite_store(url, "test")
    before = digest(path) if path.exists() else None
    with pytest.raises((ConfigError, StoreDamaged, Busy)) as caught:
        restore(url, source)
    assert (digest(path) if path.exists() else None) == before
    assert not list(path.parent.glob("*.before-restore-*"))
    assert leftovers(path.parent) == [".arsync-locks"]
    return caught


def test_a_file_that_is_not_sqlite_is_refused(url: str, db: Path, tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a database, but long enough to have a header\n")
    caught = refused(url, text)
    assert caught.type is ConfigError
    assert "is not an arsync backup: it is not a SQLite database" in str(caught.value)
    empty = tmp_path / "empty.db"
    empty.touch()
    assert "(the file is empty)" in str(refused(url, empty).value)
    assert "no such file" in str(refused(url, tmp_path / "missing.db").value)


def test_a_sqlite_file_that_is_not_an_arsync_store_is_refused(
    url: str, db: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other.db"
    with connected(other) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    caught = refused(url, other)
    assert caught.type is ConfigError
    assert f"the backup {other} is not an arsync store" in str(caught.value)


def test_a_backup_from_a_newer_arsync_is_refused(url: str, db: Path, tmp_path: Path) -> None:
    made = backup(url, tmp_path / "copy.db")
    with connected(made.path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    caught = refused(url, made.path)
    assert caught.type is ConfigError
    message = str(caught.value)
    assert f"the backup {made.path} was written by a newer arsync (schema revision 9999)" in (
        message
    )
    assert "restore it with the arsync that wrote it, or upgrade this one" in message


def test_a_damaged_backup_is_refused(url: str, db: Path, tmp_path: Path) -> None:
    made = backup(url, tmp_path / "copy.db")
    with connected(made.path) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'connectors'"
        ).fetchone()[0]
    # garble the cell pointers of the connectors table's page (it holds a row): the file is
    # still SQLite, but no longer whole
    with open(made.path, "r+b") as handle:
        handle.seek((root - 1) * page_size + 8)
        handle.write(b"\xff" * 64)
    caught = refused(url, made.path)
    assert caught.type is StoreDamaged
    assert f"the backup {made.path} is damaged" in str(caught.value)


def test_a_store_open_in_another_process_is_not_replaced(
    url: str, db: Path, tmp_path: Path
) -> None:
    made = backup(url, tmp_path / "copy.db")
    # a process with the store open (a command still running, or the service): another
    # process, so that what holds the lock is only that it has the store open
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from arsync.clock import SystemClock\n"
            "from arsync.store import open_store\n"
            "store = open_store(sys.argv[1], SystemClock())\n"
            "with store.reading() as tx:\n"
            "    tx.connectors.by_name('acme')\n"
            "print('open', flush=True)\n"
            "sys.stdin.read()\n",
            url,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        caught = refused(url, made.path)
        assert caught.type is Busy
        message = str(caught.value)
        assert f"the store {db} is open in another arsync process" in message
        assert STOP_FIRST in message
    finally:
        holder.communicate("")
    assert holder.returncode == 0
    assert restore(url, made.path).aside is not None  # free again once it has gone


def test_a_running_service_is_named_and_the_store_left_alone(
    url: str, db: Path, tmp_path: Path
) -> None:
    made = backup(url, tmp_path / "copy.db")
    # what `arsync run` holds for its life on a SQLite store: the one daemon's lock
    store = open_store(url, FrozenClock(T))
    try:
        with Replica(store, name="service"):
            caught = refused(url, made.path)
    finally:
        store.close()
    assert caught.type is Busy
    message = str(caught.value)
    assert f"the service (arsync run, pid {os.getpid()}) is running on the store {db}" in message
    assert STOP_FIRST in message


def test_the_store_cannot_be_opened_while_it_is_being_replaced(url: str, db: Path) -> None:
    with sole_user(db), pytest.raises(Busy, match="being replaced by `arsync restore`"):
        open_store(url, FrozenClock(T))
    open_store(url, FrozenClock(T)).close()


# -- restore: what it does ------------------------------------------------------------------------
def test_a_round_trip_keeps_every_row_and_the_replaced_store(
    url: str, db: Path, tmp_path: Path
) -> None:
    made = backup(url, tmp_path / "copy.db")
    at_backup = rows(db)
    store = open_store(url, FrozenClock(T))
    try:
        fill(store, "later", ["3"])
    finally:
        store.close()
    after_backup = rows(db)
    assert after_backup != at_backup

    restored = restore(url, made.path)
    aside = db.with_name(f"arsync.db.before-restore-{STAMP}")
    assert restored == Restored(db, head_revision(), aside, migrates=False)
    assert rows(db) == at_backup
    assert rows(restored.aside or db) == after_backup
    assert db.stat().st_mode & 0o777 == 0o600
    assert leftovers(db.parent) == [".arsync-locks"]
    # the restored store opens and works; the backup itself was not touched
    store = open_store(url, FrozenClock(T))
    try:
        with store.reading() as tx:
            assert [c.name for c in tx.connectors.all()] == ["acme"]
    finally:
        store.close()
    assert rows(made.path) == at_backup

    # a second restore the same second keeps both replaced stores
    again = restore(url, made.path)
    assert again.aside == db.with_name(f"arsync.db.before-restore-{STAMP}-2")


def test_the_replaced_store_keeps_its_wal(url: str, db: Path, tmp_path: Path) -> None:
    """A WAL left by a process that died is moved aside with its store, not replayed into the
    restored one."""
    made = backup(url, tmp_path / "copy.db")
    subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sqlite3, sys\n"
            "conn = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "conn.execute('PRAGMA wal_autocheckpoint=0')\n"
            "conn.execute(\"UPDATE connectors SET name = 'renamed'\")\n"
            "os._exit(0)  # killed: the change is in the WAL only\n",
            str(db),
        ],
        check=True,
    )
    assert Path(f"{db}-wal").stat().st_size > 0
    restored = restore(url, made.path)
    assert restored.aside is not None
    assert not Path(f"{db}-wal").exists()
    assert Path(f"{restored.aside}-wal").exists()
    with connected(restored.aside) as conn:
        assert conn.execute("SELECT name FROM connectors").fetchall() == [("renamed",)]
    with connected(db) as conn:
        assert conn.execute("SELECT name FROM connectors").fetchall() == [("acme",)]


def test_a_backup_from_an_older_arsync_is_restored_and_migrated_at_the_next_open(
    url: str, db: Path, tmp_path: Path
) -> None:
    from alembic import command
    from sqlalchemy import create_engine

    old = tmp_path / "old.db"
    engine = create_engine(f"sqlite:///{old}")
    try:
        with engine.begin() as conn:
            cfg = _alembic_config()
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "0001")
    finally:
        engine.dispose()
    restored = restore(url, old)
    assert restored.revision == "0001" and restored.migrates
    store = open_store(url, FrozenClock(T))
    store.close()
    with connected(db) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [
            (head_revision(),)
        ]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file to another user")
def test_a_restore_run_as_root_keeps_the_stores_owner(url: str, db: Path, tmp_path: Path) -> None:
    made = backup(url, tmp_path / "copy.db")
    os.chown(db, 4321, 4321)  # the service's user
    restore(url, made.path)
    assert (db.stat().st_uid, db.stat().st_gid) == (4321, 4321)


def test_a_store_can_be_restored_where_there_is_none(url: str, db: Path, tmp_path: Path) -> None:
    """A new machine: no store yet, not even its folder."""
    made = backup(url, tmp_path / "copy.db")
    elsewhere = f"sqlite:///{tmp_path / 'new' / 'home' / 'arsync.db'}"
    restored = restore(elsewhere, made.path)
    assert restored.aside is None
    assert rows(restored.store) == rows(db)
