"""`arsync demo`: 100 days of arsync's whole job on the sandbox's two demo companies.

The sandbox starts on a free loopback port with a QuickBooks Online company and a Xero
organisation, and a mail server of its own for the letters. Each company is synced into a
throw-away store as a connected company would be; then the sandbox's clock walks 100 days, and
every morning at 10:00 in the firm's zone arsync does what `arsync run --once` does: sync,
record what the ledger and the calendar settled, plan under the standard policy, enqueue the
actions due and dispatch them for real (the reminder emailed by the platform, a dated note on
the invoice, a call task, a letter through the mail server, the agency hand-over).

Between the runs the customers and the firm's owner act, as they would: one invoice in three
is paid a few days after its first reminder; on QuickBooks a customer disputes an invoice, on
Xero one promises to pay and pays before the date; the owner approves, the next morning, what
the policy's breaker held back and one hand-over. What arsync did is told week by week, then
the notes on two invoices are read back from the platforms, and the receivables are aged.
Everything runs on the sandbox's clock.
"""

from __future__ import annotations

import heapq
import random
import tempfile
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from arsync.clock import Clock, FollowingClock, SystemClock
from arsync.config.models import MailSettings
from arsync.connectors.base import (
    PLATFORM_NAMES,
    QBO_LIMITS,
    XERO_LIMITS,
    Endpoints,
    FoundNote,
    Link,
    Writer,
)
from arsync.connectors.oauth.app import OAuthApp, TokenRecord
from arsync.domain import CompanyInfo, Customer, HoldKind, HoldState, Invoice, Kind
from arsync.escalation.calendar import Calendar
from arsync.escalation.planner import Action, Status, plan
from arsync.escalation.policy import ActionKind, Policy, builtin_policies
from arsync.escalation.reading import FirmZone, firm_zone, snapshot
from arsync.escalation.record import settle
from arsync.runtime import Coordinator
from arsync.sandbox.core import DEMO_CLIENTS, Sandbox, SandboxSettings
from arsync.sandbox.mail import MailSink, Received
from arsync.sandbox.platform import TenantInfo
from arsync.sandbox.server import SandboxServer
from arsync.status import ConnectorStatus, gather
from arsync.store import ConnectorRow, RecordCounts, Store, open_store
from arsync.store.outbox import OutboxRow
from arsync.store.states import OutboxState
from arsync.sync import SyncReport, sync_connector
from arsync.writeback.dispatch import Dispatched, Dispatcher
from arsync.writeback.handover import slug
from arsync.writeback.ledger import RECORDED, record_in_ledger
from arsync.writeback.outbox import enqueue
from arsync.writeback.run import NOTE_LIMITS

if TYPE_CHECKING:
    from rich.console import Console

S = OutboxState
#: how many days the demo walks, and when things happen each day (in the firm's zone)
DAYS = 100
RUN_AT = time(10, 0)
BUSINESS_AT = time(9, 0)
POLICY = "standard"
#: one invoice in this many is paid a few days (PAY_DELAY) after its first reminder
PAYS_AFTER_REMINDER = 3
PAY_DELAY = (2, 5)
#: who approves in the demo, for the paper trail
OWNER = "the firm's owner"
#: the sandbox's mail server takes plain SMTP on loopback only
MAIL_HOST = "127.0.0.1"
#: the words of the planner's breaker, which the owner approves the next morning
OVER_CAP = "over the policy's cap"
#: the kinds a week's line counts, when done
COUNTED = {"email": "emailed", "note": "notes", "call": "calls", "letter": "letters"}
#: a story needs this many days of the walk before it: the first days are the backlog's
STORY_FROM = 7


def sandbox_time(sandbox: Sandbox) -> Clock:
    """arsync's clock on the sandbox's: what it reads, and its waits move a frozen sandbox."""

    def sleep(seconds: float) -> None:
        if sandbox.clock.frozen:
            sandbox.clock.advance(seconds)
        else:
            SystemClock().sleep(seconds)

    return FollowingClock(sandbox.clock.now, sandbox.clock.monotonic, sleep)


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


