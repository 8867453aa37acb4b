"""The planner: from a snapshot, a policy and a moment, what is due, for whom, when, and why.

`plan(snapshot, policy, now)` is pure: no I/O and no clock of its own. For every open invoice
(and every active payment plan) it decides the stage due now, or the next one and its earliest
allowed moment, or what holds it, with the reason in words. Its rules:

- a stage happens at most once per invoice, and an invoice never moves back a stage;
- after missed days only the latest stage due happens: the earlier ones are superseded;
- contact happens only on a business day, inside quiet hours, in the customer's own time zone,
  and at most once per customer per spacing period (invoices due together make one contact);
- nothing for a balance at or below the minimum, an excluded, disputed, promised or settled
  invoice, a paused customer, or a customer whose unapplied payments cover the invoice;
- no action while the last good sync is stale; past the per-run cap, actions wait for approval;
- amounts are always the current balance; action ids derive from what the action is.

`forecast(snapshot, policy, now, days)` walks the same function forward day by day, as if every
due action happened and nobody paid, for `arsync plan --days` and the demo.
"""

from __future__ import annotations

import gc
import hashlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from zoneinfo import ZoneInfo

from arsync.domain import (
    Hold,
    HoldKind,
    HoldState,
    Invoice,
    InvoiceStatus,
    Money,
)
from arsync.escalation.calendar import Calendar, start_of
from arsync.escalation.policy import ActionKind, Policy, Stage, Tone
from arsync.escalation.snapshot import Done, Person, Snapshot

ZERO = Decimal(0)


class Status(StrEnum):
    DUE = "due"  # its actions happen now
    WAITING = "waiting"  # a stage is due but may not happen yet (quiet hours, spacing, stale)
    SCHEDULED = "scheduled"  # the next stage falls on a later day
    HELD = "held"  # a hold, a plan or a payment in flight stops the chase
    NOTHING = "nothing"  # below the minimum, or every stage done


class Change(StrEnum):
    """A fact the planner found that the paper trail should record."""

    PROMISE_BROKEN = "promise_broken"
    PROMISE_KEPT = "promise_kept"
    SETTLEMENT_KEPT = "settlement_kept"
    SETTLEMENT_BROKEN = "settlement_broken"
    PAUSE_OVER = "pause_over"
    HOLD_OBSOLETE = "hold_obsolete"  # its invoice is paid, voided or gone
    PLAN_COMPLETED = "plan_completed"
    PLAN_ENDED = "plan_ended"


@dataclass(frozen=True, slots=True)
class Transition:
    change: Change
    #: the hold's or the plan's id
    ref: int
    reason: str


@dataclass(frozen=True, slots=True)
class Action:
    """One thing to do to the outside world, with an id derived from what it is."""

    id: str
    #: the readable form the id is derived from: connector/subject/stage/kind
    key: str
    kind: ActionKind
    stage: str
    stage_title: str
    tone: Tone
    customer_id: str
    #: the invoice it concerns (for a plan's instalment: the plan's oldest open invoice)
    invoice_id: str
    #: the subject whose stages these are: "invoice:ID" or "plan:ID:SEQ"
    subject: str
    amount: Money
    #: the earliest moment it may happen
    at: datetime
    #: it waits for a person's approval, and why
    approval: str | None = None


@dataclass(frozen=True, slots=True)
class Decision:
    """Where one invoice (or one plan) stands, in one status, with the reason in words."""

    subject: str
    customer_id: str
    status: Status
    reason: str
    invoice_id: str | None = None
    number: str | None = None
    plan_id: int | None = None
    stage: str | None = None
    at: datetime | None = None
    amount: Money | None = None
    actions: tuple[Action, ...] = ()
    #: stages skipped by the catch-up rule: recorded as superseded, never due again
    superseded: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    now: datetime
    decisions: tuple[Decision, ...]
    transitions: tuple[Transition, ...] = ()
    #: things worth saying once about the whole plan (stale data, holiday table...)
    notes: tuple[str, ...] = ()

    def actions(self, status: Status = Status.DUE) -> list[Action]:
        return [a for d in self.decisions if d.status is status for a in d.actions]

    def of(self, subject: str) -> Decision | None:
        for decision in self.decisions:
            if decision.subject == subject:
                return decision
        return None


#: base32's alphabet (RFC 4648) in lower case, and every pair of it: one entry per 10 bits
_B32 = "abcdefghijklmnopqrstuvwxyz234567"
_B32_PAIRS = tuple(a + b for a in _B32 for b in _B32)


