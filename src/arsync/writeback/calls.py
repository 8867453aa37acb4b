"""`arsync calls` and `arsync called`: today's calls, one per customer, and what came of them.

A call task is an outbox row of kind "call" in state done (the dispatcher opened it for a
person at the firm) whose outcome nobody has recorded yet. The list shows one call per
customer, however many invoices it owes: its name and phone, what it owes by currency, how late
its oldest invoice is, what has happened so far (reminders, notes, earlier calls, holds) and a
short script in the tone of the firmest stage that asked for the call.

`arsync called` records what came of the call as a "call_outcome" event on the customer (who,
when, the outcome, the reason, the call tasks it closes) and turns it into the matching hold
through `Collecting` (a promise, a dispute, a payment plan), whose own note goes on each invoice
it holds. Every other invoice the call was about gets a dated note of its own, enqueued in the
outbox under an id derived from the event, so that the next `arsync run --once` writes it once.

An unanswered call (`--outcome no-answer`) keeps its task open: it is back on the list from the
firm's next business day, with the earlier attempts in its history, until someone answers or
the invoices are paid or held.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from arsync.collecting import (
    BadInput,
    Collecting,
    _customer,
    _not_past,
    _reason,
    _row,
    find,
    firm_of,
    parse_amount,
    parse_date,
    who,
)
from arsync.config import Config, ConnectorConfig
from arsync.domain import Customer, Hold, HoldKind, Invoice, Kind, Money, PaymentPlan
from arsync.escalation.calendar import Calendar
from arsync.escalation.planner import action_id
from arsync.escalation.policy import LatePayment, Tone
from arsync.store.models import ConnectorRow, Event
from arsync.store.outbox import OutboxRow
from arsync.store.states import Entity, OutboxState
from arsync.store.unit import Tx
from arsync.writeback.history import CALL_OUTCOME, Entry, customer_entries
from arsync.writeback.ledger import RECORDED
from arsync.writeback.words import CallFacts, CallOutcome, OverdueInvoice, Words, search_path

S = OutboxState
#: the outbox's stage of an outcome's notes: what a person recorded (writeback/ledger.py), so
#: the dispatcher writes the note from the facts the row carries, whatever holds the invoice
OUTCOME_STAGE = f"{RECORDED}call"
#: how the notes of an outcome name their stage (the note reads "call: reached …")
OUTCOME_TITLE = "call"
#: the longest outcome the note says: Xero keeps 250 UTF-16 units of a note, with the date,
#: the balance and the reference around these words
SAID_MAX = 120


class Outcome(StrEnum):
    """What came of a call."""

    REACHED = "reached"
    NO_ANSWER = "no-answer"
    PROMISED = "promised"
    DISPUTED = "disputed"
    PLAN = "plan"


# -- pure parts ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Recorded:
    """An outcome recorded for a call task."""

    outcome: str
    at: datetime
    by: str
    #: an unanswered call is on the list again from this day
    retry_from: date | None = None


def outcomes_of(events: Iterable[Event]) -> dict[str, list[Recorded]]:
    """The outcomes recorded for each call task (by its action id), oldest first."""
    out: dict[str, list[Recorded]] = {}
    for e in sorted(events, key=lambda e: (e.at, e.id)):
        d = e.detail if isinstance(e.detail, dict) else {}
        if e.action != CALL_OUTCOME:
            continue
        retry = d.get("retry_from")
        recorded = Recorded(
            str(d.get("outcome")),
            e.at,
            str(d.get("by", "")),
            date.fromisoformat(retry) if retry else None,
        )
        for call in d.get("calls", ()):
            out.setdefault(str(call), []).append(recorded)
    return out


def open_tasks(
    rows: Iterable[OutboxRow], recorded: Mapping[str, Sequence[Recorded]], today: date | None
) -> list[OutboxRow]:
    """Call tasks (done call rows) whose outcome is not recorded, or was no answer. With
    `today`, an unanswered one only from its day of retry: the list; without, at once: a person
    who tries again the same afternoon records that call too."""
    out: list[OutboxRow] = []
    for row in rows:
        if row.kind != "call" or row.state is not S.DONE:
            continue
        said = recorded.get(row.id, ())
        if not said:
            out.append(row)
            continue
        last = said[-1]
        if last.outcome != Outcome.NO_ANSWER.value:
            continue
        if today is None or last.retry_from is None or last.retry_from <= today:
            out.append(row)
    return out


def by_customer(rows: Iterable[OutboxRow]) -> dict[str, list[OutboxRow]]:
    """Tasks grouped per customer: one call each, however many invoices; customers in the order
    of their first task, each customer's tasks oldest first."""
    out: dict[str, list[OutboxRow]] = {}
    for row in sorted(rows, key=lambda r: (r.at, r.id)):
        out.setdefault(row.customer_id, []).append(row)
    return out


