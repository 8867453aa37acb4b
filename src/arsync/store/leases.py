"""Replicas of `arsync run` on one store: which replica serves which connector, at most one each.

A `Replica` is this process as one replica of the service. On PostgreSQL several may share a
store: each connector is owned by one replica at a time, through a session-level advisory lock
held on a connection of the replica's own (autocommit, never idle in a transaction). Nothing
is home-made: a replica that dies, or whose connection dies, loses its locks with its session,
and the next `claim()` of another replica takes its connectors. On SQLite one daemon serves
the store; it holds an exclusive `flock` on `<database file>.run.lock` in the store's lock
folder for its lifetime (a killed daemon's goes with its process), and a second one is refused
with `Busy`, naming the first.

Keys. A connector's lock is `pg_try_advisory_lock(connectors, id)`, a replica's presence
`pg_try_advisory_lock(presence, backend pid)`; both classids come from `lock_classes(schema)`.
The two-int key space (objsubid 2 in pg_locks) is disjoint from the one-bigint keys that
`Store.exclusive` and the migration lock take (objsubid 1), whatever the numbers; advisory locks
belong to the database, not the schema, so the classids are derived from the schema's name and
two stores in one database (two firms, or tests side by side) never share a lock.

One claim is one read of pg_locks (the replicas present, what others hold, what this session
holds) and, only when something changes, one statement releasing and one try-locking a batch.
A fair share is ceil(connectors / replicas present): a replica keeps up to its share, takes free
connectors up to it, and releases what is beyond it, so a replica that starts gets work from
the others' next claims. pg_try_advisory_lock stacks per session, so a lock already held is
never taken again; the read of pg_locks also checks that the session is the one that took the
locks (a pooler that swapped it would otherwise hand out locks nobody holds).

Time. With a lease L (`[daemon] lease`) the daemon calls `claim()` every `renew_every` (L/4).
The server drops the locks of a replica it no longer hears (a dead machine, a partition) after
at least `drop` ≈ L/2 (TCP keepalives and tcp_user_timeout set on the session), so another
replica takes its connectors within L/2 + L/4 < L; a killed process's socket closes at once
and its connectors go at the others' next claim. The replica itself trusts a verified ownership
for `drop` - L/8 from when its last claim was sent, on the store's clock (`owns()` then turns
False), so a replica cut off from the server stops before the server can hand its connectors
to another.
A claim that fails in any way closes the connection (its locks go with it), drops all ownership
at once and returns nothing; it reconnects and the next claim takes connectors again.

Each replica present counts towards the share, claiming or not: a replica wedged with its
session alive keeps what it holds and the share made for it, so the service's watchdog must end
a wedged process (its locks go with it). The server's lock table holds every connector's lock
(max_locks_per_transaction × backends: some 7,000 slots by default), ample for hundreds of
connectors; thousands need it raised.

Ownership is what the service schedules by; what must never happen twice is also kept below
it (the outbox's leases, the sync lock), so a replica paused past its lease cannot do harm.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import socket
import threading
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from arsync.errors import Busy, ConfigError, TransientError
from arsync.store.locks import lock_dir
from arsync.store.unit import Store

#: the flock file of the one daemon a SQLite store allows: the database file's name and this,
#: in the store's lock folder (which the stores of one folder share)
RUN_LOCK_SUFFIX = ".run.lock"
#: connector ids are the lock's second int4
_MAX_ID = 2**31 - 1
#: unanswered keepalive probes before a peer is taken for dead
_PROBES = 3

_HOLDINGS = text(
    """
    SELECT pg_backend_pid() AS me,
           count(*) FILTER (WHERE l.classid::int8 = :presence) AS replicas,
           bool_or(l.classid::int8 = :presence AND l.objid::int8 = pg_backend_pid()
                   AND l.pid = pg_backend_pid()) AS present,
           array_agg(l.objid::int8)
               FILTER (WHERE l.classid::int8 = :connectors AND l.pid = pg_backend_pid()) AS mine,
           array_agg(l.objid::int8)
               FILTER (WHERE l.classid::int8 = :connectors AND l.pid <> pg_backend_pid())
               AS theirs
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.objsubid = 2 AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid::int8 IN (:connectors, :presence)
    """
)
_TAKE = text(
    "SELECT x FROM unnest(CAST(:ids AS int4[])) AS x WHERE pg_try_advisory_lock(:connectors, x)"
)
_RELEASE = text(
    "SELECT x, pg_advisory_unlock(:connectors, x) FROM unnest(CAST(:ids AS int4[])) AS x"
)


def lock_classes(schema: str) -> tuple[int, int]:
    """The advisory-lock classids (connectors, presence) of the arsync store in `schema`.

    Positive 31-bit numbers, so that pg_locks (oid) and pg_try_advisory_lock (int4) read alike.
    """
    digest = hashlib.sha256(f"arsync replicas:{schema}".encode()).digest()
    base = int.from_bytes(digest[:4], "big") & 0x7FFFFFFE
    return base, base | 1


@dataclass(frozen=True)
class Timing:
    """What a lease of `lease` seconds means for the lock connection and for the daemon."""

    lease: float
    #: seconds between two claims of a replica
    renew: float
    #: keepalives (server and client): idle seconds before the first probe, between probes
    idle: int
    interval: int
    #: the earliest the server drops a silent replica's session: keepalives and
    #: tcp_user_timeout both say so after `drop` seconds without a word from it
    drop: int
    #: how long an ownership verified by a claim is trusted: ends `lease`/8 before `drop`
    trust: float
    #: the longest one statement, a connect or an unacknowledged send may take on the replica
    patience: int

    @classmethod
    def of(cls, lease: timedelta) -> Timing:
        seconds = lease.total_seconds()
        if seconds < 4:
            raise ConfigError(f"daemon.lease: {seconds:g} seconds is too short for a lease")
        idle = max(1, math.floor(seconds / 4))
        # probes fill the rest of half a lease, rounded up: the server drops at L/2 or a little
        # after, so the others' next claim (every L/4) comes before a whole lease has passed
        interval = max(1, math.ceil((seconds / 2 - idle) / _PROBES))
        drop = idle + _PROBES * interval
        return cls(
            lease=seconds,
            renew=seconds / 4,
            idle=idle,
            interval=interval,
            drop=drop,
            trust=drop - seconds / 8,
            patience=max(2, math.ceil(seconds / 8)),
        )


class Replica:
    """This process as one replica of `arsync run` on a store.

    `start()` joins (or, on SQLite, takes the one daemon's place); `claim(ids)` every
    `renew_every` says which of the connectors this replica serves now; `owns(id)` asks between
    claims, from memory; `close()` leaves. Safe to share between threads: claims, releases and
    closes take turns; `owns` never waits.
    """

    def __init__(
        self, store: Store, *, name: str | None = None, lease: timedelta = timedelta(seconds=60)
    ) -> None:
        self.store = store
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.timing = Timing.of(lease)
        #: what went wrong at the last claim, in words; None while all is well
        self.problem: str | None = None
        self._sqlite = store.engine.dialect.name == "sqlite"
        self._turn = threading.Lock()
        self._started = False
        # (connectors owned, monotonic moment the ownership stops being trusted), swapped whole
        # so that `owns` never sees one half of a claim's outcome
        self._state: tuple[frozenset[int], float] = (frozenset(), -math.inf)
        self._run_lock: int | None = None
        self._engine: Engine | None = None
        self._conn: Connection | None = None
        self._pid = 0
        self._connectors = self._presence = 0

    def __repr__(self) -> str:
        return f"Replica({self.name!r}, {self.store!r})"

    def __enter__(self) -> Replica:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def renew_every(self) -> timedelta:
        """How often the daemon must call `claim()` to keep what it owns and see what is free."""
        return timedelta(seconds=self.timing.renew)

    def start(self) -> None:
        """Join the store's replicas. SQLite: take the one daemon's lock or raise Busy (naming
        the daemon that has it). PostgreSQL: open the lock connection and announce presence,
        so the others make room at their next claim (claim soon after starting)."""
        with self._turn:
            if self._started:
                return
            if self._sqlite:
                self._take_run_lock()
            else:
                try:
                    self._connect()
                except SQLAlchemyError as err:
                    raise TransientError(
                        f"the store: cannot open the connection that holds {self.name}'s "
                        f"connectors: {_first_line(err)}"
                    ) from err
            self._started = True

    def claim(self, connector_ids: Iterable[int], *, busy: Iterable[int] = ()) -> frozenset[int]:
        """The connectors, of `connector_ids`, this replica owns from now until the next claim.

        Keeps what it holds, up to a fair share; takes free ones up to it; releases the rest
        and whatever is no longer in `connector_ids`, but never one of `busy` (a connector
        whose work is in flight here is given up only once that work ended). When the lock
        connection turns out dead, everything is lost at once: it returns nothing (stop all
        work), reconnects, and the next claim takes connectors again. On SQLite the one daemon
        owns them all."""
        wanted = _ids(connector_ids)
        with self._turn:
            if not self._started:
                raise RuntimeError("Replica.claim() before start()")
            if self._sqlite:
                self._state = (wanted, math.inf)
                return wanted
            if self._conn is None and not self._reconnect():
                return frozenset()
            sent = self.store.clock.monotonic()
            try:
                return self._claim(wanted, sent, frozenset(busy))
            except (SQLAlchemyError, _Lost) as err:
                self._lose(_why_lost(err, len(wanted)))
                self._reconnect()
                return frozenset()

    def release(self, connector_id: int) -> None:
        """Stop owning one connector now (another replica may take it at its next claim)."""
        with self._turn:
            held, until = self._state
            if connector_id not in held:
                return
            self._state = (held - {connector_id}, until)
            if self._sqlite or self._conn is None:
                return
            try:
                self._conn.execute(
                    _RELEASE, {"ids": [connector_id], "connectors": self._connectors}
                )
            except SQLAlchemyError as err:
                self._lose(f"the lock connection was lost: {_first_line(err)}")

    def owns(self, connector_id: int) -> bool:
        """Whether this replica owns the connector now: held at the last claim, and that claim
        recent enough to be trusted (see the module's Time). Never touches the database."""
        held, until = self._state
        return connector_id in held and self.store.clock.monotonic() < until

    @property
    def owned(self) -> frozenset[int]:
        """Every connector `owns` says yes to now."""
        held, until = self._state
        return held if self.store.clock.monotonic() < until else frozenset()

    def close(self) -> None:
        """Release everything and leave (the others take the connectors at their next claim)."""
        with self._turn:
            self._state = (frozenset(), -math.inf)
            self._started = False
            if self._run_lock is not None:
                os.close(self._run_lock)  # closing the descriptor releases the flock
                self._run_lock = None
            if self._conn is not None:
                with contextlib.suppress(SQLAlchemyError):
                    self._conn.execute(text("SELECT pg_advisory_unlock_all()"))
                self._disconnect()
            if self._engine is not None:
                self._engine.dispose()
                self._engine = None

    # SQLite: the one daemon

    def _take_run_lock(self) -> None:
        directory = lock_dir(self.store.engine)
        if directory is None:  # in-memory: no other process can reach the store
            return
        database = Path(self.store.engine.url.database or "")
        fd = os.open(directory / f"{database.name}{RUN_LOCK_SUFFIX}", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(os.pread(fd, 4096, 0))
            os.close(fd)
            raise Busy(
                f"another `arsync run` ({holder}) already serves the SQLite store {database}; "
                "SQLite allows one — stop it, or move the store to PostgreSQL for several "
                "replicas"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        started = self.store.clock.now().strftime("%Y-%m-%d %H:%M:%S UTC")
        me = {"pid": os.getpid(), "name": self.name, "started": started}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._run_lock = fd

    # PostgreSQL: the lock connection

    def _connect(self) -> None:
        timing = self.timing
        if self._engine is None:
            self._engine = create_engine(
                self.store.engine.url,
                poolclass=NullPool,  # its own session: never shared, never silently replaced
                isolation_level="AUTOCOMMIT",  # never idle in a transaction between claims
                connect_args={
                    "application_name": f"arsync run {self.name}"[:63],
                    "connect_timeout": timing.patience,
                    # the client side: a claim on a dead network fails instead of hanging
                    "keepalives": 1,
                    "keepalives_idle": timing.idle,
                    "keepalives_interval": timing.interval,
                    "keepalives_count": _PROBES,
                    "tcp_user_timeout": timing.patience * 1000,
                },
            )
        conn = self._engine.connect()
        try:
            pid, schema, version = conn.execute(
                text(
                    "SELECT pg_backend_pid(), current_schema(), "
                    "current_setting('server_version_num')::int"
                )
            ).one()
            if schema is None:
                raise ConfigError(
                    "store.url: the connection's search_path names no schema that exists"
                )
            connectors, presence = lock_classes(schema)
            # The server side: the session of a replica the server stops hearing from is ended
            # (and its locks released) after `drop` seconds, and an idle session is never timed
            # out by a server-wide setting.
            settings = {
                "tcp_keepalives_idle": str(timing.idle),
                "tcp_keepalives_interval": str(timing.interval),
                "tcp_keepalives_count": str(_PROBES),
                "statement_timeout": str(timing.patience * 1000),
            }
            if version >= 120000:
                settings["tcp_user_timeout"] = str(timing.drop * 1000)
            if version >= 140000:
                settings["idle_session_timeout"] = "0"
            applied = ", ".join(f"set_config('{key}', :{key}, false)" for key in settings)
            present = conn.execute(
                text(f"SELECT pg_try_advisory_lock(:presence, :pid), {applied}"),
                {"presence": presence, "pid": pid, **settings},
            ).scalar()
            if not present:  # a live backend's pid is unique: only a foreign lock can be there
                raise ConfigError(
                    f"the store's replica lock ({presence}, {pid}) is held by something else"
                )
        except BaseException:
            conn.close()
            raise
        self._conn, self._pid = conn, int(pid)
        self._connectors, self._presence = connectors, presence

    def _reconnect(self) -> bool:
        try:
            self._connect()
        except SQLAlchemyError as err:
            self.problem = f"the lock connection cannot be opened: {_first_line(err)}"
            return False
        return True

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            # Closing ends the session on the server at once (its locks with it) when the
            # server can still hear us; when it cannot, keepalives end it after `drop`.
            with contextlib.suppress(SQLAlchemyError):
                conn.invalidate()
            with contextlib.suppress(SQLAlchemyError):
                conn.close()

    def _lose(self, reason: str) -> None:
        self._state = (frozenset(), -math.inf)
        self.problem = reason
        self._disconnect()

    def _claim(
        self, wanted: frozenset[int], sent: float, busy: frozenset[int] = frozenset()
    ) -> frozenset[int]:
        assert self._conn is not None
        keys = {"connectors": self._connectors, "presence": self._presence}
        row = self._conn.execute(_HOLDINGS, keys).one()
        if row.me != self._pid or not row.present:
            raise _Lost(f"the session is no longer backend {self._pid}, which took the locks")
        mine = frozenset(row.mine or ())
        theirs = frozenset(row.theirs or ())
        held, _ = self._state
        # The server's word wins: what it no longer has for this session is not owned (it
        # cannot happen while the session lives, but believing otherwise would be unsafe).
        held &= mine
        share = math.ceil(len(wanted) / max(1, int(row.replicas)))
        working = held & wanted & busy
        rest = sorted(held & wanted - working, key=self._preference)
        kept = working | frozenset(rest[: max(0, share - len(working))])
        # Forget before releasing and take before believing, so `owns` never says yes to a
        # connector whose lock this session does not hold.
        self._state = (kept, sent + self.timing.trust)
        # Also what the server holds for us that we do not count on (a release whose reply was
        # lost): held twice over by nobody, but held from the others.
        release = sorted(mine - kept)
        if release:
            self._conn.execute(_RELEASE, {"ids": release, **keys})
        need = share - len(kept)
        free = sorted(wanted - mine - theirs, key=self._preference)[: max(0, need)]
        if free:
            taken = {int(x) for x in self._conn.execute(_TAKE, {"ids": free, **keys}).scalars()}
            self._state = (kept | taken, sent + self.timing.trust)
        self.problem = None
        return self._state[0]

    def _preference(self, connector_id: int) -> int:
        # An order of its own per replica, so replicas starting together reach for different
        # free connectors rather than all for the lowest ids; stable, so a replica keeps the
        # same ones from claim to claim.
        return zlib.crc32(f"{self.name}:{connector_id}".encode())


class _Lost(Exception):
    """The lock connection is not the session that holds this replica's locks."""


def _ids(connector_ids: Iterable[int]) -> frozenset[int]:
    wanted = frozenset(connector_ids)
    for connector_id in wanted:
        if not 0 < connector_id <= _MAX_ID:
            raise ValueError(f"connector id {connector_id} is not a positive int4")
    return wanted


def _holder(content: bytes) -> str:
    """Who holds the run lock, from what it wrote in the file (pid 12, started …)."""
    try:
        about: Any = json.loads(content.decode())
        return f"pid {int(about['pid'])}, started {about['started']}"
    except (ValueError, KeyError, TypeError):  # written as we read it: say less
        return "its pid unknown"


def _why_lost(err: BaseException, connectors: int) -> str:
    if getattr(getattr(err, "orig", None), "sqlstate", None) == "53200":
        # out of shared memory: every advisory lock takes a slot of the server's lock table
        return (
            f"PostgreSQL's lock table is full: {connectors} connectors need as many advisory "
            "locks; raise max_locks_per_transaction on the server"
        )
    return f"the lock connection was lost: {_first_line(err)}"


def _first_line(err: BaseException) -> str:
    origin = getattr(err, "orig", None) or err
    return (str(origin).strip().splitlines() or [type(origin).__name__])[0]


__all__ = ["RUN_LOCK_SUFFIX", "Replica", "Timing", "lock_classes"]
