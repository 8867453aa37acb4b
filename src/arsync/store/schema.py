"""The store's tables (SQLAlchemy Core). Alembic migrations in `migrations/` create them.

Every business table is keyed by (connector_id, external id): the platform's own id. Amounts are
`Amount` (exact), times `UtcDateTime`. `events` is append-only: the paper trail of what changed,
when, and which sync saw it. Every state column is CHECKed against its enum (`states.py`).
Only the repositories in this package read or write these tables.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
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
from sqlalchemy.sql.schema import SchemaItem

from arsync.domain import DocStatus, InvoiceStatus
from arsync.store.states import (
    ConnectorState,
    Entity,
    HoldKind,
    HoldSource,
    HoldState,
    OutboxState,
    PlanState,
    RunOutcome,
    check,
)
from arsync.store.types import Amount, UtcDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


def _connector_id(*, primary_key: bool = False) -> Column[int]:
    """The connector a row belongs to; the row goes with it."""
    return Column(
        "connector_id",
        Integer,
        ForeignKey("connectors.id", ondelete="CASCADE"),
        primary_key=primary_key,
        nullable=False,
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
    #: what the platform says of the company (domain.CompanyInfo), read at connect and on
    #: every full pass
    Column("country", String(2)),
    Column("region", String(100)),
    Column("platform_timezone", String(100)),
    Column("edition", String(40)),
    #: ConnectorState
    Column("status", String(20), nullable=False, default=ConnectorState.NEW.value),
    Column("status_reason", Text),
    #: a long Retry-After (e.g. Xero's day limit) parks the connector until then
    Column("parked_until", UtcDateTime),
    Column("parked_reason", Text),
    Column("created_at", UtcDateTime, nullable=False),
    Column("last_sync_at", UtcDateTime),
    Column("last_sync_ok_at", UtcDateTime),
    Column("last_error", Text),
    check("status", ConnectorState, "status"),
)

tokens = Table(
    "tokens",
    metadata,
    _connector_id(primary_key=True),
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


def _business(name: str, *columns: SchemaItem) -> Table:
    return Table(
        name,
        metadata,
        _connector_id(primary_key=True),
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
    #: the billing address's country (ISO 3166 alpha-2) and region
    Column("country", String(2)),
    Column("region", String(100)),
    #: the ledger's labels: QBO customer type, Xero contact groups: ["name", ...]
    Column("tags", JSON, nullable=False, default=list),
    #: QBO Customer.Notes (at most 2000 characters there)
    Column("notes", Text),
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
    #: Xero ExpectedPaymentDate
    Column("expected_date", Date),
    check("status", InvoiceStatus, "status"),
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
    check("status", DocStatus, "status"),
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
    check("status", DocStatus, "status"),
)

cursors = Table(
    "cursors",
    metadata,
    _connector_id(primary_key=True),
    Column("state", JSON, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("sync_id", Integer),
)

sync_runs = Table(
    "sync_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _connector_id(),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    #: RunOutcome; a run left "running" was killed
    Column("outcome", String(10), nullable=False),
    Column("full", Boolean, nullable=False),
    Column("pages", Integer, nullable=False, default=0),
    Column("changed", Integer, nullable=False, default=0),
    Column("api_calls", Integer),
    Column("error", Text),
    check("outcome", RunOutcome, "outcome"),
)
Index("ix_sync_runs_connector", sync_runs.c.connector_id, sync_runs.c.id)
Index("ix_sync_runs_outcome", sync_runs.c.connector_id, sync_runs.c.outcome)
Index(
    "ix_sync_runs_full",
    sync_runs.c.connector_id,
    sync_runs.c.full,
    sync_runs.c.outcome,
    sync_runs.c.started_at,
)
Index("ix_sync_runs_finished", sync_runs.c.finished_at)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _connector_id(),
    Column("sync_id", Integer),
    Column("at", UtcDateTime, nullable=False),
    #: Entity
    Column("entity", String(20), nullable=False),
    Column("external_id", String(64)),
    #: "created" | "changed" | "deleted" | "restored" | "connected" | "reconnect_needed" |
    #: "hold_set" | "hold_ended" | "plan_set" | "plan_ended" | ...
    Column("action", String(30), nullable=False),
    #: {"field": [old, new], ...} for "changed"; free detail otherwise
    Column("detail", JSON),
    check("entity", Entity, "entity"),
)
Index("ix_events_record", events.c.connector_id, events.c.entity, events.c.external_id)

quarantine = Table(
    "quarantine",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _connector_id(),
    Column("sync_id", Integer),
    Column("at", UtcDateTime, nullable=False),
    Column("entity", String(20), nullable=False),
    Column("external_id", String(64)),
    Column("reason", Text, nullable=False),
    #: the record exactly as the platform sent it
    Column("payload", JSON, nullable=False),
    Column("resolved", Boolean, nullable=False, default=False),
)

#: API calls made per connector per minute (UTC), so a restart remembers the day's count
api_usage = Table(
    "api_usage",
    metadata,
    _connector_id(primary_key=True),
    Column("minute", UtcDateTime, primary_key=True),
    Column("calls", Integer, nullable=False),
)


def _set_and_ended(states: type[StrEnum]) -> list[SchemaItem]:
    """Who set a hold or a plan, when and why; its state; who ended it, when and why."""
    return [
        Column("reason", Text, nullable=False),
        #: HoldSource, and who: a person's name, or the ledger's marker ("QuickBooks customer
        #: type")
        Column("source", String(10), nullable=False),
        Column("set_by", String(200), nullable=False),
        Column("set_at", UtcDateTime, nullable=False),
        Column("state", String(10), nullable=False),
        Column("ended_by", String(200)),
        Column("ended_at", UtcDateTime),
        Column("end_reason", Text),
        check("state", states, "state"),
        check("source", HoldSource, "source"),
    ]


#: holds on an invoice or a customer, each with who set it, when and why (the paper trail)
holds = Table(
    "holds",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _connector_id(),
    #: HoldKind
    Column("kind", String(20), nullable=False),
    #: the customer held (a pause), or the invoice's customer
    Column("customer_id", String(64)),
    #: the invoice held (exclude, dispute, promise, settlement); NULL for a whole customer
    Column("invoice_id", String(64)),
    #: a pause's last day, or the day a promise falls due
    Column("until", Date),
    #: a promise's or a settlement's amount, in `currency`
    Column("amount", Amount),
    Column("currency", String(3)),
    #: the invoice's balance when the hold was set (what a settlement's payments count from)
    Column("basis", Amount),
    *_set_and_ended(HoldState),
    check("kind", HoldKind, "kind"),
    CheckConstraint("customer_id IS NOT NULL OR invoice_id IS NOT NULL", name="target"),
    CheckConstraint("amount IS NULL OR currency IS NOT NULL", name="currency"),
)
Index("ix_holds_active", holds.c.connector_id, holds.c.state)

#: payment plans: a customer pays what is due by instalments
payment_plans = Table(
    "payment_plans",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    _connector_id(),
    Column("customer_id", String(64), nullable=False),
    #: the invoices the plan covers: ["id", ...]
    Column("invoice_ids", JSON, nullable=False),
    Column("currency", String(3), nullable=False),
    #: the covered invoices' balance when the plan was agreed (what payments count from)
    Column("basis", Amount),
    #: how many instalments may be missed before the plan ends
    Column("missed_allowed", Integer, nullable=False),
    *_set_and_ended(PlanState),
    CheckConstraint("missed_allowed >= 0", name="missed_allowed"),
)
Index("ix_payment_plans_active", payment_plans.c.connector_id, payment_plans.c.state)

plan_instalments = Table(
    "plan_instalments",
    metadata,
    Column(
        "plan_id",
        Integer,
        ForeignKey("payment_plans.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("seq", Integer, primary_key=True),
    Column("due", Date, nullable=False),
    Column("amount", Amount, nullable=False),
    CheckConstraint("amount > 0", name="amount"),
)

#: per-customer settings set from the CLI (e.g. the customer's time zone), one row per key
customer_settings = Table(
    "customer_settings",
    metadata,
    _connector_id(primary_key=True),
    Column("customer_id", String(64), primary_key=True),
    Column("key", String(40), primary_key=True),
    Column("value", Text, nullable=False),
    Column("set_by", String(200), nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
)

#: the outbox: every action arsync takes in the outside world, keyed by its derived id; nothing
#: touches a platform except through a row here (writeback/outbox.py, writeback/dispatch.py)
outbox = Table(
    "outbox",
    metadata,
    _connector_id(primary_key=True),
    #: the action's id, derived from connector/subject/stage/kind (the platform's idempotency key)
    Column("id", String(40), primary_key=True),
    #: the readable form the id is derived from
    Column("key", String(300), nullable=False),
    #: ActionKind: email, note, call, letter, handover
    Column("kind", String(10), nullable=False),
    #: "invoice:ID" or "plan:ID:SEQ"; for a hand-over asked for by a person, "customer:ID"
    Column("subject", String(100), nullable=False),
    Column("customer_id", String(64), nullable=False),
    Column("invoice_id", String(64)),
    Column("stage", String(40), nullable=False),
    Column("stage_title", String(100), nullable=False),
    Column("tone", String(10), nullable=False),
    #: what was owed when it was planned, and the due date it was planned from
    Column("amount", Amount, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("due_date", Date),
    #: the earliest moment it may happen
    Column("at", UtcDateTime, nullable=False),
    #: OutboxState
    Column("state", String(20), nullable=False),
    #: why it waits for a person's approval
    Column("approval", Text),
    Column("decided_by", String(200)),
    Column("decided_at", UtcDateTime),
    #: tries so far, and when it may be tried again (retrying, or ready later: quiet hours)
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_at", UtcDateTime),
    #: the lease of a claim: who holds it and until when
    Column("lease_owner", String(100)),
    Column("lease_until", UtcDateTime),
    #: when the write was first sent to the platform (NULL: never sent, so safe to send)
    Column("sent_at", UtcDateTime),
    #: why it was skipped, failed or waits; a short code beside the words
    Column("reason", Text),
    Column("reason_code", String(30)),
    #: the platform's evidence of the effect (ids, addresses, times, the note's text)
    Column("result", JSON),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("done_at", UtcDateTime),
    check("state", OutboxState, "state"),
    CheckConstraint("attempts >= 0", name="attempts"),
)
Index("ix_outbox_state", outbox.c.connector_id, outbox.c.state, outbox.c.next_at)
Index("ix_outbox_subject", outbox.c.connector_id, outbox.c.subject)
Index("ix_outbox_customer", outbox.c.connector_id, outbox.c.customer_id)

#: a channel (email, letter) a platform or the mail server closed for a while (a day's cap)
channel_parks = Table(
    "channel_parks",
    metadata,
    _connector_id(primary_key=True),
    Column("channel", String(20), primary_key=True),
    Column("until", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
)

BUSINESS = {"customer": customers, "invoice": invoices, "payment": payments, "credit": credits}

#: the firm's daily digest: one row per firm time zone and firm-local day, claimed (inserted,
#: "sending") and committed before the message leaves, so that no restart or second replica
#: sends that day's digest again (writeback/digest.py); DigestState in store/digests.py
digests = Table(
    "digests",
    metadata,
    #: the IANA zone whose morning it is for, and the day there
    Column("zone", String(64), primary_key=True),
    Column("day", Date, primary_key=True),
    #: DigestState
    Column("state", String(10), nullable=False),
    #: who claimed it last (host:pid:tail), and when
    Column("owner", String(100), nullable=False),
    Column("claimed_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False),
    #: a failed try (nothing left) may be claimed again from this moment, the same day only
    Column("next_at", UtcDateTime),
    Column("sent_at", UtcDateTime),
    Column("recipient", String(320), nullable=False),
    Column("subject", Text),
    Column("message_id", String(255)),
    Column("error", Text),
    #: how many of each thing it told (reminders, calls, waiting...)
    Column("summary", JSON),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("state IN ('sending', 'sent', 'failed', 'unknown')", name="state"),
    CheckConstraint("attempts >= 1", name="attempts"),
)