def firmest(rows: Iterable[OutboxRow]) -> OutboxRow:
    """The task whose stage speaks firmest (the latest of those): the call's tone and stage."""
    chosen = sorted(rows, key=lambda r: (_tone(r.tone).rank, r.at))
    return chosen[-1]


def _tone(value: str) -> Tone:
    try:
        return Tone(value)
    except ValueError:
        return Tone.POLITE


def owed(invoices: Iterable[Invoice]) -> dict[str, Decimal]:
    """What is owed, by currency."""
    totals: dict[str, Decimal] = {}
    for i in invoices:
        if i.balance > 0:
            totals[i.currency] = totals.get(i.currency, Decimal(0)) + i.balance
    return dict(sorted(totals.items()))


def owed_text(totals: Mapping[str, Decimal]) -> str:
    return " + ".join(str(Money(v, c)) for c, v in totals.items()) or "nothing"


def next_business_day(today: date, calendar: Calendar) -> date:
    day = today + timedelta(days=1)
    for _ in range(366):
        if calendar.business_day(day):
            return day
        day += timedelta(days=1)
    return today + timedelta(days=1)


def short_day(day: date, today: date) -> str:
    """ "15 Jan", with the year only when it is not this one."""
    return f"{day.day} {day:%b}" + (f" {day.year}" if day.year != today.year else "")


def outcome_words(
    outcome: Outcome,
    customer: str,
    *,
    today: date,
    phone: str | None = None,
    promised: str | None = None,
    on: date | None = None,
    invoice: str | None = None,
    plan: str | None = None,
    reason: str | None = None,
) -> str:
    """What a note says of a call ("reached Ada Lovelace, promised 480.00 GBP by 15 Jan"), at
    most SAID_MAX characters."""
    if outcome is Outcome.NO_ANSWER:
        said = f"no answer from {customer}" + (f" on {phone}" if phone else "")
    elif outcome is Outcome.PROMISED:
        said = f"reached {customer}, promised {promised} by {short_day(on or today, today)}"
    elif outcome is Outcome.DISPUTED:
        said = f"reached {customer}, disputes invoice {invoice}" + (f": {reason}" if reason else "")
    elif outcome is Outcome.PLAN:
        said = f"reached {customer}, payment plan agreed: {plan}"
    else:
        said = f"reached {customer}" + (f": {reason}" if reason else "")
    said = " ".join(said.split())
    return said if len(said) <= SAID_MAX else said[: SAID_MAX - 1].rstrip() + "…"


def _with_hint(script: str, customer: str) -> str:
    """The script, and how to record the call unless the script says it (a firm's own)."""
    return script if "arsync called" in script else script + "\n\n" + record_hint(customer)


def record_hint(customer: str) -> str:
    """The line after a call's script: how to record what came of it."""
    return (
        f'Then record the call: arsync called "{customer}" --outcome reached | no-answer | '
        "promised --on DATE | disputed --reason WHAT | plan --instalments DATE:AMOUNT,... "
        "(this records the promise, dispute or plan too)"
    )


