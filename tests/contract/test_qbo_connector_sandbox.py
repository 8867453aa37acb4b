"""The QBO connector against the sandbox over real loopback HTTP: every field, every event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from arsync.connectors.base import Endpoints, Limits, Link, Page
from arsync.connectors.countries import iso_country
from arsync.connectors.quickbooks.connector import QuickBooksConnector
from arsync.domain import (
    Allocation,
    Credit,
    Customer,
    Deleted,
    DocStatus,
    Invoice,
    InvoiceStatus,
    Item,
    Kind,
    Payment,
    Quarantined,
)
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits
from arsync.sandbox.qbo.model import Company
from tests.contract.qbo_support import connect_api
from tests.support import ConnectorRun, session_for

LIMITS = Limits(per_minute=100_000, per_second=10_000, concurrent=10, per_day=None)


@dataclass
class World(ConnectorRun):
    connector: QuickBooksConnector
    event_at: datetime | None = None

    @property
    def realm(self) -> str:
        return self.tenant

    @property
    def company(self) -> Company:
        return self.sandbox.qbo.company(self.realm)

    def event(self, **event: Any) -> dict[str, Any]:
        """A business event a minute after the last pull, and a minute before the next one.

        CDC's `changedSince` is inclusive, so a change at the very instant of a pull would come
        again in the next one: the gaps let each pull see exactly its own event's changes.
        """
        self.sandbox.clock.advance(timedelta(minutes=1))
        self.event_at = self.sandbox.clock.now()
        result = self.sandbox.event("qbo", self.realm, event)
        self.sandbox.clock.advance(timedelta(minutes=1))
        return result


class SandboxTokens:
    """Tokens straight from the sandbox's control plane; a new one when the old one expires."""

    def __init__(self, sandbox: Sandbox, realm: str) -> None:
        self.sandbox, self.realm = sandbox, realm
        self.token = sandbox.connect("qbo", realm).access_token

    def access_token(self) -> str:
        return self.token

    def invalidate(self, token: str) -> None:
        self.token = self.sandbox.connect("qbo", self.realm).access_token


@pytest.fixture
def world(sandbox_factory: Callable[..., Sandbox]) -> Iterator[World]:
    # The test clock is frozen, so rate windows never slide: raise the limits for many calls.
    sandbox = sandbox_factory(qbo=QboLimits(per_second=10_000, per_minute=100_000))
    with SandboxServer(sandbox) as server:
        realm = sandbox.qbo.tenants()[0].tenant_id
        link = Link("harbor", "qbo", realm, Endpoints.sandbox("qbo", server.url).api_base, LIMITS)
        session = session_for(sandbox, "qbo", SandboxTokens(sandbox, realm), LIMITS)
        connector = QuickBooksConnector(link, session)
        # One inactive customer, made so through the API as a bookkeeper would.
        api = connect_api(server, realm)
        try:
            quiet = next(c for c in sandbox.qbo.company(realm).customers.values() if c.active)
            body = {"Id": str(quiet.id), "SyncToken": str(quiet.sync), "sparse": True}
            assert api.post("customer", {**body, "Active": False}).status_code == 200
            yield World(sandbox, "qbo", realm, connector)
        finally:
            api.close()
            session.close()


def settled(world: World) -> dict[str, Any]:
    """The cursor after a full pull and a first increment.

    Records the books last changed at the very instant of the full pass come again in the first
    increment (CDC's `changedSince` is inclusive); after it, an increment holds only new changes.
    """
    _pages, state = full_pull(world)
    world.sandbox.clock.advance(timedelta(minutes=1))
    return world.pull(state)[-1].cursor


def items_of(pages: list[Page], stream: str | None = None) -> list[Item]:
    return [i for p in pages if stream is None or p.stream == stream for i in p.items]


def by_id(items: list[Item], kind: type) -> dict[str | None, Any]:
    return {i.id: i for i in items if isinstance(i, kind)}


def utc(moment: datetime) -> datetime:
    # QBO writes LastUpdatedTime to the second.
    return moment.astimezone(UTC).replace(microsecond=0)


