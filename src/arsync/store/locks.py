"""Locks across processes beside a SQLite store: one lock-file folder, one way to take a lock.

PostgreSQL stores lock with the database itself (advisory and row locks); a SQLite store has no
server, so processes sharing it meet at files in `.arsync-locks/` beside the database file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

from arsync.errors import Busy


def lock_dir(engine: Engine) -> Path | None:
    """The lock folder of a SQLite file store; None when no other process can share the store
    (in-memory SQLite) or the database locks for itself (PostgreSQL)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    directory = Path(database).resolve().parent / ".arsync-locks"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory


@contextlib.contextmanager
def file_lock(path: Path, *, wait: bool = True) -> Iterator[None]:
    """An exclusive `flock` on `path`; Busy at once when taken elsewhere and not `wait`.

    The lock belongs to the open file, so a killed holder releases it with its descriptors.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            raise Busy(f"{path.stem}: busy in another process") from None
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


__all__ = ["Busy", "file_lock", "lock_dir"]
