"""`arsync backup` and `arsync restore` as an operator runs them: the installed console script in
a process of its own, on a home whose clock follows a frozen sandbox; messages and exit codes."""

from __future__ import annotations

import contextlib
import os
import pty
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from arsync.clock import FrozenClock
from arsync.domain import Page
from arsync.sandbox import SandboxServer
from arsync.store import RunOutcome, open_store
from arsync.store.engine import head_revision
from tests.support import TEST_NOW, invoice, make_sandbox

#: the console script `pip install arsync` puts beside the interpreter
ARSYNC = Path(sys.executable).with_name("arsync")
#: TEST_NOW, the sandbox's frozen moment, as backup names show it
STAMP = "20261123-150000"


@pytest.fixture(scope="module")
def sandbox_url() -> Iterator[str]:
    """A sandbox for its clock alone: the books are the smallest it makes."""
    with SandboxServer(make_sandbox(customers=1, invoices=0)) as server:
        yield server.url


@pytest.fixture
def home(tmp_path: Path, sandbox_url: str) -> Path:
    """An arsync home whose store holds a connector, a finished sync and two invoices."""
    made = tmp_path / "home"
    (made / "config").mkdir(parents=True)
    (made / "config" / "arsync.toml").write_text(
        '[store]\nurl = "sqlite:///state/arsync.db"\n'
        f'[log]\nformat = "json"\n[clock]\nsandbox = "{sandbox_url}"\n'
    )
    add(made, "acme", ["1", "2"])
    return made


def store_url(home: Path) -> str:
    return f"sqlite:///{home / 'state' / 'arsync.db'}"


def add(home: Path, name: str, invoices: list[str]) -> None:
    """A connector with a finished sync of these invoices, written as `arsync sync` would."""
    store = open_store(store_url(home), FrozenClock(TEST_NOW))
    try:
        with store.transaction() as tx:
            cid = tx.connectors.ensure(name, "qbo").id
            sync = tx.runs.begin(cid, full=True)
        with store.transaction() as tx:
            page = Page(
                stream="test", items=[invoice(f"{name}-{i}") for i in invoices], cursor={"n": 1}
            )
            tx.records.apply_page(cid, sync, page)
        with store.transaction() as tx:
            tx.runs.finish(sync, RunOutcome.OK, api_calls=2)
    finally:
        store.close()


