"""One Xero organisation's books: contacts, invoices, payments, credit notes, history, events."""

from __future__ import annotations

import gc
import random
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from datetime import date as Day
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from arsync.sandbox.books import Books, GenLine

if TYPE_CHECKING:
    from arsync.sandbox.core import XeroLimits

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
ONE_QTY = Decimal("1.0000")
#: base GBP; Xero's CurrencyRate is units of the invoice currency per unit of the base currency
RATES = {"GBP": Decimal("1.000000"), "EUR": Decimal("1.160000"), "USD": Decimal("1.270000")}
SALES_ACCOUNT = "200"
BANK_ACCOUNT = {"AccountID": "", "Code": "090"}  # AccountID filled per organisation

#: Organisation.Timezone for the IANA zones an organisation may live in: the Windows zone id
#: (CLDR's windowsZones table) upper-cased with spaces, dots and hyphens removed, as Xero writes it.
#: Every value is one of the OpenAPI file's `TimeZone` enum; other zones need the `organisation`
#: event's `timezone`.
XERO_TIMEZONES = {
    "Africa/Johannesburg": "SOUTHAFRICASTANDARDTIME",
    "America/Chicago": "CENTRALSTANDARDTIME",
    "America/Denver": "MOUNTAINSTANDARDTIME",
    "America/Los_Angeles": "PACIFICSTANDARDTIME",
    "America/New_York": "EASTERNSTANDARDTIME",
    "America/Phoenix": "USMOUNTAINSTANDARDTIME",
    "America/Toronto": "EASTERNSTANDARDTIME",
    "Asia/Singapore": "SINGAPORESTANDARDTIME",
    "Australia/Brisbane": "EAUSTRALIASTANDARDTIME",
    "Australia/Perth": "WAUSTRALIASTANDARDTIME",
    "Australia/Sydney": "AUSEASTERNSTANDARDTIME",
    "Europe/Berlin": "WEUROPESTANDARDTIME",
    "Europe/Dublin": "GMTSTANDARDTIME",
    "Europe/London": "GMTSTANDARDTIME",
    "Europe/Paris": "ROMANCESTANDARDTIME",
    "Pacific/Auckland": "NEWZEALANDSTANDARDTIME",
    "UTC": "UTC",
}


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, ROUND_HALF_UP)


def parse_money(raw: Any, what: str) -> Decimal:
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError) as err:
        raise ValueError(f'{what} must be a decimal amount like "12.50", not {raw!r}') from err
    if not value.is_finite() or value <= 0:
        raise ValueError(f"{what} must be a positive amount, not {raw!r}")
    if value != money(value):
        raise ValueError(f"{what} has more than two decimals: {raw!r}")
    return money(value)


def parse_day(raw: Any, what: str) -> date:
    try:
        return date.fromisoformat(str(raw))
    except ValueError as err:
        raise ValueError(f"{what} must be an ISO date like 2026-11-30, not {raw!r}") from err


@dataclass(slots=True, frozen=True)
class ContactPerson:
    """One of a contact's people; Xero emails invoices to those with IncludeInEmails."""

    first_name: str
    last_name: str
    email: str | None
    include_in_emails: bool


@dataclass(slots=True)
class Contact:
    contact_id: str
    name: str
    first_name: str
    last_name: str
    email: str | None
    phone: str | None
    city: str
    currency: str
    updated: datetime
    status: str = "ACTIVE"
    is_customer: bool = True
    is_supplier: bool = False
    persons: tuple[ContactPerson, ...] = ()
    #: the billing (POBOX) address's Country and Region, free text as a person typed them
    country: str = "United Kingdom"
    region: str = ""

    def email_recipients(self) -> list[str]:
        """Where Xero sends an emailed invoice: the contact's own address and every contact
        person marked IncludeInEmails (an invoice can go out with either alone)."""
        people = [p.email for p in self.persons if p.include_in_emails and p.email]
        return list(dict.fromkeys(([self.email] if self.email else []) + people))


#: the most contact groups an organisation may have (Xero's own message names 100)
MAX_CONTACT_GROUPS = 100
#: ContactGroup.Name (Xero documents no length: 255 is the sandbox's bound)
GROUP_NAME_MAX = 255
#: Address.Country is at most 50 characters, Region 255 (the OpenAPI file's Address)
COUNTRY_MAX = 50
REGION_MAX = 255


class GroupError(ValueError):
    """A contact group change Xero refuses (answered as a ValidationException)."""


@dataclass(slots=True, eq=False)
class ContactGroup:
    """A contact group; DELETED ones are kept but no GET shows them (as the OpenAPI file says)."""

    group_id: str
    name: str
    created: datetime
    status: str = "ACTIVE"
    #: members by ContactID, in the order they joined
    members: dict[str, Contact] = field(default_factory=dict)


@dataclass(slots=True)
class Line:
    line_id: str
    description: str
    quantity: Decimal
    unit_amount: Decimal
    line_amount: Decimal


