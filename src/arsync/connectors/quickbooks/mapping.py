"""QBO JSON rows to arsync records: pure, and a row it cannot read is quarantined, never guessed."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from arsync.connectors.base import FoundEmail, FoundNote, FreshInvoice
from arsync.connectors.countries import iso_country
from arsync.domain import (
    Allocation,
    Credit,
    Customer,
    Deleted,
    DocStatus,
    Invoice,
    InvoiceStatus,
    Item,
    Kind,
    Payment,
    Quarantined,
)
from arsync.errors import DataError

Row = Mapping[str, Any]
T = TypeVar("T")

#: QBO entity names as the API spells them, by the kind of record they become
ENTITY_OF: dict[Kind, str] = {
    Kind.CUSTOMER: "Customer",
    Kind.INVOICE: "Invoice",
    Kind.PAYMENT: "Payment",
    Kind.CREDIT: "CreditMemo",
}
KIND_OF: dict[str, Kind] = {entity: kind for kind, entity in ENTITY_OF.items()}

_CURRENCY = re.compile(r"^[A-Z]{3}$")
#: the store keys records by the platform's id in a column this wide
_MAX_ID = 64
#: what QBO writes into PrivateNote when it voids a transaction (every amount becomes 0)
_VOIDED_NOTE = "voided"


class _Unreadable(Exception):
    """One field of a row cannot be read; the message names the field."""


# -- field readers ---------------------------------------------------------------------------------
def _get(row: Row, path: str, within: str = "") -> Any:
    """The value at a dotted path (`CustomerRef.value`), None when any step is absent."""
    value: Any = row
    walked: list[str] = []
    for key in path.split("."):
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise _Unreadable(f"{within}{'.'.join(walked)}: not an object")
        walked.append(key)
        value = value.get(key)
    return value


def _required(row: Row, path: str, read: Callable[[str, Any], T], within: str = "") -> T:
    """The field at `path`, read by `read`; `within` names where `row` sits in its document."""
    value = _get(row, path, within)
    if value is None:
        raise _Unreadable(f"{within}{path}: missing")
    return read(within + path, value)


def _optional(row: Row, path: str, read: Callable[[str, Any], T]) -> T | None:
    value = _get(row, path)
    return None if value is None else read(path, value)


def _text(path: str, value: Any) -> str:
    if not isinstance(value, str):
        raise _Unreadable(f"{path}: not text ({type(value).__name__})")
    return value


def _nonempty(path: str, value: Any) -> str:
    text = _text(path, value).strip()
    if not text:
        raise _Unreadable(f"{path}: empty")
    return text


def _ident(path: str, value: Any) -> str:
    # QBO ids are strings of digits; a bare JSON integer is the same id, a bool or float is not.
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    text = _nonempty(path, value)
    if len(text) > _MAX_ID:
        raise _Unreadable(f"{path}: longer than {_MAX_ID} characters")
    return text


def _money(path: str, value: Any) -> Decimal:
    """An exact amount from a JSON integer, a Decimal (how replies are parsed) or numeric text.

    A binary float has already lost the exact amount, so it is refused rather than rounded.
    """
    if isinstance(value, bool) or not isinstance(value, int | Decimal | str):
        raise _Unreadable(f"{path}: not an amount ({type(value).__name__} {value!r})")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise _Unreadable(f"{path}: not an amount ({value!r})") from None
    if not amount.is_finite():
        raise _Unreadable(f"{path}: not a finite amount ({value!r})")
    return amount


def _day(path: str, value: Any) -> date:
    text = _text(path, value)
    try:
        # QBO writes dates as yyyy-MM-dd; fromisoformat alone would also take 20261123.
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise _Unreadable(f"{path}: not a date ({text!r})") from None


def _moment(path: str, value: Any) -> datetime:
    text = _text(path, value)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise _Unreadable(f"{path}: not a date-time ({text!r})") from None
    if moment.tzinfo is None:
        # QBO always writes the company's offset; without one the instant is unknown.
        raise _Unreadable(f"{path}: no UTC offset ({text!r})")
    return moment.astimezone(UTC)


def _flag(path: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Unreadable(f"{path}: not true or false ({value!r})")
    return value


def _currency(path: str, value: Any) -> str:
    code = _text(path, value).strip().upper()
    if not _CURRENCY.match(code):
        raise _Unreadable(f"{path}: not a currency code ({value!r})")
    return code


def _doc_currency(row: Row, home_currency: str | None) -> str:
    code = _optional(row, "CurrencyRef.value", _currency)
    if code is not None:
        return code
    if home_currency is None:
        raise _Unreadable("CurrencyRef.value: missing, and the home currency is unknown")
    # QBO leaves CurrencyRef out only when the document is in the home currency.
    return _currency("home currency", home_currency)


def _updated(row: Row) -> datetime:
    return _required(row, "MetaData.LastUpdatedTime", _moment)


def _voided(row: Row, total: Decimal) -> bool:
    """QBO voids a transaction by zeroing every amount and writing "Voided" as its PrivateNote."""
    if _optional(row, "TxnStatus", _text) == "Voided":
        return True
    note = _optional(row, "PrivateNote", _text) or ""
    return total == 0 and note.strip().lower().startswith(_VOIDED_NOTE)


def _row_id(row: Any) -> str | None:
    """The row's id for a quarantine entry, when one can be read at all."""
    if not isinstance(row, Mapping):
        return None
    try:
        return _ident("Id", row.get("Id")) if row.get("Id") is not None else None
    except _Unreadable:
        return None


