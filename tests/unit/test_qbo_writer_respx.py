"""The QBO writer at the HTTP level: request shapes, batches, refusals and lost replies."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
import respx

from arsync.clock import FrozenClock
from arsync.connectors.base import Limits, Link, NoteWrite, StaticTokens, Writer
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession
from arsync.connectors.quickbooks.connector import QuickBooksConnector
from arsync.connectors.quickbooks.writer import WIRE_KEY_MAX, batch_request_id, wire_key
from arsync.errors import (
    DataError,
    EmailCapReached,
    NoEmailAddress,
    OutcomeUnknown,
    PermanentError,
)

API = "https://qbo.test"
REALM = "9130"
BASE = f"{API}/v3/company/{REALM}"
NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
LIMITS = Limits(per_minute=1_000_000, per_second=1_000_000, concurrent=10, per_day=None)
STAMP = "2026-11-23T07:00:00.000-08:00"


def invoice_row(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "Id": str(n),
        "SyncToken": "0",
        "DocNumber": f"INV-{n}",
        "TxnDate": "2026-10-01",
        "DueDate": "2026-10-31",
        "CustomerRef": {"value": "1"},
        "CurrencyRef": {"value": "USD"},
        "TotalAmt": 100,
        "Balance": 100,
        "EmailStatus": "NotSet",
        "MetaData": {"LastUpdatedTime": "2026-11-20T10:00:00-08:00"},
        **extra,
    }


def sent_row(n: int, to: str = "ap@customer.example") -> dict[str, Any]:
    return invoice_row(
        n,
        EmailStatus="EmailSent",
        BillEmail={"Address": to},
        DeliveryInfo={"DeliveryType": "Email", "DeliveryTime": "2026-11-23T07:00:00-08:00"},
    )


def fault(code: str, message: str, detail: str = "", status: int = 400) -> httpx.Response:
    body = {
        "Fault": {
            "Error": [{"Message": message, "Detail": detail, "code": code, "element": ""}],
            "type": "ValidationFault",
        },
        "time": STAMP,
    }
    return httpx.Response(status, json=body)


def ok(body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(200, json={**body, "time": STAMP})


def connector(clock: FrozenClock | None = None) -> QuickBooksConnector:
    clock = clock or FrozenClock(NOW)
    session = ApiSession(
        platform="qbo",
        tokens=StaticTokens("t0k3n"),
        governor=RateGovernor(LIMITS, clock),
        clock=clock,
    )
    return QuickBooksConnector(Link("acme", "qbo", REALM, API, LIMITS), session)


@pytest.fixture
def router() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_called=False) as mock:
        yield mock


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


def note(n: int, invoice: str | None = None) -> NoteWrite:
    return NoteWrite(invoice_id=invoice or str(n), text=f"arsync: reminder {n} sent", key=f"a{n}")


def batch_echo(request: httpx.Request) -> httpx.Response:
    """QBO's answer to a batch of creates, items in reverse order (QBO keeps no order)."""
    items = body_of(request)["BatchItemRequest"]
    answers = [
        {"bId": item["bId"], "Attachable": {**item["Attachable"], "Id": f"500{item['bId']}"}}
        for item in reversed(items)
    ]
    return ok({"BatchItemResponse": answers})


# -- the protocol ---------------------------------------------------------------------------------
def test_the_connector_is_a_writer() -> None:
    made = connector()
    writer: Writer = made  # the structural check, for mypy
    assert isinstance(writer, Writer)


def test_expect_payment_does_nothing_on_qbo(router: respx.MockRouter) -> None:
    assert connector().expect_payment("7", date(2026, 12, 1), key="p1") is False
    assert connector().expect_payment("7", None, key="p2") is False
    assert not router.calls