@dataclass(slots=True)
class Payment:
    payment_id: str
    invoice: Invoice
    date: Day
    amount: Decimal
    reference: str
    updated: datetime
    status: str = "AUTHORISED"

    @property
    def currency_rate(self) -> Decimal:
        return self.invoice.currency_rate

    @property
    def payment_type(self) -> str:
        return "ACCPAYPAYMENT" if self.invoice.type == "ACCPAY" else "ACCRECPAYMENT"


@dataclass(slots=True)
class Allocation:
    allocation_id: str
    credit: CreditNote
    invoice: Invoice
    amount: Decimal
    date: Day


@dataclass(slots=True)
class CreditNote:
    credit_note_id: str
    number: str
    contact: Contact
    date: Day
    lines: list[Line]
    currency: str
    currency_rate: Decimal
    updated: datetime
    allocations: list[Allocation] = field(default_factory=list)
    status: str = "AUTHORISED"
    type: str = "ACCRECCREDIT"
    reference: str = ""

    @property
    def total(self) -> Decimal:
        return money(sum((line.line_amount for line in self.lines), ZERO))

    @property
    def remaining(self) -> Decimal:
        return money(self.total - sum((a.amount for a in self.allocations), ZERO))

    def settle_status(self) -> None:
        if self.status == "AUTHORISED" and self.remaining == 0:
            self.status = "PAID"


@dataclass(slots=True)
class HistoryEntry:
    at: datetime
    changes: str
    details: str
    user: str = "System Generated"


@dataclass(slots=True)
class Invoice:
    invoice_id: str
    number: str
    type: str
    contact: Contact
    date: Day
    due_date: Day
    status: str
    lines: list[Line]
    currency: str
    currency_rate: Decimal
    created: datetime
    updated: datetime
    seq: int
    reference: str = ""
    sent: bool = False
    payments: list[Payment] = field(default_factory=list)
    allocations: list[Allocation] = field(default_factory=list)
    fully_paid_on: Day | None = None
    voided_at: datetime | None = None
    #: "Expected Date": when the customer said they would pay (sales invoices only)
    expected_payment_date: Day | None = None
    #: entries beyond those derived from the invoice's own facts (notes, emails, edits)
    extra_history: list[HistoryEntry] | None = None
    sub_total: Decimal = ZERO
    amount_paid: Decimal = ZERO
    amount_credited: Decimal = ZERO
    amount_due: Decimal = ZERO

    @property
    def total(self) -> Decimal:
        return self.sub_total  # no tax in the simulated books: TotalTax is 0.00

    def recalc(self) -> None:
        self.sub_total = money(sum((line.line_amount for line in self.lines), ZERO))
        self.amount_paid = money(
            sum((p.amount for p in self.payments if p.status == "AUTHORISED"), ZERO)
        )
        self.amount_credited = money(sum((a.amount for a in self.allocations), ZERO))
        if self.status in ("VOIDED", "DELETED"):
            self.amount_due = ZERO
        else:
            self.amount_due = money(self.sub_total - self.amount_paid - self.amount_credited)

    def add_history(self, entry: HistoryEntry) -> None:
        if self.extra_history is None:
            self.extra_history = []
        self.extra_history.append(entry)

    def history(self) -> list[HistoryEntry]:
        """Derived from the facts (created, approved, paid, credited, voided) plus the extras."""
        amount = format(self.total, "f")
        entries = [
            HistoryEntry(
                self.created,
                "Created",
                f"{self.number} to {self.contact.name} for {amount}.",
            )
        ]
        if self.status != "DRAFT":
            entries.append(
                HistoryEntry(
                    self.created + timedelta(seconds=1),
                    "Approved",
                    f"{self.number} to {self.contact.name} for {amount}.",
                )
            )
        for p in self.payments:
            entries.append(
                HistoryEntry(
                    p.updated,
                    "Payment Received",
                    f"Payment received from {self.contact.name} on "
                    f"{p.date:%d %B %Y} for {format(p.amount, 'f')}.",
                )
            )
        for a in self.allocations:
            when = datetime.combine(a.date, time(12, 0), UTC)
            entries.append(
                HistoryEntry(
                    min(max(when, self.created), a.credit.updated),
                    "Credit Applied",
                    f"Credit note {a.credit.number} applied for {format(a.amount, 'f')}.",
                )
            )
        if self.voided_at is not None:
            entries.append(HistoryEntry(self.voided_at, "Voided", f"{self.number} voided."))
        entries.extend(self.extra_history or ())
        entries.sort(key=lambda e: e.at)
        return entries


@dataclass
class IdempotentReply:
    fingerprint: str
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    at: datetime