def _quarantine(kind: Kind, row: Any, err: _Unreadable) -> Quarantined:
    raw = row if isinstance(row, Mapping) else {"value": row}
    return Quarantined(kind, _row_id(row), f"{ENTITY_OF[kind]} {err}", raw=raw)


#: the longest region kept
_REGION_MAX = 100


def _nicety(row: Row, path: str) -> str | None:
    """Optional text whose absence costs nothing (an address field): unreadable is None."""
    try:
        value = _optional(row, path, _text)
    except _Unreadable:
        return None
    return (value.strip() or None) if value else None


# -- the four kinds --------------------------------------------------------------------------------
def customer(row: Row, types: Mapping[str, str] | None = None) -> Customer | Quarantined:
    """A Customer; `types` names the company's customer types by Id (its CustomerTypeRef
    becomes the customer's one tag; a type whose name is not known gives none)."""
    try:
        notes = _optional(row, "Notes", _text)
        type_id = _optional(row, "CustomerTypeRef.value", _ident)
        name = (types or {}).get(type_id) if type_id is not None else None
        region = _nicety(row, "BillAddr.CountrySubDivisionCode")
        return Customer(
            id=_required(row, "Id", _ident),
            name=_required(row, "DisplayName", _nonempty),
            email=_optional(row, "PrimaryEmailAddr.Address", _text) or None,
            phone=_optional(row, "PrimaryPhone.FreeFormNumber", _text) or None,
            currency=_optional(row, "CurrencyRef.value", _currency),
            # QBO's default: a customer is active unless it says otherwise.
            active=_optional(row, "Active", _flag) is not False,
            updated_at=_updated(row),
            # BillAddr.Country is free text ("USA", "United States"): ISO alpha-2 when certain
            country=iso_country(_nicety(row, "BillAddr.Country")),
            region=region[:_REGION_MAX] if region else None,
            tags=(name,) if name else (),
            notes=notes if notes and notes.strip() else None,
        )
    except _Unreadable as err:
        return _quarantine(Kind.CUSTOMER, row, err)


def customer_type_id(row: Row) -> str | None:
    """The Id in a Customer row's CustomerTypeRef, None without one (or unreadable: the
    customer's own mapping quarantines that)."""
    try:
        return _optional(row, "CustomerTypeRef.value", _ident)
    except _Unreadable:
        return None


def customer_type_name(row: Row) -> tuple[str, str] | None:
    """(Id, Name) of a CustomerType row, None when either cannot be read."""
    try:
        return _required(row, "Id", _ident), _required(row, "Name", _nonempty)
    except _Unreadable:
        return None


def invoice(row: Row, home_currency: str | None) -> Invoice | Quarantined:
    try:
        ident = _required(row, "Id", _ident)
        issued = _required(row, "TxnDate", _day)
        total = _required(row, "TotalAmt", _money)
        balance = _required(row, "Balance", _money)
        if _voided(row, total):
            status = InvoiceStatus.VOIDED
        elif balance == 0:
            status = InvoiceStatus.PAID
        else:
            status = InvoiceStatus.OPEN
        return Invoice(
            id=ident,
            number=_optional(row, "DocNumber", _text) or None,
            customer_id=_required(row, "CustomerRef.value", _ident),
            issue_date=issued,
            # QBO leaves DueDate out when the invoice is due on its own date.
            due_date=_optional(row, "DueDate", _day) or issued,
            currency=_doc_currency(row, home_currency),
            total=total,
            balance=balance,
            status=status,
            sent=_optional(row, "EmailStatus", _text) == "EmailSent",
            updated_at=_updated(row),
        )
    except _Unreadable as err:
        return _quarantine(Kind.INVOICE, row, err)


