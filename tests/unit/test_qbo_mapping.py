"""QBO rows to records: every field, every status, and every unreadable row quarantined."""

from __future__ import annotations

import copy
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from arsync.connectors.quickbooks import mapping
from arsync.domain import (
    Allocation,
    Credit,
    Customer,
    Deleted,
    DocStatus,
    Invoice,
    InvoiceStatus,
    Kind,
    Payment,
    Quarantined,
)

# Rows shaped as QBO (and arsync's sandbox) write them; amounts arrive as Decimal.
INVOICE: dict[str, Any] = {
    "Id": "130",
    "SyncToken": "2",
    "MetaData": {
        "CreateTime": "2026-10-01T09:12:00-07:00",
        "LastUpdatedTime": "2026-11-20T16:30:05-08:00",
    },
    "DocNumber": "INV-1042",
    "TxnDate": "2026-10-01",
    "DueDate": "2026-10-31",
    "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
    "PrivateNote": "",
    "LinkedTxn": [{"TxnId": "201", "TxnType": "Payment"}],
    "CustomerRef": {"value": "7", "name": "Acme"},
    "TotalAmt": Decimal("1500.00"),
    "Balance": Decimal("250.50"),
    "EmailStatus": "EmailSent",
}

PAYMENT: dict[str, Any] = {
    "Id": "201",
    "MetaData": {"LastUpdatedTime": "2026-11-20T16:30:05-08:00"},
    "CustomerRef": {"value": "7", "name": "Acme"},
    "TotalAmt": Decimal("1300.00"),
    "UnappliedAmt": Decimal("50.00"),
    "TxnDate": "2026-11-20",
    "CurrencyRef": {"value": "USD"},
    "Line": [
        {"Amount": Decimal("1000.00"), "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]},
        {"Amount": Decimal("200.00"), "LinkedTxn": [{"TxnId": "131", "TxnType": "Invoice"}]},
        {"Amount": Decimal("50.00"), "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]},
    ],
}

CREDIT_MEMO: dict[str, Any] = {
    "Id": "305",
    "MetaData": {"LastUpdatedTime": "2026-11-21T10:00:00+00:00"},
    "DocNumber": "CM2001",
    "TxnDate": "2026-11-21",
    "CurrencyRef": {"value": "GBP"},
    "CustomerRef": {"value": "9"},
    "TotalAmt": Decimal("80.00"),
    "RemainingCredit": Decimal("30.00"),
    "Balance": Decimal("30.00"),
    "PrivateNote": "",
}

CUSTOMER: dict[str, Any] = {
    "Id": "7",
    "MetaData": {"LastUpdatedTime": "2026-11-02T08:00:00-08:00"},
    "DisplayName": "Acme Builders",
    "PrimaryEmailAddr": {"Address": "ap@acme.example"},
    "PrimaryPhone": {"FreeFormNumber": "(415) 555-0101"},
    "CurrencyRef": {"value": "USD", "name": "United States Dollar"},
    "Active": True,
}


def edited(row: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A deep copy of `row` with `changes`; a change to None removes the field."""
    out = copy.deepcopy(row)
    for key, value in changes.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def quarantined(result: object) -> Quarantined:
    assert isinstance(result, Quarantined), result
    return result


# -- invoices ------------------------------------------------------------------------------------
def test_invoice_every_field() -> None:
    inv = mapping.invoice(INVOICE, "EUR")
    assert inv == Invoice(
        id="130",
        number="INV-1042",
        customer_id="7",
        issue_date=date(2026, 10, 1),
        due_date=date(2026, 10, 31),
        currency="USD",
        total=Decimal("1500.00"),
        balance=Decimal("250.50"),
        status=InvoiceStatus.OPEN,
        sent=True,
        updated_at=datetime(2026, 11, 21, 0, 30, 5, tzinfo=UTC),
    )
    assert inv.updated_at.utcoffset() is not None


def test_invoice_defaults_due_date_currency_number_and_sent() -> None:
    row = edited(INVOICE, DueDate=None, CurrencyRef=None, DocNumber=None, EmailStatus="NotSet")
    inv = mapping.invoice(row, "CAD")
    assert isinstance(inv, Invoice)
    assert inv.due_date == inv.issue_date == date(2026, 10, 1)
    assert inv.currency == "CAD"
    assert inv.number is None
    assert inv.sent is False
    assert mapping.invoice(edited(INVOICE, EmailStatus=None), "USD").sent is False  # type: ignore[union-attr]


def test_invoice_amounts_from_int_and_text() -> None:
    inv = mapping.invoice(edited(INVOICE, TotalAmt=1500, Balance="0.10"), None)
    assert isinstance(inv, Invoice)
    assert inv.total == Decimal(1500) and inv.balance == Decimal("0.10")
    assert isinstance(inv.total, Decimal)


@pytest.mark.parametrize(
    ("changes", "status"),
    [
        ({}, InvoiceStatus.OPEN),
        ({"Balance": Decimal("0.00")}, InvoiceStatus.PAID),
        ({"Balance": 0}, InvoiceStatus.PAID),
        (
            {"TotalAmt": Decimal("0.00"), "Balance": Decimal("0.00"), "PrivateNote": "Voided"},
            InvoiceStatus.VOIDED,
        ),
        # A zero invoice nobody voided is simply paid; "Voided" on a live invoice is just a note.
        ({"TotalAmt": Decimal("0.00"), "Balance": Decimal("0.00")}, InvoiceStatus.PAID),
        ({"PrivateNote": "Voided"}, InvoiceStatus.OPEN),
    ],
)
def test_invoice_status(changes: dict[str, Any], status: InvoiceStatus) -> None:
    inv = mapping.invoice(edited(INVOICE, **changes), "USD")
    assert isinstance(inv, Invoice)
    assert inv.status is status


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"Id": None}, "Id: missing"),
        ({"Id": ""}, "Id: empty"),
        ({"Id": True}, "Id: not text"),
        ({"CustomerRef": None}, "CustomerRef.value: missing"),
        ({"CustomerRef": "7"}, "CustomerRef: not an object"),
        ({"CustomerRef": {"name": "Acme"}}, "CustomerRef.value: missing"),
        ({"TxnDate": None}, "TxnDate: missing"),
        ({"TxnDate": "2026-13-01"}, "TxnDate: not a date"),
        ({"TxnDate": "20261001"}, "TxnDate: not a date"),
        ({"TxnDate": 20261001}, "TxnDate: not text"),
        ({"DueDate": "soon"}, "DueDate: not a date"),
        ({"TotalAmt": None}, "TotalAmt: missing"),
        ({"TotalAmt": "abc"}, "TotalAmt: not an amount"),
        ({"TotalAmt": 1500.0}, "TotalAmt: not an amount (float"),
        ({"TotalAmt": True}, "TotalAmt: not an amount (bool"),
        ({"TotalAmt": Decimal("NaN")}, "TotalAmt: not a finite amount"),
        ({"TotalAmt": "Infinity"}, "TotalAmt: not a finite amount"),
        ({"TotalAmt": [1]}, "TotalAmt: not an amount (list"),
        ({"Balance": None}, "Balance: missing"),
        ({"Balance": "-inf"}, "Balance: not a finite amount"),
        ({"CurrencyRef": {"value": "dollars"}}, "CurrencyRef.value: not a currency code"),
        ({"CurrencyRef": {"value": 840}}, "CurrencyRef.value: not text"),
        ({"MetaData": None}, "MetaData.LastUpdatedTime: missing"),
        ({"MetaData": {"LastUpdatedTime": "yesterday"}}, "LastUpdatedTime: not a date-time"),
        ({"MetaData": {"LastUpdatedTime": "2026-11-20T16:30:05"}}, "no UTC offset"),
        ({"DocNumber": 1042}, "DocNumber: not text"),
    ],
)
def test_invoice_unreadable_is_quarantined(changes: dict[str, Any], field: str) -> None:
    row = edited(INVOICE, **changes)
    got = quarantined(mapping.invoice(row, "USD"))
    assert got.kind is Kind.INVOICE
    assert field in got.reason
    assert got.reason.startswith("Invoice ")
    assert got.raw == row
    assert got.id == (None if "Id" in changes else "130")


def test_invoice_without_currency_and_unknown_home_currency_is_quarantined() -> None:
    got = quarantined(mapping.invoice(edited(INVOICE, CurrencyRef=None), None))
    assert "CurrencyRef.value: missing, and the home currency is unknown" in got.reason


def test_integer_id_is_read_as_text() -> None:
    inv = mapping.invoice(edited(INVOICE, Id=130), "USD")
    assert isinstance(inv, Invoice) and inv.id == "130"


# -- payments ------------------------------------------------------------------------------------
def test_payment_every_field_and_allocations() -> None:
    pay = mapping.payment(PAYMENT, "EUR")
    assert pay == Payment(
        id="201",
        customer_id="7",
        date=date(2026, 11, 20),
        currency="USD",
        amount=Decimal("1300.00"),
        unapplied=Decimal("50.00"),
        status=DocStatus.ACTIVE,
        # two lines for invoice 130 are one allocation
        allocations=(
            Allocation("130", Decimal("1050.00")),
            Allocation("131", Decimal("200.00")),
        ),
        updated_at=datetime(2026, 11, 21, 0, 30, 5, tzinfo=UTC),
    )


def test_credit_application_payment_allocates_only_to_the_invoice() -> None:
    # QBO applies a credit memo through a payment of zero: one line each way.
    row = edited(
        PAYMENT,
        TotalAmt=Decimal("0.00"),
        UnappliedAmt=Decimal("0.00"),
        Line=[
            {"Amount": Decimal("80.00"), "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]},
            {"Amount": Decimal("80.00"), "LinkedTxn": [{"TxnId": "305", "TxnType": "CreditMemo"}]},
        ],
    )
    pay = mapping.payment(row, "USD")
    assert isinstance(pay, Payment)
    assert pay.allocations == (Allocation("130", Decimal("80.00")),)
    assert pay.status is DocStatus.ACTIVE


def test_payment_optional_fields() -> None:
    row = edited(PAYMENT, CustomerRef=None, CurrencyRef=None, Line=None)
    pay = mapping.payment(row, "GBP")
    assert isinstance(pay, Payment)
    assert pay.customer_id is None
    assert pay.currency == "GBP"
    assert pay.allocations == ()


def test_voided_payment() -> None:
    row = edited(
        PAYMENT, TotalAmt=Decimal("0.00"), UnappliedAmt=Decimal("0.00"), PrivateNote="Voided"
    )
    pay = mapping.payment(row, "USD")
    assert isinstance(pay, Payment) and pay.status is DocStatus.VOIDED
    by_status = mapping.payment(edited(PAYMENT, TxnStatus="Voided"), "USD")
    assert isinstance(by_status, Payment) and by_status.status is DocStatus.VOIDED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"TotalAmt": 12.5}, "TotalAmt: not an amount (float"),
        ({"UnappliedAmt": None}, "UnappliedAmt: missing"),
        ({"TxnDate": "2026-11-31"}, "TxnDate: not a date"),
        ({"CustomerRef": {"value": 7.0}}, "CustomerRef.value: not text"),
        ({"Line": {"Amount": 1}}, "Line: not a list"),
        ({"Line": ["x"]}, "Line[0]: not an object"),
        ({"Line": [{"Amount": 5, "LinkedTxn": {"TxnId": "1"}}]}, "Line[0].LinkedTxn: not a list"),
        (
            {"Line": [{"LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]}]},
            "Line[0].Amount: missing",
        ),
        (
            {"Line": [{"Amount": "x", "LinkedTxn": [{"TxnId": "130", "TxnType": "Invoice"}]}]},
            "Line[0].Amount: not an amount",
        ),
        (
            {"Line": [{"Amount": 5, "LinkedTxn": [{"TxnType": "Invoice"}]}]},
            "Line[0].LinkedTxn[0].TxnId: missing",
        ),
        (
            {
                "Line": [
                    {
                        "Amount": 5,
                        "LinkedTxn": [
                            {"TxnId": "1", "TxnType": "Invoice"},
                            {"TxnId": "2", "TxnType": "Invoice"},
                        ],
                    }
                ]
            },
            "one amount linked to several invoices",
        ),
    ],
)
def test_payment_unreadable_is_quarantined(changes: dict[str, Any], field: str) -> None:
    row = edited(PAYMENT, **changes)
    got = quarantined(mapping.payment(row, "USD"))
    assert got.kind is Kind.PAYMENT
    assert got.id == "201"
    assert field in got.reason
    assert got.raw == row


# -- credit memos --------------------------------------------------------------------------------
def test_credit_every_field() -> None:
    assert mapping.credit(CREDIT_MEMO, "USD") == Credit(
        id="305",
        number="CM2001",
        customer_id="9",
        date=date(2026, 11, 21),
        currency="GBP",
        total=Decimal("80.00"),
        remaining=Decimal("30.00"),
        status=DocStatus.ACTIVE,
        allocations=(),
        updated_at=datetime(2026, 11, 21, 10, 0, tzinfo=UTC),
    )


def test_credit_remaining_falls_back_to_balance() -> None:
    got = mapping.credit(edited(CREDIT_MEMO, RemainingCredit=None, Balance="12.34"), "USD")
    assert isinstance(got, Credit) and got.remaining == Decimal("12.34")
    gone = quarantined(
        mapping.credit(edited(CREDIT_MEMO, RemainingCredit=None, Balance=None), None)
    )
    assert "Balance: missing" in gone.reason and gone.kind is Kind.CREDIT


def test_voided_credit_memo() -> None:
    row = edited(CREDIT_MEMO, TotalAmt=Decimal(0), RemainingCredit=Decimal(0), PrivateNote="Voided")
    got = mapping.credit(row, "USD")
    assert isinstance(got, Credit) and got.status is DocStatus.VOIDED


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"TotalAmt": None}, "TotalAmt: missing"),
        ({"RemainingCredit": 1.5}, "RemainingCredit: not an amount (float"),
        ({"TxnDate": None}, "TxnDate: missing"),
        ({"CurrencyRef": None}, "home currency is unknown"),
    ],
)
def test_credit_unreadable_is_quarantined(changes: dict[str, Any], field: str) -> None:
    got = quarantined(mapping.credit(edited(CREDIT_MEMO, **changes), None))
    assert field in got.reason and got.id == "305"


# -- customers -----------------------------------------------------------------------------------
def test_customer_every_field() -> None:
    assert mapping.customer(CUSTOMER) == Customer(
        id="7",
        name="Acme Builders",
        email="ap@acme.example",
        phone="(415) 555-0101",
        currency="USD",
        active=True,
        updated_at=datetime(2026, 11, 2, 16, 0, tzinfo=UTC),
    )


def test_customer_inactive_and_without_contact_details() -> None:
    row = edited(CUSTOMER, Active=False, PrimaryEmailAddr=None, PrimaryPhone=None, CurrencyRef=None)
    got = mapping.customer(row)
    assert isinstance(got, Customer)
    assert (got.active, got.email, got.phone, got.currency) == (False, None, None, None)
    blank = mapping.customer(edited(CUSTOMER, PrimaryEmailAddr={"Address": ""}, Active=None))
    assert isinstance(blank, Customer) and blank.email is None and blank.active is True


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"DisplayName": None}, "DisplayName: missing"),
        ({"DisplayName": "  "}, "DisplayName: empty"),
        ({"Active": "yes"}, "Active: not true or false"),
        ({"PrimaryEmailAddr": "ap@acme.example"}, "PrimaryEmailAddr: not an object"),
        ({"PrimaryPhone": {"FreeFormNumber": 4155550101}}, "FreeFormNumber: not text"),
        ({"Id": "x" * 65}, "Id: longer than 64"),
    ],
)
def test_customer_unreadable_is_quarantined(changes: dict[str, Any], field: str) -> None:
    got = quarantined(mapping.customer(edited(CUSTOMER, **changes)))
    assert got.kind is Kind.CUSTOMER and field in got.reason


# -- deletions and dispatch ----------------------------------------------------------------------
def test_deleted_rows() -> None:
    row = {
        "domain": "QBO",
        "status": "Deleted",
        "Id": "130",
        "MetaData": {"LastUpdatedTime": "2026-11-23T07:00:00-08:00"},
    }
    gone = Deleted(Kind.INVOICE, "130", at=datetime(2026, 11, 23, 15, 0, tzinfo=UTC))
    assert mapping.deleted("Invoice", row) == gone
    assert mapping.record("Invoice", row, None) == gone
    no_time = mapping.deleted("CreditMemo", {"status": "Deleted", "Id": "4", "MetaData": {}})
    assert no_time == Deleted(Kind.CREDIT, "4")
    no_id = quarantined(mapping.deleted("Payment", {"status": "Deleted"}))
    assert no_id.kind is Kind.PAYMENT and "Id: missing" in no_id.reason


def test_record_dispatches_by_entity() -> None:
    assert isinstance(mapping.record("Customer", CUSTOMER, None), Customer)
    assert isinstance(mapping.record("Invoice", INVOICE, None), Invoice)
    assert isinstance(mapping.record("Payment", PAYMENT, None), Payment)
    assert isinstance(mapping.record("CreditMemo", CREDIT_MEMO, None), Credit)


def test_home_currency_of_preferences() -> None:
    prefs = {"CurrencyPrefs": {"HomeCurrency": {"value": "GBP"}, "MultiCurrencyEnabled": True}}
    assert mapping.home_currency_of(prefs) == "GBP"
    assert mapping.home_currency_of({"CurrencyPrefs": {}}) is None
    assert mapping.home_currency_of({"CurrencyPrefs": {"HomeCurrency": {"value": "?"}}}) is None
    assert mapping.home_currency_of(None) is None
