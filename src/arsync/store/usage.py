"""API usage: calls made per connector per minute, so rate limits outlive a restart."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection, case, delete, func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from arsync.store.schema import api_usage

if TYPE_CHECKING:
    from arsync.store.unit import Tx

_u = api_usage.c


class UsageRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    def add(self, connector_id: int, counts: dict[datetime, int]) -> None:
        """Add `counts` (calls by the minute they were made in, UTC) to what is stored."""
        rows = [
            {"connector_id": connector_id, "minute": minute, "calls": calls}
            for minute, calls in sorted(counts.items())
            if calls > 0
        ]
        if not rows:
            return
        # An upsert: two processes may count calls in the same minute.
        insert = pg_insert if self._conn.dialect.name == "postgresql" else sqlite_insert
        statement = insert(api_usage)
        self._conn.execute(
            statement.on_conflict_do_update(
                index_elements=[_u.connector_id, _u.minute],
                set_={"calls": _u.calls + statement.excluded.calls},
            ),
            rows,
        )

    def since(self, connector_id: int, start: datetime) -> list[tuple[datetime, int]]:
        """(minute, calls) from `start` on, oldest first."""
        rows = self._conn.execute(
            select(_u.minute, _u.calls)
            .where(_u.connector_id == connector_id, _u.minute >= start)
            .order_by(_u.minute)
        )
        return [(row.minute, int(row.calls)) for row in rows]

    def totals(self, day: datetime, hour: datetime) -> dict[int, tuple[int, int]]:
        """Every connector's calls from `day` on and from `hour` on (a later moment), by
        connector id, in one pass over the table (what health and metrics read at a scrape)."""
        recent = func.sum(case((_u.minute >= hour, _u.calls), else_=0))
        rows = self._conn.execute(
            select(_u.connector_id, func.sum(_u.calls), recent)
            .where(_u.minute >= day)
            .group_by(_u.connector_id)
        )
        return {
            cid: (int(day_calls or 0), int(hour_calls or 0)) for cid, day_calls, hour_calls in rows
        }

    def forget_before(self, connector_id: int, start: datetime) -> None:
        self._conn.execute(
            delete(api_usage).where(_u.connector_id == connector_id, _u.minute < start)
        )