# -- fresh reads ----------------------------------------------------------------------------------
def test_fresh_reads_a_hundred_ids_a_query_and_maps_email_fields(
    router: respx.MockRouter,
) -> None:
    table = {str(n): invoice_row(n) for n in range(1, 251)}
    table["3"] = sent_row(3)
    table["4"] = invoice_row(
        4,
        BillEmail={"Address": "  "},
        DeliveryInfo={"DeliveryType": "Print", "DeliveryTime": "2026-11-01T09:00:00-07:00"},
    )
    queries: list[str] = []

    def query(request: httpx.Request) -> httpx.Response:
        sql = request.content.decode()
        queries.append(sql)
        ids = re.search(r"Id IN \(([^)]*)\)", sql)
        assert ids is not None
        wanted = [v.strip().strip("'") for v in ids.group(1).split(",")]
        return ok({"QueryResponse": {"Invoice": [table[i] for i in wanted if i in table]}})

    router.post(f"{BASE}/query").mock(side_effect=query)
    asked = [str(n) for n in range(1, 251)] + ["999"]
    fresh = connector().fresh(asked)

    assert len(queries) == 3  # ceil(251 / 100)
    assert all(q.startswith("SELECT * FROM Invoice WHERE Id IN (") for q in queries)
    assert set(fresh) == set(table)  # 999 is gone: absent
    sent = fresh["3"]
    assert sent.invoice.id == "3" and sent.invoice.sent is True
    assert sent.bill_email == "ap@customer.example"
    assert sent.delivered_at == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    printed = fresh["4"]
    assert printed.bill_email is None  # blank is no address
    assert printed.delivered_at is None  # delivered, but not by email
    assert fresh["5"].bill_email is None and fresh["5"].delivered_at is None


def test_fresh_reads_the_home_currency_only_for_a_row_without_one(
    router: respx.MockRouter,
) -> None:
    row = invoice_row(1)
    del row["CurrencyRef"]
    calls: list[str] = []

    def query(request: httpx.Request) -> httpx.Response:
        sql = request.content.decode()
        calls.append(sql)
        if "Preferences" in sql:
            prefs = {"CurrencyPrefs": {"HomeCurrency": {"value": "GBP"}}}
            return ok({"QueryResponse": {"Preferences": [prefs]}})
        rows = [row] if "'1'" in sql else [invoice_row(2)]
        return ok({"QueryResponse": {"Invoice": rows}})

    router.post(f"{BASE}/query").mock(side_effect=query)
    made = connector()
    assert made.fresh(["2"])["2"].invoice.currency == "USD"
    assert len(calls) == 1
    assert made.fresh(["1"])["1"].invoice.currency == "GBP"
    assert len(calls) == 3 and "Preferences" in calls[2]


def test_fresh_refuses_rather_than_guesses_an_unreadable_invoice(
    router: respx.MockRouter,
) -> None:
    bad = sent_row(2)
    bad["DeliveryInfo"] = {"DeliveryType": "Email", "DeliveryTime": "yesterday"}
    rows = [invoice_row(1), bad]
    router.post(f"{BASE}/query").mock(return_value=ok({"QueryResponse": {"Invoice": rows}}))
    with pytest.raises(DataError, match=r"DeliveryInfo\.DeliveryTime"):
        connector().fresh(["1", "2"])


# -- email ----------------------------------------------------------------------------------------
def test_email_posts_send_under_the_key_with_send_to(router: respx.MockRouter) -> None:
    route = router.post(f"{BASE}/invoice/42/send").mock(
        return_value=ok({"Invoice": sent_row(42, "payables@customer.example")})
    )
    found = connector().email("42", key="action-1", send_to="payables@customer.example")

    request = route.calls.last.request
    assert request.url.params["requestid"] == "action-1"
    assert request.url.params["sendTo"] == "payables@customer.example"
    assert request.url.params["minorversion"] == "75"
    assert request.headers["content-type"] == "application/octet-stream"
    assert request.content == b""
    assert found is not None
    assert found.at == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert found.to == "payables@customer.example"
    assert found.evidence.startswith("QuickBooks EmailStatus EmailSent, DeliveryInfo Email at ")
    assert "2026-11-23T07:00:00-08:00" in found.evidence


def test_email_to_the_bill_email_sends_no_send_to(router: respx.MockRouter) -> None:
    route = router.post(f"{BASE}/invoice/42/send").mock(return_value=ok({"Invoice": sent_row(42)}))
    found = connector().email("42", key="action-2")
    assert "sendTo" not in route.calls.last.request.url.params
    assert found is not None and found.to == "ap@customer.example"


