"""The paper trail: an append-only log of what happened to each record and connector."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select

from arsync.store.models import Event
from arsync.store.schema import events
from arsync.store.states import Entity

if TYPE_CHECKING:
    from arsync.store.unit import Tx


class EventsRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    def append(
        self,
        connector_id: int,
        entity: Entity,
        action: str,
        *,
        external_id: str | None = None,
        detail: Any = None,
        sync_id: int | None = None,
        at: datetime | None = None,
    ) -> None:
        self._conn.execute(
            insert(events).values(
                connector_id=connector_id,
                sync_id=sync_id,
                at=at or self._tx.now,
                entity=entity.value,
                external_id=external_id,
                action=action,
                detail=detail,
            )
        )

    def of(
        self,
        connector_id: int,
        *,
        entity: Entity | None = None,
        external_id: str | None = None,
        actions: Sequence[str] = (),
    ) -> list[Event]:
        """Events of a connector in the order they happened, narrowed as asked."""
        c = events.c
        query = select(events).where(c.connector_id == connector_id)
        if entity is not None:
            query = query.where(c.entity == entity.value)
        if external_id is not None:
            query = query.where(c.external_id == external_id)
        if actions:
            query = query.where(c.action.in_(list(actions)))
        return [
            Event(
                id=row.id,
                connector_id=row.connector_id,
                sync_id=row.sync_id,
                at=row.at,
                entity=Entity(row.entity),
                external_id=row.external_id,
                action=row.action,
                detail=row.detail,
            )
            for row in self._conn.execute(query.order_by(c.id))
        ]
