"""Entities as Xero's JSON: full, summary and nested forms, as the Accounting API returns them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from arsync.sandbox.xero.serialise import (
    iso_date,
    iso_utc,
    ms_date,
    ms_datetime,
    ms_datetime_bare,
)
from arsync.sandbox.xero.state import (
    ZERO,
    Allocation,
    Contact,
    ContactGroup,
    CreditNote,
    HistoryEntry,
    Invoice,
    Line,
    Organisation,
    Payment,
)


def contact_ref(c: Contact) -> dict[str, Any]:
    """The contact as nested in a transaction."""
    return {
        "ContactID": c.contact_id,
        "Name": c.name,
        "Addresses": [],
        "Phones": [],
        "ContactGroups": [],
        "ContactPersons": [],
        "HasValidationErrors": False,
    }


def group_json(group: ContactGroup, members: bool = False) -> dict[str, Any]:
    """A contact group; its Contacts only where Xero lists them (GET /ContactGroups/{id})."""
    return {
        "ContactGroupID": group.group_id,
        "Name": group.name,
        "Status": group.status,
        "Contacts": [contact_ref(c) for c in group.members.values()] if members else [],
        "HasValidationErrors": False,
    }


def contact_full(
    c: Contact, summary: bool = False, groups: list[ContactGroup] | None = None
) -> dict[str, Any]:
    """A contact; `groups` are its ContactGroups, which Xero fills only in paged lists and
    single reads (None: the empty list an unpaged list carries)."""
    body: dict[str, Any] = {
        "ContactID": c.contact_id,
        "ContactStatus": c.status,
        "Name": c.name,
        "FirstName": c.first_name,
        "LastName": c.last_name,
        "EmailAddress": c.email or "",
        "IsSupplier": c.is_supplier,
        "IsCustomer": c.is_customer,
        "DefaultCurrency": c.currency,
        "UpdatedDateUTC": ms_datetime(c.updated),
        "HasAttachments": False,
        "HasValidationErrors": False,
    }
    if summary:
        return body
    body["ContactPersons"] = [
        {
            "FirstName": person.first_name,
            "LastName": person.last_name,
            "EmailAddress": person.email or "",
            "IncludeInEmails": person.include_in_emails,
        }
        for person in c.persons
    ]
    body["BankAccountDetails"] = ""
    billing: dict[str, Any] = {"AddressType": "POBOX", "City": c.city}
    if c.region:
        billing["Region"] = c.region
    if c.country:
        billing["Country"] = c.country
    body["Addresses"] = [billing, {"AddressType": "STREET"}]
    phones: list[dict[str, Any]] = [{"PhoneType": kind} for kind in ("DDI", "MOBILE", "FAX")]
    default_phone: dict[str, Any] = {"PhoneType": "DEFAULT"}
    if c.phone:
        # "+44 20 7946 0123" → country 44, area 20, number "7946 0123"
        parts = c.phone.split(" ", 2)
        default_phone.update(
            PhoneCountryCode=parts[0].lstrip("+"),
            PhoneAreaCode=parts[1] if len(parts) > 1 else "",
            PhoneNumber=parts[2] if len(parts) > 2 else "",
        )
    body["Phones"] = [default_phone, *phones]
    body["ContactGroups"] = [group_json(g) for g in groups or ()]
    return body


def line_json(line: Line) -> dict[str, Any]:
    return {
        "LineItemID": line.line_id,
        "Description": line.description,
        "Quantity": line.quantity,
        "UnitAmount": line.unit_amount,
        "TaxType": "NONE",
        "TaxAmount": ZERO,
        "LineAmount": line.line_amount,
        "AccountCode": "200",
        "Tracking": [],
    }


def payment_nested(p: Payment) -> dict[str, Any]:
    """A payment as listed on its invoice."""
    return {
        "PaymentID": p.payment_id,
        "Date": ms_date(p.date),
        "Amount": p.amount,
        "Reference": p.reference,
        "CurrencyRate": p.currency_rate,
        "HasAccount": False,
        "HasValidationErrors": False,
    }


def credit_nested(a: Allocation) -> dict[str, Any]:
    """A credit note as listed on an invoice it was allocated to."""
    c = a.credit
    return {
        "CreditNoteID": c.credit_note_id,
        "CreditNoteNumber": c.number,
        "ID": c.credit_note_id,
        "AppliedAmount": a.amount,
        "DateString": iso_date(c.date),
        "Date": ms_date(c.date),
        "LineItems": [],
        "Total": c.total,
    }


def invoice_json(inv: Invoice, *, lines: bool = True, summary: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Type": inv.type,
        "InvoiceID": inv.invoice_id,
        "InvoiceNumber": inv.number,
        "Reference": inv.reference,
    }
    if not summary:
        body["Payments"] = [payment_nested(p) for p in inv.payments if p.status == "AUTHORISED"]
        body["CreditNotes"] = [credit_nested(a) for a in inv.allocations]
        body["Prepayments"] = []
        body["Overpayments"] = []
    body["AmountDue"] = inv.amount_due
    body["AmountPaid"] = inv.amount_paid
    body["AmountCredited"] = inv.amount_credited
    if inv.type == "ACCREC":
        body["SentToContact"] = inv.sent
    body["CurrencyRate"] = inv.currency_rate
    body["IsDiscounted"] = False
    body["HasAttachments"] = False
    body["HasErrors"] = False
    body["Contact"] = (
        {"ContactID": inv.contact.contact_id, "Name": inv.contact.name}
        if summary
        else contact_ref(inv.contact)
    )
    body["DateString"] = iso_date(inv.date)
    body["Date"] = ms_date(inv.date)
    body["DueDateString"] = iso_date(inv.due_date)
    body["DueDate"] = ms_date(inv.due_date)
    if inv.expected_payment_date is not None:
        body["ExpectedPaymentDate"] = ms_date(inv.expected_payment_date)
    body["Status"] = inv.status
    body["LineAmountTypes"] = "Exclusive"
    if not summary:
        body["LineItems"] = [line_json(line) for line in inv.lines] if lines else []
    body["SubTotal"] = inv.sub_total
    body["TotalTax"] = ZERO
    body["Total"] = inv.total
    body["UpdatedDateUTC"] = ms_datetime(inv.updated)
    body["UpdatedDateUTCString"] = iso_utc(inv.updated)
    body["CurrencyCode"] = inv.currency
    if inv.fully_paid_on is not None and inv.status == "PAID":
        body["FullyPaidOnDate"] = ms_date(inv.fully_paid_on)
    return body


def invoice_ref(inv: Invoice) -> dict[str, Any]:
    """The invoice as nested in a payment or an allocation."""
    return {
        "Type": inv.type,
        "InvoiceID": inv.invoice_id,
        "InvoiceNumber": inv.number,
        "Payments": [],
        "CreditNotes": [],
        "Prepayments": [],
        "Overpayments": [],
        "IsDiscounted": False,
        "HasErrors": False,
        "Contact": contact_ref(inv.contact),
        "LineItems": [],
        "CurrencyCode": inv.currency,
    }


def payment_json(org: Organisation, p: Payment) -> dict[str, Any]:
    return {
        "PaymentID": p.payment_id,
        "Date": ms_date(p.date),
        "BankAmount": p.amount,
        "Amount": p.amount,
        "Reference": p.reference,
        "CurrencyRate": p.currency_rate,
        "PaymentType": p.payment_type,
        "Status": p.status,
        "UpdatedDateUTC": ms_datetime(p.updated),
        "UpdatedDateUTCString": iso_utc(p.updated),
        "HasAccount": True,
        "IsReconciled": False,
        "Account": {"AccountID": org.bank_account_id, "Code": "090"},
        "Invoice": invoice_ref(p.invoice),
        "HasValidationErrors": False,
    }


def credit_note_json(c: CreditNote, *, lines: bool = True) -> dict[str, Any]:
    return {
        "CreditNoteID": c.credit_note_id,
        "CreditNoteNumber": c.number,
        "ID": c.credit_note_id,
        "Type": c.type,
        "Reference": c.reference,
        "Payments": [],
        "RemainingCredit": c.remaining,
        "Allocations": [
            {
                "AllocationID": a.allocation_id,
                "Amount": a.amount,
                "Date": ms_date(a.date),
                "Invoice": {
                    "InvoiceID": a.invoice.invoice_id,
                    "InvoiceNumber": a.invoice.number,
                    "Payments": [],
                    "CreditNotes": [],
                    "Prepayments": [],
                    "Overpayments": [],
                    "HasErrors": False,
                    "IsDiscounted": False,
                    "LineItems": [],
                },
            }
            for a in c.allocations
        ],
        "HasAttachments": False,
        "HasErrors": False,
        "Contact": contact_ref(c.contact),
        "DateString": iso_date(c.date),
        "Date": ms_date(c.date),
        "Status": c.status,
        "LineAmountTypes": "Exclusive",
        "LineItems": [line_json(line) for line in c.lines] if lines else [],
        "SubTotal": c.total,
        "TotalTax": ZERO,
        "Total": c.total,
        "UpdatedDateUTC": ms_datetime(c.updated),
        "UpdatedDateUTCString": iso_utc(c.updated),
        "CurrencyCode": c.currency,
        "CurrencyRate": c.currency_rate,
        **({"FullyPaidOnDate": ms_date(c.date)} if c.status == "PAID" else {}),
    }


def history_json(entry: HistoryEntry) -> dict[str, Any]:
    return {
        "Changes": entry.changes,
        "DateUTCString": entry.at.strftime("%Y-%m-%dT%H:%M:%S"),
        "DateUTC": ms_datetime(entry.at),
        "User": entry.user,
        "Details": entry.details,
    }


@dataclass(frozen=True)
class _Locale:
    """What an organisation's country decides in GET /Organisation, and its head office."""

    version: str
    year_end: tuple[int, int]  # FinancialYearEndDay, FinancialYearEndMonth
    tax_basis: str | None
    tax_period: str | None
    country: str
    street: str
    city: str
    region: str
    postcode: str
    phone: tuple[str, str, str]  # country code, area code, number


