"""Opening the store: SQLite (WAL, synchronous=FULL, local disks only) or PostgreSQL, migrated.

`open_engine(url)` checks the place, sets the connection up and applies Alembic migrations under
a lock, so two arsync processes starting together never migrate at once. A database written by a
newer arsync is refused rather than touched. A SQLite file is copied aside before it is migrated.
A store already at this arsync's revision (`HEAD_REVISION`) is opened without importing Alembic,
which costs every command about a tenth of a second; Alembic is loaded only to migrate, or to
tell a store from a newer arsync apart.

Every connection to a SQLite file store holds a shared lock on `<db>.open.lock` beside it (in
`.arsync-locks/`), so `arsync restore` can take it exclusively and know that no other process
has the file open while it swaps the file.

A SQLite store is private (0600, with its WAL) and is only ever created whole: it is made under
a temporary name and moved into place once it is a database, so a file at the store's path that
is empty or not a database is damage, reported as such (StoreDamaged, exit code 6) and never
quietly replaced by a new store. So is a database SQLite finds malformed while reading it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import re
import sqlite3
import uuid
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from arsync import alembic_dir
from arsync.errors import Busy, ConfigError, StoreDamaged
from arsync.store.locks import file_lock, lock_dir

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

#: this arsync's schema revision, the head of migrations/versions/ (a test holds the two equal:
#: a new migration updates it). Opening a store already there needs no Alembic.
HEAD_REVISION = "0006_sync_runs_indexes"
#: a migration's file name (its number first) and the line in it that names its revision
_MIGRATION_FILE = re.compile(r"^(\d+)_\w*\.py$")
_REVISION_LINE = re.compile(r"""^revision\s*(?::[^=]*)?=\s*["']([^"']+)["']""", re.MULTILINE)

#: the first 16 bytes of every SQLite 3 database file
SQLITE_HEADER = b"SQLite format 3\x00"
#: SQLite's result codes for a file that is not, or no longer, a readable database
_DAMAGE_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR_SHORT_READ"})
#: where a person whose store is damaged finds what to do
RECOVERY_ADVICE = (
    "restore it from a backup with `arsync restore FILE` (one `arsync backup` made, or the "
    'copy arsync keeps as <name>.before-<revision> before each upgrade; see "If the store is '
    'damaged" in the README), or move it aside and run `arsync connect` and `arsync sync` for '
    "each connector to rebuild it from the platforms"
)

#: file systems a SQLite database must not live on: their locking breaks WAL and fsync
NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb",
        "smb2",
        "smb3",
        "smbfs",
        "ncpfs",
        "afs",
        "9p",
        "ceph",
        "glusterfs",
        "lustre",
        "gpfs",
        "fuse.sshfs",
        "fuse.s3fs",
        "fuse.rclone",
        "fuse.gcsfuse",
        "davfs",
        "fuse.davfs2",
    }
)
#: PostgreSQL advisory lock key held while migrating ("arsync" in ASCII)
_PG_MIGRATION_LOCK = 0x617273796E63


def _json_default(value: Any) -> Any:
    # Raw platform payloads hold Decimals (money is never parsed as float) and datetimes.
    return str(value)


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, sort_keys=True, ensure_ascii=False)


def parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except ArgumentError as err:
        raise ConfigError(f"store.url: not a database URL: {url!r}") from err
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"store.url: arsync stores its state in SQLite or PostgreSQL, not "
            f"{parsed.get_backend_name()!r}"
        )
    if parsed.get_backend_name() == "postgresql" and parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: URL) -> Path | None:
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return Path(url.database or "").resolve()


def filesystem_type(path: Path, mounts: str | None = None) -> str | None:
    """The type of the file system holding `path`, from /proc/self/mounts (Linux)."""
    if mounts is None:
        try:
            mounts = Path("/proc/self/mounts").read_text()
        except OSError:
            return None
    best, kind = "", None
    target = str(path)
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        mount = fields[1].replace("\\040", " ")
        if (target == mount or target.startswith(mount.rstrip("/") + "/")) and len(mount) > len(
            best
        ):
            best, kind = mount, fields[2]
    return kind


def check_sqlite_place(path: Path, *, create: bool = True) -> None:
    """The folder can hold a SQLite store: creatable (made, 0700, when `create`), local."""
    directory = path.parent
    if create:
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as err:
            raise ConfigError(f"store.url: cannot create {directory}: {err.strerror}") from err
    else:
        existing = directory
        while not existing.exists():
            existing = existing.parent
        if not existing.is_dir():
            raise ConfigError(f"store.url: {existing} is not a folder, so {path} cannot be made")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"store.url: {existing} is not writable, so {path} cannot be made")
    kind = filesystem_type(directory if directory.exists() else directory.parent)
    if kind in NETWORK_FILESYSTEMS:
        raise ConfigError(
            f"store.url: {path} is on a network file system ({kind}); SQLite's locking and "
            "durability do not hold there. Put the database on a local disk or use PostgreSQL."
        )


def damaged(path: Path | str, what: str) -> StoreDamaged:
    return StoreDamaged(
        f"the store {path} is damaged ({what}). arsync cannot use it: {RECOVERY_ADVICE}"
    )


def check_sqlite_file(path: Path) -> bool:
    """Whether a database file is there; StoreDamaged when what is there is not a database."""
    if path.is_dir():
        raise ConfigError(f"store.url: {path} is a folder, not a database file")
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_HEADER))
    except FileNotFoundError:
        return False
    except OSError as err:
        raise ConfigError(f"store.url: cannot read {path}: {err.strerror}") from err
    if not head:
        # arsync only ever moves a whole database into place: an empty file is not one of its
        # stores half-made, it is a store truncated to nothing (or someone else's file).
        raise damaged(path, "the file is empty: 0 bytes")
    if head != SQLITE_HEADER:
        raise damaged(path, "the file is not a SQLite database: its header is wrong")
    return True


def _create_sqlite(path: Path) -> None:
    """A new, empty WAL database at `path`, private (0600), appearing there all at once."""
    temporary = path.with_name(f".{path.name}.new-{uuid.uuid4().hex[:8]}")
    try:
        os.close(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        with contextlib.closing(sqlite3.connect(temporary)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # writes the header: now a database
        with open(temporary, "rb") as handle:
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):  # another process made it first: theirs
            os.link(temporary, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
    except OSError as err:
        raise ConfigError(f"store.url: cannot create {path}: {err.strerror}") from err
    finally:
        for leftover in (temporary, Path(f"{temporary}-wal"), Path(f"{temporary}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        check_sqlite_place(path)
        if not check_sqlite_file(path):
            _create_sqlite(path)
        engine = create_engine(
            parsed,
            json_serializer=dumps,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        _sqlite_setup(engine, path, open_lock_path(path))
    else:
        engine = _postgresql(parsed, json_serializer=dumps)
    try:
        _reach(engine, parsed)
        if migrate:
            upgrade(engine)
    except BaseException:
        engine.dispose()
        raise
    return engine


def probe(url: str) -> None:
    """Check that the store at `url` can be used, writing nothing: the folder of a SQLite store
    that does not exist yet, or the database that does (readable, not newer than this arsync).
    Raises what `open_engine` would."""
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is None:
        engine = _postgresql(parsed)
    else:
        check_sqlite_place(path, create=False)
        if not check_sqlite_file(path):
            return
        # immutable: a probe must not even leave a -wal or -shm file beside the database
        parsed = parsed.set(
            database=f"file:{path}", query={"mode": "ro", "immutable": "1", "uri": "true"}
        )
        engine = create_engine(parsed, connect_args={"check_same_thread": False})
        _damage_as_error(engine, path)
    try:
        _reach(engine, parsed)
        refuse_newer(current_revision(engine), _described(engine))
    finally:
        engine.dispose()


def _reach(engine: Engine, parsed: URL) -> None:
    """One statement, so that an unreachable or unreadable database says so now."""
    probe_sql = (
        "SELECT count(*) FROM sqlite_master" if engine.dialect.name == "sqlite" else "SELECT 1"
    )
    try:
        # only reading: a command starting beside a busy daemon does not wait for the write
        # lock (the SQLite begin hook honours this option; other databases ignore it)
        with engine.connect().execution_options(**{READ_ONLY: True}) as conn, conn.begin():
            conn.execute(text(probe_sql))
    except OperationalError as err:
        raise ConfigError(
            f"store.url: cannot open the database {parsed.render_as_string(hide_password=True)}: "
            f"{str(err.orig).strip().splitlines()[0] if err.orig else err}"
        ) from err


def _postgresql(parsed: URL, **options: Any) -> Engine:
    try:
        return create_engine(parsed, pool_pre_ping=True, **options)
    except ImportError as err:  # the driver is an extra: pip install 'arsync[postgresql]'
        raise ConfigError(
            "store.url: a PostgreSQL store needs the psycopg driver, which is not installed: "
            "install arsync with its PostgreSQL extra (pip install 'arsync[postgresql]')"
        ) from err


def is_damage(err: BaseException) -> bool:
    """Whether SQLite raised `err` because the file is not, or no longer, a readable database."""
    return isinstance(err, sqlite3.DatabaseError) and (
        getattr(err, "sqlite_errorname", None) in _DAMAGE_CODES
        or str(err) in ("file is not a database", "database disk image is malformed")
    )


def _damage_as_error(engine: Engine, where: Path | str) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        err = context.original_exception
        if is_damage(err):
            raise damaged(where, str(err)) from err


#: execution option of a connection that only reads (Store.reading)
READ_ONLY = "arsync_read_only"


def open_lock_path(path: Path) -> Path:
    """The lock file that every connection to the SQLite store at `path` holds shared (and that
    `arsync restore` takes exclusively), beside the store's other locks; its folder is made."""
    # lock_dir knows where a store's locks live and asks an engine; one that is never used
    # never connects, so this opens nothing
    directory = lock_dir(create_engine(URL.create("sqlite", database=str(path))))
    assert directory is not None
    return directory / f"{path.name}.open.lock"


