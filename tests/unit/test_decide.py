"""The verdict before a write: the invoice read fresh from the platform, the store's holds and
payments in flight, and the policy decide whether an action still goes, and why not."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from arsync.connectors.base import FreshInvoice
from arsync.domain import Hold, HoldKind, HoldSource, HoldState, Invoice, InvoiceStatus, Money
from arsync.escalation.planner import in_flight
from arsync.escalation.policy import builtin_policies
from arsync.writeback.decide import Go, Skip, verdict

POLICY = builtin_policies()["standard"]
STAGE = POLICY.stage("overdue-30")
DUE = date(2026, 10, 20)
AT = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)


def invoice(**changes: object) -> Invoice:
    base = Invoice(
        id="42",
        number="INV-1042",
        customer_id="c1",
        issue_date=date(2026, 9, 20),
        due_date=DUE,
        currency="USD",
        total=Decimal("1200.00"),
        balance=Decimal("1200.00"),
        status=InvoiceStatus.OPEN,
        sent=True,
        updated_at=AT,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def hold(kind: HoldKind, *, invoice_id: str | None = "42", customer_id: str = "c1") -> Hold:
    return Hold(
        id=1,
        connector_id=1,
        kind=kind,
        customer_id=customer_id,
        invoice_id=invoice_id,
        until=None,
        amount=None,
        currency=None,
        basis=None,
        reason="says the work was late",
        source=HoldSource.ARSYNC,
        set_by="ada",
        set_at=AT,
        state=HoldState.ACTIVE,
        ended_by=None,
        ended_at=None,
        end_reason=None,
    )


def decide(
    fresh: Invoice | None,
    *,
    planned: str = "1200.00",
    holds: tuple[Hold, ...] = (),
    covered: dict[str, str] | None = None,
    plan_subject: bool = False,
    due: date = DUE,
) -> Go | Skip:
    return verdict(
        fresh=FreshInvoice(fresh) if fresh is not None else None,
        planned_amount=Money(Decimal(planned), "USD"),
        planned_due=due,
        plan_subject=plan_subject,
        holds=holds,
        covered=covered or {},
        policy=POLICY,
        stage=STAGE,
    )


def test_an_unchanged_invoice_goes_with_its_balance() -> None:
    assert decide(invoice()) == Go(Money(Decimal("1200.00"), "USD"))


def test_a_changed_balance_goes_with_the_new_one_and_says_what_was_planned() -> None:
    assert decide(invoice(balance=Decimal("700.00"))) == Go(
        Money(Decimal("700.00"), "USD"), Money(Decimal("1200.00"), "USD")
    )


@pytest.mark.parametrize(
    ("fresh", "code", "words"),
    [
        (None, "deleted", "gone from the ledger"),
        (invoice(status=InvoiceStatus.VOIDED), "voided", "INV-1042 was voided"),
        (invoice(status=InvoiceStatus.DRAFT), "draft", "a draft again"),
        (invoice(status=InvoiceStatus.PAID, balance=Decimal(0)), "paid", "before this was sent"),
        (invoice(balance=Decimal(0)), "paid", "paid or credited in full"),
        (invoice(due_date=date(2026, 11, 20)), "due_moved", "moved from 20 Oct 2026"),
        (invoice(balance=Decimal("9.99")), "below_minimum", "below the policy's minimum"),
    ],
)
def test_what_no_longer_calls_for_the_action_is_skipped_with_the_reason(
    fresh: Invoice | None, code: str, words: str
) -> None:
    found = decide(fresh)
    assert isinstance(found, Skip)
    assert found.code == code and words in found.reason, found


@pytest.mark.parametrize(
    ("held", "words"),
    [
        (hold(HoldKind.DISPUTE), "the invoice is disputed"),
        (hold(HoldKind.EXCLUDE), "excluded from chasing"),
        (hold(HoldKind.PAUSE, invoice_id=None), "the customer is paused"),
    ],
)
def test_a_hold_set_since_the_plan_skips_it(held: Hold, words: str) -> None:
    found = decide(invoice(), holds=(held,))
    assert isinstance(found, Skip) and found.code == "held"
    assert words in found.reason and "says the work was late" in found.reason


def test_another_customers_pause_or_another_invoices_dispute_does_not() -> None:
    others = (
        hold(HoldKind.PAUSE, invoice_id=None, customer_id="c2"),
        hold(HoldKind.DISPUTE, invoice_id="43"),
    )
    assert isinstance(decide(invoice(), holds=others), Go)


def test_money_in_flight_skips_only_the_invoices_it_covers_oldest_first() -> None:
    older = invoice(id="41", number="INV-1041", due_date=date(2026, 9, 1), balance=Decimal(300))
    newer = invoice()
    covered = in_flight([older, newer], {("c1", "USD"): Decimal("500.00")})
    # 500.00 covers the older invoice (300.00), not the newer (1,200.00): as the planner sees it
    assert set(covered) == {"41"}
    assert isinstance(decide(newer, covered=covered), Go)
    found = decide(older, planned="300.00", covered=covered, due=older.due_date)
    assert isinstance(found, Skip) and found.code == "in_flight"
    assert "ask the bookkeeper to apply 300.00 USD" in found.reason


def test_an_instalment_goes_for_its_own_amount() -> None:
    assert decide(invoice(), planned="250.00", plan_subject=True) == Go(
        Money(Decimal("250.00"), "USD")
    )
