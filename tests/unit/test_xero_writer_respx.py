"""The Xero connector's writer side at the HTTP level: request shapes, keys and refusals."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from arsync.clock import FrozenClock
from arsync.connectors.base import Limits, Link, NoteWrite, StaticTokens, Writer
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession
from arsync.connectors.xero.connector import XeroConnector
from arsync.connectors.xero.writer import utf16_units
from arsync.domain import InvoiceStatus
from arsync.errors import (
    DataError,
    EmailCapReached,
    NoEmailAddress,
    OutcomeUnknown,
    PermanentError,
)

API = "https://api.xero.com/api.xro/2.0"
TENANT = "7e1d0c1a-aaaa-4bbb-8ccc-0123456789ab"
START = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
LIMITS = Limits(per_minute=100_000, per_second=None, concurrent=5, per_day=None)
INV = "inv-00001"


def ms(moment: datetime) -> str:
    return f"/Date({int(moment.timestamp() * 1000)}+0000)/"


def invoice_row(ident: str, **changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "Type": "ACCREC",
        "InvoiceID": ident,
        "InvoiceNumber": f"INV-{ident[-3:]}",
        "Contact": {"ContactID": "contact-1", "Name": "Acme"},
        "Date": ms(datetime(2026, 10, 1, tzinfo=UTC)),
        "DueDate": ms(datetime(2026, 10, 31, tzinfo=UTC)),
        "Status": "AUTHORISED",
        "Total": 100.0,
        "AmountDue": 60.0,
        "SentToContact": True,
        "CurrencyCode": "GBP",
        "UpdatedDateUTC": ms(START),
    }
    row.update(changes)
    return row


def refusal(*messages: str) -> httpx.Response:
    """Xero's 400 ValidationException carrying `messages`."""
    return httpx.Response(
        400,
        json={
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": "A validation exception occurred",
            "Elements": [{"ValidationErrors": [{"Message": m} for m in messages]}],
        },
    )


def connector() -> XeroConnector:
    clock = FrozenClock(START)
    session = ApiSession(
        platform="xero",
        tokens=StaticTokens("tok"),
        governor=RateGovernor(LIMITS, clock),
        clock=clock,
    )
    return XeroConnector(Link("acme", "xero", TENANT, "https://api.xero.com", LIMITS), session)


@pytest.fixture
def xero() -> Iterator[respx.MockRouter]:
    with respx.mock(assert_all_mocked=True, assert_all_called=False) as router:
        yield router


def body(request: httpx.Request) -> Any:
    return json.loads(request.content)


def test_the_connector_is_a_writer() -> None:
    made = connector()
    assert isinstance(made, Writer)
    writer: Writer = made  # and mypy agrees
    assert writer is made


# -- fresh ----------------------------------------------------------------------------------------
def test_fresh_reads_by_id_a_hundred_at_a_time(xero: respx.MockRouter) -> None:
    ids = [f"INV-{n:05d}-A" for n in range(150)]

    def answer(request: httpx.Request) -> httpx.Response:
        asked = request.url.params["IDs"].split(",")
        # Xero answers in its own case, and leaves out what it does not have
        rows = [invoice_row(i.lower()) for i in asked if i != ids[7]]
        return httpx.Response(200, json={"Invoices": rows})

    route = xero.get(f"{API}/Invoices").mock(side_effect=answer)
    found = connector().fresh(ids)
    assert route.call_count == 2
    assert [len(c.request.url.params["IDs"].split(",")) for c in route.calls] == [100, 50]
    assert all(c.request.url.params["summaryOnly"] == "true" for c in route.calls)
    assert all(c.request.headers["xero-tenant-id"] == TENANT for c in route.calls)
    assert set(found) == set(ids) - {ids[7]}, "keyed as asked; a missing id is gone"
    one = found[ids[0]]
    assert one.invoice.balance == Decimal("60.00") and one.invoice.status is InvoiceStatus.OPEN
    assert one.invoice.sent is True
    assert one.bill_email is None and one.delivered_at is None


