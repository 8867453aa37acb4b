"""The write-back's pace under Xero's and QuickBooks' limits, counted from the sandbox's ledger.

About 1,000 due actions on one Xero organisation and on one QuickBooks company: each gets N
invoices (default 500), each to a customer of its own with an email address, all 35 days
overdue on Tue 24 Nov 2026 at 18:00 UTC (18:00 in London, 10:00 in Los Angeles: a business
day, inside quiet hours): the standard policy's 30-day stage is due, an email and a note per
invoice, so 2N actions. The policy is the standard one with its breaker
(`max_actions_per_run`, 50) raised to 10,000, or every action past the 50th would wait for
approval. arsync's limits are the published ones (no connector file raises them).

The sandbox runs in this process, served on loopback, on a frozen clock that only arsync's
waits move (the rate governor's sleeps advance it, as in the end-to-end tests), so 17 simulated
minutes pass in seconds; with `--latency S` every API call also moves the clock S seconds
before the platform counts it (each answer S seconds late). The company is linked as
`arsync connect --headless` links it and synced five simulated minutes before the run. Each
run is what `arsync run --once` does: an incremental sync, then plan, enqueue and dispatch (the
sync made apart so that the ledger tells its calls from the write-back's).

- xero: Xero's published limits in the sandbox (60 calls a minute per organisation, 5 at once,
  5,000 a day; the paying plan's 1,000 emails a day, which 500 emails stay under, so it is not
  raised); one run at that moment. The pace is read off the ledger as in bench/xero_pace.py.
- qbo-raw: QuickBooks' limits (500 a minute, 10 a second, 40 batches a minute) with the email
  cap set to None: one run, the raw pace and how the notes are batched.
- qbo-cap: the same with the 40 emails a day per realm of Intuit's sandbox (the sandbox's
  default): a run every day at 18:00 UTC until every action is done, day by day, with the
  email channel's park as arsync's store holds it, and how many days after its email each
  invoice's note was written.

    .venv/bin/python bench/dispatch_pace.py [--invoices 500] [--latency 0 0.5] \
        [--only xero qbo-cap qbo-raw]
"""

from __future__ import annotations

import argparse
import bisect
import math
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from starlette.types import ASGIApp, Receive, Scope, Send

import arsync.escalation
from arsync.clock import Clock
from arsync.commands import sync as sync_cmd
from arsync.config import Config, load
from arsync.logs import configure
from arsync.runtime import Runtime
from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
from arsync.sandbox.core import CompanySpec, QboLimits, XeroLimits
from arsync.sandbox.ledger import LedgerEntry
from arsync.writeback.run import UnitReport, run_once
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_sync_e2e import SECRETS, write_home
from tests.support import clock_of

#: the run's moment: Tue 24 Nov 2026, 18:00 in London, 10:00 in Los Angeles
NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
DUE = date(2026, 10, 20)  # 35 days overdue: the 30-day stage is due
MINUTE = timedelta(seconds=60)
LOS_ANGELES = ZoneInfo("America/Los_Angeles")
NAMES = {"xero": "books-xero", "qbo": "books-qbo"}
#: an API call of each platform in the ledger (not OAuth, not the control plane)
API = {"xero": "/api.xro/2.0/", "qbo": "/v3/company/"}


# -- the world ---------------------------------------------------------------------------------
def latency_layer(sandbox: Sandbox, seconds: float) -> Callable[[ASGIApp], ASGIApp]:
    """An ASGI layer that moves the frozen clock `seconds` before each API call reaches the
    platform: the call arrives (and is counted, and answered) that much later."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def layer(scope: Scope, receive: Receive, send: Send) -> None:
            path = str(scope.get("path", "")) if scope["type"] == "http" else ""
            if seconds > 0 and any(key in path for key in API.values()):
                sandbox.clock.advance(seconds)
            await app(scope, receive, send)

        return layer

    return wrap


def bench_policy() -> str:
    """The standard policy with its per-run breaker raised (1,000 actions are the point)."""
    path = Path(arsync.escalation.__file__).parent / "policies" / "standard.toml"
    text = path.read_text()
    if "max_actions_per_run = 50\n" not in text:
        raise SystemExit("the standard policy's breaker is not where this bench expects it")
    return text.replace("max_actions_per_run = 50\n", "max_actions_per_run = 10000\n")


@dataclass
class World:
    sandbox: Sandbox
    config: Config
    platform: str
    tenant: str
    invoices: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return NAMES[self.platform]

    def sync(self) -> None:
        [synced] = sync_cmd(
            self.config, [self.name], full=False, sweep=False, progress=None, clock=self.clock
        )
        if synced.error is not None:
            raise SystemExit(f"{self.name}: the sync failed: {synced.message}")

    def run(self) -> tuple[UnitReport, int]:
        """What `arsync run --once` does: its sync, then plan, enqueue and dispatch (the sync
        made apart, so that the ledger tells its calls from the write-back's: a QBO query
        carries its words in the body, which the ledger does not keep). Returns the report and
        the ledger's position between the two."""
        self.sync()
        between = self.mark()
        [report] = run_once(self.config, [self.name], clock=self.clock, sync=False)
        if report.error is not None:
            raise SystemExit(f"{self.name}: the run failed: {report.error}")
        return report, between

    @property
    def clock(self) -> Clock:
        return clock_of(self.sandbox)

    def requests(self, since: int) -> list[LedgerEntry]:
        return [
            e
            for e in self.sandbox.ledger.entries(kind="request", since_seq=since)
            if e.platform == self.platform and API[self.platform] in str(e.detail.get("path"))
        ]

    def parked(self) -> dict[str, datetime]:
        """The channels arsync's store holds closed now, until when."""
        runtime = Runtime.open(self.config, self.clock)
        try:
            with runtime.store.reading() as tx:
                row = tx.connectors.by_name(self.name)
                assert row is not None
                return {channel: until for channel, (until, _) in tx.outbox.parked(row.id).items()}
        finally:
            runtime.close()

    def mark(self) -> int:
        entries = self.sandbox.ledger.entries()
        return entries[-1].seq if entries else 0