_LOCALES = {
    "GB": _Locale(
        "UK",
        (31, 3),
        "ACCRUAL",
        "QUARTERLY1",
        "United Kingdom",
        "1 Old Street",
        "London",
        "",
        "EC1V 9BX",
        ("44", "20", "7946 0000"),
    ),
    # US sales tax is not filed on a basis or period in Xero: the fields are left out.
    "US": _Locale(
        "US",
        (31, 12),
        None,
        None,
        "United States",
        "100 Market Street",
        "San Francisco",
        "CA",
        "94105",
        ("1", "415", "555 0100"),
    ),
    "NZ": _Locale(
        "NZ",
        (31, 3),
        "INVOICE",
        "TWOMONTHS",
        "New Zealand",
        "1 Willis Street",
        "Wellington",
        "",
        "6011",
        ("64", "4", "555 0100"),
    ),
}


def organisation_json(org: Organisation) -> dict[str, Any]:
    """The organisation as GET /Organisation lists it (no APIKey: Xero stopped sending one)."""
    loc = _LOCALES.get(org.country) or _Locale(
        "GLOBAL",
        (31, 12),
        "NONE",
        None,
        org.country,
        "1 Main Street",
        "Capital",
        "",
        "",
        ("", "", ""),
    )
    address = {
        "AddressLine1": loc.street,
        "City": loc.city,
        "Region": loc.region,
        "PostalCode": loc.postcode,
        "Country": loc.country,
    }
    slug = "".join(ch for ch in org.name.lower() if ch.isalnum())
    body: dict[str, Any] = {
        "OrganisationID": org.tenant_id,
        "Name": org.name,
        "LegalName": org.name,
        "PaysTax": True,
        "Version": loc.version,
        "OrganisationType": "COMPANY",
        "BaseCurrency": org.base_currency,
        "CountryCode": org.country,
        "IsDemoCompany": org.is_demo_company,
        "OrganisationStatus": "ACTIVE",
        "FinancialYearEndDay": loc.year_end[0],
        "FinancialYearEndMonth": loc.year_end[1],
    }
    if loc.tax_basis is not None:
        body["SalesTaxBasis"] = loc.tax_basis
    if loc.tax_period is not None:
        body["SalesTaxPeriod"] = loc.tax_period
    body.update(
        {
            "DefaultSalesTax": "Tax Exclusive",
            "DefaultPurchasesTax": "Tax Inclusive",
            "CreatedDateUTC": ms_datetime_bare(org.created),
            "OrganisationEntityType": "COMPANY",
            "Timezone": org.xero_timezone,
            "ShortCode": org.short_code,
            "Class": org.org_class,
            "Edition": "BUSINESS",
            "Addresses": [
                {"AddressType": "POBOX", **address},
                {"AddressType": "STREET", **address},
            ],
            "Phones": [
                {
                    "PhoneType": "OFFICE",
                    "PhoneNumber": loc.phone[2],
                    "PhoneAreaCode": loc.phone[1],
                    "PhoneCountryCode": loc.phone[0],
                }
            ],
            "ExternalLinks": [{"LinkType": "Website", "Url": f"https://www.{slug}.example"}],
            "PaymentTerms": {
                "Sales": {"Day": 30, "Type": "DAYSAFTERBILLDATE"},
                "Bills": {"Day": 20, "Type": "OFFOLLOWINGMONTH"},
            },
        }
    )
    return body
