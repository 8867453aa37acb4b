"""What `arsync plan`, `why`, `hold`, `resume`, `dispute`, `promise`, `instalments`, `settle` and
`customer` do, apart from parsing their arguments.

Every command that sets something checks it first (an unknown invoice or customer, a date in
the past, an amount above the balance: `BadInput`, exit code 2) and records it with who set it,
when and why, in one transaction with its paper-trail event.
"""

from __future__ import annotations

import getpass
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from arsync.clock import Clock
from arsync.config import Config, ConnectorConfig
from arsync.domain import (
    PLATFORM_NAMES,
    Customer,
    Hold,
    HoldKind,
    HoldSource,
    HoldState,
    Invoice,
    Kind,
)
from arsync.errors import ConfigError, NotConnected
from arsync.escalation.planner import Action, Day, Plan, Status, forecast, plan, when
from arsync.escalation.policy import Policy
from arsync.escalation.reading import (
    SEND_TO_SETTING,
    TIMEZONE_SETTING,
    FirmZone,
    firm_zone,
    snapshot,
)
from arsync.escalation.record import settle
from arsync.escalation.zones import zone_problem
from arsync.runtime import Runtime
from arsync.store.models import ConnectorRow, Event
from arsync.store.unit import Store, Tx
from arsync.writeback.ledger import record_in_ledger


class BadInput(ConfigError):
    """A command was given something that cannot be: nothing was recorded (exit code 2)."""


def who() -> str:
    """Who is setting a hold, for the paper trail: the login name running the command."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name and no passwd entry (a bare container)
        return "a person at the firm"


@dataclass
class Planned:
    """One connector's plan, with what it was planned from."""

    name: str
    company: str
    firm: FirmZone
    policy: Policy
    plan: Plan
    days: list[Day]
    customers: dict[str, str]


# -- finding things -----------------------------------------------------------------------------
def _row(tx: Tx, connector: ConnectorConfig) -> ConnectorRow:
    row = tx.connectors.by_name(connector.name)
    if row is None or not row.linked:
        raise NotConnected(
            f"{connector.name} is not connected yet: run `arsync connect {connector.name}`"
        )
    return row


def _owed(tx: Tx, row: ConnectorRow, customer_id: str | None) -> list[Invoice]:
    """The customer's open invoices: where a note about the customer goes."""
    return [i for i in tx.records.open_invoices(row.id) if i.customer_id == customer_id]


def _customer_name(tx: Tx, row: ConnectorRow, customer_id: str) -> str | None:
    found = tx.records.by_ids(row.id, Kind.CUSTOMER, [customer_id]).get(customer_id)
    return found.name if isinstance(found, Customer) else None


def firm_of(connector: ConnectorConfig, row: ConnectorRow) -> FirmZone:
    return firm_zone(
        row,
        connector.timezone,
        connector.source,
        PLATFORM_NAMES.get(row.platform, row.platform),
    )


@dataclass
class Found:
    connector: ConnectorConfig
    row: ConnectorRow
    invoice: Invoice | None = None
    customer: Customer | None = None


def find(tx: Tx, config: Config, ref: str, only: str | None) -> Found:
    """An invoice (by number or platform id) or a customer (by name or id) in the store."""
    ref = ref.strip()
    if not ref:
        raise BadInput("name an invoice (its number) or a customer (its name)")
    hits: list[Found] = []
    names = [only] if only else sorted(config.connectors)
    for name in names:
        connector = config.connector(name)
        row = tx.connectors.by_name(name)
        if row is None or not row.linked:
            continue
        invoices = [
            r for r in tx.records.named(row.id, Kind.INVOICE, ref) if isinstance(r, Invoice)
        ]
        customers = [
            r for r in tx.records.named(row.id, Kind.CUSTOMER, ref) if isinstance(r, Customer)
        ]
        hits += [Found(connector, row, invoice=i) for i in invoices]
        hits += [Found(connector, row, customer=c) for c in customers]
    if not hits:
        where = f" in {only}" if only else ""
        raise BadInput(
            f"no invoice or customer {ref!r}{where} (an invoice's number, or a customer's name)"
        )
    if len(hits) > 1:
        said = "; ".join(
            f"{h.connector.name}: "
            + (
                f"invoice {h.invoice.number or h.invoice.id}"
                if h.invoice
                else f"customer {h.customer.name} ({h.customer.id})"
                if h.customer
                else ""
            )
            for h in hits[:6]
        )
        raise BadInput(
            f"{ref!r} names more than one thing ({said}); add --connector NAME or use the id"
        )
    return hits[0]