class _Hold:
    """A lock held through a file descriptor: released by `release()`, or when the hold is
    collected (an engine dropped without being disposed of must not keep its locks)."""

    def __init__(self, fd: int) -> None:
        self.release = weakref.finalize(self, os.close, fd)


def _hold_open_lock(lock: Path, path: Path) -> _Hold:
    """A shared lock on `lock` for one connection, to be released with the connection. Busy at
    once while a restore holds it exclusively."""
    try:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as err:
        raise ConfigError(
            f"store.url: cannot open the store's lock {lock}: {err.strerror}"
        ) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Busy(
            f"the store {path} is being replaced by `arsync restore`: try again once it is done"
        ) from None
    return _Hold(fd)


@contextlib.contextmanager
def sole_user(path: Path) -> Iterator[None]:
    """No process has the SQLite store at `path` open until the block ends: Busy at once when
    one has (every connection to it holds its open lock shared)."""
    try:
        with file_lock(open_lock_path(path), wait=False):
            yield
    except Busy:
        raise Busy(f"the store {path} is open in another arsync process") from None


def _sqlite_setup(engine: Engine, path: Path | None, open_lock: Path | None = None) -> None:
    _damage_as_error(engine, path or ":memory:")
    #: each open connection's hold on the store's open lock, by id of the DBAPI connection
    holds: dict[int, _Hold] = {}

    def release(dbapi_conn: sqlite3.Connection) -> None:
        hold = holds.pop(id(dbapi_conn), None)
        if hold is not None:
            hold.release()  # closing the descriptor releases its lock

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        if open_lock is not None and path is not None:
            # before the first statement: a file being swapped by a restore is never touched
            holds[id(dbapi_conn)] = _hold_open_lock(open_lock, path)
        # pysqlite's own transaction handling is switched off so that every transaction can
        # begin IMMEDIATE: a writer takes the write lock up front and never fails half-way
        # with SQLITE_BUSY when upgrading a read lock.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
        except sqlite3.DatabaseError as err:
            release(dbapi_conn)  # the pool closes a connection whose set-up failed, unseen
            if getattr(err, "sqlite_errorname", None) in _DAMAGE_CODES:
                raise damaged(path or ":memory:", str(err)) from err
            raise
        except BaseException:
            release(dbapi_conn)
            raise
        finally:
            cur.close()

    @event.listens_for(engine, "close")
    def _on_close(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        release(dbapi_conn)

    @event.listens_for(engine, "close_detached")
    def _on_close_detached(dbapi_conn: sqlite3.Connection) -> None:
        release(dbapi_conn)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            # A reader never blocks a writer in WAL mode, and must not take the write lock.
            conn.exec_driver_sql("PRAGMA query_only=ON")
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("PRAGMA query_only=OFF")
            conn.exec_driver_sql("BEGIN IMMEDIATE")


def _alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(alembic_dir()))
    return cfg


