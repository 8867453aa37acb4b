"""The official Intuit SDKs (intuit-oauth, python-quickbooks), unmodified, against the sandbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks.batch import BatchManager
from quickbooks.cdc import change_data_capture
from quickbooks.exceptions import (
    AuthorizationException,
    ObjectNotFoundException,
    QuickbooksException,
)
from quickbooks.objects.attachable import Attachable
from quickbooks.objects.base import AttachableRef, Ref
from quickbooks.objects.company_info import CompanyInfo
from quickbooks.objects.customer import Customer
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.payment import Payment
from quickbooks.objects.preferences import Preferences

from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
from tests.contract.qbo_support import (
    CLIENT,
    REDIRECT_URI,
    api_base,
    consent,
    discovery_url,
    realm_of,
    redirect_params,
)
from tests.support import TEST_NOW


@pytest.fixture(autouse=True)
def _plain_http(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests-oauthlib refuses to put a bearer token on http:// unless told the transport is
    # trusted; the sandbox listens on loopback only.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def _auth_client(server: SandboxServer) -> AuthClient:
    return AuthClient(
        client_id=CLIENT.client_id,
        client_secret=CLIENT.client_secret,
        redirect_uri=REDIRECT_URI,
        environment=discovery_url(server),
    )


def _connect(server: SandboxServer, scopes: list[Scopes]) -> tuple[AuthClient, str]:
    auth = _auth_client(server)
    url = auth.get_authorization_url(scopes)
    params = redirect_params(consent(url))
    assert params["state"] == auth.state_token
    auth.get_bearer_token(params["code"], realm_id=params["realmId"])
    return auth, params["realmId"]


def _quickbooks(server: SandboxServer, auth: AuthClient, realm: str) -> QuickBooks:
    qb = QuickBooks(auth_client=auth, company_id=realm, minorversion=75)
    # The only change to the SDK: its base URLs point at the sandbox.
    qb.api_url_v3 = api_base(server) + "/v3"
    qb.sandbox_api_url_v3 = api_base(server) + "/v3"
    return qb


@pytest.fixture
def connected(server: SandboxServer) -> tuple[QuickBooks, AuthClient, str]:
    auth, realm = _connect(server, [Scopes.ACCOUNTING])
    return _quickbooks(server, auth, realm), auth, realm


def test_discovery_document_points_at_the_sandbox(server: SandboxServer) -> None:
    auth = _auth_client(server)
    root = server.url + "/qbo"
    assert auth.auth_endpoint == f"{root}/appcenter/connect/oauth2"
    assert auth.token_endpoint == f"{root}/oauth/oauth2/v1/tokens/bearer"
    assert auth.revoke_endpoint == f"{root}/developer/v2/oauth2/tokens/revoke"
    assert auth.jwks_uri.startswith(root)
    assert auth.user_info_url.startswith(root)


def test_authorization_code_flow_gives_tokens_and_realm(
    server: SandboxServer, sandbox: Sandbox
) -> None:
    auth, realm = _connect(server, [Scopes.ACCOUNTING])
    assert realm == realm_of(sandbox)
    assert auth.access_token and auth.refresh_token
    assert auth.expires_in == 3600
    assert auth.x_refresh_token_expires_in == 100 * 24 * 3600
    assert auth.id_token is None  # no openid scope, no id_token
    assert sandbox.ledger.count(platform="qbo", kind="token_issued") == 1


def test_cancel_on_the_consent_page_is_access_denied(server: SandboxServer) -> None:
    auth = _auth_client(server)
    params = redirect_params(
        consent(auth.get_authorization_url([Scopes.ACCOUNTING]), action="cancel")
    )
    assert params == {"error": "access_denied", "state": auth.state_token} | {
        "error_description": params["error_description"]
    }


def test_invoice_all_filter_query_and_paging(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox
) -> None:
    qb, _auth, realm = connected
    company = sandbox.qbo.companies[realm]
    first = Invoice.all(max_results=100, qb=qb)
    assert len(first) == 100
    ids: list[str] = []
    position = 1
    while True:
        page = Invoice.where("", start_position=position, max_results=120, qb=qb)
        ids.extend(str(i.Id) for i in page)
        if len(page) < 120:
            break
        position += 120
    assert len(ids) == len(set(ids)) == len(company.invoices)
    assert Invoice.count(qb=qb) == len(company.invoices)

    open_invoices = Invoice.query(
        "SELECT * FROM Invoice WHERE Balance > '0' ORDERBY DueDate STARTPOSITION 1 MAXRESULTS 1000",
        qb=qb,
    )
    expected = [i for i in company.invoices.values() if i.balance > 0]
    assert len(open_invoices) == len(expected)
    due = [i.DueDate for i in open_invoices]
    assert due == sorted(due)
    sample = open_invoices[0]
    assert Decimal(str(sample.Balance)) > 0
    assert sample.MetaData.LastUpdatedTime.endswith(("-08:00", "-07:00"))  # Pacific time
    assert sample.Line[-1].DetailType == "SubTotalLineDetail"

    mine = Invoice.filter(CustomerRef=sample.CustomerRef.value, qb=qb)
    assert mine and all(i.CustomerRef.value == sample.CustomerRef.value for i in mine)
    one = Invoice.get(sample.Id, qb=qb)
    assert one.DocNumber == sample.DocNumber
    with pytest.raises(ObjectNotFoundException):
        Invoice.get(999999, qb=qb)


def test_preferences_give_the_home_currency_and_multicurrency_flag(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox
) -> None:
    qb, _auth, realm = connected
    prefs = Preferences.get(qb=qb)  # GET /v3/company/{realm}/preferences
    assert prefs.CurrencyPrefs.HomeCurrency.value == "USD"
    assert prefs.CurrencyPrefs.MultiCurrencyEnabled is False  # the US books hold dollars only
    assert prefs.SalesFormsPrefs.CustomTxnNumbers is False
    assert prefs.SalesFormsPrefs.DefaultTerms.value == "3"  # Net 30
    assert prefs.EmailMessagesPrefs.InvoiceMessage.Subject.startswith("Invoice from ")
    assert prefs.Id == "1" and prefs.SyncToken == "0" and prefs.MetaData["CreateTime"]

    # The same object through the query endpoint, as arsync's connector reads it.
    queried = qb.query("SELECT * FROM Preferences")["QueryResponse"]
    assert (queried["startPosition"], queried["maxResults"]) == (1, 1)
    assert queried["Preferences"][0]["CurrencyPrefs"] == {
        "MultiCurrencyEnabled": False,
        "HomeCurrency": {"value": "USD"},
    }

    company = sandbox.qbo.companies[realm]
    with sandbox.lock:
        company.multi_currency = True
    assert Preferences.get(qb=qb).CurrencyPrefs.MultiCurrencyEnabled is True


def test_company_info_has_a_country_and_a_state_but_no_time_zone(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox
) -> None:
    qb, _auth, realm = connected
    info = CompanyInfo.get(realm, qb=qb)
    assert info.CompanyName == sandbox.qbo.tenants()[0].name
    assert info.Country == "US"
    assert info.CompanyAddr.CountrySubDivisionCode == "CA"
    listed = CompanyInfo.all(qb=qb)  # SELECT * FROM CompanyInfo
    assert [c.Id for c in listed] == [info.Id]
    # QBO has no time-zone field in CompanyInfo or Preferences (WRITEBACK-FACTS.md).
    prefs = qb.query("SELECT * FROM Preferences")["QueryResponse"]["Preferences"][0]
    for body in (prefs, qb.get_single_object("CompanyInfo", realm)["CompanyInfo"]):
        assert "zone" not in str(sorted(_keys(body))).lower()


def _keys(body: object) -> set[str]:
    """Every key of a JSON object, at any depth."""
    if isinstance(body, dict):
        return set(body) | {k for v in body.values() for k in _keys(v)}
    if isinstance(body, list):
        return {k for v in body for k in _keys(v)}
    return set()


def test_customer_filter_hides_inactive_unless_asked(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox
) -> None:
    qb, _auth, realm = connected
    company = sandbox.qbo.companies[realm]
    target = next(iter(company.customers.values()))
    found = Customer.filter(DisplayName=target.display_name, qb=qb)
    assert [c.Id for c in found] == [str(target.id)]
    target.active = False
    company.touched()
    assert Customer.filter(DisplayName=target.display_name, qb=qb) == []
    both = Customer.where(
        f"Active IN (true, false) AND DisplayName = '{target.display_name}'", qb=qb
    )
    assert [c.Active for c in both] == [False]


def test_change_data_capture_sees_a_payment(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox
) -> None:
    qb, _auth, realm = connected
    sandbox.clock.advance(timedelta(minutes=5))
    since = sandbox.clock.now()
    sandbox.clock.advance(timedelta(seconds=1))
    company = sandbox.qbo.companies[realm]
    inv = next(i for i in company.invoices.values() if i.balance > 0)
    result = sandbox.event("qbo", realm, {"type": "payment", "invoice": str(inv.id)})
    cdc = change_data_capture([Invoice, Payment], since.isoformat(), qb=qb)
    invoices = list(cdc.Invoice)
    payments = list(cdc.Payment)
    assert [i.Id for i in invoices] == [str(inv.id)]
    assert invoices[0].Balance == 0
    assert [p.Id for p in payments] == [result["payment"]]


def test_send_invoice_with_send_to(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox
) -> None:
    qb, _auth, realm = connected
    inv = Invoice.query(
        "SELECT * FROM Invoice WHERE Balance > '0' AND EmailStatus = 'NotSet' MAXRESULTS 1",
        qb=qb,
    )[0]
    result = inv.send(qb=qb, send_to="payables@customer.example")
    sent = result["Invoice"]
    assert sent["EmailStatus"] == "EmailSent"
    assert sent["BillEmail"]["Address"] == "payables@customer.example"
    assert sent["DeliveryInfo"]["DeliveryType"] == "Email"
    assert int(sent["SyncToken"]) == int(inv.SyncToken) + 1
    emails = sandbox.ledger.entries(platform="qbo", kind="email_sent", tenant=realm)
    assert [(e.detail["invoice"], e.detail["to"]) for e in emails] == [
        (str(inv.Id), "payables@customer.example")
    ]


def test_attachable_note_linked_to_an_invoice(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox
) -> None:
    qb, _auth, _realm = connected
    inv = Invoice.all(max_results=1, qb=qb)[0]
    note = Attachable()
    ref = AttachableRef()
    ref.EntityRef = Ref()
    ref.EntityRef.type = "Invoice"
    ref.EntityRef.value = inv.Id
    note.AttachableRef.append(ref)
    note.Note = "arsync: first reminder sent [a1b2c3]"
    saved = note.save(qb=qb)
    assert saved.Id and saved.Note == note.Note
    found = Attachable.where(
        f"AttachableRef.EntityRef.Type = 'invoice' AND AttachableRef.EntityRef.value = '{inv.Id}'",
        qb=qb,
    )
    assert [a.Id for a in found] == [saved.Id]
    assert Invoice.get(inv.Id, qb=qb).SyncToken == inv.SyncToken  # the invoice is untouched
    assert sandbox.ledger.count(platform="qbo", kind="note_added") == 1


def test_batch_manager_creates_notes_and_reports_faults(
    connected: tuple[QuickBooks, AuthClient, str],
) -> None:
    qb, _auth, _realm = connected
    invoices = Invoice.all(max_results=3, qb=qb)
    notes = []
    for n, inv in enumerate([*invoices, None]):
        note = Attachable()
        ref = AttachableRef()
        ref.EntityRef = Ref()
        ref.EntityRef.type = "Invoice"
        ref.EntityRef.value = inv.Id if inv is not None else "999999"
        note.AttachableRef.append(ref)
        note.Note = f"batch note {n}"
        notes.append(note)
    result = BatchManager("create").save(notes, qb=qb)
    assert len(result.successes) == 3
    assert [str(f.Error[0].code) for f in result.faults] == ["610"]


def test_full_update_and_create_through_save(
    connected: tuple[QuickBooks, AuthClient, str],
) -> None:
    qb, _auth, _realm = connected
    inv = Invoice.query("SELECT * FROM Invoice WHERE Balance > '0' MAXRESULTS 1", qb=qb)[0]
    inv.DueDate = "2027-02-01"
    saved = inv.save(qb=qb)  # the SDK sends the whole object back (not sparse)
    assert saved.DueDate == "2027-02-01"
    assert int(saved.SyncToken) == int(inv.SyncToken) + 1
    assert saved.TotalAmt == inv.TotalAmt and saved.Balance == inv.Balance
    # python-quickbooks maps codes 5000-9999 to its base exception.
    with pytest.raises(QuickbooksException) as err:
        inv.save(qb=qb)  # the SyncToken it holds is now stale
    assert err.value.error_code == 5010

    customer = Customer()
    customer.DisplayName = "Quarry Surveys Ltd (new)"
    made = customer.save(qb=qb)
    assert made.Id and made.Active is True
    duplicate = Customer()
    duplicate.DisplayName = "Quarry Surveys Ltd (new)"
    with pytest.raises(QuickbooksException) as dup:
        duplicate.save(qb=qb)
    assert dup.value.error_code == 6240


def test_refresh_keeps_the_token_within_a_day_then_rotates(
    connected: tuple[QuickBooks, AuthClient, str], sandbox: Sandbox, server: SandboxServer
) -> None:
    qb, auth, realm = connected
    first_refresh, first_access = auth.refresh_token, auth.access_token
    auth.refresh()
    assert auth.refresh_token == first_refresh
    assert auth.access_token != first_access
    sandbox.clock.advance(timedelta(hours=25))
    auth.refresh()
    assert auth.refresh_token != first_refresh
    assert [e.detail["rotated"] for e in sandbox.ledger.entries(kind="token_refreshed")] == [
        False,
        True,
    ]
    fresh = _quickbooks(server, auth, realm)
    assert len(Invoice.all(max_results=5, qb=fresh)) == 5
    with pytest.raises(AuthorizationException):
        Invoice.all(max_results=5, qb=qb)  # the first access token expired a day ago
    auth.revoke()
    with pytest.raises(AuthClientError):
        auth.refresh()


def test_openid_scope_returns_an_id_token_intuitlib_validates() -> None:
    # intuitlib checks the id_token's expiry against the real clock, so this sandbox runs on it.
    sandbox = Sandbox(SandboxSettings(seed=3, invoices=5, customers=3))
    with SandboxServer(sandbox) as server:
        auth, realm = _connect(server, [Scopes.ACCOUNTING, Scopes.OPENID, Scopes.EMAIL])
        assert auth.id_token is not None  # set only when validate_id_token passed
        info = auth.get_user_info().json()
        assert info["email"] == "owner@sandbox.example"
        assert realm == realm_of(sandbox)


def test_conftest_clock_is_the_fixed_test_time(sandbox: Sandbox) -> None:
    assert sandbox.clock.now() == TEST_NOW
