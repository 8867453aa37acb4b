"""A company's Preferences and CompanyInfo as QBO renders them (one of each per realm)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from arsync.sandbox.qbo.model import Company

DEFAULT_MESSAGE = "Thank you for your business and have a great day!"

#: Head office per country: street, city, CountrySubDivisionCode, postal code, phone. QBO has no
#: time-zone field, so the state here is the only hint at one a client gets (with Country).
_OFFICES = {
    "US": ("2600 Harbor Way", "San Francisco", "CA", "94107", "(415) 555-0100"),
    "CA": ("100 King Street West", "Toronto", "ON", "M5X 1A9", "(416) 555-0100"),
    "GB": ("1 Old Street", "London", "", "EC1V 9BX", "020 7946 0000"),
    "AU": ("1 George Street", "Sydney", "NSW", "2000", "(02) 5550 0100"),
}


def _slug(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _message(subject: str, body: str, name: str) -> dict[str, str]:
    return {"Subject": f"{subject} from {name}", "Message": f"{body}\n\nThank you\n\n{name}"}


def preferences_json(company: Company) -> dict[str, Any]:
    """Preferences as GET /preferences and `SELECT * FROM Preferences` return them.

    Shape per Intuit's reference and python-quickbooks (`quickbooks/objects/preferences.py`).
    There is deliberately no time zone: QBO's Preferences have none.
    """
    rec = company.preferences
    name = company.name
    terms, _ = company.term_for(30)
    return {
        "EmailMessagesPrefs": {
            "InvoiceMessage": _message(
                "Invoice", "Your invoice is attached.  We appreciate your business.", name
            ),
            "EstimateMessage": _message(
                "Estimate",
                "Please review the estimate below.  Feel free to contact us if you have any "
                "questions.",
                name,
            ),
            "SalesReceiptMessage": _message(
                "Sales Receipt", "Your sales receipt is attached.", name
            ),
            "StatementMessage": _message(
                "Statement",
                "Your statement is attached.  Please remit payment at your earliest convenience.",
                name,
            ),
        },
        "ProductAndServicesPrefs": {
            "ForSales": True,
            "ForPurchase": True,
            "QuantityWithPriceAndRate": True,
            "QuantityOnHand": True,
        },
        "ReportPrefs": {"ReportBasis": "Accrual", "CalcAgingReportFromTxnDate": False},
        "AccountingInfoPrefs": {
            "FirstMonthOfFiscalYear": "January",
            "UseAccountNumbers": False,
            "TaxYearMonth": "January",
            "ClassTrackingPerTxn": False,
            "ClassTrackingPerTxnLine": False,
            "TrackDepartments": False,
            "DepartmentTerminology": "Location",
            "CustomerTerminology": "Customers",
        },
        "SalesFormsPrefs": {
            "CustomField": [
                {
                    "CustomField": [
                        {
                            "Name": f"SalesFormsPrefs.UseSalesCustom{n}",
                            "Type": "BooleanType",
                            "BooleanValue": False,
                        }
                        for n in (1, 2, 3)
                    ]
                }
            ],
            "AllowDeposit": True,
            "AllowDiscount": True,
            "AllowEstimates": True,
            "AllowServiceDate": False,
            "AllowShipping": False,
            "ETransactionEnabledStatus": "NotApplicable",
            "ETransactionAttachPDF": False,
            "ETransactionPaymentEnabled": False,
            "IPNSupportEnabled": False,
            "DefaultTerms": {"value": terms},
            "DefaultCustomerMessage": DEFAULT_MESSAGE,
            "UsingProgressInvoicing": False,
            "CustomTxnNumbers": company.custom_txn_numbers,
            "AutoApplyCredit": True,
            "AutoApplyPayments": True,
            "UsingPriceLevels": False,
            "EmailCopyToCompany": False,
        },
        "VendorAndPurchasesPrefs": {
            "TrackingByCustomer": False,
            "BillableExpenseTracking": False,
            "DefaultTerms": {"value": terms},
        },
        # The sandbox's invoices carry no tax.
        "TaxPrefs": {"UsingSalesTax": False, "PartnerTaxEnabled": False},
        "OtherPrefs": {
            "NameValue": [
                {"Name": "SalesFormsPrefs.DefaultCustomerMessage", "Value": DEFAULT_MESSAGE},
                {"Name": "SalesFormsPrefs.DefaultItem", "Value": "1"},
                {"Name": "DTXCopyMemo", "Value": "false"},
                {"Name": "ItemCategoriesFeature", "Value": "false"},
            ]
        },
        "TimeTrackingPrefs": {
            "UseServices": True,
            "BillCustomers": True,
            "ShowBillRateToAll": False,
            "WorkWeekStartDate": "Monday",
            "MarkTimeEntriesBillable": True,
        },
        "CurrencyPrefs": {
            "MultiCurrencyEnabled": company.multi_currency,
            "HomeCurrency": {"value": company.currency},
        },
        "domain": "QBO",
        "sparse": False,
        "Id": str(rec.id),
        "SyncToken": str(rec.sync),
        "MetaData": {
            "CreateTime": company.fmt(rec.created),
            "LastUpdatedTime": company.fmt(rec.updated),
        },
    }


def company_info_json(company: Company) -> dict[str, Any]:
    """CompanyInfo as GET /companyinfo/{realmId} and `SELECT * FROM CompanyInfo` return it."""
    rec = company.info
    street, city, region, postcode, phone = _OFFICES.get(
        company.country, ("1 Main Street", "Springfield", "", "", "")
    )
    address: dict[str, str] = {"Id": "1", "Line1": street, "City": city}
    if region:
        address["CountrySubDivisionCode"] = region
    if postcode:
        address["PostalCode"] = postcode
    slug = _slug(company.name)
    return {
        "CompanyName": company.name,
        "LegalName": company.name,
        "CompanyAddr": address,
        "CustomerCommunicationAddr": dict(address),
        "LegalAddr": dict(address),
        "PrimaryPhone": {"FreeFormNumber": phone} if phone else {},
        "CompanyStartDate": company.local_day(rec.created).isoformat(),
        "FiscalYearStartMonth": "January",
        "Country": company.country,
        "Email": {"Address": f"accounts@{slug}.example"},
        "WebAddr": {"URI": f"https://www.{slug}.example"},
        "SupportedLanguages": "en",
        "NameValue": [
            {"Name": "NeoEnabled", "Value": "true"},
            {"Name": "CompanyType", "Value": "Other/None"},
            {"Name": "SubscriptionStatus", "Value": "PAID"},
            {"Name": "OfferingSku", "Value": "QuickBooks Online Plus"},
            {"Name": "PayrollFeature", "Value": "false"},
            {"Name": "AccountantFeature", "Value": "false"},
            {"Name": "IsQbdtMigrated", "Value": "false"},
        ],
        "domain": "QBO",
        "sparse": False,
        "Id": str(rec.id),
        "SyncToken": str(rec.sync),
        "MetaData": {
            "CreateTime": company.fmt(rec.created),
            "LastUpdatedTime": company.fmt(rec.updated),
        },
    }
