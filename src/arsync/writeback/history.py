"""`arsync history`: an invoice's or a customer's paper trail, every step in time order.

What an agency or a court asks for: each action planned, sent, skipped, failed or approved,
with its reason and the platform's own evidence (the address it emailed, when, the note's text),
and each hold, payment plan and call outcome, as the store's events recorded them. The outbox
row of an action adds what its events do not carry: the stage's title and the evidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from arsync.collecting import Collecting, event_words, find, firm_of
from arsync.domain import Customer, Invoice, Kind
from arsync.store.models import ConnectorRow, Event
from arsync.store.outbox import OutboxRow
from arsync.store.states import Entity
from arsync.store.unit import Tx

#: the trail's event of a call's outcome (written by `arsync called`)
CALL_OUTCOME = "call_outcome"
#: events of an action's journey that say nothing a reader needs: it was picked up, it left
QUIET = frozenset({"action_claimed", "action_sending", "action_ready"})
#: the ledger's own changes, as sync recorded them
LEDGER = frozenset({"created", "changed", "deleted", "restored"})

#: what each action event means, in a word a reader scans for
_WHAT = {
    "action_enqueued": "planned",
    "action_done": "done",
    "action_resolved": "resolved",
    "action_skipped": "skipped",
    "action_rejected": "skipped",
    "action_retrying": "failed",
    "action_dead": "failed",
    "action_unknown": "failed",
    "action_needs_person": "failed",
    "action_approved": "approved",
    "action_released": "waiting",
}


@dataclass(frozen=True)
class Entry:
    """One step of the trail."""

    at: datetime
    #: planned, done, skipped, failed, approved, resolved, waiting, stage, hold, plan, call,
    #: ledger
    what: str
    #: the trail's own name for it
    event: str
    words: str
    #: the invoice it concerns (its number, or id), None for the customer as a whole
    invoice: str | None = None
    action: str | None = None
    kind: str | None = None
    stage: str | None = None
    #: how notes and reasons name the stage ("60-day call and reminder")
    stage_title: str | None = None
    reason: str | None = None
    #: the platform's evidence of a done action (the outbox row's result)
    evidence: Mapping[str, Any] | None = None
    by: str | None = None


@dataclass
class History:
    """The trail of one invoice or one customer."""

    connector: str
    subject: str
    zone: ZoneInfo
    today: date
    heading: str
    entries: list[Entry]


# -- building ------------------------------------------------------------------------------------
def history(collecting: Collecting, ref: str, *, connector: str | None) -> History:
    """The trail of the invoice or customer `ref` names (as `arsync why` finds it)."""
    config = collecting.config
    with collecting.store.reading() as tx:
        found = find(tx, config, ref, connector)
        firm = firm_of(found.connector, found.row)
        today = tx.now.astimezone(firm.zone).date()
        if found.invoice is not None:
            invoice = found.invoice
            customer = _customer(tx, found.row, invoice.customer_id)
            entries = invoice_entries(tx, found.row, invoice)
            subject = f"invoice {invoice.number or invoice.id}"
            heading = invoice_heading(invoice, customer, today)
        else:
            assert found.customer is not None
            customer = found.customer
            entries = customer_entries(tx, found.row, customer)
            subject = f"customer {customer.name}"
            owed = _owed(
                i for i in tx.records.open_invoices(found.row.id) if i.customer_id == customer.id
            )
            heading = " · ".join(
                [
                    *(x for x in (customer.phone, customer.email) if x),
                    f"owes {owed}" if owed else "owes nothing",
                ]
            )
    return History(found.connector.name, subject, firm.zone, today, heading, entries)


def invoice_entries(tx: Tx, row: ConnectorRow, invoice: Invoice) -> list[Entry]:
    """The invoice's own trail, with what its customer's trail says of it (a pause, a payment
    plan covering it, a call about it)."""
    own = tx.events.of(row.id, entity=Entity.INVOICE, external_id=invoice.id)
    theirs = tx.events.of(row.id, entity=Entity.CUSTOMER, external_id=invoice.customer_id)
    plans = _plan_invoices(theirs)
    mine = [e for e in theirs if _concerns(e, invoice.id, plans)]
    actions = {r.id: r for r in tx.outbox.of(row.id, customer_id=invoice.customer_id)}
    numbers = {invoice.id: invoice.number or invoice.id}
    return entries_of([*own, *mine], actions, numbers)


def customer_entries(tx: Tx, row: ConnectorRow, customer: Customer) -> list[Entry]:
    """The customer's trail and that of each invoice it has had an action, a hold or a plan
    on, or still owes."""
    theirs = tx.events.of(row.id, entity=Entity.CUSTOMER, external_id=customer.id)
    actions = {r.id: r for r in tx.outbox.of(row.id, customer_id=customer.id)}
    ids = {r.invoice_id for r in actions.values() if r.invoice_id}
    ids |= {h.invoice_id for h in tx.holds.history(row.id, customer_id=customer.id) if h.invoice_id}
    ids |= {i.id for i in tx.records.open_invoices(row.id) if i.customer_id == customer.id}
    for plans in _plan_invoices(theirs).values():
        ids |= set(plans)
    events: list[Event] = list(theirs)
    for invoice_id in sorted(ids):
        events += tx.events.of(row.id, entity=Entity.INVOICE, external_id=invoice_id)
    found = tx.records.by_ids(row.id, Kind.INVOICE, ids)
    numbers = {i: (r.number or r.id) if isinstance(r, Invoice) else i for i, r in found.items()}
    return entries_of(events, actions, numbers)


def entries_of(
    events: Iterable[Event], actions: Mapping[str, OutboxRow], numbers: Mapping[str, str]
) -> list[Entry]:
    """The events in time order, in words; an action's events say what its outbox row says
    (its stage's title, the platform's evidence of it)."""
    out: list[Entry] = []
    last_wait: dict[str, str] = {}
    for event in sorted(events, key=lambda e: (e.at, e.id)):
        if event.action in QUIET:
            continue
        d = event.detail if isinstance(event.detail, dict) else {}
        invoice = (
            numbers.get(event.external_id or "", event.external_id)
            if event.entity is Entity.INVOICE
            else None
        )
        if event.action.startswith("action_"):
            action = str(d.get("action", ""))
            if event.action == "action_released":
                # a run finds the same reason to wait each time: said once until it changes
                said = str(d.get("reason", ""))
                if last_wait.get(action) == said:
                    continue
                last_wait[action] = said
            entry = _action_entry(event, d, actions.get(action), invoice)
        elif event.action == CALL_OUTCOME:
            entry = _call_entry(event, d, numbers)
        elif event.action in ("stage_done", "stage_superseded"):
            verb = "begun" if event.action == "stage_done" else "passed over (caught up)"
            entry = Entry(
                event.at,
                "stage",
                event.action,
                f"stage {d.get('stage')} {verb}",
                invoice,
                stage=d.get("stage"),
            )
        elif event.action in ("hold_set", "hold_ended"):
            entry = Entry(
                event.at,
                "hold",
                event.action,
                event_words(event),
                invoice,
                reason=d.get("reason"),
                by=d.get("by"),
            )
        elif event.action in ("plan_set", "plan_ended"):
            entry = Entry(
                event.at,
                "plan",
                event.action,
                event_words(event),
                invoice,
                reason=d.get("reason"),
                by=d.get("by"),
            )
        elif event.action in LEDGER:
            entry = Entry(event.at, "ledger", event.action, event_words(event), invoice)
        else:
            entry = Entry(event.at, "other", event.action, event_words(event), invoice)
        out.append(entry)
    return out


def _action_entry(
    event: Event, d: Mapping[str, Any], row: OutboxRow | None, invoice: str | None
) -> Entry:
    kind = str(d.get("kind") or (row.kind if row else "action"))
    stage = row.stage_title if row else str(d.get("stage", ""))
    what = _WHAT.get(event.action, event.action.removeprefix("action_"))
    reason = d.get("reason")
    evidence: Mapping[str, Any] | None = None
    if event.action == "action_enqueued":
        state = str(d.get("state", ""))
        words = "planned"
        if state == "awaiting_approval":
            words += f", waits for approval ({d.get('approval')})"
        elif state == "planned" and row is not None:
            words += f" for {row.at:%Y-%m-%d %H:%M} UTC"
        if d.get("instead_of"):
            words += f", instead of {str(d['instead_of'])[:8]} ({d.get('why')})"
    elif event.action in ("action_done", "action_resolved") and row is not None:
        evidence = row.result if isinstance(row.result, dict) else None
        words = done_words(row.kind, evidence, str(reason or "done"))
    elif event.action == "action_retrying":
        later = (
            f", tried again from {d['next_at'][:16].replace('T', ' ')} UTC"
            if d.get("next_at")
            else ""
        )
        words = f"failed{later}: {reason}"
    elif event.action == "action_dead":
        words = f"failed for good: {reason}"
    elif event.action == "action_unknown":
        words = f"outcome unknown, read back from the platform: {reason}"
    elif event.action == "action_needs_person":
        words = f"waits for a person: {reason}"
    elif event.action == "action_released":
        words = f"waits: {reason}"
    else:
        words = str(reason or what)
    label = f"{kind} · {stage}" if stage else kind
    return Entry(
        event.at,
        what,
        event.action,
        f"{label}: {words}",
        invoice,
        action=str(d.get("action")) if d.get("action") else None,
        kind=kind,
        stage=str(d.get("stage")) if d.get("stage") else None,
        stage_title=stage or None,
        reason=str(reason) if reason is not None else None,
        evidence=evidence,
        by=str(d["decided_by"]) if d.get("decided_by") else None,
    )


def done_words(kind: str, result: Mapping[str, Any] | None, reason: str) -> str:
    """A done action in words, from the platform's evidence where there is some."""
    r = result or {}
    if kind == "email":
        said = f"reminder emailed to {r['to']}" if r.get("to") else "reminder emailed"
        if r.get("at"):
            said += f" (the platform's time: {str(r['at'])[:16].replace('T', ' ')} UTC)"
        if r.get("evidence"):
            said += f"; {r['evidence']}"
        return said
    if kind == "note" and r.get("note"):
        return f"note written: {r['note']}"
    if kind == "call":
        return "call task opened (on `arsync calls`)"
    if kind == "letter" and r.get("to"):
        return f"letter sent to {r['to']}"
    return reason


