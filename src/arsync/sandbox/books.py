"""A seeded generator of realistic small-firm books, platform-neutral.

Each platform's state turns these books into its own entities (QBO JSON, Xero JSON). The same
seed, size and "now" always give the same books.
"""

from __future__ import annotations

import itertools
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal

CENT = Decimal("0.01")

_FIRST = [
    "Alder",
    "Ash",
    "Beacon",
    "Birch",
    "Bramble",
    "Brook",
    "Cedar",
    "Clover",
    "Copper",
    "Crane",
    "Crest",
    "Elm",
    "Fern",
    "Finch",
    "Fox",
    "Garnet",
    "Harbor",
    "Hazel",
    "Heron",
    "Juniper",
    "Kestrel",
    "Lark",
    "Linden",
    "Maple",
    "Meadow",
    "Orchard",
    "Otter",
    "Pine",
    "Quarry",
    "Raven",
    "Ridge",
    "Rowan",
    "Sage",
    "Slate",
    "Sparrow",
    "Summit",
    "Thistle",
    "Timber",
    "Willow",
    "Wren",
]
_SECOND = [
    "Bakery",
    "Builders",
    "Cafe",
    "Carpentry",
    "Catering",
    "Clinic",
    "Consulting",
    "Dental",
    "Design",
    "Electrical",
    "Florist",
    "Garage",
    "Gardens",
    "Joinery",
    "Landscaping",
    "Law",
    "Logistics",
    "Media",
    "Motors",
    "Optics",
    "Outfitters",
    "Painting",
    "Pharmacy",
    "Plumbing",
    "Print",
    "Roofing",
    "Studio",
    "Surveys",
    "Tailors",
    "Tiling",
    "Veterinary",
    "Workshop",
]
_SUFFIX = ("Ltd", "LLC", "& Co", "Inc", "Partners", "", "", "")
_PEOPLE = [
    "Amira",
    "Ben",
    "Chloe",
    "Dev",
    "Elena",
    "Femi",
    "Grace",
    "Hugo",
    "Isla",
    "Jonas",
    "Kai",
    "Lena",
    "Marco",
    "Nadia",
    "Omar",
    "Priya",
    "Quinn",
    "Rosa",
    "Sam",
    "Tomas",
    "Uma",
    "Vera",
    "Wes",
    "Yara",
    "Zane",
]
_SURNAMES = [
    "Abbott",
    "Baker",
    "Chen",
    "Dubois",
    "Evans",
    "Fischer",
    "Garcia",
    "Hughes",
    "Ito",
    "Jensen",
    "Kowalski",
    "Lopez",
    "Murphy",
    "Nguyen",
    "Okafor",
    "Patel",
    "Rossi",
    "Schmidt",
    "Tanaka",
    "Usman",
    "Varga",
    "Walsh",
    "Young",
    "Zhou",
]
_ITEMS = (
    ("Consulting hours", (60, 180)),
    ("Site visit", (80, 250)),
    ("Materials", (20, 900)),
    ("Monthly retainer", (300, 2500)),
    ("Design work", (90, 160)),
    ("Repairs", (50, 600)),
    ("Installation", (150, 1800)),
    ("Annual maintenance", (400, 3000)),
    ("Delivery", (15, 90)),
    ("Training session", (200, 900)),
)
_TERMS = (7, 15, 30, 30, 30, 60)


@dataclass
class GenCustomer:
    key: int
    name: str
    contact_first: str
    contact_last: str
    email: str | None
    phone: str | None
    currency: str
    city: str
    created_at: datetime
    active: bool = True


@dataclass
class GenLine:
    description: str
    quantity: Decimal
    unit_price: Decimal

    @property
    def amount(self) -> Decimal:
        return (self.quantity * self.unit_price).quantize(CENT, ROUND_HALF_UP)


@dataclass
class GenPayment:
    key: int
    customer_key: int
    invoice_key: int
    paid_on: date
    amount: Decimal
    currency: str
    reference: str


@dataclass
class GenCredit:
    key: int
    number: str
    customer_key: int
    issued_on: date
    currency: str
    lines: list[GenLine]
    #: invoice key -> amount of this credit applied to it
    allocations: dict[int, Decimal] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def remaining(self) -> Decimal:
        return self.total - sum(self.allocations.values(), Decimal(0))