def test_fresh_leaves_out_bills_and_deleted_invoices_and_refuses_an_unreadable_row(
    xero: respx.MockRouter,
) -> None:
    rows = [
        invoice_row("inv-1"),
        invoice_row("inv-2", Type="ACCPAY"),
        invoice_row("inv-3", Status="DELETED"),
    ]
    route = xero.get(f"{API}/Invoices").mock(
        return_value=httpx.Response(200, json={"Invoices": rows})
    )
    assert set(connector().fresh(["inv-1", "inv-2", "inv-3"])) == {"inv-1"}
    route.mock(
        return_value=httpx.Response(200, json={"Invoices": [invoice_row("inv-1", Total="lots")]})
    )
    with pytest.raises(DataError, match="inv-1"):
        connector().fresh(["inv-1"])


# -- email ----------------------------------------------------------------------------------------
def test_email_posts_an_empty_object_under_the_key(xero: respx.MockRouter) -> None:
    route = xero.post(f"{API}/Invoices/{INV}/Email").mock(return_value=httpx.Response(204))
    assert connector().email(INV, key="act-1") is None
    request = route.calls.last.request
    assert body(request) == {}
    assert request.headers["Idempotency-Key"] == "act-1"
    assert request.headers["xero-tenant-id"] == TENANT
    assert request.headers["content-type"] == "application/json"


def test_email_to_another_address_is_not_something_xero_does(xero: respx.MockRouter) -> None:
    route = xero.post(f"{API}/Invoices/{INV}/Email").mock(return_value=httpx.Response(204))
    with pytest.raises(ValueError, match="send_to"):
        connector().email(INV, key="act-1", send_to="ap@example.com")
    assert route.call_count == 0


@pytest.mark.parametrize(
    ("messages", "kind"),
    [
        (["The contact does not have a valid email address"], NoEmailAddress),
        (["InvalidContactEmail: The email address for the contact is not valid."], NoEmailAddress),
        (["The daily limit of emails for this organisation has been reached"], EmailCapReached),
        (["You have reached the limit of 20 emails a day for a trial"], EmailCapReached),
        (["Daily email quota exceeded"], EmailCapReached),
        (["Invoice not of valid status for sending by email"], PermanentError),
        (["Invoice not of valid type for sending by email"], PermanentError),
    ],
)
def test_email_refusals_are_told_apart_by_their_message(
    xero: respx.MockRouter, messages: list[str], kind: type[PermanentError]
) -> None:
    route = xero.post(f"{API}/Invoices/{INV}/Email").mock(return_value=refusal(*messages))
    with pytest.raises(PermanentError) as raised:
        connector().email(INV, key="act-1")
    assert type(raised.value) is kind
    assert raised.value.status == 400 and raised.value.body is not None
    assert route.call_count == 1, "a refusal is final: never resent"


def test_an_email_refused_otherwise_stays_a_plain_refusal(xero: respx.MockRouter) -> None:
    xero.post(f"{API}/Invoices/{INV}/Email").mock(
        return_value=httpx.Response(404, text="The resource you're looking for cannot be found")
    )
    with pytest.raises(PermanentError) as raised:
        connector().email(INV, key="act-1")
    assert type(raised.value) is PermanentError and raised.value.status == 404


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(500, json={"Title": "An error occurred"}), httpx.ReadTimeout("no reply")],
    ids=["5xx", "timeout"],
)
def test_an_email_without_an_answer_is_outcome_unknown(
    xero: respx.MockRouter, failure: httpx.Response | Exception
) -> None:
    route = xero.post(f"{API}/Invoices/{INV}/Email").mock(side_effect=lambda _: _raise(failure))
    with pytest.raises(OutcomeUnknown):
        connector().email(INV, key="act-1")
    # resent only under the same key, while Xero still remembers it
    assert route.call_count >= 1
    assert {c.request.headers["Idempotency-Key"] for c in route.calls} == {"act-1"}


def _raise(failure: httpx.Response | Exception) -> httpx.Response:
    if isinstance(failure, Exception):
        raise failure
    return failure


