"""`arsync demo`: 100 days of `arsync run`, the service itself, on the sandbox's two companies.

The sandbox starts on a free loopback port with a QuickBooks Online company and a Xero
organisation, and a mail server of its own for the letters. The demo sets arsync up in a
throw-away home as a firm would: `config/arsync.toml` (the store, the mail server, no health
port), one file per company in `connectors/` pointing at the sandbox, the client secrets and
the token key in `secrets/`; it links both companies as `arsync connect` stores a consent, and
starts the service's own loop (`Daemon`, what `arsync run` runs) on the sandbox's clock.

The clock is frozen and moved by the demo. At the start the service's first cycle syncs each
company whole and works off its backlog. Then, once a day, at 09:00 where the firms' working day
begins last (in Los Angeles; 17:00 in London, inside both firms' day) the customers and the
owners act, and the demo lets the service run until it has nothing left to do: each company's
cycle (sync; record what the ledger and the calendar settled; plan under the standard policy;
enqueue; dispatch: the reminder emailed by the platform, a dated note on the invoice, a call
task, a letter through the mail server, the agency hand-over). It also wakes the service at
each moment an action was put off to (a channel the platform's daily cap closed, a contact
waiting for the customer's morning). The service's other cycles, every 15 minutes of the
clock, are skipped: they would send the day's reminders at the start of the working day, not
at the demo's moment, and cost a sync each.

The customers and the owners act as they would: one invoice in three is paid a few days after
its first reminder; on QuickBooks a customer disputes an invoice, and another pays in the
middle of the service's cycle, after its sync has read the books and before the reminder goes;
on Xero one promises to pay and pays before the date; the owner approves what the policy's
breaker held back at the next day's business, and one hand-over. What the service did is read
back from its store, the platforms and the mail server and told week by week; the notes on two
invoices are read back from the platforms, and the receivables are aged.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent import futures
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from arsync.clock import Clock, FollowingClock, SystemClock
from arsync.collecting import firm_of
from arsync.config import Config, load
from arsync.config.models import CONNECTORS_DIR, SETTINGS_FILE
from arsync.connect import Connection, store_connection
from arsync.connectors.base import PLATFORM_NAMES, FoundNote, Writer
from arsync.connectors.oauth import TokenVault, load_key
from arsync.connectors.oauth.app import TokenRecord
from arsync.daemon import Daemon, Notifier
from arsync.domain import CompanyInfo, Customer, HoldKind, HoldState, Invoice, Kind
from arsync.escalation.calendar import Calendar
from arsync.escalation.planner import plan
from arsync.escalation.policy import ActionKind, Policy
from arsync.escalation.reading import FirmZone, snapshot
from arsync.sandbox.core import DEMO_CLIENTS, Sandbox, SandboxSettings
from arsync.sandbox.ledger import LedgerEntry
from arsync.sandbox.mail import MailSink, Received
from arsync.sandbox.platform import TenantInfo
from arsync.sandbox.server import SandboxServer
from arsync.status import ConnectorStatus, gather
from arsync.store import ConnectorRow, RecordCounts, open_store
from arsync.store.outbox import OutboxRow
from arsync.store.states import OutboxState
from arsync.writeback.ledger import RECORDED, record_in_ledger

if TYPE_CHECKING:
    from rich.console import Console

S = OutboxState
#: how many days the demo walks, and when each firm's day of business happens (its own zone)
DAYS = 100
BUSINESS_AT = time(9, 0)
#: one invoice in this many is paid a few days (PAY_DELAY) after its first reminder
PAYS_AFTER_REMINDER = 3
PAY_DELAY = (2, 5)
#: who approves and records in the demo, for the paper trail
OWNER = "the firm's owner"
#: the sandbox's mail server takes plain SMTP on loopback only
MAIL_HOST = "127.0.0.1"
#: the address letters come from (each under its company's name, replies to the company)
MAIL_FROM = "letters@arsync-demo.example"
#: the words of the planner's breaker, whose actions the owner approves the next day
OVER_CAP = "over the policy's cap"
#: the kinds a week's line counts, when done
COUNTED = {"email": "emailed", "note": "notes", "call": "calls", "letter": "letters"}
#: a story needs this many days of the walk before it: the first days are the backlog's
STORY_FROM = 7
#: each platform's name in a connector file, and so in the demo's connector names
CONFIG_PLATFORM = {"qbo": "quickbooks", "xero": "xero"}
#: the stage whose reminder the QuickBooks customer pays in the middle of
IN_FLIGHT_STAGE = "overdue-60"


def sandbox_time(sandbox: Sandbox) -> Clock:
    """arsync's clock on the sandbox's: what it reads, and its waits move a frozen sandbox."""

    def sleep(seconds: float) -> None:
        if sandbox.clock.frozen:
            sandbox.clock.advance(seconds)
        else:
            SystemClock().sleep(seconds)

    return FollowingClock(sandbox.clock.now, sandbox.clock.monotonic, sleep)


def connector_name(platform: str) -> str:
    return f"demo-{CONFIG_PLATFORM[platform]}"


# -- what the demo reports --------------------------------------------------------------------
@dataclass(frozen=True)
class StageDone:
    """A stage of the policy carried out on an invoice: its note written (and, when the stage
    emails, whether the platform emailed it)."""

    day: date
    invoice_id: str
    number: str
    stage: str
    title: str
    emailed: bool


@dataclass(frozen=True)
class Paid:
    """A payment the demo made in the sandbox (a customer paying), and when."""

    at: datetime
    invoice_id: str
    number: str
    amount: Decimal
    currency: str


@dataclass(frozen=True)
class Shown:
    """An invoice's notes as the platform shows them, read back through its API."""

    invoice_id: str
    number: str
    customer: str
    notes: tuple[FoundNote, ...]


@dataclass(frozen=True)
class Pack:
    """The hand-over's evidence pack: its folder's name and files."""

    customer: str
    folder: str
    files: tuple[str, ...]


@dataclass(frozen=True)
class FirstSync:
    """The service's first sync of a company, as its store recorded the run."""

    outcome: str
    message: str = ""
    #: records stored, and the API calls arsync made for them
    records: int = 0
    calls: int = 0


