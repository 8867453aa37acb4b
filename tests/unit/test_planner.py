"""The planner by example: each expectation worked out by hand from the calendar and the policy.

The firm is in London (England's bank holidays) unless a test says otherwise, the policy is the
shipped standard one (a reminder 3 days before the due date, then at 30, 60 and 90 days), and
every moment is built explicitly: nothing here depends on the day the tests run.
"""

from __future__ import annotations

import base64
import hashlib
import tomllib
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

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
from arsync.escalation.planner import (
    Action,
    Change,
    Decision,
    Plan,
    Status,
    Transition,
    action_id,
    forecast,
    plan,
)
from arsync.escalation.policy import ActionKind, Policy, Tone, builtin_policies, builtin_text
from arsync.escalation.snapshot import Done, Person, Snapshot

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
SYDNEY = ZoneInfo("Australia/Sydney")
STANDARD = builtin_policies()["standard"]
GENTLE = builtin_policies()["gentle"]
SET_AT = datetime(2026, 1, 10, 9, 0, tzinfo=UTC)  # a Saturday: "Sat 10 Jan 2026"
CAP_WORDS = (
    "over the policy's cap of {cap} actions a run (a breaker against a bad policy edit or sync)"
)


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def standard_with(**tables: Any) -> Policy:
    """The standard policy with some tables changed key by key (`stages` replaced whole)."""
    data = tomllib.loads(builtin_text("standard"))
    for table, values in tables.items():
        data[table] = values if table == "stages" else {**data.get(table, {}), **values}
    return Policy.model_validate({**data, "name": "standard"})


def person(cid: str = "C1", zone: ZoneInfo = LONDON, name: str = "Ada Ltd") -> Person:
    return Person(cid, name, f"{cid.lower()}@example.com", zone, "test")


def invoice(
    iid: str,
    due: date,
    balance: str | int,
    *,
    customer: str = "C1",
    total: str | int | None = None,
    currency: str = "GBP",
) -> Invoice:
    return Invoice(
        id=iid,
        number=f"INV-{iid[1:]}",
        customer_id=customer,
        issue_date=due - timedelta(days=30),
        due_date=due,
        currency=currency,
        total=Decimal(total if total is not None else balance),
        balance=Decimal(balance),
        status=InvoiceStatus.OPEN,
        sent=True,
        updated_at=SET_AT,
    )


def done(subject: str, stage: str, at: datetime, *, customer: str = "C1") -> Done:
    contact = STANDARD.stage(stage).contacts if stage in {s.name for s in STANDARD.stages} else True
    return Done(subject=subject, customer_id=customer, stage=stage, at=at, contact=contact)


def hold(
    id_: int,
    kind: HoldKind,
    *,
    invoice_id: str | None = None,
    customer: str = "C1",
    until: date | None = None,
    amount: str | None = None,
    basis: str | None = None,
    state: HoldState = HoldState.ACTIVE,
    ended_at: datetime | None = None,
) -> Hold:
    return Hold(
        id=id_,
        connector_id=1,
        kind=kind,
        customer_id=customer,
        invoice_id=invoice_id,
        until=until,
        amount=Decimal(amount) if amount is not None else None,
        currency="GBP" if amount is not None else None,
        basis=Decimal(basis) if basis is not None else None,
        reason="said so on the phone",
        source=HoldSource.ARSYNC,
        set_by="ann",
        set_at=SET_AT,
        state=state,
        ended_by=None,
        ended_at=ended_at,
        end_reason=None,
    )


def payment_plan(
    instalments: Sequence[tuple[date, str]],
    *,
    invoice_ids: tuple[str, ...] = ("I1",),
    basis: str | None = None,
    missed_allowed: int = 1,
) -> PaymentPlan:
    return PaymentPlan(
        id=7,
        connector_id=1,
        customer_id="C1",
        invoice_ids=invoice_ids,
        currency="GBP",
        instalments=tuple(
            Instalment(seq, due, Decimal(amount))
            for seq, (due, amount) in enumerate(instalments, start=1)
        ),
        basis=Decimal(basis) if basis is not None else None,
        missed_allowed=missed_allowed,
        reason="agreed by phone",
        source=HoldSource.ARSYNC,
        set_by="ann",
        set_at=SET_AT,
        state=PlanState.ACTIVE,
        ended_by=None,
        ended_at=None,
        end_reason=None,
    )


def book(
    now: datetime,
    invoices: Sequence[Invoice],
    *,
    policy: Policy = STANDARD,
    customers: Sequence[Person] = (),
    holds: Sequence[Hold] = (),
    ended: Sequence[Hold] = (),
    plans: Sequence[PaymentPlan] = (),
    history: Sequence[Done] = (),
    unapplied: dict[tuple[str, str], Decimal] | None = None,
    closed: dict[str, InvoiceStatus] | None = None,
    synced: timedelta | None = timedelta(hours=1),
    firm: ZoneInfo = LONDON,
    country: str | None = "GB",
    region: str | None = "ENG",
) -> Snapshot:
    people = list(customers) or [person()]
    return Snapshot(
        connector="acme",
        platform="qbo",
        firm_zone=firm,
        calendar=Calendar.of(policy.calendar, country, region),
        customers={p.id: p for p in people},
        invoices=tuple(invoices),
        unapplied=unapplied or {},
        holds=tuple(holds),
        ended_holds=tuple(ended),
        plans=tuple(plans),
        closed=closed or {},
        history=tuple(history),
        last_good_sync=None if synced is None else now - synced,
    )


