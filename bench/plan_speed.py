"""Planning speed: `plan()` over 100,000 open invoices against reading the same rows from the store.

One connector's books go into a fresh store (a SQLite file in a temporary folder; with
`--postgresql` also a schema of its own in the local PostgreSQL): 100,000 open invoices over
10,000 customers in a handful of time zones and currencies, due from 200 days ago to 60 days
ahead, some part-paid, some at or below the policy's minimum; a few hundred holds (exclusions,
disputes, promises, settlements, paused customers, some of them broken or on paid invoices),
payment plans, unapplied payments, and the stages that already happened. Then, best
of `--runs`:

- load: the bare `tx.records.open_invoices(cid)` in a reading transaction, and the whole reading
  transaction that builds the planner's input (`escalation.reading.snapshot`);
- plan: `planner.plan(snapshot, policy, now)` with the standard policy at a fixed moment.

It prints the figures and the ratio plan / load, and a digest of the whole plan (every decision
and transition in full) so that a change to the planner can be checked to decide the same.
Benchmarks report; they do not assert: it fails only if something crashes.

    .venv/bin/python bench/plan_speed.py [--invoices 100000] [--customers 10000] [--runs 5]
        [--postgresql] [--profile] [--dump FILE]
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import hashlib
import pstats
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import create_engine, text

from arsync.clock import FrozenClock
from arsync.domain import (
    CompanyInfo,
    Customer,
    DocStatus,
    HoldKind,
    HoldState,
    Invoice,
    InvoiceStatus,
    Page,
    Payment,
)
from arsync.escalation.planner import Plan, plan
from arsync.escalation.policy import Policy, builtin_policies
from arsync.escalation.reading import (
    STAGE_DONE,
    STAGE_SUPERSEDED,
    TIMEZONE_SETTING,
    FirmZone,
    firm_zone,
    snapshot,
)
from arsync.escalation.snapshot import Snapshot
from arsync.store import Entity, Store, open_store
from arsync.store.records import bulk_insert
from arsync.store.schema import events

#: the moment the plan is made for: a Wednesday, 10:00 in the firm's New York
NOW = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
TODAY = NOW.date()
FIRM_ZONE = "America/New_York"
POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PAGE = 1000
T = TypeVar("T")

#: (country, region, currency, share of customers): zones from the billing address, and two
#: addresses that settle none (the firm's is used)
PLACES = (
    ("US", "NY", "USD", 30),
    ("US", "CA", "USD", 15),
    ("US", "IL", "USD", 10),
    ("GB", None, "GBP", 15),
    ("DE", None, "EUR", 10),
    ("FR", None, "EUR", 5),
    ("AU", "WA", "AUD", 5),
    ("JP", None, "JPY", 4),
    ("AU", "NSW", "AUD", 3),
    (None, None, "USD", 3),
)


@dataclass
class Books:
    customers: list[Customer]
    #: open invoices, then a few paid ones (holds and plans name some of them)
    invoices: list[Invoice]
    paid: list[Invoice]
    payments: list[Payment]
    #: customer id -> IANA zone set by hand (`arsync customer timezone`)
    overrides: dict[str, str]
    holds: list[dict[str, Any]] = field(default_factory=list)
    #: holds set and then broken (a promise not kept makes the next stage firmer)
    broken: list[dict[str, Any]] = field(default_factory=list)
    plans: list[dict[str, Any]] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)


def make_books(n_invoices: int, n_customers: int, seed: int = 7) -> Books:
    rng = random.Random(seed)
    stamp = NOW - timedelta(days=1)
    weights = [p[3] for p in PLACES]
    customers: list[Customer] = []
    currency_of: dict[str, str] = {}
    for n in range(n_customers):
        country, region, currency, _ = rng.choices(PLACES, weights)[0]
        cid = f"C{n:05d}"
        currency_of[cid] = currency
        customers.append(
            Customer(
                id=cid,
                name=f"Customer {n:05d}",
                email=f"ap{n}@example.com",
                phone=None,
                currency=currency,
                active=True,
                updated_at=stamp,
                country=country,
                region=region,
            )
        )
    overrides = {c.id: "Asia/Kolkata" for c in rng.sample(customers, min(50, n_customers))}

    def invoice(n: int, customer_id: str, status: InvoiceStatus) -> Invoice:
        due = TODAY + timedelta(days=rng.randint(-200, 60))
        currency = currency_of[customer_id]
        total = Decimal(rng.randint(2_000, 900_000)) / 100
        if currency == "JPY":
            total = Decimal(rng.randint(5_000, 2_000_000))
        roll = rng.random()
        if status is InvoiceStatus.PAID:
            balance = Decimal(0)
        elif roll < 0.04:  # at or below the standard policy's minimum of 10
            balance = Decimal(rng.randint(1, 1_000)) / 100
            total = max(total, balance)
        elif roll < 0.25:  # part-paid
            balance = (total * Decimal(rng.randint(10, 90)) / 100).quantize(Decimal("0.01"))
        else:
            balance = total
        return Invoice(
            id=f"I{n:06d}",
            number=f"INV-{n:06d}",
            customer_id=customer_id,
            issue_date=due - timedelta(days=30),
            due_date=due,
            currency=currency,
            total=total,
            balance=balance,
            status=status,
            sent=True,
            updated_at=stamp,
        )

    ids = [c.id for c in customers]
    invoices = [invoice(n, rng.choice(ids), InvoiceStatus.OPEN) for n in range(n_invoices)]
    paid = [
        invoice(n, rng.choice(ids), InvoiceStatus.PAID)
        for n in range(n_invoices, n_invoices + n_invoices // 50)
    ]
    by_customer: dict[str, list[Invoice]] = {}
    for inv in invoices:
        by_customer.setdefault(inv.customer_id, []).append(inv)

    # unapplied payments: some cover a customer's oldest invoice, most do not
    payments: list[Payment] = []
    for n, cid in enumerate(rng.sample(ids, min(600, n_customers))):
        oldest = sorted(by_customer.get(cid, []), key=lambda i: (i.due_date, i.id))
        size = (
            oldest[0].balance * Decimal("1.2")
            if oldest and n % 3 == 0
            else Decimal(rng.randint(5, 500))
        )
        payments.append(
            Payment(
                id=f"P{n:05d}",
                customer_id=cid,
                date=TODAY - timedelta(days=rng.randint(1, 60)),
                currency=currency_of[cid],
                amount=size.quantize(Decimal("0.01")),
                unapplied=size.quantize(Decimal("0.01")),
                status=DocStatus.ACTIVE,
                allocations=(),
                updated_at=stamp,
            )
        )
    books = Books(customers, invoices, paid, payments, overrides)

    # holds: a few hundred, of every kind
    held = rng.sample(invoices, min(400, len(invoices)))
    for n, inv in enumerate(held[:320]):
        kind = (HoldKind.EXCLUDE, HoldKind.DISPUTE, HoldKind.PROMISE, HoldKind.SETTLEMENT)[n % 4]
        spec: dict[str, Any] = {"kind": kind, "invoice_id": inv.id, "customer_id": inv.customer_id}
        if kind is HoldKind.PROMISE:
            spec["until"] = TODAY + timedelta(days=rng.randint(-12, 20))
        if kind is HoldKind.SETTLEMENT:
            spec["until"] = TODAY + timedelta(days=rng.randint(-12, 20))
            spec["amount"] = (inv.balance * Decimal("0.8")).quantize(Decimal("0.01"))
            spec["currency"] = inv.currency
            spec["basis"] = inv.balance if n % 8 else inv.total
        books.holds.append(spec)
    for n, cid in enumerate(rng.sample(ids, min(60, n_customers))):
        until = None if n % 3 == 0 else TODAY + timedelta(days=rng.randint(-10, 30))
        books.holds.append({"kind": HoldKind.PAUSE, "customer_id": cid, "until": until})
    for inv in paid[:20]:
        books.holds.append(
            {
                "kind": HoldKind.PROMISE,
                "invoice_id": inv.id,
                "customer_id": inv.customer_id,
                "until": TODAY - timedelta(days=5),
            }
        )
    for inv in held[320:]:
        books.broken.append(
            {
                "kind": HoldKind.PROMISE,
                "invoice_id": inv.id,
                "customer_id": inv.customer_id,
                "until": TODAY - timedelta(days=20),
            }
        )

    # payment plans over a customer's two or three open invoices
    held_ids = {i.id for i in held}
    for cid in rng.sample(ids, min(40, n_customers)):
        mine = [i for i in by_customer.get(cid, []) if i.id not in held_ids][:3]
        owed = sum((i.balance for i in mine), Decimal(0))
        if owed < 1:
            continue
        part = (owed / 4).quantize(Decimal("0.01"))
        start = TODAY - timedelta(days=rng.randint(0, 75))
        parts = [part, part, part, owed - 3 * part]  # the instalments add up to what is owed
        books.plans.append(
            {
                "customer_id": cid,
                "invoice_ids": [i.id for i in mine],
                "currency": mine[0].currency,
                "instalments": [(start + timedelta(days=30 * k), parts[k]) for k in range(4)],
                "basis": owed,
            }
        )

    # the stages that happened: for half of the invoices, every stage whose day has passed
    policy = builtin_policies()["standard"]
    for inv in invoices:
        if rng.random() < 0.5:
            continue
        for stage in policy.stages:
            day = inv.due_date + timedelta(days=stage.offset)
            if day >= TODAY - timedelta(days=1):
                break
            skipped = rng.random() < 0.05
            at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(hours=15)
            books.history.append(
                {
                    "connector_id": 0,
                    "sync_id": None,
                    "at": at,
                    "entity": Entity.INVOICE.value,
                    "external_id": inv.id,
                    "action": STAGE_SUPERSEDED if skipped else STAGE_DONE,
                    "detail": {
                        "subject": f"invoice:{inv.id}",
                        "customer": inv.customer_id,
                        "stage": stage.name,
                        "at": at.isoformat(),
                        "contact": stage.contacts and not skipped,
                    },
                }
            )
    return books


def fill(store: Store, clock: FrozenClock, books: Books) -> int:
    """Write the books into the store as a sync and the escalation commands would; the id of
    the connector."""
    with store.transaction() as tx:
        cid = tx.connectors.ensure("bench", "qbo").id
        company = CompanyInfo("Bench & Co", base_currency="USD", country="US", region="NY")
        tx.connectors.set_company(cid, company)
        sync = tx.runs.begin(cid, full=True)
    streams: list[tuple[str, list[Any]]] = [
        ("customers", books.customers),
        ("invoices", books.invoices + books.paid),
        ("payments", books.payments),
    ]
    for stream, items in streams:
        for start in range(0, len(items), PAGE):
            page = Page(stream, items[start : start + PAGE], {"at": start})
            with store.transaction() as tx:
                tx.records.apply_page(cid, sync, page)
    with store.transaction() as tx:
        for customer_id, zone in books.overrides.items():
            tx.settings.put(cid, customer_id, TIMEZONE_SETTING, zone, set_by="bench")
        for spec in books.broken:
            hold = tx.holds.add(cid, reason="promised on the phone", set_by="bench", **spec)
            tx.holds.end(hold.id, HoldState.BROKEN, by="arsync", reason="unpaid after grace")
        for spec in books.holds:
            tx.holds.add(cid, reason="agreed with the customer", set_by="bench", **spec)
        for spec in books.plans:
            tx.plans.add(cid, missed_allowed=1, reason="instalments", set_by="bench", **spec)
        rows = [{**row, "connector_id": cid} for row in books.history]
        for start in range(0, len(rows), 5000):
            bulk_insert(tx.conn, events, rows[start : start + 5000])
    clock.set(NOW - timedelta(hours=1))
    with store.transaction() as tx:
        tx.connectors.sync_finished(cid, ok=True, error=None)
    return cid


@dataclass(frozen=True)
class Timing:
    #: the fastest run's wall time (time.perf_counter) and the least CPU time of any run
    #: (time.process_time: on a shared machine it says what the work cost, not what it waited)
    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.2f} s ({self.cpu:.2f})"

    def __truediv__(self, other: Timing) -> str:
        return f"{self.wall / other.wall:.2f}x ({self.cpu / other.cpu:.2f}x)"


def best_of(runs: int, work: Callable[[], T]) -> tuple[Timing, T]:
    """The best of `runs` runs of `work`, and what the last run returned."""
    walls: list[float] = []
    cpus: list[float] = []
    result: T | None = None
    for _ in range(runs):
        result = None
        gc.collect()
        start, cpu = time.perf_counter(), time.process_time()
        result = work()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    assert result is not None
    return Timing(min(walls), min(cpus)), result


def plan_lines(result: Plan) -> list[str]:
    """The whole plan as text: every decision (subject, status, reason, stage, moment, amount,
    actions with their ids and approvals...) and transition, in order."""
    return (
        [repr(d) for d in result.decisions]
        + [repr(t) for t in result.transitions]
        + list(result.notes)
    )


@dataclass
class Figures:
    database: str
    bare: Timing
    reading: Timing
    planning: Timing
    #: plan() with the cyclic garbage collector off: what its passes cost the plan
    no_gc: Timing
    invoices: int
    decisions: int
    digest: str
    counts: dict[str, int]


def measure(
    url: str, books: Books, policy: Policy, runs: int, *, profile: bool, dump: Path | None
) -> Figures:
    clock = FrozenClock(NOW - timedelta(days=3))
    store = open_store(url, clock)
    try:
        start = time.perf_counter()
        cid = fill(store, clock, books)
        print(f"  {url.split(':', 1)[0]}: books written in {time.perf_counter() - start:.1f} s")
        clock.set(NOW)
        with store.reading() as tx:
            row = tx.connectors.get(cid)
        firm: FirmZone = firm_zone(row, FIRM_ZONE, "connectors/bench.toml", "QuickBooks Online")

        def bare() -> list[Invoice]:
            with store.reading() as tx:
                return tx.records.open_invoices(cid)

        def reading() -> Snapshot:
            with store.reading() as tx:
                return snapshot(tx, tx.connectors.get(cid), policy, firm, NOW)

        bare_s, loaded = best_of(runs, bare)
        invoices = len(loaded)
        del loaded
        reading_s, snap = best_of(runs, reading)
        planning_s, result = best_of(runs, lambda: plan(snap, policy, NOW))
        # A plan makes some 600,000 objects that stay alive (decisions, actions, amounts); the
        # collector's full passes walk them and the snapshot's every few hundred thousand. What
        # that costs shows with the collector off (plan() itself makes no garbage cycles).
        del result
        gc.disable()
        try:
            no_gc_s, result = best_of(runs, lambda: plan(snap, policy, NOW))
        finally:
            gc.enable()
        if profile:
            profiler = cProfile.Profile()
            profiler.runcall(plan, snap, policy, NOW)
            stats = pstats.Stats(profiler)
            stats.sort_stats("tottime").print_stats(25)
        lines = plan_lines(result)
        if dump is not None:
            dump.write_text("\n".join(lines) + "\n")
        counts: dict[str, int] = {}
        for decision in result.decisions:
            counts[decision.status.value] = counts.get(decision.status.value, 0) + 1
        counts["transitions"] = len(result.transitions)
        counts["history"] = len(snap.history)
        return Figures(
            database=url.split(":", 1)[0].split("+", 1)[0],
            bare=bare_s,
            reading=reading_s,
            planning=planning_s,
            no_gc=no_gc_s,
            invoices=invoices,
            decisions=len(result.decisions),
            digest=hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16],
            counts=counts,
        )
    finally:
        store.close()


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema of its own in the local PostgreSQL, dropped afterwards."""
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def report(figures: list[Figures]) -> None:
    print()
    print("wall time of the fastest run (CPU time of the cheapest run):")
    print(
        "| database | open invoices | open_invoices() | snapshot() | plan() "
        "| plan / open_invoices | plan / snapshot |"
    )
    print("|---|---|---|---|---|---|---|")
    for f in figures:
        print(
            f"| {f.database} | {f.invoices:,} | {f.bare} | {f.reading} | {f.planning} "
            f"| {f.planning / f.bare} | {f.planning / f.reading} |"
        )
    print()
    print("plan() with the garbage collector off (gc.disable()), to show its share:")
    for f in figures:
        print(f"  {f.database}: {f.no_gc}, {f.no_gc / f.bare} of open_invoices()")
    print()
    for f in figures:
        said = ", ".join(f"{k} {v:,}" for k, v in f.counts.items())
        print(f"{f.database}: {f.decisions:,} decisions ({said}); plan digest {f.digest}")
    print("goals: plan() within 2x the load of the same rows, and within 1 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--postgresql", action="store_true", help="also measure PostgreSQL")
    parser.add_argument("--profile", action="store_true", help="cProfile one run of plan()")
    parser.add_argument("--dump", type=Path, help="write the whole plan to this file")
    args = parser.parse_args()
    policy = builtin_policies()["standard"]
    start = time.perf_counter()
    books = make_books(args.invoices, args.customers)
    print(
        f"books made in {time.perf_counter() - start:.1f} s: {len(books.invoices):,} open "
        f"invoices, {len(books.customers):,} customers, {len(books.holds)} holds "
        f"({len(books.broken)} more broken), {len(books.plans)} plans, "
        f"{len(books.payments)} unapplied payments, {len(books.history):,} stages done"
    )
    figures: list[Figures] = []
    with tempfile.TemporaryDirectory(prefix="plan-speed-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'arsync.db'}"
        figures.append(measure(url, books, policy, args.runs, profile=args.profile, dump=args.dump))
    if args.postgresql:
        with postgres_schema() as url:
            figures.append(measure(url, books, policy, args.runs, profile=False, dump=None))
    report(figures)


if __name__ == "__main__":
    main()
