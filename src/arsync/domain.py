"""Platform-neutral records: what arsync knows of customers, invoices, payments and credits.

Every record is a frozen dataclass built by a platform's `mapping.py`. Identifiers are the
platform's own (QBO `Id`, Xero `InvoiceID`...), as text. Money is `Decimal`, never float, and every
amount travels with the currency of the document it belongs to. Times are timezone-aware UTC;
dates are the document's own calendar dates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

#: how arsync names each platform to people, by its code
PLATFORM_NAMES = {"qbo": "QuickBooks Online", "xero": "Xero"}


class Kind(StrEnum):
    """The four kinds of record a connector pulls."""

    CUSTOMER = "customer"
    INVOICE = "invoice"
    PAYMENT = "payment"
    CREDIT = "credit"


class InvoiceStatus(StrEnum):
    DRAFT = "draft"  # not yet approved (Xero DRAFT/SUBMITTED): nobody owes it yet
    OPEN = "open"  # approved, balance above zero
    PAID = "paid"  # balance zero by payments and/or credits
    VOIDED = "voided"


class DocStatus(StrEnum):
    """Status of a payment or a credit."""

    ACTIVE = "active"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __str__(self) -> str:
        return f"{self.amount:,.2f} {self.currency}"


@dataclass(frozen=True, slots=True)
class Customer:
    id: str
    name: str
    email: str | None
    phone: str | None
    currency: str | None
    active: bool
    updated_at: datetime
    #: the billing address's country (ISO 3166 alpha-2) and region, where the platform has them
    country: str | None = None
    region: str | None = None
    #: the labels a bookkeeper gives the customer inside the ledger: QBO its customer type's
    #: name, Xero its contact groups' names (read by the policy's ledger holds)
    tags: tuple[str, ...] = ()
    #: QBO Customer.Notes, the bookkeeper's free text (Xero contacts have none)
    notes: str | None = None


@dataclass(frozen=True, slots=True)
class Invoice:
    id: str
    number: str | None
    customer_id: str
    issue_date: date
    due_date: date
    currency: str
    total: Decimal
    #: what the platform itself says is still owed (QBO `Balance`, Xero `AmountDue`)
    balance: Decimal
    status: InvoiceStatus
    #: the platform has emailed it to the customer (QBO EmailStatus, Xero SentToContact)
    sent: bool
    updated_at: datetime
    #: Xero's ExpectedPaymentDate ("Expected Date"): when the customer said they would pay
    expected_date: date | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    """Part of a payment or credit applied to one invoice."""

    invoice_id: str
    amount: Decimal


@dataclass(frozen=True, slots=True)
class Payment:
    id: str
    customer_id: str | None
    date: date
    currency: str
    amount: Decimal
    #: the part not applied to any invoice (an overpayment or a prepayment)
    unapplied: Decimal
    status: DocStatus
    allocations: tuple[Allocation, ...]
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Credit:
    """A QBO CreditMemo or a Xero ACCRECCREDIT credit note."""

    id: str
    number: str | None
    customer_id: str | None
    date: date
    currency: str
    total: Decimal
    remaining: Decimal
    status: DocStatus
    allocations: tuple[Allocation, ...]
    updated_at: datetime


Record = Customer | Invoice | Payment | Credit

KIND_OF: dict[type, Kind] = {
    Customer: Kind.CUSTOMER,
    Invoice: Kind.INVOICE,
    Payment: Kind.PAYMENT,
    Credit: Kind.CREDIT,
}


@dataclass(frozen=True, slots=True)
class Deleted:
    """The platform says this record is gone (deleted, or merged into another)."""

    kind: Kind
    id: str
    at: datetime | None = None
    #: for a merge: the record that absorbed it
    merged_into: str | None = None


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A record the platform sent that arsync cannot read; kept raw, never guessed at."""

    kind: Kind
    id: str | None
    reason: str
    raw: Mapping[str, Any] = field(default_factory=dict)


Item = Record | Deleted | Quarantined