def action_id(key: str) -> str:
    """A short, stable id from an action's key (26 characters of base32).

    The unpadded, lower-case base32 of the first 16 bytes of the key's SHA-256, exactly what
    `base64.b32encode(digest).decode().rstrip("=").lower()` gives, spelt out by hand: a plan
    makes one per action, and `b32encode` costs several times the hash."""
    bits = int.from_bytes(hashlib.sha256(key.encode()).digest()[:16], "big") << 2  # 130 bits
    p = _B32_PAIRS
    return (
        p[bits >> 120]
        + p[bits >> 110 & 1023]
        + p[bits >> 100 & 1023]
        + p[bits >> 90 & 1023]
        + p[bits >> 80 & 1023]
        + p[bits >> 70 & 1023]
        + p[bits >> 60 & 1023]
        + p[bits >> 50 & 1023]
        + p[bits >> 40 & 1023]
        + p[bits >> 30 & 1023]
        + p[bits >> 20 & 1023]
        + p[bits >> 10 & 1023]
        + p[bits & 1023]
    )


def invoice_subject(invoice_id: str) -> str:
    return f"invoice:{invoice_id}"


def plan_subject(plan_id: int, seq: int) -> str:
    return f"plan:{plan_id}:{seq}"


# -- words -------------------------------------------------------------------------------------
def when(moment: datetime, zone: ZoneInfo) -> str:
    """'Mon 7 Dec 09:00 Europe/London'."""
    local = moment.astimezone(zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {zone.key}"


def day_words(day: date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


def _money(amount: Decimal, currency: str) -> str:
    return str(Money(amount, currency))


# -- the planner -------------------------------------------------------------------------------
@dataclass(slots=True)
class _Candidate:
    """A stage found due for a subject, before contact spacing and the cap are applied."""

    subject: str
    customer: Person
    invoice: Invoice
    stage: Stage
    amount: Decimal
    currency: str
    at: datetime
    tone: Tone
    superseded: tuple[str, ...]
    reason: str
    plan_id: int | None = None
    #: the stage's day has come (it may still wait for the calendar or spacing)
    reached: bool = True
    #: the stage's own day (anchor + offset), before the calendar moves it
    day: date | None = None
    #: the balance in words, for a stage not yet reached (said after its moment)
    balance: str = ""
    waiting: list[str] = field(default_factory=list)
    stale: bool = False


class _Planner:
    def __init__(
        self, snapshot: Snapshot, policy: Policy, now: datetime, since: datetime | None = None
    ) -> None:
        self.s = snapshot
        self.p = policy
        self.now = now
        #: the earliest moment an action may be given (the forecast plans a whole day at once)
        self.since = now if since is None else since
        self.cal: Calendar = snapshot.calendar
        self.index = {stage.name: n for n, stage in enumerate(policy.stages)}
        self.transitions: list[Transition] = []
        self.decisions: list[Decision] = []
        self.candidates: list[_Candidate] = []
        self._earliest: dict[tuple[datetime, str], datetime] = {}
        self.unknown = Person("?", "(unknown customer)", None, snapshot.firm_zone, "the firm's")
        # the history, by subject and by customer
        self.done: dict[str, list[Done]] = defaultdict(list)
        self.last_contact: dict[str, datetime] = {}
        for item in snapshot.history:
            self.done[item.subject].append(item)
            if item.contact and not item.superseded:
                seen = self.last_contact.get(item.customer_id)
                if seen is None or item.at > seen:
                    self.last_contact[item.customer_id] = item.at
        self.stale = (
            snapshot.last_good_sync is None
            or now - snapshot.last_good_sync > policy.rules.stale_sync
        )
        # what a plan of many invoices asks again and again, worked out once per plan
        self._contacts = {stage.name: stage.contacts for stage in policy.stages}
        self._today: dict[ZoneInfo, date] = {}
        self._moments: dict[tuple[date, ZoneInfo], datetime] = {}
        self._local_days: dict[tuple[datetime, ZoneInfo], date] = {}
        self._day_words: dict[date, str] = {}
        self._whens: dict[tuple[datetime, ZoneInfo], str] = {}
        self._why: dict[ZoneInfo, str] = {}

    # -- time -------------------------------------------------------------------------------
    def earliest(self, after: datetime, zone: ZoneInfo) -> datetime:
        key = (after, zone.key)
        found = self._earliest.get(key)
        if found is None:
            found = self._earliest[key] = self.cal.earliest(after, zone)
        return found

    def today(self, zone: ZoneInfo) -> date:
        found = self._today.get(zone)
        if found is None:
            found = self._today[zone] = self.now.astimezone(zone).date()
        return found

    def moment_for(self, stage: Stage, day: date, person: Person) -> datetime:
        """The earliest moment a stage falling on `day` may happen: for contact, in the
        customer's zone; for the firm's own tasks, in the firm's working hours."""
        zone = self._zone_of(stage, person)
        key = (day, zone)
        found = self._moments.get(key)
        if found is None:
            found = self._moments[key] = self.earliest(max(self.since, start_of(day, zone)), zone)
        return found

    def local_day(self, moment: datetime, zone: ZoneInfo) -> date:
        key = (moment, zone)
        found = self._local_days.get(key)
        if found is None:
            found = self._local_days[key] = moment.astimezone(zone).date()
        return found

    # -- words (the same few days and moments recur across thousands of invoices) ----------
    def day_words(self, day: date) -> str:
        found = self._day_words.get(day)
        if found is None:
            found = self._day_words[day] = day_words(day)
        return found

    def when(self, moment: datetime, zone: ZoneInfo) -> str:
        key = (moment, zone)
        found = self._whens.get(key)
        if found is None:
            found = self._whens[key] = when(moment, zone)
        return found

    # -- holds ------------------------------------------------------------------------------
    def run(self) -> Plan:
        by_invoice: dict[str, list[Hold]] = defaultdict(list)
        by_customer: dict[str, list[Hold]] = defaultdict(list)
        for hold in self.s.holds:
            if hold.invoice_id is not None:
                by_invoice[hold.invoice_id].append(hold)
            elif hold.customer_id is not None:
                by_customer[hold.customer_id].append(hold)
        broken: dict[str, list[Hold]] = defaultdict(list)
        settled: dict[str, Hold] = {}
        for hold in self.s.ended_holds:
            if hold.invoice_id is None:
                continue
            if hold.state is HoldState.BROKEN:
                broken[hold.invoice_id].append(hold)
            elif hold.state is HoldState.KEPT and hold.kind is HoldKind.SETTLEMENT:
                settled[hold.invoice_id] = hold
        balances = {inv.id: inv.balance for inv in self.s.invoices}
        for invoice_id, status in self.s.closed.items():
            balances.setdefault(invoice_id, ZERO)
            for hold in by_invoice.pop(invoice_id, []):
                self._closed_hold(hold, status)
        in_flight = self._in_flight()
        on_plan = self._plans(balances, by_customer, in_flight)
        for invoice in sorted(self.s.invoices, key=lambda i: (i.due_date, i.id)):
            if invoice.balance <= 0 or invoice.status is not InvoiceStatus.OPEN:
                continue
            person = self.s.customers.get(invoice.customer_id, self.unknown)
            subject = invoice_subject(invoice.id)
            kept = settled.get(invoice.id)
            if kept is not None and kept.amount is not None:
                self._decide(
                    invoice,
                    person,
                    Status.HELD,
                    f"settled: the {_money(kept.amount, invoice.currency)} agreed in full "
                    f"settlement (by {kept.set_by}: {kept.reason}) was paid; ask the bookkeeper "
                    f"to write off the remaining {_money(invoice.balance, invoice.currency)}",
                )
                continue
            held = self._held(invoice, person, by_invoice, by_customer, broken, on_plan)
            if held is not None:
                self._decide(invoice, person, Status.HELD, held)
                continue
            covered = in_flight.get(invoice.id)
            if covered is not None:
                self._decide(invoice, person, Status.HELD, covered)
                continue
            floor = self.p.minimum(invoice.currency)
            if invoice.balance <= floor:
                self._decide(
                    invoice,
                    person,
                    Status.NOTHING,
                    f"balance {_money(invoice.balance, invoice.currency)} is not above the "
                    f"policy's minimum of {_money(floor, invoice.currency)}",
                )
                continue
            firmer = self._broken_since(broken.get(invoice.id, []), subject)
            self._stages(
                subject,
                invoice,
                person,
                anchor=invoice.due_date,
                amount=invoice.balance,
                firmer=firmer,
            )
        # a pause whose date has passed is over, whether or not the customer still owes
        for customer_id in by_customer:
            person = self.s.customers.get(customer_id, self.unknown)
            self._paused(customer_id, self.today(person.zone), by_customer)
        self._space_and_cap()
        notes = [f"public holidays: {self.cal.holidays_from}"]
        if self.stale:
            last = self.s.last_good_sync
            notes.append(
                "no contact until a sync succeeds: "
                + (
                    "arsync has never synced this company"
                    if last is None
                    else f"the last good sync was at {when(last, self.s.firm_zone)}, more than "
                    f"{_span(self.p.rules.stale_sync)} ago"
                )
            )
        order = {
            Status.DUE: 0,
            Status.WAITING: 1,
            Status.SCHEDULED: 2,
            Status.HELD: 3,
            Status.NOTHING: 4,
        }
        decisions = sorted(
            self.decisions,
            key=lambda d: (order[d.status], d.at or self.now, d.customer_id, d.subject),
        )
        return Plan(self.now, tuple(decisions), tuple(self.transitions), tuple(notes))

    def _closed_hold(self, hold: Hold, status: InvoiceStatus) -> None:
        what = {InvoiceStatus.PAID: "paid", InvoiceStatus.VOIDED: "voided"}.get(status, "gone")
        if hold.kind is HoldKind.PROMISE and status is InvoiceStatus.PAID:
            self._transition(Change.PROMISE_KEPT, hold.id, "the invoice is paid")
        elif hold.kind is HoldKind.SETTLEMENT and status is InvoiceStatus.PAID:
            self._transition(Change.SETTLEMENT_KEPT, hold.id, "the invoice is paid")
        else:
            self._transition(Change.HOLD_OBSOLETE, hold.id, f"the invoice is {what}")

    def _transition(self, change: Change, ref: int, reason: str) -> None:
        self.transitions.append(Transition(change, ref, reason))

    def _held(
        self,
        invoice: Invoice,
        person: Person,
        by_invoice: dict[str, list[Hold]],
        by_customer: dict[str, list[Hold]],
        broken: dict[str, list[Hold]],
        on_plan: dict[str, str],
    ) -> str | None:
        """Why the invoice is not chased, or None; records the holds that end today."""
        today = self.today(person.zone)
        reasons: list[str] = []
        for hold in by_invoice.get(invoice.id, []):
            said = f"by {hold.set_by} on {day_words(hold.set_at.date())}: {hold.reason}"
            if hold.kind is HoldKind.EXCLUDE:
                reasons.append(f"excluded {said}")
            elif hold.kind is HoldKind.DISPUTE:
                reasons.append(f"in dispute (recorded {said})")
            elif hold.kind is HoldKind.PROMISE:
                assert hold.until is not None
                grace_end = hold.until + timedelta(days=self.p.promises.grace_days)
                if today <= grace_end:
                    reasons.append(
                        f"promised to pay on {day_words(hold.until)} (recorded {said}); "
                        f"chased again after {day_words(grace_end)} if unpaid"
                    )
                else:
                    self._transition(
                        Change.PROMISE_BROKEN,
                        hold.id,
                        f"unpaid {self.p.promises.grace_days} days after the promised "
                        f"{day_words(hold.until)}; balance "
                        f"{_money(invoice.balance, invoice.currency)}",
                    )
                    broken[invoice.id].append(
                        replace(hold, state=HoldState.BROKEN, ended_at=self.now)
                    )
            elif hold.kind is HoldKind.SETTLEMENT:
                reason = self._settlement(hold, invoice, today)
                if reason is not None:
                    reasons.append(reason)
                else:
                    broken[invoice.id].append(
                        replace(hold, state=HoldState.BROKEN, ended_at=self.now)
                    )
        paused = self._paused(invoice.customer_id, today, by_customer)
        if paused is not None:
            reasons.append(paused)
        if invoice.id in on_plan:
            reasons.append(on_plan[invoice.id])
        return "; ".join(reasons) if reasons else None

    def _paused(
        self, customer_id: str, today: date, by_customer: dict[str, list[Hold]]
    ) -> str | None:
        """Why the customer is paused today, or None; records the pauses that are over."""
        reasons: list[str] = []
        for hold in by_customer.get(customer_id, []):
            if hold.kind is HoldKind.PAUSE:
                if hold.until is not None and today > hold.until:
                    self._transition_once(
                        Change.PAUSE_OVER, hold.id, f"paused until {day_words(hold.until)}"
                    )
                    continue
                until = f" until {day_words(hold.until)}" if hold.until else ""
                source = " in the ledger" if hold.source.value == "ledger" else ""
                reasons.append(
                    f"customer paused{until}{source} by {hold.set_by} on "
                    f"{day_words(hold.set_at.date())}: {hold.reason}"
                )
        return "; ".join(reasons) if reasons else None

    def _transition_once(self, change: Change, ref: int, reason: str) -> None:
        if not any(t.change is change and t.ref == ref for t in self.transitions):
            self._transition(change, ref, reason)

    def _settlement(self, hold: Hold, invoice: Invoice, today: date) -> str | None:
        assert hold.amount is not None
        basis = hold.basis if hold.basis is not None else invoice.balance
        paid = basis - invoice.balance
        agreed = _money(hold.amount, invoice.currency)
        if paid >= hold.amount:
            self._transition(
                Change.SETTLEMENT_KEPT,
                hold.id,
                f"{_money(paid, invoice.currency)} paid against the {agreed} agreed; "
                f"{_money(invoice.balance, invoice.currency)} left for the bookkeeper to "
                "write off",
            )
            return (
                f"settled: {agreed} agreed in full settlement was paid; ask the bookkeeper to "
                f"write off the remaining {_money(invoice.balance, invoice.currency)}"
            )
        if hold.until is not None:
            grace_end = hold.until + timedelta(days=self.p.promises.grace_days)
            if today > grace_end:
                self._transition(
                    Change.SETTLEMENT_BROKEN,
                    hold.id,
                    f"the {agreed} agreed by {day_words(hold.until)} was not paid "
                    f"({_money(paid, invoice.currency)} paid)",
                )
                return None
        by = f" by {day_words(hold.until)}" if hold.until else ""
        return (
            f"settlement of {agreed} agreed{by} (recorded by {hold.set_by}: {hold.reason}); "
            f"{_money(paid, invoice.currency)} paid so far"
        )

    def _broken_since(self, broken: list[Hold], subject: str) -> bool:
        """A promise broken after the subject's last stage: the next stage is firmer."""
        if not broken:
            return False
        last = max((d.at for d in self.done.get(subject, []) if not d.superseded), default=None)
        return any(h.ended_at is not None and (last is None or h.ended_at > last) for h in broken)

    def _in_flight(self) -> dict[str, str]:
        """Invoices that a customer's unapplied payments and credits cover, oldest first."""
        return in_flight(self.s.invoices, self.s.unapplied)

    # -- payment plans ----------------------------------------------------------------------
    def _plans(
        self,
        balances: dict[str, Decimal],
        by_customer: dict[str, list[Hold]],
        in_flight: dict[str, str],
    ) -> dict[str, str]:
        """Decide each active plan; returns the invoices a plan still holds, with why."""
        held: dict[str, str] = {}
        invoices = {inv.id: inv for inv in self.s.invoices}
        for plan in self.s.plans:
            person = self.s.customers.get(plan.customer_id, self.unknown)
            today = self.today(person.zone)
            owed = sum((balances.get(i, ZERO) for i in plan.invoice_ids), ZERO)
            basis = plan.basis if plan.basis is not None else plan.total
            paid = basis - owed
            total = plan.total
            if paid >= total or owed <= 0:
                self._transition(
                    Change.PLAN_COMPLETED,
                    plan.id,
                    f"{_money(paid, plan.currency)} paid of {_money(total, plan.currency)}",
                )
                continue
            unpaid: list[tuple[int, date, Decimal]] = []
            running = ZERO
            for inst in plan.instalments:
                running += inst.amount
                left = min(inst.amount, running - paid)
                if left > 0:
                    unpaid.append((inst.seq, inst.due, left))
            grace = timedelta(days=self.p.plans.grace_days)
            missed = [u for u in unpaid if u[1] + grace < today]
            if len(missed) > plan.missed_allowed:
                self._transition(
                    Change.PLAN_ENDED,
                    plan.id,
                    f"{len(missed)} instalments missed (the plan allows {plan.missed_allowed})",
                )
                continue
            open_ids = [i for i in plan.invoice_ids if i in invoices]
            for invoice_id in open_ids:
                held[invoice_id] = f"on payment plan {plan.id} (see the plan's own line)"
            if not open_ids:
                continue
            seq, due, left = unpaid[0]
            first = min((invoices[i] for i in open_ids), key=lambda i: (i.due_date, i.id))
            subject = plan_subject(plan.id, seq)
            # a paused customer is not chased for an instalment either, nor one whose unapplied
            # payments and credits cover every invoice of the plan
            stop = self._paused(plan.customer_id, today, by_customer)
            if stop is None and all(i in in_flight for i in open_ids):
                stop = "; ".join(in_flight[i] for i in open_ids)
            floor = self.p.minimum(plan.currency)
            if left <= floor and stop is None and due < today:
                self.decisions.append(
                    Decision(
                        subject=subject,
                        customer_id=plan.customer_id,
                        status=Status.NOTHING,
                        reason=(
                            f"payment plan {plan.id}: instalment {seq} has "
                            f"{_money(left, plan.currency)} left, not above the policy's "
                            f"minimum of {_money(floor, plan.currency)}"
                        ),
                        invoice_id=first.id,
                        number=first.number,
                        plan_id=plan.id,
                        amount=Money(left, plan.currency),
                    )
                )
                continue
            if due >= today or stop is not None:
                self.decisions.append(
                    Decision(
                        subject=subject,
                        customer_id=plan.customer_id,
                        status=Status.HELD,
                        reason=(
                            f"payment plan {plan.id}: instalment {seq} of "
                            f"{_money(left, plan.currency)} due {day_words(due)}; "
                            f"{_money(paid, plan.currency)} paid of "
                            f"{_money(total, plan.currency)}"
                            + (f"; {stop}" if stop is not None else "")
                        ),
                        invoice_id=first.id,
                        number=first.number,
                        plan_id=plan.id,
                        amount=Money(left, plan.currency),
                    )
                )
                continue
            self._stages(
                subject,
                first,
                person,
                anchor=due,
                amount=left,
                firmer=False,
                plan_id=plan.id,
                overdue_only=True,
                about=f"instalment {seq} of payment plan {plan.id}, due {day_words(due)}",
            )
        return held

    # -- stages -----------------------------------------------------------------------------
    def _stages(
        self,
        subject: str,
        invoice: Invoice,
        person: Person,
        *,
        anchor: date,
        amount: Decimal,
        firmer: bool,
        plan_id: int | None = None,
        overdue_only: bool = False,
        about: str | None = None,
    ) -> None:
        today = self.today(person.zone)
        stages = self.p.stages
        reached = -1
        for item in self.done.get(subject, ()):
            reached = max(reached, self.index.get(item.stage, -1))
        currency = invoice.currency
        label = about or _invoice_words(invoice)
        # a stage's day is `anchor + offset`: it has come when its offset is at most `age`
        age = (today - anchor).days
        applicable: list[Stage] = []
        for stage in stages[reached + 1 :]:
            if overdue_only and stage.offset <= 0:
                continue
            if amount < stage.minimum_balance.get(currency, ZERO):
                continue
            if stage.offset < 0 and (
                age >= 0
                or self.local_day(
                    self.moment_for(stage, anchor + timedelta(days=stage.offset), person),
                    self._zone_of(stage, person),
                )
                >= anchor
            ):
                # a stage before the due date happens before it, or not at all: never on the
                # day a bill falls due, never late
                continue
            applicable.append(stage)
        due_now = [s for s in applicable if s.offset <= age]
        later = [s for s in applicable if s.offset > age]
        if due_now or later:
            # the latest stage whose day has come, else the next one to come
            stage = due_now[-1] if due_now else later[0]
            day = anchor + timedelta(days=stage.offset)
            tone = stage.tone.firmer() if firmer else stage.tone
            superseded: tuple[str, ...] = ()
            if due_now:
                reason = f"{label}: {stage.label} due"
                if day < today:
                    reason += f" since {self.day_words(day)}"
                reason += f"; {_balance_words(invoice, amount)}"
                if firmer:
                    reason += f"; a promise to pay was broken, so in a {tone.value} tone"
                superseded = tuple(
                    s.name
                    for s in stages[reached + 1 : self.index[stage.name]]
                    if not (overdue_only and s.offset <= 0)
                )
            else:
                reason = f"{label}: next, {stage.label}"
            self.candidates.append(
                _Candidate(
                    subject=subject,
                    customer=person,
                    invoice=invoice,
                    stage=stage,
                    amount=amount,
                    currency=currency,
                    at=self.moment_for(stage, day, person),
                    tone=tone,
                    superseded=superseded,
                    reason=reason,
                    plan_id=plan_id,
                    reached=bool(due_now),
                    day=day,
                    balance="" if due_now else _balance_words(invoice, amount),
                )
            )
            return
        last = stages[reached].label if reached >= 0 else None
        self.decisions.append(
            Decision(
                subject=subject,
                customer_id=invoice.customer_id,
                status=Status.NOTHING,
                reason=f"{label}: "
                + (f"every stage done (the last: {last})" if last else "no stage applies")
                + f"; {_balance_words(invoice, amount)}",
                invoice_id=invoice.id,
                number=invoice.number,
                plan_id=plan_id,
                amount=Money(amount, currency),
            )
        )

    def _decide(self, invoice: Invoice, person: Person, status: Status, reason: str) -> None:
        self.decisions.append(
            Decision(
                subject=invoice_subject(invoice.id),
                customer_id=invoice.customer_id,
                status=status,
                reason=f"{_invoice_words(invoice)}: {reason}",
                invoice_id=invoice.id,
                number=invoice.number,
                amount=Money(invoice.balance, invoice.currency),
            )
        )

    # -- spacing, grouping and the cap -----------------------------------------------------------
    def _space_and_cap(self) -> None:
        spacing = timedelta(days=self.p.rules.contact_spacing_days)
        contacts = self._contacts
        by_customer: dict[str, list[_Candidate]] = defaultdict(list)
        for cand in self.candidates:
            by_customer[cand.invoice.customer_id].append(cand)
        final: list[_Candidate] = []
        for customer_id, cands in by_customer.items():
            cands.sort(key=lambda c: (c.at, c.invoice.due_date, c.subject))
            last = self.last_contact.get(customer_id)
            planned = False  # `last` is a contact this plan makes, not one in the history
            contact_day: date | None = None
            contact_at: datetime | None = None
            group: list[_Candidate] = []
            for cand in cands:
                if not contacts[cand.stage.name]:
                    final.append(cand)
                    continue
                zone = cand.customer.zone
                if contact_at is not None and (
                    cand.at <= contact_at or self.local_day(cand.at, zone) == contact_day
                ):
                    # due by the day of the contact already planned (which spacing may have
                    # pushed past this one's own day): one contact for both
                    group.append(cand)
                    continue
                if group:
                    self._group(group, final)
                    last, planned = contact_at, True
                    group = []
                if last is not None and spacing and cand.at < last + spacing:
                    cand.at = self.earliest(last + spacing, zone)
                    said = "is to be contacted" if planned else "was last contacted"
                    cand.waiting.append(
                        f"contact spacing: {cand.customer.name} {said} "
                        f"{self.when(last, zone)} for another invoice; at most once every "
                        f"{self.p.rules.contact_spacing_days} days"
                        if planned
                        else f"contact spacing: {cand.customer.name} {said} "
                        f"{self.when(last, zone)}; at most once every "
                        f"{self.p.rules.contact_spacing_days} days"
                    )
                contact_at = cand.at
                contact_day = self.local_day(cand.at, zone)
                group.append(cand)
            if group:
                self._group(group, final)
        final.sort(key=lambda c: (c.at, c.invoice.due_date, c.subject))
        counted = 0
        cap = self.p.rules.max_actions_per_run
        over_cap = (
            f"over the policy's cap of {cap} actions a run (a breaker against "
            "a bad policy edit or sync)"
        )
        # per stage, its actions: (kind, the approval it always waits for, counts to the cap)
        kinds: dict[str, list[tuple[ActionKind, str | None, bool]]] = {}
        for stage in self.p.stages:
            kinds[stage.name] = []
            for kind in stage.actions:
                if stage.waits(kind):
                    waits = f"the policy has the {kind.value} of {stage.label} wait for approval"
                    kinds[stage.name].append((kind, waits, False))
                elif self.p.rules.approval:
                    waits = "the policy has every action wait for approval"
                    kinds[stage.name].append((kind, waits, False))
                else:
                    kinds[stage.name].append((kind, None, True))
        for cand in final:
            due = cand.at <= self.now
            if due and self.stale:
                cand.stale = True
            if due and not cand.stale:
                status = Status.DUE
            elif due or cand.reached:
                status = Status.WAITING
            else:
                status = Status.SCHEDULED
            stage = cand.stage
            title = stage.label
            amount = Money(cand.amount, cand.currency)
            prefix = f"{self.s.connector}/{cand.subject}/{stage.name}/"
            actions: list[Action] = []
            # a stage whose day has not come has no actions yet: what it will do is its
            # stage's business, and 100,000 open invoices are mostly waiting for a later day
            for kind, waits_for, capped in (
                kinds[stage.name] if status is not Status.SCHEDULED else ()
            ):
                approval = waits_for
                if capped and status is Status.DUE:
                    if counted >= cap:
                        approval = over_cap
                    else:
                        counted += 1
                key = prefix + kind.value
                actions.append(
                    Action(
                        id=action_id(key),
                        key=key,
                        kind=kind,
                        stage=stage.name,
                        stage_title=title,
                        tone=cand.tone,
                        customer_id=cand.invoice.customer_id,
                        invoice_id=cand.invoice.id,
                        subject=cand.subject,
                        amount=amount,
                        at=cand.at,
                        approval=approval,
                    )
                )
            reason = cand.reason
            zone = self._zone_of(stage, cand.customer)
            if status is Status.WAITING:
                if cand.stale:
                    reason += "; waiting for a good sync (stale data never sends)"
                else:
                    why = cand.waiting or self._why_later(cand, zone)
                    reason += f"; not before {self.when(cand.at, zone)} ({'; '.join(why)})"
            elif status is Status.SCHEDULED:
                reason += f" on {self.when(cand.at, zone)}"
                moved = self._moved(cand, zone)
                if moved or cand.waiting:
                    reason += f" ({'; '.join(moved + cand.waiting)})"
                reason += f"; {cand.balance}"
            if cand.superseded:
                reason += f"; superseded by the catch-up rule: {', '.join(cand.superseded)}"
            self.decisions.append(
                Decision(
                    subject=cand.subject,
                    customer_id=cand.invoice.customer_id,
                    status=status,
                    reason=reason,
                    invoice_id=cand.invoice.id,
                    number=cand.invoice.number,
                    plan_id=cand.plan_id,
                    stage=stage.name,
                    at=cand.at,
                    amount=amount,
                    actions=tuple(actions),
                    superseded=cand.superseded,
                )
            )

    def _moved(self, cand: _Candidate, zone: ZoneInfo) -> list[str]:
        """Why a stage happens after its own day (a weekend, a holiday), in words."""
        if cand.day is None or self.local_day(cand.at, zone) <= cand.day:
            return []
        closed = self.cal.closed_because(cand.day)
        return [f"its day, {self.day_words(cand.day)}, is a {closed}"] if closed else []

    def _zone_of(self, stage: Stage, person: Person) -> ZoneInfo:
        return person.zone if self._contacts[stage.name] else self.s.firm_zone

    def _why_later(self, cand: _Candidate, zone: ZoneInfo) -> list[str]:
        why = self._why.get(zone)
        if why is None:
            why = self._why[zone] = self.cal.why_not(self.now, zone) or "later today"
        return [why]

    def _group(self, group: list[_Candidate], final: list[_Candidate]) -> None:
        """Several invoices due for one contact on one day happen together, at one moment."""
        at = max(c.at for c in group)
        why = next((c.waiting for c in group if c.waiting), [])
        for cand in group:
            if cand.at != at:
                cand.at = at
                if not cand.waiting:
                    cand.waiting.extend(why or ["one contact with the customer's other invoices"])
            final.append(cand)


def _invoice_words(invoice: Invoice) -> str:
    return f"invoice {invoice.number or invoice.id}"


def _balance_words(invoice: Invoice, amount: Decimal) -> str:
    words = f"balance {_money(amount, invoice.currency)}"
    if amount == invoice.balance and invoice.balance < invoice.total:
        words += (
            f" after part payments of {_money(invoice.total - invoice.balance, invoice.currency)}"
        )
    elif amount != invoice.balance:
        words = f"{_money(amount, invoice.currency)} due"
    return words


def _span(delta: timedelta) -> str:
    hours = int(delta.total_seconds() // 3600)
    return f"{hours // 24} days" if hours % 24 == 0 and hours >= 48 else f"{hours} hours"


def plan(snapshot: Snapshot, policy: Policy, now: datetime) -> Plan:
    """What is due now and what comes next, for every open invoice and plan of one connector."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    with _no_cycle_collection():
        return _Planner(snapshot, policy, now).run()


@contextmanager
def _no_cycle_collection() -> Iterator[None]:
    """A plan allocates a few objects per open invoice and makes no reference cycles: the
    cycle collector, which would otherwise walk every one of them again and again as they
    pile up (a third of the time for 100,000 invoices), is paused for it and then restored."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


# -- the forecast ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Day:
    day: date
    actions: tuple[Action, ...]


def forecast(snapshot: Snapshot, policy: Policy, now: datetime, days: int) -> list[Day]:
    """The actions of the next `days` days (today first, days in the firm's zone), as if every
    action happened at its earliest moment and nobody paid; actions that wait for approval are
    counted as given when due. The data is taken as fresh throughout: the forecast is about the
    policy, not about today's sync."""
    zone = snapshot.firm_zone
    first = now.astimezone(zone).date()
    history: list[Done] = list(snapshot.history)
    holds, ended = list(snapshot.holds), list(snapshot.ended_holds)
    out: list[Day] = []
    since = now
    for n in range(days):
        day = first + timedelta(days=n)
        end = start_of(day + timedelta(days=1), zone) - timedelta(microseconds=1)
        probe = replace(
            snapshot,
            history=tuple(history),
            holds=tuple(holds),
            ended_holds=tuple(ended),
            last_good_sync=end,
        )
        result = _Planner(probe, policy, end, since=since).run()
        # a promise or settlement found broken ends, as the runner records it: only the stage
        # that follows is firmer (ended at the day's start, so before that stage happens)
        broken = {
            t.ref
            for t in result.transitions
            if t.change in (Change.PROMISE_BROKEN, Change.SETTLEMENT_BROKEN)
        }
        if broken:
            ended += [
                replace(h, state=HoldState.BROKEN, ended_at=since) for h in holds if h.id in broken
            ]
            holds = [h for h in holds if h.id not in broken]
        todays: list[Action] = []
        for decision in result.decisions:
            if decision.status is not Status.DUE or decision.at is None:
                continue
            todays.extend(decision.actions)
            for name in decision.superseded:
                history.append(_done(decision, name, decision.at, contact=False, skip=True))
            stage = policy.stage(decision.stage or "")
            history.append(_done(decision, stage.name, decision.at, contact=stage.contacts))
        out.append(Day(day, tuple(sorted(todays, key=lambda a: (a.at, a.key)))))
        since = end + timedelta(microseconds=1)
    return out


def _done(
    decision: Decision, stage: str, at: datetime | None, *, contact: bool, skip: bool = False
) -> Done:
    assert at is not None
    return Done(
        subject=decision.subject,
        customer_id=decision.customer_id,
        stage=stage,
        at=at,
        contact=contact,
        superseded=skip,
    )


def in_flight(
    invoices: Iterable[Invoice], unapplied: Mapping[tuple[str, str], Decimal]
) -> dict[str, str]:
    """The invoices a customer's unapplied payments and credits cover, oldest first (as the
    bookkeeper would apply them), each with the words that say so."""
    covered: dict[str, str] = {}
    by_key: dict[tuple[str, str], list[Invoice]] = defaultdict(list)
    for invoice in invoices:
        by_key[(invoice.customer_id, invoice.currency)].append(invoice)
    for key, amount in unapplied.items():
        if amount <= 0 or key not in by_key:
            continue
        left = amount
        for invoice in sorted(by_key[key], key=lambda i: (i.due_date, i.id)):
            if invoice.balance <= 0:
                continue
            if left < invoice.balance:
                break
            left -= invoice.balance
            covered[invoice.id] = (
                f"payment in flight: {_money(amount, key[1])} paid or credited but not "
                f"applied; ask the bookkeeper to apply {_money(invoice.balance, key[1])} "
                "to this invoice"
            )
    return covered


def count_by(actions: Iterable[Action]) -> dict[ActionKind, int]:
    counts: dict[ActionKind, int] = defaultdict(int)
    for action in actions:
        counts[action.kind] += 1
    return dict(counts)


__all__ = [
    "Action",
    "Change",
    "Day",
    "Decision",
    "Plan",
    "Status",
    "Transition",
    "action_id",
    "count_by",
    "forecast",
    "in_flight",
    "plan",
]
