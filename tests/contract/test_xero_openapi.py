"""Every response shape the simulated Xero serves, validated against Xero's OpenAPI files."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_schema_validator import OAS30Validator
from tzlocal.windows_tz import tz_win
from werkzeug.datastructures import Headers, ImmutableMultiDict

from arsync.sandbox import FaultKind, Sandbox, SandboxServer
from arsync.sandbox.core import XeroLimits
from arsync.sandbox.xero.state import XERO_TIMEZONES
from tests.contract import xero_support as xs

SPECS = Path(__file__).parent / "openapi"


def _load(name: str) -> dict[str, Any]:
    with (SPECS / name).open() as handle:
        loaded = yaml.load(handle, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def accounting_doc() -> dict[str, Any]:
    return _load("xero_accounting.yaml")


@pytest.fixture(scope="module")
def accounting_spec(accounting_doc: dict[str, Any]) -> OpenAPI:
    # The file itself is Xero's; re-validating the 25,000-line spec on every run adds nothing.
    return OpenAPI.from_dict(accounting_doc, config=Config(spec_validator_cls=None))


@pytest.fixture(scope="module")
def identity_spec() -> OpenAPI:
    return OpenAPI.from_dict(_load("xero-identity.yaml"), config=Config(spec_validator_cls=None))


@dataclass
class _Request:
    """An httpx request as openapi-core sees it, moved back onto Xero's real host."""

    host_url: str
    path: str
    method: str
    body: bytes | None
    content_type: str
    parameters: RequestParameters = field(default_factory=RequestParameters)


@dataclass
class _Response:
    status_code: int
    content_type: str
    headers: Headers
    data: bytes | None


def check(spec: OpenAPI, response: httpx.Response) -> None:
    """Raise unless the response is what the spec documents for its operation and status."""
    request = response.request
    path = request.url.path.removeprefix("/xero/api")
    req = _Request(
        host_url="https://api.xero.com",
        path=path,
        method=request.method.lower(),
        body=request.content or None,
        content_type=request.headers.get("content-type", "application/json"),
        parameters=RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
        ),
    )
    resp = _Response(
        status_code=response.status_code,
        content_type=response.headers.get("content-type", "application/json").split(";")[0],
        headers=Headers(list(response.headers.items())),
        data=response.content or None,
    )
    spec.validate_response(req, resp)