@dataclass
class GenInvoice:
    key: int
    number: str
    customer_key: int
    issued_on: date
    due_on: date
    terms_days: int
    currency: str
    lines: list[GenLine]
    created_at: datetime
    #: "draft" | "open" | "void"; whether it is paid follows from payments and credits
    state: str = "open"
    #: Xero's ACCPAY (a bill); QBO books have none
    is_bill: bool = False
    sent: bool = False
    payments: list[GenPayment] = field(default_factory=list)
    credits: dict[int, Decimal] = field(default_factory=dict)  # credit key -> amount applied
    voided_at: datetime | None = None

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def amount_paid(self) -> Decimal:
        return sum((p.amount for p in self.payments), Decimal(0))

    @property
    def amount_credited(self) -> Decimal:
        return sum(self.credits.values(), Decimal(0))

    @property
    def balance(self) -> Decimal:
        if self.state == "void":
            return Decimal(0)
        return self.total - self.amount_paid - self.amount_credited


@dataclass
class Books:
    platform: str
    company_name: str
    tenant_id: str
    base_currency: str
    country: str
    timezone: str
    seed: int
    now: datetime
    customers: list[GenCustomer]
    invoices: list[GenInvoice]
    payments: list[GenPayment]
    credits: list[GenCredit]

    def receivable_total(self) -> dict[str, Decimal]:
        totals: dict[str, Decimal] = {}
        for inv in self.invoices:
            if inv.state == "open" and not inv.is_bill:
                totals[inv.currency] = totals.get(inv.currency, Decimal(0)) + inv.balance
        return totals


def _money(rng: random.Random, low: float, high: float) -> Decimal:
    return Decimal(str(round(rng.uniform(low, high), 2))).quantize(CENT)