def _call_entry(event: Event, d: Mapping[str, Any], numbers: Mapping[str, str]) -> Entry:
    by = str(d.get("by", "someone"))
    said = str(d.get("said") or d.get("outcome"))
    words = f"call: {said} (recorded by {by})"
    reason = d.get("reason")
    if reason and str(reason) not in said:
        words += f": {reason}"
    if d.get("retry_from"):
        words += f"; on the call list again from {d['retry_from']}"
    invoices = [numbers.get(str(i), str(i)) for i in d.get("invoices", ())]
    return Entry(
        event.at,
        "call",
        event.action,
        words,
        ", ".join(invoices) or None,
        kind="call",
        reason=str(reason) if reason else None,
        by=by,
    )


def _plan_invoices(events: Sequence[Event]) -> dict[str, list[str]]:
    """Each payment plan's invoices (its end event names only the plan)."""
    out: dict[str, list[str]] = {}
    for e in events:
        if e.action == "plan_set" and isinstance(e.detail, dict):
            out[str(e.detail.get("plan"))] = [str(i) for i in e.detail.get("invoices", ())]
    return out


def _concerns(event: Event, invoice_id: str, plans: Mapping[str, list[str]]) -> bool:
    """Does an event of the customer concern this invoice? A pause, a change of the customer
    (an email address gone) and an action on the customer as a whole do; a plan or a call only
    when it covers the invoice."""
    d = event.detail if isinstance(event.detail, dict) else {}
    if event.action in ("plan_set", "plan_ended"):
        return invoice_id in plans.get(str(d.get("plan")), [])
    if event.action == CALL_OUTCOME:
        return invoice_id in [str(i) for i in d.get("invoices", ())]
    return True


