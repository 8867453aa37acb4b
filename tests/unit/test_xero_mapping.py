"""Xero rows to records: every field and status, rows not arsync's dropped, bad rows quarantined."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from arsync.connectors.xero import mapping
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

INV = "9a3c1f0e-1111-4c4c-8d8d-000000000001"
CONTACT = "c0ffee00-2222-4c4c-8d8d-000000000002"
PAY = "beef0000-3333-4c4c-8d8d-000000000003"
CN = "cafe0000-4444-4c4c-8d8d-000000000004"
#: 2026-11-01 and 2026-12-01 at midnight UTC, 2026-11-20 10:30:00.250 UTC, as Xero writes them
NOV_1 = "/Date(1793491200000+0000)/"
DEC_1 = "/Date(1796083200000+0000)/"
UPDATED = "/Date(1795170600250+0000)/"
UPDATED_AT = datetime(2026, 11, 20, 10, 30, 0, 250000, tzinfo=UTC)


def invoice_row(**changes: Any) -> dict[str, Any]:
    """A summary sales invoice, as GET /Invoices?summaryOnly=true returns it."""
    row: dict[str, Any] = {
        "Type": "ACCREC",
        "InvoiceID": INV,
        "InvoiceNumber": "INV-1042",
        "Reference": "PO-4002",
        "AmountDue": Decimal("80.00"),
        "AmountPaid": Decimal("40.00"),
        "AmountCredited": Decimal("0.00"),
        "SentToContact": True,
        "CurrencyRate": Decimal("1.000000"),
        "Contact": {"ContactID": CONTACT, "Name": "Acme Ltd"},
        "DateString": "2026-11-01T00:00:00",
        "Date": NOV_1,
        "DueDateString": "2026-12-01T00:00:00",
        "DueDate": DEC_1,
        "Status": "AUTHORISED",
        "SubTotal": Decimal("120.00"),
        "TotalTax": Decimal("0.00"),
        "Total": Decimal("120.00"),
        "UpdatedDateUTC": UPDATED,
        "CurrencyCode": "GBP",
    }
    row.update(changes)
    return row


def contact_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "ContactID": CONTACT,
        "ContactStatus": "ACTIVE",
        "Name": "Acme Ltd",
        "EmailAddress": "ap@acme.example",
        "DefaultCurrency": "EUR",
        "UpdatedDateUTC": UPDATED,
        "Phones": [
            {"PhoneType": "DDI"},
            {"PhoneType": "MOBILE", "PhoneNumber": "07700 900123"},
            {
                "PhoneType": "DEFAULT",
                "PhoneCountryCode": "44",
                "PhoneAreaCode": "20",
                "PhoneNumber": "7946 0123",
            },
        ],
    }
    row.update(changes)
    return row


def payment_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PaymentID": PAY,
        "Date": NOV_1,
        "BankAmount": Decimal("40.00"),
        "Amount": Decimal("40.00"),
        "PaymentType": "ACCRECPAYMENT",
        "Status": "AUTHORISED",
        "UpdatedDateUTC": UPDATED,
        "Invoice": {
            "Type": "ACCREC",
            "InvoiceID": INV,
            "InvoiceNumber": "INV-1042",
            "Contact": {"ContactID": CONTACT, "Name": "Acme Ltd"},
            "CurrencyCode": "USD",
        },
    }
    row.update(changes)
    return row


def credit_row(**changes: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "CreditNoteID": CN,
        "CreditNoteNumber": "CN-2001",
        "Type": "ACCRECCREDIT",
        "RemainingCredit": Decimal("5.00"),
        "Allocations": [
            {"Amount": Decimal("10.00"), "Date": NOV_1, "Invoice": {"InvoiceID": INV}},
            {"Amount": 5, "Date": NOV_1, "Invoice": {"InvoiceID": "other-invoice"}},
        ],
        "Contact": {"ContactID": CONTACT, "Name": "Acme Ltd"},
        "Date": NOV_1,
        "Status": "AUTHORISED",
        "Total": Decimal("20.00"),
        "UpdatedDateUTC": UPDATED,
        "CurrencyCode": "EUR",
    }
    row.update(changes)
    return row


def quarantined(item: object) -> Quarantined:
    assert isinstance(item, Quarantined), item
    return item


# -- invoices -------------------------------------------------------------------------------------
def test_invoice_every_field() -> None:
    assert mapping.invoice(invoice_row()) == Invoice(
        id=INV,
        number="INV-1042",
        customer_id=CONTACT,
        issue_date=date(2026, 11, 1),
        due_date=date(2026, 12, 1),
        currency="GBP",
        total=Decimal("120.00"),
        balance=Decimal("80.00"),
        status=InvoiceStatus.OPEN,
        sent=True,
        updated_at=UPDATED_AT,
    )


@pytest.mark.parametrize(
    ("xero", "status"),
    [
        ("DRAFT", InvoiceStatus.DRAFT),
        ("SUBMITTED", InvoiceStatus.DRAFT),
        ("AUTHORISED", InvoiceStatus.OPEN),
        ("PAID", InvoiceStatus.PAID),
        ("VOIDED", InvoiceStatus.VOIDED),
    ],
)
def test_invoice_statuses(xero: str, status: InvoiceStatus) -> None:
    item = mapping.invoice(invoice_row(Status=xero))
    assert isinstance(item, Invoice)
    assert item.status is status


def test_a_deleted_invoice_is_deleted_even_without_its_other_fields() -> None:
    row = {"Type": "ACCREC", "InvoiceID": INV, "Status": "DELETED", "UpdatedDateUTC": UPDATED}
    assert mapping.invoice(row) == Deleted(Kind.INVOICE, INV, at=UPDATED_AT)
    row["UpdatedDateUTC"] = "garbled"
    assert mapping.invoice(row) == Deleted(Kind.INVOICE, INV, at=None)


@pytest.mark.parametrize("kind", ["ACCPAY", "ACCRECCREDIT", "ARPREPAYMENT", "APOVERPAYMENT"])
def test_invoices_other_than_sales_invoices_are_dropped(kind: str) -> None:
    assert mapping.invoice(invoice_row(Type=kind)) is None
    # even a malformed bill is none of arsync's business
    assert mapping.invoice(invoice_row(Type=kind, Total=1.5)) is None


def test_invoice_optional_fields_and_iso_dates() -> None:
    row = invoice_row(Date="2026-11-01T00:00:00", SentToContact=None)
    del row["DueDate"], row["InvoiceNumber"]
    item = mapping.invoice(row)
    assert isinstance(item, Invoice)
    assert item.due_date == item.issue_date == date(2026, 11, 1)  # no DueDate: due on issue
    assert item.number is None
    assert item.sent is False


@pytest.mark.parametrize(
    ("value", "amount"),
    [(120, Decimal(120)), ("120.10", Decimal("120.10")), (Decimal("0.01"), Decimal("0.01"))],
)
def test_money_from_int_text_or_decimal(value: object, amount: Decimal) -> None:
    item = mapping.invoice(invoice_row(Total=value))
    assert isinstance(item, Invoice)
    assert item.total == amount
    assert str(item.total) == str(amount)


@pytest.mark.parametrize("value", [120.1, True, "NaN", "Infinity", Decimal("NaN"), "12,50", [1]])
def test_money_that_is_not_exact_is_quarantined(value: object) -> None:
    item = quarantined(mapping.invoice(invoice_row(Total=value)))
    assert item.kind is Kind.INVOICE
    assert item.id == INV
    assert item.reason.startswith("Total: ")
    assert item.raw["Total"] is value


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"InvoiceID": None}, "InvoiceID: missing"),
        ({"InvoiceID": "  "}, "InvoiceID: empty"),
        ({"Type": None}, "Type: missing"),
        ({"Type": "QUOTE"}, "Type: unknown value 'QUOTE'"),
        ({"Status": "ARCHIVED"}, "Status: unknown value 'ARCHIVED'"),
        ({"Contact": None}, "Contact.ContactID: missing"),
        ({"Contact": {"Name": "Acme"}}, "Contact.ContactID: missing"),
        ({"Contact": "Acme"}, "Contact.ContactID: expected an object at 'ContactID', got str"),
        ({"Date": None}, "Date: missing"),
        ({"Date": "next Tuesday"}, "Date: not a Xero date: 'next Tuesday'"),
        ({"DueDate": 20261201}, "DueDate: expected text, got int 20261201"),
        ({"CurrencyCode": None}, "CurrencyCode: missing"),
        ({"AmountDue": None}, "AmountDue: missing"),
        ({"SentToContact": "yes"}, "SentToContact: expected true or false, got str 'yes'"),
        ({"UpdatedDateUTC": None}, "UpdatedDateUTC: missing"),
    ],
)
def test_malformed_invoices_are_quarantined_with_the_field(
    changes: dict[str, Any], reason: str
) -> None:
    row = invoice_row(**changes)
    item = quarantined(mapping.invoice(row))
    assert item.reason == reason
    assert item.id == (INV if changes.get("InvoiceID", INV) == INV else None)
    assert item.raw == row


def test_a_row_that_is_not_an_object_is_quarantined() -> None:
    item = quarantined(mapping.invoice(["not", "a", "row"]))  # type: ignore[arg-type]
    assert (item.kind, item.id) == (Kind.INVOICE, None)
    assert "expected an object" in item.reason


# -- contacts -------------------------------------------------------------------------------------
def test_contact_every_field_and_the_default_phone_first() -> None:
    assert mapping.contact(contact_row()) == Customer(
        id=CONTACT,
        name="Acme Ltd",
        email="ap@acme.example",
        phone="+44 20 7946 0123",
        currency="EUR",
        active=True,
        updated_at=UPDATED_AT,
    )


def test_contact_phone_falls_back_to_the_first_with_a_number() -> None:
    phones = [
        {"PhoneType": "DEFAULT", "PhoneNumber": ""},
        {"PhoneType": "DDI"},
        {"PhoneType": "MOBILE", "PhoneNumber": "07700 900123", "PhoneCountryCode": "+44"},
        {"PhoneType": "FAX", "PhoneNumber": "555"},
    ]
    item = mapping.contact(contact_row(Phones=phones))
    assert isinstance(item, Customer)
    assert item.phone == "+44 07700 900123"
    item = mapping.contact(contact_row(Phones=[{"PhoneType": "DEFAULT"}]))
    assert isinstance(item, Customer)
    assert item.phone is None


def test_contact_empty_values_are_none() -> None:
    row = contact_row(EmailAddress="", DefaultCurrency=None)
    del row["Phones"]  # summary contacts carry no phones
    item = mapping.contact(row)
    assert isinstance(item, Customer)
    assert (item.email, item.phone, item.currency) == (None, None, None)


@pytest.mark.parametrize(
    ("status", "active"), [("ACTIVE", True), ("ARCHIVED", False), ("GDPRREQUEST", False)]
)
def test_contact_statuses(status: str, active: bool) -> None:
    item = mapping.contact(contact_row(ContactStatus=status))
    assert isinstance(item, Customer)
    assert item.active is active


def test_a_merged_contact_is_deleted_into_its_survivor() -> None:
    survivor = "5urv1v0r-0000-4000-8000-000000000000"
    item = mapping.contact(contact_row(MergedToContactID=survivor, ContactStatus="ARCHIVED"))
    assert item == Deleted(Kind.CUSTOMER, CONTACT, at=UPDATED_AT, merged_into=survivor)
    item = mapping.contact(contact_row(MergedToContactID=mapping.NIL_GUID))
    assert isinstance(item, Customer)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"ContactID": None}, "ContactID: missing"),
        ({"Name": None}, "Name: missing"),
        ({"ContactStatus": "DELETED"}, "ContactStatus: unknown value 'DELETED'"),
        ({"ContactStatus": None}, "ContactStatus: missing"),
        ({"EmailAddress": 42}, "EmailAddress: expected text, got int 42"),
        ({"Phones": {"PhoneNumber": "1"}}, "Phones: expected a list, got dict"),
        ({"Phones": ["020 7946 0123"]}, "Phones[0]: expected an object, got str"),
        (
            {"Phones": [{"PhoneType": "DEFAULT", "PhoneNumber": 79460123}]},
            "Phones[0]: PhoneNumber: expected text, got int 79460123",
        ),
        ({"UpdatedDateUTC": "/Date(abc)/"}, "UpdatedDateUTC: not a Xero date: '/Date(abc)/'"),
    ],
)
def test_malformed_contacts_are_quarantined(changes: dict[str, Any], reason: str) -> None:
    item = quarantined(mapping.contact(contact_row(**changes)))
    assert item.kind is Kind.CUSTOMER
    assert item.reason == reason


# -- payments -------------------------------------------------------------------------------------
def test_payment_every_field_currency_from_its_invoice() -> None:
    assert mapping.payment(payment_row()) == Payment(
        id=PAY,
        customer_id=CONTACT,
        date=date(2026, 11, 1),
        currency="USD",
        amount=Decimal("40.00"),
        unapplied=Decimal(0),
        status=DocStatus.ACTIVE,
        allocations=(Allocation(INV, Decimal("40.00")),),
        updated_at=UPDATED_AT,
    )


def test_payment_own_currency_wins_and_contact_may_be_absent() -> None:
    row = payment_row(CurrencyCode="EUR")
    del row["Invoice"]["Contact"]
    item = mapping.payment(row)
    assert isinstance(item, Payment)
    assert (item.currency, item.customer_id) == ("EUR", None)


def test_a_deleted_payment_is_deleted() -> None:
    assert mapping.payment(payment_row(Status="DELETED")) == Deleted(
        Kind.PAYMENT, PAY, at=UPDATED_AT
    )


@pytest.mark.parametrize(
    "kind", ["ACCPAYPAYMENT", "ARCREDITPAYMENT", "APCREDITPAYMENT", "ARPREPAYMENTPAYMENT"]
)
def test_payments_other_than_on_sales_invoices_are_dropped(kind: str) -> None:
    assert mapping.payment(payment_row(PaymentType=kind)) is None


def test_payment_type_absent_is_read_from_the_invoice() -> None:
    row = payment_row(PaymentType=None)
    assert isinstance(mapping.payment(row), Payment)
    row["Invoice"]["Type"] = "ACCPAY"
    assert mapping.payment(row) is None
    del row["Invoice"]["Type"]
    assert quarantined(mapping.payment(row)).reason == "Invoice.Type: missing"


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"PaymentID": None}, "PaymentID: missing"),
        ({"Status": "VOIDED"}, "Status: unknown value 'VOIDED'"),
        ({"Amount": 40.0}, "Amount: expected an exact amount, got float 40.0"),
        (
            {"Invoice": {"Type": "ACCREC"}},
            "CurrencyCode: missing on the payment and on its Invoice",
        ),
        (
            {"Invoice": {"Type": "ACCREC", "CurrencyCode": "GBP"}},
            "Invoice.InvoiceID: missing",
        ),
        ({"Date": None}, "Date: missing"),
    ],
)
def test_malformed_payments_are_quarantined(changes: dict[str, Any], reason: str) -> None:
    item = quarantined(mapping.payment(payment_row(**changes)))
    assert item.kind is Kind.PAYMENT
    assert item.reason == reason


# -- credit notes ---------------------------------------------------------------------------------
def test_credit_note_every_field() -> None:
    assert mapping.credit_note(credit_row()) == Credit(
        id=CN,
        number="CN-2001",
        customer_id=CONTACT,
        date=date(2026, 11, 1),
        currency="EUR",
        total=Decimal("20.00"),
        remaining=Decimal("5.00"),
        status=DocStatus.ACTIVE,
        allocations=(
            Allocation(INV, Decimal("10.00")),
            Allocation("other-invoice", Decimal(5)),
        ),
        updated_at=UPDATED_AT,
    )


@pytest.mark.parametrize(
    ("xero", "status"),
    [("AUTHORISED", DocStatus.ACTIVE), ("PAID", DocStatus.ACTIVE), ("VOIDED", DocStatus.VOIDED)],
)
def test_credit_note_statuses(xero: str, status: DocStatus) -> None:
    item = mapping.credit_note(credit_row(Status=xero, Allocations=None))
    assert isinstance(item, Credit)
    assert item.status is status
    assert item.allocations == ()


def test_credit_notes_deleted_supplier_and_draft() -> None:
    assert mapping.credit_note(credit_row(Status="DELETED")) == Deleted(
        Kind.CREDIT, CN, at=UPDATED_AT
    )
    assert mapping.credit_note(credit_row(Type="ACCPAYCREDIT")) is None
    assert mapping.credit_note(credit_row(Status="DRAFT")) is None
    assert mapping.credit_note(credit_row(Status="SUBMITTED")) is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"CreditNoteID": None}, "CreditNoteID: missing"),
        ({"Type": "ACCREC"}, "Type: unknown value 'ACCREC'"),
        ({"RemainingCredit": None}, "RemainingCredit: missing"),
        ({"Allocations": "none"}, "Allocations: expected a list, got str"),
        (
            {"Allocations": [{"Amount": Decimal(1), "Invoice": {}}]},
            "Allocations[0]: Invoice.InvoiceID: missing",
        ),
        (
            {"Allocations": [{"Amount": 1.5, "Invoice": {"InvoiceID": INV}}]},
            "Allocations[0]: Amount: expected an exact amount, got float 1.5",
        ),
    ],
)
def test_malformed_credit_notes_are_quarantined(changes: dict[str, Any], reason: str) -> None:
    item = quarantined(mapping.credit_note(credit_row(**changes)))
    assert item.kind is Kind.CREDIT
    assert item.reason == reason
