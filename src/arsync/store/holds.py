"""Holds and payment plans: the compassionate part of collecting, each with its paper trail.

A hold stops or shapes the chase of an invoice or a whole customer (a pause, an exclusion, a
dispute, a promise to pay, a settlement). A payment plan spreads what a customer owes over
instalments. Each is recorded with who set it, when and why, and ends (never vanishes) with who
ended it, when and why; both are written to the events table as they happen.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Table, insert, select, update

from arsync.store.models import Hold, Instalment, PaymentPlan
from arsync.store.schema import holds, payment_plans, plan_instalments
from arsync.store.states import Entity, HoldKind, HoldSource, HoldState, PlanState

if TYPE_CHECKING:
    from arsync.store.unit import Tx

_h = holds.c
_p = payment_plans.c
_i = plan_instalments.c

#: kinds that hold a single invoice, and kinds that hold a whole customer
INVOICE_KINDS = frozenset(
    {HoldKind.EXCLUDE, HoldKind.DISPUTE, HoldKind.PROMISE, HoldKind.SETTLEMENT}
)
CUSTOMER_KINDS = frozenset({HoldKind.PAUSE})


def _hold(row: Any) -> Hold:
    return Hold(
        id=row.id,
        connector_id=row.connector_id,
        kind=HoldKind(row.kind),
        customer_id=row.customer_id,
        invoice_id=row.invoice_id,
        until=row.until,
        amount=row.amount,
        currency=row.currency,
        basis=row.basis,
        reason=row.reason,
        source=HoldSource(row.source),
        set_by=row.set_by,
        set_at=row.set_at,
        state=HoldState(row.state),
        ended_by=row.ended_by,
        ended_at=row.ended_at,
        end_reason=row.end_reason,
    )


def _end(
    conn: Connection,
    table: Table,
    row_id: int,
    *,
    current: StrEnum,
    to: StrEnum,
    what: str,
    by: str,
    reason: str,
    at: datetime,
) -> None:
    """End an active hold or plan: its state, who ended it, when and why."""
    if to.value == "active":
        raise ValueError(f"a {what} ends in a state other than active")
    if current.value != "active":
        raise ValueError(f"{what} {row_id} already ended ({current.value})")
    conn.execute(
        update(table)
        .where(table.c.id == row_id)
        .values(state=to.value, ended_by=by, ended_at=at, end_reason=reason.strip())
    )


def _trail(hold: Hold) -> tuple[Entity, str]:
    if hold.invoice_id is not None:
        return Entity.INVOICE, hold.invoice_id
    assert hold.customer_id is not None
    return Entity.CUSTOMER, hold.customer_id


class HoldsRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    def add(
        self,
        connector_id: int,
        kind: HoldKind,
        *,
        reason: str,
        set_by: str,
        source: HoldSource = HoldSource.ARSYNC,
        customer_id: str | None = None,
        invoice_id: str | None = None,
        until: date | None = None,
        amount: Decimal | None = None,
        currency: str | None = None,
        basis: Decimal | None = None,
    ) -> Hold:
        """Record a new, active hold (and its event). What it names must make sense for its
        kind: a pause names a customer, the others an invoice (and may name its customer)."""
        if kind in CUSTOMER_KINDS and (customer_id is None or invoice_id is not None):
            raise ValueError(f"a {kind.value} holds a customer, not an invoice")
        if kind in INVOICE_KINDS and invoice_id is None:
            raise ValueError(f"a {kind.value} holds an invoice")
        if kind is HoldKind.PROMISE and until is None:
            raise ValueError("a promise to pay has a date")
        if kind is HoldKind.SETTLEMENT and amount is None:
            raise ValueError("a settlement has an agreed amount")
        if amount is not None and (amount <= 0 or currency is None):
            raise ValueError("an amount is above zero and has its currency")
        if not reason.strip() or not set_by.strip():
            raise ValueError("a hold says why, and who set it")
        hold_id = self._conn.execute(
            insert(holds)
            .values(
                connector_id=connector_id,
                kind=kind.value,
                customer_id=customer_id,
                invoice_id=invoice_id,
                until=until,
                amount=amount,
                currency=currency,
                basis=basis,
                reason=reason.strip(),
                source=source.value,
                set_by=set_by.strip(),
                set_at=self._tx.now,
                state=HoldState.ACTIVE.value,
            )
            .returning(_h.id)
        ).scalar_one()
        hold = self.get(int(hold_id))
        entity, external_id = _trail(hold)
        self._tx.events.append(
            connector_id,
            entity,
            "hold_set",
            external_id=external_id,
            detail={
                "hold": hold.id,
                "kind": kind.value,
                "until": until.isoformat() if until else None,
                "amount": str(amount) if amount is not None else None,
                "currency": currency,
                "reason": hold.reason,
                "by": hold.set_by,
                "source": source.value,
            },
        )
        return hold

    def end(self, hold_id: int, state: HoldState, *, by: str, reason: str) -> Hold:
        """End an active hold: cleared, broken (a promise not kept) or kept (paid)."""
        hold = self.get(hold_id)
        _end(
            self._conn,
            holds,
            hold_id,
            current=hold.state,
            to=state,
            what="hold",
            by=by,
            reason=reason,
            at=self._tx.now,
        )
        entity, external_id = _trail(hold)
        self._tx.events.append(
            hold.connector_id,
            entity,
            "hold_ended",
            external_id=external_id,
            detail={
                "hold": hold_id,
                "kind": hold.kind.value,
                "state": state.value,
                "reason": reason.strip(),
                "by": by,
            },
        )
        return self.get(hold_id)

    def get(self, hold_id: int) -> Hold:
        row = self._conn.execute(select(holds).where(_h.id == hold_id)).first()
        if row is None:
            raise KeyError(f"no hold {hold_id}")
        return _hold(row)

    def active(self, connector_id: int) -> list[Hold]:
        rows = self._conn.execute(
            select(holds)
            .where(_h.connector_id == connector_id, _h.state == HoldState.ACTIVE.value)
            .order_by(_h.id)
        )
        return [_hold(r) for r in rows]

    def ended(self, connector_id: int, states: Sequence[HoldState]) -> list[Hold]:
        """Holds that ended in one of `states` (the planner reads broken promises and kept
        settlements)."""
        rows = self._conn.execute(
            select(holds)
            .where(
                _h.connector_id == connector_id,
                _h.state.in_([s.value for s in states]),
            )
            .order_by(_h.id)
        )
        return [_hold(r) for r in rows]

    def history(
        self,
        connector_id: int,
        *,
        invoice_id: str | None = None,
        customer_id: str | None = None,
    ) -> list[Hold]:
        """Every hold, active or ended, of an invoice or a customer (all of them if neither)."""
        query = select(holds).where(_h.connector_id == connector_id)
        if invoice_id is not None:
            query = query.where(_h.invoice_id == invoice_id)
        if customer_id is not None:
            query = query.where(_h.customer_id == customer_id)
        return [_hold(r) for r in self._conn.execute(query.order_by(_h.id))]


class PlansRepo:
    def __init__(self, tx: Tx) -> None:
        self._tx = tx
        self._conn: Connection = tx.conn

    def add(
        self,
        connector_id: int,
        customer_id: str,
        invoice_ids: Sequence[str],
        currency: str,
        instalments: Sequence[tuple[date, Decimal]],
        *,
        missed_allowed: int,
        reason: str,
        set_by: str,
        source: HoldSource = HoldSource.ARSYNC,
        basis: Decimal | None = None,
    ) -> PaymentPlan:
        if not invoice_ids:
            raise ValueError("a payment plan covers at least one invoice")
        if not instalments:
            raise ValueError("a payment plan has at least one instalment")
        dues = [due for due, _ in instalments]
        if dues != sorted(dues) or len(set(dues)) != len(dues):
            raise ValueError("instalments fall on different days, in order")
        if any(amount <= 0 for _, amount in instalments):
            raise ValueError("every instalment is above zero")
        if missed_allowed < 0:
            raise ValueError("missed_allowed cannot be negative")
        if not reason.strip() or not set_by.strip():
            raise ValueError("a payment plan says why, and who set it")
        plan_id = int(
            self._conn.execute(
                insert(payment_plans)
                .values(
                    connector_id=connector_id,
                    customer_id=customer_id,
                    invoice_ids=list(dict.fromkeys(invoice_ids)),
                    currency=currency,
                    basis=basis,
                    missed_allowed=missed_allowed,
                    reason=reason.strip(),
                    source=source.value,
                    set_by=set_by.strip(),
                    set_at=self._tx.now,
                    state=PlanState.ACTIVE.value,
                )
                .returning(_p.id)
            ).scalar_one()
        )
        self._conn.execute(
            insert(plan_instalments),
            [
                {"plan_id": plan_id, "seq": n, "due": due, "amount": amount}
                for n, (due, amount) in enumerate(instalments, start=1)
            ],
        )
        plan = self.get(plan_id)
        self._tx.events.append(
            connector_id,
            Entity.CUSTOMER,
            "plan_set",
            external_id=customer_id,
            detail={
                "plan": plan_id,
                "invoices": list(plan.invoice_ids),
                "currency": currency,
                "instalments": [[i.due.isoformat(), str(i.amount)] for i in plan.instalments],
                "missed_allowed": missed_allowed,
                "reason": plan.reason,
                "by": plan.set_by,
                "source": source.value,
            },
        )
        return plan

    def end(self, plan_id: int, state: PlanState, *, by: str, reason: str) -> PaymentPlan:
        """End an active plan: completed (every instalment paid) or ended (missed, or by hand)."""
        plan = self.get(plan_id)
        _end(
            self._conn,
            payment_plans,
            plan_id,
            current=plan.state,
            to=state,
            what="payment plan",
            by=by,
            reason=reason,
            at=self._tx.now,
        )
        self._tx.events.append(
            plan.connector_id,
            Entity.CUSTOMER,
            "plan_ended",
            external_id=plan.customer_id,
            detail={"plan": plan_id, "state": state.value, "reason": reason.strip(), "by": by},
        )
        return self.get(plan_id)

    def get(self, plan_id: int) -> PaymentPlan:
        row = self._conn.execute(select(payment_plans).where(_p.id == plan_id)).first()
        if row is None:
            raise KeyError(f"no payment plan {plan_id}")
        return self._plan(row)

    def active(self, connector_id: int) -> list[PaymentPlan]:
        rows = self._conn.execute(
            select(payment_plans)
            .where(_p.connector_id == connector_id, _p.state == PlanState.ACTIVE.value)
            .order_by(_p.id)
        ).all()
        return [self._plan(r) for r in rows]

    def _plan(self, row: Any) -> PaymentPlan:
        parts = self._conn.execute(
            select(plan_instalments).where(_i.plan_id == row.id).order_by(_i.seq)
        )
        return PaymentPlan(
            id=row.id,
            connector_id=row.connector_id,
            customer_id=row.customer_id,
            invoice_ids=tuple(str(i) for i in row.invoice_ids),
            currency=row.currency,
            instalments=tuple(Instalment(p.seq, p.due, p.amount) for p in parts),
            basis=row.basis,
            missed_allowed=row.missed_allowed,
            reason=row.reason,
            source=HoldSource(row.source),
            set_by=row.set_by,
            set_at=row.set_at,
            state=PlanState(row.state),
            ended_by=row.ended_by,
            ended_at=row.ended_at,
            end_reason=row.end_reason,
        )
