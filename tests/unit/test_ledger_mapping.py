"""A bookkeeper's labels, notes, places and promises as the mappings read them from both ledgers."""

from __future__ import annotations

import copy
from datetime import date
from typing import Any

import pytest

from arsync.connectors.countries import CODES, iso_country
from arsync.connectors.quickbooks import mapping as qbo
from arsync.connectors.xero import mapping as xero
from arsync.domain import Customer, Invoice, Quarantined
from arsync.errors import DataError


# -- countries ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("USA", "US"),
        ("U.S.A.", "US"),
        ("United States of America", "US"),
        ("us", "US"),
        ("United Kingdom", "GB"),
        ("UK", "GB"),
        ("Scotland", "GB"),
        ("  great   britain ", "GB"),
        ("The Netherlands", "NL"),
        ("Deutschland", "DE"),
        ("Trinidad & Tobago", "TT"),
        ("nz", "NZ"),
        ("Éire", "IE"),
        ("CAN", "CA"),
        ("FJ", "FJ"),  # any assigned code, named in the table or not
    ],
)
def test_countries_people_type_are_read_as_iso_codes(text: str, code: str) -> None:
    assert iso_country(text) == code


@pytest.mark.parametrize(
    "text", [None, "", "   ", "Georgia", "Korea", "Congo", "Virgin Islands", "EU", "XX", "Narnia"]
)
def test_an_unknown_or_ambiguous_country_is_not_guessed(text: str | None) -> None:
    assert iso_country(text) is None


def test_the_code_table_holds_every_assigned_code() -> None:
    assert len(CODES) == 249
    assert all(len(c) == 2 and c.isupper() for c in CODES)
    assert "UK" not in CODES  # reserved, not assigned: read as a name ("UK" is GB)


# -- QuickBooks Online ----------------------------------------------------------------------------
CUSTOMER: dict[str, Any] = {
    "Id": "7",
    "MetaData": {"LastUpdatedTime": "2026-11-02T08:00:00-08:00"},
    "DisplayName": "Acme Builders",
    "Active": True,
    "Notes": "Paused: disputed delivery",
    "CustomerTypeRef": {"value": "3"},
    "BillAddr": {"City": "Toronto", "Country": "Canada", "CountrySubDivisionCode": "ON"},
}


def qbo_customer(types: dict[str, str] | None = None, **changes: Any) -> Customer | Quarantined:
    row = copy.deepcopy(CUSTOMER)
    for key, value in changes.items():
        if value is None:
            row.pop(key, None)
        else:
            row[key] = value
    return qbo.customer(row, types)


def test_qbo_customer_type_notes_and_place() -> None:
    got = qbo_customer({"3": "Do not chase", "4": "Slow payer"})
    assert isinstance(got, Customer)
    assert got.tags == ("Do not chase",)
    assert got.notes == "Paused: disputed delivery"
    assert (got.country, got.region) == ("CA", "ON")
    assert qbo.record("Customer", CUSTOMER, "USD", {"3": "Do not chase"}) == got


def test_qbo_customer_without_a_type_notes_or_address() -> None:
    got = qbo_customer({"3": "Do not chase"}, Notes=None, CustomerTypeRef=None, BillAddr=None)
    assert isinstance(got, Customer)
    assert (got.tags, got.notes, got.country, got.region) == ((), None, None, None)
    blank = qbo_customer(
        None, Notes="  \n ", BillAddr={"Country": " ", "CountrySubDivisionCode": ""}
    )
    assert isinstance(blank, Customer)
    assert (blank.notes, blank.country, blank.region) == (None, None, None)


def test_qbo_a_type_whose_name_is_not_known_gives_no_tag() -> None:
    got = qbo_customer({"1": "Other"})
    assert isinstance(got, Customer) and got.tags == ()
    assert qbo.customer_type_id(CUSTOMER) == "3"
    assert qbo.customer_type_id({"CustomerTypeRef": {"value": True}}) is None


def test_qbo_an_unreadable_address_is_no_place_but_unreadable_notes_or_type_hold_it_back() -> None:
    odd = qbo_customer({}, BillAddr={"Country": 42, "CountrySubDivisionCode": ["ON"]})
    assert isinstance(odd, Customer) and (odd.country, odd.region) == (None, None)
    notes = qbo_customer({}, Notes={"text": "hold"})
    assert isinstance(notes, Quarantined) and "Notes" in notes.reason
    ref = qbo_customer({}, CustomerTypeRef={"value": 3.5})
    assert isinstance(ref, Quarantined) and "CustomerTypeRef.value" in ref.reason


def test_qbo_customer_type_rows() -> None:
    assert qbo.customer_type_name({"Id": "3", "Name": "Do not chase"}) == ("3", "Do not chase")
    assert qbo.customer_type_name({"Id": "3", "Name": ""}) is None
    assert qbo.customer_type_name({"Name": "No id"}) is None


