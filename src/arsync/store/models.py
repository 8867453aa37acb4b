"""Typed read models: what the repositories hand out instead of database rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from arsync.domain import Hold, Instalment, PaymentPlan
from arsync.store.states import (
    ConnectorState,
    Entity,
    RunOutcome,
)


@dataclass(frozen=True, slots=True)
class ConnectorRow:
    """One connector as the store knows it."""

    id: int
    name: str
    platform: str
    tenant_id: str | None
    company_name: str | None
    base_currency: str | None
    country: str | None
    region: str | None
    platform_timezone: str | None
    edition: str | None
    status: ConnectorState
    status_reason: str | None
    parked_until: datetime | None
    parked_reason: str | None
    created_at: datetime
    last_sync_at: datetime | None
    last_sync_ok_at: datetime | None
    last_error: str | None

    @property
    def linked(self) -> bool:
        """Connected to a company (it may still need reconnecting)."""
        return self.status is not ConnectorState.NEW and self.tenant_id is not None

    def parked_at(self, now: datetime) -> bool:
        return self.parked_until is not None and self.parked_until > now


@dataclass(frozen=True, slots=True)
class SyncRun:
    id: int
    connector_id: int
    started_at: datetime
    finished_at: datetime | None
    outcome: RunOutcome
    full: bool
    pages: int
    changed: int
    api_calls: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class StoredTokens:
    """A connector's tokens as stored: encrypted blobs, and their times in clear."""

    connector_id: int
    access_token: bytes
    refresh_token: bytes
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    refreshed_at: datetime
    connected_at: datetime
    scope: str | None
    generation: int

    def __repr__(self) -> str:
        return (
            f"StoredTokens(connector_id={self.connector_id}, generation={self.generation}, "
            f"access_expires_at={self.access_expires_at.isoformat()})"
        )


@dataclass(frozen=True, slots=True)
class TokenTimes:
    """A connector's token times alone, without the encrypted blobs (for health and status)."""

    connector_id: int
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    refreshed_at: datetime
    connected_at: datetime


@dataclass(frozen=True, slots=True)
class Event:
    """One line of the paper trail."""

    id: int
    connector_id: int
    sync_id: int | None
    at: datetime
    entity: Entity
    external_id: str | None
    action: str
    detail: Any


@dataclass(frozen=True, slots=True)
class RecordCounts:
    customers: int
    invoices: int
    open_invoices: int
    payments: int
    credits: int
    quarantined: int


@dataclass(frozen=True, slots=True)
class CustomerSetting:
    connector_id: int
    customer_id: str
    key: str
    value: str
    set_by: str
    set_at: datetime


__all__ = [
    "ConnectorRow",
    "CustomerSetting",
    "Event",
    "Hold",
    "Instalment",
    "PaymentPlan",
    "RecordCounts",
    "StoredTokens",
    "SyncRun",
    "TokenTimes",
]