def _xero_books(sandbox: Sandbox, tenant: str, n: int) -> list[str]:
    org = sandbox.xero.org(tenant)
    british = [c for c in org.contact_list if c.country == "United Kingdom"]
    if len(british) < n:
        raise SystemExit(f"only {len(british)} British contacts for {n} invoices")
    made = []
    for i, contact in enumerate(british[:n]):
        if not contact.email:
            email = f"accounts{i}@example.co.uk"
            sandbox.event(
                "xero",
                tenant,
                {"type": "email_change", "contact": contact.contact_id, "email": email},
            )
        inv = sandbox.event(
            "xero",
            tenant,
            {
                "type": "create_invoice",
                "contact": contact.contact_id,
                "amount": "480.00",
                "currency": "GBP",
            },
        )
        ident = str(inv["InvoiceID"])
        sandbox.event(
            "xero", tenant, {"type": "edit", "invoice": ident, "due_date": DUE.isoformat()}
        )
        made.append(ident)
    return made


def _qbo_books(sandbox: Sandbox, tenant: str, n: int) -> list[str]:
    company = sandbox.qbo.company(tenant)
    customers = [c for _, c in sorted(company.customers.items()) if c.active]
    if len(customers) < n:
        raise SystemExit(f"only {len(customers)} customers for {n} invoices")
    made = []
    for i, customer in enumerate(customers[:n]):
        if not customer.email:
            email = f"accounts{i}@example.com"
            sandbox.event(
                "qbo",
                tenant,
                {"type": "email_change", "customer": str(customer.id), "email": email},
            )
        inv = sandbox.event(
            "qbo",
            tenant,
            {
                "type": "create_invoice",
                "customer": str(customer.id),
                "amount": "480.00",
                "due_date": DUE.isoformat(),
            },
        )
        made.append(str(inv["invoice"]))
    return made


@contextmanager
def world(
    platform: str, n: int, *, latency: float = 0.0, qbo: QboLimits | None = None
) -> Iterator[World]:
    """One company of `n` due invoices in a sandbox served on loopback, linked, synced once
    five simulated minutes before NOW."""
    customers = math.ceil(n * 1.4) + 20 if platform == "xero" else math.ceil(n * 1.05) + 10
    sandbox = Sandbox(
        SandboxSettings(
            seed=7,
            start=NOW - timedelta(days=1),
            frozen=True,
            companies=[CompanySpec(platform, 7, customers, 0)],
            qbo=qbo or QboLimits(),
            xero=XeroLimits(),  # Xero's published limits
        )
    )
    os.environ.update(SECRETS)
    configure(level="error", fmt="json")
    with (
        tempfile.TemporaryDirectory() as tmp,
        SandboxServer(sandbox, wrap=latency_layer(sandbox, latency)) as server,
    ):
        home = Path(tmp) / "home"
        write_home(home, server.url, f"sqlite:///{Path(tmp) / 'arsync.db'}")
        other = "qbo" if platform == "xero" else "xero"
        (home / "connectors" / f"{NAMES[other]}.toml").unlink()
        (home / "config" / "policies").mkdir()
        (home / "config" / "policies" / "bench.toml").write_text(bench_policy())
        path = home / "connectors" / f"{NAMES[platform]}.toml"
        text = path.read_text().replace("per_minute = 100000\nconcurrent = 5\n", "")
        path.write_text('policy = "bench"\n' + text)  # the published limits: none raised
        connect(home, NAMES[platform])
        config = load(home)
        [tenant] = [t.tenant_id for t in sandbox.tenants() if t.platform == platform]
        made = World(sandbox, config, platform, tenant)
        books = _xero_books if platform == "xero" else _qbo_books
        made.invoices = books(sandbox, tenant, n)
        sandbox.clock.set(NOW - timedelta(minutes=5))
        made.sync()
        sandbox.clock.set(NOW)
        yield made


