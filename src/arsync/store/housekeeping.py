"""Store housekeeping for the daemon: retention of old runs and events, checkpoint, statistics.

Old sync runs are deleted in small batches (SQLite has one writer: a long delete would hold
everyone else up), keeping each connector's last run and last good full pass, which the
schedule reads. Events are the paper trail: they are deleted only when the firm set a
retention (`[daemon] keep_events`). On SQLite the write-ahead log is checkpointed, the query
planner's statistics refreshed (`PRAGMA optimize`), and the file vacuumed when a quarter of it
is free pages; on PostgreSQL, `ANALYZE` (autovacuum does the rest).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, text

from arsync.store.schema import connectors, events, sync_runs
from arsync.store.states import RunOutcome
from arsync.store.unit import Store

#: rows deleted per transaction
BATCH = 5_000
_r = sync_runs.c


@dataclass(frozen=True)
class Housekept:
    runs_deleted: int
    events_deleted: int
    vacuumed: bool


def _kept_runs(store: Store) -> set[int]:
    """Each connector's last run and last good full pass (the schedule reads them)."""
    kept: set[int] = set()
    with store.reading() as tx:
        for cid in tx.conn.execute(select(connectors.c.id)).scalars():
            for where in (
                (_r.connector_id == cid,),
                (_r.connector_id == cid, _r.full.is_(True), _r.outcome == RunOutcome.OK.value),
            ):
                last = tx.conn.execute(
                    select(_r.id).where(*where).order_by(_r.id.desc()).limit(1)
                ).scalar()
                if last is not None:
                    kept.add(int(last))
    return kept


def housekeep(store: Store, *, runs_before: datetime, events_before: datetime | None) -> Housekept:
    """Delete runs finished before `runs_before` and events before `events_before` (None:
    keep them all), then tidy the database."""
    kept = _kept_runs(store)
    runs = 0
    while True:
        with store.transaction() as tx:
            # by the age index, oldest first; the few kept ones are skipped in Python
            ids = [
                i
                for i in tx.conn.execute(
                    select(_r.id)
                    .where(_r.finished_at < runs_before, _r.outcome != RunOutcome.RUNNING.value)
                    .order_by(_r.finished_at)
                    .limit(BATCH + len(kept))
                ).scalars()
                if i not in kept
            ][:BATCH]
            if ids:
                tx.conn.execute(delete(sync_runs).where(_r.id.in_(ids)))
        runs += len(ids)
        if len(ids) < BATCH:
            break
    gone = 0
    while events_before is not None:
        with store.transaction() as tx:
            ids = list(
                tx.conn.execute(
                    select(events.c.id).where(events.c.at < events_before).limit(BATCH)
                ).scalars()
            )
            if ids:
                tx.conn.execute(delete(events).where(events.c.id.in_(ids)))
        gone += len(ids)
        if len(ids) < BATCH:
            break
    return Housekept(runs, gone, _tidy(store))


def _tidy(store: Store) -> bool:
    engine = store.engine
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE"))
        return False
    # the driver's own connection, outside any transaction: the store's connections begin
    # one (BEGIN IMMEDIATE) at their first statement, and VACUUM and a checkpoint refuse to
    # run inside one
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        # a pooled connection keeps query_only from its last read
        cursor.execute("PRAGMA query_only=OFF")
        pages = int(cursor.execute("PRAGMA page_count").fetchone()[0])
        free = int(cursor.execute("PRAGMA freelist_count").fetchone()[0])
        vacuum = pages > 0 and free * 4 >= pages
        if vacuum:
            cursor.execute("VACUUM")
        cursor.execute("PRAGMA optimize").fetchall()
        # PASSIVE: copies what it can without waiting for readers (a busy store is fine)
        cursor.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        cursor.close()
    except sqlite3.OperationalError as err:
        if "locked" not in str(err):
            raise
        # the store is busy past its busy timeout (a long sync): tidying waits for next time
        return False
    finally:
        raw.close()
    return vacuum


__all__ = ["Housekept", "housekeep"]