# -- the list ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OwedInvoice:
    id: str
    number: str
    due: date
    balance: Decimal
    currency: str
    days_overdue: int


@dataclass
class Call:
    """One customer to call today."""

    customer_id: str
    customer: str
    phone: str | None
    email: str | None
    owed: dict[str, Decimal]
    oldest_days: int
    oldest_invoice: str
    stage: str
    tone: Tone
    #: the call tasks this call answers (their action ids), oldest first
    tasks: list[str]
    #: the invoices the tasks are about
    about: list[str]
    invoices: list[OwedInvoice]
    #: earlier calls nobody answered
    tries: int
    #: (when, words), oldest first
    history: list[tuple[datetime, str]]
    script: str


@dataclass
class CallList:
    """One connector's calls today."""

    connector: str
    company: str
    today: date
    timezone: str
    calls: list[Call] = field(default_factory=list)
    #: call tasks left off: their invoices were paid or held since (customers, and why)
    left_off: list[str] = field(default_factory=list)
    #: unanswered calls waiting for their day of retry (customer names)
    later: list[str] = field(default_factory=list)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


def call_list(collecting: Collecting, names: Sequence[str]) -> list[CallList]:
    """Today's calls of each chosen connector (all enabled and connected ones by default)."""
    config = collecting.config
    chosen = _chosen(config, names)
    out: list[CallList] = []
    for connector in chosen:
        with collecting.store.reading() as tx:
            row = tx.connectors.by_name(connector.name)
            if not names and (row is None or not row.linked):
                continue
            row = _row(tx, connector)
            policy = config.policy_of(connector)
            # the firm's own call scripts first (a connector's, the policy's), then arsync's
            words = Words.load(
                search_path(config.home, connector=connector.name, policy=policy),
                home=config.home,
            )
            out.append(_list(tx, connector, row, words, policy.late_payment))
    return out


def _chosen(config: Config, names: Sequence[str]) -> list[ConnectorConfig]:
    if names:
        return [config.connector(n) for n in dict.fromkeys(names)]
    return [c for _, c in sorted(config.connectors.items()) if c.enabled]


def _list(
    tx: Tx,
    connector: ConnectorConfig,
    row: ConnectorRow,
    words: Words,
    terms: LatePayment | None,
) -> CallList:
    firm = firm_of(connector, row)
    today = tx.now.astimezone(firm.zone).date()
    made = CallList(
        connector.name, row.company_name or connector.display_name, today, firm.zone.key
    )
    rows = tx.outbox.of(row.id, kinds=["call"], states=[S.DONE])
    recorded = outcomes_of(tx.events.of(row.id, entity=Entity.CUSTOMER, actions=[CALL_OUTCOME]))
    due = open_tasks(rows, recorded, today)
    waiting = {r.customer_id for r in open_tasks(rows, recorded, None)} - {
        r.customer_id for r in due
    }
    groups = by_customer(due)
    ids = set(groups) | waiting
    customers = {
        k: v
        for k, v in tx.records.by_ids(row.id, Kind.CUSTOMER, ids).items()
        if isinstance(v, Customer)
    }
    made.later = sorted(customers[c].name if c in customers else c for c in waiting)
    open_: dict[str, list[Invoice]] = {}
    for inv in tx.records.open_invoices(row.id):
        if inv.customer_id in groups:
            open_.setdefault(inv.customer_id, []).append(inv)
    holds = tx.holds.active(row.id)
    plans = tx.plans.active(row.id)
    for customer_id, tasks in groups.items():
        customer = customers.get(customer_id)
        name = customer.name if customer else customer_id
        invoices = sorted(open_.get(customer_id, []), key=lambda i: (i.due_date, i.number or i.id))
        live = [t for t in tasks if why_moot(t, invoices, holds, plans) is None]
        if not live:
            made.left_off.append(f"{name}: {why_moot(tasks[-1], invoices, holds, plans)}")
            continue
        made.calls.append(
            _call(tx, row, made, customer_id, customer, live, invoices, recorded, words, terms)
        )
    return made


