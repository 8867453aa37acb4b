"""Store housekeeping for the daemon: retention of old runs and events, checkpoint, statistics.

Old sync runs are deleted in small batches (SQLite has one writer: a long delete would hold
everyone else up), keeping each connector's last run and last good full pass, which the
schedule reads. Events are the paper trail: they are deleted only when the firm set a
retention (`[daemon] keep_events`). On SQLite the write-ahead log is checkpointed, the query
planner's statistics refreshed (`PRAGMA optimize`), and the file vacuumed when a quarter of it
is free pages; on PostgreSQL, `ANALYZE` (autovacuum does the rest).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, delete, func, select, text

from arsync.store.schema import events, sync_runs
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


def _kept_runs() -> list[Select[tuple[Any]]]:
    last = select(func.max(_r.id)).group_by(_r.connector_id)
    last_full = (
        select(func.max(_r.id))
        .where(_r.full.is_(True), _r.outcome == RunOutcome.OK.value)
        .group_by(_r.connector_id)
    )
    return [last, last_full]


def housekeep(store: Store, *, runs_before: datetime, events_before: datetime | None) -> Housekept:
    """Delete runs finished before `runs_before` and events before `events_before` (None:
    keep them all), then tidy the database."""
    kept = _kept_runs()
    runs = 0
    while True:
        with store.transaction() as tx:
            ids = (
                tx.conn.execute(
                    select(_r.id)
                    .where(
                        _r.finished_at < runs_before,
                        _r.outcome != RunOutcome.RUNNING.value,
                        _r.id.not_in(kept[0]),
                        _r.id.not_in(kept[1]),
                    )
                    .limit(BATCH)
                )
                .scalars()
                .all()
            )
            if ids:
                tx.conn.execute(delete(sync_runs).where(_r.id.in_(ids)))
        runs += len(ids)
        if len(ids) < BATCH:
            break
    gone = 0
    while events_before is not None:
        with store.transaction() as tx:
            ids = (
                tx.conn.execute(select(events.c.id).where(events.c.at < events_before).limit(BATCH))
                .scalars()
                .all()
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
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        pages = int(conn.execute(text("PRAGMA page_count")).scalar_one())
        free = int(conn.execute(text("PRAGMA freelist_count")).scalar_one())
        vacuum = pages > 0 and free * 4 >= pages
        if vacuum:
            conn.execute(text("VACUUM")).close()
        conn.execute(text("PRAGMA optimize")).all()
        # PASSIVE: copies what it can without waiting for readers (a busy store is fine)
        conn.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).all()
    return vacuum


__all__ = ["Housekept", "housekeep"]