def _invoice(found: Found, ref: str) -> Invoice:
    if found.invoice is None:
        raise BadInput(f"{ref!r} is a customer; this needs an invoice (its number)")
    return found.invoice


def _customer(found: Found, ref: str) -> Customer:
    if found.customer is None:
        raise BadInput(f"{ref!r} is an invoice; this needs a customer (its name)")
    return found.customer


def _open(invoice: Invoice) -> None:
    if invoice.balance <= 0 or invoice.status.value != "open":
        raise BadInput(
            f"invoice {invoice.number or invoice.id} is {invoice.status.value}, with nothing owed: "
            "there is nothing to hold"
        )


def parse_date(text: str, what: str) -> date:
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise BadInput(f"{what}: {text!r} is not a date (YYYY-MM-DD)") from None


def parse_amount(text: str, what: str) -> Decimal:
    try:
        amount = Decimal(text.strip().replace(",", ""))
    except InvalidOperation:
        raise BadInput(f"{what}: {text!r} is not an amount") from None
    if not amount.is_finite() or amount <= 0 or amount != amount.quantize(Decimal("0.01")):
        raise BadInput(f"{what}: {text!r} must be above zero, with at most two decimal places")
    return amount.quantize(Decimal("0.01"))


def _today(found: Found, store: Store) -> date:
    return store.clock.now().astimezone(firm_of(found.connector, found.row).zone).date()


def _not_past(day: date, today: date, what: str) -> None:
    if day < today:
        raise BadInput(f"{what}: {day.isoformat()} is in the past (today is {today.isoformat()})")
    if day > today + timedelta(days=366):
        raise BadInput(f"{what}: {day.isoformat()} is more than a year away")


def _reason(reason: str | None, default: str) -> str:
    text = (reason or "").strip() or default
    if len(text) > 500:
        raise BadInput("--reason: at most 500 characters")
    return text


def _active(
    tx: Tx,
    row: ConnectorRow,
    kind: HoldKind,
    *,
    invoice: str | None = None,
    customer: str | None = None,
) -> list[Hold]:
    return [
        h
        for h in tx.holds.active(row.id)
        if h.kind is kind
        and (invoice is None or h.invoice_id == invoice)
        and (customer is None or (h.customer_id == customer and h.invoice_id is None))
    ]


