"""What a person does to the outbox: look at it, approve, reject, and settle what arsync cannot.

Each decision is recorded with who made it, when and why, in the same transaction as the change
it makes; an action is named by its id or the first characters of it (as `arsync outbox` shows).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arsync.collecting import BadInput, who
from arsync.config import Config
from arsync.domain import Customer, Kind
from arsync.store.outbox import FINAL, OutboxRow
from arsync.store.states import OutboxState
from arsync.store.unit import Store, Tx

S = OutboxState
#: how many characters of an id `arsync outbox` shows (enough to be unique in practice)
SHORT = 8


@dataclass(frozen=True)
class Listed:
    connector: str
    row: OutboxRow
    #: "INV-1042 · Harbor Cafe": the invoice's number and the customer's name
    label: str = ""


def _find(tx: Tx, ref: str) -> tuple[str, OutboxRow]:
    ref = ref.strip().lower()
    if len(ref) < 4:
        raise BadInput(f"{ref!r}: name an action by at least 4 characters of its id")
    found = tx.outbox.find(ref)
    if not found:
        raise BadInput(f"no action {ref!r} in the outbox (see `arsync outbox --all`)")
    if len(found) > 1:
        ids = ", ".join(r.id[:12] for r in found[:5])
        raise BadInput(f"{ref!r} names {len(found)} actions ({ids}...): give more characters")
    row = found[0]
    return tx.connectors.get(row.connector_id).name, row


def listing(
    store: Store, config: Config, names: Sequence[str], *, everything: bool
) -> list[Listed]:
    for name in names:
        config.connector(name)
    out: list[Listed] = []
    with store.reading() as tx:
        for conn in tx.connectors.all():
            if names and conn.name not in names:
                continue
            states = () if everything else tuple(s for s in S if s not in FINAL)
            rows = tx.outbox.of(conn.id, states=states)
            invoices = tx.records.by_ids(
                conn.id, Kind.INVOICE, {r.invoice_id for r in rows if r.invoice_id}
            )
            customers = tx.records.by_ids(conn.id, Kind.CUSTOMER, {r.customer_id for r in rows})
            for r in rows:
                invoice = invoices.get(r.invoice_id or "")
                number = (getattr(invoice, "number", None) or r.invoice_id) if r.invoice_id else ""
                customer = customers.get(r.customer_id)
                name = customer.name if isinstance(customer, Customer) else r.customer_id
                out.append(Listed(conn.name, r, f"{number} · {name}" if number else name))
    return out


def approve(store: Store, config: Config, ref: str | None, names: Sequence[str]) -> list[str]:
    """Approve one action (`ref`) or, with no ref, every action awaiting approval."""
    by = who()
    done: list[str] = []
    with store.transaction() as tx:
        if ref is not None:
            name, row = _find(tx, ref)
            if row.state is not S.AWAITING_APPROVAL:
                raise BadInput(
                    f"action {row.id[:SHORT]} is {row.state.value.replace('_', ' ')}, "
                    "not awaiting approval"
                )
            rows = [(name, row)]
        else:
            rows = [
                (item.connector, item.row)
                for item in listing(store, config, names, everything=False)
                if item.row.state is S.AWAITING_APPROVAL
            ]
        for name, row in rows:
            state = S.PLANNED if row.at > tx.now else S.READY
            if tx.outbox.move(
                row,
                state,
                event="action_approved",
                decided_by=by,
                decided_at=tx.now,
                reason=f"approved by {by}",
            ):
                done.append(f"{name}: {row.id[:SHORT]} {row.kind} of {row.subject} approved")
    return done


def reject(store: Store, ref: str, reason: str) -> str:
    reason = reason.strip()
    if not reason:
        raise BadInput("say why with --reason: it goes into the paper trail")
    by = who()
    with store.transaction() as tx:
        name, row = _find(tx, ref)
        if row.state not in (S.AWAITING_APPROVAL, S.PLANNED, S.READY, S.RETRYING):
            raise BadInput(
                f"action {row.id[:SHORT]} is {row.state.value.replace('_', ' ')}: only an "
                "action not yet begun can be rejected"
            )
        tx.outbox.move(
            row,
            S.SKIPPED,
            event="action_rejected",
            decided_by=by,
            decided_at=tx.now,
            reason=f"rejected by {by}: {reason}",
            reason_code="rejected",
        )
    return f"{name}: {row.id[:SHORT]} {row.kind} of {row.subject} rejected"


def resolve(store: Store, ref: str, outcome: str, reason: str | None) -> str:
    """A person settles an action arsync could not: it happened (`sent`), it did not and may
    go again (`resend`), or it should not happen (`skip`)."""
    by = who()
    with store.transaction() as tx:
        name, row = _find(tx, ref)
        if row.state not in (S.NEEDS_PERSON, S.UNKNOWN, S.DEAD):
            raise BadInput(
                f"action {row.id[:SHORT]} is {row.state.value.replace('_', ' ')}: only an "
                "action waiting for a person, unknown or dead can be settled by hand"
            )
        said = f" ({reason.strip()})" if reason and reason.strip() else ""
        fields: dict[str, Any] = {"decided_by": by, "decided_at": tx.now}
        if outcome == "sent":
            tx.outbox.move(
                row,
                S.DONE,
                event="action_resolved",
                reason=f"{by} says it happened{said}",
                reason_code="person_sent",
                result={**(row.result or {}), "confirmed_by": by},
                **fields,
            )
        elif outcome == "resend":
            # the person vouches that it did not happen: sending it again is safe
            tx.outbox.move(
                row,
                S.READY,
                event="action_resolved",
                reason=f"{by} says it did not happen: send it again{said}",
                reason_code="person_resend",
                sent_at=None,
                next_at=None,
                attempts=0,
                **fields,
            )
        elif outcome == "skip":
            tx.outbox.move(
                row,
                S.SKIPPED,
                event="action_resolved",
                reason=f"{by} decided it should not happen{said}",
                reason_code="person_skip",
                **fields,
            )
        else:
            raise BadInput(f"unknown outcome {outcome!r}: sent, resend or skip")
    return f"{name}: {row.id[:SHORT]} {row.kind} of {row.subject}: {outcome}"


def render(rows: list[Listed]) -> str:
    if not rows:
        return "The outbox holds nothing waiting."
    width = max(len(r.connector) for r in rows)
    lines = []
    for item in rows:
        r = item.row
        why = r.approval if r.state is S.AWAITING_APPROVAL else r.reason
        lines.append(
            f"{item.connector:<{width}}  {r.id[:SHORT]}  {r.state.value.replace('_', ' '):<17} "
            f"{r.kind:<8} {item.label or r.subject:<36} {r.stage_title}"
            + (f"\n{'':<{width}}  {'':<{SHORT}}  {why}" if why else "")
        )
    return "\n".join(lines)


def to_json(rows: list[Listed]) -> list[dict[str, Any]]:
    return [
        {
            "connector": item.connector,
            "id": item.row.id,
            "state": item.row.state.value,
            "kind": item.row.kind,
            "subject": item.row.subject,
            "label": item.label,
            "stage": item.row.stage,
            "at": item.row.at.isoformat(),
            "attempts": item.row.attempts,
            "approval": item.row.approval,
            "reason": item.row.reason,
            "result": item.row.result,
        }
        for item in rows
    ]
