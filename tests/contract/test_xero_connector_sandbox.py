"""The Xero connector against the simulated Xero over loopback HTTP: a full pull matches the
organisation's own books field by field, business events show in the next incremental pull,
an idle cycle costs two calls, and only the sweep sees a due-date edit that Xero does not stamp.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from arsync.connectors.base import Endpoints, Limits, Link, Page, StaticTokens
from arsync.connectors.countries import iso_country
from arsync.connectors.xero.connector import XeroConnector
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
from arsync.sandbox.core import XeroLimits
from arsync.sandbox.xero import state as xs
from tests.support import ConnectorRun, session_for

LIMITS = Limits(per_minute=100_000, per_second=None, concurrent=5, per_day=None)
STATUS = {
    "DRAFT": InvoiceStatus.DRAFT,
    "SUBMITTED": InvoiceStatus.DRAFT,
    "AUTHORISED": InvoiceStatus.OPEN,
    "PAID": InvoiceStatus.PAID,
    "VOIDED": InvoiceStatus.VOIDED,
}


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., Sandbox]) -> Sandbox:
    # The clock is frozen, so the minute window never slides: lift the limits for many calls.
    return sandbox_factory(xero=XeroLimits(per_minute=100_000, per_day=1_000_000))


@dataclass
class Run(ConnectorRun):
    """One connector on one organisation, and the sandbox behind it."""

    connector: XeroConnector

    @property
    def org(self) -> xs.Organisation:
        return self.sandbox.xero.orgs[self.tenant]

    def event(self, **event: Any) -> dict[str, Any]:
        return self.sandbox.event("xero", self.tenant, event)

    def invoice(self, pick: Callable[[xs.Invoice], bool], *, but: Iterable[str] = ()) -> xs.Invoice:
        taken = set(but)
        return next(
            i
            for i in self.org.invoice_list
            if i.type == "ACCREC" and i.invoice_id not in taken and pick(i)
        )


@pytest.fixture
def run(sandbox: Sandbox, server: SandboxServer) -> Any:
    tenant = sandbox.xero.tenants()[0].tenant_id
    api_base = Endpoints.sandbox("xero", server.url).api_base
    link = Link("kestrel", "xero", tenant, api_base, LIMITS)
    tokens = StaticTokens(sandbox.connect("xero", tenant).access_token)
    session = session_for(sandbox, "xero", tokens, LIMITS)
    yield Run(sandbox, "xero", tenant, XeroConnector(link, session))
    session.close()


def to_ms(moment: datetime) -> datetime:
    """A time as Xero's /Date(…)/ carries it: to the millisecond."""
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000).astimezone(UTC)


def items(pages: list[Page], stream: str | None = None) -> list[Item]:
    return [i for p in pages if stream is None or p.stream == stream for i in p.items]


def by_id(pages: list[Page], kind: type[Any]) -> dict[str, Any]:
    return {i.id: i for i in items(pages) if isinstance(i, kind)}


