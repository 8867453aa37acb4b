"""The store's tables (SQLAlchemy Core). Alembic migrations in `migrations/` create them.

Every business table is keyed by (connector_id, external id): the platform's own id. Amounts are
`Amount` (exact), times `UtcDateTime`. `events` is append-only: the paper trail of what changed,
when, and which sync saw it.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

from arsync.store.types import Amount, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

connectors = Table(
    "connectors",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("platform", String(10), nullable=False),
    #: QBO realmId or Xero tenantId; NULL until connected
    Column("tenant_id", String(64)),
    Column("company_name", String(255)),
    Column("base_currency", String(3)),
    #: "new" (never connected) | "connected" | "reconnect_needed"
    Column("status", String(20), nullable=False, default="new"),
    Column("status_reason", Text),
    #: a long Retry-After (e.g. Xero's day limit) parks the connector until then
    Column("parked_until", UtcDateTime),
    Column("parked_reason", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_sync_at", UtcDateTime),
    Column("last_sync_ok_at", UtcDateTime),
    Column("last_error", Text),
)

tokens = Table(
    "tokens",
    metadata,
    Column(
        "connector_id",
        Integer,
        ForeignKey("connectors.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    #: Fernet tokens: never clear text
    Column("access_token", LargeBinary, nullable=False),
    Column("refresh_token", LargeBinary, nullable=False),
    Column("access_expires_at", UtcDateTime, nullable=False),
    Column("refresh_expires_at", UtcDateTime),
    #: when the refresh token was issued (Xero's 60-days-unused rule counts from here)
    Column("refreshed_at", UtcDateTime, nullable=False),
    Column("connected_at", UtcDateTime, nullable=False),
    Column("scope", Text),
    #: bumped on every save, so a reader can tell another process refreshed meanwhile
    Column("generation", Integer, nullable=False, default=0),
)


def _business(name: str, *columns: Column[object]) -> Table:
    return Table(
        name,
        metadata,
        Column(
            "connector_id",
            Integer,
            ForeignKey("connectors.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        Column("external_id", String(64), primary_key=True),
        *columns,
        #: the platform's own last-changed time
        Column("updated_at", UtcDateTime),
        #: gone from the platform (deleted, merged, or missing from a completed full pass)
        Column("deleted", Boolean, nullable=False, default=False),
        Column("deleted_at", UtcDateTime),
        #: the full pass that last saw the record (see connectors.base.Page.full_pass)
        Column("seen_pass", String(40)),
        #: the sync run that last changed the row
        Column("sync_id", Integer),
    )


customers = _business(
    "customers",
    Column("name", String(500), nullable=False),
    Column("email", String(500)),
    Column("phone", String(100)),
    Column("currency", String(3)),
    Column("active", Boolean, nullable=False),
)

invoices = _business(
    "invoices",
    Column("number", String(100)),
    Column("customer_id", String(64), nullable=False),
    Column("issue_date", Date, nullable=False),
    Column("due_date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total", Amount, nullable=False),
    Column("balance", Amount, nullable=False),
    Column("status", String(10), nullable=False),
    Column("sent", Boolean, nullable=False),
)
Index("ix_invoices_open", invoices.c.connector_id, invoices.c.status, invoices.c.deleted)

payments = _business(
    "payments",
    Column("customer_id", String(64)),
    Column("date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("amount", Amount, nullable=False),
    Column("unapplied", Amount, nullable=False),
    Column("status", String(10), nullable=False),
    #: [[invoice_id, "amount"], ...]
    Column("allocations", JSON, nullable=False),
)

credits = _business(
    "credits",
    Column("number", String(100)),
    Column("customer_id", String(64)),
    Column("date", Date, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("total", Amount, nullable=False),
    Column("remaining", Amount, nullable=False),
    Column("status", String(10), nullable=False),
    Column("allocations", JSON, nullable=False),
)

cursors = Table(
    "cursors",
    metadata,
    Column(
        "connector_id",
        Integer,
        ForeignKey("connectors.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("state", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sync_id", Integer),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "connector_id", Integer, ForeignKey("connectors.id", ondelete="CASCADE"), nullable=False
    ),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    #: "running" | "ok" | "failed" | "parked"; a run left "running" was killed
    Column("outcome", String(10), nullable=False),
    Column("full", Boolean, nullable=False),
    Column("pages", Integer, nullable=False, default=0),
    Column("changed", Integer, nullable=False, default=0),
    Column("api_calls", Integer),
    Column("error", Text),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "connector_id", Integer, ForeignKey("connectors.id", ondelete="CASCADE"), nullable=False
    ),
    Column("sync_id", Integer),
    Column("at", UtcDateTime, nullable=False),
    #: "customer" | "invoice" | "payment" | "credit" | "connector"
    Column("entity", String(20), nullable=False),
    Column("external_id", String(64)),
    #: "created" | "changed" | "deleted" | "restored" | "connected" | "reconnect_needed" | ...
    Column("action", String(30), nullable=False),
    #: {"field": [old, new], ...} for "changed"; free detail otherwise
    Column("detail", JSON),
)
Index("ix_events_record", events.c.connector_id, events.c.entity, events.c.external_id)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "connector_id", Integer, ForeignKey("connectors.id", ondelete="CASCADE"), nullable=False
    ),
    Column("sync_id", Integer),
    Column("at", UtcDateTime, nullable=False),
    Column("entity", String(20), nullable=False),
    Column("external_id", String(64)),
    Column("reason", Text, nullable=False),
    #: the record exactly as the platform sent it
    Column("payload", JSON, nullable=False),
    Column("resolved", Boolean, nullable=False, default=False),
)

BUSINESS = {"customer": customers, "invoice": invoices, "payment": payments, "credit": credits}