# -- commands that set -------------------------------------------------------------------------
class Collecting:
    """The store and configuration a collecting command works on."""

    def __init__(self, config: Config, clock: Clock | None = None) -> None:
        self.config = config
        self.runtime = Runtime.open(config, clock)
        self.store = self.runtime.store

    def close(self) -> None:
        self.runtime.close()

    def __enter__(self) -> Collecting:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def hold(
        self, ref: str, *, until: str | None, reason: str | None, connector: str | None
    ) -> str:
        """Pause a customer (until a date, or until resumed), or exclude an invoice."""
        with self.store.transaction() as tx:
            found = find(tx, self.config, ref, connector)
            by = who()
            if found.customer is not None:
                customer = found.customer
                end = None
                if until is not None:
                    end = parse_date(until, "--until")
                    _not_past(end, _today(found, self.store), "--until")
                if _active(tx, found.row, HoldKind.PAUSE, customer=customer.id):
                    raise BadInput(f"{customer.name} is already paused (see `arsync why {ref}`)")
                hold = tx.holds.add(
                    found.row.id,
                    HoldKind.PAUSE,
                    customer_id=customer.id,
                    until=end,
                    reason=_reason(reason, "paused by hand"),
                    set_by=by,
                )
                for owed in _owed(tx, found.row, customer.id):
                    record_in_ledger(
                        tx,
                        found.row,
                        owed,
                        topic="pause",
                        title="pause",
                        words=f"chase paused: {hold.reason} (recorded by {by})",
                        ref=f"hold-{hold.id}",
                        facts={
                            "event": "paused",
                            "reason": hold.reason,
                            **({"by": end.isoformat()} if end else {}),
                        },
                    )
                return f"{customer.name} paused" + (
                    f" until {end:%d %b %Y}" if end else " until resumed (`arsync resume`)"
                )
            invoice = _invoice(found, ref)
            _open(invoice)
            if until is not None:
                raise BadInput(
                    "--until is for pausing a customer; an invoice is excluded until resumed"
                )
            if _active(tx, found.row, HoldKind.EXCLUDE, invoice=invoice.id):
                raise BadInput(f"invoice {invoice.number or invoice.id} is already excluded")
            hold = tx.holds.add(
                found.row.id,
                HoldKind.EXCLUDE,
                customer_id=invoice.customer_id,
                invoice_id=invoice.id,
                reason=_reason(reason, "excluded by hand"),
                set_by=by,
            )
            record_in_ledger(
                tx,
                found.row,
                invoice,
                topic="exclude",
                title="excluded",
                words=f"excluded from chasing: {hold.reason} (recorded by {by})",
                ref=f"hold-{hold.id}",
                facts={"event": "paused", "reason": hold.reason},
            )
            return f"invoice {invoice.number or invoice.id} excluded from collection until resumed"

    def resume(self, ref: str, *, reason: str | None, connector: str | None) -> str:
        """End a customer's pause, or an invoice's exclusion or dispute."""
        with self.store.transaction() as tx:
            found = find(tx, self.config, ref, connector)
            if found.customer is not None:
                holds = _active(tx, found.row, HoldKind.PAUSE, customer=found.customer.id)
                what = found.customer.name
            else:
                invoice = _invoice(found, ref)
                holds = [
                    h
                    for h in tx.holds.active(found.row.id)
                    if h.invoice_id == invoice.id and h.kind in (HoldKind.EXCLUDE, HoldKind.DISPUTE)
                ]
                what = f"invoice {invoice.number or invoice.id}"
            ledger = [h for h in holds if h.source is HoldSource.LEDGER]
            mine = [h for h in holds if h.source is not HoldSource.LEDGER]
            if not mine:
                if ledger:
                    platform = PLATFORM_NAMES.get(found.row.platform, found.row.platform)
                    raise BadInput(
                        f"{what} is held inside {platform} ({ledger[0].reason}): clear it there"
                    )
                raise BadInput(f"{what} is not paused, excluded or in dispute")
            for hold in mine:
                tx.holds.end(
                    hold.id, HoldState.CLEARED, by=who(), reason=_reason(reason, "resumed by hand")
                )
                targets = (
                    _owed(tx, found.row, hold.customer_id)
                    if hold.invoice_id is None and hold.customer_id is not None
                    else [
                        i for i in _owed(tx, found.row, hold.customer_id) if i.id == hold.invoice_id
                    ]
                )
                for owed in targets:
                    record_in_ledger(
                        tx,
                        found.row,
                        owed,
                        topic="resume",
                        title="resumed",
                        words=f"chase resumed (recorded by {who()})",
                        ref=f"hold-{hold.id}",
                        facts={"event": "resumed"},
                    )
            return (
                f"{what} resumed: collection goes on at the stage now due (no burst of missed ones)"
            )

    def dispute(self, ref: str, *, reason: str | None, connector: str | None) -> str:
        with self.store.transaction() as tx:
            found = find(tx, self.config, ref, connector)
            invoice = _invoice(found, ref)
            _open(invoice)
            if _active(tx, found.row, HoldKind.DISPUTE, invoice=invoice.id):
                raise BadInput(f"invoice {invoice.number or invoice.id} is already in dispute")
            if not (reason or "").strip():
                raise BadInput(
                    "--reason: say what the customer disputes (it goes in the paper trail)"
                )
            hold = tx.holds.add(
                found.row.id,
                HoldKind.DISPUTE,
                customer_id=invoice.customer_id,
                invoice_id=invoice.id,
                reason=_reason(reason, ""),
                set_by=who(),
            )
            record_in_ledger(
                tx,
                found.row,
                invoice,
                topic="dispute",
                title="dispute",
                words=f"in dispute, not chased: {hold.reason} (recorded by {hold.set_by})",
                ref=f"hold-{hold.id}",
                facts={"event": "dispute", "reason": hold.reason},
            )
            return (
                f"invoice {invoice.number or invoice.id} in dispute: never chased until "
                f"`arsync resume {ref}`"
            )

    def promise(self, ref: str, on: str, *, reason: str | None, connector: str | None) -> str:
        with self.store.transaction() as tx:
            found = find(tx, self.config, ref, connector)
            invoice = _invoice(found, ref)
            _open(invoice)
            day = parse_date(on, "DATE")
            _not_past(day, _today(found, self.store), "DATE")
            policy = self.config.policy_of(found.connector)
            for old in _active(tx, found.row, HoldKind.PROMISE, invoice=invoice.id):
                tx.holds.end(
                    old.id,
                    HoldState.CLEARED,
                    by=who(),
                    reason=f"replaced by a promise for {day:%d %b %Y}",
                )
            hold = tx.holds.add(
                found.row.id,
                HoldKind.PROMISE,
                customer_id=invoice.customer_id,
                invoice_id=invoice.id,
                until=day,
                amount=invoice.balance,
                currency=invoice.currency,
                basis=invoice.balance,
                reason=_reason(reason, "promised to pay"),
                set_by=who(),
            )
            record_in_ledger(
                tx,
                found.row,
                invoice,
                topic="promise",
                title="promise to pay",
                words=(
                    f"promised to pay {invoice.balance:,.2f} {invoice.currency} by "
                    f"{day.day} {day:%b %Y}: {hold.reason} (recorded by {hold.set_by})"
                ),
                ref=f"hold-{hold.id}",
                expect=day,
                facts={
                    "event": "promise",
                    "who": _customer_name(tx, found.row, invoice.customer_id),
                    "amount": f"{invoice.balance:,.2f} {invoice.currency}",
                    "by": day.isoformat(),
                },
            )
            grace = day + timedelta(days=policy.promises.grace_days)
            return (
                f"promise recorded: invoice {invoice.number or invoice.id} "
                f"({invoice.balance:,.2f} {invoice.currency}) on {day:%d %b %Y}; not chased "
                f"before {grace:%d %b %Y}, then as a broken promise in a firmer tone"
            )

    def settle(
        self, ref: str, amount: str, *, by: str | None, reason: str | None, connector: str | None
    ) -> str:
        with self.store.transaction() as tx:
            found = find(tx, self.config, ref, connector)
            invoice = _invoice(found, ref)
            _open(invoice)
            agreed = parse_amount(amount, "AMOUNT")
            policy = self.config.policy_of(found.connector)
            if agreed > invoice.balance:
                raise BadInput(
                    f"AMOUNT: {agreed:,.2f} is above the balance of {invoice.balance:,.2f} "
                    f"{invoice.currency}"
                )
            floor = (invoice.balance * policy.settlement.min_percent / 100).quantize(
                Decimal("0.01")
            )
            if agreed < floor:
                raise BadInput(
                    f"AMOUNT: {agreed:,.2f} is below the {policy.settlement.min_percent}% of the "
                    f"balance ({floor:,.2f} {invoice.currency}) that policy "
                    f"{policy.name} accepts in settlement"
                )
            deadline = None
            if by is not None:
                deadline = parse_date(by, "--by")
                _not_past(deadline, _today(found, self.store), "--by")
            if _active(tx, found.row, HoldKind.SETTLEMENT, invoice=invoice.id):
                raise BadInput(f"invoice {invoice.number or invoice.id} already has a settlement")
            hold = tx.holds.add(
                found.row.id,
                HoldKind.SETTLEMENT,
                customer_id=invoice.customer_id,
                invoice_id=invoice.id,
                until=deadline,
                amount=agreed,
                currency=invoice.currency,
                basis=invoice.balance,
                reason=_reason(reason, "settlement agreed"),
                set_by=who(),
            )
            by_day = f" by {deadline.day} {deadline:%b %Y}" if deadline else ""
            record_in_ledger(
                tx,
                found.row,
                invoice,
                topic="settlement",
                title="settlement",
                words=(
                    f"{agreed:,.2f} {invoice.currency} accepted in full settlement{by_day}: "
                    f"{hold.reason} (recorded by {hold.set_by})"
                ),
                ref=f"hold-{hold.id}",
                facts={
                    "event": "settlement",
                    "amount": f"{agreed:,.2f} {invoice.currency}",
                    **({"by": deadline.isoformat()} if deadline else {}),
                },
            )
            return (
                f"settlement recorded: {agreed:,.2f} {invoice.currency} in full settlement of "
                f"invoice {invoice.number or invoice.id} ({invoice.balance:,.2f} owed)"
            )

    def instalments(
        self,
        ref: str,
        parts: Sequence[str],
        *,
        invoices: Sequence[str],
        missed_allowed: int | None,
        reason: str | None,
        connector: str | None,
    ) -> str:
        with self.store.transaction() as tx:
            found = find(tx, self.config, ref, connector)
            customer = _customer(found, ref)
            policy = self.config.policy_of(found.connector)
            open_ = [
                i for i in tx.records.open_invoices(found.row.id) if i.customer_id == customer.id
            ]
            if invoices:
                chosen = []
                for name in invoices:
                    match = [
                        i
                        for i in open_
                        if i.id == name or (i.number or "").casefold() == name.casefold()
                    ]
                    if not match:
                        raise BadInput(
                            f"--invoice {name!r}: not an open invoice of {customer.name}"
                        )
                    chosen.append(match[0])
            else:
                chosen = open_
            if not chosen:
                raise BadInput(f"{customer.name} owes nothing: no open invoice to spread")
            currencies = {i.currency for i in chosen}
            if len(currencies) > 1:
                raise BadInput(
                    "a payment plan covers invoices in one currency; name them with --invoice"
                )
            currency = currencies.pop()
            balance = sum((i.balance for i in chosen), Decimal(0))
            today = _today(found, self.store)
            steps: list[tuple[date, Decimal]] = []
            for part in parts:
                day_text, sep, amount_text = part.partition(":")
                if not sep:
                    raise BadInput(
                        f"{part!r}: give each instalment as DATE:AMOUNT, e.g. 2027-01-15:250"
                    )
                day = parse_date(day_text, part)
                _not_past(day, today, part)
                steps.append((day, parse_amount(amount_text, part)))
            if not steps:
                raise BadInput("give at least one instalment as DATE:AMOUNT")
            days = [d for d, _ in steps]
            if days != sorted(days) or len(set(days)) != len(days):
                raise BadInput("instalments fall on different days, in order")
            total = sum((a for _, a in steps), Decimal(0))
            covered = ", ".join(i.number or i.id for i in chosen)
            if total != balance:
                side = "above" if total > balance else "below"
                hint = (
                    ""
                    if total > balance
                    else "; add an instalment, or name the invoices the plan covers with --invoice"
                )
                raise BadInput(
                    f"the instalments add up to {total:,.2f} {currency}, {side} the "
                    f"{balance:,.2f} owed on {covered}{hint}"
                )
            if any(
                p.customer_id == customer.id and set(p.invoice_ids) & {i.id for i in chosen}
                for p in tx.plans.active(found.row.id)
            ):
                raise BadInput(f"{customer.name} already has a payment plan for these invoices")
            allowed = policy.plans.missed_allowed if missed_allowed is None else missed_allowed
            if allowed < 0:
                raise BadInput("--missed-allowed cannot be negative")
            plan_ = tx.plans.add(
                found.row.id,
                customer.id,
                [i.id for i in chosen],
                currency,
                steps,
                missed_allowed=allowed,
                reason=_reason(reason, "payment plan agreed"),
                set_by=who(),
                basis=balance,
            )
            schedule = ", ".join(f"{a:,.2f} on {d.day} {d:%b %Y}" for d, a in steps)
            for invoice in chosen:
                record_in_ledger(
                    tx,
                    found.row,
                    invoice,
                    topic="plan",
                    title="payment plan",
                    words=(
                        f"payment plan {plan_.id} for {total:,.2f} {currency} covering "
                        f"{covered}: {schedule} (recorded by {plan_.set_by})"
                    ),
                    ref=f"plan-{plan_.id}",
                    facts={
                        "event": "plan",
                        "instalments": len(steps),
                        "amount": f"{steps[0][1]:,.2f} {currency}",
                        "by": steps[0][0].isoformat(),
                    },
                )
            return (
                f"payment plan {plan_.id} for {customer.name}: {len(steps)} instalments of "
                f"{total:,.2f} {currency} in all, covering {covered}; only an overdue "
                f"instalment is chased, and the plan ends after {allowed + 1} missed"
            )

    def customer_zone(self, ref: str, zone: str | None, *, connector: str | None) -> str:
        return self.customer_settings(ref, zone=zone, send_to=None, connector=connector)

    def customer_settings(
        self, ref: str, *, zone: str | None, send_to: str | None, connector: str | None
    ) -> str:
        """A customer's own time zone and the address its reminders go to ("" clears one;
        None leaves it as it is)."""
        if zone is None and send_to is None:
            raise BadInput("give --timezone, --send-to or both")
        said: list[str] = []
        with self.store.transaction() as tx:
            found = find(tx, self.config, ref, connector)
            customer = _customer(found, ref)
            if zone is not None:
                if zone != "":
                    problem = zone_problem(zone)
                    if problem:
                        raise BadInput(f"--timezone: {problem}")
                tx.settings.put(
                    found.row.id, customer.id, TIMEZONE_SETTING, zone or None, set_by=who()
                )
                said.append(
                    f"{customer.name}: contacted in {zone}'s quiet hours"
                    if zone
                    else f"{customer.name}: time zone from the billing address again"
                )
            if send_to is not None:
                address = send_to.strip()
                if found.row.platform == "xero" and address:
                    raise BadInput(
                        "--send-to: Xero emails an invoice to the contact's own address and to "
                        "its contact persons marked to receive invoices; add the address to "
                        f"{customer.name} in Xero (Contact, Contact persons, Include in emails)"
                    )
                if address and (address.count("@") != 1 or any(c.isspace() for c in address)):
                    raise BadInput(f"--send-to: {address!r} is not an email address")
                tx.settings.put(
                    found.row.id, customer.id, SEND_TO_SETTING, address or None, set_by=who()
                )
                said.append(
                    f"{customer.name}: reminders emailed to {address} (QuickBooks' sendTo)"
                    if address
                    else f"{customer.name}: reminders emailed to the invoice's own address again"
                )
        return "\n".join(said)

    # -- reading -----------------------------------------------------------------------------
    def planned(self, names: Sequence[str], days: int) -> list[Planned]:
        """Each chosen connector's plan now (after recording what the ledger and the calendar
        settled) and its forecast over `days` days."""
        chosen = (
            [self.config.connector(n) for n in dict.fromkeys(names)]
            if names
            else [c for _, c in sorted(self.config.connectors.items()) if c.enabled]
        )
        out: list[Planned] = []
        for connector in chosen:
            policy = self.config.policy_of(connector)
            with self.store.transaction() as tx:
                row = _row(tx, connector)
                firm = firm_of(connector, row)
                settle(tx, row, policy, firm, tx.now)
            with self.store.reading() as tx:
                now = tx.now
                row = _row(tx, connector)
                snap = snapshot(tx, row, policy, firm, now)
            result = plan(snap, policy, now)
            ahead = forecast(snap, policy, now, days) if days else []
            names_ = {p.id: p.name for p in snap.customers.values()}
            out.append(
                Planned(
                    connector.name,
                    row.company_name or connector.display_name,
                    firm,
                    policy,
                    result,
                    ahead,
                    names_,
                )
            )
        return out

    def why(self, ref: str, *, connector: str | None) -> dict[str, Any]:
        with self.store.reading() as tx:
            found = find(tx, self.config, ref, connector)
        planned = self.planned([found.connector.name], 0)[0]
        with self.store.reading() as tx:
            row = found.row
            if found.invoice is not None:
                inv = found.invoice
                decision = planned.plan.of(f"invoice:{inv.id}")
                holds = tx.holds.history(row.id, invoice_id=inv.id)
                events = tx.events.of(row.id, external_id=inv.id)
                plans = [p for p in tx.plans.active(row.id) if inv.id in p.invoice_ids]
                subject = f"invoice {inv.number or inv.id}"
                decisions = [decision] if decision else []
                if plans:
                    decisions += [
                        d for d in planned.plan.decisions if d.plan_id in {p.id for p in plans}
                    ]
            else:
                cust = found.customer
                assert cust is not None
                decisions = [d for d in planned.plan.decisions if d.customer_id == cust.id]
                holds = tx.holds.history(row.id, customer_id=cust.id)
                events = tx.events.of(row.id, external_id=cust.id)
                plans = [p for p in tx.plans.active(row.id) if p.customer_id == cust.id]
                subject = f"customer {cust.name}"
        return {
            "subject": subject,
            "connector": found.connector.name,
            "policy": planned.policy.name,
            "firm_zone": f"{planned.firm.zone.key} ({planned.firm.source})",
            "decisions": decisions,
            "holds": holds,
            "plans": plans,
            "events": events,
            "now": planned.plan.now,
        }


