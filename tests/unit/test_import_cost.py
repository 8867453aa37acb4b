"""Opening a store already at this arsync's revision costs no Alembic import (a tenth of a second
on every command); the revision that makes this so is held to the migrations' real head."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from arsync.clock import FrozenClock
from arsync.store import engine, open_store
from arsync.store.engine import HEAD_REVISION, head_revision, newest_migration, up_to_date

T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)

OPEN_AND_REPORT = """
import sys
from datetime import UTC, datetime
from arsync.clock import FrozenClock
from arsync.store import open_store

store = open_store(sys.argv[1], FrozenClock(datetime(2026, 11, 1, tzinfo=UTC)))
with store.reading() as tx:
    tx.connectors.all()
store.close()
print(sorted(m for m in sys.modules if m == "alembic" or m.startswith("alembic.")))
"""


def test_the_head_revision_is_the_migrations_head() -> None:
    """A new migration must move HEAD_REVISION with it: until then every start pays for Alembic
    (the newest file disagrees, so nothing is skipped), and this test says so."""
    assert head_revision() == HEAD_REVISION, (
        f"the migrations' head is {head_revision()}: set HEAD_REVISION in "
        "src/arsync/store/engine.py to it"
    )
    assert newest_migration() == HEAD_REVISION


def test_an_up_to_date_store_opens_without_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'arsync.db'}"
    open_store(url, FrozenClock(T)).close()  # made and migrated here, with Alembic
    opened = subprocess.run(
        [sys.executable, "-c", OPEN_AND_REPORT, url],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.strip() == "[]", f"imported: {opened.stdout}"


def test_a_store_behind_or_a_constant_behind_goes_to_alembic(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engine, "newest_migration", lambda: HEAD_REVISION)
    assert up_to_date(HEAD_REVISION)
    assert not up_to_date(None)
    assert not up_to_date("0001")
    # a migration added without moving the constant: the newest file names another head, so
    # the constant alone never decides that nothing is to be migrated
    monkeypatch.setattr(engine, "newest_migration", lambda: "0099_added_later")
    assert not up_to_date(HEAD_REVISION)