# -- what the sandbox itself holds, as arsync records -------------------------------------------
def expected_customers(company: Company) -> dict[str, Customer]:
    types = company.customer_types
    return {
        str(c.id): Customer(
            id=str(c.id),
            name=c.display_name,
            email=c.email,
            phone=c.phone,
            currency=c.currency,
            active=c.active,
            updated_at=utc(c.updated),
            country=iso_country(c.country),
            region=c.region or None,
            tags=(types[c.type_id].name,) if c.type_id is not None else (),
            notes=c.notes or None,
        )
        for c in company.customers.values()
    }


def expected_invoices(company: Company) -> dict[str, Invoice]:
    out = {}
    for inv in company.invoices.values():
        if inv.total == 0 and inv.private_note == "Voided":
            status = InvoiceStatus.VOIDED
        elif inv.balance == 0:
            status = InvoiceStatus.PAID
        else:
            status = InvoiceStatus.OPEN
        out[str(inv.id)] = Invoice(
            id=str(inv.id),
            number=inv.doc_number,
            customer_id=str(inv.customer_id),
            issue_date=inv.txn_date,
            due_date=inv.due_date,
            currency=inv.currency,
            total=inv.total,
            balance=inv.balance,
            status=status,
            sent=inv.email_status == "EmailSent",
            updated_at=utc(inv.updated),
        )
    return out


def expected_payments(company: Company) -> dict[str, Payment]:
    out = {}
    for pay in company.payments.values():
        applied: dict[str, Decimal] = {}
        for line in pay.lines:
            if line.txn_type == "Invoice":
                applied[str(line.txn_id)] = applied.get(str(line.txn_id), Decimal(0)) + line.amount
        out[str(pay.id)] = Payment(
            id=str(pay.id),
            customer_id=str(pay.customer_id),
            date=pay.txn_date,
            currency=pay.currency,
            amount=pay.total,
            unapplied=pay.unapplied,
            status=DocStatus.ACTIVE,
            allocations=tuple(Allocation(k, v) for k, v in applied.items()),
            updated_at=utc(pay.updated),
        )
    return out


def expected_credits(company: Company) -> dict[str, Credit]:
    return {
        str(cm.id): Credit(
            id=str(cm.id),
            number=cm.doc_number,
            customer_id=str(cm.customer_id),
            date=cm.txn_date,
            currency=cm.currency,
            total=cm.total,
            remaining=cm.remaining,
            status=DocStatus.ACTIVE,
            allocations=(),
            updated_at=utc(cm.updated),
        )
        for cm in company.credits.values()
    }


def full_pull(world: World) -> tuple[list[Page], dict[str, Any]]:
    pages = world.pull(None)
    return pages, pages[-1].cursor


# -- the full pass -------------------------------------------------------------------------------
def test_full_pull_matches_the_sandbox_field_by_field(world: World) -> None:
    before = world.calls()
    pages, cursor = full_pull(world)
    company = world.company
    items = items_of(pages)
    assert not [i for i in items if isinstance(i, Quarantined)]
    assert by_id(items, Customer) == expected_customers(company)
    assert by_id(items, Invoice) == expected_invoices(company)
    assert by_id(items, Payment) == expected_payments(company)
    assert by_id(items, Credit) == expected_credits(company)
    # The books hold every case the mapping tells apart.
    assert {c.active for c in by_id(items, Customer).values()} == {True, False}
    assert {i.status for i in by_id(items, Invoice).values()} == set(InvoiceStatus) - {
        InvoiceStatus.DRAFT
    }
    assert any(p.allocations and p.amount == 0 for p in by_id(items, Payment).values())

    assert [p.stream for p in pages] == ["customers", "invoices", "payments", "credit memos"]
    assert [p.completed for p in pages] == [frozenset({k}) for k in Kind]
    # The pass is stamped with the platform's (frozen) clock, not the local one.
    assert {p.full_pass for p in pages} == {"2026-11-23T15:00:00.000+00:00"}
    assert cursor["phase"] == "incremental"
    assert cursor["since"] == cursor["swept_at"] == "2026-11-23T15:00:00.000+00:00"
    # The company (CompanyInfo and Preferences), then one page per entity (no customer has a
    # customer type, so the types are not read).
    assert world.calls() - before == 6
    info = pages[0].company
    assert info is not None and all(p.company is None for p in pages[1:])
    assert (info.name, info.country) == (company.name, company.country)
    assert info.base_currency == company.currency and info.timezone is None