def head_revision() -> str:
    """The head of the migrations as Alembic reads them (HEAD_REVISION is kept equal to it)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def known_revisions() -> set[str]:
    """Every schema revision this arsync's migrations know."""
    from alembic.script import ScriptDirectory

    return {r.revision for r in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}


def stored_revision(conn: Connection) -> str | None:
    """The schema revision in a database's alembic_version table (None when it has none), read
    with SQLAlchemy alone, as Alembic would read it."""
    if not inspect(conn).has_table("alembic_version"):
        return None
    versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    if len(versions) > 1:
        # arsync's migrations are one line; branches in the table mean another tool wrote it
        raise ConfigError(
            f"the database has several schema revisions ({', '.join(sorted(versions))}); "
            "arsync's schema has one at a time: it is not an arsync store"
        )
    return str(versions[0]) if versions else None


def current_revision(engine: Engine) -> str | None:
    """The store's schema revision, or None for a database arsync has not set up yet."""
    # only reading: on SQLite this takes no write lock, so a busy daemon does not hold up a
    # command starting beside it
    with engine.connect().execution_options(**{READ_ONLY: True}) as conn, conn.begin():
        return stored_revision(conn)


@contextlib.contextmanager
def _migration_lock(engine: Engine) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_MIGRATION_LOCK})
                conn.commit()
        return
    directory = lock_dir(engine)
    if directory is None:  # in-memory: no other process can reach it
        yield
        return
    with file_lock(directory / "migrate.lock"):
        yield