def decide(snapshot: Snapshot, now: datetime, policy: Policy = STANDARD) -> Plan:
    return plan(snapshot, policy, now)


def only(result: Plan, subject: str = "invoice:I1") -> Decision:
    decision = result.of(subject)
    assert decision is not None, [d.subject for d in result.decisions]
    return decision


def kinds(actions: Sequence[Action]) -> list[ActionKind]:
    return [a.kind for a in actions]


# -- catch-up -------------------------------------------------------------------------------------


def test_an_invoice_95_days_overdue_with_no_history_gets_only_the_final_stage() -> None:
    now = utc(2026, 6, 16, 9)  # Tue 16 Jun 2026, 10:00 in London
    due = date(2026, 3, 13)  # 95 days earlier; the final notice fell on Thu 11 Jun
    snapshot = book(now, [invoice("I1", due, "1200")])
    decision = only(decide(snapshot, now))
    assert decision.status is Status.DUE
    assert decision.stage == "overdue-90"
    assert decision.superseded == ("due-soon", "overdue-30", "overdue-60")
    assert decision.reason == (
        "invoice INV-1: final notice due since Thu 11 Jun 2026; balance 1,200.00 GBP; "
        "superseded by the catch-up rule: due-soon, overdue-30, overdue-60"
    )
    assert kinds(decision.actions) == [
        ActionKind.EMAIL,
        ActionKind.LETTER,
        ActionKind.NOTE,
        ActionKind.HANDOVER,
    ]
    assert {a.at for a in decision.actions} == {now}
    assert {a.tone for a in decision.actions} == {Tone.FINAL}
    assert {a.amount for a in decision.actions} == {Money(Decimal(1200), "GBP")}
    # no burst afterwards either: the forecast has the final notice today and nothing more
    days = forecast(snapshot, STANDARD, now, 14)
    assert [len(d.actions) for d in days] == [4] + [0] * 13
    assert {a.stage for a in days[0].actions} == {"overdue-90"}


def test_a_stage_already_done_is_never_due_again_and_never_moves_back() -> None:
    now = utc(2026, 6, 16, 9)
    due = date(2026, 3, 13)
    history = [done("invoice:I1", "overdue-90", utc(2026, 6, 11, 9))]
    decision = only(decide(book(now, [invoice("I1", due, "1200")], history=history), now))
    assert decision.status is Status.NOTHING
    assert decision.actions == ()
    assert decision.reason == (
        "invoice INV-1: every stage done (the last: final notice); balance 1,200.00 GBP"
    )


# -- the calendar in the customer's zone --------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "monday_opens", "why"),
    [
        # Mon 11 May 2026, 08:00 local: BST is UTC+1, EDT UTC-4, AEST UTC+10 (Sun 22:00 UTC)
        (LONDON, utc(2026, 5, 11, 7), "Mon 11 May 08:00 Europe/London (Saturday)"),
        (NEW_YORK, utc(2026, 5, 11, 12), "Mon 11 May 08:00 America/New_York (Saturday)"),
        (SYDNEY, utc(2026, 5, 10, 22), "Mon 11 May 08:00 Australia/Sydney (Saturday)"),
    ],
)
def test_a_stage_falling_on_a_saturday_moves_to_monday_at_quiet_hours_start(
    zone: ZoneInfo, monday_opens: datetime, why: str
) -> None:
    # due Tue 12 May 2026: the friendly reminder (3 days before) falls on Sat 9 May
    invoices = [invoice("I1", date(2026, 5, 12), "500")]
    customers = [person(zone=zone)]
    friday = utc(2026, 5, 8, 12)
    decision = only(decide(book(friday, invoices, customers=customers), friday))
    assert decision.status is Status.SCHEDULED
    assert decision.stage == "due-soon"
    assert decision.at == monday_opens
    assert decision.reason == (
        f"invoice INV-1: next, friendly reminder on Mon 11 May 08:00 {zone.key} "
        "(its day, Sat 9 May 2026, is a Saturday); balance 500.00 GBP"
    )
    saturday = utc(2026, 5, 9, 12)
    decision = only(decide(book(saturday, invoices, customers=customers), saturday))
    assert decision.status is Status.WAITING
    assert decision.at == monday_opens
    assert decision.reason.endswith(f"; not before {why}")
    decision = only(decide(book(monday_opens, invoices, customers=customers), monday_opens))
    assert decision.status is Status.DUE
    assert {a.at for a in decision.actions} == {monday_opens}


def test_a_minute_before_quiet_hours_open_the_stage_waits_for_them() -> None:
    invoices = [invoice("I1", date(2026, 5, 12), "500")]
    early = utc(2026, 5, 11, 6, 59)  # 07:59 in London
    decision = only(decide(book(early, invoices), early))
    assert decision.status is Status.WAITING
    assert decision.at == utc(2026, 5, 11, 7)
    assert decision.reason.endswith("not before Mon 11 May 08:00 Europe/London (quiet hours)")