@dataclass(frozen=True, slots=True)
class CompanyInfo:
    """What the platform says of the company itself (Xero Organisation, QBO CompanyInfo and
    Preferences), read at connect and on every full pass."""

    name: str
    base_currency: str | None = None
    #: ISO 3166 alpha-2, as the platform gives it
    country: str | None = None
    #: the state or region (QBO CompanyAddr.CountrySubDivisionCode), when given
    region: str | None = None
    #: the platform's own time-zone value, unmapped (Xero: a Windows zone id such as
    #: "GMTSTANDARDTIME"); QBO has none
    timezone: str | None = None
    #: Xero's Organisation.Class (DEMO, TRIAL, STARTER, STANDARD, PREMIUM...); QBO has none
    edition: str | None = None


# -- holds and payment plans ------------------------------------------------------------------


class HoldKind(StrEnum):
    PAUSE = "pause"  # a customer: no contact until a date or until resumed
    EXCLUDE = "exclude"  # an invoice: never chased
    DISPUTE = "dispute"  # an invoice in dispute: never chased until resolved
    PROMISE = "promise"  # a promise to pay by a date: quiet until the date plus grace
    SETTLEMENT = "settlement"  # an agreed lower amount: paid, the chase ends


class HoldState(StrEnum):
    ACTIVE = "active"
    CLEARED = "cleared"  # resumed, resolved or withdrawn by a person (or the ledger)
    BROKEN = "broken"  # a promise not kept
    KEPT = "kept"  # a promise or settlement paid


class HoldSource(StrEnum):
    """Who set a hold: a person through arsync, or the bookkeeper inside the ledger."""

    ARSYNC = "arsync"
    LEDGER = "ledger"


class PlanState(StrEnum):
    ACTIVE = "active"
    COMPLETED = "completed"  # every instalment paid
    ENDED = "ended"  # too many instalments missed, or ended by a person


@dataclass(frozen=True, slots=True)
class Hold:
    id: int
    connector_id: int
    kind: HoldKind
    customer_id: str | None
    invoice_id: str | None
    until: date | None
    amount: Decimal | None
    currency: str | None
    #: the invoice's balance when the hold was set
    basis: Decimal | None
    reason: str
    source: HoldSource
    set_by: str
    set_at: datetime
    state: HoldState
    ended_by: str | None
    ended_at: datetime | None
    end_reason: str | None


@dataclass(frozen=True, slots=True)
class Instalment:
    seq: int
    due: date
    amount: Decimal


@dataclass(frozen=True, slots=True)
class PaymentPlan:
    id: int
    connector_id: int
    customer_id: str
    invoice_ids: tuple[str, ...]
    currency: str
    instalments: tuple[Instalment, ...]
    #: the covered invoices' balance when the plan was agreed (None: not recorded)
    basis: Decimal | None
    missed_allowed: int
    reason: str
    source: HoldSource
    set_by: str
    set_at: datetime
    state: PlanState
    ended_by: str | None
    ended_at: datetime | None
    end_reason: str | None

    @property
    def total(self) -> Decimal:
        return sum((i.amount for i in self.instalments), Decimal(0))


@dataclass
class Page:
    """Records of one API page and the cursor state that holds once they are committed.

    A connector yields pages; the sync engine commits each page's records and its cursor in one
    transaction, so a sync stopped anywhere resumes from the last committed page.
    """

    #: what is being pulled, for progress and logs: "invoices", "changes", "open invoices"...
    stream: str
    items: list[Item]
    #: the connector's complete state after this page (JSON-serialisable)
    cursor: dict[str, Any]
    #: set during a full pass: an id the engine stamps on every record the pass sees
    full_pass: str | None = None
    #: kinds whose full pass ends with this page: records of such a kind that the pass
    #: did not see are gone from the platform, and the engine marks them deleted
    completed: frozenset[Kind] = field(default_factory=frozenset)
    #: how many items the stream holds in all, when the platform says (for progress bars)
    total: int | None = None
    #: the company as read during this pass (a full pass reads it again), stored with the page
    company: CompanyInfo | None = None
    #: every customer's ledger labels as read in one go (Xero: the contact groups, read once a
    #: sweep): a customer not named here has none. None: this page does not say.
    tags: Mapping[str, tuple[str, ...]] | None = None