# -- output ------------------------------------------------------------------------------------
_STYLE = {
    Status.DUE: "bold green",
    Status.WAITING: "yellow",
    Status.SCHEDULED: "cyan",
    Status.HELD: "magenta",
    Status.NOTHING: "dim",
}


def _action_json(a: Action) -> dict[str, Any]:
    return {
        "id": a.id,
        "key": a.key,
        "kind": a.kind.value,
        "stage": a.stage,
        "tone": a.tone.value,
        "customer": a.customer_id,
        "invoice": a.invoice_id,
        "subject": a.subject,
        "amount": str(a.amount.amount),
        "currency": a.amount.currency,
        "at": a.at.isoformat(),
        "approval": a.approval,
    }


def plan_json(planned: list[Planned]) -> dict[str, Any]:
    return {
        "connectors": [
            {
                "connector": p.name,
                "company": p.company,
                "policy": p.policy.name,
                "timezone": p.firm.zone.key,
                "now": p.plan.now.isoformat(),
                "notes": list(p.plan.notes),
                "decisions": [
                    {
                        "subject": d.subject,
                        "status": d.status.value,
                        "invoice": d.invoice_id,
                        "number": d.number,
                        "customer": d.customer_id,
                        "plan": d.plan_id,
                        "stage": d.stage,
                        "at": d.at.isoformat() if d.at else None,
                        "amount": str(d.amount.amount) if d.amount else None,
                        "currency": d.amount.currency if d.amount else None,
                        "reason": d.reason,
                        "superseded": list(d.superseded),
                        "actions": [_action_json(a) for a in d.actions],
                    }
                    for d in p.plan.decisions
                ],
                "forecast": [
                    {"day": day.day.isoformat(), "actions": [_action_json(a) for a in day.actions]}
                    for day in p.days
                ],
            }
            for p in planned
        ]
    }


