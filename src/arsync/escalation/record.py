"""Recording what the ledger and the calendar settle: the holds a bookkeeper set inside
QuickBooks or Xero, and the planner's transitions (a promise broken or kept, a pause over, a
plan completed or ended), each into the paper trail, in one transaction.

Run after every sync and before every plan; it writes only when something changed, so running
it twice records nothing new.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from arsync.domain import (
    PLATFORM_NAMES,
    Customer,
    Hold,
    HoldKind,
    HoldSource,
    HoldState,
    Invoice,
    Kind,
    PlanState,
)
from arsync.escalation.planner import Change, Plan, plan
from arsync.escalation.policy import Policy
from arsync.escalation.reading import FirmZone, snapshot
from arsync.store.models import ConnectorRow
from arsync.store.unit import Tx

PLANNER = "arsync (the policy)"

_HOLD_ENDINGS: dict[Change, HoldState] = {
    Change.PROMISE_BROKEN: HoldState.BROKEN,
    Change.PROMISE_KEPT: HoldState.KEPT,
    Change.SETTLEMENT_KEPT: HoldState.KEPT,
    Change.SETTLEMENT_BROKEN: HoldState.BROKEN,
    Change.PAUSE_OVER: HoldState.CLEARED,
    Change.HOLD_OBSOLETE: HoldState.CLEARED,
}
_PLAN_ENDINGS: dict[Change, PlanState] = {
    Change.PLAN_COMPLETED: PlanState.COMPLETED,
    Change.PLAN_ENDED: PlanState.ENDED,
}


@dataclass(frozen=True)
class LedgerHold:
    """A hold the ledger says should exist."""

    kind: HoldKind
    customer_id: str
    invoice_id: str | None
    until: date | None
    reason: str
    set_by: str


def ledger_holds(
    platform: str, customers: list[Customer], invoices: list[Invoice], policy: Policy
) -> list[LedgerHold]:
    """The holds a bookkeeper set inside the ledger, as the policy reads them (pure)."""
    name = PLATFORM_NAMES.get(platform, platform)
    by = f"the bookkeeper, in {name}"
    wanted: list[LedgerHold] = []
    tags = {t.casefold(): t for t in policy.ledger.pause_tags}
    marker = policy.ledger.pause_marker.strip()
    label = "customer type" if platform == "qbo" else "contact group"
    for customer in customers:
        hit = next((t for t in customer.tags if t.casefold() in tags), None)
        if hit is not None:
            wanted.append(
                LedgerHold(HoldKind.PAUSE, customer.id, None, None, f'{label} "{hit}"', by)
            )
        elif marker and customer.notes and marker.casefold() in customer.notes.casefold():
            wanted.append(
                LedgerHold(HoldKind.PAUSE, customer.id, None, None, f'Notes say "{marker}"', by)
            )
    if policy.ledger.expected_date_is_promise:
        for invoice in invoices:
            if invoice.expected_date is not None:
                wanted.append(
                    LedgerHold(
                        HoldKind.PROMISE,
                        invoice.customer_id,
                        invoice.id,
                        invoice.expected_date,
                        f"Expected Date {invoice.expected_date:%d %b %Y} in {name}",
                        by,
                    )
                )
    return wanted


def reconcile_ledger(tx: Tx, row: ConnectorRow, policy: Policy) -> int:
    """Bring the ledger's holds into the store; returns how many holds it set or ended."""
    customers = [
        c for c in tx.records.live(row.id, Kind.CUSTOMER).values() if isinstance(c, Customer)
    ]
    invoices = tx.records.open_invoices(row.id)
    wanted = ledger_holds(row.platform, customers, invoices, policy)
    active = [h for h in tx.holds.active(row.id) if h.source is HoldSource.LEDGER]
    changed = 0

    def same(hold: Hold, want: LedgerHold) -> bool:
        return (
            hold.kind is want.kind
            and hold.customer_id == want.customer_id
            and hold.invoice_id == want.invoice_id
            and hold.until == want.until
            and hold.reason == want.reason
        )

    for hold in active:
        if not any(same(hold, w) for w in wanted):
            tx.holds.end(
                hold.id, HoldState.CLEARED, by=PLANNER, reason="no longer set in the ledger"
            )
            changed += 1
    active = [h for h in active if any(same(h, w) for w in wanted)]
    for want in wanted:
        if any(same(h, want) for h in active):
            continue
        if want.kind is HoldKind.PROMISE:
            # A promise the ledger still shows after it was broken or kept is not made again;
            # nor is one arsync recorded itself and wrote to the ledger as its Expected Date.
            assert want.invoice_id is not None
            past = tx.holds.history(row.id, invoice_id=want.invoice_id)
            if any(h.kind is HoldKind.PROMISE and h.until == want.until for h in past):
                continue
        tx.holds.add(
            row.id,
            want.kind,
            reason=want.reason,
            set_by=want.set_by,
            source=HoldSource.LEDGER,
            customer_id=want.customer_id,
            invoice_id=want.invoice_id,
            until=want.until,
        )
        changed += 1
    return changed


def apply(tx: Tx, result: Plan) -> int:
    """Record the planner's transitions; returns how many it recorded."""
    done = 0
    for transition in result.transitions:
        if transition.change in _HOLD_ENDINGS:
            hold = tx.holds.get(transition.ref)
            if hold.state is HoldState.ACTIVE:
                tx.holds.end(
                    hold.id,
                    _HOLD_ENDINGS[transition.change],
                    by=PLANNER,
                    reason=transition.reason,
                )
                done += 1
        else:
            current = tx.plans.get(transition.ref)
            if current.state is PlanState.ACTIVE:
                tx.plans.end(
                    current.id,
                    _PLAN_ENDINGS[transition.change],
                    by=PLANNER,
                    reason=transition.reason,
                )
                done += 1
    return done


def settle(tx: Tx, row: ConnectorRow, policy: Policy, firm: FirmZone, now: datetime) -> int:
    """The planner's transitions, then the ledger's holds, recorded; how many changes."""
    if not tx.holds.active(row.id) and not tx.plans.active(row.id):
        return reconcile_ledger(tx, row, policy)
    current = snapshot(tx, row, policy, firm, now, held_only=True)
    changed = apply(tx, plan(current, policy, now))
    return changed + reconcile_ledger(tx, row, policy)
