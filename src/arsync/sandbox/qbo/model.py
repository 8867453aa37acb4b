"""QBO entities of one company: compact typed records, rendered to Intuit's JSON on demand."""

from __future__ import annotations

import gc
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from arsync.sandbox.books import Books, GenLine
from arsync.sandbox.qbo import prefs

CENT = Decimal("0.01")
ZERO = Decimal("0.00")

#: QBO's stock terms ("Net 30" etc.); other terms get ids as they are first used.
_TERMS = {0: ("1", "Due on receipt"), 15: ("2", "Net 15"), 30: ("3", "Net 30"), 60: ("4", "Net 60")}

CURRENCY_NAMES = {
    "USD": "United States Dollar",
    "GBP": "British Pound Sterling",
    "EUR": "Euro",
    "CAD": "Canadian Dollar",
}


#: the largest amount the sandbox takes (our bound: Intuit documents none); larger is refused
MAX_AMOUNT = Decimal("999999999999.99")


def money(value: Decimal | str | int) -> Decimal:
    """An exact amount in cents; NaN, infinities and amounts beyond MAX_AMOUNT are refused."""
    try:
        raw = Decimal(value)
        if not raw.is_finite() or abs(raw) > MAX_AMOUNT:
            raise ValueError(f"not an amount: {value!r}")
        return raw.quantize(CENT, ROUND_HALF_UP)
    except (InvalidOperation, ValueError, TypeError, ArithmeticError) as err:
        raise ValueError(f"not an amount: {value!r}") from err


# -- records -----------------------------------------------------------------------------------
@dataclass(slots=True)
class Line:
    description: str
    qty: Decimal
    unit_price: Decimal
    amount: Decimal

    @classmethod
    def of(cls, gen: GenLine) -> Line:
        return cls(gen.description, gen.quantity, gen.unit_price, gen.amount)  # already in cents


@dataclass(slots=True)
class Customer:
    id: int
    sync: int
    display_name: str
    company_name: str
    given_name: str
    family_name: str
    email: str | None
    phone: str | None
    city: str
    currency: str
    created: datetime
    updated: datetime
    active: bool = True
    balance: Decimal = ZERO
    notes: str = ""
    #: the billing address's Country and CountrySubDivisionCode, free text as a person typed
    #: them ("" leaves the field out)
    country: str = "USA"
    region: str = "CA"
    #: the CustomerType a bookkeeper gave the customer in QuickBooks (None: no type)
    type_id: int | None = None


@dataclass(slots=True)
class CustomerType:
    """A customer type: read and queried through the API, never written there (as in QBO);
    the control plane makes and changes them as a person does in QuickBooks."""

    id: int
    sync: int
    name: str
    active: bool
    created: datetime
    updated: datetime


@dataclass(slots=True)
class Invoice:
    id: int
    sync: int
    doc_number: str
    txn_date: date
    due_date: date
    customer_id: int
    currency: str
    lines: list[Line]
    total: Decimal
    balance: Decimal
    term: tuple[str, str]
    created: datetime
    updated: datetime
    email_status: str = "NotSet"
    bill_email: str | None = None
    delivery_time: datetime | None = None
    private_note: str = ""
    customer_memo: str | None = None
    linked: list[tuple[int, str]] = field(default_factory=list)


@dataclass(slots=True)
class PaymentLine:
    amount: Decimal
    txn_id: int
    txn_type: str  # "Invoice" | "CreditMemo"


@dataclass(slots=True)
class Payment:
    id: int
    sync: int
    txn_date: date
    customer_id: int
    currency: str
    total: Decimal
    unapplied: Decimal
    lines: list[PaymentLine]
    reference: str
    created: datetime
    updated: datetime


@dataclass(slots=True)
class CreditMemo:
    id: int
    sync: int
    doc_number: str
    txn_date: date
    customer_id: int
    currency: str
    lines: list[Line]
    total: Decimal
    remaining: Decimal
    created: datetime
    updated: datetime
    private_note: str = ""


