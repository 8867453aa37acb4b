"""Xero's JSON rows to arsync's records: pure functions, no I/O.

Each function takes one row as the Accounting API returns it (full or summary form) and gives a
record, a `Deleted`, a `Quarantined` (a row arsync cannot read: kept raw, never guessed at), or
None for a row that is not arsync's business (bills, supplier payments and credits, drafts of
credit notes); the connector drops those.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from arsync.connectors.countries import iso_country
from arsync.connectors.xero.client import parse_xero_date
from arsync.domain import (
    Allocation,
    CompanyInfo,
    Credit,
    Customer,
    Deleted,
    DocStatus,
    Invoice,
    InvoiceStatus,
    Kind,
    Payment,
    Quarantined,
    Record,
)
from arsync.errors import DataError

Row = Mapping[str, Any]
Mapped = Record | Deleted | Quarantined | None

INVOICE_STATUS = {
    "DRAFT": InvoiceStatus.DRAFT,
    "SUBMITTED": InvoiceStatus.DRAFT,  # awaiting approval: nobody owes it yet
    "AUTHORISED": InvoiceStatus.OPEN,
    "PAID": InvoiceStatus.PAID,
    "VOIDED": InvoiceStatus.VOIDED,
}
INVOICE_STATES = frozenset({*INVOICE_STATUS, "DELETED"})
INVOICE_TYPES = frozenset(
    {
        "ACCREC",
        "ACCPAY",
        "ACCPAYCREDIT",
        "ACCRECCREDIT",
        "APOVERPAYMENT",
        "APPREPAYMENT",
        "AROVERPAYMENT",
        "ARPREPAYMENT",
    }
)
PAYMENT_TYPES = frozenset(
    {
        "ACCRECPAYMENT",
        "ACCPAYPAYMENT",
        "ARCREDITPAYMENT",
        "APCREDITPAYMENT",
        "AROVERPAYMENTPAYMENT",
        "ARPREPAYMENTPAYMENT",
        "APPREPAYMENTPAYMENT",
        "APOVERPAYMENTPAYMENT",
    }
)
CONTACT_ACTIVE = {"ACTIVE": True, "ARCHIVED": False, "GDPRREQUEST": False}
NIL_GUID = "00000000-0000-0000-0000-000000000000"


class _Unreadable(Exception):
    """One field of a row cannot be read; becomes the Quarantined reason."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")


# -- field readers --------------------------------------------------------------------------------
_MISSING = object()


def _get(row: Row, path: str) -> Any:
    """The value at a dotted path (`Contact.ContactID`); _MISSING when absent or null."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            raise _Unreadable(path, f"expected an object at {part!r}, got {_kind(value)}")
        value = value.get(part, _MISSING)
        if value is None or value is _MISSING:
            return _MISSING
    return value


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _text(row: Row, path: str) -> str:
    value = _get(row, path)
    if value is _MISSING:
        raise _Unreadable(path, "missing")
    if not isinstance(value, str):
        raise _Unreadable(path, f"expected text, got {_kind(value)} {value!r}")
    return value


def _ident(row: Row, path: str) -> str:
    value = _text(row, path).strip()
    if not value:
        raise _Unreadable(path, "empty")
    return value


def _optional_text(row: Row, path: str) -> str | None:
    """Text that may be absent; Xero writes "no value" as an empty string as often as a null."""
    value = _get(row, path)
    if value is _MISSING:
        return None
    if not isinstance(value, str):
        raise _Unreadable(path, f"expected text, got {_kind(value)} {value!r}")
    return value.strip() or None


def _money(row: Row, path: str) -> Decimal:
    value = _get(row, path)
    if value is _MISSING:
        raise _Unreadable(path, "missing")
    # bool is an int to Python, and a float has already lost the exact amount: refuse both.
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise _Unreadable(path, f"expected an exact amount, got {_kind(value)} {value!r}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Unreadable(path, f"not an amount: {value!r}") from None
    if not amount.is_finite():
        raise _Unreadable(path, f"not a finite amount: {value!r}")
    return amount


def _moment(row: Row, path: str) -> datetime:
    value = _text(row, path)
    try:
        return parse_xero_date(value).astimezone(UTC)
    except DataError:
        raise _Unreadable(path, f"not a Xero date: {value!r}") from None


def _day(row: Row, path: str) -> date:
    """A calendar date: Xero sends it as midnight (`/Date(…+0000)/` or `2026-11-30T00:00:00`)."""
    value = _text(row, path)
    try:
        return parse_xero_date(value).date()
    except DataError:
        raise _Unreadable(path, f"not a Xero date: {value!r}") from None


def _optional_day(row: Row, path: str) -> date | None:
    return None if _get(row, path) is _MISSING else _day(row, path)


def _flag(row: Row, path: str) -> bool:
    value = _get(row, path)
    if value is _MISSING:
        return False  # Xero leaves false flags out of some forms
    if not isinstance(value, bool):
        raise _Unreadable(path, f"expected true or false, got {_kind(value)} {value!r}")
    return value


def _choice(row: Row, path: str, allowed: Mapping[str, Any] | frozenset[str] | set[str]) -> str:
    value = _text(row, path)
    if value not in allowed:
        raise _Unreadable(path, f"unknown value {value!r}")
    return value


def _deleted_at(row: Row) -> datetime | None:
    try:
        return _moment(row, "UpdatedDateUTC")
    except _Unreadable:
        return None  # the deletion is what matters; its time is a nicety


def _guard(kind: Kind, id_field: str, build: Callable[[Row], Mapped], row: Any) -> Mapped:
    """`build(row)`, with an unreadable row quarantined under the field that failed."""
    if not isinstance(row, Mapping):
        return Quarantined(kind, None, f"expected an object, got {_kind(row)}", raw={"row": row})
    try:
        return build(row)
    except _Unreadable as err:
        raw_id = row.get(id_field)
        ident = raw_id.strip() if isinstance(raw_id, str) and raw_id.strip() else None
        return Quarantined(kind, ident, str(err), raw=row)


def contact(row: Row) -> Mapped:
    """A Contact as a Customer; one merged into another is Deleted(merged_into=the survivor)."""
    return _guard(Kind.CUSTOMER, "ContactID", _contact, row)


def invoice(row: Row) -> Mapped:
    """A sales invoice (Type ACCREC) as an Invoice; other types are not arsync's (None)."""
    return _guard(Kind.INVOICE, "InvoiceID", _invoice, row)