def why_moot(
    task: OutboxRow,
    invoices: Sequence[Invoice],
    holds: Sequence[Hold],
    plans: Sequence[PaymentPlan],
) -> str | None:
    """Why a call task no longer calls for a call (its invoice paid, or held since), or None."""
    if task.invoice_id is None:
        return None
    if task.invoice_id not in {i.id for i in invoices}:
        return "paid or closed since the call task was opened"
    for h in holds:
        if h.invoice_id == task.invoice_id or (
            h.invoice_id is None and h.customer_id == task.customer_id
        ):
            return f"held since ({h.kind.value}: {h.reason})"
    for p in plans:
        if task.invoice_id in p.invoice_ids:
            return f"in payment plan {p.id}"
    return None


def _call(
    tx: Tx,
    row: ConnectorRow,
    made: CallList,
    customer_id: str,
    customer: Customer | None,
    tasks: list[OutboxRow],
    invoices: list[Invoice],
    recorded: Mapping[str, Sequence[Recorded]],
    words: Words,
    terms: LatePayment | None,
) -> Call:
    today = made.today
    name = customer.name if customer else customer_id
    lines = [
        OwedInvoice(
            i.id,
            i.number or i.id,
            i.due_date,
            i.balance,
            i.currency,
            max((today - i.due_date).days, 0),
        )
        for i in invoices
    ]
    oldest = max(lines, key=lambda i: (i.days_overdue, i.number), default=None)
    lead = firmest(tasks)
    tone = _tone(lead.tone)
    tries = max(
        (
            sum(1 for r in recorded.get(t.id, ()) if r.outcome == Outcome.NO_ANSWER.value)
            for t in tasks
        ),
        default=0,
    )
    totals = owed(invoices)
    history: list[tuple[datetime, str]] = []
    if customer is not None:
        for entry in customer_entries(tx, row, customer):
            said = history_line(entry)
            if said:
                history.append((entry.at, said))
    numbers = {i.id: i.number for i in lines}
    phone = customer.phone if customer else None
    # Every open invoice, not only those past due: the script says what the customer owes,
    # the same as the list's line does.
    facts = CallFacts(
        today=today,
        tone=tone,
        firm=made.company,
        customer=name,
        phone=phone,
        owed=owed_text(totals),
        oldest_days=oldest.days_overdue if oldest else 0,
        invoices=tuple(OverdueInvoice.of(i, today, terms) for i in invoices),
        history=tuple(f"{at.astimezone(made.zone):%d %b %Y} · {said}" for at, said in history),
        stage=lead.stage_title + (f" · try {tries + 1}" if tries else ""),
    )
    return Call(
        customer_id=customer_id,
        customer=name,
        phone=phone,
        email=customer.email if customer else None,
        owed=totals,
        oldest_days=oldest.days_overdue if oldest else 0,
        oldest_invoice=oldest.number if oldest else "",
        stage=lead.stage_title,
        tone=tone,
        tasks=[t.id for t in tasks],
        about=list(
            dict.fromkeys(numbers.get(t.invoice_id or "", t.invoice_id or "") for t in tasks)
        ),
        invoices=lines,
        tries=tries,
        history=history,
        script=_with_hint(words.call_script(facts).rstrip(), name),
    )


#: the date a note begins with ("24 Nov 2026 · ")
_NOTE_DATE = re.compile(r"^\d{1,2} [A-Z][a-z]{2} \d{4}\s*·\s*")


