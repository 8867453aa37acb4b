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
