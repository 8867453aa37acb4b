"""Before a write: does the invoice, read fresh from the platform, still call for the action?

Pure: the fresh invoice, what the store knows now (holds, payments in flight) and the policy go
in; a verdict comes out. The verdict says to go on (with the balance to state, which may have
changed since the plan), or to skip with the reason in words and a short code.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from arsync.connectors.base import FreshInvoice
from arsync.domain import Hold, HoldKind, InvoiceStatus, Money
from arsync.escalation.policy import Policy, Stage

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Go:
    balance: Money
    #: the balance the plan saw, when the fresh one differs
    planned: Money | None = None


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str
    code: str


Verdict = Go | Skip

_HOLD_WORDS = {
    HoldKind.PAUSE: "the customer is paused",
    HoldKind.EXCLUDE: "the invoice is excluded from chasing",
    HoldKind.DISPUTE: "the invoice is disputed",
    HoldKind.PROMISE: "the customer promised to pay",
    HoldKind.SETTLEMENT: "a settlement was agreed",
}


def verdict(
    *,
    fresh: FreshInvoice | None,
    planned_amount: Money,
    planned_due: date | None,
    plan_subject: bool,
    holds: Iterable[Hold],
    covered: Mapping[str, str],
    policy: Policy,
    stage: Stage | None,
) -> Verdict:
    """What to do with an action on one invoice, given the invoice as the platform has it now.

    `plan_subject`: the action chases an instalment of a payment plan (its amount is the
    instalment's, not the invoice's balance). `covered`: the invoices unapplied payments or
    credits cover, with the words that say so (planner.in_flight)."""
    if fresh is None:
        return Skip("the invoice is gone from the ledger (deleted)", "deleted")
    inv = fresh.invoice
    name = f"invoice {inv.number or inv.id}"
    if inv.status is InvoiceStatus.VOIDED:
        return Skip(f"{name} was voided", "voided")
    if inv.status is InvoiceStatus.DRAFT:
        return Skip(f"{name} is a draft again", "draft")
    if inv.status is InvoiceStatus.PAID or inv.balance <= ZERO:
        how = "paid or credited in full" if inv.balance <= ZERO else "paid"
        return Skip(f"{name} was {how} before this was sent", "paid")
    for hold in holds:
        if hold.invoice_id in (None, inv.id) and (
            hold.invoice_id is not None or hold.customer_id == inv.customer_id
        ):
            words = _HOLD_WORDS.get(hold.kind, f"a {hold.kind.value} hold")
            return Skip(f"{words} (since {hold.set_at:%-d %b %Y}): {hold.reason}", "held")
    if planned_due is not None and inv.due_date != planned_due and not plan_subject:
        return Skip(
            f"the due date of {name} moved from {planned_due:%-d %b %Y} to "
            f"{inv.due_date:%-d %b %Y}; the plan is made again from the new date",
            "due_moved",
        )
    floor = policy.minimum(inv.currency, stage)
    if inv.balance < floor:
        return Skip(
            f"the balance of {name} is now {Money(inv.balance, inv.currency)}, below the "
            f"policy's minimum of {Money(floor, inv.currency)}",
            "below_minimum",
        )
    if inv.id in covered:
        # the planner's own rule (planner.in_flight: unapplied money covers invoices oldest
        # first), so that what it planned is never skipped here for a reason it did not see
        return Skip(f"{name}: {covered[inv.id]}", "in_flight")
    if plan_subject:
        return Go(planned_amount)
    balance = Money(inv.balance, inv.currency)
    if balance != planned_amount:
        return Go(balance, planned_amount)
    return Go(balance)