def rows(db: Path) -> dict[str, list[tuple[object, ...]]]:
    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        names = [n for (n,) in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {n: conn.execute(f'SELECT * FROM "{n}" ORDER BY rowid').fetchall() for n in names}


def arsync(
    home: Path, *args: str, stdin: int | None = subprocess.DEVNULL, feed: str | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "300", "NO_COLOR": "1"}
    return subprocess.run(
        [str(ARSYNC), *args, "--home", str(home)],
        stdin=stdin if feed is None else None,
        input=feed,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def one_line(text: str) -> str:
    return " ".join(text.split())


def test_backup_then_restore_round_trip(home: Path) -> None:
    db = home / "state" / "arsync.db"
    made = arsync(home, "backup")
    assert made.returncode == 0, made.stderr
    copy = db.parent / "backups" / f"arsync-{STAMP}.db"
    assert one_line(made.stdout).startswith(f"Backed up the store to {copy} (")
    assert f"schema revision {head_revision()})." in made.stdout
    assert copy.stat().st_mode & 0o777 == 0o600
    at_backup = rows(db)
    assert rows(copy) == at_backup

    # the same name again (the clock is frozen): refused, the first backup kept
    again = arsync(home, "backup")
    assert again.returncode == 2
    assert f"{copy} already exists: a backup never overwrites a file" in one_line(again.stderr)

    add(home, "later", ["3"])
    assert rows(db) != at_backup

    # no terminal to ask on, and no --yes: refused, nothing changed
    unasked = arsync(home, "restore", str(copy))
    assert unasked.returncode == 2
    assert "give --yes to go ahead (there is no terminal to ask on)" in one_line(unasked.stderr)
    assert rows(db) != at_backup

    restored = arsync(home, "restore", str(copy), "--yes")
    assert restored.returncode == 0, restored.stderr
    out = one_line(restored.stdout)
    assert f"Restored {copy} (schema revision {head_revision()}) as the store {db}." in out
    aside = db.with_name(f"arsync.db.before-restore-{STAMP}")
    assert f"The store it replaced is kept as {aside}." in out
    assert "systemctl start arsync" in out
    assert rows(db) == at_backup
    assert "later" in str(rows(aside)["connectors"])


def test_restore_asks_on_a_terminal(home: Path) -> None:
    db = home / "state" / "arsync.db"
    copy = home / "copy.db"
    assert arsync(home, "backup", "--to", str(copy)).returncode == 0
    add(home, "later", ["3"])
    after = rows(db)

    def answered(answer: str) -> subprocess.CompletedProcess[str]:
        main, terminal = pty.openpty()
        try:
            os.write(main, answer.encode() + b"\n")  # typed ahead; read when it asks
            return arsync(home, "restore", str(copy), stdin=terminal)
        finally:
            os.close(terminal)
            os.close(main)

    declined = answered("n")
    assert declined.returncode == 1
    assert f"Replace the store {db} with {copy}" in one_line(declined.stdout)
    assert "restore: given up; the store is unchanged" in declined.stderr
    assert rows(db) == after

    accepted = answered("y")
    assert accepted.returncode == 0, accepted.stderr
    assert "Restored" in accepted.stdout
    assert rows(db) == rows(copy)


def test_restore_refusals_say_why_with_their_exit_codes(home: Path, tmp_path: Path) -> None:
    db = home / "state" / "arsync.db"
    copy = tmp_path / "copy.db"
    assert arsync(home, "backup", "--to", str(copy)).returncode == 0
    before = db.read_bytes()

    text = tmp_path / "notes.txt"
    text.write_text("a letter, not a database\n")
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE notes (body TEXT)")
    newer = tmp_path / "newer.db"
    newer.write_bytes(copy.read_bytes())
    with contextlib.closing(sqlite3.connect(newer)) as conn, conn:
        conn.execute("UPDATE alembic_version SET version_num = '9999'")
    damaged = tmp_path / "damaged.db"
    damaged.write_bytes(copy.read_bytes())
    with contextlib.closing(sqlite3.connect(damaged)) as conn:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
        root = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='connectors'").fetchone()
    with open(damaged, "r+b") as handle:  # the connectors table's cell pointers, garbled
        handle.seek((root[0] - 1) * size + 8)
        handle.write(b"\xff" * 64)

    for source, code, words in [
        (text, 2, f"{text} is not an arsync backup: it is not a SQLite database"),
        (other, 2, f"the backup {other} is not an arsync store"),
        (newer, 2, f"the backup {newer} was written by a newer arsync (schema revision 9999)"),
        (damaged, 6, f"the backup {damaged} is damaged"),
        (tmp_path / "missing.db", 2, "missing.db: no such file"),
    ]:
        refused = arsync(home, "restore", str(source), "--yes")
        assert refused.returncode == code, (source, refused.stderr)
        assert words in one_line(refused.stderr), refused.stderr
        assert refused.stdout == ""
    assert db.read_bytes() == before
    assert not list(db.parent.glob("*.before-restore-*"))


def test_restore_refuses_while_another_process_has_the_store_open(home: Path) -> None:
    db = home / "state" / "arsync.db"
    copy = home / "copy.db"
    assert arsync(home, "backup", "--to", str(copy)).returncode == 0
    # a long-running arsync process with the store open (as the service has)
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from arsync.clock import SystemClock\n"
            "from arsync.store import open_store\n"
            "store = open_store(sys.argv[1], SystemClock())\n"
            "print('open', flush=True)\n"
            "sys.stdin.read()\n",
            store_url(home),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "open\n"
        busy = arsync(home, "restore", str(copy), "--yes")
        # a backup, on the other hand, is safe beside it
        beside = arsync(home, "backup", "--to", str(home / "beside.db"))
    finally:
        holder.communicate("")
    assert busy.returncode == 4
    message = one_line(busy.stderr)
    assert f"the store {db} is open in another arsync process" in message
    assert "stop the service first: systemctl stop arsync" in message
    assert not list(db.parent.glob("*.before-restore-*"))
    assert beside.returncode == 0, beside.stderr
    # once it has gone, the restore goes through
    assert arsync(home, "restore", str(copy), "--yes").returncode == 0


def test_a_postgresql_store_is_pointed_to_pg_dump(home: Path) -> None:
    settings = home / "config" / "arsync.toml"
    settings.write_text(
        settings.read_text().replace(
            'url = "sqlite:///state/arsync.db"',
            'url = "postgresql+psycopg://arsync@127.0.0.1:5432/arsync"',
        )
    )
    backup = arsync(home, "backup")
    assert backup.returncode == 2
    assert "this store is on PostgreSQL" in one_line(backup.stderr)
    assert "use pg_dump instead" in one_line(backup.stderr)
    restore = arsync(home, "restore", str(home / "any.db"), "--yes")
    assert restore.returncode == 2
    assert "use pg_restore" in one_line(restore.stderr)