# -- the full pull --------------------------------------------------------------------------------
def test_a_full_pull_matches_the_books_field_by_field(run: Run) -> None:
    company = run.connector.company()
    assert (company.name, company.base_currency) == (run.org.name, run.org.base_currency)
    assert company.country == run.org.country
    # the organisation's own zone, as Xero writes it (a Windows zone id, unmapped here)
    assert (
        company.timezone == {"GB": "GMTSTANDARDTIME", "US": "PACIFICSTANDARDTIME"}[run.org.country]
    )
    org = run.org
    with run.sandbox.lock:
        # The generated books archive nobody; archive one so the pull must ask for them too.
        org.contact_list[-1].status = "ARCHIVED"
        org.touch()
    pages = run.pull(None)

    assert not [i for i in items(pages) if isinstance(i, Quarantined)]
    assert pages[0].company == company and all(p.company is None for p in pages[1:])
    assert {k for p in pages for k in p.completed} == set(Kind)
    assert len({p.full_pass for p in pages}) == 1

    customers = by_id(pages, Customer)
    assert {c.contact_id for c in org.contact_list} == set(customers)
    assert any(not c.active for c in customers.values())  # archived contacts come too
    for c in org.contact_list:
        assert customers[c.contact_id] == Customer(
            id=c.contact_id,
            name=c.name,
            email=c.email,
            phone=c.phone,
            currency=c.currency,
            active=c.status == "ACTIVE",
            updated_at=to_ms(c.updated),
            country=iso_country(c.country),
            region=c.region or None,
            tags=tuple(sorted(g.name for g in org.groups_of(c))),
        )

    invoices = by_id(pages, Invoice)
    sales = [i for i in org.invoice_list if i.type == "ACCREC"]
    assert len(sales) < len(org.invoice_list)  # the books hold bills, and they stay out
    assert {i.invoice_id for i in sales} == set(invoices)
    assert {i.status for i in sales} >= {"DRAFT", "AUTHORISED", "PAID", "VOIDED"}
    for inv in sales:
        assert invoices[inv.invoice_id] == Invoice(
            id=inv.invoice_id,
            number=inv.number,
            customer_id=inv.contact.contact_id,
            issue_date=inv.date,
            due_date=inv.due_date,
            currency=inv.currency,
            total=inv.total,
            balance=inv.amount_due,
            status=STATUS[inv.status],
            sent=inv.sent,
            updated_at=to_ms(inv.updated),
            expected_date=inv.expected_payment_date,
        )

    payments = by_id(pages, Payment)
    sales_payments = [p for p in org.payment_list if p.payment_type == "ACCRECPAYMENT"]
    assert {p.payment_id for p in sales_payments} == set(payments)
    for p in sales_payments:
        assert payments[p.payment_id] == Payment(
            id=p.payment_id,
            customer_id=p.invoice.contact.contact_id,
            date=p.date,
            currency=p.invoice.currency,
            amount=p.amount,
            unapplied=Decimal(0),
            status=DocStatus.ACTIVE,
            allocations=(Allocation(p.invoice.invoice_id, p.amount),),
            updated_at=to_ms(p.updated),
        )

    credits = by_id(pages, Credit)
    assert {c.credit_note_id for c in org.credit_list} == set(credits)
    assert any(c.allocations for c in org.credit_list)
    for cn in org.credit_list:
        assert credits[cn.credit_note_id] == Credit(
            id=cn.credit_note_id,
            number=cn.number,
            customer_id=cn.contact.contact_id,
            date=cn.date,
            currency=cn.currency,
            total=cn.total,
            remaining=cn.remaining,
            status=DocStatus.VOIDED if cn.status == "VOIDED" else DocStatus.ACTIVE,
            allocations=tuple(Allocation(a.invoice.invoice_id, a.amount) for a in cn.allocations),
            updated_at=to_ms(cn.updated),
        )


