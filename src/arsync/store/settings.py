"""Per-customer settings set from the CLI (e.g. a customer's own time zone), each in the trail."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import Connection, delete, insert, select, update

from arsync.store.models import CustomerSetting
from arsync.store.schema import customer_settings
from arsync.store.states import Entity

if TYPE_CHECKING:
    from arsync.store.unit import Tx

_s = customer_settings.c


class SettingsRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    def put(
        self, connector_id: int, customer_id: str, key: str, value: str | None, *, set_by: str
    ) -> None:
        """Set (or, with None, clear) one setting of a customer, and say so in the trail."""
        where = (_s.connector_id == connector_id, _s.customer_id == customer_id, _s.key == key)
        old = self._conn.execute(select(_s.value).where(*where)).scalar_one_or_none()
        if old == value:
            return
        if value is None:
            self._conn.execute(delete(customer_settings).where(*where))
        elif old is None:
            self._conn.execute(
                insert(customer_settings).values(
                    connector_id=connector_id,
                    customer_id=customer_id,
                    key=key,
                    value=value,
                    set_by=set_by,
                    set_at=self._tx.now,
                )
            )
        else:
            self._conn.execute(
                update(customer_settings)
                .where(*where)
                .values(value=value, set_by=set_by, set_at=self._tx.now)
            )
        self._tx.events.append(
            connector_id,
            Entity.CUSTOMER,
            "setting_changed",
            external_id=customer_id,
            detail={"key": key, "from": old, "to": value, "by": set_by},
        )

    def of(self, connector_id: int) -> list[CustomerSetting]:
        rows = self._conn.execute(
            select(customer_settings)
            .where(_s.connector_id == connector_id)
            .order_by(_s.customer_id, _s.key)
        )
        return [
            CustomerSetting(r.connector_id, r.customer_id, r.key, r.value, r.set_by, r.set_at)
            for r in rows
        ]