def history_line(entry: Entry) -> str | None:
    """An entry of the trail as the call list shows it, or None when a call needs not know it:
    reminders emailed, notes written, calls and their outcomes, holds and plans."""
    where = f" ({entry.invoice})" if entry.invoice else ""
    r = entry.evidence or {}
    if entry.what in ("done", "resolved"):
        if entry.kind == "email":
            to = f" to {r['to']}" if r.get("to") else ""
            return f"{entry.stage_title}: reminder emailed{to}{where}"
        if entry.kind == "note":
            text = str(r.get("note") or entry.reason or "")
            # the line has its own date; the marker is for arsync, not for the caller
            text = _NOTE_DATE.sub("", re.sub(r"\s*·\s*ref \S+$", "", text))
            return f"note on {entry.invoice or 'the customer'}: {text}"
        if entry.kind == "call":
            return f"{entry.stage_title}: call task opened{where}"
        if entry.kind == "letter":
            to = f" to {r['to']}" if r.get("to") else ""
            return f"{entry.stage_title}: letter sent{to}{where}"
        return None
    if entry.what in ("call", "hold", "plan"):
        return f"{entry.words}{where}" if entry.what != "call" else entry.words
    return None


def to_json(lists: Sequence[CallList]) -> dict[str, Any]:
    return {
        "connectors": [
            {
                "connector": c.connector,
                "company": c.company,
                "today": c.today.isoformat(),
                "timezone": c.timezone,
                "calls": [
                    {
                        "customer": call.customer,
                        "customer_id": call.customer_id,
                        "phone": call.phone,
                        "email": call.email,
                        "owed": {cur: str(v) for cur, v in call.owed.items()},
                        "oldest_days_overdue": call.oldest_days,
                        "oldest_invoice": call.oldest_invoice,
                        "stage": call.stage,
                        "tone": call.tone.value,
                        "tasks": call.tasks,
                        "about": call.about,
                        "tries": call.tries,
                        "invoices": [
                            {
                                "id": i.id,
                                "number": i.number,
                                "due": i.due.isoformat(),
                                "balance": str(i.balance),
                                "currency": i.currency,
                                "days_overdue": i.days_overdue,
                            }
                            for i in call.invoices
                        ],
                        "history": [{"at": at.isoformat(), "words": w} for at, w in call.history],
                        "script": call.script,
                    }
                    for call in c.calls
                ],
                "left_off": c.left_off,
                "later": c.later,
            }
            for c in lists
        ]
    }


def render(lists: Sequence[CallList]) -> None:
    """Each call: one line saying who, the number, what is owed and how late; then its script
    (what has happened so far is in it; --json has it apart)."""
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    if not lists:
        console.print("No connector is connected yet.")
    for c in lists:
        n = len(c.calls)
        console.print(
            f"[bold]{escape(c.connector)}[/] · {escape(c.company)} · {c.today:%a %d %b %Y} · "
            f"{n} call{'s' if n != 1 else ''} to make"
        )
        for call in c.calls:
            phone = call.phone or "no phone on file"
            late = (
                f"{call.oldest_days} days overdue ({call.oldest_invoice})"
                if call.oldest_days
                else "not overdue"
            )
            console.print(
                f"  [bold]{escape(call.customer)}[/] · {escape(phone)} · owes "
                f"{escape(owed_text(call.owed))} · {late} · {escape(call.stage)} "
                f"({call.tone.value})" + (f" · {call.tries} unanswered" if call.tries else "")
            )
            for line in call.script.splitlines():
                console.print(f"      {escape(line)}" if line.strip() else "")
        if c.later:
            console.print(
                "  [dim]unanswered, back on the list on the next business day: "
                f"{escape(', '.join(c.later))}[/]"
            )
        for said in c.left_off:
            console.print(f"  [dim]no call needed now: {escape(said)}[/]")
        console.print()


# -- recording an outcome -------------------------------------------------------------------------
_PART = re.compile(r",\s*(?=\d{4}-\d{2}-\d{2}\s*:)")


def instalment_parts(text: str) -> list[str]:
    """ "2026-12-15:100,2027-01-15:1,000.50" → each DATE:AMOUNT (a comma inside an amount is
    a thousands separator: the split is only before a date)."""
    return [p.strip() for p in _PART.split(text.strip()) if p.strip()]


