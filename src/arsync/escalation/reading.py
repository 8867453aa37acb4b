"""From the store to the planner: one connector's snapshot, its firm's time zone and calendar.

The planner is pure; this module does the reading it needs, in one reading transaction, and
decides the time zones: the firm's (the connector file's `timezone`, else Xero's organisation
zone, else the company's country and region where they settle it) and each customer's (a zone
set with `arsync customer`, else the billing address's where it settles one, else the firm's).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from arsync.domain import Customer, HoldKind, HoldState, InvoiceStatus, Kind
from arsync.errors import ConfigError
from arsync.escalation.calendar import Calendar
from arsync.escalation.policy import Policy
from arsync.escalation.snapshot import Done, Person, Snapshot
from arsync.escalation.zones import country_zone, xero_zone
from arsync.store.models import ConnectorRow
from arsync.store.states import Entity
from arsync.store.unit import Tx

#: the per-customer setting that names the customer's own time zone
TIMEZONE_SETTING = "timezone"
#: the per-customer setting that names where the platform emails reminders (QBO's sendTo)
SEND_TO_SETTING = "send_to"
#: paper-trail actions the write-back records when a stage happened or was superseded
STAGE_DONE = "stage_done"
STAGE_SUPERSEDED = "stage_superseded"


class ZoneUnknown(ConfigError):
    """arsync will not plan for a company whose time zone it cannot tell."""


@dataclass(frozen=True)
class FirmZone:
    zone: ZoneInfo
    #: where it comes from, in words
    source: str


def firm_zone(
    row: ConnectorRow, configured: str | None, source_file: str, platform_name: str
) -> FirmZone:
    """The firm's time zone, or ZoneUnknown saying where to set it."""
    if configured:
        return FirmZone(ZoneInfo(configured), f"{source_file}: timezone")
    if row.platform_timezone:
        name = xero_zone(row.platform_timezone)
        if name is not None:
            return FirmZone(ZoneInfo(name), f"{platform_name}'s {row.platform_timezone}")
    derived = country_zone(row.country, row.region)
    if derived is not None:
        where = row.country + (f", {row.region}" if row.region else "") if row.country else ""
        return FirmZone(ZoneInfo(derived), f"from the company's address: {where}")
    said: list[str] = []
    if row.platform_timezone:
        said.append(
            f"{platform_name}'s time zone {row.platform_timezone!r} is not one arsync knows"
        )
    elif row.platform == "qbo":
        said.append("QuickBooks does not say a company's time zone")
    if row.country:
        where = row.country + (f", {row.region}" if row.region else "")
        said.append(f"its address ({where}) spans more than one")
    else:
        said.append("the company's country is not known")
    raise ZoneUnknown(
        f"{source_file}: timezone: arsync will not plan for {row.company_name or row.name} "
        f"until it knows the firm's time zone: {'; '.join(said)}. Set it in {source_file}, "
        'e.g. timezone = "America/Chicago"'
    )


def person(customer: Customer, firm: FirmZone, override: str | None) -> Person:
    if override:
        return Person(customer.id, customer.name, customer.email, ZoneInfo(override), "set")
    name = country_zone(customer.country, customer.region)
    if name is not None:
        where = customer.country or ""
        return Person(
            customer.id, customer.name, customer.email, ZoneInfo(name), f"billing address ({where})"
        )
    return Person(customer.id, customer.name, customer.email, firm.zone, "the firm's")


def snapshot(
    tx: Tx,
    row: ConnectorRow,
    policy: Policy,
    firm: FirmZone,
    now: datetime,
    *,
    held_only: bool = False,
) -> Snapshot:
    """Everything the planner reads about one connector, from one transaction.

    `held_only`: only what the planner's transitions need (the invoices of customers with a
    hold or a plan, and no history), for recording them after every sync without reading and
    planning a whole book."""
    cid = row.id
    overrides = {s.customer_id: s.value for s in tx.settings.of(cid) if s.key == TIMEZONE_SETTING}
    customers: dict[str, Person] = {}
    for record in tx.records.live(cid, Kind.CUSTOMER).values():
        assert isinstance(record, Customer)
        customers[record.id] = person(record, firm, overrides.get(record.id))
    invoices = tx.records.open_invoices(cid)
    holds = tx.holds.active(cid)
    plans = tx.plans.active(cid)
    named = {h.invoice_id for h in holds if h.invoice_id} | {
        i for p in plans for i in p.invoice_ids
    }
    if held_only:
        concerned = {h.customer_id for h in holds} | {p.customer_id for p in plans}
        invoices = [i for i in invoices if i.customer_id in concerned or i.id in named]
    # a broken promise makes the next stage firmer; a kept settlement ends the chase for good
    ended = [
        h
        for h in tx.holds.ended(cid, (HoldState.BROKEN, HoldState.KEPT))
        if h.state is HoldState.BROKEN
        or (h.state is HoldState.KEPT and h.kind is HoldKind.SETTLEMENT)
    ]
    open_ids = {inv.id for inv in invoices}
    states = tx.records.invoice_states(cid, named - open_ids)
    closed = {invoice_id: status for invoice_id, status in states.items() if status is not None}
    # an invoice gone from the platform is as good as voided for its holds
    closed.update({i: InvoiceStatus.VOIDED for i, s in states.items() if s is None})
    history = [
        Done(
            subject=str(e.detail["subject"]),
            customer_id=str(e.detail["customer"]),
            stage=str(e.detail["stage"]),
            at=datetime.fromisoformat(str(e.detail["at"])),
            contact=bool(e.detail.get("contact", False)),
            superseded=e.action == STAGE_SUPERSEDED,
        )
        for e in (
            ()
            if held_only
            else tx.events.of(cid, entity=Entity.INVOICE, actions=(STAGE_DONE, STAGE_SUPERSEDED))
        )
    ]
    return Snapshot(
        connector=row.name,
        platform=row.platform,
        firm_zone=firm.zone,
        calendar=Calendar.of(policy.calendar, row.country, row.region),
        customers=customers,
        invoices=invoices,
        unapplied=tx.records.unapplied(cid),
        holds=holds,
        ended_holds=ended,
        plans=plans,
        closed=closed,
        history=sorted(history, key=lambda d: d.at),
        last_good_sync=row.last_sync_ok_at,
    )