@dataclass
class CompanyDemo:
    """What the demo did with one company, for `render` (and the tests)."""

    tenant: TenantInfo
    name: str
    first: SyncReport
    first_counts: RecordCounts | None = None
    #: API calls the first sync made, as the sandbox counted them (not arsync's own count)
    first_calls: int = 0
    zone: str = ""
    #: the walk's first and last day, in the firm's zone
    start: date | None = None
    end: date | None = None
    #: what arsync did, by the Monday of each week: emailed, notes, calls, letters,
    #: handovers, paid (customers paying), skipped_paid (not sent: paid by then)
    weeks: dict[date, Counter[str]] = field(default_factory=dict)
    stages: list[StageDone] = field(default_factory=list)
    payments: list[Paid] = field(default_factory=list)
    #: the invoice of the company's story: disputed (QuickBooks), promised and paid (Xero)
    story_invoice: str | None = None
    #: dated lines: the business that happened and what arsync did about it
    highlights: list[tuple[datetime, str]] = field(default_factory=list)
    #: days on which the email channel was parked by the platform's daily cap
    parked: set[date] = field(default_factory=set)
    syncs: int = 0
    failed_syncs: list[str] = field(default_factory=list)
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
    """The whole demo: both companies, and the letters the sandbox's mail server received."""

    companies: list[CompanyDemo]
    #: every message the sandbox's mail server received
    letters: list[Received]
    mail_port: int
    days: int = DAYS


# -- tokens ---------------------------------------------------------------------------------------
class _Tokens:
    """A connector's tokens held in memory and refreshed through the platform's token endpoint
    when the access token nears its end (the demo keeps no key file for a vault)."""

    def __init__(self, app: OAuthApp, record: TokenRecord, clock: Clock) -> None:
        self.app = app
        self.record = record
        self.clock = clock
        self.lock = threading.Lock()
        self.refused: str | None = None

    def access_token(self) -> str:
        with self.lock:
            record = self.record
            if record.access_token == self.refused or not record.access_fresh(
                self.clock.now(), timedelta(minutes=5)
            ):
                self.record = record = self.app.refresh(record.refresh_token, previous=record)
            return record.access_token

    def invalidate(self, token: str) -> None:
        with self.lock:
            self.refused = token

    def __repr__(self) -> str:
        return "_Tokens(<hidden>)"


def _tokens(sandbox: Sandbox, server: SandboxServer, tenant: TenantInfo, clock: Clock) -> _Tokens:
    """The tokens of the sandbox's demo client, as if the company's owner had clicked Allow."""
    issued = sandbox.connect(tenant.platform, tenant.tenant_id)
    now = clock.now()
    record = TokenRecord(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        access_expires_at=now + timedelta(seconds=issued.expires_in),
        refresh_expires_at=now + timedelta(seconds=issued.refresh_expires_in),
        refreshed_at=now,
        connected_at=now,
        scope=" ".join(issued.scopes),
    )
    client = DEMO_CLIENTS[tenant.platform]
    app = OAuthApp(
        tenant.platform,
        client.client_id,
        client.client_secret,
        Endpoints.sandbox(tenant.platform, server.url),
        clock=clock,
    )
    return _Tokens(app, record, clock)