# -- reading the ledger ------------------------------------------------------------------------
@dataclass
class Pace:
    calls: int
    limited: int
    busiest: int
    mean: float
    fewest: int
    span: timedelta


def pace(entries: Sequence[LedgerEntry]) -> Pace:
    """From the ledger: the most calls any 60 s held, and how many the run's minutes held on
    average (every 60 s starting at a call, up to the last call), as bench/xero_pace.py."""
    times = sorted(e.at for e in entries)
    if not times:
        return Pace(0, 0, 0, 0.0, 0, timedelta(0))

    def held(first: datetime) -> int:
        return bisect.bisect_left(times, first + MINUTE) - bisect.bisect_left(times, first)

    minutes = [held(t) for t in times if t + MINUTE <= times[-1]]
    return Pace(
        calls=len(times),
        limited=sum(1 for e in entries if e.status == 429),
        busiest=max(held(t) for t in times),
        mean=sum(minutes) / len(minutes) if minutes else float("nan"),
        fewest=min(minutes) if minutes else 0,
        span=times[-1] - times[0],
    )


def kind(e: LedgerEntry, between: int) -> str:
    """What an API call of a run was: its sync's (up to `between`), a fresh read, an email, a
    note (Xero) or a batch of notes (QBO), or another."""
    if e.seq <= between:
        return "sync"
    path, query = str(e.detail.get("path")), str(e.detail.get("query"))
    if path.endswith(("/Email", "/send")):
        return "email"
    if path.endswith(("/History", "/attachable")):
        return "note"  # Xero's one a call; QBO's when a batch would hold only one
    if path.endswith("/batch"):
        return "batch"
    if (path.endswith("/Invoices") and "IDs=" in query) or path.endswith("/query"):
        return "fresh"
    return "other"


def performed(world: World, since: int) -> tuple[int, int]:
    """(emails, notes) the platform performed since `since`, from the ledger."""
    entries = world.sandbox.ledger.entries(since_seq=since)
    mine = [e for e in entries if e.platform == world.platform]
    return (
        sum(1 for e in mine if e.kind == "email_sent"),
        sum(1 for e in mine if e.kind == "note_added"),
    )


def batch_items(world: World, since: int) -> list[int]:
    """Items of each QBO `POST /batch` since `since`: the notes the ledger recorded while the
    batch was served (before its request entry, which is written as the answer leaves)."""
    sizes: list[int] = []
    count = 0
    for e in world.sandbox.ledger.entries(since_seq=since):
        if e.platform != "qbo":
            continue
        if e.kind == "note_added":
            count += 1
        elif e.kind == "request":
            if str(e.detail.get("path")).endswith("/batch"):
                sizes.append(count)
            count = 0
    return sizes


def note_lag(world: World, since: int) -> Counter[int]:
    """For each invoice emailed since `since`: how many days after its email its note was
    written (from the ledger's email_sent and note_added entries)."""
    emailed: dict[str, date] = {}
    noted: dict[str, date] = {}
    for e in world.sandbox.ledger.entries(since_seq=since):
        if e.platform != world.platform:
            continue
        if e.kind == "email_sent":
            emailed.setdefault(str(e.detail.get("invoice")), e.at.date())
        elif e.kind == "note_added":
            for ref in e.detail.get("refs") or []:
                noted.setdefault(str(ref).split(":", 1)[1], e.at.date())
    return Counter((noted[i] - day).days for i, day in emailed.items() if i in noted)


def minutes(span: timedelta) -> str:
    return f"{span.total_seconds() / 60:.1f} min"


# -- the three runs ----------------------------------------------------------------------------
def breakdown(kinds: Counter[str]) -> str:
    words = {
        "fresh": "fresh reads",
        "email": "emails",
        "note": "single notes" if kinds["batch"] else "notes",
        "batch": "note batches",
        "other": "other",
        "sync": "the run's sync",
    }
    return " + ".join(f"{words[k]} {kinds[k]}" for k in words if kinds[k])