def test_email_reply_without_delivery_info_is_no_evidence(router: respx.MockRouter) -> None:
    router.post(f"{BASE}/invoice/42/send").mock(return_value=ok({"Invoice": invoice_row(42)}))
    assert connector().email("42", key="action-3") is None


SANDBOX_NO_ADDRESS = (
    "6000",
    "A business validation error has occurred while processing your request",
    "Business Validation Error: You must enter the email address for this customer in order "
    "to email this invoice.",
)
SANDBOX_CAP = (
    "6000",
    "A business validation error has occurred while processing your request",
    "Business Validation Error: You have reached the limit of 40 emails a day for this "
    "company. Try again tomorrow.",
)


@pytest.mark.parametrize(
    ("said", "kind"),
    [
        (SANDBOX_NO_ADDRESS, NoEmailAddress),
        (("2050", "Invalid Email Address format", "Supplied value:nobody"), NoEmailAddress),
        (("6000", "Email Address is missing", ""), NoEmailAddress),
        (SANDBOX_CAP, EmailCapReached),
        (("6000", "Daily email limit exceeded", ""), EmailCapReached),
        (
            ("6000", "Business Validation Error", "You've exceeded the number of emails allowed"),
            EmailCapReached,
        ),
        (("2040", "String length", "Email address exceeds maximum length"), PermanentError),
        (("6000", "Business Validation Error", "Transaction amount must be zero"), PermanentError),
        (("610", "Object Not Found", "Object Not Found : Something you're trying"), PermanentError),
    ],
)
def test_send_refusals_are_told_apart(
    router: respx.MockRouter, said: tuple[str, str, str], kind: type[PermanentError]
) -> None:
    router.post(f"{BASE}/invoice/42/send").mock(return_value=fault(*said))
    with pytest.raises(PermanentError) as caught:
        connector().email("42", key="k")
    assert type(caught.value) is kind
    assert caught.value.status == 400
    assert said[0] in str(caught.value)


def test_a_send_that_times_out_is_resent_under_its_key_then_unknown(
    router: respx.MockRouter,
) -> None:
    route = router.post(f"{BASE}/invoice/42/send").mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknown):
        connector().email("42", key="action-9")
    # Resent only under the same requestid (QBO replays it), never under another.
    keys = {call.request.url.params["requestid"] for call in route.calls}
    assert keys == {"action-9"} and route.call_count > 1


def test_a_send_answered_with_a_5xx_is_unknown(router: respx.MockRouter) -> None:
    router.post(f"{BASE}/invoice/42/send").mock(return_value=fault("10000", "error", status=500))
    with pytest.raises(OutcomeUnknown):
        connector().email("42", key="action-10")


def test_a_resent_send_that_is_answered_at_last_gives_its_evidence(
    router: respx.MockRouter,
) -> None:
    route = router.post(f"{BASE}/invoice/42/send").mock(
        side_effect=[httpx.RemoteProtocolError("dropped"), ok({"Invoice": sent_row(42)})]
    )
    assert connector().email("42", key="action-11") is not None
    assert route.call_count == 2


def test_a_long_key_goes_as_a_digest_of_at_most_fifty_characters(
    router: respx.MockRouter,
) -> None:
    route = router.post(f"{BASE}/invoice/42/send").mock(return_value=ok({"Invoice": sent_row(42)}))
    long_key = "email/" + "x" * 80
    connector().email("42", key=long_key)
    sent = route.calls.last.request.url.params["requestid"]
    assert sent == wire_key(long_key) == wire_key(long_key)
    assert len(sent) <= WIRE_KEY_MAX and sent != wire_key(long_key + "y")