def test_a_uk_bank_holiday_is_skipped() -> None:
    # due Thu 26 Nov 2026: the 30-day reminder falls on Sat 26 Dec (Boxing Day); Sun 27 Dec is
    # not a business day and Mon 28 Dec is the substitute bank holiday: Tue 29 Dec, 08:00 GMT
    invoices = [invoice("I1", date(2026, 11, 26), "800")]
    history = [done("invoice:I1", "due-soon", utc(2026, 11, 23, 9))]
    christmas_eve = utc(2026, 12, 24, 12)
    decision = only(decide(book(christmas_eve, invoices, history=history), christmas_eve))
    assert decision.status is Status.SCHEDULED
    assert decision.stage == "overdue-30"
    assert decision.at == utc(2026, 12, 29, 8)
    holiday = utc(2026, 12, 28, 10)
    decision = only(decide(book(holiday, invoices, history=history), holiday))
    assert decision.status is Status.WAITING
    assert decision.reason == (
        "invoice INV-1: 30-day reminder due since Sat 26 Dec 2026; balance 800.00 GBP; "
        "not before Tue 29 Dec 08:00 Europe/London (public holiday: Boxing Day (observed))"
    )
    # the holidays are the firm's: a firm in the US works on 28 December
    us = book(holiday, invoices, history=history, country="US", region="NY")
    decision = only(decide(us, holiday))
    assert decision.status is Status.DUE
    assert {a.at for a in decision.actions} == {holiday}


def test_a_customer_in_new_york_is_contacted_in_new_york_hours_not_the_firms() -> None:
    # the 30-day reminder of an invoice due Sat 16 May 2026 falls on Mon 15 Jun
    invoices = [invoice("I1", date(2026, 5, 16), "700")]
    history = [done("invoice:I1", "due-soon", utc(2026, 5, 13, 9))]
    customers = [person(zone=NEW_YORK)]
    london_morning = utc(2026, 6, 15, 9)  # 10:00 in London, 05:00 in New York
    snapshot = book(london_morning, invoices, customers=customers, history=history)
    decision = only(decide(snapshot, london_morning))
    assert decision.status is Status.WAITING
    assert decision.at == utc(2026, 6, 15, 12)  # 08:00 EDT
    assert decision.reason.endswith("not before Mon 15 Jun 08:00 America/New_York (quiet hours)")
    # and the other way round: 20:30 on a Friday in New York is 01:30 on Saturday in London
    invoices = [invoice("I1", date(2026, 5, 20), "700")]  # 30 days: Fri 19 Jun
    friday_evening = utc(2026, 6, 20, 0, 30)
    snapshot = book(friday_evening, invoices, customers=customers, history=history)
    decision = only(decide(snapshot, friday_evening))
    assert decision.status is Status.DUE
    assert {a.at for a in decision.actions} == {friday_evening}


def test_the_firms_own_tasks_keep_the_firms_hours() -> None:
    stages = [{"name": "review", "offset": 5, "actions": ["note"], "tone": "friendly"}]
    policy = standard_with(stages=stages)
    invoices = [invoice("I1", date(2026, 6, 10), "700")]  # review on Mon 15 Jun
    customers = [person(zone=NEW_YORK)]
    now = utc(2026, 6, 15, 7)  # 08:00 in London, 03:00 in New York
    snapshot = book(now, invoices, customers=customers, policy=policy)
    decision = only(decide(snapshot, now, policy))
    assert decision.status is Status.DUE
    assert [(a.kind, a.at) for a in decision.actions] == [(ActionKind.NOTE, now)]


# -- contact spacing ----------------------------------------------------------------------------


def test_two_invoices_of_one_customer_due_the_same_day_make_one_contact() -> None:
    # both due Sat 16 May 2026: their 30-day reminders fall on Mon 15 Jun
    invoices = [invoice("I1", date(2026, 5, 16), "700"), invoice("I2", date(2026, 5, 16), "300")]
    history = [
        done("invoice:I1", "due-soon", utc(2026, 5, 13, 9)),
        done("invoice:I2", "due-soon", utc(2026, 5, 13, 9)),
    ]
    now = utc(2026, 6, 15, 9)
    snapshot = book(now, invoices, history=history)
    result = decide(snapshot, now)
    assert [d.status for d in (only(result, "invoice:I1"), only(result, "invoice:I2"))] == [
        Status.DUE,
        Status.DUE,
    ]
    emails = [a for a in result.actions() if a.kind is ActionKind.EMAIL]
    assert len(emails) == 2
    assert {a.at for a in result.actions()} == {now}
    # the forecast agrees: both today, and nothing else for a week
    days = forecast(snapshot, STANDARD, now, 7)
    assert len(days[0].actions) == 4
    assert all(d.actions == () for d in days[1:])


def test_spacing_pushes_a_contact_after_one_in_the_history() -> None:
    # invoice I2's 30-day reminder falls on Wed 3 Jun 2026; the customer heard from the firm on
    # Mon 1 Jun at 10:00 UTC, so not before Mon 8 Jun 10:00 UTC (11:00 in London)
    invoices = [invoice("I1", date(2026, 5, 2), "400"), invoice("I2", date(2026, 5, 4), "600")]
    history = [
        done("invoice:I1", "due-soon", utc(2026, 4, 29, 9)),
        done("invoice:I2", "due-soon", utc(2026, 5, 1, 9)),
        done("invoice:I1", "overdue-30", utc(2026, 6, 1, 10)),
    ]
    now = utc(2026, 6, 3, 10)
    decision = only(decide(book(now, invoices, history=history), now), "invoice:I2")
    assert decision.status is Status.WAITING
    assert decision.at == utc(2026, 6, 8, 10)
    assert decision.reason == (
        "invoice INV-2: 30-day reminder due; balance 600.00 GBP; not before Mon 8 Jun 11:00 "
        "Europe/London (contact spacing: Ada Ltd was last contacted Mon 1 Jun 11:00 "
        "Europe/London; at most once every 7 days)"
    )


