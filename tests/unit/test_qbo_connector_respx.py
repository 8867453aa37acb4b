"""The QBO connector at the HTTP level: paging, resuming, CDC saturation and its fallbacks."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import respx

from arsync.clock import FrozenClock
from arsync.connectors.base import Limits, Link, Page, StaticTokens
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession
from arsync.connectors.quickbooks.client import QuickBooksClient
from arsync.connectors.quickbooks.connector import QuickBooksConnector
from arsync.domain import Customer, Deleted, Invoice, InvoiceStatus, Kind, Payment
from arsync.errors import DataError

API = "https://qbo.test"
REALM = "9130"
BASE = f"{API}/v3/company/{REALM}"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
LIMITS = Limits(per_minute=1_000_000, per_second=1_000_000, concurrent=10, per_day=None)
ENTITIES = ("Customer", "Invoice", "Payment", "CreditMemo", "CustomerType")


def invoice_row(n: int, updated: str = "2026-11-20T10:00:00-08:00") -> dict[str, Any]:
    return {
        "Id": str(n),
        "DocNumber": f"INV-{n}",
        "TxnDate": "2026-10-01",
        "DueDate": "2026-10-31",
        "CustomerRef": {"value": "1"},
        "CurrencyRef": {"value": "USD"},
        "TotalAmt": 100,
        "Balance": 100,
        "MetaData": {"LastUpdatedTime": updated},
    }


def customer_row(n: int) -> dict[str, Any]:
    return {
        "Id": str(n),
        "DisplayName": f"Customer {n}",
        "Active": n % 2 == 0,
        "MetaData": {"LastUpdatedTime": "2026-11-01T10:00:00-08:00"},
    }


def payment_row(n: int) -> dict[str, Any]:
    return {
        "Id": str(n),
        "TotalAmt": 10,
        "UnappliedAmt": 0,
        "TxnDate": "2026-11-01",
        "CustomerRef": {"value": "1"},
        "CurrencyRef": {"value": "USD"},
        "Line": [{"Amount": 10, "LinkedTxn": [{"TxnId": "1", "TxnType": "Invoice"}]}],
        "MetaData": {"LastUpdatedTime": "2026-11-21T10:00:00-08:00"},
    }


def deleted_row(n: int) -> dict[str, Any]:
    return {
        "domain": "QBO",
        "status": "Deleted",
        "Id": str(n),
        "MetaData": {"LastUpdatedTime": "2026-11-22T10:00:00-08:00"},
    }


class FakeQbo:
    """The few endpoints the connector calls, answering from in-memory tables.

    Every reply's `time` is one second later than the one before, so a test can tell which
    reply a cursor took its time from.
    """

    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {e: [] for e in ENTITIES}
        #: replies to CDC calls, by the `entities` parameter as sent
        self.cdc_replies: dict[str, dict[str, list[dict[str, Any]]]] = {}
        self.calls: list[str] = []
        self.clock = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
        #: the `time` of every reply, in order
        self.stamps: list[str] = []
        self.preferences: dict[str, Any] | None = {
            "CurrencyPrefs": {"HomeCurrency": {"value": "USD"}, "MultiCurrencyEnabled": True}
        }
        #: a CDC refusal to answer instead of changes (e.g. changedSince too old for QBO)
        self.cdc_fault: dict[str, Any] | None = None

    def stamp(self) -> str:
        self.clock += timedelta(seconds=1)
        self.stamps.append(self.clock.isoformat(timespec="milliseconds"))
        return self.stamps[-1]

    def forget(self) -> None:
        self.calls.clear()
        self.stamps.clear()

    def query(self, request: httpx.Request) -> httpx.Response:
        sql = request.content.decode()
        self.calls.append(sql)
        assert request.url.params["minorversion"] == "75"
        assert request.headers["content-type"] == "application/text"
        entity = re.search(r"FROM (\w+)", sql)
        assert entity is not None
        name = entity.group(1)
        if name == "Preferences":
            if self.preferences is None:
                fault = {"Fault": {"Error": [{"code": "4001"}]}, "time": self.stamp()}
                return httpx.Response(400, json=fault)
            return self._reply({"Preferences": [self.preferences]})
        rows = self.tables[name]
        ids = re.search(r"Id IN \(([^)]*)\)", sql)
        if ids is not None:
            wanted = {v.strip().strip("'") for v in ids.group(1).split(",")}
            rows = [r for r in rows if r["Id"] in wanted]
        if "Balance > '0'" in sql:
            rows = [r for r in rows if r["Balance"] > 0]
        if name == "CustomerType":
            rows = [r for r in rows if r["Active"]]  # QBO lists the active ones
        start = int(re.findall(r"STARTPOSITION (\d+)", sql)[0])
        size = int(re.findall(r"MAXRESULTS (\d+)", sql)[0])
        chosen = rows[start - 1 : start - 1 + size]
        if not chosen:
            return self._reply({})
        return self._reply({name: chosen, "startPosition": start, "maxResults": len(chosen)})

    def customer_type(self, request: httpx.Request) -> httpx.Response:
        type_id = request.url.path.rsplit("/", 1)[-1]
        self.calls.append(f"GET customertype/{type_id}")
        for row in self.tables["CustomerType"]:
            if row["Id"] == type_id:
                return httpx.Response(200, json={"CustomerType": row, "time": self.stamp()})
        fault = {"Error": [{"Message": "Object Not Found", "code": "610"}], "type": "x"}
        return httpx.Response(400, json={"Fault": fault, "time": self.stamp()})

    def _reply(self, response: dict[str, Any]) -> httpx.Response:
        return httpx.Response(200, json={"QueryResponse": response, "time": self.stamp()})

    def cdc(self, request: httpx.Request) -> httpx.Response:
        entities = request.url.params["entities"]
        self.calls.append(f"CDC {entities} {request.url.params['changedSince']}")
        if self.cdc_fault is not None:
            return httpx.Response(400, json={"Fault": self.cdc_fault, "time": self.stamp()})
        reply = self.cdc_replies.get(entities, {})
        responses = [
            {e: reply[e], "startPosition": 1, "maxResults": len(reply[e])} if reply.get(e) else {}
            for e in entities.split(",")
        ]
        body = {"CDCResponse": [{"QueryResponse": responses}], "time": self.stamp()}
        return httpx.Response(200, json=body)


@pytest.fixture
def qbo() -> Iterator[FakeQbo]:
    fake = FakeQbo()
    with respx.mock(assert_all_called=False) as router:
        router.post(f"{BASE}/query").mock(side_effect=fake.query)
        router.get(f"{BASE}/cdc").mock(side_effect=fake.cdc)
        router.get(url__regex=rf"{BASE}/customertype/\w+").mock(side_effect=fake.customer_type)
        router.get(f"{BASE}/companyinfo/{REALM}").mock(
            return_value=httpx.Response(
                200,
                json={
                    "CompanyInfo": {
                        "CompanyName": "Acme",
                        "Country": "GB",
                        "CompanyAddr": {"CountrySubDivisionCode": "ENG"},
                    },
                    "time": "x",
                },
            )
        )
        yield fake


def session() -> ApiSession:
    clock = FrozenClock(NOW)
    return ApiSession(
        platform="qbo",
        tokens=StaticTokens("t0k3n"),
        governor=RateGovernor(LIMITS, clock),
        clock=clock,
    )


def connector() -> QuickBooksConnector:
    link = Link("acme", "qbo", REALM, API, LIMITS, sweep_every=timedelta(hours=6))
    return QuickBooksConnector(link, session())


def pull(
    state: dict[str, Any] | None,
    *,
    full: bool = False,
    force_sweep: bool = False,
    local_open: set[str] | None = None,
    now: datetime = NOW,
) -> list[Page]:
    return list(
        connector().pull(
            state,
            full=full,
            force_sweep=force_sweep,
            local_open=lambda: set(local_open or ()),
            now=now,
        )
    )


def incremental(since: datetime, swept_at: datetime | None = None) -> dict[str, Any]:
    swept = (swept_at or since).isoformat(timespec="milliseconds")
    return {
        "v": 1,
        "phase": "incremental",
        "since": since.isoformat(timespec="milliseconds"),
        "swept_at": swept,
        "home_currency": "USD",
        "customer_types": {},
    }


def starts(calls: list[str], entity: str) -> list[int]:
    return [
        int(re.findall(r"STARTPOSITION (\d+)", c)[0])
        for c in calls
        if f"FROM {entity} " in c and "Id IN" not in c
    ]


# -- full pass -----------------------------------------------------------------------------------
def test_full_pass_pages_every_entity_until_a_short_page(qbo: FakeQbo) -> None:
    qbo.tables["Customer"] = [customer_row(n) for n in range(1, 4)]
    qbo.tables["Invoice"] = [invoice_row(n) for n in range(1, 2501)]
    qbo.tables["CreditMemo"] = []
    pages = pull(None)

    assert qbo.calls[0] == "SELECT * FROM Preferences"
    # no customer has a type: the types are never read
    assert "WHERE Active IN (true, false) ORDERBY Id" in qbo.calls[1]
    # Each page is asked from the previous page's last row (so a deletion cannot skip one).
    assert starts(qbo.calls, "Invoice") == [1, 1000, 1999]
    assert all("MAXRESULTS 1000" in c for c in qbo.calls[1:])
    assert [p.stream for p in pages] == [
        "customers",
        "invoices",
        "invoices",
        "invoices",
        "payments",
        "credit memos",
    ]
    invoice_ids = [i.id for p in pages if p.stream == "invoices" for i in p.items]
    assert invoice_ids == [str(n) for n in range(1, 2501)]
    assert [p.completed for p in pages] == [
        frozenset({Kind.CUSTOMER}),
        frozenset(),
        frozenset(),
        frozenset({Kind.INVOICE}),
        frozenset({Kind.PAYMENT}),
        frozenset({Kind.CREDIT}),
    ]
    customers = pages[0].items
    assert all(isinstance(c, Customer) for c in customers)
    assert [c.active for c in customers] == [False, True, False]  # type: ignore[union-attr]

    # The pass id and `since` are the first page's reply time (the second reply), not later ones.
    first_page_time = qbo.stamps[1]
    assert {p.full_pass for p in pages} == {first_page_time}
    assert pages[1].cursor == {
        "v": 1,
        "phase": "initial",
        "pass": first_page_time,
        "since": first_page_time,
        "entity": 1,
        "start": 1000,
        "last_id": "1000",
        "gap": False,
        "home_currency": "USD",
        "customer_types": None,
    }
    assert pages[-1].cursor == {
        "v": 1,
        "phase": "incremental",
        "since": first_page_time,
        "swept_at": first_page_time,
        "home_currency": "USD",
        "customer_types": None,
    }


def test_an_empty_page_is_the_end_not_an_error(qbo: FakeQbo) -> None:
    # No payments at all: the first page past the end comes back as {}.
    qbo.tables["Invoice"] = [invoice_row(n) for n in range(1, 1001)]
    pages = pull(None)
    payments = [p for p in pages if p.stream == "payments"]
    assert len(payments) == 1
    assert payments[0].items == []
    assert payments[0].completed == frozenset({Kind.PAYMENT})
    # Exactly 1000 invoices: the second page holds only the repeated last row.
    invoices = [p for p in pages if p.stream == "invoices"]
    assert [len(p.items) for p in invoices] == [1000, 0]
    assert invoices[1].completed == frozenset({Kind.INVOICE})


def test_resume_from_a_mid_pass_cursor_starts_at_its_page(qbo: FakeQbo) -> None:
    qbo.tables["Invoice"] = [invoice_row(n) for n in range(1, 2201)]
    cursor = {
        "v": 1,
        "phase": "initial",
        "pass": "2026-11-23T14:00:00.000+00:00",
        "since": "2026-11-23T14:00:00.000+00:00",
        "entity": 1,
        "start": 1000,
        "last_id": "1000",
        "gap": False,
        "home_currency": "USD",
    }
    pages = pull(cursor)
    assert not any("FROM Customer" in c or "Preferences" in c for c in qbo.calls)
    assert starts(qbo.calls, "Invoice") == [1000, 1999]
    assert {p.full_pass for p in pages} == {"2026-11-23T14:00:00.000+00:00"}
    ids = [i.id for p in pages if p.stream == "invoices" for i in p.items]
    assert ids == [str(n) for n in range(1001, 2201)]  # the repeated row is not handed twice
    assert pages[-1].cursor["since"] == "2026-11-23T14:00:00.000+00:00"
    assert pages[-1].cursor["phase"] == "incremental"
    assert {p.completed for p in pages} >= {frozenset({Kind.INVOICE})}


def test_a_deletion_between_pages_leaves_the_entity_uncompleted(qbo: FakeQbo) -> None:
    # Rows 1..1000 were read; then two early invoices were deleted, so row 1000 moved up.
    qbo.tables["Invoice"] = [invoice_row(n) for n in range(3, 1201)]
    cursor = {
        "v": 1,
        "phase": "initial",
        "pass": "2026-11-23T14:00:00.000+00:00",
        "since": "2026-11-23T14:00:00.000+00:00",
        "entity": 1,
        "start": 1000,
        "last_id": "1000",
        "gap": False,
        "home_currency": "USD",
    }
    pages = pull(cursor)
    invoices = [p for p in pages if p.stream == "invoices"]
    assert invoices[0].items[0].id == "1002"
    # Row 1001 was skipped, so this pass cannot say which invoices are gone.
    assert all(Kind.INVOICE not in p.completed for p in pages)
    assert {p.completed for p in pages if p.stream == "payments"} == {frozenset({Kind.PAYMENT})}


def test_full_flag_starts_a_new_pass_whatever_the_state(qbo: FakeQbo) -> None:
    pages = pull(incremental(NOW - timedelta(hours=1)), full=True)
    assert not any(c.startswith("CDC") for c in qbo.calls)
    # a new pass reads the company (and its home currency) again
    assert qbo.calls[0] == "SELECT * FROM Preferences"
    assert "FROM Customer" in qbo.calls[1]
    assert pages[-1].cursor["phase"] == "incremental"


# -- increments ----------------------------------------------------------------------------------
def test_idle_cycle_is_one_cdc_call(qbo: FakeQbo) -> None:
    since = NOW - timedelta(minutes=5)
    pages = pull(incremental(since))
    assert qbo.calls == ["CDC Invoice,Payment,CreditMemo,Customer 2026-11-23T14:55:00+00:00"]
    assert len(pages) == 1
    assert pages[0].stream == "changes" and pages[0].items == []
    assert pages[0].cursor == incremental(since) | {"since": qbo.stamps[0]}


def test_changes_are_mapped_in_one_page(qbo: FakeQbo) -> None:
    qbo.cdc_replies["Invoice,Payment,CreditMemo,Customer"] = {
        "Invoice": [invoice_row(5), deleted_row(6)],
        "Payment": [payment_row(50)],
        "Customer": [customer_row(2)],
    }
    pages = pull(incremental(NOW - timedelta(minutes=5)))
    assert len(qbo.calls) == 1 and len(pages) == 1
    items = pages[0].items
    assert [type(i) for i in items] == [Customer, Invoice, Deleted, Payment]
    assert items[2] == Deleted(Kind.INVOICE, "6", at=datetime(2026, 11, 22, 18, 0, tzinfo=UTC))


def test_saturated_cdc_asks_per_entity_then_queries(qbo: FakeQbo) -> None:
    since = NOW - timedelta(days=2)
    old_cursor = incremental(since, swept_at=NOW - timedelta(hours=1))
    everything = "Invoice,Payment,CreditMemo,Customer"
    qbo.cdc_replies[everything] = {
        "Invoice": [invoice_row(n) for n in range(1, 901)],
        "Payment": [payment_row(n) for n in range(2000, 2100)],
    }
    # On its own Invoice is still full (its oldest changes include a deletion); Payment is not.
    qbo.cdc_replies["Invoice"] = {
        "Invoice": [deleted_row(7)] + [invoice_row(n) for n in range(8, 1007)]
    }
    qbo.cdc_replies["Payment"] = {"Payment": [payment_row(n) for n in range(2000, 2150)]}
    qbo.cdc_replies["Customer"] = {"Customer": [customer_row(3)]}
    qbo.tables["Invoice"] = [invoice_row(n) for n in range(8, 1508)]

    pages = pull(old_cursor)

    cdc_calls = [c.split()[1] for c in qbo.calls if c.startswith("CDC")]
    assert cdc_calls == [everything, "Customer", "Invoice", "Payment", "CreditMemo"]
    queries = [c for c in qbo.calls if not c.startswith("CDC")]
    assert queries == [
        "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime >= '2026-11-21T15:00:00+00:00' "
        f"ORDERBY Id STARTPOSITION {n} MAXRESULTS 1000"
        for n in (1, 1000)
    ]
    items = [i for p in pages for i in p.items]
    assert Deleted(Kind.INVOICE, "7", at=datetime(2026, 11, 22, 18, 0, tzinfo=UTC)) in items
    invoice_ids = [i.id for i in items if isinstance(i, Invoice)]
    assert invoice_ids == [str(n) for n in range(8, 1508)]  # from the query, not stale CDC rows
    assert len([i for i in items if isinstance(i, Payment)]) == 150
    # Until the last page the cursor keeps the old `since`; then the first (combined) reply's time.
    assert all(p.cursor == old_cursor for p in pages[:-1])
    assert pages[-1].cursor == old_cursor | {"since": qbo.stamps[0]}
    assert all(p.stream == "changes" for p in pages)


def test_saturated_customers_query_includes_inactive_ones(qbo: FakeQbo) -> None:
    everything = "Invoice,Payment,CreditMemo,Customer"
    qbo.cdc_replies[everything] = {"Customer": [customer_row(n) for n in range(1, 1001)]}
    qbo.cdc_replies["Customer"] = qbo.cdc_replies[everything]
    qbo.tables["Customer"] = [customer_row(n) for n in range(1, 1001)]
    pull(incremental(NOW - timedelta(days=1)))
    customer_queries = [c for c in qbo.calls if "FROM Customer" in c]
    assert customer_queries
    assert all(
        "WHERE MetaData.LastUpdatedTime >= '2026-11-22T15:00:00+00:00' AND Active IN (true, false)"
        in c
        for c in customer_queries
    )


def test_since_older_than_cdc_lookback_starts_a_full_pass(qbo: FakeQbo) -> None:
    pages = pull(incremental(NOW - timedelta(days=31)))
    assert not any(c.startswith("CDC") for c in qbo.calls)
    # a new pass reads the company's preferences again, then every entity from the top
    assert qbo.calls[0] == "SELECT * FROM Preferences"
    assert "FROM Customer" in qbo.calls[1]
    assert pages[0].full_pass == qbo.stamps[1]
    recent = pull(incremental(NOW - timedelta(days=29)))
    assert recent[0].stream == "changes"


# -- the sweep -----------------------------------------------------------------------------------
def test_sweep_rereads_local_open_invoices_in_chunks_and_finds_deleted_ones(qbo: FakeQbo) -> None:
    open_rows = [invoice_row(n) for n in range(1, 4)]
    paid = [invoice_row(n) | {"Balance": 0} for n in range(100, 350)]
    qbo.tables["Invoice"] = open_rows + paid
    local = {str(n) for n in range(1, 4)} | {str(n) for n in range(100, 350)} | {"999"}
    since = NOW - timedelta(minutes=5)

    idle = pull(incremental(since, swept_at=NOW - timedelta(hours=1)), local_open=local)
    assert [p.stream for p in idle] == ["changes"]  # not due yet

    qbo.forget()
    pages = pull(
        incremental(since, swept_at=NOW - timedelta(hours=1)), force_sweep=True, local_open=local
    )
    sweep = [p for p in pages if p.stream == "open invoices"]
    assert len(sweep) == 1
    assert "WHERE Balance > '0' ORDERBY Id STARTPOSITION 1 MAXRESULTS 1000" in qbo.calls[1]
    by_id = [c for c in qbo.calls if "Id IN" in c]
    assert len(by_id) == 3  # 251 ids, at most 100 a query
    assert all(c.count("'") <= 200 for c in by_id)
    items = sweep[0].items
    assert Deleted(Kind.INVOICE, "999") in items
    reread = [i for i in items if isinstance(i, Invoice) and i.status is InvoiceStatus.PAID]
    assert len(reread) == 250
    # swept_at is the sweep's first reply, the one after the CDC reply.
    assert sweep[0].cursor["swept_at"] == qbo.stamps[1]
    assert sweep[0].cursor["since"] == qbo.stamps[0]


def test_sweep_is_due_after_sweep_every(qbo: FakeQbo) -> None:
    since = NOW - timedelta(minutes=5)
    pages = pull(incremental(since, swept_at=NOW - timedelta(hours=6)), local_open=set())
    assert [p.stream for p in pages] == ["changes", "open invoices"]
    assert pages[-1].items == []


# -- the home currency ---------------------------------------------------------------------------
def test_home_currency_is_fetched_once_and_carried_in_the_cursor(qbo: FakeQbo) -> None:
    qbo.preferences = {"CurrencyPrefs": {"HomeCurrency": {"value": "GBP"}}}
    row = invoice_row(1)
    del row["CurrencyRef"]
    qbo.tables["Invoice"] = [row]
    pages = pull(None)
    assert qbo.calls[0] == "SELECT * FROM Preferences"
    inv = [i for p in pages for i in p.items if isinstance(i, Invoice)]
    assert inv[0].currency == "GBP"
    assert pages[-1].cursor["home_currency"] == "GBP"
    qbo.forget()
    pull(pages[-1].cursor)
    assert len(qbo.calls) == 1 and qbo.calls[0].startswith("CDC")


def test_company_info(qbo: FakeQbo) -> None:
    qbo.preferences = {"CurrencyPrefs": {"HomeCurrency": {"value": "GBP"}}}
    info = connector().company()
    assert (info.name, info.country, info.region) == ("Acme", "GB", "ENG")
    assert info.base_currency == "GBP"
    assert info.timezone is None  # QBO has no time-zone field anywhere


def test_a_cdc_refused_for_its_time_starts_a_full_pass(qbo: FakeQbo) -> None:
    # Our clock says the cursor is 29.9 days old; QBO's says it is past CDC's 30 days.
    qbo.cdc_fault = {
        "Error": [
            {
                "Message": "Request has invalid or unsupported property",
                "Detail": "Property Name:changedSince: the value is more than 30 days in the past",
                "code": "2010",
                "element": "changedSince",
            }
        ],
        "type": "ValidationFault",
    }
    qbo.tables["Invoice"] = [invoice_row(1)]
    pages = pull(incremental(NOW - timedelta(days=29, hours=23)))
    assert qbo.calls[0].startswith("CDC")
    assert [p.stream for p in pages] == ["customers", "invoices", "payments", "credit memos"]
    assert pages[-1].cursor["phase"] == "incremental"
    assert pages[0].company is not None and pages[0].company.name == "Acme"


def test_a_cdc_refused_for_another_reason_is_still_an_error(qbo: FakeQbo) -> None:
    from arsync.errors import PermanentError

    qbo.cdc_fault = {"Error": [{"Message": "Invalid", "code": "2010", "element": "entities"}]}
    with pytest.raises(PermanentError):
        pull(incremental(NOW - timedelta(days=1)))


# -- the client ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("count", "sizes"), [(1500, [1000, 500]), (2000, [1000, 1000, 0])])
def test_client_query_pages_until_a_short_page(qbo: FakeQbo, count: int, sizes: list[int]) -> None:
    qbo.tables["Invoice"] = [invoice_row(n) for n in range(1, count + 1)]
    pages = list(QuickBooksClient(session(), REALM, API).query_pages("Invoice", "Balance > '0'"))
    assert [len(rows) for rows, _at in pages] == sizes
    assert [at for _rows, at in pages] == qbo.stamps
    assert starts(qbo.calls, "Invoice") == [1 + 1000 * n for n in range(len(sizes))]
    assert all(" WHERE Balance > '0' ORDERBY Id " in c for c in qbo.calls)


# -- the client's envelopes ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("query", {"time": "x"}, "no QueryResponse"),
        ("query", {"QueryResponse": {"Invoice": {}}}, "Invoice is not a list"),
        ("query", {"QueryResponse": {"Invoice": [1]}}, "row is not an object"),
        ("query", [1, 2], "not a JSON object"),
        ("cdc", {"CDCResponse": {}}, "no CDCResponse list"),
        ("cdc", {"CDCResponse": [{"QueryResponse": {}}]}, "no QueryResponse list"),
        ("cdc", {"CDCResponse": [{"QueryResponse": ["x"]}]}, "entry is not an object"),
    ],
)
def test_malformed_envelopes_are_data_errors(path: str, body: Any, message: str) -> None:
    client = QuickBooksClient(session(), REALM, API)
    with respx.mock() as router:
        router.route(url__startswith=f"{BASE}/{path}").mock(
            return_value=httpx.Response(200, content=json.dumps(body).encode())
        )
        call: Callable[[], object] = partial(client.query_page, "Invoice", "", 1)
        if path == "cdc":
            call = partial(client.cdc, ["Invoice"], NOW)
        with pytest.raises(DataError, match=message):
            call()


def test_a_reply_without_time_falls_back_to_the_date_header() -> None:
    client = QuickBooksClient(session(), REALM, API)
    with respx.mock() as router:
        router.get(url__startswith=f"{BASE}/cdc").mock(
            return_value=httpx.Response(
                200,
                json={"CDCResponse": [{"QueryResponse": [{}]}]},
                headers={"Date": "Mon, 23 Nov 2026 15:00:07 GMT"},
            )
        )
        changed, at = client.cdc(["Invoice", "Payment"], NOW)
        sent = parse_qs(urlsplit(str(router.calls[0].request.url)).query)
    assert changed == {"Invoice": [], "Payment": []}
    assert at == "2026-11-23T15:00:07+00:00"
    assert sent["changedSince"] == ["2026-11-23T15:00:00+00:00"]
    assert sent["entities"] == ["Invoice,Payment"]


# -- customer types ------------------------------------------------------------------------------
def type_row(n: int, name: str, active: bool = True) -> dict[str, Any]:
    return {
        "Id": str(n),
        "Name": name,
        "Active": active,
        "MetaData": {"LastUpdatedTime": "2026-11-01T10:00:00-08:00"},
    }


def typed(n: int, type_id: str | None, **extra: Any) -> dict[str, Any]:
    row = customer_row(n) | extra
    if type_id is not None:
        row["CustomerTypeRef"] = {"value": type_id}
    return row


def test_a_full_pass_reads_the_customer_types_once_and_names_each_customers(
    qbo: FakeQbo,
) -> None:
    qbo.tables["CustomerType"] = [type_row(1, "Do not chase"), type_row(2, "Slow payer")]
    qbo.tables["Customer"] = [
        typed(
            1,
            "1",
            Notes="Paused: dispute over the March delivery",
            BillAddr={"Country": "U.S.A.", "CountrySubDivisionCode": " NY "},
        ),
        typed(2, None, Notes="   ", BillAddr={"Country": "Narnia"}),
    ]
    pages = pull(None)
    # read once, when the first page of customers holds a typed one: after the company, before
    # the customers page is handed over
    assert sum("FROM CustomerType" in c for c in qbo.calls) == 1
    assert "FROM CustomerType" in qbo.calls[2] and "FROM Customer " in qbo.calls[1]
    first, second = pages[0].items
    assert isinstance(first, Customer) and isinstance(second, Customer)
    assert (first.tags, first.notes) == (
        ("Do not chase",),
        "Paused: dispute over the March delivery",
    )
    assert (first.country, first.region) == ("US", "NY")
    assert (second.tags, second.notes, second.country, second.region) == ((), None, None, None)
    assert pages[-1].cursor["customer_types"] == {"1": "Do not chase", "2": "Slow payer"}


def test_a_changed_customer_of_a_known_type_costs_no_extra_call(qbo: FakeQbo) -> None:
    everything = "Invoice,Payment,CreditMemo,Customer"
    qbo.cdc_replies[everything] = {"Customer": [typed(4, "1")]}
    state = incremental(NOW - timedelta(minutes=5)) | {"customer_types": {"1": "Do not chase"}}
    pages = pull(state)
    assert len(qbo.calls) == 1 and qbo.calls[0].startswith("CDC")
    (customer,) = pages[0].items
    assert isinstance(customer, Customer) and customer.tags == ("Do not chase",)
    assert pages[-1].cursor["customer_types"] == {"1": "Do not chase"}


def test_an_unknown_type_reads_the_types_again_once_a_cycle(qbo: FakeQbo) -> None:
    qbo.tables["CustomerType"] = [
        type_row(1, "Do not chase"),
        type_row(2, "Slow payer"),
        type_row(3, "Old terms", active=False),  # the list leaves it out; its own read does not
    ]
    everything = "Invoice,Payment,CreditMemo,Customer"
    qbo.cdc_replies[everything] = {
        "Customer": [typed(2, "2"), typed(4, "3"), typed(6, "9"), typed(8, "2")]
    }
    state = incremental(NOW - timedelta(minutes=5)) | {"customer_types": {"1": "Do not chase"}}
    pages = pull(state)
    assert qbo.calls[1:] == [
        "SELECT * FROM CustomerType STARTPOSITION 1 MAXRESULTS 1000",
        "GET customertype/3",
        "GET customertype/9",
    ]
    tags = {c.id: c.tags for c in pages[0].items if isinstance(c, Customer)}
    assert tags == {"2": ("Slow payer",), "4": ("Old terms",), "6": (), "8": ("Slow payer",)}
    cursor = pages[-1].cursor
    assert cursor["customer_types"] == {"1": "Do not chase", "2": "Slow payer", "3": "Old terms"}

    # The next cycle knows the types read: a change to a customer of one costs no more calls.
    qbo.forget()
    qbo.cdc_replies[everything] = {"Customer": [typed(2, "3")]}
    pull(cursor)
    assert len(qbo.calls) == 1


def test_an_old_cursor_without_types_reads_them_when_a_typed_customer_comes(
    qbo: FakeQbo,
) -> None:
    qbo.tables["CustomerType"] = [type_row(1, "Do not chase")]
    everything = "Invoice,Payment,CreditMemo,Customer"
    qbo.cdc_replies[everything] = {"Customer": [typed(2, None)]}
    state = incremental(NOW - timedelta(minutes=5))
    del state["customer_types"]
    untyped = pull(state)
    assert len(qbo.calls) == 1  # nobody has a type: nothing to read
    assert untyped[-1].cursor["customer_types"] is None
    qbo.forget()
    qbo.cdc_replies[everything] = {"Customer": [typed(2, "1")]}
    pages = pull(untyped[-1].cursor)
    assert len(qbo.calls) == 2
    assert pages[0].items[0].tags == ("Do not chase",)  # type: ignore[union-attr]
    assert pages[-1].cursor["customer_types"] == {"1": "Do not chase"}


def test_a_full_pass_reads_the_names_again_even_when_the_cursor_knows_every_id(
    qbo: FakeQbo,
) -> None:
    qbo.tables["CustomerType"] = [type_row(1, "Paused")]  # renamed in QuickBooks since
    qbo.tables["Customer"] = [typed(1, "1"), typed(2, "1")]
    state = incremental(NOW - timedelta(minutes=5)) | {"customer_types": {"1": "Do not chase"}}
    pages = pull(state, full=True)
    assert sum("FROM CustomerType" in c for c in qbo.calls) == 1
    assert {c.tags for c in pages[0].items if isinstance(c, Customer)} == {("Paused",)}
    assert pages[-1].cursor["customer_types"] == {"1": "Paused"}