@dataclass
class CompanyDemo:
    """What the service did for one company, for `render` (and the tests)."""

    tenant: TenantInfo
    name: str
    first: FirstSync
    first_counts: RecordCounts | None = None
    zone: str = ""
    #: the walk's first and last day, in the firm's zone
    start: date | None = None
    end: date | None = None
    #: what arsync did, by the Monday of each week: emailed, notes, calls, letters,
    #: handovers, paid (customers paying), skipped_paid (not sent: paid by then)
    weeks: dict[date, Counter[str]] = field(default_factory=dict)
    stages: list[StageDone] = field(default_factory=list)
    payments: list[Paid] = field(default_factory=list)
    #: when the customers and the owner act each day, in the firm's zone
    business_at: str = ""
    #: the invoice of the company's story: disputed (QuickBooks), promised and paid (Xero)
    story_invoice: str | None = None
    #: dated lines: the business that happened and what arsync did about it
    highlights: list[tuple[datetime, str]] = field(default_factory=list)
    #: days on which the email channel was parked by the platform's daily cap
    parked: set[date] = field(default_factory=set)
    #: the service's cycles for the company (each began with a sync), and those that failed
    syncs: int = 0
    failed_syncs: list[str] = field(default_factory=list)
    #: every API call to the company, as the sandbox counted them (not arsync's own count)
    api_calls: int = 0
    #: reminders not emailed: no address on file (a call task instead), or a payment waiting
    #: to be applied to the invoice
    no_address: int = 0
    in_flight: int = 0
    #: hand-overs the owner has not approved by the end
    awaiting_handovers: int = 0
    pack: Pack | None = None
    shown: Shown | None = None
    letters: list[Received] = field(default_factory=list)
    from_address: str = ""
    status: ConnectorStatus | None = None
    today: date | None = None
    now: datetime | None = None

    def week(self, day: date) -> Counter[str]:
        return self.weeks.setdefault(day - timedelta(days=day.weekday()), Counter())


@dataclass
class DemoRun:
    """The whole demo: both companies, the letters the sandbox's mail server received, and
    the service that did it."""

    companies: list[CompanyDemo]
    #: every message the sandbox's mail server received
    letters: list[Received]
    mail_port: int
    days: int = DAYS
    #: the service's name as the outbox's claims carry it, and the passes of its loop
    owner: str = ""
    passes: int = 0
    #: the store's URL (in the demo's home, gone with it unless the caller keeps the home)
    store_url: str = ""
    #: the sandbox's ledger at the end of the service's run (the demo's read-back follows)
    ledger_seq: int = 0


# -- the firm's set-up ----------------------------------------------------------------------------
def _toml(value: str) -> str:
    # a TOML basic string: JSON's escapes are TOML's too
    return json.dumps(value, ensure_ascii=False)


