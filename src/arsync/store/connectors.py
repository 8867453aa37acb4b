"""Connectors: one row per company link, its state, the company's own facts, parking."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, insert, select, update

from arsync.domain import PLATFORM_NAMES, CompanyInfo
from arsync.errors import ConfigError
from arsync.store.models import ConnectorRow
from arsync.store.schema import connectors
from arsync.store.states import ConnectorState, Entity

if TYPE_CHECKING:
    from arsync.store.unit import Tx

_c = connectors.c


def _row(row: Any) -> ConnectorRow:
    return ConnectorRow(
        id=row.id,
        name=row.name,
        platform=row.platform,
        tenant_id=row.tenant_id,
        company_name=row.company_name,
        base_currency=row.base_currency,
        country=row.country,
        region=row.region,
        platform_timezone=row.platform_timezone,
        edition=row.edition,
        status=ConnectorState(row.status),
        status_reason=row.status_reason,
        parked_until=row.parked_until,
        parked_reason=row.parked_reason,
        created_at=row.created_at,
        last_sync_at=row.last_sync_at,
        last_sync_ok_at=row.last_sync_ok_at,
        last_error=row.last_error,
    )


def _company(info: CompanyInfo) -> dict[str, Any]:
    return {
        "company_name": info.name,
        "base_currency": info.base_currency,
        "country": info.country,
        "region": info.region,
        "platform_timezone": info.timezone,
        "edition": info.edition,
    }


def _label(platform: str) -> str:
    return PLATFORM_NAMES.get(platform, platform)


class ConnectorsRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    # -- reading ---------------------------------------------------------------------------------
    def by_name(self, name: str) -> ConnectorRow | None:
        row = self._conn.execute(select(connectors).where(_c.name == name)).first()
        return _row(row) if row is not None else None

    def get(self, connector_id: int) -> ConnectorRow:
        return _row(self._conn.execute(select(connectors).where(_c.id == connector_id)).one())

    def all(self) -> list[ConnectorRow]:
        return [_row(r) for r in self._conn.execute(select(connectors).order_by(_c.name))]

    # -- writing ---------------------------------------------------------------------------------
    def ensure(self, name: str, platform: str) -> ConnectorRow:
        """The connector called `name`, made ("new") if the store has never seen it."""
        found = self.by_name(name)
        if found is not None:
            if found.platform != platform:
                raise ConfigError(
                    f"connectors/{name}.toml: platform: the store holds {name!r} as a "
                    f"{_label(found.platform)} connector; its data cannot change platform. Use "
                    "a new connector name."
                )
            return found
        self._conn.execute(
            insert(connectors).values(
                name=name,
                platform=platform,
                status=ConnectorState.NEW.value,
                created_at=self._tx.now,
            )
        )
        made = self.by_name(name)
        assert made is not None
        return made

    def link(
        self, name: str, platform: str, tenant_id: str, company: CompanyInfo, *, at: datetime
    ) -> tuple[ConnectorRow, bool]:
        """Link connector `name` to its company ("connected"), with a "connected" event.

        A connector keeps one company for life: its stored records belong to that company, so
        a link to a different one is refused (ConfigError) and nothing changes. Returns the row
        and whether it was linked before (a reconnect).
        """
        found = self._conn.execute(
            select(connectors).where(_c.name == name).with_for_update()
        ).first()
        row = _row(found) if found is not None else None
        if row is not None and row.platform != platform:
            raise ConfigError(
                f"connector {name!r} is stored as a {_label(row.platform)} connector, not "
                f"{_label(platform)}: give the new link a connector file of its own"
            )
        if row is not None and row.tenant_id is not None and row.tenant_id != tenant_id:
            raise ConfigError(
                f"connector {name!r} is linked to {row.company_name or row.tenant_id} "
                f"(tenant {row.tenant_id}), but this consent was for {company.name} "
                f"(tenant {tenant_id}). The connector's stored invoices, customers and history "
                "belong to the other company, so it cannot switch: create a new connector file "
                "(e.g. connectors/<new-name>.toml) for this company and run "
                "`arsync connect <new-name>`."
            )
        values = {
            "tenant_id": tenant_id,
            "status": ConnectorState.CONNECTED.value,
            "status_reason": None,
            **_company(company),
        }
        if row is None:
            self._conn.execute(
                insert(connectors).values(name=name, platform=platform, created_at=at, **values)
            )
        else:
            self._conn.execute(update(connectors).where(_c.id == row.id).values(**values))
        linked = self.by_name(name)
        assert linked is not None
        self._tx.events.append(
            linked.id,
            Entity.CONNECTOR,
            "connected",
            external_id=tenant_id,
            detail={
                "platform": platform,
                "company": company.name,
                "reconnected": row is not None and row.tenant_id is not None,
            },
            at=at,
        )
        return linked, row is not None and row.tenant_id is not None

    def set_company(self, connector_id: int, company: CompanyInfo) -> None:
        self._conn.execute(
            update(connectors).where(_c.id == connector_id).values(**_company(company))
        )

    def park(self, connector_id: int, until: datetime, reason: str) -> None:
        self._conn.execute(
            update(connectors)
            .where(_c.id == connector_id)
            .values(parked_until=until, parked_reason=reason)
        )
        self._tx.events.append(
            connector_id,
            Entity.CONNECTOR,
            "parked",
            detail={"until": until.isoformat(), "reason": reason},
        )

    def mark_reconnect_needed(self, connector_id: int, reason: str) -> None:
        """The grant is dead: flag the connector and say so in the paper trail."""
        self._conn.execute(
            update(connectors)
            .where(_c.id == connector_id)
            .values(status=ConnectorState.RECONNECT_NEEDED.value, status_reason=reason)
        )
        self._tx.events.append(
            connector_id, Entity.CONNECTOR, "reconnect_needed", detail={"reason": reason}
        )

    def sync_started(self, connector_id: int) -> None:
        self._conn.execute(
            update(connectors).where(_c.id == connector_id).values(last_sync_at=self._tx.now)
        )

    def sync_finished(self, connector_id: int, *, ok: bool, error: str | None) -> None:
        values: dict[str, Any] = {"last_error": error}
        if ok:
            values |= {
                "last_sync_ok_at": self._tx.now,
                "parked_until": None,
                "parked_reason": None,
            }
        self._conn.execute(update(connectors).where(_c.id == connector_id).values(**values))