# -- Xero -----------------------------------------------------------------------------------------
CONTACT: dict[str, Any] = {
    "ContactID": "c-1",
    "ContactStatus": "ACTIVE",
    "Name": "Kestrel Design",
    "UpdatedDateUTC": "/Date(1795446000000+0000)/",
    "Addresses": [
        {"AddressType": "STREET", "Country": "United States", "Region": "NY"},
        {"AddressType": "POBOX", "City": "Dublin", "Country": "Ireland", "Region": "Co. Dublin"},
    ],
    "ContactGroups": [
        {"ContactGroupID": "g-2", "Name": "Slow payers", "Status": "ACTIVE", "Contacts": []},
        {"ContactGroupID": "g-1", "Name": "Do not chase", "Status": "ACTIVE", "Contacts": []},
        {"ContactGroupID": "g-0", "Name": "Old list", "Status": "DELETED", "Contacts": []},
    ],
}


def xero_contact(**changes: Any) -> Any:
    row = copy.deepcopy(CONTACT)
    for key, value in changes.items():
        if value is None:
            row.pop(key, None)
        else:
            row[key] = value
    return xero.contact(row)


def test_xero_contact_groups_and_billing_place() -> None:
    got = xero_contact()
    assert isinstance(got, Customer)
    assert got.tags == ("Do not chase", "Slow payers")  # sorted; the deleted group labels nobody
    assert (got.country, got.region) == ("IE", "Co. Dublin")  # the billing (POBOX) address
    assert got.notes is None  # Xero contacts have no notes


def test_xero_place_falls_back_to_the_street_address() -> None:
    got = xero_contact(Addresses=[{"AddressType": "POBOX"}, CONTACT["Addresses"][0]])
    assert isinstance(got, Customer) and (got.country, got.region) == ("US", "NY")
    none = xero_contact(Addresses=[{"AddressType": "POBOX", "Country": "Atlantis"}])
    assert isinstance(none, Customer) and (none.country, none.region) == (None, None)
    odd = xero_contact(Addresses="nowhere")
    assert isinstance(odd, Customer) and (odd.country, odd.region) == (None, None)


def test_xero_contact_without_groups_has_no_tags() -> None:
    got = xero_contact(ContactGroups=None)
    assert isinstance(got, Customer) and got.tags == ()
    empty = xero_contact(ContactGroups=[])
    assert isinstance(empty, Customer) and empty.tags == ()


@pytest.mark.parametrize(
    ("groups", "reason"),
    [
        ("Do not chase", "ContactGroups: expected a list"),
        (["Do not chase"], "ContactGroups[0]: expected an object"),
        ([{"Status": "ACTIVE"}], "ContactGroups[0].Name: missing"),
        ([{"Name": 7}], "ContactGroups[0]"),
    ],
)
def test_xero_unreadable_groups_hold_the_contact_back(groups: Any, reason: str) -> None:
    got = xero_contact(ContactGroups=groups)
    assert isinstance(got, Quarantined) and reason in got.reason


INVOICE: dict[str, Any] = {
    "Type": "ACCREC",
    "InvoiceID": "inv-1",
    "InvoiceNumber": "INV-1",
    "Contact": {"ContactID": "c-1"},
    "Date": "/Date(1790812800000+0000)/",
    "DueDate": "/Date(1793404800000+0000)/",
    "Status": "AUTHORISED",
    "Total": "100.00",
    "AmountDue": "100.00",
    "CurrencyCode": "GBP",
    "UpdatedDateUTC": "/Date(1795446000000+0000)/",
}


@pytest.mark.parametrize(
    "raw", ["/Date(1797724800000+0000)/", "/Date(1797724800000)/", "2026-12-20T00:00:00"]
)
def test_xero_expected_payment_date(raw: str) -> None:
    got = xero.invoice({**INVOICE, "ExpectedPaymentDate": raw})
    assert isinstance(got, Invoice) and got.expected_date == date(2026, 12, 20)


def test_xero_invoice_without_a_promise_and_an_unreadable_one() -> None:
    got = xero.invoice(INVOICE)
    assert isinstance(got, Invoice) and got.expected_date is None
    bad = xero.invoice({**INVOICE, "ExpectedPaymentDate": "soon"})
    assert isinstance(bad, Quarantined) and "ExpectedPaymentDate" in bad.reason


def test_xero_group_rows() -> None:
    assert xero.contact_group({"ContactGroupID": "g-1", "Name": "VIP", "Status": "ACTIVE"}) == (
        "g-1",
        "VIP",
    )
    assert xero.contact_group({"ContactGroupID": "g-1", "Name": "VIP", "Status": "DELETED"}) is None
    with pytest.raises(DataError, match="Name"):
        xero.contact_group({"ContactGroupID": "g-1", "Status": "ACTIVE"})
    with pytest.raises(DataError):
        xero.contact_group("g-1")
    members = {"Contacts": [{"ContactID": "c-1", "Name": "A"}, {"ContactID": "c-2"}]}
    assert xero.group_members(members) == ["c-1", "c-2"]
    assert xero.group_members({}) == []
    with pytest.raises(DataError, match="ContactID"):
        xero.group_members({"Contacts": [{"Name": "no id"}]})
    with pytest.raises(DataError, match="not a list"):
        xero.group_members({"Contacts": {"ContactID": "c-1"}})