def _private(path: Path, text: str) -> None:
    """A secret's file, made readable by its owner only (arsync refuses anything else)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def write_home(
    home: Path, server_url: str, tenants: Iterable[TenantInfo], mail_port: int
) -> dict[str, TenantInfo]:
    """The arsync home of a firm served from this machine: its settings, one connector file
    per company on the sandbox, and the client secrets; the companies by connector name."""
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / CONNECTORS_DIR).mkdir(exist_ok=True)
    secrets = home / "secrets"
    secrets.mkdir(mode=0o700, exist_ok=True)
    (home / SETTINGS_FILE).write_text(
        "# a throw-away home for `arsync demo`; the store is the default, state/arsync.db\n"
        "[daemon]\n"
        "# no health and metrics port: the service runs inside the demo's own process\n"
        'listen = ""\n'
        "# the store is thrown away after the demo: tidied once, not every day of the walk\n"
        'housekeeping = "365d"\n'
        "[log]\n"
        'level = "warning"\n'
        "[mail]\n"
        f"host = {_toml(MAIL_HOST)}\n"
        f"port = {mail_port}\n"
        "# the sandbox's mail server is on this machine and speaks plain SMTP\n"
        'security = "none"\n'
        f"from_address = {_toml(MAIL_FROM)}\n"
    )
    named: dict[str, TenantInfo] = {}
    for tenant in tenants:
        name = connector_name(tenant.platform)
        client = DEMO_CLIENTS[tenant.platform]
        _private(secrets / f"{name}.secret", client.client_secret)
        # QuickBooks does not say the company's zone: its connector file does
        zone = f"timezone = {_toml(tenant.timezone)}\n" if tenant.platform == "qbo" else ""
        (home / CONNECTORS_DIR / f"{name}.toml").write_text(
            f"platform = {_toml(CONFIG_PLATFORM[tenant.platform])}\n"
            f"display_name = {_toml(tenant.name)}\n"
            f"{zone}"
            "[oauth]\n"
            f"client_id = {_toml(client.client_id)}\n"
            f'client_secret_file = "secrets/{name}.secret"\n'
            "[endpoints]\n"
            f"sandbox = {_toml(server_url)}\n"
        )
        named[name] = tenant
    return named


def connect(config: Config, sandbox: Sandbox, tenants: dict[str, TenantInfo], clock: Clock) -> None:
    """Link each company as `arsync connect` leaves it once its owner has clicked Allow: the
    company's facts and the tokens, encrypted under the home's key (made now, as the first
    connect makes it), stored in one transaction."""
    settings = config.settings
    fernet = load_key(settings.key_location(), credential=settings.secrets.credential, create=True)
    store = open_store(settings.store_url(), clock)
    try:
        vault = TokenVault(store, fernet)
        for name, tenant in tenants.items():
            issued = sandbox.connect(tenant.platform, tenant.tenant_id)
            now = clock.now()
            tokens = TokenRecord(
                access_token=issued.access_token,
                refresh_token=issued.refresh_token,
                access_expires_at=now + timedelta(seconds=issued.expires_in),
                refresh_expires_at=now + timedelta(seconds=issued.refresh_expires_in),
                refreshed_at=now,
                connected_at=now,
                scope=" ".join(issued.scopes),
            )
            connection = Connection(
                platform=tenant.platform,
                tenant_id=tenant.tenant_id,
                company=CompanyInfo(tenant.name, tenant.base_currency, tenant.country),
                tokens=tokens,
                redirect_uri="http://127.0.0.1/callback",
            )
            store_connection(store, vault, name, config.connector(name).platform_code, connection)
    finally:
        store.close()


def until_idle(daemon: Daemon) -> int:
    """Step the service's loop until nothing runs and nothing is due; the passes it took.

    What `Daemon.settle` does, but waiting on the cycles themselves: its loop looks again every
    FOLLOW_POLL real seconds while work runs, seconds of nothing over the demo's hundreds of
    wake-ups."""
    passes = daemon.passes
    while True:
        daemon.step()
        if daemon.idle():
            return daemon.passes - passes
        running = [w.busy for w in daemon.watched.values() if w.busy is not None]
        if not running:
            # only the service's own jobs (housekeeping, the digest) are left: its loop waits
            return daemon.passes - passes + daemon.settle()
        futures.wait(running, return_when=futures.FIRST_COMPLETED)


# -- the walk -------------------------------------------------------------------------------------
@dataclass
class _InFlight:
    """A payment armed to land in the middle of the service's cycle: right after its sync's
    last read of the books, before the dispatcher reads the invoice again to send."""

    invoice_id: str
    amount: Decimal
    currency: str
    stop: Callable[[], None]
    #: when the payment was made (None: the moment never came)
    at: datetime | None = None


@dataclass
class _Company:
    """One company during the walk: its connector and what is scheduled for it."""

    demo: CompanyDemo
    row: ConnectorRow
    firm: FirmZone
    policy: Policy
    #: the firm's business days (the policy's weekdays, the country's public holidays)
    calendar: Calendar
    #: the sandbox's ledger read up to here
    seq: int
    #: business to happen at BUSINESS_AT on a day
    business: dict[date, list[Callable[[], object]]] = field(default_factory=dict)
    #: invoices that had their first reminder in the demo
    reminded: set[str] = field(default_factory=set)
    #: invoices whose customer will pay them (none of them is picked for a story)
    paying: set[str] = field(default_factory=set)
    #: the invoice of the company's story (a dispute, a promise), and its hold
    story: str | None = None
    story_hold: int | None = None
    #: one payment that lands in the middle of a cycle (QuickBooks), once its skip is seen
    in_flight: _InFlight | None = None
    paid_in_flight: bool = False
    #: over-cap actions seen, how many the owner approves the next day, and when they were
    capped_seen: set[str] = field(default_factory=set)
    capped: int = 0
    capped_on: date | None = None
    #: the hand-over the owner approved, until the service has carried it out
    handover: str | None = None
    #: what arsync did about a recorded hold, said once its note is in the ledger
    recorded: dict[str, Callable[[], str]] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return self.firm.zone

    @property
    def id(self) -> int:
        return self.row.id

    def on(self, day: date, happen: Callable[[], object]) -> None:
        """`happen` at BUSINESS_AT on `day`, or on the firm's next business day: customers pay
        and the owner works on working days, not at weekends or on public holidays."""
        self.business.setdefault(self.working(day), []).append(happen)

    def working(self, day: date, step: int = 1) -> date:
        """`day` if the firm works then, else the next business day (or, `step` -1, the one
        before)."""
        while not self.calendar.business_day(day):
            day += timedelta(days=step)
        return day


class _Walk:
    """The days: each firm's business at 09:00, the service's loop run until it is idle."""

    def __init__(
        self,
        server: SandboxServer,
        home: Path,
        tenants: dict[str, TenantInfo],
        mail: MailSink,
        seed: int,
    ) -> None:
        self.server = server
        self.sandbox = server.sandbox
        self.home = home
        self.tenants = tenants
        self.mail = mail
        self.random = random.Random(seed)
        self.clock = sandbox_time(self.sandbox)
        self.config = load(home)
        # what the firm's people see and do (`arsync outbox`, `approve`, `dispute`...) goes
        # through a store of their own, as a command run beside the service does
        self.store = open_store(self.config.settings.store_url(), self.clock)
        self.daemon = Daemon(home, self.config, clock=self.clock, notifier=Notifier(None))
        self.companies: list[_Company] = []
        self.demos: list[CompanyDemo] = []
        self.handed_over = False
        self.started = False
        self.ledger_seq = 0

    # -- set-up -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the service; its first cycle syncs each company whole and works off the
        backlog."""
        seq = self.sandbox.ledger.last_seq
        self.daemon.start()
        self.started = True
        at = self.clock.now()
        until_idle(self.daemon)
        for name, tenant in self.tenants.items():
            self.demos.append(self._company(name, tenant, seq))
        self._observe(at)

    def _company(self, name: str, tenant: TenantInfo, seq: int) -> CompanyDemo:
        connector = self.config.connector(name)
        with self.store.reading() as tx:
            row = tx.connectors.by_name(name)
            runs = tx.runs.of(row.id) if row is not None else []
            counts = tx.records.counts(row.id) if row is not None else None
        first = min(runs, key=lambda r: r.id, default=None)
        if row is None or first is None or first.outcome != "ok":
            why = (first.error if first is not None else None) or "the service did not sync it"
            return CompanyDemo(tenant, name, FirstSync("failed", why))
        demo = CompanyDemo(
            tenant,
            name,
            FirstSync("ok", records=first.changed, calls=first.api_calls or 0),
            first_counts=counts,
            from_address=MAIL_FROM,
        )
        firm = firm_of(connector, row)
        demo.zone = firm.zone.key
        policy = self.config.policy_of(connector)
        calendar = Calendar.of(policy.calendar, row.country, row.region)
        self.companies.append(_Company(demo, row, firm, policy, calendar, seq))
        return demo

    # -- the days ---------------------------------------------------------------------------------
    def walk(self, days: int) -> None:
        """Each day at the firms' moment of business: the customers and the owners act, then
        the service runs until it is idle."""
        now = self.clock.now()
        if not self.companies:
            return
        for company in self.companies:
            company.demo.start = now.astimezone(company.zone).date()
            company.demo.end = company.demo.start + timedelta(days=days - 1)
        # one moment a day for every firm: BUSINESS_AT where it comes last, inside the others'
        # working day too (09:00 in Los Angeles is 17:00 in London), so that the service's
        # cycles there serve every firm at once
        zone = max(
            (c.zone for c in self.companies),
            key=lambda z: datetime.combine(now.date(), BUSINESS_AT, z),
        )
        first = now.astimezone(zone).date()
        for n in range(days):
            moment = datetime.combine(first + timedelta(days=n), BUSINESS_AT, zone)
            if moment <= now:
                continue  # the day's business was done before the demo began
            self._advance(moment)
            for company in self.companies:
                local = moment.astimezone(company.zone)
                company.demo.business_at = company.demo.business_at or f"{local:%H:%M}"
                self._business(company, local.date())
            self._serve()

    def _advance(self, to: datetime) -> None:
        """Move the clock to `to`, waking the service on the way at each moment an action was
        put off to (at its next cycle from then)."""
        clock = self.sandbox.clock
        while True:
            wake = self._next_wake()
            due = self.daemon.next_due()
            if wake is None or wake >= to:
                break
            moment = max(wake, due) if due is not None else wake
            if moment >= to:
                break
            clock.set(moment)
            self._serve()
        if to > clock.now():
            clock.set(to)

    def _next_wake(self) -> datetime | None:
        """The first moment after now an action waits for: a release's, a retry's, a planned
        action's."""
        now = self.clock.now()
        with self.store.reading() as tx:
            waiting = [
                r
                for company in self.companies
                for r in tx.outbox.of(company.id, states=(S.READY, S.RETRYING, S.PLANNED))
            ]
        moments = [
            m
            for r in waiting
            if (m := r.at if r.state is S.PLANNED else r.next_at) is not None and m > now
        ]
        return min(moments, default=None)

    def _serve(self) -> None:
        """Let the service run until it is idle, then see what it did."""
        at = self.clock.now()
        until_idle(self.daemon)
        self._observe(at)

    def _business(self, company: _Company, day: date) -> None:
        """The day's business before the service's cycle: the owner's approvals, customers
        paying, disputing, promising."""
        self._approve_capped(company, day)
        self._approve_handover(company)
        for happen in company.business.pop(day, []):
            happen()
        self._arm_in_flight(company, day)

    # -- what the service did ---------------------------------------------------------------------
    def _observe(self, since: datetime) -> None:
        """After the service went idle: what it did since `since`, as the firm sees it."""
        last = self.sandbox.ledger.last_seq
        for company in self.companies:
            self._observed(company, since, last)

    def _observed(self, company: _Company, since: datetime, last: int) -> None:
        demo = company.demo
        day = self.clock.now().astimezone(company.zone).date()
        tenant = demo.tenant
        emailed = [
            e.idempotency_key
            for e in self.sandbox.ledger.entries(
                platform=tenant.platform,
                kind="email_sent",
                tenant=tenant.tenant_id,
                since_seq=company.seq,
            )
            if e.seq <= last and e.idempotency_key
        ]
        company.seq = last
        with self.store.reading() as tx:
            sent = tx.outbox.existing(company.id, emailed)
            waiting = tx.outbox.of(company.id, states=(S.AWAITING_APPROVAL,))
            recorded = tx.outbox.existing(company.id, list(company.recorded))
            if "email" in tx.outbox.parked(company.id):
                demo.parked.add(day)
        for key in emailed:
            row = sent.get(key)
            if row is not None and row.invoice_id and row.invoice_id not in company.reminded:
                company.reminded.add(row.invoice_id)
                self._after_first_reminder(company, day, row.invoice_id, row.stage)
        capped = [
            r
            for r in waiting
            if (r.approval or "").startswith(OVER_CAP) and r.id not in company.capped_seen
        ]
        if capped:
            self._capped(company, since, capped)
        for ident, row in recorded.items():
            if row.state is S.DONE:
                self._say(company, company.recorded.pop(ident)())
        self._story_settled(company)
        self._in_flight_seen(company)
        if company.handover is not None:
            self._handover_seen(company, company.handover)

    def _capped(self, company: _Company, since: datetime, capped: list[OutboxRow]) -> None:
        company.capped_seen.update(r.id for r in capped)
        company.capped += len(capped)
        company.capped_on = self.clock.now().astimezone(company.zone).date()
        with self.store.reading() as tx:
            added = [r for r in tx.outbox.of(company.id) if r.created_at >= since]
        # what the cap counts: not the hand-overs, which always wait for a person
        due = sum(1 for r in added if not r.approval or r.approval.startswith(OVER_CAP))
        self._say(
            company,
            f"{due} actions were due at once (the books' backlog), over the standard "
            f"policy's cap of {company.policy.rules.max_actions_per_run} a run: {len(capped)} "
            "waited for the owner's approval",
        )

    def _handover_seen(self, company: _Company, ident: str) -> None:
        with self.store.reading() as tx:
            row = tx.outbox.get(company.id, ident)
        if row is None or row.state is not S.DONE:
            return
        company.handover = None
        result = row.result
        if not isinstance(result, dict) or not result.get("pack"):
            return
        path = Path(str(result["pack"]))
        files = tuple(sorted(p.name for p in path.iterdir())) if path.is_dir() else ()
        with self.store.reading() as tx:
            found = tx.records.by_ids(company.id, Kind.CUSTOMER, [row.customer_id])
        customer = found.get(row.customer_id)
        name = customer.name if isinstance(customer, Customer) else row.customer_id
        company.demo.pack = Pack(name, path.name, files)
        notes = int(result.get("notes") or 0)
        self._say(
            company,
            f"arsync handed {name} over: the evidence pack {path.name}/ "
            f"({', '.join(files)}), the customer paused, the hand-over noted on its {notes} "
            f"open invoice{'s' if notes != 1 else ''}",
        )

    def _after_first_reminder(
        self, company: _Company, day: date, invoice_id: str, stage: str
    ) -> None:
        """One invoice in PAYS_AFTER_REMINDER is paid a few days after its first reminder;
        the first other one reminded at 30 days once the backlog is behind starts the
        company's story (a dispute on QuickBooks, a promise on Xero)."""
        if len(company.reminded) % PAYS_AFTER_REMINDER == 1:
            company.paying.add(invoice_id)
            later = day + timedelta(days=self.random.randint(*PAY_DELAY))
            company.on(later, lambda: self._pay(company, invoice_id))
            return
        start = company.demo.start or day
        if company.story is None and stage == "overdue-30" and day >= start + timedelta(STORY_FROM):
            company.story = company.demo.story_invoice = invoice_id
            soon = day + timedelta(days=2)
            if company.demo.tenant.platform == "qbo":
                company.on(soon, lambda: self._dispute(company, invoice_id))
            else:
                company.on(soon, lambda: self._promise(company, invoice_id))

    # -- the customers --------------------------------------------------------------------------
    def _pay(self, company: _Company, invoice_id: str) -> Paid | None:
        """The customer pays the invoice in full in the ledger (nothing if nothing is owed)."""
        tenant = company.demo.tenant
        owed = _owed(self.sandbox, tenant, invoice_id)
        if owed is None:
            return None
        self.sandbox.event(
            tenant.platform, tenant.tenant_id, {"type": "payment", "invoice": invoice_id}
        )
        return self._paid(company, invoice_id, *owed, self.sandbox.clock.now())

    def _paid(
        self, company: _Company, invoice_id: str, amount: Decimal, currency: str, at: datetime
    ) -> Paid:
        paid = Paid(at, invoice_id, self._number(company, invoice_id), amount, currency)
        company.demo.payments.append(paid)
        company.demo.week(at.astimezone(company.zone).date())["paid"] += 1
        return paid

    def _arm_in_flight(self, company: _Company, day: date) -> None:
        """Once, on QuickBooks: a customer pays an invoice whose 60-day reminder is due, in
        the middle of the service's next cycle: after its sync has read the books, before the
        dispatcher reads the invoice again to send."""
        start = company.demo.start or day
        if (
            company.paid_in_flight
            or company.in_flight is not None
            or company.demo.tenant.platform != "qbo"
            or day < start + timedelta(STORY_FROM)
        ):
            return
        watched = self.daemon.watched.get(company.demo.name)
        now = self.clock.now()
        # a cycle with a full pass reads the books otherwise: another day
        if watched is None or not watched.cycle.due(now) or watched.full.due(now):
            return
        with self.store.reading() as tx:
            row = tx.connectors.get(company.id)
            snap = snapshot(tx, row, company.policy, company.firm, now)
            cursor = tx.records.cursor(company.id) or {}
        due = [
            a
            for a in plan(snap, company.policy, now).actions()
            if a.kind is ActionKind.EMAIL
            and a.stage == IN_FLIGHT_STAGE
            and a.invoice_id
            and a.invoice_id not in company.paying
            and a.invoice_id != company.story
        ]
        with self.store.reading() as tx:
            queued = tx.outbox.existing(company.id, (a.id for a in due))
        chosen = next((a.invoice_id for a in due if a.id not in queued and a.invoice_id), None)
        owed = _owed(self.sandbox, company.demo.tenant, chosen) if chosen else None
        if chosen is None or owed is None:
            return
        # the sync's last read: the sweep of open invoices when one is due, else the changes
        swept = cursor.get("swept_at")
        every = self.config.connector(company.demo.name).sweep_interval
        sweep = not isinstance(swept, str) or now - datetime.fromisoformat(swept) >= every
        tenant = company.demo.tenant.tenant_id
        amount, currency = owed

        # the cycle's sync asks for the changes, then (when due) lists the open invoices: the
        # payment lands as the sandbox answers the last of these, before the dispatcher's read
        asked = {"changes": False}

        def watcher(entry: LedgerEntry) -> None:
            # called by the sandbox as it answers, the reply made and not yet sent
            armed = company.in_flight
            if armed is None or armed.at is not None or entry.kind != "request":
                return
            if entry.platform != "qbo" or entry.tenant != tenant:
                return
            endpoint = entry.endpoint or ""
            if endpoint.endswith("/cdc") and sweep:
                asked["changes"] = True
                return
            if not (
                endpoint.endswith("/cdc") or (asked["changes"] and endpoint.endswith("/query"))
            ):
                return
            armed.at = entry.at
            self.sandbox.event("qbo", tenant, {"type": "payment", "invoice": chosen})

        company.paying.add(chosen)
        company.in_flight = _InFlight(chosen, amount, currency, lambda: None)
        company.in_flight.stop = self.sandbox.ledger.watch(watcher)

    def _in_flight_seen(self, company: _Company) -> None:
        armed = company.in_flight
        if armed is None:
            return
        armed.stop()
        company.in_flight = None
        if armed.at is None:
            # the cycle read the books otherwise: nobody paid, another day will do
            company.paying.discard(armed.invoice_id)
            return
        self._paid(company, armed.invoice_id, armed.amount, armed.currency, armed.at)
        with self.store.reading() as tx:
            skipped = [
                r
                for r in tx.outbox.of(company.id, invoice_id=armed.invoice_id, kinds=("email",))
                if r.stage == IN_FLIGHT_STAGE and r.state is S.SKIPPED and r.reason_code == "paid"
            ]
        if not skipped:
            return
        company.paid_in_flight = True
        _, customer = self._invoice(company, armed.invoice_id)
        self._say(
            company,
            f"arsync read {_named(self._number(company, armed.invoice_id))} again just before "
            f"sending: {customer} had paid it since the cycle's sync, so nothing of its "
            f"{skipped[0].stage_title} went out",
        )

    def _invoice(self, company: _Company, invoice_id: str) -> tuple[Invoice, str]:
        """The invoice as the store has it, and its customer's name."""
        with self.store.reading() as tx:
            invoice = tx.records.by_ids(company.id, Kind.INVOICE, [invoice_id])[invoice_id]
            assert isinstance(invoice, Invoice)
            customer = tx.records.by_ids(company.id, Kind.CUSTOMER, [invoice.customer_id])
        who = customer.get(invoice.customer_id)
        return invoice, who.name if isinstance(who, Customer) else invoice.customer_id

    def _dispute(self, company: _Company, invoice_id: str) -> None:
        """The customer disputes the invoice; the owner records it as `arsync dispute` does."""
        invoice, customer = self._invoice(company, invoice_id)
        if invoice.balance <= 0:
            return
        named, owed = (
            _named(invoice.number or invoice.id),
            _money(invoice.balance, invoice.currency),
        )
        reason = "says the work was not finished"
        with self.store.transaction() as tx:
            hold = tx.holds.add(
                company.id,
                HoldKind.DISPUTE,
                customer_id=invoice.customer_id,
                invoice_id=invoice.id,
                reason=reason,
                set_by=OWNER,
            )
            made = record_in_ledger(
                tx,
                company.row,
                invoice,
                topic="dispute",
                title="dispute",
                words=f"in dispute, not chased: {hold.reason} (recorded by {hold.set_by})",
                ref=f"hold-{hold.id}",
                facts={"event": "dispute", "reason": hold.reason},
            )
        company.story_hold = hold.id
        platform = PLATFORM_NAMES[company.demo.tenant.platform]
        self._say(
            company,
            f'{customer} disputed {named} ({owed}): "{reason}"; the owner recorded it '
            "(`arsync dispute`)",
        )
        for ident in made:
            company.recorded[ident] = lambda: (
                f"arsync noted the dispute on {named} in {platform}; no "
                "reminder goes while it is in dispute"
            )

    def _promise(self, company: _Company, invoice_id: str) -> None:
        """The customer promises to pay by a date, as `arsync promise` records it, and pays
        a few days before it."""
        invoice, customer = self._invoice(company, invoice_id)
        if invoice.balance <= 0:
            return
        today = self.clock.now().astimezone(company.zone).date()
        by = company.working(today + timedelta(days=10))
        named, owed = (
            _named(invoice.number or invoice.id),
            _money(invoice.balance, invoice.currency),
        )
        with self.store.transaction() as tx:
            hold = tx.holds.add(
                company.id,
                HoldKind.PROMISE,
                customer_id=invoice.customer_id,
                invoice_id=invoice.id,
                until=by,
                amount=invoice.balance,
                currency=invoice.currency,
                basis=invoice.balance,
                reason="will pay once their own customer has paid",
                set_by=OWNER,
            )
            made = record_in_ledger(
                tx,
                company.row,
                invoice,
                topic="promise",
                title="promise to pay",
                words=(
                    f"promised to pay {owed} by {by.day} {by:%b %Y}: {hold.reason} "
                    f"(recorded by {hold.set_by})"
                ),
                ref=f"hold-{hold.id}",
                expect=by,
                facts={"event": "promise", "who": customer, "amount": owed, "by": by.isoformat()},
            )
        company.story_hold = hold.id
        self._say(
            company,
            f"{customer} promised to pay {named} ({owed}) by {by:%a %d %b}; "
            "the owner recorded it (`arsync promise`)",
        )
        grace = company.policy.promises.grace_days
        platform = PLATFORM_NAMES[company.demo.tenant.platform]

        def said() -> str:
            # the Expected Date is said only when Xero took it
            with self.store.reading() as tx:
                expected = any(
                    r.kind == "expect" and r.state is S.DONE
                    for r in (tx.outbox.get(company.id, i) for i in made)
                    if r is not None
                )
            also = f" and set its Expected Date to {by:%d %b}" if expected else ""
            return (
                f"arsync noted the promise on {named} in {platform}{also}; "
                f"no reminder until then and {grace} days' grace"
            )

        with self.store.reading() as tx:
            for ident in made:
                found = tx.outbox.get(company.id, ident)
                if found is not None and found.kind == "note":
                    company.recorded[ident] = said

        def pay() -> None:
            paid = self._pay(company, invoice_id)
            if paid is not None:
                self._say(
                    company,
                    f"{customer} paid {named} ({_money(paid.amount, paid.currency)}), before "
                    f"the promised {by:%a %d %b}",
                )

        # a few days early, on a working day between the promise and the promised date
        company.on(max(company.working(by - timedelta(days=3), -1), today + timedelta(1)), pay)

    def _story_settled(self, company: _Company) -> None:
        """Say once how the story's hold ended, when arsync has recorded its end."""
        if company.story_hold is None:
            return
        with self.store.reading() as tx:
            hold = tx.holds.get(company.story_hold)
        if hold.state is HoldState.ACTIVE:
            return
        company.story_hold = None
        if hold.state is HoldState.KEPT:
            self._say(
                company,
                "the service's next sync saw the payment: arsync recorded the promise as kept "
                "and chases the invoice no more",
            )
        else:
            self._say(company, f"the {hold.kind.value} ended: {hold.end_reason}")

    # -- the owner ------------------------------------------------------------------------------
    def _approve(self, rows: list[OutboxRow]) -> int:
        """Approve `rows` as `arsync approve` does: ready now, or planned for their moment."""
        approved = 0
        with self.store.transaction() as tx:
            for row in rows:
                state = S.PLANNED if row.at > tx.now else S.READY
                approved += tx.outbox.move(
                    row,
                    state,
                    event="action_approved",
                    decided_by=OWNER,
                    decided_at=tx.now,
                    reason=f"approved by {OWNER}",
                )
        return approved

    def _approve_capped(self, company: _Company, day: date) -> None:
        """The owner approves, the next day, what the policy's cap held back."""
        if not company.capped or company.capped_on is None or day <= company.capped_on:
            return
        company.capped = 0
        with self.store.reading() as tx:
            held = [
                r
                for r in tx.outbox.of(company.id, states=(S.AWAITING_APPROVAL,))
                if (r.approval or "").startswith(OVER_CAP)
            ]
        approved = self._approve(held)
        if approved:
            self._say(
                company,
                f"the owner checked `arsync outbox` and approved the {approved} actions the cap "
                "held back; the service's next cycle carried them out",
            )

    def _approve_handover(self, company: _Company) -> None:
        """The owner approves one hand-over in the whole demo: the largest whose final notice
        and letter have gone, so that the pack tells the whole story."""
        if self.handed_over:
            return
        with self.store.reading() as tx:
            ready = []
            for row in tx.outbox.of(company.id, states=(S.AWAITING_APPROVAL,), kinds=("handover",)):
                siblings = [
                    s
                    for s in tx.outbox.of(company.id, subject=row.subject)
                    if s.stage == row.stage and s.kind in ("email", "letter")
                ]
                if siblings and all(s.state is S.DONE for s in siblings):
                    ready.append(row)
        if not ready:
            return
        chosen = max(ready, key=lambda r: (r.amount, r.id))
        if self._approve([chosen]):
            self.handed_over = True
            company.handover = chosen.id
            _, customer = self._invoice(company, chosen.invoice_id or "")
            named = _named(self._number(company, chosen.invoice_id or ""))
            owed = _money(chosen.amount, chosen.currency)
            self._say(
                company,
                f"the owner approved handing {customer} over to the collection agency: the "
                f"final notice and letter for {named} ({owed}) had gone unanswered",
            )

    # -- helpers --------------------------------------------------------------------------------
    def _say(self, company: _Company, words: str) -> None:
        company.demo.highlights.append((self.clock.now(), words))

    def _number(self, company: _Company, invoice_id: str) -> str:
        with self.store.reading() as tx:
            found = tx.records.by_ids(company.id, Kind.INVOICE, [invoice_id]).get(invoice_id)
        return (found.number if isinstance(found, Invoice) else None) or invoice_id

    # -- the end --------------------------------------------------------------------------------
    def finish(self) -> None:
        """What the service did over the walk, read from its store, the platforms and the mail
        server."""
        letters = self.mail.received()
        self.ledger_seq = self.sandbox.ledger.last_seq
        for company in self.companies:
            self._tally(company, letters)
        for demo in self.demos:
            demo.now = self.clock.now()
            zone = ZoneInfo(demo.zone) if demo.zone else None
            demo.today = demo.now.astimezone(zone).date()
            (demo.status,) = gather(self.store, self.config, only=[demo.name], today=demo.today)

    def _tally(self, company: _Company, letters: list[Received]) -> None:
        demo = company.demo
        zone = company.zone
        with self.store.reading() as tx:
            rows = tx.outbox.of(company.id)
            runs = tx.runs.of(company.id)
            numbers = {
                i: r.number or i
                for i, r in tx.records.by_ids(
                    company.id, Kind.INVOICE, {r.invoice_id for r in rows if r.invoice_id}
                ).items()
                if isinstance(r, Invoice)
            }
        emailed = {(r.subject, r.stage) for r in rows if r.kind == "email" and r.state is S.DONE}
        for row in rows:
            if row.done_at is None:
                continue
            day = row.done_at.astimezone(zone).date()
            week = demo.week(day)
            if row.state is S.DONE:
                if row.kind in COUNTED:
                    week[COUNTED[row.kind]] += 1
                if row.kind == "handover":
                    week["handovers"] += 1
            elif row.state is S.SKIPPED and row.kind == "email":
                if row.reason_code == "paid":
                    week["skipped_paid"] += 1
                elif row.reason_code == "no_address":
                    demo.no_address += 1
                elif row.reason_code == "in_flight":
                    demo.in_flight += 1
        notes = sorted(
            (
                r
                for r in rows
                if r.kind == "note"
                and r.state is S.DONE
                and r.invoice_id
                and not r.stage.startswith(RECORDED)
                and r.done_at is not None
            ),
            key=lambda r: (r.done_at, r.id),
        )
        for r in notes:
            assert r.invoice_id is not None
            assert r.done_at is not None
            demo.stages.append(
                StageDone(
                    r.done_at.astimezone(zone).date(),
                    r.invoice_id,
                    numbers.get(r.invoice_id, r.invoice_id),
                    r.stage,
                    r.stage_title,
                    (r.subject, r.stage) in emailed,
                )
            )
        demo.awaiting_handovers = sum(
            1 for r in rows if r.kind == "handover" and r.state is S.AWAITING_APPROVAL
        )
        demo.syncs = len(runs)
        demo.failed_syncs = [
            f"{r.started_at.astimezone(zone):%a %d %b %H:%M}: {r.error or r.outcome}"
            for r in runs
            if r.outcome != "ok"
        ]
        tenant = demo.tenant
        demo.api_calls = sum(
            1
            for e in self.sandbox.ledger.entries(
                platform=tenant.platform, kind="request", tenant=tenant.tenant_id
            )
            if e.seq <= self.ledger_seq
        )
        sent = {
            str(r.result["message_id"])
            for r in rows
            if r.kind == "letter"
            and r.state is S.DONE
            and isinstance(r.result, dict)
            and r.result.get("message_id")
        }
        demo.letters = [m for m in letters if str(m.message["Message-ID"]).strip() in sent]
        demo.shown = self._shown(company, rows)

    def _shown(self, company: _Company, rows: list[OutboxRow]) -> Shown | None:
        """The story's invoice (else the one with the most notes), read back from the
        platform through the service's own connector."""
        chosen = company.story
        if chosen is None:
            notes = Counter(
                r.invoice_id
                for r in rows
                if r.kind == "note" and r.state is S.DONE and r.invoice_id
            )
            if not notes:
                return None
            chosen = max(notes, key=lambda i: (notes[i], i))
        assert self.daemon.runtime is not None
        writer = self.daemon.runtime.coordinator(company.demo.name).connector
        if not isinstance(writer, Writer):
            return None
        trail = writer.read_back([chosen]).get(chosen)
        invoice, customer = self._invoice(company, chosen)
        found = trail.notes if trail is not None else ()
        return Shown(chosen, invoice.number or chosen, customer, tuple(found))

    def close(self) -> None:
        for company in self.companies:
            if company.in_flight is not None:
                company.in_flight.stop()
        try:
            if self.started:
                self.daemon.stop()
        finally:
            self.store.close()