def payment(row: Row) -> Mapped:
    """A payment on a sales invoice (ACCRECPAYMENT) as a Payment; others give None."""
    return _guard(Kind.PAYMENT, "PaymentID", _payment, row)


def credit_note(row: Row) -> Mapped:
    """A sales credit note (ACCRECCREDIT) as a Credit; supplier credits and drafts give None."""
    return _guard(Kind.CREDIT, "CreditNoteID", _credit_note, row)


# -- the four kinds -------------------------------------------------------------------------------
def _contact(row: Row) -> Mapped:
    """A Xero Contact as a Customer; a contact merged into another is Deleted(merged_into)."""
    ident = _ident(row, "ContactID")
    merged = _optional_text(row, "MergedToContactID")
    if merged and merged != NIL_GUID:
        return Deleted(Kind.CUSTOMER, ident, at=_deleted_at(row), merged_into=merged)
    status = _choice(row, "ContactStatus", CONTACT_ACTIVE)
    country, region = _billing_place(row)
    return Customer(
        id=ident,
        name=_text(row, "Name"),
        email=_optional_text(row, "EmailAddress"),
        phone=_phone(row),
        currency=_optional_text(row, "DefaultCurrency"),
        active=CONTACT_ACTIVE[status],
        updated_at=_moment(row, "UpdatedDateUTC"),
        country=country,
        region=region,
        tags=_group_names(row),
    )


#: the addresses read for the billing place, the billing (postal) one first
_BILLING_ADDRESSES = ("POBOX", "STREET")
#: the longest region kept (Xero allows 255 characters)
_REGION_MAX = 100


def _billing_place(row: Row) -> tuple[str | None, str | None]:
    """(ISO country, region) of the first of the POBOX and STREET addresses that names either.

    Xero's Country is free text ("United Kingdom", "UK"...): a name that does not say one
    country without doubt gives None. A place is a nicety: an unreadable address gives
    (None, None) rather than holding the contact back.
    """
    addresses = row.get("Addresses")
    if not isinstance(addresses, list):
        return None, None
    by_type = {
        a.get("AddressType"): a
        for a in reversed(addresses)  # the first of a type wins
        if isinstance(a, Mapping)
    }
    for kind in _BILLING_ADDRESSES:
        address = by_type.get(kind)
        if address is None:
            continue
        try:
            country_text = _optional_text(address, "Country")
            region = _optional_text(address, "Region")
        except _Unreadable:
            continue
        if country_text or region:
            return iso_country(country_text), region[:_REGION_MAX] if region else None
    return None, None


