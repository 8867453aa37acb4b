"""Opening the store: SQLite (WAL, synchronous=FULL, local disks only) or PostgreSQL, migrated.

`open_engine(url)` checks the place, sets the connection up and applies Alembic migrations under
a lock, so two arsync processes starting together never migrate at once. A database written by a
newer arsync is refused rather than touched. A SQLite file is copied aside before it is migrated.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
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
from arsync.errors import ConfigError
from arsync.store.locks import file_lock, lock_dir

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


def check_sqlite_place(path: Path) -> None:
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as err:
        raise ConfigError(f"store.url: cannot create {directory}: {err.strerror}") from err
    kind = filesystem_type(directory)
    if kind in NETWORK_FILESYSTEMS:
        raise ConfigError(
            f"store.url: {path} is on a network file system ({kind}); SQLite's locking and "
            "durability do not hold there. Put the database on a local disk or use PostgreSQL."
        )


def open_engine(url: str, *, migrate: bool = True) -> Engine:
    parsed = parse_url(url)
    path = sqlite_path(parsed)
    if path is not None:
        check_sqlite_place(path)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            parsed,
            json_serializer=dumps,
            connect_args={"timeout": 30, "check_same_thread": False},
        )
        _sqlite_setup(engine)
    else:
        engine = create_engine(parsed, json_serializer=dumps, pool_pre_ping=True)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except OperationalError as err:
        engine.dispose()
        raise ConfigError(
            f"store.url: cannot open the database {parsed.render_as_string(hide_password=True)}: "
            f"{str(err.orig).strip().splitlines()[0] if err.orig else err}"
        ) from err
    if migrate:
        try:
            upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: object) -> None:
        # pysqlite's own transaction handling is switched off so that every transaction can
        # begin IMMEDIATE: a writer takes the write lock up front and never fails half-way
        # with SQLITE_BUSY when upgrading a read lock.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
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


def upgrade(engine: Engine) -> None:
    """Bring the schema to this arsync's head revision (idempotent; safe to race)."""
    script = ScriptDirectory.from_config(_alembic_config())
    head = head_revision()
    with _migration_lock(engine):
        current = current_revision(engine)
        if current == head:
            return
        if current is not None and current not in {r.revision for r in script.walk_revisions()}:
            raise ConfigError(
                f"the store at {engine.url.render_as_string(hide_password=True)} was written by a "
                f"newer arsync (schema revision {current}); upgrade arsync instead of using an "
                "older one on it"
            )
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