def _customer(tx: Tx, row: ConnectorRow, customer_id: str) -> Customer | None:
    found = tx.records.by_ids(row.id, Kind.CUSTOMER, [customer_id]).get(customer_id)
    return found if isinstance(found, Customer) else None


def _owed(invoices: Iterable[Invoice]) -> str:
    totals: dict[str, Decimal] = {}
    for i in invoices:
        totals[i.currency] = totals.get(i.currency, Decimal(0)) + i.balance
    return " + ".join(f"{v:,.2f} {c}" for c, v in sorted(totals.items()) if v > 0)


def invoice_heading(invoice: Invoice, customer: Customer | None, today: date) -> str:
    name = customer.name if customer else invoice.customer_id
    late = (today - invoice.due_date).days
    when = (
        f"{late} days overdue" if late > 0 else "due today" if late == 0 else f"due in {-late} days"
    )
    state = (
        f"{invoice.balance:,.2f} of {invoice.total:,.2f} {invoice.currency} owed, due "
        f"{invoice.due_date:%d %b %Y} ({when})"
        if invoice.status.value == "open"
        else f"{invoice.status.value}, {invoice.total:,.2f} {invoice.currency}"
    )
    return f"{name} · {state}"


# -- output --------------------------------------------------------------------------------------
_STYLE = {
    "planned": "cyan",
    "done": "bold green",
    "resolved": "green",
    "approved": "green",
    "skipped": "yellow",
    "failed": "bold red",
    "waiting": "dim",
    "stage": "blue",
    "hold": "magenta",
    "plan": "magenta",
    "call": "bold magenta",
    "ledger": "dim",
    "other": "dim",
}


def to_json(found: History) -> dict[str, Any]:
    return {
        "connector": found.connector,
        "subject": found.subject,
        "heading": found.heading,
        "timezone": found.zone.key,
        "entries": [
            {
                "at": e.at.isoformat(),
                "what": e.what,
                "event": e.event,
                "words": e.words,
                "invoice": e.invoice,
                "action": e.action,
                "kind": e.kind,
                "stage": e.stage,
                "stage_title": e.stage_title,
                "reason": e.reason,
                "evidence": dict(e.evidence) if e.evidence is not None else None,
                "by": e.by,
            }
            for e in found.entries
        ],
    }


def render(found: History, *, show_invoice: bool | None = None) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(
        f"[bold]{escape(found.subject)}[/] · {escape(found.connector)} · "
        f"{escape(found.heading)} · times in {found.zone.key}"
    )
    if not found.entries:
        console.print("  nothing recorded yet")
        return
    many = show_invoice if show_invoice is not None else found.subject.startswith("customer ")
    for e in found.entries:
        local = e.at.astimezone(found.zone)
        where = f"[dim]{escape(e.invoice)}[/] " if many and e.invoice else ""
        console.print(
            f"  {local:%d %b %Y %H:%M}  [{_STYLE.get(e.what, 'dim')}]{e.what:<8}[/] "
            f"{where}{escape(e.words)}"
        )


__all__ = ["CALL_OUTCOME", "Entry", "History", "history", "render", "to_json"]