def _named(number: str) -> str:
    """An invoice as the firm says it: Xero's numbers say so themselves, QuickBooks' are
    bare."""
    return f"invoice {number}" if number[:1].isdigit() else number


def _money(amount: Decimal, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def _owed(sandbox: Sandbox, tenant: TenantInfo, invoice_id: str) -> tuple[Decimal, str] | None:
    """What the sandbox's books say is still owed on an invoice (None: nothing)."""
    if tenant.platform == "qbo":
        qbo = sandbox.qbo.company(tenant.tenant_id).invoices.get(int(invoice_id))
        if qbo is None or qbo.balance <= 0:
            return None
        return qbo.balance, qbo.currency
    xero = sandbox.xero.org(tenant.tenant_id).invoices.get(invoice_id.lower())
    if xero is None or xero.status != "AUTHORISED" or xero.amount_due <= 0:
        return None
    return xero.amount_due, xero.currency


def collect(server: SandboxServer, home: Path, *, seed: int = 1, days: int = DAYS) -> DemoRun:
    """Set arsync up in `home`, link both companies, run the service for `days` days; what
    happened, for `render`. The home (and its store) is left for the caller."""
    sandbox = server.sandbox
    # from here the demo moves the clock itself; the service's waits (rate limits) move it too
    sandbox.clock.freeze()
    with MailSink(MAIL_HOST) as mail:
        tenants = write_home(home, server.url, sandbox.tenants(), mail.port)
        walk = _Walk(server, home, tenants, mail, seed)
        try:
            connect(walk.config, sandbox, tenants, walk.clock)
            walk.start()
            walk.walk(days)
            walk.finish()
        finally:
            walk.close()
        letters = mail.received()
    return DemoRun(
        walk.demos,
        letters,
        mail.port,
        days,
        owner=walk.daemon.owner,
        passes=walk.daemon.passes,
        store_url=walk.config.settings.store_url(),
        ledger_seq=walk.ledger_seq,
    )


def run_demo(seed: int = 1, customers: int = 40, invoices: int = 300) -> DemoRun:
    sandbox = Sandbox(SandboxSettings(seed=seed, customers=customers, invoices=invoices))
    with (
        tempfile.TemporaryDirectory(prefix="arsync-demo-") as tmp,
        SandboxServer(sandbox) as server,
    ):
        return collect(server, Path(tmp), seed=seed)


# -- output -----------------------------------------------------------------------------------
def _calls(n: int) -> str:
    return f"{n:,} API call{'s' if n != 1 else ''}"


def _plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def render(run: DemoRun) -> None:
    from rich.console import Console
    from rich.markup import escape

    from arsync.status import render as render_status

    console = Console(highlight=False)
    for demo in run.companies:
        t = demo.tenant
        console.print(f"[bold]{escape(t.name)}[/bold] · {PLATFORM_NAMES[t.platform]} (sandbox)")
        first = demo.first
        if first.outcome != "ok" or demo.first_counts is None:
            console.print(f"  [red]first sync failed:[/red] {escape(first.message)}\n")
            continue
        counts = demo.first_counts
        console.print(f"  first sync: {first.records:,} records in {_calls(first.calls)}:")
        console.print(
            f"    {counts.customers} customers, {counts.invoices} invoices, "
            f"{counts.payments} payments, {counts.credits} credits"
        )
        render_walk(demo, run, console)
        render_notes(demo, console)
        if demo.status is not None and demo.now is not None and demo.today is not None:
            console.print(
                f"  [dim]receivables on {demo.today:%a %d %b %Y}, the last day, from arsync's "
                "store:[/dim]"
            )
            demo.status.detail = None
            render_status([demo.status], demo.now, aging_only=True, console=console)
        console.print()
    if run.letters:
        example = run.letters[0]
        console.print(
            f"The sandbox's mail server (127.0.0.1:{run.mail_port}) received "
            f"{_plural(len(run.letters), 'letter', 'letters')}, e.g. "
            f'"{escape(example.subject)}" to {escape(", ".join(example.recipients))}.'
        )


#: whose daily cap parks the email channel
POSSESSIVE = {"qbo": "QuickBooks'", "xero": "Xero's"}
#: the week table's columns: title and the counter's key
COLUMNS = (
    ("emailed", "emailed"),
    ("notes", "notes"),
    ("calls", "calls"),
    ("letters", "letters"),
    ("hand-overs", "handovers"),
    ("paid", "paid"),
    ("not sent: paid", "skipped_paid"),
)


def render_walk(demo: CompanyDemo, run: DemoRun, console: Console) -> None:
    """What arsync did over the walk, week by week, and the lines worth reading."""
    from rich.markup import escape
    from rich.table import Table

    if demo.start is None or demo.end is None:
        return
    console.print(
        f"  then {run.days} days of the standard policy, {demo.start:%d %b} to {demo.end:%d %b %Y}:"
    )
    console.print(
        f"  {_plural(demo.syncs, 'cycle', 'cycles')} of `arsync run`, {_calls(demo.api_calls)} "
        f"in all; the day's business at {demo.business_at} {demo.zone}"
    )
    totals: Counter[str] = Counter()
    for week in demo.weeks.values():
        totals.update(week)
    if not +totals:
        console.print("  nothing was owed, so nothing was chased")
        return
    table = Table(box=None, padding=(0, 1), show_edge=False)
    table.add_column("  week of")
    for title, _ in COLUMNS:
        table.add_column(title, justify="right")
    for monday in sorted(demo.weeks):
        week = demo.weeks[monday]
        table.add_row(
            f"  {max(monday, demo.start):%a %d %b}",
            *(f"{week[key]:,}" if week[key] else "·" for _, key in COLUMNS),
        )
    table.add_row("  in all", *(f"{totals[key]:,}" for _, key in COLUMNS))
    console.print(table)
    lines = Table(box=None, padding=(0, 1), show_header=False, show_edge=False)
    lines.add_column(no_wrap=True)
    lines.add_column()
    zone = ZoneInfo(demo.zone)
    for at, words in sorted(demo.highlights, key=lambda h: h[0]):
        lines.add_row(f"  {at.astimezone(zone):%a %d %b}", escape(words))
    after = [
        *(
            [
                f"{_plural(len(demo.payments), 'invoice was', 'invoices were')} paid within "
                "days of a reminder, and arsync stopped chasing each one"
            ]
            if demo.payments
            else []
        ),
        *(
            [
                f"the email channel was parked {_plural(len(demo.parked), 'day', 'days')} by "
                f"{POSSESSIVE[demo.tenant.platform]} daily cap on emails; what was left went "
                "the next day"
            ]
            if demo.parked
            else []
        ),
        *(
            [
                f"{_plural(demo.no_address, 'reminder', 'reminders')} could not be emailed "
                "(no address in the books): a call task instead"
            ]
            if demo.no_address
            else []
        ),
        *(
            [
                f"{_plural(demo.in_flight, 'reminder was', 'reminders were')} not sent: a "
                "payment is recorded but not applied to the invoice (the bookkeeper applies it)"
            ]
            if demo.in_flight
            else []
        ),
        *(
            [
                _plural(demo.awaiting_handovers, "hand-over waits", "hand-overs wait")
                + " for the owner's approval (`arsync outbox`, `arsync approve`)"
            ]
            if demo.awaiting_handovers
            else []
        ),
        *(f"[red]a sync failed[/red] {escape(failed)}" for failed in demo.failed_syncs),
    ]
    for words in after:
        lines.add_row("", words)
    console.print(lines)


def render_notes(demo: CompanyDemo, console: Console) -> None:
    """One invoice's notes exactly as the platform shows them, each with its date."""
    from rich.markup import escape
    from rich.table import Table

    shown = demo.shown
    if shown is None:
        return
    where = "History & notes" if demo.tenant.platform == "xero" else "attachment notes"
    console.print(
        f"  [dim]{escape(_named(shown.number))} of {escape(shown.customer)} as "
        f"{PLATFORM_NAMES[demo.tenant.platform]} shows it now ({where}, read back through "
        "its API):[/dim]"
    )
    zone = ZoneInfo(demo.zone)
    table = Table(box=None, padding=(0, 1), show_header=False, show_edge=False)
    table.add_column(no_wrap=True)
    table.add_column()
    for note in sorted(shown.notes, key=lambda n: (n.at is None, n.at)):
        when = f"{note.at.astimezone(zone):%a %d %b %Y}" if note.at else "(undated)"
        table.add_row(f"    {when}", escape(note.text))
    if not shown.notes:
        table.add_row("    ", "(no notes)")
    console.print(table)
