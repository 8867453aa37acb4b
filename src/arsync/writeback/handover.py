"""The agency hand-over: a customer's evidence pack, a hold on its chase, a note on each invoice.

At the policy's hand-over stage (an outbox action of kind "handover", once approved) or when a
person runs `arsync handover CUSTOMER`, arsync:

1. builds the evidence pack an agency or a court asks for, in a folder of its own under the
   state folder (`<state>/handovers/<connector>/<customer>-<YYYY-MM-DD>/`): the statement of
   account and its aging, every invoice with what was applied to it, the whole paper trail
   (each reminder with its time, channel, address and the platform's evidence, each note's
   text, calls, disputes, promises, plans, approvals), the contact details; as CSV files, one
   JSON file with everything, a printable HTML page, and `MANIFEST.sha256` (`sha256sum -c`).
   The folder is written beside its final name and renamed into place whole, so a process
   killed half-way never leaves a half pack under the final name;
2. records, in one transaction: a "handover" event (who, when, agency, reason, the pack and its
   manifest's digest), a pause of the customer without end (so nothing of theirs is chased,
   payment-plan instalments and later invoices included, until `arsync resume CUSTOMER`), the
   customer's contacts not yet begun skipped, and a note on each open invoice through the
   outbox, so the bookkeeper sees the hand-over in the ledger.

No PDF: HTML with a print stylesheet prints to PDF from any browser, where a PDF library would
need a Unicode font shipped with arsync to print every customer's name.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, StrictUndefined

from arsync.aging import BUCKETS, OpenItem, age, bucket_index
from arsync.clock import Clock
from arsync.config import Config
from arsync.domain import (
    PLATFORM_NAMES,
    Credit,
    Customer,
    DocStatus,
    Hold,
    HoldKind,
    HoldState,
    Invoice,
    InvoiceStatus,
    Kind,
    Payment,
    PaymentPlan,
)
from arsync.errors import ArsyncError
from arsync.escalation.policy import Policy
from arsync.store.models import ConnectorRow, Event
from arsync.store.outbox import OutboxRow
from arsync.store.states import Entity, OutboxState
from arsync.store.unit import Store, Tx
from arsync.writeback.ledger import record_in_ledger

S = OutboxState
#: the agency's name when neither the person nor the policy names one (the policy has no such
#: setting yet)
DEFAULT_AGENCY = "the collection agency"
#: the paper trail's event of a hand-over
HANDOVER = "handover"
#: the folder under the state folder that holds the packs
PACKS = "handovers"
MANIFEST = "MANIFEST.sha256"
#: a pack being written: a hidden folder beside its final name, with this ending
PARTIAL = ".partial"
FORMAT = "arsync-handover/1"
#: the contacts a hand-over stops when they have not begun
CONTACTS = ("email", "letter", "call", "handover")
NOT_BEGUN = (S.PLANNED, S.AWAITING_APPROVAL, S.READY, S.RETRYING)
#: an action's steps that say nothing an agency needs: it was picked up, it left, it is ready
QUIET = frozenset({"action_claimed", "action_sending", "action_ready"})
#: spreadsheet programs run a cell that starts with one of these as a formula
FORMULA = ("=", "+", "-", "@", "\t", "\r")

TRAIL_COLUMNS = (
    "at_utc",
    "at_local",
    "subject",
    "what",
    "event",
    "channel",
    "stage",
    "to",
    "platform_at",
    "evidence",
    "text",
    "by",
    "reason",
    "action",
    "words",
)
INVOICE_COLUMNS = (
    "invoice_id",
    "number",
    "issue_date",
    "due_date",
    "currency",
    "total",
    "settled",
    "balance",
    "paid",
    "credited",
    "status",
    "sent",
    "expected_date",
    "days_overdue",
    "bucket",
    "allocations",
)
STATEMENT_COLUMNS = (
    "invoice_id",
    "number",
    "issue_date",
    "due_date",
    "currency",
    "total",
    "settled",
    "balance",
    "days_overdue",
    "bucket",
)


class PackFailed(ArsyncError):
    """The evidence pack could not be written, or one in its place is not whole: nothing was
    recorded (exit code 1)."""


@dataclass(frozen=True)
class HandedOver:
    """What one hand-over did."""

    connector: str
    customer: Customer
    agency: str
    by: str
    reason: str
    day: date
    path: Path
    #: the SHA-256 of MANIFEST.sha256, which lists every other file's
    digest: str
    hold: int
    #: the open invoices handed over, and the notes enqueued on them
    invoices: tuple[Invoice, ...]
    notes: tuple[str, ...]
    #: contacts not yet begun that were skipped
    skipped: int
    #: the pack was already there (written by a hand-over that stopped before recording)
    reused: bool


@dataclass
class Facts:
    """Everything the store knows of one customer, read in one transaction."""

    row: ConnectorRow
    customer: Customer
    invoices: list[Invoice]
    payments: list[Payment]
    credits: list[Credit]
    actions: list[OutboxRow]
    events: list[Event]
    holds: list[Hold]
    plans: list[PaymentPlan]
    now: datetime
    zone: ZoneInfo
    #: the pack's folder name without its date
    slug: str

    @property
    def today(self) -> date:
        return self.now.astimezone(self.zone).date()

    def open_invoices(self) -> list[Invoice]:
        return [i for i in self.invoices if is_open(i)]


def is_open(invoice: Invoice) -> bool:
    return invoice.status is InvoiceStatus.OPEN and invoice.balance > 0


def agency_of(policy: Policy) -> str:
    """The agency the policy names, or DEFAULT_AGENCY: the policy has no such setting yet, and
    one added as `agency` is taken up here without another change."""
    named = getattr(policy, "agency", None)
    return named.strip() if isinstance(named, str) and named.strip() else DEFAULT_AGENCY


def pack_root(store: Store, home: Path | None) -> Path | None:
    """Where packs go: beside a SQLite store's file (its state folder), else the service's
    state folder (systemd's $STATE_DIRECTORY: the home may be read-only to it), else
    `home`/state; None when none is known (a PostgreSQL store, no home, no service)."""
    engine = store.engine
    database = engine.url.database if engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        return Path(database).resolve().parent / PACKS
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if state:
        return Path(state) / PACKS
    return home / "state" / PACKS if home is not None else None


def slug(text: str) -> str:
    """Lowercase ASCII letters and digits joined by hyphens: a folder name on any system."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode().lower()
    return re.sub(r"[^a-z0-9]+", "-", plain).strip("-")[:60].strip("-")


# -- reading -------------------------------------------------------------------------------------
def handed_over(tx: Tx, row: ConnectorRow, customer_id: str) -> Event | None:
    """The customer's hand-over still in force (its pause not ended), or None."""
    events = tx.events.of(
        row.id, entity=Entity.CUSTOMER, external_id=customer_id, actions=[HANDOVER]
    )
    for event in reversed(events):
        hold = event.detail.get("hold") if isinstance(event.detail, dict) else None
        if isinstance(hold, int):
            try:
                if tx.holds.get(hold).state is HoldState.ACTIVE:
                    return event
            except KeyError:
                continue
    return None


def gather(tx: Tx, row: ConnectorRow, customer: Customer, zone: ZoneInfo) -> Facts:
    """The customer's invoices (open and closed), what was applied to them, its actions, holds,
    plans and every event of it and of its documents."""
    invoices = sorted(
        (
            i
            for i in tx.records.live(row.id, Kind.INVOICE).values()
            if isinstance(i, Invoice) and i.customer_id == customer.id
        ),
        key=lambda i: (i.issue_date, i.number or "", i.id),
    )
    ids = {i.id for i in invoices}

    def ours(doc: Payment | Credit) -> bool:
        return doc.customer_id == customer.id or any(a.invoice_id in ids for a in doc.allocations)

    payments = sorted(
        (
            p
            for p in tx.records.live(row.id, Kind.PAYMENT).values()
            if isinstance(p, Payment) and ours(p)
        ),
        key=lambda p: (p.date, p.id),
    )
    credits = sorted(
        (
            c
            for c in tx.records.live(row.id, Kind.CREDIT).values()
            if isinstance(c, Credit) and ours(c)
        ),
        key=lambda c: (c.date, c.id),
    )
    holds: dict[int, Hold] = {h.id: h for h in tx.holds.history(row.id, customer_id=customer.id)}
    for invoice_id in sorted(ids):
        holds.update((h.id, h) for h in tx.holds.history(row.id, invoice_id=invoice_id))
    events = list(tx.events.of(row.id, entity=Entity.CUSTOMER, external_id=customer.id))
    for entity, docs in (
        (Entity.INVOICE, invoices),
        (Entity.PAYMENT, payments),
        (Entity.CREDIT, credits),
    ):
        for doc in docs:
            events += tx.events.of(row.id, entity=entity, external_id=doc.id)
    events.sort(key=lambda e: e.id)
    mine = slug(customer.name) or "customer"
    others = {
        slug(c.name) or "customer"
        for c in tx.records.live(row.id, Kind.CUSTOMER).values()
        if isinstance(c, Customer) and c.id != customer.id
    }
    if mine in others:  # two customers of one name: the id tells their packs apart
        mine = f"{mine}-{slug(customer.id)[:24]}".strip("-")
    return Facts(
        row=row,
        customer=customer,
        invoices=invoices,
        payments=payments,
        credits=credits,
        actions=tx.outbox.of(row.id, customer_id=customer.id),
        events=events,
        holds=sorted(holds.values(), key=lambda h: h.id),
        plans=[p for p in tx.plans.active(row.id) if p.customer_id == customer.id],
        now=tx.now,
        zone=zone,
        slug=mine,
    )


# -- the pack's contents (pure) ----------------------------------------------------------------
def _money(amount: Decimal) -> str:
    return f"{amount:.2f}"


def _bucket_key(index: int) -> str:
    return BUCKETS[index][0].replace("–", "-").lower()


def _applied(facts: Facts) -> dict[str, list[dict[str, Any]]]:
    """Each invoice's payments and credits, as the ledger applied them."""
    out: dict[str, list[dict[str, Any]]] = {}
    for kind, docs in (("payment", facts.payments), ("credit", facts.credits)):
        for doc in docs:
            for a in doc.allocations:
                out.setdefault(a.invoice_id, []).append(
                    {
                        "kind": kind,
                        "id": doc.id,
                        "number": doc.number if isinstance(doc, Credit) else None,
                        "date": doc.date.isoformat(),
                        "amount": _money(a.amount),
                        "currency": doc.currency,
                        "status": doc.status.value,
                    }
                )
    return out


def _sum(applied: Iterable[Mapping[str, Any]]) -> Decimal:
    return sum((Decimal(a["amount"]) for a in applied), Decimal(0))


def _invoice(invoice: Invoice, applied: list[dict[str, Any]], today: date) -> dict[str, Any]:
    live = [a for a in applied if a["status"] == DocStatus.ACTIVE.value]
    overdue = (today - invoice.due_date).days if is_open(invoice) else None
    return {
        "invoice_id": invoice.id,
        "number": invoice.number or "",
        "issue_date": invoice.issue_date.isoformat(),
        "due_date": invoice.due_date.isoformat(),
        "currency": invoice.currency,
        "total": _money(invoice.total),
        "settled": _money(invoice.total - invoice.balance),
        "balance": _money(invoice.balance),
        "paid": _money(_sum(a for a in live if a["kind"] == "payment")),
        "credited": _money(_sum(a for a in live if a["kind"] == "credit")),
        "status": invoice.status.value,
        "sent": invoice.sent,
        "expected_date": invoice.expected_date.isoformat() if invoice.expected_date else "",
        "days_overdue": overdue,
        "bucket": _bucket_key(bucket_index(overdue)) if overdue is not None else "",
        "allocations": applied,
    }


def _subject(event: Event, numbers: Mapping[str, str]) -> str:
    if event.entity is Entity.INVOICE:
        return f"invoice {numbers.get(event.external_id or '', event.external_id)}"
    if event.entity is Entity.CUSTOMER:
        return "customer"
    return f"{event.entity.value} {event.external_id}"


def _words(event: Event, d: Mapping[str, Any], row: OutboxRow | None) -> str:
    from arsync.collecting import event_words

    if event.action.startswith("action_"):
        kind = str(d.get("kind") or (row.kind if row else "action"))
        stage = row.stage_title if row else str(d.get("stage", ""))
        label = f"{kind} · {stage}" if stage else kind
        what = event.action.removeprefix("action_").replace("_", " ")
        if event.action == "action_enqueued":
            what = "planned" + (
                f", waits for approval ({d['approval']})" if d.get("approval") else ""
            )
        reason = d.get("reason")
        return f"{label}: {what}" + (f": {reason}" if reason else "")
    if event.action == "call_outcome":
        said = d.get("said") or d.get("outcome")
        return f"call: {said}" + (f" (recorded by {d['by']})" if d.get("by") else "")
    if event.action == HANDOVER:
        return f"handed over to {d.get('agency')} by {d.get('by')}: {d.get('reason')}"
    return event_words(event)


def _category(event: Event) -> str:
    action = event.action
    if action.startswith("action_"):
        return {
            "action_enqueued": "planned",
            "action_done": "done",
            "action_resolved": "resolved",
            "action_skipped": "skipped",
            "action_rejected": "rejected",
            "action_approved": "approved",
            "action_released": "waiting",
        }.get(action, "failed")
    if action.startswith("hold_"):
        return "hold"
    if action.startswith("plan_"):
        return "plan"
    if action.startswith("stage_"):
        return "stage"
    if action == "call_outcome":
        return "call"
    if action == HANDOVER:
        return HANDOVER
    return "ledger" if action in ("created", "changed", "deleted", "restored") else "other"


def _trail(facts: Facts) -> list[dict[str, Any]]:
    """Every event of the customer and its documents in the order it happened, with what the
    outbox row of an action adds: its stage, and for one done the platform's evidence."""
    actions = {r.id: r for r in facts.actions}
    numbers = {i.id: i.number or i.id for i in facts.invoices}
    out: list[dict[str, Any]] = []
    for event in facts.events:
        if event.action in QUIET:
            continue
        d: Mapping[str, Any] = event.detail if isinstance(event.detail, dict) else {}
        row = actions.get(str(d.get("action", ""))) if event.action.startswith("action_") else None
        entry: dict[str, Any] = {
            "at_utc": event.at.isoformat(),
            "at_local": event.at.astimezone(facts.zone).strftime("%Y-%m-%d %H:%M"),
            "subject": _subject(event, numbers),
            "what": _category(event),
            "event": event.action,
            "channel": row.kind if row else str(d.get("kind", "")),
            "stage": row.stage_title if row else str(d.get("stage", "") or ""),
            "to": "",
            "platform_at": "",
            "evidence": "",
            "text": "",
            "by": str(d.get("decided_by") or d.get("by") or ""),
            "reason": str(d.get("reason") or ""),
            "action": str(d.get("action", "")) if event.action.startswith("action_") else "",
            "words": _words(event, d, row),
        }
        performed = event.action == "action_done" or (
            event.action == "action_resolved" and d.get("reason_code") == "person_sent"
        )
        if row is not None and performed and isinstance(row.result, dict):
            result = row.result
            evidence = result.get("evidence")
            entry.update(
                to=str(result.get("to") or ""),
                platform_at=str(result.get("at") or ""),
                evidence=_evidence(evidence),
                text=str(result.get("note") or ""),
            )
        out.append(entry)
    return out


def _evidence(evidence: Any) -> str:
    """The platform's evidence of a write as one cell: its words, or its record as JSON."""
    if evidence is None:
        return ""
    return evidence if isinstance(evidence, str) else json.dumps(evidence, sort_keys=True)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON: {type(value).__name__}")


def document(facts: Facts, *, agency: str, reason: str, by: str) -> dict[str, Any]:
    """Everything the pack says, as plain JSON values: pack.json itself; the CSV files and the
    page are made from it, so they cannot disagree."""
    today = facts.today
    applied = _applied(facts)
    invoices = [_invoice(i, applied.get(i.id, []), today) for i in facts.invoices]
    open_items = [
        {k: inv[k] for k in STATEMENT_COLUMNS}
        for inv in invoices
        if inv["days_overdue"] is not None
    ]
    aging = [
        {
            "currency": r.currency,
            **{_bucket_key(n): _money(amount) for n, amount in enumerate(r.buckets)},
            "total": _money(r.total),
            "invoices": r.count,
        }
        for r in age(
            (OpenItem(i.due_date, i.balance, i.currency) for i in facts.open_invoices()), today
        )
    ]
    c = facts.customer
    row = facts.row
    return {
        "format": FORMAT,
        "built_at": facts.now.isoformat(),
        "as_of": today.isoformat(),
        "timezone": facts.zone.key,
        "firm": {
            "company": row.company_name or row.name,
            "connector": row.name,
            "platform": PLATFORM_NAMES.get(row.platform, row.platform),
            "country": row.country,
        },
        "handover": {"agency": agency, "reason": reason, "by": by},
        "customer": {
            "id": c.id,
            "name": c.name,
            "email": c.email,
            "phone": c.phone,
            "country": c.country,
            "region": c.region,
            "currency": c.currency,
            "active": c.active,
        },
        "statement": {
            "open_items": open_items,
            "totals": {a["currency"]: a["total"] for a in aging},
        },
        "aging": aging,
        "invoices": invoices,
        "payments": [
            {
                "id": p.id,
                "date": p.date.isoformat(),
                "currency": p.currency,
                "amount": _money(p.amount),
                "unapplied": _money(p.unapplied),
                "status": p.status.value,
                "allocations": [
                    {"invoice_id": a.invoice_id, "amount": _money(a.amount)} for a in p.allocations
                ],
            }
            for p in facts.payments
        ],
        "credits": [
            {
                "id": cr.id,
                "number": cr.number,
                "date": cr.date.isoformat(),
                "currency": cr.currency,
                "total": _money(cr.total),
                "remaining": _money(cr.remaining),
                "status": cr.status.value,
                "allocations": [
                    {"invoice_id": a.invoice_id, "amount": _money(a.amount)} for a in cr.allocations
                ],
            }
            for cr in facts.credits
        ],
        "holds": [
            {
                "id": h.id,
                "kind": h.kind.value,
                "invoice_id": h.invoice_id,
                "until": h.until,
                "amount": h.amount,
                "currency": h.currency,
                "reason": h.reason,
                "source": h.source.value,
                "set_by": h.set_by,
                "set_at": h.set_at,
                "state": h.state.value,
                "ended_by": h.ended_by,
                "ended_at": h.ended_at,
                "end_reason": h.end_reason,
            }
            for h in facts.holds
        ],
        "plans": [
            {
                "id": p.id,
                "invoice_ids": list(p.invoice_ids),
                "currency": p.currency,
                "instalments": [{"due": i.due, "amount": _money(i.amount)} for i in p.instalments],
                "reason": p.reason,
                "set_by": p.set_by,
                "set_at": p.set_at,
                "state": p.state.value,
            }
            for p in facts.plans
        ],
        "trail": _trail(facts),
        "actions": [
            {
                "id": r.id,
                "kind": r.kind,
                "invoice_id": r.invoice_id,
                "stage": r.stage,
                "stage_title": r.stage_title,
                "tone": r.tone,
                "amount": _money(r.amount),
                "currency": r.currency,
                "at": r.at,
                "state": r.state.value,
                "approval": r.approval,
                "decided_by": r.decided_by,
                "decided_at": r.decided_at,
                "sent_at": r.sent_at,
                "done_at": r.done_at,
                "reason": r.reason,
                "result": r.result,
            }
            for r in facts.actions
        ],
        "events": [
            {
                "id": e.id,
                "at": e.at,
                "entity": e.entity.value,
                "external_id": e.external_id,
                "action": e.action,
                "detail": e.detail,
            }
            for e in facts.events
        ],
    }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        value = "; ".join(
            f"{a['kind']} {a.get('number') or a['id']} on {a['date']}: "
            f"{a['amount']} {a['currency']}"
            + ("" if a["status"] == DocStatus.ACTIVE.value else f" ({a['status']})")
            for a in value
        )
    text = str(value)
    # a name or a note from the ledger must never run as a spreadsheet formula
    return "'" + text if text.startswith(FORMULA) and not _number(text) else text


def _number(text: str) -> bool:
    return re.fullmatch(r"-?\d+(\.\d+)?", text) is not None


def _csv(columns: Sequence[str], rows: Iterable[Mapping[str, Any]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in columns])
    return out.getvalue().encode()


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Hand-over: {{ d.customer.name }} · {{ d.as_of }}</title>
<style>
body { font: 10.5pt/1.4 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
       color: #111; margin: 2em auto; max-width: 60em; padding: 0 1em; }
h1 { font-size: 1.5em; margin: 0 0 .2em; }
h2 { font-size: 1.15em; margin: 1.6em 0 .4em; border-bottom: 1px solid #999; }
table { border-collapse: collapse; width: 100%; margin: .4em 0; }
th, td { border: 1px solid #bbb; padding: .2em .4em; text-align: left; vertical-align: top; }
th { background: #eee; }
td.n, th.n { text-align: right; white-space: nowrap; }
.meta td:first-child { width: 12em; font-weight: 600; }
.small { font-size: .85em; color: #444; }
.evidence { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: .8em;
            word-break: break-all; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { margin: 0; max-width: none; padding: 0; font-size: 9pt; }
  h2 { break-after: avoid; }
  tr { break-inside: avoid; }
  thead { display: table-header-group; }
  th { background: #eee !important; -webkit-print-color-adjust: exact;
       print-color-adjust: exact; }
}
</style>
</head>
<body>
<h1>Hand-over to {{ d.handover.agency }}: {{ d.customer.name }}</h1>
<p class="small">Evidence pack built by arsync on {{ d.as_of }} ({{ d.timezone }}) for
{{ d.firm.company }} ({{ d.firm.platform }}). Every file of this folder is listed with its
SHA-256 in MANIFEST.sha256 (check with <code>sha256sum -c MANIFEST.sha256</code>).</p>

<table class="meta">
<tr><td>Customer</td><td>{{ d.customer.name }}</td></tr>
<tr><td>Email</td><td>{{ d.customer.email or "none on file" }}</td></tr>
<tr><td>Phone</td><td>{{ d.customer.phone or "none on file" }}</td></tr>
<tr><td>Country / region</td><td>{{ d.customer.country or "" }}{% if d.customer.region %} /
{{ d.customer.region }}{% endif %}</td></tr>
<tr><td>Handed over by</td><td>{{ d.handover.by }}</td></tr>
<tr><td>Reason</td><td>{{ d.handover.reason }}</td></tr>
</table>

<h2>Statement of account as of {{ d.as_of }}</h2>
<table>
<thead><tr><th>Invoice</th><th>Issued</th><th>Due</th><th class="n">Days overdue</th>
<th class="n">Total</th><th class="n">Paid or credited</th><th class="n">Balance</th>
<th>Currency</th></tr></thead>
<tbody>
{% for i in d.statement.open_items %}
<tr><td>{{ i.number or i.invoice_id }}</td><td>{{ i.issue_date }}</td><td>{{ i.due_date }}</td>
<td class="n">{% if i.days_overdue > 0 %}{{ i.days_overdue }}{% elif i.days_overdue == 0
%}due today{% else %}due in {{ -i.days_overdue }} days{% endif %}</td>
<td class="n">{{ i.total }}</td><td class="n">{{ i.settled }}</td>
<td class="n">{{ i.balance }}</td><td>{{ i.currency }}</td></tr>
{% endfor %}
</tbody>
</table>

<h2>Aging</h2>
<table>
<thead><tr><th>Currency</th>{% for b in buckets %}<th class="n">{{ b }}</th>{% endfor %}
<th class="n">Total</th></tr></thead>
<tbody>
{% for a in d.aging %}
<tr><td>{{ a.currency }}</td>{% for k in keys %}<td class="n">{{ a[k] }}</td>{% endfor %}
<td class="n">{{ a.total }}</td></tr>
{% endfor %}
</tbody>
</table>

<h2>Every invoice</h2>
<table>
<thead><tr><th>Invoice</th><th>Issued</th><th>Due</th><th>Status</th><th class="n">Total</th>
<th class="n">Balance</th><th>Currency</th><th>Payments and credits applied</th></tr></thead>
<tbody>
{% for i in d.invoices %}
<tr><td>{{ i.number or i.invoice_id }}</td><td>{{ i.issue_date }}</td><td>{{ i.due_date }}</td>
<td>{{ i.status }}</td><td class="n">{{ i.total }}</td><td class="n">{{ i.balance }}</td>
<td>{{ i.currency }}</td>
<td>{% for a in i.allocations %}{{ a.kind }} {{ a.number or a.id }} on {{ a.date }}:
{{ a.amount }}{% if a.status != "active" %} ({{ a.status }}){% endif %}<br>{% endfor %}</td></tr>
{% endfor %}
</tbody>
</table>

<h2>Paper trail</h2>
<table>
<thead><tr><th>When ({{ d.timezone }})</th><th>About</th><th>What happened</th>
<th>Evidence</th></tr></thead>
<tbody>
{% for t in d.trail %}
<tr><td>{{ t.at_local }}</td><td>{{ t.subject }}</td>
<td>{{ t.words }}{% if t.text %}<br><em>{{ t.text }}</em>{% endif %}</td>
<td>{% if t.to %}to {{ t.to }}{% endif %}{% if t.platform_at %}<br>at {{ t.platform_at }}{% endif %}
{% if t.evidence %}<div class="evidence">{{ t.evidence }}</div>{% endif %}</td></tr>
{% endfor %}
</tbody>
</table>
</body>
</html>
"""


def _page(doc: Mapping[str, Any]) -> bytes:
    # every value comes from the ledger or a person: escaped, whatever it holds
    env = Environment(autoescape=True, undefined=StrictUndefined, keep_trailing_newline=True)
    template = env.from_string(_PAGE)
    return template.render(
        d=doc,
        buckets=[b[0] for b in BUCKETS],
        keys=[_bucket_key(n) for n in range(len(BUCKETS))],
    ).encode()


def contents(doc: Mapping[str, Any]) -> dict[str, bytes]:
    """The pack's files (all but the manifest), by name."""
    aging_columns = ("currency", *(_bucket_key(n) for n in range(len(BUCKETS))), "total")
    return {
        "statement.csv": _csv(STATEMENT_COLUMNS, doc["statement"]["open_items"]),
        "aging.csv": _csv(aging_columns, doc["aging"]),
        "invoices.csv": _csv(INVOICE_COLUMNS, doc["invoices"]),
        "trail.csv": _csv(TRAIL_COLUMNS, doc["trail"]),
        "pack.json": (
            json.dumps(doc, indent=2, ensure_ascii=False, default=_plain) + "\n"
        ).encode(),
        "index.html": _page(json.loads(json.dumps(doc, default=_plain))),
    }


def manifest(files: Mapping[str, bytes]) -> bytes:
    """`sha256sum` lines for every file, by name."""
    return "".join(
        f"{hashlib.sha256(data).hexdigest()}  {name}\n" for name, data in sorted(files.items())
    ).encode()


# -- the folder ----------------------------------------------------------------------------------
def _write(path: Path, data: bytes) -> None:
    """One file of a pack, on disk before the pack is renamed into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())


def _sync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def verify(path: Path) -> list[str]:
    """What is wrong with the pack at `path` (empty: every file matches its manifest)."""
    try:
        lines = (path / MANIFEST).read_text().splitlines()
    except OSError as err:
        return [f"no readable {MANIFEST}: {err.strerror or err}"]
    problems: list[str] = []
    listed: set[str] = set()
    for line in lines:
        digest, _, name = line.partition("  ")
        listed.add(name)
        try:
            found = hashlib.sha256((path / name).read_bytes()).hexdigest()
        except OSError:
            problems.append(f"{name} is missing")
            continue
        if found != digest:
            problems.append(f"{name} does not match its SHA-256")
    extra = sorted(p.name for p in path.iterdir() if p.name not in listed | {MANIFEST})
    problems += [f"{name} is not in the manifest" for name in extra]
    return problems


def write_pack(parent: Path, name: str, files: Mapping[str, bytes]) -> tuple[Path, str]:
    """Write the files and their manifest into `parent/name`, whole or not at all: into a hidden
    folder beside it, renamed into place once every file is on disk. (path, manifest digest)."""
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = parent / name
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=PARTIAL, dir=parent))
    try:
        for file, data in files.items():
            _write(work / file, data)
        listing = manifest(files)
        _write(work / MANIFEST, listing)
        _sync_dir(work)
        # a folder's rename fails when the target exists and is not empty: never overwritten
        os.rename(work, final)
        _sync_dir(parent)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return final, hashlib.sha256(listing).hexdigest()


def _recorded_packs(facts: Facts) -> set[str]:
    return {
        str(e.detail.get("pack"))
        for e in facts.events
        if e.action == HANDOVER and isinstance(e.detail, dict)
    }


def _place(parent: Path, facts: Facts, files: Mapping[str, bytes]) -> tuple[Path, str, bool]:
    """Where the pack goes and its digest; (path, digest, reused). A folder left by a hand-over
    that stopped before recording is taken as it is when whole; one a recorded hand-over used
    is kept, and this pack takes the next name."""
    # a killed hand-over of this customer leaves its hidden folder behind: clear it (the
    # caller holds the customer's lock, so no other process is writing one now)
    base = f"{facts.slug}-{facts.today.isoformat()}"
    for stale in parent.glob(f".{base}*{PARTIAL}") if parent.is_dir() else ():
        shutil.rmtree(stale, ignore_errors=True)
    recorded = _recorded_packs(facts)
    for n in range(1, 100):
        name = base if n == 1 else f"{base}-{n}"
        final = parent / name
        if not final.exists():
            path, digest = write_pack(parent, name, files)
            return path, digest, False
        if str(final) in recorded:
            continue
        problems = verify(final)
        owner = _owner(final)
        if problems or owner != facts.customer.id:
            why = "; ".join(problems) if problems else f"it is the pack of customer {owner}"
            raise PackFailed(
                f"{final} is in the way and not this customer's whole pack ({why}): move it "
                "aside, then hand over again"
            )
        return final, hashlib.sha256((final / MANIFEST).read_bytes()).hexdigest(), True
    raise PackFailed(f"too many hand-overs of {facts.customer.name} today under {parent}")


def _owner(path: Path) -> str | None:
    try:
        doc = json.loads((path / "pack.json").read_text())
    except (OSError, ValueError):
        return None
    customer = doc.get("customer") if isinstance(doc, dict) else None
    return str(customer.get("id")) if isinstance(customer, dict) else None


# -- the hand-over -------------------------------------------------------------------------------
def perform(
    store: Store,
    row: ConnectorRow,
    customer_id: str,
    *,
    zone: ZoneInfo,
    agency: str,
    by: str,
    reason: str,
    root: Path,
    action: str | None = None,
    then: Callable[[Tx, HandedOver], None] | None = None,
) -> HandedOver:
    """Hand customer `customer_id` over to `agency`: the pack under `root`, then the event, the
    pause, the skipped contacts and the notes in one transaction (with `then`, the caller's own
    record of it). BadInput when there is nothing to hand over or it is handed over already;
    PackFailed when the pack cannot be written (nothing is recorded then)."""
    from arsync.collecting import BadInput

    with store.exclusive(f"handover:{row.name}:{customer_id}"):
        with store.reading() as tx:
            found = tx.records.by_ids(row.id, Kind.CUSTOMER, [customer_id]).get(customer_id)
            if not isinstance(found, Customer):
                raise BadInput(f"no customer {customer_id!r} in {row.name}")
            earlier = handed_over(tx, row, customer_id)
            if earlier is not None:
                d = earlier.detail
                raise BadInput(
                    f"{found.name} was handed over to {d.get('agency')} on {d.get('day')} "
                    f"(pack {d.get('pack')}); `arsync resume` the customer to hand over again"
                )
            facts = gather(tx, row, found, zone)
        owed = facts.open_invoices()
        if not owed:
            raise BadInput(f"{found.name} owes nothing: there is nothing to hand over")
        doc = document(facts, agency=agency, reason=reason, by=by)
        try:
            path, digest, reused = _place(root / slug(row.name), facts, contents(doc))
        except OSError as err:
            raise PackFailed(
                f"the evidence pack could not be written under {root}: {err}; nothing was recorded"
            ) from err
        day = facts.today
        with store.transaction() as tx:
            hold = tx.holds.add(
                row.id,
                HoldKind.PAUSE,
                customer_id=found.id,
                reason=f"handed over to {agency} on {day:%-d %b %Y}",
                set_by=by,
            )
            tx.events.append(
                row.id,
                Entity.CUSTOMER,
                HANDOVER,
                external_id=found.id,
                detail={
                    "by": by,
                    "at": tx.now.isoformat(),
                    "day": day.isoformat(),
                    "agency": agency,
                    "reason": reason,
                    "pack": str(path),
                    "manifest_sha256": digest,
                    "reused": reused,
                    "hold": hold.id,
                    "invoices": [i.id for i in owed],
                    **({"action": action} if action else {}),
                },
            )
            skipped = 0
            for pending in tx.outbox.of(
                row.id, customer_id=found.id, states=NOT_BEGUN, kinds=CONTACTS
            ):
                if pending.id != action and tx.outbox.move(
                    pending,
                    S.SKIPPED,
                    reason=f"the customer was handed over to {agency}",
                    reason_code="handed_over",
                ):
                    skipped += 1
            notes: list[str] = []
            for invoice in owed:
                notes += record_in_ledger(
                    tx,
                    row,
                    invoice,
                    topic="handover",
                    title="hand-over",
                    words=f"handed over to {agency} for collection (recorded by {by})",
                    ref=f"hold-{hold.id}",
                    facts={"event": "handover", "agency": agency},
                )
            done = HandedOver(
                connector=row.name,
                customer=found,
                agency=agency,
                by=by,
                reason=reason,
                day=day,
                path=path,
                digest=digest,
                hold=hold.id,
                invoices=tuple(owed),
                notes=tuple(notes),
                skipped=skipped,
                reused=reused,
            )
            if then is not None:
                then(tx, done)
        return done


def handover_command(
    config: Config,
    customer: str,
    agency: str | None,
    connector: str | None,
    reason: str | None,
    clock: Clock | None = None,
) -> str:
    """`arsync handover CUSTOMER`: a person hands a customer over; what happened, in words."""
    from arsync.collecting import BadInput, Collecting, find, firm_of, who

    named = (agency or "").strip()
    if agency is not None and not named:
        raise BadInput("--agency: name the agency (or leave it out)")
    if len(named) > 200:
        raise BadInput("--agency: at most 200 characters")
    said = (reason or "").strip()
    if len(said) > 500:
        raise BadInput("--reason: at most 500 characters")
    with Collecting(config, clock) as collecting:
        store = collecting.store
        with store.reading() as tx:
            found = find(tx, config, customer, connector)
        if found.customer is None:
            raise BadInput(
                f"{customer!r} is an invoice; a hand-over is of a customer: name its customer"
            )
        firm = firm_of(found.connector, found.row)
        chosen = named or agency_of(config.policy_of(found.connector))
        root = pack_root(store, config.settings.home)
        assert root is not None  # with a home, there is always a place
        done = perform(
            store,
            found.row,
            found.customer.id,
            zone=firm.zone,
            agency=chosen,
            by=who(),
            reason=said or "handed over by hand",
            root=root,
        )
    return said_of(done)


def said_of(done: HandedOver) -> str:
    """A hand-over in a few lines, for the person who ran it."""
    totals: dict[str, Decimal] = {}
    for invoice in done.invoices:
        totals[invoice.currency] = totals.get(invoice.currency, Decimal(0)) + invoice.balance
    owed = ", ".join(f"{amount:,.2f} {currency}" for currency, amount in sorted(totals.items()))
    lines = [
        f"{done.customer.name} handed over to {done.agency}: {len(done.invoices)} open "
        f"invoice(s), {owed}",
        f"  evidence pack: {done.path}"
        + (" (written earlier today and found whole: reused)" if done.reused else ""),
        f"  {MANIFEST} sha256 {done.digest}",
        f"  arsync no longer chases {done.customer.name} (`arsync resume` to undo); "
        f"{len(done.notes)} note(s) for the ledger go with the next `arsync run --once`",
    ]
    if done.skipped:
        lines.append(f"  {done.skipped} contact(s) not yet made were called off")
    return "\n".join(lines)


__all__ = [
    "DEFAULT_AGENCY",
    "HANDOVER",
    "MANIFEST",
    "HandedOver",
    "PackFailed",
    "agency_of",
    "contents",
    "document",
    "handover_command",
    "pack_root",
    "perform",
    "verify",
    "write_pack",
]