class Organisation:
    """State of one tenant; all mutation goes through the sandbox lock held by the caller."""

    def __init__(self, books: Books) -> None:
        self.tenant_id = books.tenant_id
        self.name = books.company_name
        self.base_currency = books.base_currency
        self.country = books.country
        self.timezone = books.timezone
        self.zone = ZoneInfo(books.timezone)
        self.short_code = "!" + books.tenant_id[:5]
        # What GET /Organisation serves beyond the books; the `organisation` event changes it.
        self.xero_timezone = xero_timezone(books.timezone)
        # Multi-currency needs one of Xero's top plans: books in several currencies get one.
        several = len({c.currency for c in books.customers}) > 1
        self.org_class = "PREMIUM" if several else "STANDARD"
        self.is_demo_company = False
        first = min((c.created_at for c in books.customers), default=books.now)
        self.created = (first - timedelta(days=30)).replace(microsecond=0)
        self._ids = random.Random(f"xero-ids:{books.tenant_id}")
        self.bank_account_id = self.new_id()
        self.contacts: dict[str, Contact] = {}
        self.invoices: dict[str, Invoice] = {}
        self.invoice_by_number: dict[str, Invoice] = {}
        self.invoice_list: list[Invoice] = []
        self.payments: dict[str, Payment] = {}
        self.payment_list: list[Payment] = []
        self.credit_notes: dict[str, CreditNote] = {}
        self.credit_note_by_number: dict[str, CreditNote] = {}
        self.credit_list: list[CreditNote] = []
        self.contact_list: list[Contact] = []
        self.groups: dict[str, ContactGroup] = {}
        self.group_list: list[ContactGroup] = []
        #: the sandbox's settings for the event being applied (what the unknowns are set to)
        self._limits: XeroLimits | None = None
        #: bumped by every change; query results are cached per version
        self.version = 0
        self.query_cache: OrderedDict[Any, tuple[int, list[Any]]] = OrderedDict()
        self.emails_by_day: dict[date, int] = {}
        self.idempotency: dict[str, IdempotentReply] = {}
        self._next_invoice = 0
        self._next_credit = 0
        # Loading makes hundreds of thousands of objects that all live on; the cyclic collector
        # would rescan them again and again while they are being made.
        collecting = gc.isenabled()
        gc.disable()
        try:
            self._load(books)
        finally:
            if collecting:
                gc.enable()

    # -- ids and time -----------------------------------------------------------------------------
    def new_id(self) -> str:
        """A random (version 4) UUID from the organisation's seeded stream.

        Formatted by hand: uuid.UUID is several times slower, and a 100,000-invoice organisation
        needs a few hundred thousand ids at start.
        """
        h = f"{self._ids.getrandbits(128):032x}"
        variant = "89ab"[int(h[16], 16) & 3]
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{variant}{h[17:20]}-{h[20:]}"

    def local_today(self, now: datetime) -> date:
        return now.astimezone(self.zone).date()

    def touch(self) -> None:
        self.version += 1

    # -- loading ----------------------------------------------------------------------------------
    def _lines(self, lines: Iterable[GenLine]) -> list[Line]:
        return [
            Line(
                line_id=self.new_id(),
                description=g.description,
                quantity=g.quantity.quantize(ONE_QTY),
                unit_amount=money(g.unit_price),
                line_amount=g.amount,
            )
            for g in lines
        ]

    def _load(self, books: Books) -> None:
        now = books.now
        by_key: dict[int, Contact] = {}
        for c in books.customers:
            contact = Contact(
                contact_id=self.new_id(),
                name=c.name,
                first_name=c.contact_first,
                last_name=c.contact_last,
                email=c.email,
                phone=c.phone,
                city=c.city,
                currency=c.currency,
                updated=c.created_at,
                status="ACTIVE" if c.active else "ARCHIVED",
            )
            # Customers billed in another currency are abroad (names as people type them).
            contact.country, contact.region = _ADDRESS_BY_CURRENCY.get(
                c.currency, ("United Kingdom", "")
            )
            by_key[c.key] = contact
            self.contacts[contact.contact_id] = contact
            self.contact_list.append(contact)
        invoices: dict[int, Invoice] = {}
        for g in books.invoices:
            contact = by_key[g.customer_key]
            status = {"draft": "DRAFT", "void": "VOIDED"}.get(g.state, "AUTHORISED")
            inv = Invoice(
                invoice_id=self.new_id(),
                number=g.number,
                type="ACCPAY" if g.is_bill else "ACCREC",
                contact=contact,
                date=g.issued_on,
                due_date=g.due_on,
                status=status,
                lines=self._lines(g.lines),
                currency=g.currency,
                currency_rate=RATES.get(g.currency, RATES["GBP"]),
                created=g.created_at,
                updated=g.voided_at or g.created_at,
                seq=g.key,
                reference=f"PO-{4000 + g.key}" if g.key % 3 == 0 else "",
                sent=g.sent and status == "AUTHORISED",
                voided_at=g.voided_at,
            )
            if g.is_bill:
                contact.is_supplier = True
            invoices[g.key] = inv
            self._add_invoice(inv)
            self._next_invoice = max(self._next_invoice, g.key)
        for gp in books.payments:
            inv = invoices[gp.invoice_key]
            # Payments are entered during the working day they were received.
            stamp = datetime.combine(gp.paid_on, time(9 + gp.key % 8, gp.key % 60), UTC)
            stamp = min(max(stamp, inv.created + timedelta(minutes=1)), now)
            payment = Payment(
                payment_id=self.new_id(),
                invoice=inv,
                date=gp.paid_on,
                amount=money(gp.amount),
                reference=gp.reference,
                updated=stamp,
            )
            inv.payments.append(payment)
            inv.updated = max(inv.updated, stamp)
            self.payments[payment.payment_id] = payment
            self.payment_list.append(payment)
        for gen in books.credits:
            contact = by_key[gen.customer_key]
            stamp = min(datetime.combine(gen.issued_on, time(11, 0), UTC), now)
            credit = CreditNote(
                credit_note_id=self.new_id(),
                number=gen.number,
                contact=contact,
                date=gen.issued_on,
                lines=self._lines(gen.lines),
                currency=gen.currency,
                currency_rate=RATES.get(gen.currency, RATES["GBP"]),
                updated=stamp,
            )
            for inv_key, amount in gen.allocations.items():
                inv = invoices[inv_key]
                stamp = max(stamp, inv.created + timedelta(minutes=2))
                credit.updated = min(stamp, now)
                alloc = Allocation(self.new_id(), credit, inv, money(amount), gen.issued_on)
                credit.allocations.append(alloc)
                inv.allocations.append(alloc)
                inv.updated = max(inv.updated, credit.updated)
            credit.settle_status()
            self._add_credit(credit)
            self._next_credit = max(self._next_credit, gen.key)
        for inv in self.invoice_list:
            inv.recalc()
            if inv.status == "AUTHORISED" and inv.amount_due == 0 and inv.total > 0:
                inv.status = "PAID"
                inv.fully_paid_on = max(
                    [p.date for p in inv.payments] + [a.date for a in inv.allocations]
                )
        for contact in self.contact_list:
            # a contact's record was last touched when it was created
            contact.updated = min(contact.updated, now)

    def _add_invoice(self, inv: Invoice) -> None:
        self.invoices[inv.invoice_id] = inv
        self.invoice_by_number[inv.number.lower()] = inv
        self.invoice_list.append(inv)

    def _add_credit(self, credit: CreditNote) -> None:
        self.credit_notes[credit.credit_note_id] = credit
        self.credit_note_by_number[credit.number.lower()] = credit
        self.credit_list.append(credit)

    # -- look-ups ---------------------------------------------------------------------------------
    def find_invoice(self, ref: str) -> Invoice | None:
        """By InvoiceID or, as Xero also allows, by InvoiceNumber."""
        inv = self.invoices.get(ref.lower())
        return inv if inv is not None else self.invoice_by_number.get(ref.lower())

    def invoice_for_event(self, event: dict[str, Any]) -> Invoice:
        ref = event.get("invoice")
        if not ref:
            raise ValueError(f"a {event.get('type')} event needs 'invoice' (InvoiceID or number)")
        inv = self.find_invoice(str(ref))
        if inv is None:
            raise ValueError(f"no invoice {ref!r} in organisation {self.tenant_id}")
        return inv

    # -- contact groups -------------------------------------------------------------------------
    def active_groups(self) -> list[ContactGroup]:
        return [g for g in self.group_list if g.status == "ACTIVE"]

    def find_group(self, ref: str) -> ContactGroup | None:
        """An ACTIVE group by ContactGroupID (a DELETED one is found by no GET)."""
        group = self.groups.get(ref.strip().lower())
        return group if group is not None and group.status == "ACTIVE" else None

    def groups_of(self, contact: Contact) -> list[ContactGroup]:
        """The ACTIVE groups a contact belongs to, in the order they were made."""
        return [
            g for g in self.group_list if g.status == "ACTIVE" and contact.contact_id in g.members
        ]

    def create_group(self, name: Any, now: datetime) -> ContactGroup:
        text = self._group_name(name)
        if len(self.active_groups()) >= MAX_CONTACT_GROUPS:
            raise GroupError(f"You've reached the limit of {MAX_CONTACT_GROUPS} contact groups.")
        group = ContactGroup(self.new_id(), text, now)
        self.groups[group.group_id] = group
        self.group_list.append(group)
        self.touch()
        return group

    def edit_group(
        self, group: ContactGroup, name: Any, status: Any, now: datetime, moves: bool
    ) -> None:
        """Rename and/or delete (Status DELETED); a deleted group leaves its members' groups."""
        if status is not None and status not in ("ACTIVE", "DELETED"):
            raise GroupError("Status must be ACTIVE or DELETED")
        text = self._group_name(name, but=group) if name is not None else group.name
        group.name = text
        if status == "DELETED" and group.status != "DELETED":
            group.status = "DELETED"
            self._members_moved(group.members.values(), now, moves)
        self.touch()

    def add_to_group(
        self, group: ContactGroup, contacts: list[Contact], now: datetime, moves: bool
    ) -> list[Contact]:
        """Add contacts (those already in it stay as they were); returns the ones added."""
        unique = {c.contact_id: c for c in contacts}.values()
        added = [c for c in unique if c.contact_id not in group.members]
        for contact in added:
            group.members[contact.contact_id] = contact
        self._members_moved(added, now, moves)
        self.touch()
        return added

    def remove_from_group(
        self, group: ContactGroup, contacts: list[Contact], now: datetime, moves: bool
    ) -> list[Contact]:
        removed = [
            group.members.pop(c.contact_id) for c in contacts if c.contact_id in group.members
        ]
        self._members_moved(removed, now, moves)
        self.touch()
        return removed

    def _members_moved(self, contacts: Iterable[Contact], now: datetime, moves: bool) -> None:
        # Whether Xero moves a contact's UpdatedDateUTC when its groups change is unknown: the
        # sandbox's XeroLimits.group_change_moves_contact says (default: it does not).
        if moves:
            for contact in contacts:
                contact.updated = max(contact.updated, now)

    def _group_name(self, name: Any, but: ContactGroup | None = None) -> str:
        if not isinstance(name, str) or not name.strip():
            raise GroupError("The contact group's Name is required")
        if "\x00" in name:
            raise GroupError("The contact group's Name contains invalid characters")
        text = name.strip()
        if len(text) > GROUP_NAME_MAX:
            raise GroupError(f"The contact group's Name is at most {GROUP_NAME_MAX} characters")
        lowered = text.lower()
        if any(g.name.lower() == lowered and g is not but for g in self.active_groups()):
            raise GroupError(f"A contact group named '{text}' already exists")
        return text

    # -- the expected payment date ----------------------------------------------------------------
    def set_expected_date(self, inv: Invoice, day: date | None, now: datetime, moves: bool) -> None:
        """ExpectedPaymentDate set (or cleared with None), as the Awaiting Payment list does."""
        if inv.type != "ACCREC":
            raise ValueError(
                f"{inv.number} is a bill: ExpectedPaymentDate is for sales invoices "
                "(bills have PlannedPaymentDate)"
            )
        if inv.status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            raise ValueError(
                f"{inv.number} is {inv.status}: an expected date goes on an invoice still owed"
            )
        inv.expected_payment_date = day
        # Whether Xero moves UpdatedDateUTC for it is unknown: XeroLimits says (default: no).
        if moves:
            inv.updated = max(inv.updated, now)
        self.touch()

    def cached(self, key: Any, compute: Callable[[], list[Any]]) -> list[Any]:
        """A query's full result, kept while nothing changes (pages of one sync share it)."""
        hit = self.query_cache.get(key)
        if hit is not None and hit[0] == self.version:
            self.query_cache.move_to_end(key)
            return hit[1]
        result = compute()
        self.query_cache[key] = (self.version, result)
        while len(self.query_cache) > 32:
            self.query_cache.popitem(last=False)
        return result

    # -- business events --------------------------------------------------------------------------
    def apply_event(
        self, event: dict[str, Any], now: datetime, limits: XeroLimits | None = None
    ) -> dict[str, Any]:
        kind = event.get("type")
        self._limits = limits
        handlers: dict[str, Callable[[dict[str, Any], datetime], dict[str, Any]]] = {
            "payment": self._ev_payment,
            "credit": self._ev_credit,
            "void": self._ev_void,
            "edit": self._ev_edit,
            "create_invoice": self._ev_create_invoice,
            "email_change": self._ev_email_change,
            "organisation": self._ev_organisation,
            "contact_address": self._ev_contact_address,
            "group_create": self._ev_group_create,
            "group_edit": self._ev_group_edit,
            "group_members": self._ev_group_members,
            "expected_date": self._ev_expected_date,
        }
        if any(isinstance(v, str) and "\x00" in v for v in event.values()):
            raise ValueError("event values cannot contain NUL characters")
        handler = handlers.get(str(kind))
        if handler is None:
            raise ValueError(
                f"unknown xero event type {kind!r}; use one of: {', '.join(sorted(handlers))}"
            )
        result = handler(event, now)
        self.touch()
        return result

    def _check_keys(self, event: dict[str, Any], allowed: set[str]) -> None:
        unknown = set(event) - allowed - {"type"}
        if unknown:
            raise ValueError(
                f"unknown keys for a {event['type']} event: {', '.join(sorted(unknown))}"
            )

    def _settle(self, inv: Invoice, on: date) -> None:
        inv.recalc()
        if inv.status == "AUTHORISED" and inv.amount_due == 0:
            inv.status = "PAID"
            inv.fully_paid_on = on

    def _invoice_result(self, inv: Invoice, **extra: Any) -> dict[str, Any]:
        return {
            "InvoiceID": inv.invoice_id,
            "InvoiceNumber": inv.number,
            "Status": inv.status,
            "AmountDue": format(inv.amount_due, "f"),
            "UpdatedDateUTC": inv.updated.isoformat(),
            **extra,
        }

    def _ev_payment(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self._check_keys(event, {"invoice", "amount", "date"})
        inv = self.invoice_for_event(event)
        if inv.status != "AUTHORISED":
            raise ValueError(
                f"invoice {inv.number} is {inv.status}: payments go on AUTHORISED invoices only"
            )
        amount = (
            inv.amount_due
            if event.get("amount") is None
            else parse_money(event["amount"], "amount")
        )
        if amount > inv.amount_due:
            raise ValueError(
                f"payment {amount} exceeds the amount due {inv.amount_due} on {inv.number}"
            )
        if amount <= 0:
            raise ValueError(f"invoice {inv.number} has nothing left to pay")
        on = parse_day(event["date"], "date") if event.get("date") else self.local_today(now)
        payment = Payment(self.new_id(), inv, on, amount, f"Payment {inv.number}", now)
        inv.payments.append(payment)
        self.payments[payment.payment_id] = payment
        self.payment_list.append(payment)
        self._settle(inv, on)
        inv.updated = now
        return self._invoice_result(inv, PaymentID=payment.payment_id)

    def _ev_credit(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self._check_keys(event, {"invoice", "amount", "date"})
        inv = self.invoice_for_event(event)
        if inv.status != "AUTHORISED" or inv.type != "ACCREC":
            raise ValueError(
                f"invoice {inv.number} is {inv.type} {inv.status}: credit notes are allocated "
                "to AUTHORISED sales invoices only"
            )
        amount = (
            inv.amount_due
            if event.get("amount") is None
            else parse_money(event["amount"], "amount")
        )
        if amount > inv.amount_due or amount <= 0:
            raise ValueError(
                f"credit {amount} must be positive and at most the amount due {inv.amount_due}"
            )
        on = parse_day(event["date"], "date") if event.get("date") else self.local_today(now)
        self._next_credit += 1
        credit = CreditNote(
            credit_note_id=self.new_id(),
            number=f"CN-{2000 + self._next_credit}",
            contact=inv.contact,
            date=on,
            lines=[Line(self.new_id(), f"Credit for {inv.number}", ONE_QTY, amount, amount)],
            currency=inv.currency,
            currency_rate=inv.currency_rate,
            updated=now,
            reference=inv.number,
        )
        alloc = Allocation(self.new_id(), credit, inv, amount, on)
        credit.allocations.append(alloc)
        inv.allocations.append(alloc)
        credit.settle_status()
        self._add_credit(credit)
        self._settle(inv, on)
        inv.updated = now
        return self._invoice_result(
            inv, CreditNoteID=credit.credit_note_id, CreditNoteNumber=credit.number
        )

    def _ev_void(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self._check_keys(event, {"invoice"})
        inv = self.invoice_for_event(event)
        if inv.status in ("DRAFT", "SUBMITTED"):
            inv.status = "DELETED"  # Xero deletes unapproved invoices rather than voiding them
        elif inv.status == "AUTHORISED" and not inv.payments and not inv.allocations:
            inv.status = "VOIDED"
        else:
            raise ValueError(
                f"invoice {inv.number} is {inv.status}"
                + (" with payments or credits" if inv.payments or inv.allocations else "")
                + ": Xero voids only approved invoices with nothing applied"
            )
        inv.voided_at = now
        inv.recalc()
        inv.updated = now
        return self._invoice_result(inv)

    def _ev_edit(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self._check_keys(event, {"invoice", "due_date", "amount", "reference"})
        inv = self.invoice_for_event(event)
        if inv.status not in ("DRAFT", "SUBMITTED", "AUTHORISED"):
            raise ValueError(f"invoice {inv.number} is {inv.status}: it cannot be edited")
        if not {"due_date", "amount", "reference"} & set(event):
            raise ValueError("an edit event needs due_date, amount or reference")
        moves = False
        changes: list[str] = []
        if "amount" in event:
            if inv.payments or inv.allocations:
                raise ValueError(
                    f"invoice {inv.number} has payments or credits: its lines cannot be edited"
                )
            amount = parse_money(event["amount"], "amount")
            first = inv.lines[0]
            first.quantity, first.unit_amount, first.line_amount = ONE_QTY, amount, amount
            inv.recalc()
            moves = True
            changes.append(f"first line amount {format(amount, 'f')}")
        if "reference" in event:
            inv.reference = str(event["reference"] or "")
            moves = True
            changes.append(f"reference {inv.reference!r}")
        if "due_date" in event:
            inv.due_date = parse_day(event["due_date"], "due_date")
            changes.append(f"due date {inv.due_date.isoformat()}")
            # Xero's documented caveat: a due-date change on a partly paid invoice leaves
            # UpdatedDateUTC where it was, so If-Modified-Since never reports it.
            if not inv.amount_paid > 0:
                moves = True
        inv.add_history(HistoryEntry(now, "Edited", "Changed " + ", ".join(changes) + "."))
        if moves:
            inv.updated = now
        return self._invoice_result(inv, UpdatedDateUTCMoved=moves)

    def _ev_create_invoice(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self._check_keys(event, {"contact", "amount", "terms_days", "currency", "reference"})
        contact = self.contacts.get(str(event.get("contact", "")).lower())
        if contact is None:
            raise ValueError(f"create_invoice needs 'contact', a ContactID of {self.tenant_id}")
        amount = parse_money(event.get("amount"), "amount")
        try:
            terms = int(event.get("terms_days", 30))
        except (TypeError, ValueError) as err:
            raise ValueError("terms_days must be a whole number of days") from err
        if terms < 0:
            raise ValueError("terms_days cannot be negative")
        currency = str(event.get("currency") or contact.currency).upper()
        if currency not in RATES:
            raise ValueError(f"currency must be one of {', '.join(RATES)}, not {currency!r}")
        today = self.local_today(now)
        self._next_invoice += 1
        inv = Invoice(
            invoice_id=self.new_id(),
            number=f"INV-{1000 + self._next_invoice}",
            type="ACCREC",
            contact=contact,
            date=today,
            due_date=today + timedelta(days=terms),
            status="AUTHORISED",
            lines=[Line(self.new_id(), "Services", ONE_QTY, amount, amount)],
            currency=currency,
            currency_rate=RATES[currency],
            created=now,
            updated=now,
            seq=len(self.invoice_list) + 1,
            reference=str(event.get("reference") or ""),
        )
        inv.recalc()
        self._add_invoice(inv)
        return self._invoice_result(inv)

    def _ev_email_change(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The contact's EmailAddress and/or its ContactPersons (replaced as a whole)."""
        self._check_keys(event, {"contact", "email", "persons"})
        if "email" not in event and "persons" not in event:
            raise ValueError(
                "email_change needs 'email' (an address, or null to remove it) and/or "
                "'persons' (a list of {first_name, last_name, email, include_in_emails})"
            )
        contact = self.contacts.get(str(event.get("contact", "")).lower())
        if contact is None:
            raise ValueError(f"email_change needs 'contact', a ContactID of {self.tenant_id}")
        persons = contact.persons
        if "persons" in event:
            persons = _persons(event["persons"])
        if "email" in event:
            email = event["email"]
            if email is not None and (not isinstance(email, str) or "@" not in email):
                raise ValueError(f"email must be an address or null, not {email!r}")
            contact.email = email or None
        contact.persons = persons
        contact.updated = now
        return {
            "ContactID": contact.contact_id,
            "EmailAddress": contact.email,
            "ContactPersons": [
                {"EmailAddress": p.email, "IncludeInEmails": p.include_in_emails}
                for p in contact.persons
            ],
            "UpdatedDateUTC": now.isoformat(),
        }

    # -- what a bookkeeper does in Xero itself: addresses, groups, expected dates ---------------
    def _moves_contact(self) -> bool:
        return bool(self._limits is not None and self._limits.group_change_moves_contact)

    def _contact_for_event(self, raw: Any, what: str) -> Contact:
        contact = self.contacts.get(str(raw or "").strip().lower())
        if contact is None:
            raise ValueError(f"{what} needs 'contact', a ContactID of {self.tenant_id}")
        return contact

    def _group_for_event(self, event: dict[str, Any]) -> ContactGroup:
        group = self.find_group(str(event.get("group") or ""))
        if group is None:
            raise ValueError(
                f"{event['type']} needs 'group', the ContactGroupID of an ACTIVE group"
            )
        return group

    def _ev_contact_address(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The billing address's Country and/or Region (moves UpdatedDateUTC: it is the contact)."""
        self._check_keys(event, {"contact", "country", "region"})
        contact = self._contact_for_event(event.get("contact"), "contact_address")
        if not {"country", "region"} & set(event):
            raise ValueError("contact_address needs country and/or region (text, or null)")
        changes: dict[str, str] = {}
        for key, limit in (("country", COUNTRY_MAX), ("region", REGION_MAX)):
            if key in event:
                value = event[key]
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"{key} must be text or null")
                text = (value or "").strip()
                if len(text) > limit:
                    raise ValueError(f"{key} is at most {limit} characters")
                changes[key] = text
        for key, text in changes.items():
            setattr(contact, key, text)
        contact.updated = max(contact.updated, now)
        return {
            "ContactID": contact.contact_id,
            "Country": contact.country,
            "Region": contact.region,
            "UpdatedDateUTC": contact.updated.isoformat(),
        }

    def _ev_group_create(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self._check_keys(event, {"name"})
        group = self.create_group(event.get("name"), now)
        return {"ContactGroupID": group.group_id, "Name": group.name, "Status": group.status}

    def _ev_group_edit(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        self._check_keys(event, {"group", "name", "status"})
        if not {"name", "status"} & set(event):
            raise ValueError("group_edit needs name and/or status (ACTIVE or DELETED)")
        group = self._group_for_event(event)
        self.edit_group(group, event.get("name"), event.get("status"), now, self._moves_contact())
        return {"ContactGroupID": group.group_id, "Name": group.name, "Status": group.status}

    def _ev_group_members(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Contacts put into and/or taken out of a group (`add`, `remove`: lists of ContactIDs)."""
        self._check_keys(event, {"group", "add", "remove"})
        if not {"add", "remove"} & set(event):
            raise ValueError("group_members needs add and/or remove (lists of ContactIDs)")
        group = self._group_for_event(event)
        lists: dict[str, list[Contact]] = {}
        for key in ("add", "remove"):
            raw = event.get(key) or []
            if not isinstance(raw, list):
                raise ValueError(f"{key} must be a list of ContactIDs")
            lists[key] = [self._contact_for_event(c, "group_members") for c in raw]
        moves = self._moves_contact()
        added = self.add_to_group(group, lists["add"], now, moves)
        removed = self.remove_from_group(group, lists["remove"], now, moves)
        return {
            "ContactGroupID": group.group_id,
            "added": [c.contact_id for c in added],
            "removed": [c.contact_id for c in removed],
            "members": list(group.members),
            "UpdatedDateUTCMoved": moves,
        }

    def _ev_expected_date(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        """The "Expected Date" typed into the Awaiting Payment list (`date`, or null to clear)."""
        self._check_keys(event, {"invoice", "date"})
        if "date" not in event:
            raise ValueError("expected_date needs date (an ISO date, or null to clear it)")
        inv = self.invoice_for_event(event)
        day = None if event["date"] is None else parse_day(event["date"], "date")
        moves = bool(self._limits is not None and self._limits.expected_date_moves_invoice)
        self.set_expected_date(inv, day, now, moves)
        return self._invoice_result(
            inv,
            ExpectedPaymentDate=day.isoformat() if day else None,
            UpdatedDateUTCMoved=moves,
        )

    def _ev_organisation(self, event: dict[str, Any], now: datetime) -> dict[str, Any]:
        """Organisation settings as GET /Organisation serves them, for trying unusual values.

        `zone` (an IANA zone) moves the organisation's calendar and, unless `timezone` is also
        given, its Timezone by XERO_TIMEZONES; `timezone`, `class` and `country_code` are served
        verbatim (a zone id Xero has not published yet, a DEMO class); `is_demo_company` is a bool.
        """
        keys = {"zone", "timezone", "class", "is_demo_company", "country_code"}
        self._check_keys(event, keys)
        if not keys & set(event):
            raise ValueError(f"an organisation event needs one of: {', '.join(sorted(keys))}")
        for key in ("timezone", "class", "country_code"):
            if key in event and (not isinstance(event[key], str) or not event[key].strip()):
                raise ValueError(f"{key} must be non-empty text, not {event[key]!r}")
        if "is_demo_company" in event and not isinstance(event["is_demo_company"], bool):
            raise ValueError("is_demo_company must be true or false")
        zone: ZoneInfo | None = None
        windows: str | None = event.get("timezone")
        if "zone" in event:
            try:
                zone = ZoneInfo(str(event["zone"]))
            except (ValueError, KeyError) as err:  # ZoneInfoNotFoundError is a KeyError
                raise ValueError(f"zone must be an IANA time zone, not {event['zone']!r}") from err
            windows = windows or XERO_TIMEZONES.get(str(event["zone"]))
            if windows is None:
                raise ValueError(
                    f"no Windows zone id known for {event['zone']!r}: give timezone as well"
                )
        # Everything is checked: now change it.
        if zone is not None:
            self.zone, self.timezone = zone, str(event["zone"])
        if windows is not None:
            self.xero_timezone = windows
        if "class" in event:
            self.org_class = event["class"]
        if "country_code" in event:
            self.country = event["country_code"]
        if "is_demo_company" in event:
            self.is_demo_company = event["is_demo_company"]
        return {
            "OrganisationID": self.tenant_id,
            "Timezone": self.xero_timezone,
            "Class": self.org_class,
            "IsDemoCompany": self.is_demo_company,
            "CountryCode": self.country,
            "zone": self.timezone,
        }


#: billing country and region of contacts by their default currency, as people type them
_ADDRESS_BY_CURRENCY = {
    "GBP": ("United Kingdom", ""),
    "EUR": ("Ireland", "Co. Dublin"),
    "USD": ("United States", "NY"),
}


def xero_timezone(zone: str) -> str:
    """Organisation.Timezone for an IANA zone of the sandbox's books."""
    try:
        return XERO_TIMEZONES[zone]
    except KeyError:
        raise ValueError(f"no Xero Timezone known for {zone!r}: add it to XERO_TIMEZONES") from None


def _persons(raw: Any) -> tuple[ContactPerson, ...]:
    if not isinstance(raw, list):
        raise ValueError("persons must be a list of objects")
    out: list[ContactPerson] = []
    for item in raw:
        if not isinstance(item, dict) or set(item) - {
            "first_name",
            "last_name",
            "email",
            "include_in_emails",
        }:
            raise ValueError(
                "each person is an object of first_name, last_name, email, include_in_emails"
            )
        email = item.get("email")
        if email is not None and (
            not isinstance(email, str) or "@" not in email or "\x00" in email
        ):
            raise ValueError(f"a person's email must be an address or null, not {email!r}")
        include = item.get("include_in_emails", False)
        if not isinstance(include, bool):
            raise ValueError("include_in_emails must be true or false")
        names = (item.get("first_name", ""), item.get("last_name", ""))
        if not all(isinstance(n, str) and "\x00" not in n for n in names):
            raise ValueError("first_name and last_name must be text")
        out.append(ContactPerson(str(names[0]), str(names[1]), email or None, include))
    return tuple(out)