# -- notes ----------------------------------------------------------------------------------------
def test_notes_go_thirty_to_a_batch_under_a_requestid_of_their_keys(
    router: respx.MockRouter,
) -> None:
    route = router.post(f"{BASE}/batch").mock(side_effect=batch_echo)
    notes = [note(n) for n in range(65)]
    outcomes = connector().notes(notes)

    assert [len(body_of(c.request)["BatchItemRequest"]) for c in route.calls] == [30, 30, 5]
    ids = [c.request.url.params["requestid"] for c in route.calls]
    assert len(set(ids)) == 3 and all(len(i) <= 50 for i in ids)
    assert ids[0] == batch_request_id([n.key for n in reversed(notes[:30])])  # any order
    first = body_of(route.calls[0].request)["BatchItemRequest"][0]
    assert first == {
        "bId": "a0",
        "operation": "create",
        "Attachable": {
            "Note": "arsync: reminder 0 sent",
            "AttachableRef": [
                {"EntityRef": {"type": "Invoice", "value": "0"}, "IncludeOnSend": False}
            ],
        },
    }
    for call in route.calls:
        text = call.request.content.decode()
        assert "PrivateNote" not in text and "CustomerMemo" not in text
    assert [o.key for o in outcomes] == [n.key for n in notes]
    assert all(o.written and o.error is None for o in outcomes)
    assert outcomes[7].ref == "500a7"


def test_a_refused_item_is_that_notes_outcome_alone(router: respx.MockRouter) -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        items = body_of(request)["BatchItemRequest"]
        out: list[dict[str, Any]] = []
        for item in items:
            if item["Attachable"]["AttachableRef"][0]["EntityRef"]["value"] == "999":
                refused = {
                    "Error": [{"Message": "Object Not Found", "Detail": "gone", "code": "610"}],
                    "type": "ValidationFault",
                }
                out.append({"bId": item["bId"], "Fault": refused})
            else:
                out.append({"bId": item["bId"], "Attachable": {"Id": "77"}})
        return ok({"BatchItemResponse": out})

    router.post(f"{BASE}/batch").mock(side_effect=answer)
    outcomes = connector().notes([note(1), note(2, "999"), note(3)])
    assert [o.written for o in outcomes] == [True, False, True]
    refused = outcomes[1]
    assert isinstance(refused.error, PermanentError) and refused.ref is None
    assert "610" in str(refused.error) and "999" in str(refused.error)
    body = refused.error.body
    assert isinstance(body, dict) and body["Fault"]["Error"][0]["code"] == "610"


def test_a_refused_batch_refuses_each_of_its_notes(router: respx.MockRouter) -> None:
    router.post(f"{BASE}/batch").mock(return_value=fault("2010", "Request has invalid property"))
    outcomes = connector().notes([note(1), note(2)])
    assert [o.written for o in outcomes] == [False, False]
    assert all(isinstance(o.error, PermanentError) for o in outcomes)


@pytest.mark.parametrize(
    "failure",
    [
        lambda: httpx.Response(503, text="<html>503</html>"),
        lambda: httpx.ReadTimeout("slow"),
    ],
)
def test_a_batch_whose_reply_is_lost_is_unknown(
    router: respx.MockRouter, failure: Callable[[], Any]
) -> None:
    route = router.post(f"{BASE}/batch").mock(side_effect=lambda _request: _raise_or(failure()))
    with pytest.raises(OutcomeUnknown):
        connector().notes([note(1), note(2)])
    assert len({c.request.url.params["requestid"] for c in route.calls}) == 1


def _raise_or(result: Any) -> httpx.Response:
    if isinstance(result, Exception):
        raise result
    assert isinstance(result, httpx.Response)
    return result


def test_a_batch_reply_that_leaves_a_note_out_is_unknown(router: respx.MockRouter) -> None:
    answers = {"BatchItemResponse": [{"bId": "a1", "Attachable": {"Id": "9"}}]}
    router.post(f"{BASE}/batch").mock(return_value=ok(answers))
    with pytest.raises(OutcomeUnknown, match="a2"):
        connector().notes([note(1), note(2)])


