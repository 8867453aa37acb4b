"""The planner's invariants, over generated books, policies, holds and moments (Hypothesis).

Every check here is made independently of the planner's own reasoning: a contact moment is
converted to the customer's zone and compared with the policy's window and business days; the
holds that silence an invoice are read off the snapshot; the spacing between contacts is measured
on the actions themselves. Runs are derandomized, so CI sees the same examples every time.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from functools import cache
from itertools import pairwise
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arsync.domain import (
    Hold,
    HoldKind,
    HoldSource,
    HoldState,
    Instalment,
    Invoice,
    InvoiceStatus,
    Money,
    PaymentPlan,
    PlanState,
)
from arsync.escalation.calendar import Calendar
from arsync.escalation.planner import Action, Day, Plan, Status, forecast, plan
from arsync.escalation.policy import CONTACT, WEEKDAYS, ActionKind, CalendarRules, Policy, Tone
from arsync.escalation.snapshot import Done, Person, Snapshot

PROPERTIES = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

ZONES = (
    "Europe/London",
    "America/New_York",
    "Australia/Sydney",
    "Pacific/Auckland",
    "America/St_Johns",
    "Asia/Kolkata",
    "Australia/Lord_Howe",
    "UTC",
)
#: the firm's country and region: known ones, a country-wide table, no country, an unknown one
FIRMS: tuple[tuple[str | None, str | None], ...] = (
    ("GB", "ENG"),
    ("GB", "SCT"),
    ("GB", None),
    ("US", "NY"),
    ("US", "CA"),
    ("AU", "NSW"),
    ("NZ", None),
    ("NZ", "ZZ"),
    (None, None),
)
CURRENCIES = ("USD", "GBP", "EUR", "NZD", "JPY")
#: quiet-hours windows worth trying: the usual ones, edges inside the hour that DST skips or
#: repeats, a window that DST swallows whole, the widest a policy can state
WINDOWS = (
    ("08:00", "21:00"),
    ("08:00", "21:00"),
    ("09:00", "17:30"),
    ("01:30", "03:00"),
    ("02:30", "04:00"),
    ("02:00", "02:30"),
    ("01:00", "02:00"),
    ("00:00", "23:59"),
    ("00:30", "01:30"),
    ("03:00", "09:00"),
)
FIRST = datetime(2026, 1, 1, tzinfo=UTC)
LAST = datetime(2027, 12, 31, tzinfo=UTC)
CENT = Decimal("0.01")


@cache
def zone(key: str) -> ZoneInfo:
    return ZoneInfo(key)


@cache
def transitions() -> tuple[datetime, ...]:
    """Every DST change of the zones above in 2026 and 2027 (to the hour), found by scanning."""
    found: set[datetime] = set()
    for key in ZONES:
        tz = zone(key)
        moment = FIRST
        before = moment.astimezone(tz).utcoffset()
        while moment < LAST:
            moment += timedelta(hours=1)
            offset = moment.astimezone(tz).utcoffset()
            if offset != before:
                found.add(moment)
                before = offset
    return tuple(sorted(found))


_CALENDARS: dict[tuple[object, ...], Calendar] = {}


def calendar(rules: CalendarRules, country: str | None, region: str | None) -> Calendar:
    """One calendar per policy calendar and firm: the holiday tables are slow to build."""
    key = (
        tuple(rules.business_days),
        rules.public_holidays,
        rules.quiet_hours.start,
        rules.quiet_hours.end,
        country,
        region,
    )
    if key not in _CALENDARS:
        _CALENDARS[key] = Calendar.of(rules, country, region)
    return _CALENDARS[key]


# -- strategies --------------------------------------------------------------------------------
def often(draw: st.DrawFn, one_in: int) -> bool:
    """True one time in `one_in`."""
    return draw(st.integers(1, one_in)) == 1


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


@st.composite
def quiet_hours(draw: st.DrawFn) -> dict[str, str]:
    if not often(draw, 3):
        start, end = draw(st.sampled_from(WINDOWS))
        return {"start": start, "end": end}
    start_min = draw(st.integers(0, 23 * 60 + 58))
    end_min = draw(st.integers(start_min + 1, 23 * 60 + 59))
    return {"start": clock(start_min), "end": clock(end_min)}


@st.composite
def policies(draw: st.DrawFn) -> Policy:
    count = draw(st.integers(1, 5))
    offsets = sorted(
        draw(
            st.lists(
                st.integers(-20, 130).filter(lambda n: n != 0),
                min_size=count,
                max_size=count,
                unique=True,
            )
        )
    )
    ranks = sorted(draw(st.lists(st.integers(0, 3), min_size=count, max_size=count)))
    kinds = [k.value for k in ActionKind]
    stages: list[dict[str, Any]] = []
    for n, (offset, rank) in enumerate(zip(offsets, ranks, strict=True)):
        stage: dict[str, Any] = {
            "name": f"s{n}-{'before' if offset < 0 else 'after'}",
            "offset": offset,
            "actions": draw(st.lists(st.sampled_from(kinds), min_size=1, max_size=3, unique=True)),
            "tone": list(Tone)[rank].value,
        }
        if often(draw, 6):
            stage["minimum_balance"] = {
                draw(st.sampled_from(CURRENCIES)): draw(st.integers(0, 900))
            }
        if often(draw, 6):
            stage["approval"] = draw(st.booleans())
        stages.append(stage)
    data: dict[str, Any] = {
        "name": "generated",
        "calendar": {
            "business_days": draw(
                st.just(list(WEEKDAYS[:5]))
                | st.just(list(WEEKDAYS[:5]))
                | st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True)
            ),
            "public_holidays": draw(st.booleans()),
            "quiet_hours": draw(quiet_hours()),
        },
        "rules": {
            "contact_spacing_days": draw(st.integers(0, 10)),
            "max_actions_per_run": draw(st.integers(1, 12)),
            "stale_sync": draw(st.sampled_from(["24h", "2d", "6h"])),
            "approval": often(draw, 8),
        },
        "minimum_balance": draw(
            st.dictionaries(st.sampled_from(CURRENCIES), st.integers(0, 60), max_size=3)
        ),
        "promises": {"grace_days": draw(st.integers(0, 10))},
        "plans": {
            "grace_days": draw(st.integers(0, 10)),
            "missed_allowed": draw(st.integers(0, 2)),
        },
        "stages": stages,
    }
    return Policy.model_validate(data)


@st.composite
def moments(draw: st.DrawFn) -> datetime:
    """A moment in 2026 or 2027, often within three days of a DST change somewhere."""
    if draw(st.booleans()):
        change = draw(st.sampled_from(transitions()))
        return change + timedelta(minutes=draw(st.integers(-3 * 1440, 3 * 1440)))
    return draw(
        st.datetimes(
            min_value=FIRST.replace(tzinfo=None),
            max_value=LAST.replace(tzinfo=None),
            timezones=st.just(UTC),
        )
    )


def cents(draw: st.DrawFn, low: int, high: int) -> Decimal:
    return Decimal(draw(st.integers(low, high))) / 100


def hold(
    id_: int,
    kind: HoldKind,
    set_at: datetime,
    *,
    customer: str | None = None,
    invoice: str | None = None,
    until: date | None = None,
    amount: Decimal | None = None,
    currency: str | None = None,
    basis: Decimal | None = None,
    state: HoldState = HoldState.ACTIVE,
    ended_at: datetime | None = None,
) -> Hold:
    return Hold(
        id=id_,
        connector_id=1,
        kind=kind,
        customer_id=customer,
        invoice_id=invoice,
        until=until,
        amount=amount,
        currency=currency,
        basis=basis,
        reason="agreed on the phone",
        source=HoldSource.ARSYNC,
        set_by="ann",
        set_at=set_at,
        state=state,
        ended_by=None,
        ended_at=ended_at,
        end_reason=None,
    )


@dataclass(frozen=True)
class Book:
    snapshot: Snapshot
    policy: Policy
    now: datetime


@st.composite
def books(draw: st.DrawFn) -> Book:
    policy = draw(policies())
    country, region = draw(st.sampled_from(FIRMS))
    firm_zone = zone(draw(st.sampled_from(ZONES)))
    cal = calendar(policy.calendar, country, region)
    customers: dict[str, Person] = {}
    for n in range(draw(st.integers(1, 4))):
        cid = f"C{n}"
        customers[cid] = Person(
            cid, f"Customer {n}", f"c{n}@example.com", zone(draw(st.sampled_from(ZONES))), "test"
        )
    now = draw(moments())
    today = now.date()
    invoices: list[Invoice] = []
    for n in range(draw(st.integers(1, 8))):
        currency = draw(st.sampled_from(CURRENCIES))
        total = cents(draw, 100, 2_000_000)
        floor = policy.minimum(currency)
        balance = draw(
            st.sampled_from(
                [
                    Decimal(0),
                    floor,
                    max(floor - Decimal("0.01"), Decimal(0)),
                    total,
                    total,
                    floor + cents(draw, 1, 100_000),
                    floor + cents(draw, 1, 100_000),
                    floor + (total * Decimal(draw(st.integers(1, 99))) / 100).quantize(CENT),
                ]
            )
        )
        due = today + timedelta(days=draw(st.integers(-200, 60)))
        # now and then a customer the snapshot does not know (the firm's zone is theirs)
        owner = "C9" if often(draw, 20) else draw(st.sampled_from(sorted(customers)))
        invoices.append(
            Invoice(
                id=f"I{n}",
                number=f"INV-{n:03d}",
                customer_id=owner,
                issue_date=due - timedelta(days=30),
                due_date=due,
                currency=currency,
                total=max(total, balance),
                balance=balance,
                status=InvoiceStatus.OPEN,
                sent=True,
                updated_at=now - timedelta(days=1),
            )
        )
    set_at = now - timedelta(days=40)
    holds: list[Hold] = []
    ended: list[Hold] = []
    ids = iter(range(1, 1000))
    for inv in invoices:
        kind = draw(
            st.sampled_from(
                [None] * 10
                + [HoldKind.EXCLUDE, HoldKind.DISPUTE, HoldKind.PROMISE, HoldKind.SETTLEMENT]
            )
        )
        c, i = inv.customer_id, inv.id
        if kind in (HoldKind.EXCLUDE, HoldKind.DISPUTE):
            holds.append(hold(next(ids), kind, set_at, customer=c, invoice=i))
        elif kind is HoldKind.PROMISE:
            promised = today + timedelta(days=draw(st.integers(-25, 25)))
            holds.append(hold(next(ids), kind, set_at, until=promised, customer=c, invoice=i))
        elif kind is HoldKind.SETTLEMENT:
            basis = inv.balance + cents(draw, 0, 500_000)
            amount = (basis * Decimal(draw(st.integers(60, 100))) / 100).quantize(CENT)
            until = draw(st.none() | st.integers(-25, 25).map(lambda d: today + timedelta(days=d)))
            holds.append(
                hold(
                    next(ids),
                    kind,
                    set_at,
                    until=until,
                    amount=amount,
                    currency=inv.currency,
                    basis=basis,
                    customer=c,
                    invoice=i,
                )
            )
        if often(draw, 5):
            ended_at = now - timedelta(hours=draw(st.integers(1, 24 * 60)))
            ended.append(
                hold(
                    next(ids),
                    HoldKind.PROMISE,
                    set_at,
                    until=ended_at.date() - timedelta(days=5),
                    state=HoldState.BROKEN,
                    ended_at=ended_at,
                    customer=c,
                    invoice=i,
                )
            )
    for cid in customers:
        if often(draw, 6):
            until = draw(st.none() | st.integers(-10, 10).map(lambda d: today + timedelta(days=d)))
            holds.append(hold(next(ids), HoldKind.PAUSE, set_at, customer=cid, until=until))
    # a promise on an invoice since paid, and one on an invoice since voided
    closed: dict[str, InvoiceStatus] = {}
    if draw(st.booleans()):
        closed = {"X1": InvoiceStatus.PAID, "X2": InvoiceStatus.VOIDED}
        for iid in closed:
            holds.append(
                hold(next(ids), HoldKind.PROMISE, set_at, invoice=iid, until=today + timedelta(3))
            )
    plans: list[PaymentPlan] = []
    taken: set[str] = set()
    for cid in customers:
        mine = [i for i in invoices if i.customer_id == cid and i.balance > 0]
        if not mine or not often(draw, 3):
            continue
        currency = mine[0].currency
        covered = [i for i in mine if i.currency == currency][: draw(st.integers(1, 2))]
        taken.update(i.id for i in covered)
        owed = sum((i.balance for i in covered), Decimal(0))
        count = draw(st.integers(1, 4))
        first_due = today + timedelta(days=draw(st.integers(-90, 20)))
        share = (owed / count).quantize(CENT)
        amounts = [share] * (count - 1) + [owed - share * (count - 1)]
        paid = cents(draw, 0, int(owed * 100)) if draw(st.booleans()) else Decimal(0)
        plans.append(
            PaymentPlan(
                id=100 + len(plans),
                connector_id=1,
                customer_id=cid,
                invoice_ids=tuple(i.id for i in covered),
                currency=currency,
                instalments=tuple(
                    Instalment(seq + 1, first_due + timedelta(days=30 * seq), amount)
                    for seq, amount in enumerate(amounts)
                ),
                basis=owed + paid if draw(st.booleans()) else None,
                missed_allowed=draw(st.integers(0, 2)),
                reason="agreed",
                source=HoldSource.ARSYNC,
                set_by="ann",
                set_at=set_at,
                state=PlanState.ACTIVE,
                ended_by=None,
                ended_at=None,
                end_reason=None,
            )
        )
    unapplied: dict[tuple[str, str], Decimal] = {}
    for inv in invoices:
        key = (inv.customer_id, inv.currency)
        if key not in unapplied and often(draw, 5):
            owed = sum(
                (i.balance for i in invoices if (i.customer_id, i.currency) == key), Decimal(0)
            )
            unapplied[key] = draw(st.sampled_from([owed, owed + 1, owed / 2, Decimal(5)]))
    history: list[Done] = []
    stages = policy.stages
    for inv in invoices:
        if not often(draw, 3):
            continue
        reached = draw(st.integers(0, len(stages) - 1))
        ago = draw(st.integers(1, 24 * 200))
        for n in range(reached + 1):
            if n < reached and draw(st.booleans()):
                continue
            ago = max(1, ago - draw(st.integers(0, 24 * 30)))
            skipped = n < reached and draw(st.integers(0, 3)) == 0
            history.append(
                Done(
                    subject=f"invoice:{inv.id}",
                    customer_id=inv.customer_id,
                    stage=stages[n].name,
                    at=now - timedelta(hours=ago),
                    contact=stages[n].contacts and not skipped,
                    superseded=skipped,
                )
            )
    history.sort(key=lambda d: d.at)
    if not often(draw, 3):
        # a moment at which some customer may be contacted, so that their stages fall due now
        chosen = draw(st.sampled_from(invoices))
        now = cal.earliest(now, customer_zone_of(customers, chosen.customer_id, firm_zone))
    fresh = not often(draw, 10)
    synced = timedelta(minutes=draw(st.integers(0, (60 if often(draw, 4) else 5) * 60)))
    snapshot = Snapshot(
        connector="acme",
        platform=draw(st.sampled_from(["qbo", "xero"])),
        firm_zone=firm_zone,
        calendar=cal,
        customers=customers,
        invoices=tuple(invoices),
        unapplied=unapplied,
        holds=tuple(holds),
        ended_holds=tuple(ended),
        plans=tuple(plans),
        closed=closed,
        history=tuple(history),
        last_good_sync=now - synced if fresh else None,
    )
    if draw(st.booleans()):
        # run again at a moment the planner named for a stage that waits ("not before ...")
        named = sorted(
            {
                d.at
                for d in plan(snapshot, policy, now).decisions
                if d.status in (Status.WAITING, Status.SCHEDULED) and d.at is not None
            }
        )
        if named:
            now = draw(st.sampled_from(named[:5]))
            snapshot = replace(snapshot, last_good_sync=now - synced if fresh else None)
    return Book(snapshot, policy, now)


# -- independent readings of the snapshot -------------------------------------------------------
def customer_zone_of(customers: Mapping[str, Person], customer_id: str, firm: ZoneInfo) -> ZoneInfo:
    person = customers.get(customer_id)
    return person.zone if person is not None else firm


def customer_zone(snapshot: Snapshot, customer_id: str) -> ZoneInfo:
    return customer_zone_of(snapshot.customers, customer_id, snapshot.firm_zone)


def local_today(snapshot: Snapshot, customer_id: str, now: datetime) -> date:
    return now.astimezone(customer_zone(snapshot, customer_id)).date()


def outside_contact_hours(book: Book, action: Action) -> str | None:
    """Why `action` may not reach its customer at its moment, checked from first principles."""
    rules = book.policy.calendar
    local = action.at.astimezone(customer_zone(book.snapshot, action.customer_id))
    start, end = rules.quiet_hours.start, rules.quiet_hours.end
    if not start <= local.time() < end:
        return f"{local:%Y-%m-%d %H:%M %Z} is outside {start:%H:%M}-{end:%H:%M}"
    if WEEKDAYS[local.weekday()] not in rules.business_days:
        return f"{local:%A %Y-%m-%d} is not a business day"
    if not book.snapshot.calendar.business_day(local.date()):
        return f"{local:%Y-%m-%d} is a public holiday"
    return None


def silenced(book: Book, now: datetime, *, lasting: bool) -> dict[str, str]:
    """The subjects nothing may happen for at `now`, and why. `lasting`: only the reasons that
    stay true whatever the date (for a forecast, in which nobody pays and no hold changes)."""
    s, policy = book.snapshot, book.policy
    quiet: dict[str, str] = {}
    paused: set[str] = set()
    for h in s.holds:
        if h.kind is HoldKind.PAUSE and h.customer_id is not None and h.invoice_id is None:
            today = local_today(s, h.customer_id, now)
            if h.until is None or (not lasting and today <= h.until):
                paused.add(h.customer_id)
    owed: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for inv in s.invoices:
        if inv.balance > 0:
            owed[(inv.customer_id, inv.currency)] += inv.balance
    for inv in s.invoices:
        subject = f"invoice:{inv.id}"
        today = local_today(s, inv.customer_id, now)
        if inv.balance <= policy.minimum(inv.currency):
            quiet[subject] = "balance at or below the minimum"
        if inv.customer_id in paused:
            quiet[subject] = "customer paused"
        key = (inv.customer_id, inv.currency)
        if s.unapplied.get(key, Decimal(0)) >= owed[key] > 0:
            quiet[subject] = "unapplied payments cover everything the customer owes"
        for h in s.holds:
            if h.invoice_id != inv.id:
                continue
            if h.kind in (HoldKind.EXCLUDE, HoldKind.DISPUTE):
                quiet[subject] = h.kind.value
            elif h.kind is HoldKind.PROMISE and h.until is not None and not lasting:
                if today <= h.until + timedelta(days=policy.promises.grace_days):
                    quiet[subject] = "promised, within grace"
            elif h.kind is HoldKind.SETTLEMENT:
                assert h.amount is not None and h.basis is not None
                if h.basis - inv.balance >= h.amount:
                    quiet[subject] = "settlement paid"
    for p in s.plans:
        key = (p.customer_id, p.currency)
        why = None
        if p.customer_id in paused:
            why = "customer paused"
        elif s.unapplied.get(key, Decimal(0)) >= owed[key] > 0:
            why = "unapplied payments cover everything the customer owes"
        if why is not None:
            for inst in p.instalments:
                quiet[f"plan:{p.id}:{inst.seq}"] = why
    return quiet


def actions_of(result: Plan) -> list[Action]:
    return [a for d in result.decisions for a in d.actions]


def forecast_actions(days: Sequence[Day]) -> list[Action]:
    return [a for day in days for a in day.actions]


def stage_index(policy: Policy) -> dict[str, int]:
    return {stage.name: n for n, stage in enumerate(policy.stages)}


def contact_moments(actions: Iterable[Action]) -> dict[str, set[datetime]]:
    by_customer: dict[str, set[datetime]] = defaultdict(set)
    for action in actions:
        if action.kind in CONTACT:
            by_customer[action.customer_id].add(action.at)
    return by_customer


# -- the properties -----------------------------------------------------------------------------
@PROPERTIES
@given(books(), st.integers(1, 21))
def test_contact_only_in_quiet_hours_on_business_days_in_the_customers_zone(
    book: Book, days: int
) -> None:
    result = plan(book.snapshot, book.policy, book.now)
    for decision in result.decisions:
        for action in decision.actions:
            if decision.status is Status.DUE:
                assert action.at <= book.now, (action, book.now)
            else:
                assert action.at >= book.now, (action, book.now)
            if action.kind in CONTACT:
                assert outside_contact_hours(book, action) is None, (
                    decision.status,
                    action,
                    outside_contact_hours(book, action),
                )
    firm = book.snapshot.firm_zone
    for day in forecast(book.snapshot, book.policy, book.now, days):
        for action in day.actions:
            assert action.at.astimezone(firm).date() == day.day, (action, day.day)
            if action.kind in CONTACT:
                assert outside_contact_hours(book, action) is None, (
                    action,
                    outside_contact_hours(book, action),
                )


@PROPERTIES
@given(books(), st.integers(1, 40))
def test_contact_spacing_holds_over_a_forecast(book: Book, days: int) -> None:
    spacing = timedelta(days=book.policy.rules.contact_spacing_days)
    s = book.snapshot
    planned = forecast(s, book.policy, book.now, days)
    last_before: dict[str, datetime] = {}
    for done in s.history:
        if done.contact and not done.superseded:
            last_before[done.customer_id] = max(done.at, last_before.get(done.customer_id, done.at))
    for customer_id, seen in contact_moments(forecast_actions(planned)).items():
        zone_ = customer_zone(s, customer_id)
        ordered = sorted(seen)
        if customer_id in last_before:
            assert ordered[0] - last_before[customer_id] >= spacing, (
                customer_id,
                last_before[customer_id],
                ordered[0],
            )
        for earlier, later in pairwise(ordered):
            if earlier.astimezone(zone_).date() != later.astimezone(zone_).date():
                assert later - earlier >= spacing, (customer_id, earlier, later, spacing)
    # within one plan too, for every contact it lines up (due, waiting or scheduled)
    result = plan(s, book.policy, book.now)
    for customer_id, seen in contact_moments(actions_of(result)).items():
        zone_ = customer_zone(s, customer_id)
        ordered = sorted(seen)
        if customer_id in last_before:
            assert ordered[0] - last_before[customer_id] >= spacing
        for earlier, later in pairwise(ordered):
            if earlier.astimezone(zone_).date() != later.astimezone(zone_).date():
                assert later - earlier >= spacing, (customer_id, earlier, later, spacing)


@PROPERTIES
@given(books(), st.integers(1, 30))
def test_a_stage_happens_at_most_once_and_never_moves_back(book: Book, days: int) -> None:
    s, policy = book.snapshot, book.policy
    index = stage_index(policy)
    result = plan(s, policy, book.now)
    subjects = [d.subject for d in result.decisions]
    assert len(subjects) == len(set(subjects)), subjects
    reached: dict[str, int] = defaultdict(lambda: -1)
    happened: set[tuple[str, str]] = set()
    for done in s.history:
        reached[done.subject] = max(reached[done.subject], index[done.stage])
        happened.add((done.subject, done.stage))
    balances = {f"invoice:{inv.id}": inv for inv in s.invoices}
    for decision in result.decisions:
        stages = {a.stage for a in decision.actions}
        assert len(stages) <= 1, decision
        for action in decision.actions:
            assert action.subject == decision.subject
            assert index[action.stage] > reached[action.subject], (action, reached)
            invoice = balances.get(action.subject)
            if invoice is not None:
                assert action.amount == Money(invoice.balance, invoice.currency)
    for day in forecast(s, policy, book.now, days):
        todays = {(a.subject, a.stage) for a in day.actions}
        per_subject = defaultdict(list)
        for subject, stage in todays:
            per_subject[subject].append(stage)
        for subject, names in per_subject.items():
            assert len(names) == 1, (day.day, subject, names)
            assert (subject, names[0]) not in happened, (day.day, subject, names[0])
            assert index[names[0]] > reached[subject], (day.day, subject, names[0], reached)
            happened.add((subject, names[0]))
            reached[subject] = index[names[0]]


@PROPERTIES
@given(books(), st.integers(1, 21))
def test_nothing_for_what_is_held_small_or_covered(book: Book, days: int) -> None:
    s, policy = book.snapshot, book.policy
    quiet = silenced(book, book.now, lasting=False)
    result = plan(s, policy, book.now)
    for action in actions_of(result):
        assert action.subject not in quiet, (action, quiet[action.subject])
    for decision in result.decisions:
        if decision.subject in quiet:
            assert decision.status in (Status.HELD, Status.NOTHING), decision
    lasting = silenced(book, book.now, lasting=True)
    for action in forecast_actions(forecast(s, policy, book.now, days)):
        assert action.subject not in lasting, (action, lasting[action.subject])


@PROPERTIES
@given(books(), st.randoms(use_true_random=False))
def test_the_same_inputs_give_the_same_actions_in_any_order(
    book: Book, shuffler: random.Random
) -> None:
    s, policy = book.snapshot, book.policy
    first = plan(s, policy, book.now)
    again = plan(s, policy, book.now)
    assert actions_of(first) == actions_of(again)
    assert first.decisions == again.decisions

    def shuffled(items: Sequence[Any]) -> tuple[Any, ...]:
        copy = list(items)
        shuffler.shuffle(copy)
        return tuple(copy)

    customers = list(s.customers.items())
    shuffler.shuffle(customers)
    mixed = replace(
        s,
        customers=dict(customers),
        invoices=shuffled(s.invoices),
        holds=shuffled(s.holds),
        ended_holds=shuffled(s.ended_holds),
        plans=shuffled(s.plans),
    )
    assert set(actions_of(plan(mixed, policy, book.now))) == set(actions_of(first))
    days = 10
    assert forecast(mixed, policy, book.now, days) == forecast(s, policy, book.now, days)


@PROPERTIES
@given(books(), st.integers(1, 24 * 60))
def test_action_ids_derive_from_what_an_action_is_never_from_when(
    book: Book, hours_later: int
) -> None:
    s, policy = book.snapshot, book.policy
    later = book.now + timedelta(hours=hours_later)
    seen: dict[tuple[str, str, ActionKind], str] = {}
    runs = [
        actions_of(plan(s, policy, book.now)),
        actions_of(plan(s, policy, later)),
        forecast_actions(forecast(s, policy, book.now, 14)),
    ]
    for actions in runs:
        for action in actions:
            what = (action.subject, action.stage, action.kind)
            assert seen.setdefault(what, action.id) == action.id, (what, action.id)
            assert action.key == f"acme/{action.subject}/{action.stage}/{action.kind.value}"
    # different things have different ids
    assert len(set(seen.values())) == len(seen)
    # the same actions with another connector name get other ids
    other = replace(s, connector="other")
    for action in actions_of(plan(other, policy, book.now)):
        what = (action.subject, action.stage, action.kind)
        if what in seen:
            assert seen[what] != action.id


@PROPERTIES
@given(books(), st.integers(20, 120))
def test_a_broken_promise_makes_only_the_next_stage_firmer(book: Book, days: int) -> None:
    s, policy = book.snapshot, book.policy
    may_break: dict[str, int] = defaultdict(int)
    for h in (*s.holds, *s.ended_holds):
        if h.invoice_id is not None and h.kind in (HoldKind.PROMISE, HoldKind.SETTLEMENT):
            may_break[f"invoice:{h.invoice_id}"] += 1
    firmer: dict[str, set[str]] = defaultdict(set)
    for action in forecast_actions(forecast(s, policy, book.now, days)):
        if action.tone is not policy.stage(action.stage).tone:
            assert action.tone is policy.stage(action.stage).tone.firmer(), action
            firmer[action.subject].add(action.stage)
    for subject, stages in firmer.items():
        assert len(stages) <= may_break[subject], (subject, sorted(stages))
