"""What a person records in arsync goes into the ledger too: a dated note, and a promise's date.

A promise to pay, a dispute, a settlement or a payment plan recorded with the CLI is put in the
outbox as a note on each invoice it concerns (the bookkeeper sees it inside QuickBooks or Xero),
and a promise's date also as an `expect` action that sets the Xero invoice's Expected Date
(QuickBooks has no such field: the note alone). The dispatcher writes them exactly once, like
any other action; their ids derive from the hold or plan they record.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any

from arsync.domain import Invoice
from arsync.escalation.planner import action_id
from arsync.store.models import ConnectorRow
from arsync.store.states import OutboxState
from arsync.store.unit import Tx

#: the outbox's stage names for what a person records (never a policy stage's name: a policy
#: stage's name is a slug, and these carry a colon)
RECORDED = "recorded:"


def record_in_ledger(
    tx: Tx,
    row: ConnectorRow,
    invoice: Invoice,
    *,
    topic: str,
    title: str,
    words: str,
    ref: str,
    expect: date | None = None,
    facts: Mapping[str, Any] | None = None,
) -> list[str]:
    """Enqueue a note on `invoice` saying `words` (and, on Xero, its Expected Date set to
    `expect`); `ref` names what is recorded (e.g. "hold-12"), so the ids are stable.

    `facts` are the note template's: {"event": "promise", "who": ..., "amount": ..., "by":
    "2026-12-15"} (see words.NoteFacts); without them the note says `words`."""
    base = f"{row.name}/invoice:{invoice.id}/{topic}-{ref}"
    made: list[str] = []
    kinds: list[tuple[str, Any]] = []
    if expect is not None and row.platform == "xero":
        kinds.append(("expect", {"expected": expect.isoformat()}))
    kinds.append(("note", dict(facts) if facts else {"event": "noted", "reason": words}))
    for kind, result in kinds:
        key = f"{base}/{kind}"
        ident = action_id(key)
        if tx.outbox.add(
            row.id,
            id=ident,
            key=key,
            kind=kind,
            subject=f"invoice:{invoice.id}",
            customer_id=invoice.customer_id,
            invoice_id=invoice.id,
            stage=f"{RECORDED}{topic}",
            stage_title=title,
            tone="polite",
            amount=invoice.balance,
            currency=invoice.currency,
            due_date=invoice.due_date,
            at=tx.now,
            state=OutboxState.READY,
            reason=words,
            result=result,
        ):
            made.append(ident)
    return made