def test_spacing_pushes_the_second_of_two_contacts_planned_together() -> None:
    # I2's 30-day reminder is today (Wed 3 Jun 2026), I3's on Fri 5 Jun: I3 waits a week
    invoices = [invoice("I2", date(2026, 5, 4), "600"), invoice("I3", date(2026, 5, 6), "250")]
    history = [
        done("invoice:I2", "due-soon", utc(2026, 5, 1, 9)),
        done("invoice:I3", "due-soon", utc(2026, 5, 1, 9)),
    ]
    now = utc(2026, 6, 3, 10)
    snapshot = book(now, invoices, history=history)
    result = decide(snapshot, now)
    assert only(result, "invoice:I2").status is Status.DUE
    later = only(result, "invoice:I3")
    assert later.status is Status.SCHEDULED
    assert later.at == utc(2026, 6, 10, 10)
    assert "is to be contacted Wed 3 Jun 11:00 Europe/London for another invoice" in later.reason
    days = forecast(snapshot, STANDARD, now, 10)
    assert [(d.day, {a.subject for a in d.actions}) for d in days if d.actions] == [
        (date(2026, 6, 3), {"invoice:I2"}),
        (date(2026, 6, 10), {"invoice:I3"}),
    ]


# -- approval -------------------------------------------------------------------------------------


def test_the_per_run_cap_sends_the_excess_to_approval() -> None:
    policy = standard_with(rules={"max_actions_per_run": 3})
    customers = [person("C1"), person("C2", name="Bea plc")]
    invoices = [
        invoice("I1", date(2026, 5, 4), "600"),
        invoice("I2", date(2026, 5, 4), "300", customer="C2"),
    ]
    history = [
        done("invoice:I1", "due-soon", utc(2026, 5, 1, 9)),
        done("invoice:I2", "due-soon", utc(2026, 5, 1, 9), customer="C2"),
    ]
    now = utc(2026, 6, 3, 10)
    snapshot = book(now, invoices, policy=policy, customers=customers, history=history)
    result = decide(snapshot, now, policy)
    assert [(a.subject, a.kind, a.approval) for a in result.actions()] == [
        ("invoice:I1", ActionKind.EMAIL, None),
        ("invoice:I1", ActionKind.NOTE, None),
        ("invoice:I2", ActionKind.EMAIL, None),
        ("invoice:I2", ActionKind.NOTE, CAP_WORDS.format(cap=3)),
    ]
    assert {d.status for d in result.decisions} == {Status.DUE}


def test_a_handover_waits_for_approval_by_default_and_does_not_count_to_the_cap() -> None:
    stages = tomllib.loads(builtin_text("standard"))["stages"]
    stages[3]["actions"] = ["handover", "email", "letter", "note"]  # the hand-over first
    policy = standard_with(rules={"max_actions_per_run": 3}, stages=stages)
    now = utc(2026, 6, 16, 9)
    history = [done("invoice:I1", "overdue-60", utc(2026, 5, 12, 9))]
    snapshot = book(now, [invoice("I1", date(2026, 3, 13), "1200")], history=history)
    result = decide(snapshot, now, policy)
    assert [(a.kind, a.approval) for a in only(result).actions] == [
        (ActionKind.HANDOVER, "the policy has the handover of final notice wait for approval"),
        (ActionKind.EMAIL, None),
        (ActionKind.LETTER, None),
        (ActionKind.NOTE, None),
    ]
    # the gentle policy's final stage has every action wait for a person
    gentle = decide(
        book(now, [invoice("I1", date(2026, 1, 1), "1200")], policy=GENTLE), now, GENTLE
    )
    approvals = {a.approval for a in only(gentle).actions}
    assert approvals == {
        f"the policy has the {k} of final notice, for a person to decide wait for approval"
        for k in ("email", "letter", "note", "handover")
    }


def test_a_policy_that_wants_approval_for_everything_gets_it() -> None:
    policy = standard_with(rules={"approval": True})
    now = utc(2026, 6, 3, 10)
    history = [done("invoice:I1", "due-soon", utc(2026, 5, 1, 9))]
    result = decide(
        book(now, [invoice("I1", date(2026, 5, 4), "600")], policy=policy, history=history),
        now,
        policy,
    )
    assert {a.approval for a in result.actions()} == {
        "the policy has every action wait for approval"
    }


# -- stale data -----------------------------------------------------------------------------------


def test_a_stale_sync_makes_a_due_stage_wait_with_the_reason() -> None:
    now = utc(2026, 6, 3, 10)
    invoices = [invoice("I1", date(2026, 5, 4), "600")]
    history = [done("invoice:I1", "due-soon", utc(2026, 5, 1, 9))]
    stale = decide(book(now, invoices, history=history, synced=timedelta(hours=25)), now)
    decision = only(stale)
    assert decision.status is Status.WAITING
    assert decision.reason == (
        "invoice INV-1: 30-day reminder due; balance 600.00 GBP; "
        "waiting for a good sync (stale data never sends)"
    )
    assert stale.actions() == []
    assert (
        "no contact until a sync succeeds: the last good sync was at Tue 2 Jun 10:00 "
        "Europe/London, more than 24 hours ago"
    ) in stale.notes
    never = decide(book(now, invoices, history=history, synced=None), now)
    assert only(never).status is Status.WAITING
    assert "no contact until a sync succeeds: arsync has never synced this company" in never.notes
    fresh = decide(book(now, invoices, history=history, synced=timedelta(hours=23)), now)
    assert only(fresh).status is Status.DUE