def one_run(w: World, label: str, limit: int) -> None:
    """One `run --once` at NOW, every action done in it: the calls, the pace, calls per action."""
    start, mark, wall = w.sandbox.clock.now(), w.mark(), time.monotonic()
    report, between = w.run()
    wall = time.monotonic() - wall
    took = w.sandbox.clock.now() - start
    calls = w.requests(mark)
    kinds = Counter(kind(e, between) for e in calls)
    emails, notes = performed(w, mark)
    actions = emails + notes
    work = sum(n for k, n in kinds.items() if k != "sync")
    p = pace(calls)
    print(f"\n{label}: {actions} actions performed ({emails} emails, {notes} notes)", flush=True)
    print(f"  calls: {len(calls)} = {breakdown(kinds)}; 429s: {p.limited}")
    if kinds["batch"]:
        sizes = batch_items(w, between)
        print(f"  items per batch: {dict(sorted(Counter(sizes).items()))} ({sum(sizes)} notes)")
    print(f"  write-back calls per action: {work / actions:.3f} ({work} / {actions})")
    held = (
        f"a minute of the run held {p.mean:.1f} calls on average ({p.mean / limit:.1%} of "
        f"{limit}), {p.fewest} at the least"
        if p.fewest
        else "the run was over within a minute"
    )
    print(
        f"  pace: most in any 60 s {p.busiest}; {held}; first to last call {minutes(p.span)}; "
        f"the run {minutes(took)} simulated, {wall:.0f} s real"
    )
    d = report.dispatched
    if d is not None and (d.stopped or d.released):
        print(f"  stopped: {d.stopped}; released: {d.released}")


def bench_xero(n: int, latency: float) -> None:
    with world("xero", n, latency=latency) as w:
        one_run(w, f"xero, {n} invoices, {latency:.1f} s simulated latency", 60)


def bench_qbo_raw(n: int) -> None:
    with world("qbo", n, qbo=QboLimits(emails_per_day=None)) as w:
        one_run(w, f"qbo, {n} invoices, no email cap", 500)


def bench_qbo_cap(n: int) -> None:
    """A run each day at 18:00 UTC (10:00 in Los Angeles) until every action is done."""
    with world("qbo", n) as w:
        first, wall = w.mark(), time.monotonic()
        totals: Counter[str] = Counter()
        refused_all = limited = 0
        print(f"\nqbo, {n} invoices, Intuit's sandbox cap of 40 emails a day:", flush=True)
        for k in range(40):
            day = NOW + timedelta(days=k)
            if k:
                w.sandbox.clock.set(day)
            mark = w.mark()
            report, between = w.run()
            calls = w.requests(mark)
            kinds = Counter(kind(e, between) for e in calls)
            totals += kinds
            emails, notes = performed(w, mark)
            refused = sum(1 for e in calls if kind(e, between) == "email" and e.status == 400)
            refused_all += refused
            limited += sum(1 for e in calls if e.status == 429)
            sizes = batch_items(w, between)
            d = report.dispatched
            said = f"; {d.stopped}" if d is not None and d.stopped else ""
            for channel, until in w.parked().items():
                local = until.astimezone(LOS_ANGELES)
                said += f"; {channel} parked until {local:%a %d %b %H:%M} in Los Angeles"
            print(
                f"  {day:%a %d %b}: emails {emails:3} ({refused} refused by the cap), notes "
                f"{notes:3} in batches {sizes}; calls {breakdown(kinds)}{said}",
                flush=True,
            )
            total_emails, total_notes = performed(w, first)
            if total_emails >= n and total_notes >= n:
                break
        actions = total_emails + total_notes
        work = sum(c for k, c in totals.items() if k != "sync")
        lag = note_lag(w, first)
        print(
            f"  all: {actions} actions ({total_emails} emails, {total_notes} notes) over {k + 1} "
            f"days; calls {breakdown(totals)}; {refused_all} sends refused by the cap; "
            f"write-back calls per action {work / actions:.3f}; 429s {limited}; "
            f"{time.monotonic() - wall:.0f} s real"
        )
        print(
            f"  a note written the day of its invoice's email: {lag[0]} of {sum(lag.values())}; "
            "days later: " + ", ".join(f"{d} days {c}" for d, c in sorted(lag.items()) if d)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--invoices", type=int, default=500, help="per company (2 actions each)")
    parser.add_argument("--latency", type=float, nargs="+", default=[0.0, 0.5])
    parser.add_argument("--only", nargs="+", choices=["xero", "qbo-cap", "qbo-raw"], default=None)
    args = parser.parse_args()
    chosen = args.only or ["xero", "qbo-cap", "qbo-raw"]
    if "xero" in chosen:
        for latency in args.latency:
            bench_xero(args.invoices, latency)
    if "qbo-raw" in chosen:
        bench_qbo_raw(args.invoices)
    if "qbo-cap" in chosen:
        bench_qbo_cap(args.invoices)


if __name__ == "__main__":
    main()
