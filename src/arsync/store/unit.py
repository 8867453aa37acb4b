"""The unit of work: `with store.transaction() as tx:` commits several repositories together.

`Store` owns the engine and the clock; a `Tx` is one transaction with a repository per
aggregate (records, connectors, tokens, runs, events, usage, holds, plans, settings,
outbox).
Everything a transaction writes commits together or not at all. `store.reading()` is a
transaction that only reads: on SQLite it does not take the write lock, so readers never hold
up a writer.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from datetime import datetime
from functools import cached_property

from sqlalchemy import Connection, Engine, text

from arsync.clock import Clock
from arsync.errors import Busy
from arsync.store.connectors import ConnectorsRepo
from arsync.store.engine import READ_ONLY
from arsync.store.events import EventsRepo
from arsync.store.holds import HoldsRepo, PlansRepo
from arsync.store.locks import file_lock, lock_dir
from arsync.store.outbox import OutboxRepo
from arsync.store.records import RecordsRepo
from arsync.store.runs import RunsRepo
from arsync.store.settings import SettingsRepo
from arsync.store.tokens import TokensRepo
from arsync.store.usage import UsageRepo


class Tx:
    """One transaction and its repositories; `now` is the transaction's one moment."""

    def __init__(self, conn: Connection, clock: Clock) -> None:
        self.conn = conn
        self.clock = clock
        self.now: datetime = clock.now()

    @cached_property
    def records(self) -> RecordsRepo:
        return RecordsRepo(self)

    @cached_property
    def connectors(self) -> ConnectorsRepo:
        return ConnectorsRepo(self)

    @cached_property
    def tokens(self) -> TokensRepo:
        return TokensRepo(self)

    @cached_property
    def runs(self) -> RunsRepo:
        return RunsRepo(self)

    @cached_property
    def events(self) -> EventsRepo:
        return EventsRepo(self)

    @cached_property
    def usage(self) -> UsageRepo:
        return UsageRepo(self)

    @cached_property
    def holds(self) -> HoldsRepo:
        return HoldsRepo(self)

    @cached_property
    def plans(self) -> PlansRepo:
        return PlansRepo(self)

    @cached_property
    def settings(self) -> SettingsRepo:
        return SettingsRepo(self)

    @cached_property
    def outbox(self) -> OutboxRepo:
        return OutboxRepo(self)


def pg_lock_key(name: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for `name`."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


class Store:
    """The state store: SQLite or PostgreSQL behind one engine, read and written through `Tx`."""

    def __init__(self, engine: Engine, clock: Clock) -> None:
        self.engine = engine
        self.clock = clock

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Tx]:
        """A read-write transaction: committed when the block ends, rolled back if it raises."""
        with self.engine.begin() as conn:
            yield Tx(conn, self.clock)

    @contextlib.contextmanager
    def reading(self) -> Iterator[Tx]:
        """A transaction that only reads (a write in it fails)."""
        with self.engine.connect() as conn:
            if self.engine.dialect.name == "postgresql":
                conn.execution_options(postgresql_readonly=True)
            else:
                conn.execution_options(**{READ_ONLY: True})
            with conn.begin():
                yield Tx(conn, self.clock)

    @contextlib.contextmanager
    def exclusive(self, name: str, *, wait: bool = False) -> Iterator[None]:
        """A lock across processes (a file lock beside SQLite, an advisory lock in PostgreSQL).

        Raises Busy at once when another process holds it, unless `wait`. No transaction is
        open while it is held: it only keeps other holders out.
        """
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                # advisory locks are the database's, not the schema's: two stores in two
                # schemas of one database must not hold each other's locks
                schema = conn.execute(text("SELECT current_schema()")).scalar()
                key = pg_lock_key(f"{schema}:{name}")
                if wait:
                    conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
                elif not conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar():
                    conn.rollback()
                    raise Busy(f"{name}: busy in another process")
                conn.commit()
                try:
                    yield
                finally:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                    conn.commit()
            return
        directory = lock_dir(self.engine)
        if directory is None:  # an in-memory store: no other process can reach it
            yield
            return
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(file_lock(directory / f"{digest}.lock", wait=wait))
            except Busy:
                raise Busy(f"{name}: busy in another process") from None
            yield

    def close(self) -> None:
        self.engine.dispose()