# -- holds ----------------------------------------------------------------------------------------


def promise_book(now: datetime, **extra: Any) -> Snapshot:
    # due Fri 1 May 2026 (30-day reminder: Sun 31 May); promised for Fri 5 Jun, grace 3 days
    invoices = [invoice("I1", date(2026, 5, 1), "1200")]
    history = [done("invoice:I1", "due-soon", utc(2026, 4, 28, 9)), *extra.pop("history", [])]
    holds = [hold(11, HoldKind.PROMISE, invoice_id="I1", until=date(2026, 6, 5))]
    return book(now, invoices, history=history, holds=extra.pop("holds", holds), **extra)


def test_a_promise_within_its_grace_holds_the_chase() -> None:
    now = utc(2026, 6, 8, 10)  # Mon 8 Jun: the last day of grace
    result = decide(promise_book(now), now)
    decision = only(result)
    assert decision.status is Status.HELD
    assert decision.actions == ()
    assert decision.reason == (
        "invoice INV-1: promised to pay on Fri 5 Jun 2026 (recorded by ann on Sat 10 Jan 2026: "
        "said so on the phone); chased again after Mon 8 Jun 2026 if unpaid"
    )
    assert result.transitions == ()


def test_a_promise_unpaid_after_its_grace_is_broken_and_the_next_stage_is_firmer() -> None:
    now = utc(2026, 6, 9, 10)  # Tue 9 Jun
    result = decide(promise_book(now), now)
    assert result.transitions == (
        Transition(
            Change.PROMISE_BROKEN,
            11,
            "unpaid 3 days after the promised Fri 5 Jun 2026; balance 1,200.00 GBP",
        ),
    )
    decision = only(result)
    assert decision.status is Status.DUE
    assert decision.stage == "overdue-30"
    # the 30-day reminder is polite; after a broken promise it is one step firmer
    assert STANDARD.stage("overdue-30").tone is Tone.POLITE
    assert {a.tone for a in decision.actions} == {Tone.FIRM}
    assert decision.reason == (
        "invoice INV-1: 30-day reminder due since Sun 31 May 2026; balance 1,200.00 GBP; "
        "a promise to pay was broken, so in a firm tone"
    )


def test_the_forecast_makes_only_the_stage_after_a_broken_promise_firmer() -> None:
    now = utc(2026, 6, 9, 10)
    days = forecast(promise_book(now), STANDARD, now, 60)
    tones = [
        (d.day, a.stage, a.tone) for d in days for a in d.actions if a.kind is ActionKind.EMAIL
    ]
    assert tones == [
        (date(2026, 6, 9), "overdue-30", Tone.FIRM),  # polite, one step firmer
        (date(2026, 6, 30), "overdue-60", Tone.FIRM),  # its own tone again
        (date(2026, 7, 30), "overdue-90", Tone.FINAL),
    ]


def test_a_promise_broken_before_the_last_stage_no_longer_makes_the_next_firmer() -> None:
    broken = hold(
        11,
        HoldKind.PROMISE,
        invoice_id="I1",
        until=date(2026, 6, 5),
        state=HoldState.BROKEN,
        ended_at=utc(2026, 6, 9, 9),
    )
    after = [done("invoice:I1", "overdue-30", utc(2026, 6, 9, 10))]
    now = utc(2026, 6, 30, 10)  # the 60-day reminder: Tue 30 Jun
    decision = only(decide(promise_book(now, holds=[], ended=[broken], history=after), now))
    assert decision.stage == "overdue-60"
    assert {a.tone for a in decision.actions} == {Tone.FIRM}  # its own tone
    # recorded broken after the last stage: the next stage is firmer (firm -> final)
    recent = [done("invoice:I1", "overdue-30", utc(2026, 6, 9, 8))]
    decision = only(decide(promise_book(now, holds=[], ended=[broken], history=recent), now))
    assert {a.tone for a in decision.actions} == {Tone.FINAL}


def test_a_settlement_paid_holds_the_invoice_and_records_it_kept() -> None:
    now = utc(2026, 6, 9, 10)
    settled = hold(21, HoldKind.SETTLEMENT, invoice_id="I1", amount="700", basis="1000")
    invoices = [invoice("I1", date(2026, 3, 1), "300", total="1000")]
    result = decide(book(now, invoices, holds=[settled]), now)
    decision = only(result)
    assert decision.status is Status.HELD
    assert decision.reason == (
        "invoice INV-1: settled: 700.00 GBP agreed in full settlement was paid; ask the "
        "bookkeeper to write off the remaining 300.00 GBP"
    )
    assert result.transitions == (
        Transition(
            Change.SETTLEMENT_KEPT,
            21,
            "700.00 GBP paid against the 700.00 GBP agreed; 300.00 GBP left for the bookkeeper "
            "to write off",
        ),
    )
    # an invoice since paid in full: the settlement is kept too, and there is nothing to chase
    closed = decide(book(now, [], holds=[settled], closed={"I1": InvoiceStatus.PAID}), now)
    assert closed.transitions == (Transition(Change.SETTLEMENT_KEPT, 21, "the invoice is paid"),)
    assert closed.decisions == ()