def test_a_killed_pass_resumes_at_the_next_page(world: World) -> None:
    pulling = world.connector.pull(
        None, full=False, force_sweep=False, local_open=set, now=world.sandbox.clock.now()
    )
    # Killed after the invoices page was committed: the pull is never asked for more.
    first, second = next(pulling), next(pulling)
    assert (first.stream, second.stream) == ("customers", "invoices")
    before = world.calls()
    rest = world.pull(second.cursor)
    assert world.calls() - before == 2  # payments and credit memos only
    assert [p.stream for p in rest] == ["payments", "credit memos"]
    assert {p.full_pass for p in rest} == {second.full_pass}
    assert by_id(items_of(rest), Payment) == expected_payments(world.company)


def test_company_info(world: World) -> None:
    info = world.connector.company()
    tenant = world.sandbox.qbo.tenants()[0]
    assert (info.name, info.country) == (tenant.name, tenant.country)
    # The home currency comes from Preferences; QBO has no time zone to give.
    assert info.base_currency == tenant.base_currency and info.timezone is None


def test_a_cdc_the_platform_refuses_for_its_age_starts_a_full_pass(world: World) -> None:
    """Our clock runs two hours behind QuickBooks': by ours the cursor is 29 days and 23 hours
    old, by QuickBooks' past CDC's 30 days, and QuickBooks refuses. A full pass follows at once,
    instead of the same refusal every cycle."""
    state = settled(world)
    world.sandbox.clock.advance(timedelta(days=30, minutes=30))
    ours = world.sandbox.clock.now() - timedelta(hours=2)
    before = world.calls()
    pages = list(
        world.connector.pull(state, full=False, force_sweep=False, local_open=set, now=ours)
    )
    refused = [
        e
        for e in world.sandbox.ledger.entries(platform="qbo", kind="request")
        if e.endpoint and "cdc" in e.endpoint
    ][-1]
    assert refused.status == 400
    assert [p.stream for p in pages] == ["customers", "invoices", "payments", "credit memos"]
    assert pages[-1].cursor["phase"] == "incremental"
    # a month on, the access token had expired (401, then a fresh one); the refused CDC; the
    # company (CompanyInfo, Preferences); one page per entity
    assert world.calls() - before == 1 + 1 + 2 + 4


