"""xero-python, unmodified, against the simulated Xero with only its base URLs redirected."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from xero_python.accounting import AccountingApi
from xero_python.accounting.models import (
    CountryCode,
    CurrencyCode,
    HistoryRecord,
    HistoryRecords,
    RequestEmpty,
    TimeZone,
)
from xero_python.api_client import ApiClient, Configuration
from xero_python.api_client.oauth2 import OAuth2Token, TokenApi
from xero_python.exceptions import AccountingBadRequestException
from xero_python.identity import IdentityApi

from arsync.sandbox import Sandbox, SandboxServer
from tests.contract import xero_support as xs

#: the consent flow's scopes plus what GET /Organisation needs
SCOPES = [*xs.SCOPES, "accounting.settings.read"]


@pytest.fixture
def sdk(server: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> tuple[ApiClient, dict[str, Any]]:
    """An ApiClient holding tokens obtained through the consent page and the token endpoint."""
    store: dict[str, Any] = {"token": xs.connect(server, SCOPES)}
    store["first"] = dict(store["token"])
    # The token URL is a class attribute in xero-python: redirect it for this test only.
    monkeypatch.setattr(
        TokenApi, "refresh_token_url", f"{server.urls()['identity.xero.com']}/connect/token"
    )
    client = ApiClient(
        Configuration(oauth2_token=OAuth2Token(xs.CLIENT.client_id, xs.CLIENT.client_secret)),
        pool_threads=1,
    )

    def _get() -> dict[str, Any]:
        return dict(store["token"])

    def _save(token: dict[str, Any]) -> None:
        store["token"] = token

    client.oauth2_token_getter(_get)
    client.oauth2_token_saver(_save)

    return client, store


def accounting(server: SandboxServer, client: ApiClient) -> AccountingApi:
    return AccountingApi(client, base_url=f"{server.urls()['api.xero.com']}/api.xro/2.0")


def test_connections_list_the_consented_organisation(
    server: SandboxServer, sandbox: Sandbox, sdk: tuple[ApiClient, dict[str, Any]]
) -> None:
    client, _ = sdk
    identity = IdentityApi(client, base_url=server.urls()["api.xero.com"])
    connections = identity.get_connections()
    assert [c.tenant_id for c in connections] == [xs.tenant_of(sandbox)]
    assert connections[0].tenant_type == "ORGANISATION"
    assert connections[0].tenant_name == sandbox.xero.tenants()[0].name
    assert connections[0].created_date_utc.tzinfo is not None


def test_organisation_name_currency_country_and_timezone(
    server: SandboxServer, sandbox: Sandbox, sdk: tuple[ApiClient, dict[str, Any]]
) -> None:
    client, _ = sdk
    api = accounting(server, client)
    tenant = xs.tenant_of(sandbox)
    info = sandbox.xero.tenants()[0]
    assert (info.country, info.timezone) == ("GB", "Europe/London")
    organisations = api.get_organisations(tenant).organisations
    assert len(organisations) == 1
    org = organisations[0]
    assert str(org.organisation_id) == tenant
    assert org.name == info.name
    assert org.base_currency == CurrencyCode.GBP
    assert org.country_code == CountryCode.GB
    assert org.timezone == TimeZone.GMTSTANDARDTIME
    assert org.is_demo_company is False
    assert org._class == "PREMIUM"  # the books hold EUR and USD invoices: multi-currency
    assert org.organisation_status == "ACTIVE" and org.edition == "BUSINESS"
    assert (org.financial_year_end_day, org.financial_year_end_month) == (31, 3)
    assert org.created_date_utc is not None and org.created_date_utc < sandbox.clock.now()
    assert org.api_key is None

    sandbox.event(
        "xero",
        tenant,
        {
            "type": "organisation",
            "zone": "Pacific/Auckland",
            "class": "DEMO",
            "is_demo_company": True,
            "country_code": "NZ",
        },
    )
    demo = api.get_organisations(tenant).organisations[0]
    assert demo.timezone == TimeZone.NEWZEALANDSTANDARDTIME
    assert (demo._class, demo.is_demo_company, demo.country_code) == ("DEMO", True, CountryCode.NZ)
    assert demo.base_currency == CurrencyCode.GBP  # the books keep their currency

    # Xero adds zone ids over time; xero-python's TimeZone enum cannot read one it lacks.
    sandbox.event("xero", tenant, {"type": "organisation", "timezone": "NEWZONESTANDARDTIME"})
    with pytest.raises(ValueError, match="NEWZONESTANDARDTIME"):
        api.get_organisations(tenant)
    requests = sandbox.ledger.entries(kind="request", endpoint="GET /api.xro/2.0/Organisation")
    assert [e.status for e in requests] == [200, 200, 200]


def test_paged_invoices_and_if_modified_since(
    server: SandboxServer, sandbox: Sandbox, sdk: tuple[ApiClient, dict[str, Any]]
) -> None:
    client, _ = sdk
    api = accounting(server, client)
    tenant = xs.tenant_of(sandbox)
    first = api.get_invoices(tenant, page=1, page_size=50)
    assert len(first.invoices) == 50
    assert first.pagination.page == 1 and first.pagination.page_size == 50
    assert first.pagination.item_count == 300 and first.pagination.page_count == 6
    invoice = first.invoices[0]
    assert invoice.invoice_id and invoice.line_items, "paged invoices carry their line items"
    assert isinstance(invoice.total, Decimal) and invoice.date is not None
    assert invoice.updated_date_utc.tzinfo is not None
    seen = {
        i.invoice_id
        for p in range(1, 7)
        for i in api.get_invoices(tenant, page=p, page_size=50).invoices
    }
    assert len(seen) == 300

    now = sandbox.clock.now()
    assert api.get_invoices(tenant, if_modified_since=now, page=1).invoices == []
    target = next(i.invoice_id for i in first.invoices if i.status == "AUTHORISED")
    sandbox.clock.advance(timedelta(minutes=5))
    sandbox.event("xero", tenant, {"type": "edit", "invoice": target, "reference": "PO-77"})
    changed = api.get_invoices(tenant, if_modified_since=now + timedelta(minutes=1), page=1)
    assert [i.invoice_id for i in changed.invoices] == [target]
    assert changed.invoices[0].reference == "PO-77"


def test_filters_summary_and_single_reads(
    server: SandboxServer, sandbox: Sandbox, sdk: tuple[ApiClient, dict[str, Any]]
) -> None:
    client, _ = sdk
    api = accounting(server, client)
    tenant = xs.tenant_of(sandbox)
    open_ = api.get_invoices(
        tenant,
        where='Type=="ACCREC" AND AmountDue>0',
        statuses=["AUTHORISED"],
        summary_only=True,
        page=1,
        page_size=1000,
    )
    assert open_.invoices and all(
        i.type == "ACCREC" and i.status == "AUTHORISED" and i.amount_due > 0 for i in open_.invoices
    )
    assert all(i.line_items is None for i in open_.invoices), "summaryOnly drops line items"
    one = api.get_invoice(tenant, open_.invoices[0].invoice_id).invoices[0]
    assert one.invoice_number == open_.invoices[0].invoice_number and one.line_items

    payments = api.get_payments(tenant, page=1, page_size=10)
    assert payments.payments and payments.payments[0].invoice.invoice_id
    assert payments.payments[0].payment_type == "ACCRECPAYMENT" or (
        payments.payments[0].payment_type == "ACCPAYPAYMENT"
    )
    contacts = api.get_contacts(tenant, page=1, summary_only=True)
    assert contacts.contacts and contacts.contacts[0].contact_id
    contact = api.get_contact(tenant, contacts.contacts[0].contact_id).contacts[0]
    assert contact.name == contacts.contacts[0].name
    credits = api.get_credit_notes(tenant, page=1)
    assert credits.credit_notes and credits.credit_notes[0].type == "ACCRECCREDIT"
    allocated = [c for c in credits.credit_notes if c.allocations]
    assert allocated and allocated[0].allocations[0].invoice.invoice_id


def test_history_email_and_online_invoice(
    server: SandboxServer, sandbox: Sandbox, sdk: tuple[ApiClient, dict[str, Any]]
) -> None:
    client, _ = sdk
    api = accounting(server, client)
    tenant = xs.tenant_of(sandbox)
    org = sandbox.xero.orgs[tenant]
    invoice = next(
        i
        for i in org.invoice_list
        if i.type == "ACCREC" and i.status == "AUTHORISED" and i.contact.email
    )
    created = api.create_invoice_history(
        tenant,
        invoice.invoice_id,
        HistoryRecords(history_records=[HistoryRecord(details="Reminder 1 sent [arsync:a1]")]),
        idempotency_key="note-a1",
    )
    assert created.history_records[0].details == "Reminder 1 sent [arsync:a1]"
    history = api.get_invoice_history(tenant, invoice.invoice_id).history_records
    assert any(
        h.details == "Reminder 1 sent [arsync:a1]" and h.user == "System Generated" for h in history
    )
    assert history[0].changes == "Created"

    api.email_invoice(tenant, invoice.invoice_id, RequestEmpty(), idempotency_key="mail-a1")
    assert sandbox.ledger.count(kind="email_sent", tenant=tenant) == 1
    assert api.get_invoice(tenant, invoice.invoice_id).invoices[0].sent_to_contact is True

    draft = next(i for i in org.invoice_list if i.status == "DRAFT")
    with pytest.raises(AccountingBadRequestException) as err:
        api.email_invoice(tenant, draft.invoice_id, RequestEmpty())
    assert err.value.status == 400
    data = err.value.error_data
    assert data["Type"] == "ValidationException"
    assert "sending by email" in data["Elements"][0]["ValidationErrors"][0]["Message"]

    online = api.get_online_invoice(tenant, invoice.invoice_id)
    assert online.online_invoices[0].online_invoice_url.startswith("https://in.xero.com/")


def test_refresh_after_the_access_token_expires(
    server: SandboxServer, sandbox: Sandbox, sdk: tuple[ApiClient, dict[str, Any]]
) -> None:
    client, store = sdk
    api = accounting(server, client)
    tenant = xs.tenant_of(sandbox)
    assert api.get_invoices(tenant, page=1, page_size=1).invoices
    sandbox.clock.advance(timedelta(seconds=1801))
    with pytest.raises(Exception, match="401"):
        api.get_invoices(tenant, page=1, page_size=1)
    new = client.refresh_oauth2_token()
    assert new["refresh_token"] != store["first"]["refresh_token"], "Xero rotates every refresh"
    assert new["access_token"] != store["first"]["access_token"]
    assert api.get_invoices(tenant, page=1, page_size=1).invoices
    assert sandbox.ledger.count(kind="token_refreshed", tenant=tenant) == 1
