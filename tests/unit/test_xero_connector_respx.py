"""The Xero connector at the HTTP level: paging, If-Modified-Since, resuming, call counts, sweeps.

A small fake of the Accounting API stands behind respx: it pages, filters by If-Modified-Since,
`where` equalities, Statuses and IDs, and stamps `Date` from its own clock.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import respx

from arsync.clock import FrozenClock
from arsync.connectors.base import Limits, Link, Page, StaticTokens
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession
from arsync.connectors.xero.client import XeroClient
from arsync.connectors.xero.connector import XeroConnector
from arsync.domain import Deleted, Invoice, InvoiceStatus, Kind, Payment
from arsync.errors import DataError

API = "https://api.xero.com"
TENANT = "7e1d0c1a-aaaa-4bbb-8ccc-0123456789ab"
START = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
LIMITS = Limits(per_minute=100_000, per_second=None, concurrent=5, per_day=None)
ENDPOINTS = ("Contacts", "Invoices", "Payments", "CreditNotes")
_WHERE = re.compile(r'^(\w+)=="(\w+)"$')


def ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def from_ms(raw: str) -> datetime:
    match = re.match(r"/Date\((\d+)", raw)
    assert match
    return datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)


class FakeXero:
    """Rows per endpoint, served as Xero serves them; every request is kept."""

    def __init__(self, *, pagination: bool = True) -> None:
        self.now = START
        self.pagination = pagination
        self.rows: dict[str, list[dict[str, Any]]] = {name: [] for name in ENDPOINTS}
        #: contact groups as GET /ContactGroups/{id} gives them (with their Contacts)
        self.groups: list[dict[str, Any]] = []
        self.requests: list[httpx.Request] = []
        self.tenants = [{"tenantId": TENANT, "tenantName": "Kestrel Ltd"}]
        self.organisation: dict[str, Any] = {
            "OrganisationID": TENANT,
            "Name": "Kestrel Ltd",
            "BaseCurrency": "GBP",
            "CountryCode": "GB",
            "Timezone": "GMTSTANDARDTIME",
            "Class": "STANDARD",
        }

    # -- data --------------------------------------------------------------------------------------
    def invoice(self, n: int, *, at: datetime | None = None, **changes: Any) -> dict[str, Any]:
        row = {
            "Type": "ACCREC",
            "InvoiceID": f"inv-{n:05d}",
            "InvoiceNumber": f"INV-{n}",
            "Contact": {"ContactID": "contact-1", "Name": "Acme"},
            "Date": ms(datetime(2026, 10, 1, tzinfo=UTC)),
            "DueDate": ms(datetime(2026, 10, 31, tzinfo=UTC)),
            "Status": "AUTHORISED",
            "Total": Decimal("100.00"),
            "AmountDue": Decimal("100.00"),
            "SentToContact": False,
            "CurrencyCode": "GBP",
            "UpdatedDateUTC": ms(at or START - timedelta(days=30)),
        }
        row.update(changes)
        return row

    def add_invoices(self, count: int, *, at: datetime | None = None, first: int = 1) -> None:
        self.rows["Invoices"] += [self.invoice(n, at=at) for n in range(first, first + count)]

    def payment(self, n: int, invoice: str, *, at: datetime) -> dict[str, Any]:
        return {
            "PaymentID": f"pay-{n}",
            "PaymentType": "ACCRECPAYMENT",
            "Status": "AUTHORISED",
            "Date": ms(datetime(2026, 11, 2, tzinfo=UTC)),
            "Amount": Decimal("40.00"),
            "UpdatedDateUTC": ms(at),
            "Invoice": {
                "Type": "ACCREC",
                "InvoiceID": invoice,
                "CurrencyCode": "GBP",
                "Contact": {"ContactID": "contact-1"},
            },
        }

    def touch(self, invoice_id: str, **changes: Any) -> None:
        for row in self.rows["Invoices"]:
            if row["InvoiceID"] == invoice_id:
                row.update(changes, UpdatedDateUTC=ms(self.now))

    # -- serving -----------------------------------------------------------------------------------
    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        date = {"Date": format_datetime(self.now, usegmt=True)}
        if request.url.path == "/connections":
            return httpx.Response(200, headers=date, json=self.tenants)
        if "/ContactGroups" in request.url.path:
            return self.contact_groups(request, date)
        endpoint = request.url.path.rsplit("/", 1)[-1]
        if endpoint == "Organisation":
            return httpx.Response(200, headers=date, json={"Organisations": [self.organisation]})
        q = request.url.params
        rows = list(self.rows[endpoint])
        if "If-Modified-Since" in request.headers:
            since = datetime.fromisoformat(request.headers["If-Modified-Since"])
            rows = [r for r in rows if from_ms(r["UpdatedDateUTC"]) >= since]
        if "where" in q:
            match = _WHERE.match(q["where"])
            assert match, q["where"]
            rows = [r for r in rows if r.get(match.group(1)) == match.group(2)]
        if "Statuses" in q:
            rows = [r for r in rows if r["Status"] in q["Statuses"].split(",")]
        if "IDs" in q:
            rows = [r for r in rows if r["InvoiceID"] in q["IDs"].split(",")]
        body: dict[str, Any] = {"Id": "x", "Status": "OK"}
        if "page" in q:
            page, size = int(q["page"]), int(q.get("pageSize", "100"))
            if self.pagination:
                body["pagination"] = {
                    "page": page,
                    "pageSize": size,
                    "pageCount": (len(rows) + size - 1) // size,
                    "itemCount": len(rows),
                }
            rows = rows[(page - 1) * size : page * size]
        body[endpoint] = rows
        content = json.dumps(body, default=lambda d: float(d)).encode()
        return httpx.Response(
            200, headers={**date, "Content-Type": "application/json"}, content=content
        )

    def group(self, name: str, *members: str, status: str = "ACTIVE") -> dict[str, Any]:
        row = {
            "ContactGroupID": f"group-{len(self.groups) + 1}",
            "Name": name,
            "Status": status,
            "Contacts": [{"ContactID": m, "Name": m} for m in members],
        }
        self.groups.append(row)
        return row

    def contact_groups(self, request: httpx.Request, date: dict[str, str]) -> httpx.Response:
        tail = request.url.path.split("/ContactGroups", 1)[1].strip("/")
        if not tail:  # the list: ACTIVE groups, without their members
            listed = [g | {"Contacts": []} for g in self.groups if g["Status"] == "ACTIVE"]
            return httpx.Response(200, headers=date, json={"ContactGroups": listed})
        found = [g for g in self.groups if g["ContactGroupID"] == tail and g["Status"] == "ACTIVE"]
        if not found:
            return httpx.Response(404, headers=date, text="not found")
        return httpx.Response(200, headers=date, json={"ContactGroups": found})

    def calls(self, endpoint: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests if endpoint is None or r.url.path.endswith(endpoint)]


@pytest.fixture
def xero() -> Iterator[FakeXero]:
    fake = FakeXero()
    with respx.mock(assert_all_mocked=True) as router:
        router.route(host="api.xero.com").mock(side_effect=fake)
        yield fake


def session() -> ApiSession:
    clock = FrozenClock(START)
    return ApiSession(
        platform="xero",
        tokens=StaticTokens("tok"),
        governor=RateGovernor(LIMITS, clock),
        clock=clock,
    )


def connector(sweep_every: timedelta = timedelta(hours=6)) -> XeroConnector:
    link = Link("acme", "xero", TENANT, API, LIMITS, sweep_every=sweep_every)
    return XeroConnector(link, session())


def pull(
    state: dict[str, Any] | None,
    *,
    full: bool = False,
    force_sweep: bool = False,
    local_open: Callable[[], set[str]] = set,
    now: datetime = START,
) -> list[Page]:
    return list(
        connector().pull(state, full=full, force_sweep=force_sweep, local_open=local_open, now=now)
    )


def killed_after(
    state: dict[str, Any] | None,
    count: int,
    *,
    force_sweep: bool = False,
    local_open: Callable[[], set[str]] = set,
) -> list[Page]:
    """The first `count` pages of a pull, as committed by a sync killed right after them."""
    stream = connector().pull(
        state, full=False, force_sweep=force_sweep, local_open=local_open, now=START
    )
    return list(itertools.islice(stream, count))


def at_rest(since: datetime, swept_at: datetime | None = None) -> dict[str, Any]:
    return {
        "v": 1,
        "phase": "incremental",
        "since": {name: since.isoformat() for name in ENDPOINTS},
        "swept_at": (swept_at or since).isoformat(),
    }


def ims(request: httpx.Request) -> datetime:
    return datetime.fromisoformat(request.headers["If-Modified-Since"])


# -- full pass ------------------------------------------------------------------------------------
def test_full_pass_reads_every_endpoint_and_stops_at_a_short_page(xero: FakeXero) -> None:
    xero.pagination = False
    xero.add_invoices(2500)
    xero.rows["Invoices"].append(xero.invoice(9999, Type="ACCPAY"))
    pages = pull(None)

    invoice_calls = xero.calls("/Invoices")
    assert [c.url.params["page"] for c in invoice_calls] == ["1", "2", "3"]
    for call in invoice_calls:
        assert call.url.params["pageSize"] == "1000"
        assert call.url.params["where"] == 'Type=="ACCREC"'
        assert call.url.params["summaryOnly"] == "true"
        assert "If-Modified-Since" not in call.headers
    assert all(c.headers["xero-tenant-id"] == TENANT for c in xero.requests)
    assert xero.calls("/Contacts")[0].url.params["includeArchived"] == "true"
    assert xero.calls("/Payments")[0].url.params["where"] == 'PaymentType=="ACCRECPAYMENT"'
    assert xero.calls("/CreditNotes")[0].url.params["where"] == 'Type=="ACCRECCREDIT"'
    # the organisation, six pages, and the contact groups (none) with the pass's last page
    assert len(xero.requests) == 8
    assert xero.requests[-1].url.path == "/api.xro/2.0/ContactGroups"

    assert [(p.stream, len(p.items)) for p in pages] == [
        ("contacts", 0),
        ("invoices", 1000),
        ("invoices", 1000),
        ("invoices", 500),
        ("payments", 0),
        ("credit notes", 0),
    ]
    assert [p.completed for p in pages] == [
        {Kind.CUSTOMER},
        set(),
        set(),
        {Kind.INVOICE},
        {Kind.PAYMENT},
        {Kind.CREDIT},
    ]
    assert len({p.full_pass for p in pages}) == 1 and pages[0].full_pass
    assert pages[1].cursor == {
        "v": 1,
        "phase": "initial",
        "pass": pages[0].full_pass,
        "since": (START - timedelta(seconds=1)).isoformat(),
        "endpoint": 1,
        "page": 2,
    }
    assert pages[-1].cursor == at_rest(START - timedelta(seconds=1))


def test_pagination_ends_paging_and_gives_the_total(xero: FakeXero) -> None:
    xero.add_invoices(1000)
    pages = pull(None)
    assert len(xero.calls("/Invoices")) == 1  # pageCount 1: no call for an empty page 2
    invoices = next(p for p in pages if p.stream == "invoices")
    assert invoices.total == 1000
    assert invoices.completed == {Kind.INVOICE}


def test_full_pass_without_pagination_asks_once_more_after_a_full_page(xero: FakeXero) -> None:
    xero.pagination = False
    xero.add_invoices(1000)
    pull(None)
    assert [c.url.params["page"] for c in xero.calls("/Invoices")] == ["1", "2"]


def test_a_killed_full_pass_resumes_at_the_next_page(xero: FakeXero) -> None:
    xero.add_invoices(2500)
    first = killed_after(None, 2)  # contacts, invoices page 1
    cursor = first[-1].cursor
    assert (cursor["endpoint"], cursor["page"]) == (1, 2)

    xero.now = START + timedelta(minutes=10)
    xero.requests.clear()
    rest = pull(cursor)
    assert [(c.url.path, c.url.params["page"]) for c in xero.requests[:2]] == [
        ("/api.xro/2.0/Invoices", "2"),
        ("/api.xro/2.0/Invoices", "3"),
    ]
    assert not xero.calls("/Contacts")
    assert [len(p.items) for p in rest[:2]] == [1000, 500]
    assert {p.full_pass for p in rest} == {first[0].full_pass}
    # since stays where the pass began, not where it resumed
    assert rest[-1].cursor == at_rest(START - timedelta(seconds=1))


def test_full_starts_a_new_pass_whatever_the_state(xero: FakeXero) -> None:
    pages = pull(at_rest(START), full=True)
    assert [p.stream for p in pages] == ["contacts", "invoices", "payments", "credit notes"]
    assert all(p.full_pass for p in pages)


def test_an_unreadable_cursor_starts_a_full_pass(xero: FakeXero) -> None:
    pages = pull({"v": 99, "phase": "incremental"})
    assert [p.stream for p in pages] == ["contacts", "invoices", "payments", "credit notes"]
    assert not any("If-Modified-Since" in c.headers for c in xero.requests)


# -- incremental cycles ---------------------------------------------------------------------------
def test_idle_cycle_is_two_calls_with_the_cursor_since(xero: FakeXero) -> None:
    xero.add_invoices(5)
    since = START - timedelta(hours=1, seconds=1)
    xero.now = START + timedelta(minutes=5)
    pages = pull(at_rest(since, swept_at=START))

    assert [c.url.path.rsplit("/", 1)[-1] for c in xero.requests] == ["Invoices", "Contacts"]
    for call in xero.requests:
        # ISO 8601, as Xero's OpenAPI file says (date-time), not HTTP's RFC 1123 form
        assert call.headers["If-Modified-Since"] == "2026-11-23T13:59:59+00:00"
        assert call.url.params["pageSize"] == "1000"
    assert xero.calls("/Invoices")[0].url.params["where"] == 'Type=="ACCREC"'
    assert all(p.items == [] for p in pages)
    new_since = xero.now - timedelta(seconds=1)
    final = pages[-1].cursor
    assert final["since"]["Invoices"] == final["since"]["Contacts"] == new_since.isoformat()
    # endpoints not read keep their since: nothing of theirs was looked at
    assert final["since"]["Payments"] == final["since"]["CreditNotes"] == since.isoformat()
    assert final["swept_at"] == START.isoformat()
    assert "cycle" not in final


def test_a_changed_invoice_brings_payments_and_credit_notes(xero: FakeXero) -> None:
    xero.add_invoices(3)
    since = START - timedelta(seconds=1)
    xero.now = START + timedelta(minutes=1)
    xero.touch("inv-00002", AmountDue=Decimal("60.00"))
    xero.rows["Payments"].append(xero.payment(1, "inv-00002", at=xero.now))
    pages = pull(at_rest(since))

    assert [c.url.path.rsplit("/", 1)[-1] for c in xero.requests] == [
        "Invoices",
        "Contacts",
        "Payments",
        "CreditNotes",
    ]
    assert all(ims(c) == since for c in xero.requests)
    assert xero.calls("/Payments")[0].url.params["where"] == 'PaymentType=="ACCRECPAYMENT"'
    by_stream = {p.stream: p.items for p in pages}
    (invoice,) = by_stream["invoices"]
    assert isinstance(invoice, Invoice)
    assert (invoice.id, invoice.balance) == ("inv-00002", Decimal("60"))
    (payment,) = by_stream["payments"]
    assert isinstance(payment, Payment)
    assert payment.allocations[0].invoice_id == "inv-00002"
    assert pages[-1].cursor == at_rest(xero.now - timedelta(seconds=1), swept_at=since)


def test_invoices_from_the_overlap_second_are_not_news(xero: FakeXero) -> None:
    # The previous cycle's reply was dated START; since = START - 1 s re-reads that second.
    xero.add_invoices(1, at=START - timedelta(milliseconds=500))
    xero.now = START + timedelta(minutes=1)
    pages = pull(at_rest(START - timedelta(seconds=1)))
    assert [c.url.path.rsplit("/", 1)[-1] for c in xero.requests] == ["Invoices", "Contacts"]
    (item,) = [i for p in pages for i in p.items]  # still passed on: a re-read is harmless
    assert isinstance(item, Invoice)


def test_a_kill_mid_cycle_resumes_at_the_page_reached(xero: FakeXero) -> None:
    since = START - timedelta(seconds=1)
    xero.now = START + timedelta(minutes=1)
    xero.add_invoices(1500, at=xero.now)
    (first,) = killed_after(at_rest(since), 1)
    cycle = first.cursor["cycle"]
    assert (cycle["steps"][cycle["step"]], cycle["page"]) == ("Invoices", 2)
    # the first page moved nothing: a page still to read must be read from the old since
    assert first.cursor["since"]["Invoices"] == since.isoformat()

    first_reply = xero.now
    xero.now = START + timedelta(minutes=7)
    xero.requests.clear()
    rest = pull(first.cursor)
    second = xero.requests[0]
    assert (second.url.path, second.url.params["page"]) == ("/api.xro/2.0/Invoices", "2")
    assert ims(second) == since
    assert len(rest[0].items) == 500
    final = rest[-1].cursor
    # Invoices moves to its first reply of the cycle (before the kill); Contacts to its own
    assert final["since"]["Invoices"] == (first_reply - timedelta(seconds=1)).isoformat()
    assert final["since"]["Contacts"] == (xero.now - timedelta(seconds=1)).isoformat()
    assert [c.url.path.rsplit("/", 1)[-1] for c in xero.requests] == [
        "Invoices",
        "Contacts",
        "Payments",
        "CreditNotes",
    ]


def test_a_kill_after_changed_invoices_still_reads_payments(xero: FakeXero) -> None:
    since = START - timedelta(seconds=1)
    xero.add_invoices(1, at=START)
    # the changed invoice, committed with the plan to read payments
    (first,) = killed_after(at_rest(since), 1)
    xero.requests.clear()
    pull(first.cursor)
    assert [c.url.path.rsplit("/", 1)[-1] for c in xero.requests] == [
        "Contacts",
        "Payments",
        "CreditNotes",
    ]


# -- sweeps ---------------------------------------------------------------------------------------
def test_a_due_sweep_lists_open_invoices_and_rechecks_the_rest(xero: FakeXero) -> None:
    xero.add_invoices(3)
    xero.rows["Invoices"][1].update(Status="PAID", AmountDue=Decimal(0))
    since = START - timedelta(seconds=1)
    swept = START - timedelta(hours=6)
    local = {"inv-00001", "inv-00002", "inv-gone"}
    pages = pull(at_rest(since, swept_at=swept), local_open=lambda: set(local), now=START)

    names = [(c.url.path.rsplit("/", 1)[-1], c.url.params.get("Statuses")) for c in xero.requests]
    assert names == [
        ("Invoices", None),
        ("Contacts", None),
        ("Invoices", "AUTHORISED"),
        ("Invoices", None),
        ("Payments", None),
        ("CreditNotes", None),
        ("ContactGroups", None),
    ]
    listing, recheck = xero.requests[2], xero.requests[3]
    assert "If-Modified-Since" not in listing.headers
    assert listing.url.params["where"] == 'Type=="ACCREC"'
    assert recheck.url.params["IDs"] == "inv-00002,inv-gone"
    assert "If-Modified-Since" in xero.requests[4].headers

    sweep_pages = [p for p in pages if p.stream == "open invoices"]
    assert [i.id for i in sweep_pages[0].items if isinstance(i, Invoice)] == [
        "inv-00001",
        "inv-00003",
    ]
    rechecked = sweep_pages[1].items
    assert any(
        isinstance(i, Invoice) and i.id == "inv-00002" and i.status is InvoiceStatus.PAID
        for i in rechecked
    )
    assert Deleted(Kind.INVOICE, "inv-gone") in rechecked
    assert pages[-1].cursor["swept_at"] == since.isoformat()


def test_no_sweep_before_it_is_due_unless_forced(xero: FakeXero) -> None:
    since = START - timedelta(seconds=1)
    state = at_rest(since, swept_at=START - timedelta(hours=5))
    pull(state)
    assert len(xero.requests) == 2
    xero.requests.clear()
    pages = pull(state, force_sweep=True)
    assert any(c.url.params.get("Statuses") == "AUTHORISED" for c in xero.requests)
    assert pages[-1].cursor["swept_at"] == since.isoformat()


def test_a_sweep_killed_mid_listing_lists_again_and_rechecks_only_the_unseen(
    xero: FakeXero,
) -> None:
    xero.add_invoices(1500)
    local = {f"inv-{n:05d}" for n in range(1, 1501)} | {"inv-gone"}
    state = at_rest(START - timedelta(seconds=1))
    pages = killed_after(state, 3, force_sweep=True, local_open=lambda: set(local))
    assert pages[-1].stream == "open invoices"
    xero.requests.clear()
    pull(pages[-1].cursor, local_open=lambda: set(local))
    listing = [c for c in xero.requests if c.url.params.get("Statuses") == "AUTHORISED"]
    assert [c.url.params["page"] for c in listing] == ["1", "2"]
    (recheck,) = [c for c in xero.requests if "IDs" in c.url.params]
    assert recheck.url.params["IDs"] == "inv-gone"


# -- company and envelopes ------------------------------------------------------------------------
def test_company_is_the_organisation_read_once(xero: FakeXero) -> None:
    company = connector().company()
    assert (company.name, company.base_currency, company.country) == ("Kestrel Ltd", "GBP", "GB")
    assert (company.timezone, company.edition) == ("GMTSTANDARDTIME", "STANDARD")
    (call,) = xero.requests
    assert call.url == httpx.URL(f"{API}/api.xro/2.0/Organisation")
    assert call.headers["xero-tenant-id"] == TENANT
    # a time zone Xero added after this arsync was written is kept as Xero wrote it
    xero.organisation = {"Name": "Kestrel Ltd", "Timezone": "MARSSTANDARDTIME"}
    assert connector().company().timezone == "MARSSTANDARDTIME"
    xero.organisation = {"Name": ""}
    with pytest.raises(DataError, match="Name"):
        connector().company()


def test_a_full_pass_stores_the_organisation_with_its_first_page(xero: FakeXero) -> None:
    xero.add_invoices(3)
    pages = pull(None)
    assert pages[0].company is not None and pages[0].company.name == "Kestrel Ltd"
    assert all(p.company is None for p in pages[1:])
    assert len(xero.calls("/Organisation")) == 1
    xero.requests.clear()
    pull(at_rest(START - timedelta(minutes=5)))  # an incremental cycle does not read it
    assert xero.calls("/Organisation") == []


def test_malformed_envelopes_are_data_errors() -> None:
    client = XeroClient(session(), TENANT, API)
    date = {"Date": format_datetime(START, usegmt=True)}
    with respx.mock() as router:
        route = router.get(f"{API}/api.xro/2.0/Invoices")
        bodies: list[Any] = [{"Invoices": "none"}, {"Other": []}, [1], {"Invoices": [1]}]
        for body in bodies:
            route.mock(return_value=httpx.Response(200, headers=date, json=body))
            with pytest.raises(DataError):
                client.page("Invoices", 1)
        route.mock(return_value=httpx.Response(200, json={"Invoices": []}))
        with pytest.raises(DataError, match="Date"):
            client.page("Invoices", 1)
        route.mock(
            return_value=httpx.Response(
                200, headers=date, json={"Invoices": [], "pagination": "all"}
            )
        )
        with pytest.raises(DataError, match="pagination"):
            client.page("Invoices", 1)


def test_invoices_by_id_asks_a_hundred_at_a_time(xero: FakeXero) -> None:
    xero.add_invoices(250)
    client = connector().client
    rows = client.invoices_by_id([f"inv-{n:05d}" for n in range(1, 251)])
    assert len(rows) == 250
    assert [len(c.url.params["IDs"].split(",")) for c in xero.requests] == [100, 100, 50]


# -- contact groups -------------------------------------------------------------------------------
def test_a_full_pass_carries_every_contacts_groups_with_its_last_page(xero: FakeXero) -> None:
    xero.group("Do not chase", "contact-1", "contact-2")
    xero.group("Slow payers", "contact-2")
    xero.group("Gone", "contact-3", status="DELETED")
    pages = pull(None)
    groups = [c for c in xero.requests if "/ContactGroups" in c.url.path]
    # the list, then each ACTIVE group once; last, when every contact is in the store
    assert [c.url.path.rsplit("/", 1)[-1] for c in groups] == [
        "ContactGroups",
        "group-1",
        "group-2",
    ]
    assert xero.requests[-3:] == groups
    *before, last = pages
    assert last.tags == {
        "contact-1": ("Do not chase",),
        "contact-2": ("Do not chase", "Slow payers"),
    }
    assert last.stream == "credit notes" and last.cursor["phase"] == "incremental"
    assert all(p.tags is None for p in before)


def test_a_sweep_reads_the_groups_once_and_a_cycle_not_at_all(xero: FakeXero) -> None:
    xero.group("Do not chase", "contact-1")
    xero.group("Disputes", "contact-4")
    since = START - timedelta(seconds=1)
    plain = pull(at_rest(since, swept_at=START - timedelta(hours=1)))
    assert not any("/ContactGroups" in c.url.path for c in xero.requests)
    assert all(p.tags is None for p in plain)

    xero.requests.clear()
    swept = pull(at_rest(since, swept_at=START - timedelta(hours=1)), force_sweep=True)
    groups = [c for c in xero.requests if "/ContactGroups" in c.url.path]
    assert len(groups) == 1 + 2  # the list and each active group
    assert all("If-Modified-Since" not in c.headers for c in groups)
    tagged = [p for p in swept if p.tags is not None]
    assert tagged == [swept[-1]]  # the sweep's last page, with its cursor at rest
    assert "cycle" not in tagged[0].cursor
    assert tagged[0].tags == {"contact-1": ("Do not chase",), "contact-4": ("Disputes",)}
    # 2 (invoices, contacts) + 3 (groups) + 1 (open invoices) + 2 (payments, credit notes)
    assert len(xero.requests) == 8


def test_a_sweep_killed_before_its_last_page_reads_the_groups_when_it_resumes(
    xero: FakeXero,
) -> None:
    xero.group("Do not chase", "contact-1")
    state = at_rest(START - timedelta(seconds=1))
    first = killed_after(state, 2, force_sweep=True)  # invoices, contacts
    assert all(p.tags is None for p in first)
    assert not any("/ContactGroups" in c.url.path for c in xero.requests)
    rest = pull(first[-1].cursor)
    assert rest[-1].tags == {"contact-1": ("Do not chase",)}
    assert len([c for c in xero.requests if "/ContactGroups" in c.url.path]) == 2


def test_a_group_deleted_while_being_read_labels_nobody(xero: FakeXero) -> None:
    xero.group("Do not chase", "contact-1")
    xero.group("Vanishing", "contact-2")
    real = xero.contact_groups

    def vanishing(request: httpx.Request, date: dict[str, str]) -> httpx.Response:
        reply = real(request, date)
        if request.url.path.endswith("/ContactGroups"):
            xero.groups[1]["Status"] = "DELETED"  # gone between the list and its own read
        return reply

    xero.contact_groups = vanishing  # type: ignore[method-assign]
    pages = pull(None)
    assert pages[-1].tags == {"contact-1": ("Do not chase",)}


def test_unreadable_groups_leave_the_labels_as_they_were(xero: FakeXero) -> None:
    row = xero.group("Do not chase", "contact-1")
    row["Contacts"] = [{"Name": "no id"}]
    pages = pull(None)
    assert all(p.tags is None for p in pages)  # says nothing, rather than clear every label