def record_call(
    collecting: Collecting,
    ref: str,
    outcome: Outcome,
    *,
    on: str | None = None,
    amount: str | None = None,
    reason: str | None = None,
    connector: str | None = None,
    invoices: Sequence[str] = (),
    instalments: str | None = None,
) -> str:
    """Record what came of the call to the customer `ref` (see the module's docstring)."""
    config = collecting.config
    store = collecting.store
    # Everything is checked before anything is recorded: the holds go through `Collecting`,
    # each in its own transaction, and the outcome follows them.
    _options(outcome, on=on, amount=amount, instalments=instalments, invoices=invoices)
    with store.reading() as tx:
        found = find(tx, config, ref, connector)
        customer = _customer(found, ref)
        row = found.row
        policy = config.policy_of(found.connector)
        firm = firm_of(found.connector, row)
        today = tx.now.astimezone(firm.zone).date()
        rows = tx.outbox.of(row.id, customer_id=customer.id, kinds=["call"], states=[S.DONE])
        recorded = outcomes_of(
            tx.events.of(
                row.id, entity=Entity.CUSTOMER, external_id=customer.id, actions=[CALL_OUTCOME]
            )
        )
        tasks = open_tasks(rows, recorded, None)
        if not tasks:
            last = max((r[-1] for r in recorded.values() if r), key=lambda r: r.at, default=None)
            said = (
                f" (the last call's outcome, {last.outcome}, was recorded by {last.by} on "
                f"{last.at.astimezone(firm.zone):%d %b %Y})"
                if last
                else ""
            )
            raise BadInput(
                f"{customer.name} has no call task open{said}: see `arsync calls`; a promise, "
                "a dispute or a plan made otherwise goes in with `arsync promise`, `dispute` or "
                "`instalments`"
            )
        open_ = sorted(
            (i for i in tx.records.open_invoices(row.id) if i.customer_id == customer.id),
            key=lambda i: (i.due_date, i.number or i.id),
        )
        named = [_open_invoice(open_, name, customer) for name in invoices]
        overdue = [i for i in open_ if i.due_date < today]
        day: date | None = None
        promised: str | None = None
        targets: list[Invoice] = []
        plan_words: str | None = None
        if outcome is Outcome.PROMISED:
            assert on is not None
            day = parse_date(on, "--on")
            _not_past(day, today, "--on")
            targets = named or overdue or open_
            if not targets:
                raise BadInput(f"{customer.name} owes nothing: there is nothing to promise")
            currencies = {i.currency for i in targets}
            if amount is not None:
                if len(currencies) > 1:
                    raise BadInput(
                        "--amount: the invoices are in several currencies; name them with --invoice"
                    )
                value = parse_amount(amount, "--amount")
                total = sum((i.balance for i in targets), Decimal(0))
                if value > total:
                    raise BadInput(
                        f"--amount: {value:,.2f} is above the {total:,.2f} "
                        f"{targets[0].currency} owed on the invoices promised"
                    )
                promised = str(Money(value, targets[0].currency))
            else:
                promised = owed_text(owed(targets))
        elif outcome is Outcome.DISPUTED:
            if not (reason or "").strip():
                raise BadInput(
                    "--reason: say what the customer disputes (it goes in the paper trail)"
                )
            if len(named) > 1:
                raise BadInput("--invoice: a dispute is about one invoice; record each in turn")
            disputed = named or overdue[:1] or open_[:1]
            if not disputed:
                raise BadInput(f"{customer.name} owes nothing: there is no invoice to dispute")
            if any(
                h.kind is HoldKind.DISPUTE and h.invoice_id == disputed[0].id
                for h in tx.holds.active(row.id)
            ):
                raise BadInput(
                    f"invoice {disputed[0].number or disputed[0].id} is already in dispute"
                )
            targets = disputed
        elif outcome is Outcome.PLAN:
            assert instalments is not None
            parts = instalment_parts(instalments)
            if not parts:
                raise BadInput('--instalments: give them as "DATE:AMOUNT,DATE:AMOUNT"')
            targets = named or open_
            steps = [p.partition(":") for p in parts]
            plan_words = f"{len(parts)} instalment{'s' if len(parts) != 1 else ''} from " + (
                short_day(parse_date(steps[0][0], parts[0]), today)
            )
        text = _reason(reason, "") if (reason or "").strip() else None
        refs = {i.id: _ref(tx, config, found.connector.name, invoice=i) for i in targets}
        who_ref = (
            _ref(tx, config, found.connector.name, customer=customer)
            if outcome is Outcome.PLAN
            else None
        )
        task_invoices = {t.invoice_id for t in tasks if t.invoice_id}
        by_id = {i.id: i for i in open_}
    by = who()
    call_day = f"the call of {today.day} {today:%b %Y}"
    note = f"call with {customer.name}" + (f", {promised} promised" if amount else "")
    hold_reason = f"{note}: {text}" if text else note
    messages: list[str] = []
    # -- the holds, through the commands a person would run ------------------------------------
    name = found.connector.name
    if outcome is Outcome.PROMISED:
        assert day is not None
        for inv in targets:
            messages.append(
                collecting.promise(
                    refs[inv.id], day.isoformat(), reason=hold_reason, connector=name
                )
            )
    elif outcome is Outcome.DISPUTED:
        messages.append(collecting.dispute(refs[targets[0].id], reason=hold_reason, connector=name))
    elif outcome is Outcome.PLAN:
        assert instalments is not None
        assert who_ref is not None
        messages.append(
            collecting.instalments(
                who_ref,
                instalment_parts(instalments),
                invoices=[refs[i.id] for i in named],
                missed_allowed=None,
                reason=hold_reason if text else f"agreed on {call_day}",
                connector=name,
            )
        )
    # -- the outcome, and a note on each invoice the call was about that no hold's note covers --
    said = outcome_words(
        outcome,
        customer.name,
        today=today,
        phone=customer.phone,
        promised=promised,
        on=day,
        invoice=(targets[0].number or targets[0].id) if targets else None,
        plan=plan_words,
        reason=text,
    )
    held = (
        {i.id for i in targets}
        if outcome in (Outcome.PROMISED, Outcome.DISPUTED, Outcome.PLAN)
        else set()
    )
    noted = [by_id[i] for i in sorted(task_invoices - held) if i in by_id]
    noted.sort(key=lambda i: (i.due_date, i.number or i.id))
    retry = (
        next_business_day(today, Calendar.of(policy.calendar, row.country, row.region))
        if outcome is Outcome.NO_ANSWER
        else None
    )
    tones = {t.invoice_id: t.tone for t in tasks}
    lead = firmest(tasks)
    # what the note's template says (words.NoteFacts); `reason` is the same in words, for a
    # dispatcher that writes a recorded note from the row's reason
    facts: dict[str, Any] = {
        "event": "call_outcome",
        "outcome": CallOutcome(outcome.value.replace("-", "_")).value,
        "who": customer.name,
        **({"reason": text} if text else {}),
        **({"by": day.isoformat(), "amount": promised} if day else {}),
    }
    with store.transaction() as tx:
        tx.events.append(
            row.id,
            Entity.CUSTOMER,
            CALL_OUTCOME,
            external_id=customer.id,
            detail={
                "outcome": outcome.value,
                "by": by,
                "when": tx.now.isoformat(),
                "reason": text,
                "said": said,
                "calls": [t.id for t in tasks],
                "invoices": sorted(task_invoices | {i.id for i in targets}),
                **({"on": day.isoformat()} if day else {}),
                **({"amount": promised} if promised else {}),
                **({"retry_from": retry.isoformat()} if retry else {}),
            },
        )
        event = tx.events.of(
            row.id, entity=Entity.CUSTOMER, external_id=customer.id, actions=[CALL_OUTCOME]
        )[-1]
        for inv in noted:
            key = f"{name}/customer:{customer.id}/call-outcome/{event.id}/invoice:{inv.id}/note"
            tx.outbox.add(
                row.id,
                id=action_id(key),
                key=key,
                kind="note",
                subject=f"invoice:{inv.id}",
                customer_id=customer.id,
                invoice_id=inv.id,
                stage=OUTCOME_STAGE,
                stage_title=OUTCOME_TITLE,
                tone=tones.get(inv.id, lead.tone),
                amount=inv.balance,
                currency=inv.currency,
                due_date=inv.due_date,
                at=tx.now,
                state=S.READY,
                reason=said,
                result=facts,
                detail={"call_outcome": event.id},
            )
    head = f"call with {customer.name} recorded: {said}"
    if retry is not None:
        head += f"; back on the call list on {retry:%a %d %b %Y}"
    if noted:
        head += "; a note goes on invoice " + ", ".join(i.number or i.id for i in noted)
        head += " with the next `arsync run --once`"
    return "\n".join([head, *messages])