def render_plan(planned: list[Planned], *, days: int) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    for p in planned:
        zone = p.firm.zone
        console.print(
            f"[bold]{escape(p.name)}[/] · {escape(p.company)} · policy {p.policy.name} · "
            f"{zone.key} ({escape(p.firm.source)}) · {when(p.plan.now, zone)}"
        )
        for note in p.plan.notes:
            console.print(f"  [dim]{escape(note)}[/]")
        counts: dict[Status, int] = {}
        for d in p.plan.decisions:
            counts[d.status] = counts.get(d.status, 0) + 1
        console.print(
            "  " + ", ".join(f"{n} {s.value}" for s, n in counts.items())
            if counts
            else "  no open invoices"
        )
        shown = [d for d in p.plan.decisions if d.status is not Status.NOTHING]
        for d in shown[:200]:
            acts = ", ".join(
                a.kind.value + (" (approval)" if a.approval else "") for a in d.actions
            )
            name = escape(p.customers.get(d.customer_id, d.customer_id))
            line = f"  [{_STYLE[d.status]}]{d.status.value:<9}[/] {name}: {escape(d.reason)}"
            if acts and d.status is Status.DUE:
                line += f" [dim]→ {escape(acts)}[/]"
            console.print(line)
        if len(shown) > 200:
            console.print(f"  … and {len(shown) - 200} more (--json lists them all)")
        if days:
            console.print(f"  [bold]the next {days} days[/] (as if nobody paid):")
            for day in p.days:
                if not day.actions:
                    continue
                stages: dict[tuple[str, str], list[Action]] = {}
                for a in day.actions:
                    stages.setdefault((a.subject, a.stage), []).append(a)
                console.print(f"  [cyan]{day.day:%a %d %b %Y}[/]  {len(stages)} stage(s)")
                for (_subject, _stage), acts_ in stages.items():
                    a = acts_[0]
                    kinds = ", ".join(x.kind.value for x in acts_)
                    console.print(
                        f"      {escape(p.customers.get(a.customer_id, a.customer_id))} · "
                        f"{escape(a.stage_title)} · {a.amount} · {kinds}"
                    )
        console.print()