def _slug(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _at(day: date, rng: random.Random) -> datetime:
    return datetime.combine(day, time(rng.randint(8, 17), rng.randint(0, 59), rng.randint(0, 59)))


def generate_books(
    *,
    platform: str,
    seed: int,
    now: datetime,
    customers: int = 40,
    invoices: int = 300,
    company_name: str | None = None,
    months: int = 8,
) -> Books:
    """Books of a small firm: about `customers` customers and `invoices` sales invoices.

    Most invoices are paid on time, some late, some partly; some credited, a few voided; a few are
    large and many small. Xero books carry several currencies, a few drafts and a few bills.
    """
    if customers < 1 or invoices < 0:
        raise ValueError("books need at least one customer and a non-negative invoice count")
    rng = random.Random(f"{platform}:{seed}")
    now = now.astimezone(UTC)
    today = now.date()
    if platform == "qbo":
        base, country, tz = "USD", "US", "America/Los_Angeles"
        currencies = ["USD"]
        default_name = "Harbor & Pine Landscaping LLC"
        tenant_id = str(9_130_000_000_000_000 + rng.randrange(10**15))
    elif platform == "xero":
        base, country, tz = "GBP", "GB", "Europe/London"
        currencies = ["GBP"] * 8 + ["EUR", "USD"]
        default_name = "Kestrel Design Studio Ltd"
        tenant_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    else:
        raise ValueError(f"unknown platform {platform!r}")

    start = today - timedelta(days=int(months * 30.4))
    people: list[GenCustomer] = []
    used_names: set[str] = set()
    for key in range(1, customers + 1):
        while True:
            name = f"{rng.choice(_FIRST)} {rng.choice(_SECOND)} {rng.choice(_SUFFIX)}".strip()
            if name not in used_names or len(used_names) > 1500:
                break
        if name in used_names:
            name = f"{name} {key}"
        used_names.add(name)
        first, last = rng.choice(_PEOPLE), rng.choice(_SURNAMES)
        domain = _slug(name.split(" ")[0] + name.split(" ")[1]) + ".example"
        email = f"{first.lower()}.{last.lower()}@{domain}" if rng.random() < 0.85 else None
        phone = (
            (
                f"+1 415 555 {rng.randint(0, 9999):04d}"
                if platform == "qbo"
                else f"+44 20 7946 {rng.randint(0, 999):03d}{rng.randint(0, 9)}"
            )
            if rng.random() < 0.7
            else None
        )
        created = _at(start - timedelta(days=rng.randint(5, 400)), rng).replace(tzinfo=UTC)
        people.append(
            GenCustomer(
                key=key,
                name=name,
                contact_first=first,
                contact_last=last,
                email=email,
                phone=phone,
                currency=rng.choice(currencies),
                city=rng.choice(("Springfield", "Riverton", "Lakeside", "Fairview", "Hillcrest")),
                created_at=created,
            )
        )
    # A few regular customers get most of the work, as in real books.
    weights = [1.0 / (1 + i * 0.15) for i in range(len(people))]
    rng.shuffle(weights)
    cum_weights = list(itertools.accumulate(weights))

    all_invoices: list[GenInvoice] = []
    all_payments: list[GenPayment] = []
    all_credits: list[GenCredit] = []
    span = max(1, (today - start).days)
    issue_days = sorted(start + timedelta(days=rng.randrange(span + 1)) for _ in range(invoices))
    prefix = "" if platform == "qbo" else "INV-"
    for key, issued in enumerate(issue_days, start=1):
        cust = rng.choices(people, cum_weights=cum_weights)[0]
        terms = rng.choice(_TERMS)
        n_lines = rng.choices((1, 2, 3, 4), cum_weights=(5, 8, 10, 11))[0]
        large = rng.random() < 0.04
        lines = []
        for _ in range(n_lines):
            desc, (lo, hi) = rng.choice(_ITEMS)
            qty = Decimal(rng.choice((1, 1, 1, 2, 3, 4, 5, 8, 10)))
            price = _money(rng, lo, hi) * (Decimal(8) if large else Decimal(1))
            lines.append(GenLine(desc, qty, price))
        # An invoice issued today was entered before now, never later in the day: a platform
        # never reports a change time in its own future.
        created = min(_at(issued, rng).replace(tzinfo=UTC), now)
        inv = GenInvoice(
            key=key,
            number=f"{prefix}{1000 + key}",
            customer_key=cust.key,
            issued_on=issued,
            due_on=issued + timedelta(days=terms),
            terms_days=terms,
            currency=cust.currency,
            lines=lines,
            created_at=created,
            sent=cust.email is not None and rng.random() < 0.9,
        )
        all_invoices.append(inv)
        roll = rng.random()
        if platform == "xero" and roll < 0.02:
            inv.state, inv.sent = "draft", False
            continue
        if platform == "xero" and roll < 0.05:
            inv.is_bill, inv.sent = True, False
            inv.number = f"BILL-{key}"
            continue
        if roll < 0.09:
            inv.state = "void"
            inv.voided_at = created + timedelta(days=rng.randint(1, 10))
            if inv.voided_at > now:
                inv.voided_at = now - timedelta(minutes=rng.randint(5, 600))
            continue
        outcome = rng.random()
        if outcome < 0.06:  # credited, in full or in part
            credit = GenCredit(
                key=len(all_credits) + 1,
                number=f"{'CN-' if platform == 'xero' else 'CM'}{2000 + len(all_credits) + 1}",
                customer_key=cust.key,
                issued_on=min(today, issued + timedelta(days=rng.randint(2, 20))),
                currency=inv.currency,
                lines=[GenLine("Credit: " + lines[0].description, Decimal(1), Decimal(0))],
            )
            share = Decimal(1) if rng.random() < 0.5 else Decimal(str(rng.choice((0.2, 0.3, 0.5))))
            amount = (inv.total * share).quantize(CENT, ROUND_HALF_UP)
            credit.lines[0].unit_price = amount
            if rng.random() < 0.85:  # usually applied; sometimes left as an open credit
                credit.allocations[inv.key] = amount
                inv.credits[credit.key] = amount
            all_credits.append(credit)
            if share < 1 and rng.random() < 0.6:
                _pay(
                    rng,
                    inv,
                    inv.balance,
                    inv.due_on + timedelta(days=rng.randint(-3, 20)),
                    today,
                    all_payments,
                )
            continue
        if outcome < 0.62:  # paid on time
            paid = issued + timedelta(days=rng.randint(0, terms))
            _pay(rng, inv, inv.balance, paid, today, all_payments)
        elif outcome < 0.80:  # paid late
            paid = inv.due_on + timedelta(days=rng.randint(1, 75))
            _pay(rng, inv, inv.balance, paid, today, all_payments)
        elif outcome < 0.88:  # partly paid
            part = (inv.balance * Decimal(str(rng.choice((0.25, 0.4, 0.5, 0.6))))).quantize(CENT)
            paid = issued + timedelta(days=rng.randint(3, terms + 40))
            _pay(rng, inv, part, paid, today, all_payments)
        # else: still open, whatever its age
    return Books(
        platform=platform,
        company_name=company_name or default_name,
        tenant_id=tenant_id,
        base_currency=base,
        country=country,
        timezone=tz,
        seed=seed,
        now=now,
        customers=people,
        invoices=all_invoices,
        payments=all_payments,
        credits=all_credits,
    )


def _pay(
    rng: random.Random,
    inv: GenInvoice,
    amount: Decimal,
    paid_on: date,
    today: date,
    out: list[GenPayment],
) -> None:
    if amount <= 0 or paid_on >= today:
        return  # not paid yet as of today: it stays open
    payment = GenPayment(
        key=len(out) + 1,
        customer_key=inv.customer_key,
        invoice_key=inv.key,
        paid_on=max(paid_on, inv.issued_on),
        amount=amount,
        currency=inv.currency,
        reference=rng.choice(("BACS", "Cheque", "Card", "ACH", "Transfer")) + f" {inv.number}",
    )
    inv.payments.append(payment)
    out.append(payment)