def test_a_dispute_holds_and_once_resolved_resumes_at_the_stage_now_due() -> None:
    now = utc(2026, 6, 16, 9)
    invoices = [invoice("I1", date(2026, 3, 13), "1200")]
    history = [done("invoice:I1", "due-soon", utc(2026, 3, 10, 9))]
    disputed = hold(31, HoldKind.DISPUTE, invoice_id="I1")
    decision = only(decide(book(now, invoices, history=history, holds=[disputed]), now))
    assert decision.status is Status.HELD
    assert decision.reason == (
        "invoice INV-1: in dispute (recorded by ann on Sat 10 Jan 2026: said so on the phone)"
    )
    resolved = only(decide(book(now, invoices, history=history), now))
    assert resolved.status is Status.DUE
    assert resolved.stage == "overdue-90"
    assert resolved.superseded == ("overdue-30", "overdue-60")


def test_a_paused_customer_is_not_chased_until_the_pause_is_over() -> None:
    invoices = [invoice("I1", date(2026, 5, 4), "600")]
    history = [done("invoice:I1", "due-soon", utc(2026, 5, 1, 9))]
    pause = hold(41, HoldKind.PAUSE, until=date(2026, 6, 10))
    now = utc(2026, 6, 10, 10)
    result = decide(book(now, invoices, history=history, holds=[pause]), now)
    assert only(result).status is Status.HELD
    assert only(result).reason == (
        "invoice INV-1: customer paused until Wed 10 Jun 2026 by ann on Sat 10 Jan 2026: "
        "said so on the phone"
    )
    later = utc(2026, 6, 11, 10)
    result = decide(book(later, invoices, history=history, holds=[pause]), later)
    assert only(result).status is Status.DUE
    assert result.transitions == (
        Transition(Change.PAUSE_OVER, 41, "paused until Wed 10 Jun 2026"),
    )


# -- payment plans --------------------------------------------------------------------------------

INSTALMENTS = [(date(2026, 4, 1), "300"), (date(2026, 6, 1), "300"), (date(2026, 7, 1), "300")]


def test_a_payment_plan_chases_only_an_overdue_instalment_counting_from_its_date() -> None:
    # the invoice is four months overdue, but the plan's first instalment was due Wed 1 Apr:
    # 30 days from it is Fri 1 May, so the 30-day reminder is due, for the instalment alone
    now = utc(2026, 5, 5, 9)  # Tue 5 May 2026 (Mon 4 May is a bank holiday)
    snapshot = book(
        now,
        [invoice("I1", date(2026, 1, 5), "900")],
        plans=[payment_plan(INSTALMENTS, basis="900")],
    )
    result = decide(snapshot, now)
    assert only(result).status is Status.HELD
    assert only(result).reason == "invoice INV-1: on payment plan 7 (see the plan's own line)"
    chase = only(result, "plan:7:1")
    assert chase.status is Status.DUE
    assert chase.stage == "overdue-30"
    assert chase.plan_id == 7
    assert chase.reason == (
        "instalment 1 of payment plan 7, due Wed 1 Apr 2026: 30-day reminder due since "
        "Fri 1 May 2026; 300.00 GBP due"
    )
    assert {(a.invoice_id, a.amount) for a in chase.actions} == {("I1", Money(Decimal(300), "GBP"))}


def test_a_payment_plan_instalment_not_yet_due_holds_the_chase() -> None:
    now = utc(2026, 3, 20, 10)
    plans = [payment_plan(INSTALMENTS, basis="900")]
    result = decide(book(now, [invoice("I1", date(2026, 1, 5), "900")], plans=plans), now)
    assert only(result, "plan:7:1").status is Status.HELD
    assert only(result, "plan:7:1").reason == (
        "payment plan 7: instalment 1 of 300.00 GBP due Wed 1 Apr 2026; 0.00 GBP paid of 900.00 GBP"
    )
    assert result.actions() == []
    # 300 paid since: the first instalment is met and the second is the one to wait for
    now = utc(2026, 5, 5, 9)
    result = decide(book(now, [invoice("I1", date(2026, 1, 5), "600")], plans=plans), now)
    assert only(result, "plan:7:2").status is Status.HELD
    assert "instalment 2 of 300.00 GBP due Mon 1 Jun 2026; 300.00 GBP paid" in (
        only(result, "plan:7:2").reason
    )


def test_too_many_missed_instalments_end_the_plan_and_escalation_resumes() -> None:
    # Tue 9 Jun 2026: instalments 1 (1 Apr) and 2 (1 Jun) are both past their 3 days of grace
    now = utc(2026, 6, 9, 9)
    snapshot = book(
        now,
        [invoice("I1", date(2026, 1, 5), "900")],
        plans=[payment_plan(INSTALMENTS, basis="900", missed_allowed=1)],
    )
    result = decide(snapshot, now)
    assert result.transitions == (
        Transition(Change.PLAN_ENDED, 7, "2 instalments missed (the plan allows 1)"),
    )
    decision = only(result)
    assert decision.status is Status.DUE
    assert decision.stage == "overdue-90"
    assert result.of("plan:7:1") is None