@dataclass(slots=True)
class Attachable:
    id: int
    sync: int
    note: str
    refs: list[dict[str, Any]]
    created: datetime
    updated: datetime


@dataclass(slots=True)
class CompanyObject:
    """One of the objects a company has exactly one of (Preferences, CompanyInfo)."""

    id: int
    sync: int
    created: datetime
    updated: datetime


@dataclass(slots=True)
class Tombstone:
    entity: str
    id: int
    deleted_at: datetime


Record = Customer | Invoice | Payment | CreditMemo | Attachable | CompanyObject | CustomerType

#: Entity names as QBO spells them, by lower-case name.
ENTITIES = {
    "invoice": "Invoice",
    "customer": "Customer",
    "payment": "Payment",
    "creditmemo": "CreditMemo",
    "attachable": "Attachable",
}
#: Objects a company has one of: read (GET /preferences, /companyinfo/{id}) and queried, never
#: written, and not in ENTITIES (which also drives CDC, batch and writes).
SINGLETONS = {"preferences": "Preferences", "companyinfo": "CompanyInfo"}
#: Entities the API reads (GET /{entity}/{id}) and queries but never creates or changes: a
#: write is QBO's "Unsupported Operation". Not in ENTITIES, so neither CDC nor batch writes them.
READ_ONLY = {"customertype": "CustomerType"}


# -- JSON --------------------------------------------------------------------------------------
_NUM_MARK = "\x00"


def _default(obj: object) -> str:
    if isinstance(obj, Decimal):
        # Marked, then unquoted below: json cannot write a Decimal as a number by itself.
        return f"{_NUM_MARK}{obj}{_NUM_MARK}"
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def num(value: Decimal) -> str:
    """An amount as rendered: marked text that `dumps` turns into a bare JSON number.

    Marking here rather than in a `default` hook keeps json's C encoder on its fast path
    (a page of 1000 invoices holds some 15,000 amounts).
    """
    return f"{_NUM_MARK}{value}{_NUM_MARK}"


ZERO_NUM = num(ZERO)
ONE = num(Decimal(1))


def dumps(obj: Any) -> bytes:
    """JSON with Decimal amounts written as numbers exactly as held (e.g. 150.00)."""
    text = json.dumps(obj, default=_default, separators=(",", ":"))
    # Plain replaces are several times faster than a regex over a 1.5 MB page; they are safe
    # because no stored text contains a NUL (clean_text, and the API refuses them).
    return text.replace('"\\u0000', "").replace('\\u0000"', "").encode()


def clean_text(value: object, limit: int | None = None) -> str:
    """Client text as stored: NULs removed (they would collide with the number marker)."""
    text = str(value).replace(_NUM_MARK, "")
    return text if limit is None else text[:limit]


