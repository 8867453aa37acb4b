"""Opening the store: SQLite (WAL, synchronous=FULL, local disks only) or PostgreSQL, migrated.

`open_engine(url)` checks the place, sets the connection up and applies Alembic migrations under
a lock, so two arsync processes starting together never migrate at once. A database written by a
newer arsync is refused rather than touched. A SQLite file is copied aside before it is migrated.

A SQLite store is private (0600, with its WAL) and is only ever created whole: it is made under
a temporary name and moved into place once it is a database, so a file at the store's path that
is empty or not a database is damage, reported as such (StoreDamaged, exit code 6) and never
quietly replaced by a new store. So is a database SQLite finds malformed while reading it.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from arsync import alembic_dir
from arsync.errors import ConfigError, StoreDamaged
from arsync.store.locks import file_lock, lock_dir

#: the first 16 bytes of every SQLite 3 database file
SQLITE_HEADER = b"SQLite format 3\x00"
#: SQLite's result codes for a file that is not, or no longer, a readable database
_DAMAGE_CODES = frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB", "SQLITE_IOERR_SHORT_READ"})
#: where a person whose store is damaged finds what to do
RECOVERY_ADVICE = (
    "restore it from a backup (arsync copies it aside as <name>.before-<revision> before each "
    'upgrade; see "If the store is damaged" in the README), or move it aside and run '
    "`arsync connect` and `arsync sync` for each connector to rebuild it from the platforms"
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
        _sqlite_setup(engine, path)
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
        _refuse_unknown(engine, current_revision(engine))
    finally:
        engine.dispose()


def _reach(engine: Engine, parsed: URL) -> None:
    """One statement, so that an unreachable or unreadable database says so now."""
    probe_sql = (
        "SELECT count(*) FROM sqlite_master" if engine.dialect.name == "sqlite" else "SELECT 1"
    )
    try:
        with engine.connect() as conn:
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


def _damage_as_error(engine: Engine, where: Path | str) -> None:
    @event.listens_for(engine, "handle_error")
    def _on_error(context: Any) -> None:
        err = context.original_exception
        if isinstance(err, sqlite3.DatabaseError) and (
            getattr(err, "sqlite_errorname", None) in _DAMAGE_CODES
            or str(err) in ("file is not a database", "database disk image is malformed")
        ):
            raise damaged(where, str(err)) from err


#: execution option of a connection that only reads (Store.reading)
READ_ONLY = "arsync_read_only"


def _sqlite_setup(engine: Engine, path: Path | None) -> None:
    _damage_as_error(engine, path or ":memory:")

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
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
            if getattr(err, "sqlite_errorname", None) in _DAMAGE_CODES:
                raise damaged(path or ":memory:", str(err)) from err
            raise
        finally:
            cur.close()

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
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(alembic_dir()))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


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


def _refuse_unknown(engine: Engine, current: str | None) -> None:
    """A revision this arsync does not know was written by a newer one: never touch it."""
    script = ScriptDirectory.from_config(_alembic_config())
    if current is not None and current not in {r.revision for r in script.walk_revisions()}:
        raise ConfigError(
            f"the store at {engine.url.render_as_string(hide_password=True)} was written by a "
            f"newer arsync (schema revision {current}); upgrade arsync instead of using an "
            "older one on it"
        )


def upgrade(engine: Engine) -> None:
    """Bring the schema to this arsync's head revision (idempotent; safe to race)."""
    head = head_revision()
    with _migration_lock(engine):
        current = current_revision(engine)
        if current == head:
            return
        _refuse_unknown(engine, current)
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
    """A consistent copy of the database beside it before a migration changes it."""
    target = path.with_name(f"{path.name}.before-{revision}")
    raw = engine.raw_connection()
    try:
        source = raw.driver_connection
        assert isinstance(source, sqlite3.Connection)
        with contextlib.closing(sqlite3.connect(target)) as dest:
            source.backup(dest)
        os.chmod(target, 0o600)
    finally:
        raw.close()