def render_why(found: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.markup import escape

    console = Console()
    console.print(
        f"[bold]{escape(found['subject'])}[/] · {found['connector']} · policy {found['policy']} · "
        f"firm's zone {escape(found['firm_zone'])}"
    )
    decisions = found["decisions"]
    if not decisions:
        console.print("  not open: nothing to collect")
    for d in decisions:
        console.print(f"  [{_STYLE[d.status]}]{d.status.value}[/]: {escape(d.reason)}")
        for a in d.actions:
            extra = f" (waits for approval: {a.approval})" if a.approval else ""
            console.print(
                f"      {a.kind.value} ({a.tone.value} tone) · action {a.id}{escape(extra)}"
            )
    holds: list[Hold] = found["holds"]
    if holds:
        console.print("  holds:")
        for h in holds:
            ended = (
                f" → {h.state.value} {h.ended_at:%d %b %Y} by {h.ended_by}: {h.end_reason}"
                if h.ended_at
                else " (active)"
            )
            until = f" until {h.until:%d %b %Y}" if h.until else ""
            console.print(
                f"    {h.kind.value}{until} set {h.set_at:%d %b %Y} by {escape(h.set_by)} "
                f"({h.source.value}): {escape(h.reason)}{escape(ended)}"
            )
    for plan_ in found["plans"]:
        parts = ", ".join(f"{i.due:%d %b} {i.amount:,.2f}" for i in plan_.instalments)
        console.print(f"  payment plan {plan_.id} ({plan_.currency}): {parts}")
    events = found["events"]
    if events:
        console.print("  history:")
        for e in events[-30:]:
            console.print(f"    {e.at:%d %b %Y %H:%M}  {escape(event_words(e))}")


def event_words(event: Event) -> str:
    """One line of the paper trail in words."""
    d = event.detail if isinstance(event.detail, dict) else {}
    action = event.action
    if action == "hold_set":
        until = f" until {d['until']}" if d.get("until") else ""
        amount = f" {d['amount']} {d['currency']}" if d.get("amount") else ""
        return (
            f"{d.get('kind')}{until}{amount} set by {d.get('by')} ({d.get('source')}): "
            f"{d.get('reason')}"
        )
    if action == "hold_ended":
        return f"{d.get('kind')} {d.get('state')} by {d.get('by')}: {d.get('reason')}"
    if action == "plan_set":
        return f"payment plan {d.get('plan')} agreed by {d.get('by')}: {d.get('reason')}"
    if action == "plan_ended":
        return f"payment plan {d.get('plan')} {d.get('state')} by {d.get('by')}: {d.get('reason')}"
    if action == "changed":
        fields = ", ".join(
            f"{k} {v[0]} → {v[1]}" for k, v in d.items() if isinstance(v, list) and len(v) == 2
        )
        return f"changed in the ledger: {fields}"
    if action in ("created", "restored", "deleted"):
        return f"{action} in the ledger"
    if action in ("stage_done", "stage_superseded"):
        return f"{action.replace('_', ' ')}: {d.get('stage')}"
    if action == "setting_changed":
        return f"{d.get('key')} set to {d.get('to')} by {d.get('by')}"
    return f"{action} {d}" if d else action