# -- increments ----------------------------------------------------------------------------------
def test_each_business_event_shows_in_one_incremental_call(world: World) -> None:
    state = settled(world)
    company = world.company

    def incremental(expected: set[tuple[type, str]]) -> list[Item]:
        nonlocal state
        before = world.calls()
        pages = world.pull(state)
        assert world.calls() - before == 1
        assert [p.stream for p in pages] == ["changes"]
        state = pages[-1].cursor
        assert state["since"] == world.sandbox.clock.now().isoformat(timespec="milliseconds")
        items = items_of(pages)
        assert {(type(i), i.id) for i in items} == expected
        return items

    open_ids = [i.id for i in company.invoices.values() if i.balance == i.total > 10]
    partial, full, credited, edited, deleted = (str(i) for i in open_ids[:5])

    # A partial payment.
    paid = world.event(type="payment", invoice=partial, amount="10.00")
    got = incremental({(Invoice, partial), (Payment, paid["payment"])})
    inv = by_id(got, Invoice)[partial]
    assert inv.balance == inv.total - Decimal("10.00") and inv.status is InvoiceStatus.OPEN
    pay = by_id(got, Payment)[paid["payment"]]
    assert pay.allocations == (Allocation(partial, Decimal("10.00")),)
    assert pay == expected_payments(company)[paid["payment"]]

    # A payment in full.
    paid_in_full = world.event(type="payment", invoice=full)
    got = incremental({(Invoice, full), (Payment, paid_in_full["payment"])})
    assert by_id(got, Invoice)[full].status is InvoiceStatus.PAID
    assert by_id(got, Invoice)[full].balance == 0

    # A credit memo, applied through a payment of zero.
    credit = world.event(type="credit", invoice=credited, amount="5.00")
    got = incremental(
        {(Invoice, credited), (Credit, credit["credit_memo"]), (Payment, credit["payment"])}
    )
    assert (
        by_id(got, Credit)[credit["credit_memo"]]
        == expected_credits(company)[credit["credit_memo"]]
    )
    applied = by_id(got, Payment)[credit["payment"]]
    assert (applied.amount, applied.allocations) == (0, (Allocation(credited, Decimal("5.00")),))

    # A void: the partial payment is left unapplied.
    world.event(type="void", invoice=partial)
    got = incremental({(Invoice, partial), (Payment, paid["payment"])})
    voided = by_id(got, Invoice)[partial]
    assert (voided.status, voided.total, voided.balance) == (InvoiceStatus.VOIDED, 0, 0)
    unapplied = by_id(got, Payment)[paid["payment"]]
    assert (unapplied.unapplied, unapplied.allocations) == (Decimal("10.00"), ())

    # A new due date.
    world.event(type="edit", invoice=edited, due_date="2027-01-15")
    got = incremental({(Invoice, edited)})
    assert by_id(got, Invoice)[edited].due_date.isoformat() == "2027-01-15"

    # A new invoice.
    customer = str(next(c.id for c in company.customers.values() if c.active))
    created = world.event(type="create_invoice", customer=customer, amount="250.00")
    got = incremental({(Invoice, created["invoice"])})
    new = by_id(got, Invoice)[created["invoice"]]
    assert (new.customer_id, new.total, new.balance) == (customer, 250, 250)
    assert new == expected_invoices(company)[created["invoice"]]

    # A deletion.
    world.event(type="delete_invoice", invoice=deleted)
    got = incremental({(Deleted, deleted)})
    assert got == [Deleted(Kind.INVOICE, deleted, at=world.event_at)]

    # A new email address.
    world.event(type="email_change", customer=customer, email="ap@new.example")
    got = incremental({(Customer, customer)})
    assert by_id(got, Customer)[customer].email == "ap@new.example"

    # Nothing happened: still exactly one call, and the cursor moves on.
    world.sandbox.clock.advance(timedelta(minutes=1))
    incremental(set())


def test_an_idle_cycle_costs_exactly_one_call(world: World) -> None:
    state = settled(world)
    for _ in range(3):
        world.sandbox.clock.advance(timedelta(minutes=5))
        before = world.calls()
        pages = world.pull(state)
        assert world.calls() - before == 1
        assert len(pages) == 1 and pages[0].items == []
        assert pages[0].cursor["since"] > state["since"]
        state = pages[0].cursor
    counts = world.sandbox.ledger.request_counts("qbo")
    assert counts["GET /v3/company/{realmId}/cdc"] == 1 + 3


# -- the sweep -----------------------------------------------------------------------------------
def test_sweep_finds_a_deleted_open_invoice(world: World) -> None:
    pages, state = full_pull(world)
    local_open = {i.id for i in by_id(items_of(pages), Invoice).values() if i.balance > 0}
    company = world.company
    gone, paid = sorted(local_open, key=int)[:2]
    world.event(type="delete_invoice", invoice=gone)
    world.event(type="payment", invoice=paid)

    before = world.calls()
    swept = world.pull(state, force_sweep=True, local_open=lambda: set(local_open))
    # One CDC call, one page of open invoices, one re-read of those no longer listed as open.
    assert world.calls() - before == 3
    sweep = [p for p in swept if p.stream == "open invoices"]
    assert len(sweep) == 1
    found = sweep[0].items
    assert Deleted(Kind.INVOICE, gone) in found
    assert by_id(found, Invoice)[paid].status is InvoiceStatus.PAID
    still_open = {str(i.id) for i in company.invoices.values() if i.balance > 0}
    assert {i.id for i in found if isinstance(i, Invoice) and i.balance > 0} == still_open
    assert sweep[0].cursor["swept_at"] == world.sandbox.clock.now().isoformat(
        timespec="milliseconds"
    )

    # Not due again until `sweep_every` has passed.
    world.sandbox.clock.advance(timedelta(hours=1))
    assert [p.stream for p in world.pull(sweep[0].cursor)] == ["changes"]
    world.sandbox.clock.advance(timedelta(hours=5))
    assert [p.stream for p in world.pull(sweep[0].cursor)] == ["changes", "open invoices"]
