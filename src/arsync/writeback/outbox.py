"""Enqueue: the plan's due actions go into the outbox under their ids, in one transaction.

The outbox's states, and who moves an action between them:

    planned ──(its moment comes)──▶ ready ◀──(approve)── awaiting approval ──(reject)──▶ skipped
                                      │ claim (lease: owner, expiry)
                                      ▼
    retrying ◀──(passing failure)── claimed ──(fresh read says no)──▶ skipped
       │ (next_at)                    │ ╲──(written; evidence)──▶ done
       └──────────▶ claimed           │  ╲─(refused for good, or out of attempts)──▶ dead
                                      ▼ (reply lost, or the lease lapsed after sending)
                                   unknown ──(read back: found)──▶ done
                                      │ ──(read back: surely absent)──▶ retrying
                                      ▼ (cannot tell)
                                needs a person ──(`arsync resolve`)──▶ done | ready | skipped

A second enqueue of the same plan adds nothing: the ids are there. A stage enqueued is written to
the paper trail as done (and the stages the catch-up rule passed over as superseded), which is
what the planner reads back as the invoice's history; an earlier stage's actions still waiting
for their turn are skipped as superseded by the later one, so a customer never gets both.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime

from arsync.domain import Invoice, Kind
from arsync.escalation.planner import Plan, Status
from arsync.escalation.policy import Policy
from arsync.escalation.reading import STAGE_DONE, STAGE_SUPERSEDED
from arsync.store import ConnectorRow
from arsync.store.states import Entity, OutboxState
from arsync.store.unit import Tx
from arsync.writeback.ledger import RECORDED

S = OutboxState
#: an action not yet begun: a later stage may still take its place
NOT_BEGUN = (S.PLANNED, S.AWAITING_APPROVAL, S.READY, S.RETRYING)


@dataclass
class Enqueued:
    added: int = 0
    already: int = 0
    awaiting_approval: int = 0
    superseded: int = 0
    ids: list[str] = field(default_factory=list)


def enqueue(tx: Tx, row: ConnectorRow, plan: Plan, policy: Policy) -> Enqueued:
    """Put the plan's due actions in the outbox (in `tx`); report what changed."""
    out = Enqueued()
    now = tx.now
    due = [d for d in plan.decisions if d.status is Status.DUE and d.actions]
    existing = tx.outbox.existing(row.id, (a.id for d in due for a in d.actions))
    for decision in due:
        stage = policy.stage(decision.stage or "")
        fresh = [a for a in decision.actions if a.id not in existing]
        out.already += len(decision.actions) - len(fresh)
        if not fresh:
            continue
        # Earlier stages of the same subject not begun yet give way to this one.
        for old in tx.outbox.of(row.id, subject=decision.subject, states=NOT_BEGUN):
            # what a person recorded (a promise's note, a call's outcome) is not a stage
            if old.stage != stage.name and not old.stage.startswith(RECORDED):
                tx.outbox.move(
                    old,
                    S.SKIPPED,
                    reason=f"superseded by the {stage.title} before it happened",
                    reason_code="superseded",
                )
                out.superseded += 1
        invoice = plan_invoice(decision.invoice_id, decision.actions[0].invoice_id)
        for action in fresh:
            if action.approval:
                state = S.AWAITING_APPROVAL
                out.awaiting_approval += 1
            else:
                state = S.PLANNED if action.at > now else S.READY
            tx.outbox.add(
                row.id,
                id=action.id,
                key=action.key,
                kind=action.kind.value,
                subject=action.subject,
                customer_id=action.customer_id,
                invoice_id=action.invoice_id,
                stage=action.stage,
                stage_title=action.stage_title,
                tone=action.tone.value,
                amount=action.amount.amount,
                currency=action.amount.currency,
                due_date=due_date_of(tx, row.id, invoice),
                at=action.at,
                state=state,
                approval=action.approval,
            )
            out.added += 1
            out.ids.append(action.id)
        at = decision.at or now
        for name in decision.superseded:
            _stage_event(
                tx,
                row.id,
                decision.subject,
                decision.customer_id,
                invoice,
                name,
                at,
                contact=False,
                superseded=True,
            )
        _stage_event(
            tx,
            row.id,
            decision.subject,
            decision.customer_id,
            invoice,
            stage.name,
            at,
            contact=stage.contacts,
            superseded=False,
        )
    return out


def plan_invoice(decision_invoice: str | None, action_invoice: str) -> str:
    return decision_invoice or action_invoice


def due_date_of(tx: Tx, connector_id: int, invoice_id: str) -> date | None:
    found = tx.records.by_ids(connector_id, Kind.INVOICE, [invoice_id]).get(invoice_id)
    return found.due_date if isinstance(found, Invoice) else None


def _stage_event(
    tx: Tx,
    connector_id: int,
    subject: str,
    customer_id: str,
    invoice_id: str,
    stage: str,
    at: datetime,
    *,
    contact: bool,
    superseded: bool,
) -> None:
    tx.events.append(
        connector_id,
        Entity.INVOICE,
        STAGE_SUPERSEDED if superseded else STAGE_DONE,
        external_id=invoice_id,
        detail={
            "subject": subject,
            "customer": customer_id,
            "stage": stage,
            "at": at.isoformat(),
            "contact": contact,
        },
    )
