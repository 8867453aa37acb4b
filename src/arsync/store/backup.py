"""Backing up a SQLite store and restoring one: whole copies, checked, swapped in atomically.

`backup(url, target)` copies the live store with SQLite's online backup API in one step, so the
copy is one consistent snapshot even while the daemon writes (a reader in WAL mode holds up no
writer). The copy is private (0600), written under a temporary name, checked (`PRAGMA
integrity_check`, an arsync schema revision) and only then linked under its name, which it
never overwrites.

`restoring(url, source)` copies a backup beside the store and checks it (a SQLite database, an
arsync store, whole, of a revision this arsync knows); `Candidate.install(stamp)` then, while
no process has the store open, keeps the current store (with its WAL) as
`<db>.before-restore-<stamp>` and renames the candidate over it, so the store's name always
holds a whole database. A PostgreSQL store is refused: pg_dump and pg_restore do this there.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from arsync.errors import Busy, ConfigError, StoreDamaged
from arsync.store.engine import (
    HEAD_REVISION,
    SQLITE_HEADER,
    check_sqlite_file,
    check_sqlite_place,
    head_revision,
    is_damage,
    open_engine,
    open_lock_path,
    parse_url,
    refuse_newer,
    sole_user,
    sqlite_path,
    up_to_date,
)
from arsync.store.leases import RUN_LOCK_SUFFIX
from arsync.store.locks import file_lock

#: tables every arsync store has had since its first revision, besides alembic_version
CORE_TABLES = frozenset({"connectors", "sync_runs", "invoices"})
#: files SQLite keeps beside a database while it is in use, or after a crash
SIDECARS = ("-wal", "-shm", "-journal")
#: what a person with the service running must do before restoring
STOP_FIRST = "stop the service first: systemctl stop arsync"


@dataclass(frozen=True)
class Copy:
    """A backup written and checked: where, how big, and its schema revision."""

    path: Path
    size: int
    revision: str


@dataclass(frozen=True)
class Restored:
    """A backup put in place of the store."""

    store: Path
    revision: str
    #: where the store it replaced is kept (None when there was none)
    aside: Path | None
    #: the backup is from an older arsync: its schema is migrated when arsync next opens it
    migrates: bool


def sqlite_store(url: str, verb: str) -> Path:
    """The file of the SQLite store at `url`; ConfigError for a store `verb` cannot copy."""
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if parsed.get_backend_name() == "postgresql":
        tool = "pg_dump" if verb == "backup" else "pg_restore (from a pg_dump archive)"
        raise ConfigError(
            f"arsync {verb} copies a SQLite store, and this store is on PostgreSQL "
            f"({parsed.render_as_string(hide_password=True)}): use {tool} instead"
        )
    if path is None:
        raise ConfigError(f"arsync {verb} needs a store in a file, not {url!r}")
    return path


def backup(url: str, target: Path) -> Copy:
    """Copy the live SQLite store at `url` to `target` (a new file), checked before it appears."""
    path = sqlite_store(url, "backup")
    target = target.absolute()
    if not check_sqlite_file(path):
        raise ConfigError(f"there is no store at {path} yet: nothing to back up")
    if target.exists():
        raise ConfigError(f"{target} already exists: a backup never overwrites a file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise ConfigError(f"cannot create {target.parent}: {err.strerror}") from err
    temporary = _temporary(target)
    # open_engine holds the store's open lock shared while it copies: no restore swaps the
    # file underneath; it neither migrates nor changes anything
    engine = open_engine(url, migrate=False)
    try:
        raw = engine.raw_connection()
        try:
            source = raw.driver_connection
            assert isinstance(source, sqlite3.Connection)
            _write_copy(source, temporary)
        finally:
            raw.close()
        revision = check_copy(temporary, f"the copy of {path}")
        _publish(temporary, target, replace=False)
    finally:
        engine.dispose()
        _discard(temporary)
    return Copy(target, target.stat().st_size, revision)


def copy_sqlite(source: sqlite3.Connection, target: Path, *, replace: bool) -> None:
    """A consistent copy of an open SQLite database at `target`: private, and under its name
    only once whole; an existing `target` is replaced when `replace`, else ConfigError."""
    temporary = _temporary(target)
    try:
        _write_copy(source, temporary)
        _publish(temporary, target, replace=replace)
    finally:
        _discard(temporary)


def check_copy(path: Path, what: str) -> str:
    """The schema revision of the SQLite database at `path`, once it is known whole
    (StoreDamaged otherwise) and an arsync store (ConfigError otherwise). `what` names it."""
    try:
        with contextlib.closing(sqlite3.connect(path)) as conn:
            problems = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
            if problems != ["ok"]:
                raise StoreDamaged(
                    f"{what} is damaged: SQLite's integrity check found "
                    f"{len(problems)} problem(s), the first: {problems[0]}"
                )
            tables = {
                str(row[0])
                for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
            if "alembic_version" not in tables or not tables >= CORE_TABLES:
                raise ConfigError(
                    f"{what} is not an arsync store: it is a SQLite database without arsync's "
                    "tables and schema revision"
                )
            versions = [
                str(row[0]) for row in conn.execute("SELECT version_num FROM alembic_version")
            ]
    except sqlite3.DatabaseError as err:
        if is_damage(err):
            raise StoreDamaged(f"{what} is damaged: {err}") from err
        raise ConfigError(f"cannot read {what}: {err}") from err
    if len(versions) != 1:
        raise ConfigError(
            f"{what} is not an arsync store: it holds {len(versions)} schema revisions, not one"
        )
    return versions[0]


@dataclass
class Candidate:
    """A backup copied beside the store and checked, ready to take the store's place."""

    store: Path
    source: Path
    revision: str
    temporary: Path

    def check_unused(self) -> None:
        """Busy, saying to stop the service, when a process has the store open now."""
        with _unused(self.store):
            pass

    def install(self, stamp: str) -> Restored:
        """Put the backup in the store's place; the store it replaces is kept beside it as
        `<db>.before-restore-<stamp>` (its WAL too). Busy when another process has it open."""
        with _unused(self.store):
            _same_owner(self.temporary, self.store)
            moved = _set_aside(self.store, stamp)
            try:
                os.replace(self.temporary, self.store)
            except OSError as err:
                _put_back(moved)
                raise ConfigError(f"cannot put the backup in place: {err.strerror}") from err
            _fsync_folder(self.store.parent)
        aside = next((to for what, to in moved if what == self.store), None)
        migrates = not up_to_date(self.revision) and self.revision != head_revision()
        return Restored(self.store, self.revision, aside, migrates)