# -- the walk -------------------------------------------------------------------------------------
@dataclass
class _Company:
    """One company during the walk: its connector and what is scheduled for it."""

    demo: CompanyDemo
    row: ConnectorRow
    coordinator: Coordinator
    tokens: _Tokens
    firm: FirmZone
    #: the firm's business days (the policy's weekdays, the country's public holidays)
    calendar: Calendar
    #: business to happen at BUSINESS_AT on a day
    business: dict[date, list[Callable[[], object]]] = field(default_factory=dict)
    #: invoices that had their first reminder in the demo
    reminded: set[str] = field(default_factory=set)
    #: invoices whose customer will pay them (none of them is picked for a story)
    paying: set[str] = field(default_factory=set)
    #: the invoice of the company's story (a dispute, a promise), and its hold
    story: str | None = None
    story_hold: int | None = None
    #: one payment that lands between the morning's sync and the sending (QuickBooks), and
    #: whether the skip it causes has been told
    paid_in_flight: bool = False
    skipped_paid_said: bool = False
    #: over-cap actions the owner approves the next morning
    capped: int = 0
    #: what arsync did about a recorded hold, said once its note is in the ledger
    recorded: dict[str, Callable[[], str]] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return self.firm.zone

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
    """The days: per company, each day's business at 09:00 and arsync's run at 10:00."""

    def __init__(self, server: SandboxServer, store: Store, mail: MailSink, seed: int) -> None:
        self.server = server
        self.sandbox = server.sandbox
        self.store = store
        self.mail = mail
        self.policy: Policy = builtin_policies()[POLICY]
        self.random = random.Random(seed)
        self.companies: list[_Company] = []
        self.handed_over = False

    # -- set-up -----------------------------------------------------------------------------------
    def link(self, tenant: TenantInfo) -> CompanyDemo:
        """Link the company as `arsync connect` does, and sync it a first time."""
        sandbox, store = self.sandbox, self.store
        name = f"demo-{tenant.platform}"
        with store.transaction() as tx:
            row, _ = tx.connectors.link(
                name,
                tenant.platform,
                tenant.tenant_id,
                CompanyInfo(tenant.name, tenant.base_currency, tenant.country),
                at=tx.now,
            )
        tokens = _tokens(sandbox, self.server, tenant, store.clock)
        link = Link(
            name=name,
            platform=tenant.platform,
            tenant_id=tenant.tenant_id,
            api_base=Endpoints.sandbox(tenant.platform, self.server.url).api_base,
            limits=QBO_LIMITS if tenant.platform == "qbo" else XERO_LIMITS,
        )
        coordinator = Coordinator(name, row.id, link, tokens, store)
        seq = sandbox.ledger.last_seq
        first = sync_connector(store, coordinator)
        demo = CompanyDemo(tenant, name, first, first_calls=self._calls(tenant, seq))
        if first.outcome != "ok":
            coordinator.close()
            tokens.app.close()
            return demo
        with store.reading() as tx:
            demo.first_counts = tx.records.counts(row.id)
            row = tx.connectors.get(row.id)
        # the demo's connector file would name the company's zone, as a QuickBooks one does
        firm = firm_zone(row, tenant.timezone, f"connectors/{name}.toml", name)
        demo.zone = firm.zone.key
        demo.from_address = f"accounts@{slug(tenant.name) or 'firm'}.example"
        calendar = Calendar.of(self.policy.calendar, row.country, row.region)
        self.companies.append(_Company(demo, row, coordinator, tokens, firm, calendar))
        return demo

    def _dispatcher(self, company: _Company, row: ConnectorRow) -> Dispatcher | None:
        """A dispatcher for one run, as `arsync run --once` makes one, with the sandbox's mail
        server for the letters."""
        writer = company.coordinator.connector
        if not isinstance(writer, Writer):
            return None
        platform = company.demo.tenant.platform
        return Dispatcher(
            store=self.store,
            row=row,
            writer=writer,
            policy=self.policy,
            firm=company.firm,
            idempotency_window=company.coordinator.session.retry.idempotency_window.get(
                platform, timedelta(0)
            ),
            note_limit=NOTE_LIMITS.get(platform),
            mail=MailSettings(
                host=MAIL_HOST,
                port=self.mail.port,
                security="none",
                from_address=company.demo.from_address,
            ),
        )

    def _calls(self, tenant: TenantInfo, since: int) -> int:
        """API calls to the company since the ledger's entry `since`, as the sandbox counted
        them (not arsync's own count)."""
        return len(
            self.sandbox.ledger.entries(
                platform=tenant.platform, kind="request", tenant=tenant.tenant_id, since_seq=since
            )
        )

    # -- the days ---------------------------------------------------------------------------------
    def walk(self, days: int) -> None:
        clock = self.sandbox.clock
        # from here the demo moves the clock itself; waits for rate limits move it too
        clock.freeze()
        now = clock.now()
        moments: list[tuple[datetime, int, int, str]] = []
        order = 0
        for index, company in enumerate(self.companies):
            start = now.astimezone(company.zone).date()
            company.demo.start = start
            company.demo.end = start + timedelta(days=days - 1)
            for n in range(days):
                day = start + timedelta(days=n)
                for at, what in ((BUSINESS_AT, "business"), (RUN_AT, "run")):
                    moment = datetime.combine(day, at, company.zone)
                    heapq.heappush(moments, (max(moment, now), order, index, what))
                    order += 1
        while moments:
            moment, _, index, what = heapq.heappop(moments)
            if moment > clock.now():
                clock.set(moment)
            company = self.companies[index]
            day = clock.now().astimezone(company.zone).date()
            if what == "business":
                self._morning(company, day)
                continue
            for later in self._run(company, day, sync=what == "run"):
                heapq.heappush(moments, (later, order, index, "again"))
                order += 1

    def _morning(self, company: _Company, day: date) -> None:
        """The day's business before the run: the owner's approvals, customers paying,
        disputing, promising."""
        self._approve_capped(company)
        self._approve_handover(company)
        for happen in company.business.pop(day, []):
            happen()

    def _run(self, company: _Company, day: date, *, sync: bool) -> list[datetime]:
        """`arsync run --once` for one company (the sync only in the morning); the moments
        later today that something waits for (a customer's quiet hours opening)."""
        store, demo, policy = self.store, company.demo, self.policy
        seq = self.sandbox.ledger.last_seq
        if sync:
            report = sync_connector(store, company.coordinator)
            demo.syncs += 1
            if report.outcome != "ok":
                demo.failed_syncs.append(f"{day:%a %d %b}: {report.message}")
        with store.transaction() as tx:
            settle(tx, tx.connectors.get(company.row.id), policy, company.firm, tx.now)
        self._story_settled(company)
        with store.reading() as tx:
            row = tx.connectors.get(company.row.id)
            now = tx.now
            snap = snapshot(tx, row, policy, company.firm, now)
        result = plan(snap, policy, now)
        with store.transaction() as tx:
            enqueued = enqueue(tx, row, result, policy)
        added = [a for a in result.actions() if a.id in set(enqueued.ids)]
        capped = [a for a in added if (a.approval or "").startswith(OVER_CAP)]
        if capped:
            company.capped += len(capped)
            # what the cap counts: not the hand-overs, which always wait for a person
            due = sum(1 for a in added if not a.approval or a in capped)
            self._say(
                company,
                f"{due} actions were due at once (the books' backlog), over the standard "
                f"policy's cap of {policy.rules.max_actions_per_run} a run: {len(capped)} "
                "waited for the owner's approval",
            )
        self._pay_in_flight(company, day, added)
        dispatcher = self._dispatcher(company, row)
        if dispatcher is not None:
            self._record(company, day, dispatcher.run())
        demo.api_calls += self._calls(demo.tenant, seq)
        with store.reading() as tx:
            if "email" in tx.outbox.parked(row.id):
                demo.parked.add(day)
        return sorted(
            {
                x.at
                for x in result.decisions
                if x.status is Status.WAITING
                and x.at is not None
                and x.at > now
                and x.at.astimezone(company.zone).date() == day
            }
        )

    # -- what a run did ---------------------------------------------------------------------------
    def _record(self, company: _Company, day: date, dispatched: Dispatched) -> None:
        demo = company.demo
        week = demo.week(day)
        with self.store.reading() as tx:
            rows = tx.outbox.existing(company.row.id, (o.action for o in dispatched.outcomes))
        for outcome in dispatched.outcomes:
            row = rows.get(outcome.action)
            if row is None:
                continue
            if outcome.state is S.SKIPPED and row.kind == "email" and row.reason_code == "paid":
                week["skipped_paid"] += 1
                if not company.skipped_paid_said:
                    company.skipped_paid_said = True
                    _, customer = self._invoice(company, row.invoice_id or "")
                    self._say(
                        company,
                        f"arsync read {_named(self._number(company, row.invoice_id or ''))} "
                        f"again just before sending: {customer} had paid it since the "
                        f"morning's sync, so nothing of its {row.stage_title} went out",
                    )
            if outcome.state is S.SKIPPED and row.kind == "email":
                if row.reason_code == "no_address":
                    demo.no_address += 1
                elif row.reason_code == "in_flight":
                    demo.in_flight += 1
            if outcome.state is not S.DONE:
                continue
            if row.kind in COUNTED:
                week[COUNTED[row.kind]] += 1
            if row.kind == "handover":
                week["handovers"] += 1
                self._handed_over(company, row.customer_id, row.result)
            if row.kind == "note" and row.invoice_id:
                if not row.stage.startswith(RECORDED):
                    self._stage_done(company, day, row.invoice_id, row.stage, row.stage_title)
                elif row.id in company.recorded:
                    self._say(company, company.recorded.pop(row.id)())
            if row.kind == "email" and row.invoice_id and row.invoice_id not in company.reminded:
                company.reminded.add(row.invoice_id)
                self._after_first_reminder(company, day, row.invoice_id, row.stage)

    def _stage_done(
        self, company: _Company, day: date, invoice_id: str, stage: str, title: str
    ) -> None:
        with self.store.reading() as tx:
            emailed = any(
                r.kind == "email" and r.stage == stage and r.state is S.DONE
                for r in tx.outbox.of(company.row.id, subject=f"invoice:{invoice_id}")
            )
        company.demo.stages.append(
            StageDone(day, invoice_id, self._number(company, invoice_id), stage, title, emailed)
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
        amount, currency = owed
        self.sandbox.event(
            tenant.platform, tenant.tenant_id, {"type": "payment", "invoice": invoice_id}
        )
        now = self.sandbox.clock.now()
        paid = Paid(now, invoice_id, self._number(company, invoice_id), amount, currency)
        company.demo.payments.append(paid)
        company.demo.week(now.astimezone(company.zone).date())["paid"] += 1
        return paid

    def _pay_in_flight(self, company: _Company, day: date, added: list[Action]) -> None:
        """Once, on QuickBooks: a customer pays right after the morning's sync, while the
        60-day reminder arsync just planned for the invoice is about to go."""
        start = company.demo.start or day
        if (
            company.paid_in_flight
            or company.demo.tenant.platform != "qbo"
            or day < start + timedelta(STORY_FROM)
        ):
            return
        chosen = next(
            (
                a.invoice_id
                for a in added
                if a.kind is ActionKind.EMAIL
                and a.stage == "overdue-60"
                and a.invoice_id not in company.paying
                and a.invoice_id != company.story
            ),
            None,
        )
        if chosen is not None:
            company.paid_in_flight = True
            company.paying.add(chosen)
            self._pay(company, chosen)

    def _invoice(self, company: _Company, invoice_id: str) -> tuple[Invoice, str]:
        """The invoice as the store has it, and its customer's name."""
        with self.store.reading() as tx:
            invoice = tx.records.by_ids(company.row.id, Kind.INVOICE, [invoice_id])[invoice_id]
            assert isinstance(invoice, Invoice)
            customer = tx.records.by_ids(company.row.id, Kind.CUSTOMER, [invoice.customer_id])
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
                company.row.id,
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
        today = self.sandbox.clock.now().astimezone(company.zone).date()
        by = company.working(today + timedelta(days=10))
        named, owed = (
            _named(invoice.number or invoice.id),
            _money(invoice.balance, invoice.currency),
        )
        with self.store.transaction() as tx:
            hold = tx.holds.add(
                company.row.id,
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
        grace = self.policy.promises.grace_days
        platform = PLATFORM_NAMES[company.demo.tenant.platform]

        def said() -> str:
            # the Expected Date is said only when Xero took it
            with self.store.reading() as tx:
                expected = any(
                    r.kind == "expect" and r.state is S.DONE
                    for r in (tx.outbox.get(company.row.id, i) for i in made)
                    if r is not None
                )
            also = f" and set its Expected Date to {by:%d %b}" if expected else ""
            return (
                f"arsync noted the promise on {named} in {platform}{also}; "
                f"no reminder until then and {grace} days' grace"
            )

        with self.store.reading() as tx:
            for ident in made:
                found = tx.outbox.get(company.row.id, ident)
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
                "the morning's sync saw the payment: arsync recorded the promise as kept "
                "and chases the invoice no more",
            )
        else:
            self._say(company, f"the {hold.kind.value} ended: {hold.end_reason}")

    # -- the owner ------------------------------------------------------------------------------
    def _approve(self, company: _Company, rows: list[OutboxRow]) -> int:
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

    def _approve_capped(self, company: _Company) -> None:
        """The owner approves, the next morning, what the policy's cap held back."""
        if not company.capped:
            return
        company.capped = 0
        with self.store.reading() as tx:
            held = [
                r
                for r in tx.outbox.of(company.row.id, states=(S.AWAITING_APPROVAL,))
                if (r.approval or "").startswith(OVER_CAP)
            ]
        approved = self._approve(company, held)
        if approved:
            self._say(
                company,
                f"the owner checked `arsync outbox` and approved the {approved} actions the cap "
                "held back; this morning's run carried them out",
            )

    def _approve_handover(self, company: _Company) -> None:
        """The owner approves one hand-over in the whole demo: the largest whose final notice
        and letter have gone, so that the pack tells the whole story."""
        if self.handed_over:
            return
        with self.store.reading() as tx:
            ready = []
            for row in tx.outbox.of(
                company.row.id, states=(S.AWAITING_APPROVAL,), kinds=("handover",)
            ):
                siblings = [
                    s
                    for s in tx.outbox.of(company.row.id, subject=row.subject)
                    if s.stage == row.stage and s.kind in ("email", "letter")
                ]
                if siblings and all(s.state is S.DONE for s in siblings):
                    ready.append(row)
        if not ready:
            return
        chosen = max(ready, key=lambda r: (r.amount, r.id))
        if self._approve(company, [chosen]):
            self.handed_over = True
            _, customer = self._invoice(company, chosen.invoice_id or "")
            named = _named(self._number(company, chosen.invoice_id or ""))
            owed = _money(chosen.amount, chosen.currency)
            self._say(
                company,
                f"the owner approved handing {customer} over to the collection agency: the "
                f"final notice and letter for {named} ({owed}) had gone unanswered",
            )

    def _handed_over(self, company: _Company, customer_id: str, result: object) -> None:
        if not isinstance(result, dict) or not result.get("pack"):
            return
        path = Path(str(result["pack"]))
        files = tuple(sorted(p.name for p in path.iterdir())) if path.is_dir() else ()
        with self.store.reading() as tx:
            found = tx.records.by_ids(company.row.id, Kind.CUSTOMER, [customer_id]).get(customer_id)
        name = found.name if isinstance(found, Customer) else customer_id
        company.demo.pack = Pack(name, path.name, files)
        notes = int(result.get("notes") or 0)
        self._say(
            company,
            f"arsync handed {name} over: the evidence pack {path.name}/ "
            f"({', '.join(files)}), the customer paused, the hand-over noted on its {notes} "
            f"open invoice{'s' if notes != 1 else ''}",
        )

    # -- helpers --------------------------------------------------------------------------------
    def _say(self, company: _Company, words: str) -> None:
        company.demo.highlights.append((self.sandbox.clock.now(), words))

    def _number(self, company: _Company, invoice_id: str) -> str:
        with self.store.reading() as tx:
            found = tx.records.by_ids(company.row.id, Kind.INVOICE, [invoice_id]).get(invoice_id)
        return (found.number if isinstance(found, Invoice) else None) or invoice_id

    # -- the end --------------------------------------------------------------------------------
    def finish(self) -> None:
        for company in self.companies:
            demo = company.demo
            with self.store.reading() as tx:
                demo.awaiting_handovers = len(
                    tx.outbox.of(company.row.id, states=(S.AWAITING_APPROVAL,), kinds=("handover",))
                )
            demo.shown = self._shown(company)
            demo.letters = [r for r in self.mail.received() if r.sender == demo.from_address]
            demo.now = self.store.clock.now()
            demo.today = demo.now.astimezone(company.zone).date()
            (demo.status,) = gather(
                self.store, {demo.name: demo.tenant.platform}, only=[demo.name], today=demo.today
            )

    def _shown(self, company: _Company) -> Shown | None:
        """The story's invoice (else the one with the most notes), read back from the
        platform."""
        chosen = company.story
        if chosen is None:
            with self.store.reading() as tx:
                notes = Counter(
                    r.invoice_id
                    for r in tx.outbox.of(company.row.id, states=(S.DONE,), kinds=("note",))
                    if r.invoice_id
                )
            if not notes:
                return None
            chosen = max(notes, key=lambda i: (notes[i], i))
        writer = company.coordinator.connector
        if not isinstance(writer, Writer):
            return None
        trail = writer.read_back([chosen]).get(chosen)
        invoice, customer = self._invoice(company, chosen)
        found = trail.notes if trail is not None else ()
        return Shown(chosen, invoice.number or chosen, customer, tuple(found))

    def close(self) -> None:
        for company in self.companies:
            company.coordinator.close()
            company.tokens.app.close()


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


def collect(server: SandboxServer, store: Store, *, seed: int = 1, days: int = DAYS) -> DemoRun:
    """Link both companies, sync them, walk `days` days; what happened, for `render`."""
    with MailSink(MAIL_HOST) as mail:
        walk = _Walk(server, store, mail, seed)
        try:
            demos = [walk.link(tenant) for tenant in server.sandbox.tenants()]
            walk.walk(days)
            walk.finish()
        finally:
            walk.close()
        letters = mail.received()
    return DemoRun(demos, letters, mail.port, days)


def run_demo(seed: int = 1, customers: int = 40, invoices: int = 300) -> DemoRun:
    sandbox = Sandbox(SandboxSettings(seed=seed, customers=customers, invoices=invoices))
    with tempfile.TemporaryDirectory(prefix="arsync-demo-") as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'demo.db'}", sandbox_time(sandbox))
        try:
            with SandboxServer(sandbox) as server:
                return collect(server, store, seed=seed)
        finally:
            store.close()


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
        console.print(f"  first sync: {first.created:,} records in {_calls(demo.first_calls)}:")
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
    console.print(f"  a run each morning at 10:00 {demo.zone}, {_calls(demo.api_calls)} in all")
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
