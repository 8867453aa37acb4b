"""The call list's pure parts: which call tasks are open, one call per customer, the tone, what
is owed, the outcome's words, instalments as typed, and the trail in words."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from arsync.domain import Hold, HoldKind, HoldSource, HoldState, PaymentPlan, PlanState
from arsync.escalation.calendar import Calendar
from arsync.escalation.policy import builtin_policies
from arsync.store.models import Event
from arsync.store.outbox import OutboxRow
from arsync.store.states import Entity, OutboxState
from arsync.writeback.calls import (
    SAID_MAX,
    Outcome,
    by_customer,
    firmest,
    history_line,
    instalment_parts,
    next_business_day,
    open_tasks,
    outcome_words,
    outcomes_of,
    owed,
    owed_text,
    record_hint,
    why_moot,
)
from arsync.writeback.history import CALL_OUTCOME, Entry, entries_of
from tests.support import invoice

AT = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
TODAY = date(2026, 11, 24)


def task(
    ident: str, customer: str = "c1", invoice_id: str | None = "1", **changes: Any
) -> OutboxRow:
    row = OutboxRow(
        connector_id=1,
        id=ident,
        key=f"books/invoice:{invoice_id}/overdue-60/call",
        kind="call",
        subject=f"invoice:{invoice_id}",
        customer_id=customer,
        invoice_id=invoice_id,
        stage="overdue-60",
        stage_title="60-day call and reminder",
        tone="firm",
        amount=Decimal("100.00"),
        currency="GBP",
        due_date=date(2026, 9, 20),
        at=AT,
        state=OutboxState.DONE,
        approval=None,
        decided_by=None,
        decided_at=None,
        attempts=1,
        next_at=None,
        lease_owner=None,
        lease_until=None,
        sent_at=None,
        reason="on today's call list (`arsync calls`)",
        reason_code=None,
        result={"task": "call"},
        created_at=AT,
        updated_at=AT,
        done_at=AT,
    )
    return replace(row, **changes)


def outcome_event(
    n: int, calls: list[str], outcome: str, at: datetime = AT, **detail: Any
) -> Event:
    return Event(
        id=n,
        connector_id=1,
        sync_id=None,
        at=at,
        entity=Entity.CUSTOMER,
        external_id="c1",
        action=CALL_OUTCOME,
        detail={"outcome": outcome, "by": "pat", "calls": calls, **detail},
    )


# -- which tasks are open -------------------------------------------------------------------------
def test_a_done_call_row_without_an_outcome_is_an_open_task() -> None:
    rows = [
        task("a"),
        task("b", state=OutboxState.READY),  # not yet opened
        task("c", kind="email"),
        task("d", state=OutboxState.SKIPPED),
    ]
    assert [r.id for r in open_tasks(rows, {}, TODAY)] == ["a"]


def test_an_answered_call_is_closed_and_an_unanswered_one_returns_on_its_day() -> None:
    rows = [task("a"), task("b"), task("c")]
    recorded = outcomes_of(
        [
            outcome_event(1, ["a"], "reached"),
            outcome_event(2, ["b"], "no-answer", retry_from="2026-11-25"),
            outcome_event(3, ["c"], "no-answer", retry_from="2026-11-25"),
            outcome_event(4, ["c"], "promised", at=AT + timedelta(hours=1)),
        ]
    )
    assert open_tasks(rows, recorded, TODAY) == []
    assert [r.id for r in open_tasks(rows, recorded, TODAY + timedelta(days=1))] == ["b"]
    # recording a second attempt the same day is allowed: without a day, b is open at once
    assert [r.id for r in open_tasks(rows, recorded, None)] == ["b"]


def test_outcomes_are_read_in_the_order_they_happened() -> None:
    later = outcome_event(2, ["a"], "reached", at=AT + timedelta(minutes=5))
    first = outcome_event(1, ["a"], "no-answer", retry_from="2026-11-25")
    recorded = outcomes_of([later, first])
    assert [r.outcome for r in recorded["a"]] == ["no-answer", "reached"]
    assert recorded["a"][0].retry_from == date(2026, 11, 25)


def test_one_call_per_customer_however_many_invoices() -> None:
    rows = [
        task("x", customer="c2", invoice_id="9", at=AT + timedelta(minutes=1)),
        task("a", customer="c1", invoice_id="1"),
        task("b", customer="c1", invoice_id="2", at=AT + timedelta(minutes=2)),
    ]
    grouped = by_customer(rows)
    assert list(grouped) == ["c1", "c2"]
    assert [r.id for r in grouped["c1"]] == ["a", "b"]


def test_the_call_speaks_in_the_firmest_tone_of_its_tasks() -> None:
    rows = [
        task("a", tone="polite", stage_title="30-day reminder"),
        task("b", tone="firm"),
        task("c", tone="friendly"),
    ]
    assert firmest(rows).id == "b"


def test_a_task_is_moot_once_its_invoice_is_paid_or_held() -> None:
    open_ = [invoice("1", customer_id="c1"), invoice("2", customer_id="c1")]
    hold = Hold(
        id=1,
        connector_id=1,
        kind=HoldKind.PAUSE,
        customer_id="c1",
        invoice_id=None,
        until=None,
        amount=None,
        currency=None,
        basis=None,
        reason="flood at their office",
        source=HoldSource.ARSYNC,
        set_by="pat",
        set_at=AT,
        state=HoldState.ACTIVE,
        ended_by=None,
        ended_at=None,
        end_reason=None,
    )
    plan = PaymentPlan(
        id=3,
        connector_id=1,
        customer_id="c1",
        invoice_ids=("2",),
        currency="GBP",
        instalments=(),
        basis=None,
        missed_allowed=1,
        reason="agreed",
        source=HoldSource.ARSYNC,
        set_by="pat",
        set_at=AT,
        state=PlanState.ACTIVE,
        ended_by=None,
        ended_at=None,
        end_reason=None,
    )
    assert why_moot(task("a", invoice_id="1"), open_, [], []) is None
    assert "paid" in str(why_moot(task("a", invoice_id="7"), open_, [], []))
    assert "flood" in str(why_moot(task("a", invoice_id="1"), open_, [hold], []))
    assert "payment plan 3" in str(why_moot(task("a", invoice_id="2"), open_, [], [plan]))


# -- amounts and words ----------------------------------------------------------------------------
def test_what_is_owed_is_totalled_by_currency() -> None:
    totals = owed(
        [
            invoice("1", "1200.00", currency="GBP"),
            invoice("2", "24.64", currency="GBP"),
            invoice("3", "50.00", currency="EUR"),
            invoice("4", "0.00", currency="USD"),
        ]
    )
    assert totals == {"EUR": Decimal("50.00"), "GBP": Decimal("1224.64")}
    assert owed_text(totals) == "50.00 EUR + 1,224.64 GBP"
    assert owed_text({}) == "nothing"


@pytest.mark.parametrize(
    ("outcome", "extra", "said"),
    [
        (Outcome.REACHED, {}, "reached Ada Lovelace"),
        (Outcome.REACHED, {"reason": "will check"}, "reached Ada Lovelace: will check"),
        (Outcome.NO_ANSWER, {"phone": "+44 20 7946 0000"}, "no answer from Ada Lovelace on +44"),
        (
            Outcome.PROMISED,
            {"promised": "480.00 GBP", "on": date(2027, 1, 15)},
            "reached Ada Lovelace, promised 480.00 GBP by 15 Jan 2027",
        ),
        (
            Outcome.PROMISED,
            {"promised": "480.00 GBP", "on": date(2026, 12, 15)},
            "reached Ada Lovelace, promised 480.00 GBP by 15 Dec",
        ),
        (
            Outcome.DISPUTED,
            {"invoice": "INV-7", "reason": "never delivered"},
            "reached Ada Lovelace, disputes invoice INV-7: never delivered",
        ),
        (
            Outcome.PLAN,
            {"plan": "2 instalments from 15 Dec"},
            "reached Ada Lovelace, payment plan agreed: 2 instalments from 15 Dec",
        ),
    ],
)
def test_the_outcome_in_words(outcome: Outcome, extra: dict[str, Any], said: str) -> None:
    assert outcome_words(outcome, "Ada Lovelace", today=TODAY, **extra).startswith(said)


def test_the_outcome_in_words_is_cut_short_to_fit_a_note() -> None:
    said = outcome_words(Outcome.REACHED, "Ada", today=TODAY, reason="x " * 200)
    assert len(said) <= SAID_MAX and said.endswith("x…")


def test_instalments_as_typed_keep_the_thousands_in_an_amount() -> None:
    assert instalment_parts("2026-12-15:100, 2027-01-15:1,000.50,2027-02-15:5") == [
        "2026-12-15:100",
        "2027-01-15:1,000.50",
        "2027-02-15:5",
    ]
    assert instalment_parts("  ") == []


def test_an_unanswered_call_returns_on_the_next_business_day() -> None:
    calendar = Calendar.of(builtin_policies()["standard"].calendar, "GB", "ENG")
    assert next_business_day(date(2026, 11, 24), calendar) == date(2026, 11, 25)
    assert next_business_day(date(2026, 11, 27), calendar) == date(2026, 11, 30)  # a Friday
    # Christmas on a Friday, Boxing Day's holiday on the Monday after
    assert next_business_day(date(2026, 12, 24), calendar) == date(2026, 12, 29)


def test_the_script_ends_saying_how_to_record_the_call() -> None:
    hint = record_hint("Ada Lovelace")
    assert 'arsync called "Ada Lovelace" --outcome' in hint
    assert all(o.value in hint for o in Outcome)


# -- the trail in words ----------------------------------------------------------------------------
def event(n: int, name: str, external: str = "1", **detail: Any) -> Event:
    return Event(
        id=n,
        connector_id=1,
        sync_id=None,
        at=AT + timedelta(seconds=n),
        entity=Entity.INVOICE,
        external_id=external,
        action=name,
        detail=detail,
    )


def test_the_trail_is_in_time_order_with_the_platforms_evidence() -> None:
    email = task(
        "e1",
        kind="email",
        result={"to": "ada@example.com", "at": "2026-11-24T18:00:03+00:00"},
    )
    note = task("n1", kind="note", result={"note": "24 Nov 2026 · emailed · ref n1"})
    events = [
        event(
            5, "action_done", action="n1", kind="note", stage="overdue-60", reason="note written"
        ),
        event(1, "action_enqueued", action="e1", kind="email", stage="overdue-60", state="ready"),
        event(2, "action_claimed", action="e1", kind="email", stage="overdue-60"),
        event(3, "action_done", action="e1", kind="email", stage="overdue-60", reason="emailed"),
        event(4, "action_released", action="n1", kind="note", reason="quiet hours"),
        event(6, "action_released", action="n1", kind="note", reason="quiet hours"),
        event(7, "hold_set", kind="promise", until="2026-12-15", by="pat", reason="on the phone"),
        outcome_event(8, ["c1"], "promised", at=AT + timedelta(seconds=8), said="reached Ada"),
    ]
    entries = entries_of(events, {"e1": email, "n1": note}, {"1": "INV-1"})
    assert [e.event for e in entries] == [
        "action_enqueued",
        "action_done",
        "action_released",
        "action_done",
        "hold_set",
        CALL_OUTCOME,
    ]
    assert "ada@example.com" in entries[1].words
    assert entries[1].evidence == email.result
    assert entries[1].stage_title == "60-day call and reminder"
    assert entries[3].words.endswith("note written: 24 Nov 2026 · emailed · ref n1")
    assert entries[5].words == "call: reached Ada (recorded by pat)"


def test_the_call_list_keeps_what_a_caller_needs_to_know() -> None:
    def entry(what: str, kind: str | None, **more: Any) -> Entry:
        return Entry(AT, what, "x", "words", "INV-1", kind=kind, stage_title="30-day", **more)

    emailed = entry("done", "email", evidence={"to": "ada@example.com"})
    assert history_line(emailed) == "30-day: reminder emailed to ada@example.com (INV-1)"
    noted = entry("done", "note", evidence={"note": "24 Nov 2026 · 30-day emailed · ref abc"})
    assert history_line(noted) == "note on INV-1: 30-day emailed"
    assert history_line(entry("done", "call")) == "30-day: call task opened (INV-1)"
    assert history_line(entry("planned", "email")) is None
    assert history_line(entry("ledger", None)) is None
    assert history_line(entry("hold", None)) == "words (INV-1)"