def test_one_note_is_a_plain_post_under_its_key(router: respx.MockRouter) -> None:
    route = router.post(f"{BASE}/attachable").mock(
        return_value=ok({"Attachable": {"Id": "5000000000000000001", "Note": "x"}})
    )
    [outcome] = connector().notes([note(4)])
    request = route.calls.last.request
    assert request.url.params["requestid"] == "a4"
    assert body_of(request) == {
        "Note": "arsync: reminder 4 sent",
        "AttachableRef": [{"EntityRef": {"type": "Invoice", "value": "4"}, "IncludeOnSend": False}],
    }
    assert outcome.written and outcome.ref == "5000000000000000001"


def test_one_refused_note_is_its_outcome(router: respx.MockRouter) -> None:
    too_long = fault("2040", "String length is either shorter or longer", "Max:2000")
    router.post(f"{BASE}/attachable").mock(return_value=too_long)
    [outcome] = connector().notes([note(4)])
    assert not outcome.written and isinstance(outcome.error, PermanentError)


def test_the_same_key_twice_is_written_once(router: respx.MockRouter) -> None:
    route = router.post(f"{BASE}/attachable").mock(return_value=ok({"Attachable": {"Id": "8"}}))
    outcomes = connector().notes([note(4), note(4)])
    assert route.call_count == 1
    assert [o.ref for o in outcomes] == ["8", "8"]
    with pytest.raises(ValueError, match="one key"):
        connector().notes([note(4), NoteWrite("4", "another text", "a4")])


def test_no_notes_no_call(router: respx.MockRouter) -> None:
    assert connector().notes([]) == []
    assert not router.calls


# -- read-back ------------------------------------------------------------------------------------
def test_read_back_reads_invoices_and_their_notes_in_two_calls(
    router: respx.MockRouter,
) -> None:
    invoices = {str(n): invoice_row(n) for n in range(1, 46)}
    invoices["2"] = sent_row(2)
    attachables = [
        {
            "Id": "900",
            "Note": "arsync: first reminder",
            "MetaData": {"CreateTime": "2026-11-23T07:00:00-08:00"},
            "AttachableRef": [
                {"EntityRef": {"type": "Invoice", "value": "2"}, "IncludeOnSend": False},
                {"EntityRef": {"type": "Customer", "value": "3"}, "IncludeOnSend": False},
            ],
        },
        {
            "Id": "901",
            "FileName": "scan.pdf",
            "AttachableRef": [{"EntityRef": {"type": "Invoice", "value": "2"}}],
        },
        {
            "Id": "902",
            "Note": "called, promised Friday",
            "MetaData": {"CreateTime": "2026-11-23T08:00:00-08:00"},
            "AttachableRef": [{"EntityRef": {"type": "Invoice", "value": "2"}}],
        },
    ]
    queries: list[str] = []

    def query(request: httpx.Request) -> httpx.Response:
        sql = request.content.decode()
        queries.append(sql)
        if "FROM Attachable" in sql:
            return ok({"QueryResponse": {"Attachable": attachables}})
        ids = re.search(r"Id IN \(([^)]*)\)", sql)
        assert ids is not None
        wanted = [v.strip().strip("'") for v in ids.group(1).split(",")]
        return ok({"QueryResponse": {"Invoice": [invoices[i] for i in wanted if i in invoices]}})

    router.post(f"{BASE}/query").mock(side_effect=query)
    trails = connector().read_back([*invoices, "999"])

    assert len(queries) == 2
    assert "AttachableRef.EntityRef.Type = 'Invoice'" in queries[1]
    assert "AttachableRef.EntityRef.value IN ('1', '2', " in queries[1]
    assert set(trails) == set(invoices)
    trail = trails["2"]
    assert [n.text for n in trail.notes] == ["arsync: first reminder", "called, promised Friday"]
    assert trail.notes[0].ref == "900"
    assert trail.notes[0].at == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert trail.emails_recorded is True
    [email] = trail.emails
    assert email.at == datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
    assert email.to == "ap@customer.example"
    assert trails["3"].notes == () and trails["3"].emails == ()
    assert trails["3"].emails_recorded is True


def test_read_back_of_gone_invoices_asks_for_no_notes(router: respx.MockRouter) -> None:
    route = router.post(f"{BASE}/query").mock(return_value=ok({"QueryResponse": {}}))
    assert connector().read_back(["1", "2"]) == {}
    assert route.call_count == 1