def test_a_paused_customer_on_a_payment_plan_is_not_chased_for_an_instalment() -> None:
    now = utc(2026, 5, 5, 9)
    snapshot = book(
        now,
        [invoice("I1", date(2026, 1, 5), "900")],
        plans=[payment_plan(INSTALMENTS, basis="900")],
        holds=[hold(41, HoldKind.PAUSE)],
    )
    result = decide(snapshot, now)
    assert result.actions() == []
    chase = only(result, "plan:7:1")
    assert chase.status is Status.HELD
    assert "customer paused by ann on Sat 10 Jan 2026" in chase.reason


# -- money ---------------------------------------------------------------------------------------


def test_a_payment_in_flight_holds_the_invoices_it_covers() -> None:
    now = utc(2026, 6, 3, 10)
    invoices = [invoice("I1", date(2026, 5, 4), "400"), invoice("I2", date(2026, 5, 4), "200")]
    history = [
        done("invoice:I1", "due-soon", utc(2026, 5, 1, 9)),
        done("invoice:I2", "due-soon", utc(2026, 5, 1, 9)),
    ]
    unapplied = {("C1", "GBP"): Decimal(500)}
    result = decide(book(now, invoices, history=history, unapplied=unapplied), now)
    covered = only(result, "invoice:I1")
    assert covered.status is Status.HELD
    assert covered.reason == (
        "invoice INV-1: payment in flight: 500.00 GBP paid or credited but not applied; ask the "
        "bookkeeper to apply 400.00 GBP to this invoice"
    )
    # the 100.00 left does not cover the second invoice, which is chased for its balance
    assert only(result, "invoice:I2").status is Status.DUE
    # credit in another currency covers nothing
    other = {("C1", "USD"): Decimal(5000)}
    result = decide(book(now, invoices, history=history, unapplied=other), now)
    assert {d.status for d in result.decisions} == {Status.DUE}


def test_a_payment_in_flight_covering_a_plan_holds_its_instalment_too() -> None:
    now = utc(2026, 5, 5, 9)
    snapshot = book(
        now,
        [invoice("I1", date(2026, 1, 5), "900")],
        plans=[payment_plan(INSTALMENTS, basis="900")],
        unapplied={("C1", "GBP"): Decimal(900)},
    )
    result = decide(snapshot, now)
    assert result.actions() == []
    chase = only(result, "plan:7:1")
    assert chase.status is Status.HELD
    assert "ask the bookkeeper to apply 900.00 GBP" in chase.reason


def test_a_part_paid_invoice_is_chased_for_its_balance_in_words() -> None:
    now = utc(2026, 6, 3, 10)
    history = [done("invoice:I1", "due-soon", utc(2026, 5, 1, 9))]
    invoices = [invoice("I1", date(2026, 5, 4), "400", total="1000")]
    decision = only(decide(book(now, invoices, history=history), now))
    assert decision.status is Status.DUE
    assert decision.reason == (
        "invoice INV-1: 30-day reminder due; balance 400.00 GBP after part payments of 600.00 GBP"
    )
    assert {a.amount for a in decision.actions} == {Money(Decimal(400), "GBP")}


def test_a_balance_at_the_policys_minimum_is_not_chased() -> None:
    now = utc(2026, 6, 3, 10)
    decision = only(decide(book(now, [invoice("I1", date(2026, 5, 4), "10.00")]), now))
    assert decision.status is Status.NOTHING
    assert decision.reason == (
        "invoice INV-1: balance 10.00 GBP is not above the policy's minimum of 10.00 GBP"
    )


def test_a_stage_minimum_balance_skips_that_stage() -> None:
    data = tomllib.loads(builtin_text("standard"))["stages"]
    data[2]["minimum_balance"] = {"GBP": 500}  # the 60-day call: only from 500.00 GBP
    policy = standard_with(stages=data)
    # due Tue 31 Mar 2026: 60 days is Sat 30 May, 90 days Mon 29 Jun; today Wed 3 Jun
    now = utc(2026, 6, 3, 10)
    history = [
        done("invoice:I1", "due-soon", utc(2026, 3, 27, 9)),
        done("invoice:I1", "overdue-30", utc(2026, 4, 30, 9)),
    ]
    small = book(now, [invoice("I1", date(2026, 3, 31), "200")], policy=policy, history=history)
    decision = only(decide(small, now, policy))
    assert decision.status is Status.SCHEDULED
    assert decision.stage == "overdue-90"
    assert decision.reason == (
        "invoice INV-1: next, final notice on Mon 29 Jun 08:00 Europe/London; balance 200.00 GBP"
    )
    large = book(now, [invoice("I1", date(2026, 3, 31), "600")], policy=policy, history=history)
    decision = only(decide(large, now, policy))
    assert decision.status is Status.DUE
    assert decision.stage == "overdue-60"


# -- ids ------------------------------------------------------------------------------------------


def test_an_action_id_is_the_base32_of_its_keys_hash() -> None:
    for key in ("acme/invoice:I1/overdue-30/email", "acme/plan:7:1/due-soon/note", ""):
        digest = hashlib.sha256(key.encode()).digest()[:16]
        assert action_id(key) == base64.b32encode(digest).decode().rstrip("=").lower()
        assert len(action_id(key)) == 26