def _described(engine: Engine) -> str:
    return f"the store at {engine.url.render_as_string(hide_password=True)}"


def refuse_newer(
    current: str | None,
    what: str,
    advice: str = "upgrade arsync instead of using an older one on it",
) -> None:
    """A revision this arsync does not know was written by a newer one: never touch it.

    `what` names the database ("the store at ..."). Alembic is imported only when the revision
    is neither none nor this arsync's own.
    """
    if current is None or current == HEAD_REVISION:
        return
    if current not in known_revisions():
        raise ConfigError(
            f"{what} was written by a newer arsync (schema revision {current}); {advice}"
        )


@functools.cache
def newest_migration() -> str | None:
    """The revision the highest-numbered migration file names, read from its text (no Alembic)."""
    versions = alembic_dir() / "versions"
    try:
        numbered = [(m, n) for n in os.listdir(versions) if (m := _MIGRATION_FILE.match(n))]
        if not numbered:
            return None
        _, newest = max(numbered, key=lambda found: (int(found[0].group(1)), found[1]))
        named = _REVISION_LINE.search((versions / newest).read_text(encoding="utf-8"))
    except OSError:
        return None
    return named.group(1) if named else None


def up_to_date(current: str | None) -> bool:
    """Whether a store at revision `current` has nothing to migrate, known without Alembic.

    It must be at HEAD_REVISION, and the newest migration file must say that is the head too:
    a migration added without updating the constant then only makes opening slower (Alembic
    decides), never skips the migration.
    """
    return current == HEAD_REVISION and newest_migration() == HEAD_REVISION


def upgrade(engine: Engine) -> None:
    """Bring the schema to this arsync's head revision (idempotent; safe to race)."""
    if up_to_date(current_revision(engine)):
        # the common case, settled without the lock or Alembic: a store already at this
        # arsync's revision has nothing to migrate, whoever else is starting beside us
        return
    head = head_revision()
    with _migration_lock(engine):
        current = current_revision(engine)
        if current == head:
            return
        refuse_newer(current, _described(engine))
        path = sqlite_path(engine.url)
        if current is not None and path is not None:
            _backup_sqlite(engine, path, current)
        from alembic import command

        cfg = _alembic_config()
        try:
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except SQLAlchemyError as err:
            raise ConfigError(f"migrating the store to revision {head} failed: {err}") from err


def _backup_sqlite(engine: Engine, path: Path, revision: str) -> None:
    """A consistent copy of the database beside it before a migration changes it (private, and
    under its name only once whole; an earlier copy from the same revision is replaced)."""
    from arsync.store.backup import copy_sqlite

    target = path.with_name(f"{path.name}.before-{revision}")
    raw = engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        copy_sqlite(source, target, replace=True)
    finally:
        raw.close()