def check_schema(doc: dict[str, Any], name: str, instance: Any) -> None:
    """Validate against one component schema (for answers the spec lists no operation for)."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": doc["components"]}
    OAS30Validator(schema).validate(instance)


@pytest.fixture
def tokens(server: SandboxServer) -> dict[str, Any]:
    return xs.connect(server)


@pytest.fixture
def xero(server: SandboxServer, sandbox: Sandbox, tokens: dict[str, Any]) -> Iterator[httpx.Client]:
    with xs.api(server, tokens["access_token"], xs.tenant_of(sandbox)) as client:
        yield client


def _open_invoice(sandbox: Sandbox) -> str:
    org = sandbox.xero.orgs[xs.tenant_of(sandbox)]
    return next(
        i.invoice_id
        for i in org.invoice_list
        if i.type == "ACCREC" and i.status == "AUTHORISED" and i.contact.email and i.payments
    )


def test_invoice_listings(accounting_spec: OpenAPI, xero: httpx.Client) -> None:
    for params in (
        {},
        {"page": "1"},
        {"page": "2", "pageSize": "40"},
        {"page": "1", "summaryOnly": "true"},
        {"where": 'Status=="PAID"', "order": "UpdatedDateUTC DESC"},
        {"Statuses": "VOIDED,DRAFT", "page": "1"},
    ):
        response = xero.get("/Invoices", params=params)
        assert response.status_code == 200, response.text
        assert response.json()["Invoices"]
        check(accounting_spec, response)


def test_single_invoice_history_and_online_invoice(
    accounting_spec: OpenAPI, sandbox: Sandbox, xero: httpx.Client
) -> None:
    invoice = _open_invoice(sandbox)
    for path in (
        f"/Invoices/{invoice}",
        f"/Invoices/{invoice}/History",
        f"/Invoices/{invoice}/OnlineInvoice",
    ):
        response = xero.get(path)
        assert response.status_code == 200, response.text
        check(accounting_spec, response)
    put = xero.put(
        f"/Invoices/{invoice}/History",
        json={"HistoryRecords": [{"Details": "Second reminder sent"}]},
    )
    assert put.status_code == 200
    check(accounting_spec, put)
    email = xero.post(f"/Invoices/{invoice}/Email", json={})
    assert email.status_code == 204
    check(accounting_spec, email)


def test_payments_credit_notes_and_contacts(
    accounting_spec: OpenAPI, sandbox: Sandbox, xero: httpx.Client
) -> None:
    org = sandbox.xero.orgs[xs.tenant_of(sandbox)]
    person = {"first_name": "Ann", "last_name": "Lee", "email": "ap@example.com"}
    sandbox.event(
        "xero",
        org.tenant_id,
        {
            "type": "email_change",
            "contact": org.contact_list[0].contact_id,
            "persons": [{**person, "include_in_emails": True}],
        },
    )
    for path, params in (
        ("/Payments", {}),
        ("/Payments", {"page": "1", "pageSize": "50"}),
        (f"/Payments/{org.payment_list[0].payment_id}", {}),
        ("/CreditNotes", {"page": "1"}),
        (f"/CreditNotes/{org.credit_list[0].credit_note_id}", {}),
        ("/Contacts", {"page": "1"}),
        ("/Contacts", {"summaryOnly": "true", "includeArchived": "true"}),
        (f"/Contacts/{org.contact_list[0].contact_id}", {}),
    ):
        response = xero.get(path, params=params)
        assert response.status_code == 200, response.text
        check(accounting_spec, response)


def test_organisation(
    accounting_spec: OpenAPI,
    accounting_doc: dict[str, Any],
    sandbox: Sandbox,
    server: SandboxServer,
) -> None:
    tenant = xs.tenant_of(sandbox)
    tokens = xs.connect(server, [*xs.SCOPES, "accounting.settings.read"])
    with xs.api(server, tokens["access_token"], tenant) as xero:
        response = xero.get("/Organisation")
        assert response.status_code == 200, response.text
        check(accounting_spec, response)
        org = response.json()["Organisations"][0]
        assert "APIKey" not in org
        assert org["Timezone"] == "GMTSTANDARDTIME" and org["Class"] == "PREMIUM"
        check_schema(accounting_doc, "Organisation", org)
        # A US organisation on the Pacific coast, a trial: still what the spec allows.
        sandbox.event(
            "xero",
            tenant,
            {
                "type": "organisation",
                "zone": "America/Los_Angeles",
                "country_code": "US",
                "class": "TRIAL",
            },
        )
        us = xero.get("/Organisation")
        check(accounting_spec, us)
        assert us.json()["Organisations"][0]["Timezone"] == "PACIFICSTANDARDTIME"
        assert "SalesTaxPeriod" not in us.json()["Organisations"][0]
        # A zone id Xero publishes after this file does not validate, and is served all the same.
        sandbox.event("xero", tenant, {"type": "organisation", "timezone": "NEWZONESTANDARDTIME"})
        unknown = xero.get("/Organisation")
        assert unknown.json()["Organisations"][0]["Timezone"] == "NEWZONESTANDARDTIME"
        with pytest.raises(Exception, match=r"(?i)invalid|validat"):
            check(accounting_spec, unknown)


def test_the_timezone_table_speaks_the_spec_and_cldr(accounting_doc: dict[str, Any]) -> None:
    enum = set(accounting_doc["components"]["schemas"]["TimeZone"]["enum"])
    assert set(XERO_TIMEZONES.values()) <= enum
    # CLDR's windowsZones as tzlocal ships it, normalised as Xero does (WRITEBACK-FACTS.md).
    for zone, served in XERO_TIMEZONES.items():
        name = tz_win[zone]
        assert served == name.upper().replace(" ", "").replace(".", "").replace("-", ""), zone


def test_connections(identity_spec: OpenAPI, server: SandboxServer, tokens: dict[str, Any]) -> None:
    response = httpx.get(
        f"{server.urls()['api.xero.com']}/Connections",
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert response.status_code == 200
    check(identity_spec, response)


def test_validation_errors(
    accounting_spec: OpenAPI, accounting_doc: dict[str, Any], sandbox: Sandbox, xero: httpx.Client
) -> None:
    org = sandbox.xero.orgs[xs.tenant_of(sandbox)]
    draft = next(i.invoice_id for i in org.invoice_list if i.status == "DRAFT")
    email = xero.post(f"/Invoices/{draft}/Email", json={})
    assert email.status_code == 400
    check(accounting_spec, email)
    long_note = xero.put(
        f"/Invoices/{draft}/History", json={"HistoryRecords": [{"Details": "x" * 251}]}
    )
    assert long_note.status_code == 400
    check(accounting_spec, long_note)
    assert long_note.json()["ErrorNumber"] == 10
    unreadable = xero.put(
        f"/Invoices/{draft}/History",
        content=b'{"HistoryRecords": "x"}',
        headers={"Content-Type": "application/json"},
    )
    assert unreadable.status_code == 400 and unreadable.json()["ErrorNumber"] == 14
    check(accounting_spec, unreadable)
    bad_where = xero.get("/Invoices", params={"where": "Status=="})
    assert bad_where.status_code == 400
    check_schema(accounting_doc, "Error", bad_where.json())
    bad_since = xero.get(
        "/Invoices", headers={"If-Modified-Since": "Mon, 23 Nov 2026 14:59:59 GMT"}
    )
    assert bad_since.status_code == 400 and bad_since.json()["ErrorNumber"] == 10
    check_schema(accounting_doc, "Error", bad_since.json())


def test_429s(accounting_doc: dict[str, Any]) -> None:
    sandbox = xs.make_sandbox(xero=XeroLimits(per_minute=1))
    sandbox.faults.add(kind=FaultKind.DAY_LIMIT, platform="xero", endpoint="GET */Contacts")
    with SandboxServer(sandbox) as server:
        tokens = xs.connect(server)
        with xs.api(server, tokens["access_token"], xs.tenant_of(sandbox)) as xero:
            assert xero.get("/Invoices", params={"page": "1"}).status_code == 200
            minute = xero.get("/Invoices", params={"page": "1"})
            day = xero.get("/Contacts")
    for response, problem in ((minute, "minute"), (day, "day")):
        assert response.status_code == 429
        assert response.headers["X-Rate-Limit-Problem"] == problem
        check_schema(accounting_doc, "Error", response.json())


def test_a_wrong_shape_is_rejected(accounting_spec: OpenAPI, xero: httpx.Client) -> None:
    """The check can fail: the same answer with one field out of contract is refused."""
    good = xero.get("/Invoices", params={"page": "1", "pageSize": "2"})
    check(accounting_spec, good)
    body = good.json()
    body["Invoices"][0]["Status"] = "OPEN"  # not one of Xero's invoice statuses
    bad = httpx.Response(200, json=body, request=good.request)
    with pytest.raises(Exception, match=r"(?i)invalid|validat"):
        check(accounting_spec, bad)
    body = good.json()
    body["Invoices"][0]["AmountDue"] = "12.50"  # money as a string, not a number
    bad = httpx.Response(
        200,
        content=json.dumps(body).encode(),
        request=good.request,
        headers={"content-type": "application/json"},
    )
    with pytest.raises(Exception, match=r"(?i)invalid|validat"):
        check(accounting_spec, bad)