def _allocations(row: Row) -> tuple[Allocation, ...]:
    """What a payment applies to invoices: each line's Amount, for the invoice it links."""
    lines = _get(row, "Line")
    if lines is None:
        return ()
    if not isinstance(lines, list):
        raise _Unreadable("Line: not a list")
    applied: dict[str, Decimal] = {}
    for n, line in enumerate(lines):
        where = f"Line[{n}]"
        if not isinstance(line, Mapping):
            raise _Unreadable(f"{where}: not an object")
        links = line.get("LinkedTxn") or []
        if not isinstance(links, list) or not all(isinstance(x, Mapping) for x in links):
            raise _Unreadable(f"{where}.LinkedTxn: not a list of objects")
        invoices = [
            _required(x, "TxnId", _ident, f"{where}.LinkedTxn[{i}].")
            for i, x in enumerate(links)
            if _required(x, "TxnType", _text, f"{where}.LinkedTxn[{i}].") == "Invoice"
        ]
        if not invoices:
            continue  # applies a credit memo, or is unapplied
        if len(invoices) > 1:
            # One Amount for several invoices: how it splits is not written down anywhere.
            raise _Unreadable(f"{where}.LinkedTxn: one amount linked to several invoices")
        amount = _required(line, "Amount", _money, f"{where}.")
        # Several lines for one invoice are one allocation to it.
        applied[invoices[0]] = applied.get(invoices[0], Decimal(0)) + amount
    return tuple(Allocation(invoice_id, amount) for invoice_id, amount in applied.items())


def payment(row: Row, home_currency: str | None) -> Payment | Quarantined:
    try:
        total = _required(row, "TotalAmt", _money)
        return Payment(
            id=_required(row, "Id", _ident),
            customer_id=_optional(row, "CustomerRef.value", _ident),
            date=_required(row, "TxnDate", _day),
            currency=_doc_currency(row, home_currency),
            amount=total,
            unapplied=_required(row, "UnappliedAmt", _money),
            status=DocStatus.VOIDED if _voided(row, total) else DocStatus.ACTIVE,
            allocations=_allocations(row),
            updated_at=_updated(row),
        )
    except _Unreadable as err:
        return _quarantine(Kind.PAYMENT, row, err)


def credit(row: Row, home_currency: str | None) -> Credit | Quarantined:
    try:
        total = _required(row, "TotalAmt", _money)
        remaining = _optional(row, "RemainingCredit", _money)
        if remaining is None:
            remaining = _required(row, "Balance", _money)
        return Credit(
            id=_required(row, "Id", _ident),
            number=_optional(row, "DocNumber", _text) or None,
            customer_id=_optional(row, "CustomerRef.value", _ident),
            date=_required(row, "TxnDate", _day),
            currency=_doc_currency(row, home_currency),
            total=total,
            remaining=remaining,
            status=DocStatus.VOIDED if _voided(row, total) else DocStatus.ACTIVE,
            # QBO applies a credit memo through Payment lines: those carry the allocations.
            allocations=(),
            updated_at=_updated(row),
        )
    except _Unreadable as err:
        return _quarantine(Kind.CREDIT, row, err)


def deleted(entity: str, row: Row) -> Deleted | Quarantined:
    """A CDC row with `"status": "Deleted"` (it carries only Id and MetaData.LastUpdatedTime)."""
    kind = KIND_OF[entity]
    try:
        ident = _required(row, "Id", _ident)
    except _Unreadable as err:
        return _quarantine(kind, row, err)
    try:
        at = _optional(row, "MetaData.LastUpdatedTime", _moment)
    except _Unreadable:
        at = None  # when it went matters less than that it went
    return Deleted(kind, ident, at=at)


def is_deleted(row: Row) -> bool:
    return row.get("status") == "Deleted"


def record(
    entity: str, row: Row, home_currency: str | None, types: Mapping[str, str] | None = None
) -> Item:
    """Any row of `entity` (a CDC row may be a deletion): a Record, Deleted or Quarantined.
    `types`: the company's customer type names by Id, for customers."""
    if is_deleted(row):
        return deleted(entity, row)
    kind = KIND_OF[entity]
    if kind is Kind.CUSTOMER:
        return customer(row, types)
    if kind is Kind.INVOICE:
        return invoice(row, home_currency)
    if kind is Kind.PAYMENT:
        return payment(row, home_currency)
    return credit(row, home_currency)


def home_currency_of(preferences: Row | None) -> str | None:
    """`CurrencyPrefs.HomeCurrency.value` of a Preferences row, None when it is not there."""
    if preferences is None:
        return None
    try:
        return _optional(preferences, "CurrencyPrefs.HomeCurrency.value", _currency)
    except _Unreadable:
        return None