def test_an_action_keeps_its_id_whenever_it_is_planned() -> None:
    invoices = [invoice("I1", date(2026, 5, 12), "500")]
    friday, saturday, monday = utc(2026, 5, 8, 12), utc(2026, 5, 9, 12), utc(2026, 5, 11, 9)
    # before its day a stage has no actions yet, only its name and moment
    scheduled = only(decide(book(friday, invoices), friday))
    assert (scheduled.status, scheduled.stage, scheduled.actions) == (
        Status.SCHEDULED,
        "due-soon",
        (),
    )
    waiting = only(decide(book(saturday, invoices), saturday))
    due = only(decide(book(monday, invoices), monday))
    assert (waiting.status, due.status) == (Status.WAITING, Status.DUE)
    early, late = waiting.actions, due.actions
    assert len(early) == 2 and [a.id for a in early] == [a.id for a in late]
    assert [a.key for a in late] == [
        "acme/invoice:I1/due-soon/email",
        "acme/invoice:I1/due-soon/note",
    ]
    assert late[0].id == action_id("acme/invoice:I1/due-soon/email")


# -- the day a bill falls due, kept settlements, small instalments ---------------------------------
def test_a_reminder_before_the_due_date_never_lands_on_it_or_after_it() -> None:
    # due Mon 28 Dec 2026: three days before is Fri 25 Dec (Christmas Day), the next business
    # day after that, Tue 29 Dec (Mon 28 Dec is the substitute Boxing Day), is past the due date
    christmas = invoice("I1", date(2026, 12, 28), "400")
    before = utc(2026, 12, 21, 10)
    decision = only(decide(book(before, [christmas]), before))
    assert decision.status is Status.SCHEDULED
    assert decision.stage == "overdue-30"
    # an invoice already overdue on a first run gets no "due soon" reminder either: the 30-day
    # reminder is next, and the skipped one is named as superseded when that one is due
    late = invoice("I1", date(2026, 11, 30), "400")
    now = utc(2026, 12, 10, 10)
    decision = only(decide(book(now, [late]), now))
    assert (decision.status, decision.stage) == (Status.SCHEDULED, "overdue-30")
    due = utc(2026, 12, 30, 10)
    decision = only(decide(book(due, [late]), due))
    assert (decision.status, decision.stage) == (Status.DUE, "overdue-30")
    assert decision.superseded == ("due-soon",)
    # moved by a weekend but still before the due date, it goes: due Wed 2 Dec, its day Sun
    # 29 Nov, so Mon 30 Nov
    soon = invoice("I1", date(2026, 12, 2), "400")
    monday = utc(2026, 11, 30, 10)
    decision = only(decide(book(monday, [soon]), monday))
    assert (decision.status, decision.stage) == (Status.DUE, "due-soon")


def test_a_kept_settlement_holds_the_rest_of_the_balance_for_good() -> None:
    kept = hold(
        5,
        HoldKind.SETTLEMENT,
        invoice_id="I1",
        amount="800",
        basis="1000",
        state=HoldState.KEPT,
        ended_at=utc(2026, 12, 22, 10),
    )
    now = utc(2027, 3, 1, 10)
    rest = invoice("I1", date(2026, 12, 1), "200", total="1000")
    decision = only(decide(book(now, [rest], ended=[kept]), now))
    assert decision.status is Status.HELD and decision.actions == ()
    assert "settled: the 800.00 GBP agreed in full settlement" in decision.reason
    assert "write off the remaining 200.00 GBP" in decision.reason


def test_an_instalment_left_at_or_below_the_minimum_is_not_chased() -> None:
    plan_ = payment_plan([(date(2026, 11, 30), "50"), (date(2026, 12, 14), "50")], basis="100")
    now = utc(2027, 1, 13, 10)
    small = invoice("I1", date(2026, 11, 20), "5", total="100")
    result = decide(book(now, [small], plans=[plan_]), now)
    (line,) = [d for d in result.decisions if d.plan_id == 7]
    assert line.status is Status.NOTHING and line.actions == ()
    assert "not above the policy's minimum of 10.00 GBP" in line.reason


def test_stages_that_spacing_pushes_past_their_day_share_the_next_contact() -> None:
    # Ada was contacted Mon 1 Jun 10:00 London about another invoice; the 30-day reminders of
    # two invoices fall on Wed 3 and Thu 4 Jun: spacing holds both until Mon 8 Jun 10:00, where
    # they make one contact (not one then, and the other a week later)
    now = utc(2026, 6, 2, 12)
    invoices = [invoice("I1", date(2026, 5, 4), "300"), invoice("I2", date(2026, 5, 5), "200")]
    history = [done("invoice:I0", "overdue-30", utc(2026, 6, 1, 9))]
    result = decide(book(now, invoices, history=history), now)
    first, second = only(result, "invoice:I1"), only(result, "invoice:I2")
    assert (first.stage, second.stage) == ("overdue-30", "overdue-30")
    assert first.at == second.at == utc(2026, 6, 8, 9)
    assert "contact spacing" in first.reason and "contact spacing" in second.reason


def test_a_pause_past_its_date_ends_even_for_a_customer_who_owes_nothing() -> None:
    pause = hold(9, HoldKind.PAUSE, until=date(2026, 6, 1))
    now = utc(2026, 6, 3, 10)
    result = decide(book(now, [], holds=[pause]), now)
    assert [(t.change, t.ref) for t in result.transitions] == [(Change.PAUSE_OVER, 9)]