def _group_names(row: Row) -> tuple[str, ...]:
    """The names of the ACTIVE contact groups a contact is in, sorted, when the row lists them
    (Xero fills ContactGroups in paged lists and single reads; elsewhere it is empty)."""
    groups = _get(row, "ContactGroups")
    if groups is _MISSING:
        return ()
    if not isinstance(groups, list):
        raise _Unreadable("ContactGroups", f"expected a list, got {_kind(groups)}")
    names: set[str] = set()
    for i, group in enumerate(groups):
        if not isinstance(group, Mapping):
            raise _Unreadable(f"ContactGroups[{i}]", f"expected an object, got {_kind(group)}")
        try:
            status = _optional_text(group, "Status")
            name = _optional_text(group, "Name")
        except _Unreadable as err:
            raise _Unreadable(f"ContactGroups[{i}]", str(err)) from None
        if status not in (None, "ACTIVE"):
            continue  # a DELETED group labels nobody
        if name is None:
            raise _Unreadable(f"ContactGroups[{i}].Name", "missing")
        names.add(name)
    return tuple(sorted(names))


def contact_group(row: Any) -> tuple[str, str] | None:
    """(ContactGroupID, Name) of an ACTIVE group listed by GET /ContactGroups, None for a
    DELETED one; a DataError for a row that cannot be read."""
    if not isinstance(row, Mapping):
        raise DataError(f"Xero contact group: expected an object, got {_kind(row)}")
    try:
        ident = _ident(row, "ContactGroupID")
        status = _optional_text(row, "Status")
        name = _ident(row, "Name")
    except _Unreadable as err:
        raise DataError(f"Xero contact group: {err}") from None
    if status not in (None, "ACTIVE"):
        return None
    return ident, name


def group_members(row: Any) -> list[str]:
    """The ContactIDs of a group as GET /ContactGroups/{id} lists them (its `Contacts`)."""
    if not isinstance(row, Mapping):
        raise DataError(f"Xero contact group: expected an object, got {_kind(row)}")
    members = _get(row, "Contacts")
    if members is _MISSING:
        return []
    if not isinstance(members, list):
        raise DataError(f"Xero contact group: Contacts is {_kind(members)}, not a list")
    out: list[str] = []
    for i, member in enumerate(members):
        if not isinstance(member, Mapping):
            raise DataError(f"Xero contact group: Contacts[{i}] is not an object")
        try:
            out.append(_ident(member, "ContactID"))
        except _Unreadable as err:
            raise DataError(f"Xero contact group: Contacts[{i}].{err}") from None
    return out


def _phone(row: Row) -> str | None:
    """The first phone with a number, the DEFAULT one first, as "+44 20 7946 0123"."""
    phones = _get(row, "Phones")
    if phones is _MISSING:
        return None
    if not isinstance(phones, list):
        raise _Unreadable("Phones", f"expected a list, got {_kind(phones)}")
    entries: list[Row] = []
    for i, phone in enumerate(phones):
        if not isinstance(phone, Mapping):
            raise _Unreadable(f"Phones[{i}]", f"expected an object, got {_kind(phone)}")
        entries.append(phone)
    # sorted() is stable: DEFAULT first, the others in Xero's order
    for i, phone in sorted(enumerate(entries), key=lambda e: e[1].get("PhoneType") != "DEFAULT"):
        try:
            number = _optional_text(phone, "PhoneNumber")
            if not number:
                continue
            country = (_optional_text(phone, "PhoneCountryCode") or "").lstrip("+")
            area = _optional_text(phone, "PhoneAreaCode") or ""
        except _Unreadable as err:
            raise _Unreadable(f"Phones[{i}]", str(err)) from None
        return " ".join(part for part in (f"+{country}" if country else "", area, number) if part)
    return None


def _invoice(row: Row) -> Mapped:
    """A sales invoice (Type ACCREC); bills and other types are not arsync's (None)."""
    ident = _ident(row, "InvoiceID")
    if _choice(row, "Type", INVOICE_TYPES) != "ACCREC":
        # Bills (ACCPAY) are money the firm owes, not money owed to it: nothing to collect.
        return None
    status = _choice(row, "Status", INVOICE_STATES)
    if status == "DELETED":
        return Deleted(Kind.INVOICE, ident, at=_deleted_at(row))
    issued = _day(row, "Date")
    due = issued if _get(row, "DueDate") is _MISSING else _day(row, "DueDate")
    return Invoice(
        id=ident,
        number=_optional_text(row, "InvoiceNumber"),
        customer_id=_ident(row, "Contact.ContactID"),
        issue_date=issued,
        due_date=due,
        currency=_ident(row, "CurrencyCode"),
        total=_money(row, "Total"),
        balance=_money(row, "AmountDue"),
        status=INVOICE_STATUS[status],
        sent=_flag(row, "SentToContact"),
        updated_at=_moment(row, "UpdatedDateUTC"),
        expected_date=_optional_day(row, "ExpectedPaymentDate"),
    )