def country_of(info: Row) -> str | None:
    """The company's country as an ISO 3166 alpha-2 code (CompanyInfo.Country, else its
    address's), None when QBO gives none that is one."""
    for path in ("Country", "CompanyAddr.Country", "LegalAddr.Country"):
        try:
            value = _optional(info, path, _text)
        except _Unreadable:
            continue
        if value is not None and len(value.strip()) == 2 and value.strip().isalpha():
            return value.strip().upper()
    return None


def region_of(info: Row) -> str | None:
    """The company's state or region (CompanyAddr.CountrySubDivisionCode), when given."""
    try:
        value = _optional(info, "CompanyAddr.CountrySubDivisionCode", _text)
    except _Unreadable:
        return None
    value = value.strip() if value else None
    return value[:100] if value else None


# -- what the writer reads back --------------------------------------------------------------------
def _email_delivery(row: Row) -> tuple[datetime, str] | None:
    """(when, DeliveryTime as QBO wrote it) of the invoice's last email: its DeliveryInfo when
    that says Email; None when it has none (never emailed, or last delivered otherwise)."""
    if _optional(row, "DeliveryInfo.DeliveryType", _text) != "Email":
        return None
    written = _required(row, "DeliveryInfo.DeliveryTime", _text)
    return _moment("DeliveryInfo.DeliveryTime", written), written


def _bill_email(row: Row) -> str | None:
    address = _optional(row, "BillEmail.Address", _text)
    return (address.strip() or None) if address else None


def fresh_invoice(row: Row, home_currency: str | None) -> FreshInvoice | Quarantined:
    """An Invoice row as the writer's fresh read: the invoice, where QBO would email it now
    (BillEmail) and when it last emailed it (DeliveryInfo of type Email)."""
    made = invoice(row, home_currency)
    if isinstance(made, Quarantined):
        return made
    try:
        delivered = _email_delivery(row)
        return FreshInvoice(
            invoice=made,
            bill_email=_bill_email(row),
            delivered_at=delivered[0] if delivered else None,
        )
    except _Unreadable as err:
        return _quarantine(Kind.INVOICE, row, err)


def lacks_currency(row: Row) -> bool:
    """Whether an Invoice row leaves CurrencyRef out (so it is in the home currency)."""
    try:
        return _get(row, "CurrencyRef.value") is None
    except _Unreadable:
        return False


def sent_email(row: Row, send_to: str | None = None) -> FoundEmail | None:
    """QBO's evidence of its last email of an invoice, from the Invoice row (a send's reply or
    a later read): None when its DeliveryInfo records no email. `send_to`: where the send was
    addressed, for a reply that does not say (QBO writes `sendTo` into BillEmail)."""
    try:
        delivered = _email_delivery(row)
        if delivered is None:
            return None
        status = _optional(row, "EmailStatus", _text) or "NotSet"
        to = _bill_email(row) or send_to
    except _Unreadable as err:
        raise DataError(f"QuickBooks invoice {_row_id(row) or '?'}: {err}") from None
    at, written = delivered
    return FoundEmail(
        at=at,
        to=to,
        evidence=(
            f"QuickBooks EmailStatus {status}, DeliveryInfo Email at {written}"
            + (f" to {to}" if to else "")
        ),
    )


def attachable_note(row: Row, entity: str = "Invoice") -> tuple[FoundNote, tuple[str, ...]] | None:
    """(the note, the ids of the `entity` objects it is linked to) of an Attachable row; None
    for an attachable with no note text (a file). An attachable that cannot be read is a
    DataError: taken for absent, it could have a note written twice."""
    try:
        text = _optional(row, "Note", _text)
        if not text:
            return None
        refs = _get(row, "AttachableRef") or []
        if not isinstance(refs, list):
            raise _Unreadable("AttachableRef: not a list")
        linked: list[str] = []
        for n, ref in enumerate(refs):
            if not isinstance(ref, Mapping):
                raise _Unreadable(f"AttachableRef[{n}]: not an object")
            within = f"AttachableRef[{n}]."
            kind = _optional(ref, "EntityRef.type", _text)
            if kind is not None and kind.lower() == entity.lower():
                linked.append(_required(ref, "EntityRef.value", _ident, within))
        ident = _optional(row, "Id", _ident)
    except _Unreadable as err:
        raise DataError(f"QuickBooks attachable {_row_id(row) or '?'}: {err}") from None
    try:
        at = _optional(row, "MetaData.CreateTime", _moment)
    except _Unreadable:
        at = None  # that the note is there matters more than when it came
    return FoundNote(text=text, at=at, ref=ident), tuple(dict.fromkeys(linked))
