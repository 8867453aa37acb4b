"""What the planner plans from: one connector's books, holds and history at one moment.

Plain frozen values: the planner reads a `Snapshot` and nothing else (no store, no clock, no
network). `escalation/reading.py` builds one from the store; tests build them by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from arsync.domain import Hold, Invoice, InvoiceStatus, PaymentPlan
from arsync.escalation.calendar import Calendar


@dataclass(frozen=True, slots=True)
class Person:
    """A customer as the planner sees them: who, and in which time zone."""

    id: str
    name: str
    email: str | None
    zone: ZoneInfo
    #: where the zone comes from, in words ("billing address in GB", "the firm's")
    zone_from: str


@dataclass(frozen=True, slots=True)
class Done:
    """A stage that happened (or was superseded) for a subject: an invoice or an instalment."""

    subject: str
    customer_id: str
    stage: str
    at: datetime
    #: the stage reached the customer (it counts for contact spacing)
    contact: bool
    #: superseded: skipped by the catch-up rule (it never happened, but is never due again)
    superseded: bool = False


@dataclass(frozen=True)
class Snapshot:
    connector: str
    #: "qbo" or "xero"
    platform: str
    firm_zone: ZoneInfo
    calendar: Calendar
    customers: Mapping[str, Person]
    #: the open invoices (balance above zero, not voided, not deleted)
    invoices: Sequence[Invoice]
    #: per (customer, currency): payments not applied to any invoice plus credits not used
    unapplied: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    #: active holds
    holds: Sequence[Hold] = ()
    #: holds that ended (a broken promise makes the next stage firmer)
    ended_holds: Sequence[Hold] = ()
    #: active payment plans
    plans: Sequence[PaymentPlan] = ()
    #: invoices named by a hold or a plan that are no longer open, and what they are now
    closed: Mapping[str, InvoiceStatus] = field(default_factory=dict)
    #: stages that happened, oldest first
    history: Sequence[Done] = ()
    #: when the last sync that finished well finished (None: never)
    last_good_sync: datetime | None = None