def _payment(row: Row) -> Mapped:
    """A payment on a sales invoice (ACCRECPAYMENT); other payments are not arsync's (None)."""
    ident = _ident(row, "PaymentID")
    if _get(row, "PaymentType") is not _MISSING:
        if _choice(row, "PaymentType", PAYMENT_TYPES) != "ACCRECPAYMENT":
            return None  # bill payments, refunds, prepayments: nothing a customer owes
    elif _choice(row, "Invoice.Type", INVOICE_TYPES) != "ACCREC":
        return None
    status = _choice(row, "Status", {"AUTHORISED", "DELETED"})
    if status == "DELETED":
        return Deleted(Kind.PAYMENT, ident, at=_deleted_at(row))
    amount = _money(row, "Amount")
    currency = _optional_text(row, "CurrencyCode") or _optional_text(row, "Invoice.CurrencyCode")
    if currency is None:
        raise _Unreadable("CurrencyCode", "missing on the payment and on its Invoice")
    return Payment(
        id=ident,
        customer_id=_optional_text(row, "Invoice.Contact.ContactID"),
        date=_day(row, "Date"),
        currency=currency,
        amount=amount,
        unapplied=Decimal(0),  # a Xero payment is always for exactly one invoice
        status=DocStatus.ACTIVE,
        allocations=(Allocation(_ident(row, "Invoice.InvoiceID"), amount),),
        updated_at=_moment(row, "UpdatedDateUTC"),
    )


CREDIT_STATUS = {
    "AUTHORISED": DocStatus.ACTIVE,
    "PAID": DocStatus.ACTIVE,  # fully allocated or refunded: still a credit that happened
    "VOIDED": DocStatus.VOIDED,
}
CREDIT_STATES = frozenset({*CREDIT_STATUS, "DELETED", "DRAFT", "SUBMITTED"})


def _credit_note(row: Row) -> Mapped:
    """A sales credit note (ACCRECCREDIT); supplier credits and unapproved drafts give None."""
    ident = _ident(row, "CreditNoteID")
    if _choice(row, "Type", {"ACCRECCREDIT", "ACCPAYCREDIT"}) != "ACCRECCREDIT":
        return None
    status = _choice(row, "Status", CREDIT_STATES)
    if status == "DELETED":
        return Deleted(Kind.CREDIT, ident, at=_deleted_at(row))
    if status in ("DRAFT", "SUBMITTED"):
        # Not approved: it credits nobody yet and cannot be allocated; it counts once approved.
        return None
    return Credit(
        id=ident,
        number=_optional_text(row, "CreditNoteNumber"),
        customer_id=_optional_text(row, "Contact.ContactID"),
        date=_day(row, "Date"),
        currency=_ident(row, "CurrencyCode"),
        total=_money(row, "Total"),
        remaining=_money(row, "RemainingCredit"),
        status=CREDIT_STATUS[status],
        allocations=_allocations(row),
        updated_at=_moment(row, "UpdatedDateUTC"),
    )


def _allocations(row: Row) -> tuple[Allocation, ...]:
    raw = _get(row, "Allocations")
    if raw is _MISSING:
        return ()
    if not isinstance(raw, list):
        raise _Unreadable("Allocations", f"expected a list, got {_kind(raw)}")
    out: list[Allocation] = []
    for i, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise _Unreadable(f"Allocations[{i}]", f"expected an object, got {_kind(item)}")
        try:
            out.append(Allocation(_ident(item, "Invoice.InvoiceID"), _money(item, "Amount")))
        except _Unreadable as err:
            raise _Unreadable(f"Allocations[{i}]", str(err)) from None
    return tuple(out)


def organisation(row: Row) -> CompanyInfo:
    """GET /Organisation's organisation as CompanyInfo. Timezone is kept as Xero writes it (a
    Windows zone id, e.g. "GMTSTANDARDTIME"); an unreadable optional field is left out, an
    organisation without a name is a DataError."""
    try:
        name = _ident(row, "Name")
    except _Unreadable as err:
        raise DataError(f"Xero organisation: {err}") from None

    def optional(path: str) -> str | None:
        try:
            return _optional_text(row, path)
        except _Unreadable:
            return None

    currency = optional("BaseCurrency")
    country = optional("CountryCode")
    return CompanyInfo(
        name=name,
        base_currency=currency.upper() if currency and len(currency) == 3 else None,
        country=country.upper() if country and len(country) == 2 else None,
        timezone=optional("Timezone"),
        edition=optional("Class"),
    )