# -- business events, the idle cycle and the sweep ------------------------------------------------
def test_business_events_then_an_idle_cycle_then_the_sweep(run: Run) -> None:
    clock = run.sandbox.clock
    state = run.pull(None)[-1].cursor
    clock.advance(timedelta(minutes=1))

    def unpaid(i: xs.Invoice) -> bool:
        return i.status == "AUTHORISED" and not i.payments and not i.allocations

    used: list[str] = []

    def pick(test: Callable[[xs.Invoice], bool]) -> xs.Invoice:
        inv = run.invoice(test, but=used)
        used.append(inv.invoice_id)
        return inv

    partly = pick(lambda i: unpaid(i) and i.amount_due > 20)
    paid = pick(unpaid)
    credited = pick(lambda i: unpaid(i) and i.amount_due > 20)
    voided = pick(unpaid)
    edited = pick(unpaid)
    draft = pick(lambda i: i.status == "DRAFT")
    contact = run.org.contact_list[0]
    due_before, edited_before = partly.amount_due, edited.total

    run.event(type="payment", invoice=partly.invoice_id, amount="10.00")
    payment_id = run.event(type="payment", invoice=paid.invoice_id)["PaymentID"]
    credit_id = run.event(type="credit", invoice=credited.invoice_id, amount="5.00")["CreditNoteID"]
    run.event(type="void", invoice=voided.invoice_id)
    run.event(type="edit", invoice=edited.invoice_id, amount="123.45")
    run.event(type="void", invoice=draft.invoice_id)  # Xero deletes a draft it is asked to void
    created = run.event(type="create_invoice", contact=contact.contact_id, amount="250.00")
    run.event(type="email_change", contact=contact.contact_id, email="new.ap@kestrel.example")
    clock.advance(timedelta(minutes=1))

    before = run.calls()
    pages = run.pull(state)
    assert run.calls() - before == 4  # invoices changed: payments and credit notes are read
    state = pages[-1].cursor
    invoices = by_id(pages, Invoice)

    assert invoices[partly.invoice_id].balance == due_before - Decimal("10.00")
    assert invoices[partly.invoice_id].status is InvoiceStatus.OPEN
    assert (invoices[paid.invoice_id].status, invoices[paid.invoice_id].balance) == (
        InvoiceStatus.PAID,
        Decimal(0),
    )
    assert invoices[credited.invoice_id].balance == credited.total - Decimal("5.00")
    assert invoices[voided.invoice_id].status is InvoiceStatus.VOIDED
    # the edit sets the first line to 123.45; the sandbox's books say what the total became
    assert invoices[edited.invoice_id].total == edited.total != edited_before
    deleted_at = to_ms(clock.now() - timedelta(minutes=1))
    assert Deleted(Kind.INVOICE, draft.invoice_id, at=deleted_at) in items(pages, "invoices")
    new = invoices[created["InvoiceID"]]
    assert (new.total, new.status, new.customer_id) == (
        Decimal("250.00"),
        InvoiceStatus.OPEN,
        contact.contact_id,
    )
    assert by_id(pages, Customer)[contact.contact_id].email == "new.ap@kestrel.example"
    payments = by_id(pages, Payment)
    assert payments[payment_id].allocations == (Allocation(paid.invoice_id, paid.total),)
    assert {p.allocations[0].invoice_id for p in payments.values()} == {
        partly.invoice_id,
        paid.invoice_id,
    }
    credit = by_id(pages, Credit)[credit_id]
    assert credit.allocations == (Allocation(credited.invoice_id, Decimal("5.00")),)

    # A due-date change on a partly paid invoice leaves UpdatedDateUTC alone (Xero's caveat).
    clock.advance(timedelta(minutes=1))
    result = run.event(type="edit", invoice=partly.invoice_id, due_date="2027-01-15")
    assert result["UpdatedDateUTCMoved"] is False
    clock.advance(timedelta(minutes=1))

    before = run.calls()
    pages = run.pull(state)
    assert run.calls() - before <= 2
    assert items(pages) == []
    state = pages[-1].cursor

    clock.advance(timedelta(minutes=1))
    local = {partly.invoice_id, paid.invoice_id, "00000000-dead-4000-8000-000000000000"}
    pages = run.pull(state, force_sweep=True, local_open=lambda: set(local))
    swept = items(pages, "open invoices")
    seen = {i.id: i for i in swept if isinstance(i, Invoice)}
    assert seen[partly.invoice_id].due_date.isoformat() == "2027-01-15"
    assert seen[paid.invoice_id].status is InvoiceStatus.PAID  # re-read by id: no longer open
    assert Deleted(Kind.INVOICE, "00000000-dead-4000-8000-000000000000") in swept
    assert pages[-1].cursor["swept_at"] == (clock.now() - timedelta(seconds=1)).isoformat()
    assert "cycle" not in pages[-1].cursor