def _options(
    outcome: Outcome,
    *,
    on: str | None,
    amount: str | None,
    instalments: str | None,
    invoices: Sequence[str],
) -> None:
    """Each option belongs to one outcome: a stray one is a mistake, said before anything."""
    if outcome is Outcome.PROMISED and on is None:
        raise BadInput("--on DATE: a promise to pay has a day (YYYY-MM-DD)")
    if on is not None and outcome is not Outcome.PROMISED:
        raise BadInput("--on is the day promised: give it with --outcome promised")
    if amount is not None and outcome is not Outcome.PROMISED:
        raise BadInput("--amount is the amount promised: give it with --outcome promised")
    if outcome is Outcome.PLAN and not (instalments or "").strip():
        raise BadInput(
            "--instalments: a payment plan needs its instalments, e.g. "
            '"2026-12-15:100,2027-01-15:100"'
        )
    if instalments is not None and outcome is not Outcome.PLAN:
        raise BadInput("--instalments are for --outcome plan")
    if invoices and outcome in (Outcome.REACHED, Outcome.NO_ANSWER):
        raise BadInput("--invoice names what a promise, a dispute or a plan is about")


def _open_invoice(open_: Sequence[Invoice], name: str, customer: Customer) -> Invoice:
    match = [i for i in open_ if i.id == name or (i.number or "").casefold() == name.casefold()]
    if not match:
        raise BadInput(f"--invoice {name!r}: not an open invoice of {customer.name}")
    return match[0]


def _ref(
    tx: Tx,
    config: Config,
    connector: str,
    *,
    invoice: Invoice | None = None,
    customer: Customer | None = None,
) -> str:
    """A name that `find` resolves to exactly this invoice or customer (its number or name,
    else its id): what the `Collecting` commands are given."""
    if invoice is not None:
        candidates = [invoice.number, invoice.id]
        what = f"invoice {invoice.number or invoice.id}"
    else:
        assert customer is not None
        candidates = [customer.name, customer.id]
        what = f"customer {customer.name}"
    for candidate in candidates:
        if not candidate:
            continue
        try:
            hit = find(tx, config, candidate, connector)
        except BadInput:
            continue
        same = (
            hit.invoice is not None and invoice is not None and hit.invoice.id == invoice.id
        ) or (hit.customer is not None and customer is not None and hit.customer.id == customer.id)
        if same:
            return candidate
    raise BadInput(f"{what}: neither its name nor its id names it alone; record this by hand")


__all__ = [
    "Call",
    "CallList",
    "Outcome",
    "by_customer",
    "call_list",
    "open_tasks",
    "outcome_words",
    "record_call",
    "render",
    "to_json",
]