# -- the company -------------------------------------------------------------------------------
class Company:
    """One realm: its entities, deletion tombstones and per-realm memories."""

    def __init__(self, books: Books) -> None:
        self.realm = books.tenant_id
        self.name = books.company_name
        self.currency = books.base_currency
        self.country = books.country
        self.timezone = books.timezone
        self.tz = ZoneInfo(books.timezone)
        self.customers: dict[int, Customer] = {}
        self.invoices: dict[int, Invoice] = {}
        self.payments: dict[int, Payment] = {}
        self.credits: dict[int, CreditMemo] = {}
        self.attachables: dict[int, Attachable] = {}
        self.customer_types: dict[int, CustomerType] = {}
        self.next_customer_type = 1
        self.tombstones: list[Tombstone] = []
        self.next_txn = 1
        self.next_customer = 1
        self.next_attachable = 5_000_000_000_000_000_001  # QBO attachable ids are this long
        self.next_doc = 1001
        self.version = 0
        self.query_cache: dict[tuple[Any, ...], list[Any]] = {}
        self.emails_by_day: dict[date, int] = {}
        self.replays: dict[str, tuple[datetime, int, bytes, str]] = {}
        self.extra_terms: dict[int, tuple[str, str]] = {}
        #: ItemRef per line description, numbered as first seen, so lines look like a real item list
        self.items: dict[str, dict[str, str]] = {}
        self.item_count = 0
        # The company's own objects, made a month before its oldest customer. Tests may change
        # the preferences below (under sandbox.lock) to try other companies.
        first = min((c.created_at for c in books.customers), default=books.now)
        created = (first - timedelta(days=30)).replace(microsecond=0)
        self.preferences = CompanyObject(1, 0, created, created)
        self.info = CompanyObject(1, 0, created, created)
        self.multi_currency = len({c.currency for c in books.customers}) > 1
        self.custom_txn_numbers = False
        # Hundreds of thousands of new objects would trigger the cyclic collector over and over
        # (most of the load time for a large company); none of them form cycles.
        enabled = gc.isenabled()
        gc.disable()
        try:
            self._load(books)
        finally:
            if enabled:
                gc.enable()

    # -- helpers ---------------------------------------------------------------------------------
    def table(self, entity: str) -> dict[int, Any]:
        tables: dict[str, dict[int, Any]] = {
            "Invoice": self.invoices,
            "Customer": self.customers,
            "Payment": self.payments,
            "CreditMemo": self.credits,
            "Attachable": self.attachables,
            "CustomerType": self.customer_types,
        }
        return tables[entity]

    def touched(self) -> None:
        self.version += 1
        if self.query_cache:
            self.query_cache.clear()

    def txn_id(self) -> int:
        value = self.next_txn
        self.next_txn += 1
        return value

    def term_for(self, days: int) -> tuple[str, str]:
        if days in _TERMS:
            return _TERMS[days]
        if days not in self.extra_terms:
            self.extra_terms[days] = (str(10 + len(self.extra_terms)), f"Net {days}")
        return self.extra_terms[days]

    def item_ref(self, description: str) -> dict[str, str]:
        ref = self.items.get(description)
        if ref is None:
            base = description.removeprefix("Credit: ")
            ref = self.items.get(base)
            if ref is None:
                self.item_count += 1
                ref = {"value": str(self.item_count), "name": base}
                self.items[base] = ref
            self.items[description] = ref
        return ref

    def local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.tz).date()

    def fmt(self, moment: datetime) -> str:
        return moment.astimezone(self.tz).isoformat(timespec="seconds")

    def stamp(self, moment: datetime) -> str:
        """The "time" of a response: company-local with milliseconds, as Intuit writes it."""
        return moment.astimezone(self.tz).isoformat(timespec="milliseconds")

    # -- loading -------------------------------------------------------------------------------
    def _load(self, books: Books) -> None:
        now = books.now
        for person in books.customers:
            self.customers[person.key] = Customer(
                id=person.key,
                sync=0,
                display_name=person.name,
                company_name=person.name,
                given_name=person.contact_first,
                family_name=person.contact_last,
                email=person.email,
                phone=person.phone,
                city=person.city,
                currency=person.currency,
                created=min(now, person.created_at),
                updated=min(now, person.created_at),
                active=person.active,
            )
        self.next_customer = len(books.customers) + 1
        by_key: dict[int, Invoice] = {}
        for gi in books.invoices:
            if gi.is_bill or gi.state == "draft":
                continue  # QBO books carry neither; QBO has no draft invoices
            cust = self.customers[gi.customer_key]
            # The generator picks a time of day for today's invoices that may lie ahead of now.
            created = min(now, gi.created_at)
            lines = [Line.of(line) for line in gi.lines]
            total = sum((line.amount for line in lines), ZERO)
            applied = sum((p.amount for p in gi.payments), ZERO) + sum(gi.credits.values(), ZERO)
            inv = Invoice(
                id=self.txn_id(),
                sync=0,
                doc_number=gi.number,
                txn_date=gi.issued_on,
                due_date=gi.due_on,
                customer_id=cust.id,
                currency=gi.currency,
                lines=lines,
                total=total,
                balance=total - applied,
                term=self.term_for(gi.terms_days),
                created=created,
                updated=created,
                bill_email=cust.email,
            )
            if gi.sent and cust.email:
                inv.email_status = "EmailSent"
                inv.delivery_time = min(now, created + timedelta(minutes=4))
                inv.updated = inv.delivery_time
            if gi.state == "void":
                self._zero_for_void(inv)
                inv.sync = 1
                inv.updated = min(now, max(inv.updated, gi.voided_at or inv.updated))
            by_key[gi.key] = inv
            self.invoices[inv.id] = inv
            digits = gi.number.removeprefix("INV-")
            if digits.isdigit():
                self.next_doc = max(self.next_doc, int(digits) + 1)
        for gcm in books.credits:
            created = min(now, _at_local(gcm.issued_on, time(11, 5), self.tz, gcm.key))
            cm = CreditMemo(
                id=self.txn_id(),
                sync=0,
                doc_number=gcm.number,
                txn_date=gcm.issued_on,
                customer_id=gcm.customer_key,
                currency=gcm.currency,
                lines=[Line.of(line) for line in gcm.lines],
                total=money(gcm.total),
                remaining=money(gcm.remaining),
                created=created,
                updated=created,
            )
            self.credits[cm.id] = cm
            for inv_key, amount in gcm.allocations.items():
                inv = by_key[inv_key]
                self._credit_application(inv, cm, money(amount), created, gcm.issued_on)
        for gp in books.payments:
            inv = by_key[gp.invoice_key]
            created = min(now, _at_local(gp.paid_on, time(9, 30), self.tz, gp.key))
            pay = Payment(
                id=self.txn_id(),
                sync=0,
                txn_date=gp.paid_on,
                customer_id=gp.customer_key,
                currency=gp.currency,
                total=money(gp.amount),
                unapplied=ZERO,
                lines=[PaymentLine(money(gp.amount), inv.id, "Invoice")],
                reference=gp.reference,
                created=created,
                updated=created,
            )
            self.payments[pay.id] = pay
            inv.linked.append((pay.id, "Payment"))
            inv.sync += 1
            inv.updated = max(inv.updated, created)
        for inv in self.invoices.values():
            self.customers[inv.customer_id].balance += inv.balance
        for cm in self.credits.values():
            self.customers[cm.customer_id].balance -= cm.remaining

    def _credit_application(
        self, inv: Invoice, cm: CreditMemo, amount: Decimal, at: datetime, day: date
    ) -> Payment:
        """QBO applies a credit memo through a payment of zero: one line each way."""
        pay = Payment(
            id=self.txn_id(),
            sync=0,
            txn_date=day,
            customer_id=inv.customer_id,
            currency=inv.currency,
            total=ZERO,
            unapplied=ZERO,
            lines=[
                PaymentLine(amount, inv.id, "Invoice"),
                PaymentLine(amount, cm.id, "CreditMemo"),
            ],
            reference="",
            created=at,
            updated=at,
        )
        self.payments[pay.id] = pay
        inv.linked.append((pay.id, "Payment"))
        inv.sync += 1
        inv.updated = max(inv.updated, at)
        return pay

    @staticmethod
    def _zero_for_void(inv: Invoice) -> None:
        # A voided QBO invoice keeps its lines but every amount becomes zero.
        for line in inv.lines:
            line.amount = ZERO
            line.qty = Decimal(0)
        inv.total = ZERO
        inv.balance = ZERO
        inv.private_note = "Voided"

    # -- rendering -----------------------------------------------------------------------------
    def render(self, entity: str, rec: Any) -> dict[str, Any]:
        renderers: dict[str, Callable[[Any], dict[str, Any]]] = {
            "Invoice": self.render_invoice,
            "Customer": self.render_customer,
            "Payment": self.render_payment,
            "CreditMemo": self.render_credit,
            "Attachable": self.render_attachable,
            "CustomerType": self.render_customer_type,
            "Preferences": lambda _rec: prefs.preferences_json(self),
            "CompanyInfo": lambda _rec: prefs.company_info_json(self),
        }
        return renderers[entity](rec)

    def _meta(self, rec: Record) -> dict[str, str]:
        return {"CreateTime": self.fmt(rec.created), "LastUpdatedTime": self.fmt(rec.updated)}

    def _currency(self, code: str) -> dict[str, str]:
        return {"value": code, "name": CURRENCY_NAMES.get(code, code)}

    def _customer_ref(self, customer_id: int) -> dict[str, str]:
        cust = self.customers.get(customer_id)
        return {"value": str(customer_id), "name": cust.display_name if cust else ""}

    def _addr(self, cust: Customer) -> dict[str, str]:
        addr = {
            "Id": str(cust.id + 100),
            "Line1": f"{100 + cust.id * 7 % 900} {cust.city} Avenue",
            "City": cust.city,
        }
        if cust.country:
            addr["Country"] = cust.country
        if cust.region:
            addr["CountrySubDivisionCode"] = cust.region
        addr["PostalCode"] = f"9{cust.id % 10000:04d}"
        return addr

    def _lines(self, lines: list[Line]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        subtotal = ZERO
        for n, line in enumerate(lines, start=1):
            subtotal += line.amount
            out.append(
                {
                    "Id": str(n),
                    "LineNum": n,
                    "Description": line.description,
                    "Amount": num(line.amount),
                    "DetailType": "SalesItemLineDetail",
                    "SalesItemLineDetail": {
                        "ItemRef": self.item_ref(line.description),
                        "UnitPrice": num(line.unit_price),
                        "Qty": num(line.qty),
                        "TaxCodeRef": {"value": "NON"},
                    },
                }
            )
        out.append(
            {"Amount": num(subtotal), "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}
        )
        return out

    def render_invoice(self, inv: Invoice) -> dict[str, Any]:
        cust = self.customers.get(inv.customer_id)
        body: dict[str, Any] = {
            "AllowIPNPayment": False,
            "AllowOnlinePayment": False,
            "AllowOnlineCreditCardPayment": False,
            "AllowOnlineACHPayment": False,
            "domain": "QBO",
            "sparse": False,
            "Id": str(inv.id),
            "SyncToken": str(inv.sync),
            "MetaData": self._meta(inv),
            "CustomField": [],
            "DocNumber": inv.doc_number,
            "TxnDate": inv.txn_date.isoformat(),
            "CurrencyRef": self._currency(inv.currency),
            "ExchangeRate": ONE,
            "PrivateNote": inv.private_note,
            "LinkedTxn": [{"TxnId": str(i), "TxnType": t} for i, t in inv.linked],
            "Line": self._lines(inv.lines),
            "TxnTaxDetail": {"TotalTax": ZERO_NUM},
            "CustomerRef": self._customer_ref(inv.customer_id),
            "SalesTermRef": {"value": inv.term[0], "name": inv.term[1]},
            "DueDate": inv.due_date.isoformat(),
            "TotalAmt": num(inv.total),
            "HomeTotalAmt": num(inv.total),
            "ApplyTaxAfterDiscount": False,
            "PrintStatus": "NotSet",
            "EmailStatus": inv.email_status,
            "Balance": num(inv.balance),
            "HomeBalance": num(inv.balance),
            "Deposit": ZERO_NUM,
        }
        if cust is not None:
            body["BillAddr"] = self._addr(cust)
        if inv.bill_email:
            body["BillEmail"] = {"Address": inv.bill_email}
        if inv.delivery_time is not None:
            body["DeliveryInfo"] = {
                "DeliveryType": "Email",
                "DeliveryTime": self.fmt(inv.delivery_time),
            }
        if inv.customer_memo:
            body["CustomerMemo"] = {"value": inv.customer_memo}
        return body

    def render_customer(self, cust: Customer) -> dict[str, Any]:
        body: dict[str, Any] = {
            "Taxable": False,
            "BillAddr": self._addr(cust),
            "Job": False,
            "BillWithParent": False,
            "Balance": num(cust.balance),
            "BalanceWithJobs": num(cust.balance),
            "CurrencyRef": self._currency(cust.currency),
            "PreferredDeliveryMethod": "Email" if cust.email else "Print",
            "IsProject": False,
            "domain": "QBO",
            "sparse": False,
            "Id": str(cust.id),
            "SyncToken": str(cust.sync),
            "MetaData": self._meta(cust),
            "GivenName": cust.given_name,
            "FamilyName": cust.family_name,
            "FullyQualifiedName": cust.display_name,
            "CompanyName": cust.company_name,
            "DisplayName": cust.display_name,
            "PrintOnCheckName": cust.company_name,
            "Active": cust.active,
        }
        if cust.phone:
            body["PrimaryPhone"] = {"FreeFormNumber": cust.phone}
        if cust.email:
            body["PrimaryEmailAddr"] = {"Address": cust.email}
        if cust.notes:
            body["Notes"] = cust.notes
        if cust.type_id is not None:
            # QBO writes the reference with its value only, and only when a type is assigned.
            body["CustomerTypeRef"] = {"value": str(cust.type_id)}
        return body

    def render_customer_type(self, ctype: CustomerType) -> dict[str, Any]:
        return {
            "Name": ctype.name,
            "Active": ctype.active,
            "domain": "QBO",
            "sparse": False,
            "Id": str(ctype.id),
            "SyncToken": str(ctype.sync),
            "MetaData": self._meta(ctype),
        }

    def render_payment(self, pay: Payment) -> dict[str, Any]:
        return {
            "CustomerRef": self._customer_ref(pay.customer_id),
            "TotalAmt": num(pay.total),
            "UnappliedAmt": num(pay.unapplied),
            "ProcessPayment": False,
            "domain": "QBO",
            "sparse": False,
            "Id": str(pay.id),
            "SyncToken": str(pay.sync),
            "MetaData": self._meta(pay),
            "TxnDate": pay.txn_date.isoformat(),
            "CurrencyRef": self._currency(pay.currency),
            "ExchangeRate": ONE,
            "PaymentRefNum": pay.reference,
            "Line": [
                {
                    "Amount": num(line.amount),
                    "LinkedTxn": [{"TxnId": str(line.txn_id), "TxnType": line.txn_type}],
                }
                for line in pay.lines
            ],
        }

    def render_credit(self, cm: CreditMemo) -> dict[str, Any]:
        return {
            "RemainingCredit": num(cm.remaining),
            "domain": "QBO",
            "sparse": False,
            "Id": str(cm.id),
            "SyncToken": str(cm.sync),
            "MetaData": self._meta(cm),
            "CustomField": [],
            "DocNumber": cm.doc_number,
            "TxnDate": cm.txn_date.isoformat(),
            "CurrencyRef": self._currency(cm.currency),
            "ExchangeRate": ONE,
            "PrivateNote": cm.private_note,
            "Line": self._lines(cm.lines),
            "TxnTaxDetail": {"TotalTax": ZERO_NUM},
            "CustomerRef": self._customer_ref(cm.customer_id),
            "TotalAmt": num(cm.total),
            "HomeTotalAmt": num(cm.total),
            "ApplyTaxAfterDiscount": False,
            "PrintStatus": "NotSet",
            "EmailStatus": "NotSet",
            "Balance": num(cm.remaining),
        }

    def render_attachable(self, att: Attachable) -> dict[str, Any]:
        return {
            "Note": att.note,
            "domain": "QBO",
            "sparse": False,
            "Id": str(att.id),
            "SyncToken": str(att.sync),
            "MetaData": self._meta(att),
            "AttachableRef": att.refs,
        }

    # -- query fields ----------------------------------------------------------------------------
    def getter(self, entity: str) -> Callable[[Any, str], Any]:
        fields = _FIELDS[entity]

        def get(rec: Any, name: str) -> Any:
            return fields[name.lower()](self, rec)

        return get

    def probe(self, entity: str) -> Callable[[str], None]:
        fields = _FIELDS[entity]

        def check(name: str) -> None:
            if name.lower() not in fields:
                raise KeyError(name)

        return check

    def rows(self, entity: str) -> Iterable[Any]:
        if entity == "Preferences":
            return (self.preferences,)
        if entity == "CompanyInfo":
            return (self.info,)
        return self.table(entity).values()


def _at_local(day: date, at: time, tz: ZoneInfo, salt: int) -> datetime:
    minutes = (salt * 37) % 300
    return (datetime.combine(day, at, tzinfo=tz) + timedelta(minutes=minutes)).astimezone(UTC)


_Get = Callable[[Company, Any], Any]

_COMMON: dict[str, _Get] = {
    "id": lambda c, r: r.id,
    "synctoken": lambda c, r: r.sync,
    "metadata.createtime": lambda c, r: r.created,
    "metadata.lastupdatedtime": lambda c, r: r.updated,
}
_TXN: dict[str, _Get] = {
    **_COMMON,
    "txndate": lambda c, r: r.txn_date,
    "customerref": lambda c, r: str(r.customer_id),
    "customerref.value": lambda c, r: str(r.customer_id),
    "currencyref": lambda c, r: r.currency,
    "totalamt": lambda c, r: r.total,
    "hometotalamt": lambda c, r: r.total,
}
_FIELDS: dict[str, dict[str, _Get]] = {
    "Invoice": {
        **_TXN,
        "docnumber": lambda c, r: r.doc_number,
        "duedate": lambda c, r: r.due_date,
        "balance": lambda c, r: r.balance,
        "homebalance": lambda c, r: r.balance,
        "emailstatus": lambda c, r: r.email_status,
        "billemail": lambda c, r: r.bill_email,
        "billemail.address": lambda c, r: r.bill_email,
        "privatenote": lambda c, r: r.private_note,
        "salestermref": lambda c, r: r.term[0],
        "printstatus": lambda c, r: "NotSet",
    },
    "Customer": {
        **_COMMON,
        "displayname": lambda c, r: r.display_name,
        "companyname": lambda c, r: r.company_name,
        "givenname": lambda c, r: r.given_name,
        "familyname": lambda c, r: r.family_name,
        "fullyqualifiedname": lambda c, r: r.display_name,
        "primaryemailaddr": lambda c, r: r.email,
        "primaryemailaddr.address": lambda c, r: r.email,
        "active": lambda c, r: r.active,
        "balance": lambda c, r: r.balance,
        "currencyref": lambda c, r: r.currency,
        "customertyperef": lambda c, r: None if r.type_id is None else str(r.type_id),
    },
    "CustomerType": {
        **_COMMON,
        "name": lambda c, r: r.name,
        "active": lambda c, r: r.active,
    },
    "Payment": {
        **_TXN,
        "unappliedamt": lambda c, r: r.unapplied,
        "paymentrefnum": lambda c, r: r.reference,
    },
    "CreditMemo": {
        **_TXN,
        "docnumber": lambda c, r: r.doc_number,
        "remainingcredit": lambda c, r: r.remaining,
        "balance": lambda c, r: r.remaining,
    },
    "Preferences": {
        **_COMMON,
        "currencyprefs.homecurrency": lambda c, r: c.currency,
        "currencyprefs.multicurrencyenabled": lambda c, r: c.multi_currency,
    },
    "CompanyInfo": {
        **_COMMON,
        "companyname": lambda c, r: c.name,
        "legalname": lambda c, r: c.name,
        "country": lambda c, r: c.country,
    },
    "Attachable": {
        **_COMMON,
        "note": lambda c, r: r.note,
        "attachableref.entityref.type": lambda c, r: [x["EntityRef"]["type"] for x in r.refs],
        "attachableref.entityref.value": lambda c, r: [x["EntityRef"]["value"] for x in r.refs],
        "attachableref.entityref": lambda c, r: [x["EntityRef"]["value"] for x in r.refs],
    },
}