@contextlib.contextmanager
def restoring(url: str, source: Path) -> Iterator[Candidate]:
    """The backup at `source` copied beside the store at `url` and checked, for `install`;
    whatever is not installed is removed when the block ends. Refuses (ConfigError) a file that
    is not an arsync store or is from a newer arsync, and (StoreDamaged) a damaged one."""
    store = sqlite_store(url, "restore")
    source = source.absolute()
    _check_source(source, store)
    check_sqlite_place(store)
    temporary = store.with_name(f".{store.name}.restore-{uuid.uuid4().hex[:8]}")
    try:
        _copy_file(source, temporary)
        if Path(f"{source}-wal").exists():
            # committed transactions a copy made while its database was open still keeps there
            _copy_file(Path(f"{source}-wal"), Path(f"{temporary}-wal"))
        what = f"the backup {source}"
        revision = check_copy(temporary, what)
        refuse_newer(
            revision,
            what,
            advice=f"restore it with the arsync that wrote it, or upgrade this one (its schema "
            f"revision is {HEAD_REVISION})",
        )
        _settle(temporary)
        yield Candidate(store, source, revision, temporary)
    finally:
        _discard(temporary)


def _check_source(source: Path, store: Path) -> None:
    if source.is_dir():
        raise ConfigError(f"{source} is a folder, not a backup file")
    if source.resolve() == store:
        raise ConfigError(f"{source} is the store itself, not a backup of it")
    try:
        with open(source, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        raise ConfigError(f"{source}: no such file") from None
    except OSError as err:
        raise ConfigError(f"cannot read {source}: {err.strerror}") from err
    if head != SQLITE_HEADER:
        raise ConfigError(
            f"{source} is not an arsync backup: it is not a SQLite database"
            + (" (the file is empty)" if not head else "")
        )


@contextlib.contextmanager
def _unused(store: Path) -> Iterator[None]:
    """No arsync process uses the store until the block ends: the service is not running (its
    run lock is free, and taken) and no process has the store open (its open lock, taken)."""
    # the lock the service (`arsync run`) holds for its lifetime on a SQLite store, its pid
    # written in it (store/leases.py)
    run_lock = open_lock_path(store).parent / f"{store.name}{RUN_LOCK_SUFFIX}"
    with contextlib.ExitStack() as held:
        try:
            held.enter_context(file_lock(run_lock, wait=False))
        except Busy:
            raise Busy(
                f"the service (arsync run{_holder(run_lock)}) is running on the store {store}: "
                f"{STOP_FIRST}, then restore again"
            ) from None
        try:
            held.enter_context(sole_user(store))
        except Busy as err:
            raise Busy(
                f"{err} (a command still running, or the service), so it cannot be replaced "
                f"now: {STOP_FIRST}, let any other arsync command finish, then restore again"
            ) from None
        yield


def _holder(run_lock: Path) -> str:
    """The service's pid as a message shows it (", pid N"), or nothing when it wrote none."""
    try:
        about = json.loads(run_lock.read_text())
        return f", pid {int(about['pid'])}"
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _temporary(target: Path) -> Path:
    return target.with_name(f".{target.name}.part-{uuid.uuid4().hex[:8]}")


def _write_copy(source: sqlite3.Connection, temporary: Path) -> None:
    """The whole database behind `source` in a new private file at `temporary`, on disk."""
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with contextlib.closing(sqlite3.connect(temporary)) as dest:
            # In one step (pages=-1): the copy reads one snapshot in one read transaction, which
            # in WAL mode holds up no writer. Step by step, each write by another connection
            # would start the copy over, and a busy daemon could keep it from ever finishing.
            source.backup(dest, pages=-1)
            # a file that stands alone: readable with no -wal or -shm beside it
            dest.execute("PRAGMA journal_mode=DELETE")
        _fsync(temporary)
    except OSError as err:
        raise ConfigError(f"cannot write {temporary}: {err.strerror}") from err


def _publish(temporary: Path, target: Path, *, replace: bool) -> None:
    try:
        if replace:
            os.replace(temporary, target)
        else:
            os.link(temporary, target)  # fails rather than overwrite a file that appeared
    except FileExistsError:
        raise ConfigError(f"{target} already exists: a backup never overwrites a file") from None
    except OSError as err:
        raise ConfigError(f"cannot write {target}: {err.strerror}") from err
    _fsync_folder(target.parent)


def _copy_file(source: Path, target: Path) -> None:
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with open(fd, "wb") as out, open(source, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
    except OSError as err:
        raise ConfigError(f"cannot copy {source} to {target}: {err.strerror}") from err


def _settle(path: Path) -> None:
    """Fold a copied WAL into the file and leave it standing alone, on disk."""
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("PRAGMA journal_mode=DELETE")
    _fsync(path)


def _same_owner(candidate: Path, store: Path) -> None:
    """Give the candidate the owner of the store it replaces: a restore run as root must not
    leave the service's user a store it cannot open (only root can give a file away)."""
    try:
        current = store.stat()
    except FileNotFoundError:
        return
    mine = candidate.stat()
    if (mine.st_uid, mine.st_gid) != (current.st_uid, current.st_gid):
        # not root: the file stays ours, as any file we write does
        with contextlib.suppress(PermissionError):
            os.chown(candidate, current.st_uid, current.st_gid)


def _set_aside(store: Path, stamp: str) -> list[tuple[Path, Path]]:
    """Keep the store and its sidecars under `<db>.before-restore-<stamp>`: the store itself as a
    second link, so its name never stands empty; its WAL and the rest moved, since a WAL left
    beside the restored file would be replayed into it. The moves made, to undo them."""
    base = store.with_name(f"{store.name}.before-restore-{stamp}")
    aside, n = base, 1
    while any(Path(f"{aside}{s}").exists() for s in ("", *SIDECARS)):
        n += 1
        aside = base.with_name(f"{base.name}-{n}")
    moved: list[tuple[Path, Path]] = []
    try:
        if store.exists():
            try:
                os.link(store, aside)
            except OSError as err:
                if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
                    raise
                # no hard links here: move it; no process has the store open meanwhile
                os.rename(store, aside)
            moved.append((store, aside))
        for suffix in SIDECARS:
            side = Path(f"{store}{suffix}")
            if side.exists():
                os.rename(side, Path(f"{aside}{suffix}"))
                moved.append((side, Path(f"{aside}{suffix}")))
    except OSError as err:
        _put_back(moved)
        raise ConfigError(f"cannot keep the current store as {aside}: {err.strerror}") from err
    return moved


def _put_back(moved: list[tuple[Path, Path]]) -> None:
    """Undo `_set_aside` after a failed swap: the store as it was, its WAL beside it."""
    for original, aside in reversed(moved):
        with contextlib.suppress(OSError):
            if original.exists():  # the store itself was linked, not moved: drop the link
                aside.unlink()
            else:
                os.rename(aside, original)


def _discard(temporary: Path) -> None:
    for leftover in (temporary, *(Path(f"{temporary}{s}") for s in SIDECARS)):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