@pytest.mark.parametrize("key", ["", "   ", "k" * 129])
def test_a_key_xero_would_refuse_is_refused_before_any_call(
    xero: respx.MockRouter, key: str
) -> None:
    email = xero.post(f"{API}/Invoices/{INV}/Email").mock(return_value=httpx.Response(204))
    history = xero.put(f"{API}/Invoices/{INV}/History").mock(return_value=httpx.Response(200))
    dated = xero.post(f"{API}/Invoices/{INV}").mock(return_value=httpx.Response(200))
    made = connector()
    with pytest.raises(ValueError, match="Idempotency-Key"):
        made.email(INV, key=key)
    with pytest.raises(ValueError, match="Idempotency-Key"):
        made.notes([NoteWrite(INV, "Reminder", key)])
    with pytest.raises(ValueError, match="Idempotency-Key"):
        made.expect_payment(INV, date(2026, 12, 20), key=key)
    assert email.call_count == history.call_count == dated.call_count == 0
    made.email(INV, key="k" * 128)
    assert email.call_count == 1


# -- notes ----------------------------------------------------------------------------------------
def history_reply(request: httpx.Request) -> httpx.Response:
    details = body(request)["HistoryRecords"][0]["Details"]
    record = {"DateUTC": ms(START), "Details": details, "ValidationErrors": []}
    return httpx.Response(200, json={"HistoryRecords": [record]})


def test_each_note_is_one_put_under_its_own_key(xero: respx.MockRouter) -> None:
    one = xero.put(f"{API}/Invoices/inv-1/History").mock(side_effect=history_reply)
    two = xero.put(f"{API}/Invoices/inv-2/History").mock(
        return_value=refusal("The Details field contains invalid characters")
    )
    notes = [
        NoteWrite("inv-1", "Reminder 1 sent", "n-1"),
        NoteWrite("inv-2", "Reminder 1 sent", "n-2"),
        NoteWrite("inv-1", "Final notice sent", "n-3"),
    ]
    outcomes = connector().notes(notes)
    assert [(o.key, o.written) for o in outcomes] == [("n-1", True), ("n-2", False), ("n-3", True)]
    assert outcomes[0].error is None and outcomes[0].ref is None
    refused = outcomes[1].error
    assert isinstance(refused, PermanentError) and refused.status == 400
    assert [body(c.request) for c in one.calls] == [
        {"HistoryRecords": [{"Details": "Reminder 1 sent"}]},
        {"HistoryRecords": [{"Details": "Final notice sent"}]},
    ]
    assert [c.request.headers["Idempotency-Key"] for c in one.calls] == ["n-1", "n-3"]
    assert two.calls.last.request.headers["Idempotency-Key"] == "n-2"


def test_a_note_over_250_utf16_units_is_refused_before_any_call(xero: respx.MockRouter) -> None:
    route = xero.put(url__regex=rf"{API}/Invoices/.*/History").mock(side_effect=history_reply)
    emoji = "\N{GRINNING FACE}"
    assert len(emoji * 126) == 126 and utf16_units(emoji * 126) == 252
    notes = [NoteWrite("inv-1", "fine", "n-1"), NoteWrite("inv-2", emoji * 126, "n-2")]
    with pytest.raises(ValueError, match="252 UTF-16 code units"):
        connector().notes(notes)
    with pytest.raises(ValueError, match="Details"):
        connector().notes([NoteWrite("inv-1", "  ", "n-3")])
    assert route.call_count == 0, "nothing written, not even the note that was fine"
    outcomes = connector().notes([NoteWrite("inv-1", emoji * 125, "n-4")])
    assert outcomes[0].written and route.call_count == 1
    assert connector().notes([NoteWrite("inv-1", "x" * 250, "n-5")])[0].written


