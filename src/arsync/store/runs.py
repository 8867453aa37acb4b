"""Sync runs: one row per sync of a connector, "running" until its last page commits."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from arsync.store.models import SyncRun
from arsync.store.schema import connectors, sync_runs
from arsync.store.states import RunOutcome

if TYPE_CHECKING:
    from arsync.store.records import PageOutcome
    from arsync.store.unit import Tx

_r = sync_runs.c


def _run(row: Any) -> SyncRun:
    return SyncRun(
        id=row.id,
        connector_id=row.connector_id,
        started_at=row.started_at,
        finished_at=row.finished_at,
        outcome=RunOutcome(row.outcome),
        full=row.full,
        pages=row.pages,
        changed=row.changed,
        api_calls=row.api_calls,
        error=row.error,
    )


class RunsRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    def begin(self, connector_id: int, *, full: bool) -> int:
        """A new run, "running". Call it holding the connector's sync lock: a run still
        "running" then was killed, and is marked so."""
        now = self._tx.now
        self._conn.execute(
            update(sync_runs)
            .where(_r.connector_id == connector_id, _r.outcome == RunOutcome.RUNNING.value)
            .values(outcome=RunOutcome.KILLED.value, finished_at=now)
        )
        sync_id = self._conn.execute(
            insert(sync_runs)
            .values(
                connector_id=connector_id,
                started_at=now,
                outcome=RunOutcome.RUNNING.value,
                full=full,
                pages=0,
                changed=0,
            )
            .returning(_r.id)
        ).scalar_one()
        self._tx.connectors.sync_started(connector_id)
        return int(sync_id)

    def page_applied(self, sync_id: int, outcome: PageOutcome) -> None:
        self._conn.execute(
            update(sync_runs)
            .where(_r.id == sync_id)
            .values(pages=_r.pages + 1, changed=_r.changed + outcome.touched)
        )

    def finish(
        self,
        sync_id: int,
        outcome: RunOutcome,
        *,
        api_calls: int | None,
        error: str | None = None,
    ) -> SyncRun:
        """End a run; the connector's last sync (and, when ok, last good sync) move with it."""
        if outcome is RunOutcome.RUNNING:
            raise ValueError("a run is finished with its outcome, not as running")
        self._conn.execute(
            update(sync_runs)
            .where(_r.id == sync_id)
            .values(
                outcome=outcome.value,
                finished_at=self._tx.now,
                api_calls=api_calls,
                error=error,
            )
        )
        run = self.get(sync_id)
        self._tx.connectors.sync_finished(
            run.connector_id, ok=outcome is RunOutcome.OK, error=error
        )
        return run

    def get(self, sync_id: int) -> SyncRun:
        return _run(self._conn.execute(select(sync_runs).where(_r.id == sync_id)).one())

    def of(self, connector_id: int) -> list[SyncRun]:
        rows = self._conn.execute(
            select(sync_runs).where(_r.connector_id == connector_id).order_by(_r.id)
        )
        return [_run(r) for r in rows]

    def last_finished(self) -> dict[int, SyncRun]:
        """Each connector's last run that is not running, by connector id: one indexed
        lookup per connector, newest first (a max() over the whole table would read every
        run, millions of them for a practice)."""
        found: dict[int, SyncRun] = {}
        for cid in self._conn.execute(select(connectors.c.id)).scalars():
            row = self._conn.execute(
                select(sync_runs)
                .where(_r.connector_id == cid, _r.outcome != RunOutcome.RUNNING.value)
                .order_by(_r.id.desc())
                .limit(1)
            ).first()
            if row is not None:
                found[int(cid)] = _run(row)
        return found

    def last_full_ok(self) -> dict[int, datetime]:
        """When each connector's last good full pass started, by connector id."""
        found: dict[int, datetime] = {}
        for cid in self._conn.execute(select(connectors.c.id)).scalars():
            at = self._conn.execute(
                select(_r.started_at)
                .where(
                    _r.connector_id == cid,
                    _r.full.is_(True),
                    _r.outcome == RunOutcome.OK.value,
                )
                .order_by(_r.started_at.desc())
                .limit(1)
            ).scalar()
            if at is not None:
                found[int(cid)] = at
        return found