@pytest.mark.parametrize(
    "failure",
    [httpx.Response(503, json={"Title": "Service Unavailable"}), httpx.ReadTimeout("no reply")],
    ids=["5xx", "timeout"],
)
def test_a_note_whose_reply_was_lost_is_outcome_unknown(
    xero: respx.MockRouter, failure: httpx.Response | Exception
) -> None:
    xero.put(f"{API}/Invoices/inv-1/History").mock(side_effect=history_reply)
    lost = xero.put(f"{API}/Invoices/inv-2/History").mock(side_effect=lambda _: _raise(failure))
    later = xero.put(f"{API}/Invoices/inv-3/History").mock(side_effect=history_reply)
    notes = [NoteWrite(f"inv-{n}", "Reminder", f"n-{n}") for n in (1, 2, 3)]
    with pytest.raises(OutcomeUnknown):
        connector().notes(notes)
    assert {c.request.headers["Idempotency-Key"] for c in lost.calls} == {"n-2"}
    assert later.call_count == 0, "nothing after the note whose fate is unknown"


# -- read-back ------------------------------------------------------------------------------------
def test_read_back_gives_every_record_as_a_note_and_email_records_as_emails(
    xero: respx.MockRouter,
) -> None:
    sent_at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    records = [
        {"Changes": "Created", "DateUTC": ms(START), "User": "Ann", "Details": "INV-1 for 100."},
        {
            "Changes": "Sent",
            "DateUTC": ms(sent_at),
            "User": "System Generated",
            "Details": "This invoice has been sent to ap@example.com, ann@example.com.",
        },
        {"Changes": "Note", "DateUTC": ms(START), "Details": "Reminder 1 sent [arsync:a1]"},
        {"Changes": "Paid", "DateUTC": ms(START)},  # no Details: not a note
        {"Changes": "Note", "DateUTC": "garbled", "Details": "Undated"},
    ]
    one = xero.get(f"{API}/Invoices/inv-1/History").mock(
        return_value=httpx.Response(200, json={"HistoryRecords": records})
    )
    gone = xero.get(f"{API}/Invoices/inv-2/History").mock(
        return_value=httpx.Response(404, text="The resource you're looking for cannot be found")
    )
    trails = connector().read_back(["inv-1", "inv-2", "inv-1"])
    assert one.call_count == 1 and gone.call_count == 1
    assert set(trails) == {"inv-1"}, "an invoice Xero no longer has is left out"
    trail = trails["inv-1"]
    assert [(n.text, n.at) for n in trail.notes] == [
        ("INV-1 for 100.", START),
        ("This invoice has been sent to ap@example.com, ann@example.com.", sent_at),
        ("Reminder 1 sent [arsync:a1]", START),
        ("Undated", None),
    ]
    assert [(e.at, e.to) for e in trail.emails] == [(sent_at, "ap@example.com, ann@example.com")]
    assert "Sent" in trail.emails[0].evidence
    assert trail.emails_recorded is False


# -- the expected payment date --------------------------------------------------------------------
def test_expect_payment_sets_and_clears_the_expected_date(xero: respx.MockRouter) -> None:
    route = xero.post(f"{API}/Invoices/{INV}").mock(
        return_value=httpx.Response(200, json={"Invoices": [invoice_row(INV)]})
    )
    made = connector()
    assert made.expect_payment(INV, date(2026, 12, 20), key="p-1") is True
    assert made.expect_payment(INV, None, key="p-2") is True
    sent = [body(c.request) for c in route.calls]
    assert sent == [
        {"Invoices": [{"InvoiceID": INV, "ExpectedPaymentDate": "2026-12-20"}]},
        {"Invoices": [{"InvoiceID": INV, "ExpectedPaymentDateString": ""}]},
    ]
    assert [c.request.headers["Idempotency-Key"] for c in route.calls] == ["p-1", "p-2"]


def test_an_expected_date_without_an_answer_is_outcome_unknown(xero: respx.MockRouter) -> None:
    route = xero.post(f"{API}/Invoices/{INV}").mock(side_effect=httpx.ReadTimeout("no reply"))
    with pytest.raises(OutcomeUnknown):
        connector().expect_payment(INV, date(2026, 12, 20), key="p-1")
    assert {c.request.headers["Idempotency-Key"] for c in route.calls} == {"p-1"}
    route.mock(return_value=refusal("INV-001 is PAID: an expected date goes on an invoice owed"))
    with pytest.raises(PermanentError):
        connector().expect_payment(INV, date(2026, 12, 20), key="p-2")
