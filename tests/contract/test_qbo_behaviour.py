"""One test per documented QBO behaviour, over real loopback HTTP to the sandbox."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import pytest

from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import CompanySpec, QboLimits
from arsync.sandbox.faults import FaultKind
from tests.contract.qbo_support import (
    CLIENT,
    REDIRECT_URI,
    Api,
    connect_api,
    fault_codes,
    realm_of,
    token_request,
)
from tests.support import make_sandbox


@pytest.fixture
def api(server: SandboxServer) -> Iterator[Api]:
    client = connect_api(server)
    yield client
    client.close()


@contextmanager
def serving(**overrides: Any) -> Iterator[tuple[Sandbox, SandboxServer, Api]]:
    """A sandbox with its own settings (smaller limits, more invoices), served and connected."""
    sandbox = make_sandbox(**overrides)
    with SandboxServer(sandbox) as server:
        client = connect_api(server)
        try:
            yield sandbox, server, client
        finally:
            client.close()


def _open_invoice(sandbox: Sandbox, **where: Any) -> Any:
    company = sandbox.qbo.companies[realm_of(sandbox)]
    return next(
        i
        for i in company.invoices.values()
        if i.balance > 0 and all(getattr(i, k) == v for k, v in where.items())
    )


def _qbo_only(invoices: int = 300, customers: int = 40) -> list[CompanySpec]:
    return [CompanySpec("qbo", 7, customers, invoices), CompanySpec("xero", 7, 3, 5)]


# -- limits ------------------------------------------------------------------------------------
def test_per_minute_limit_answers_429_with_fault_3001() -> None:
    with serving(qbo=QboLimits(per_minute=5, per_second=100)) as (sandbox, _server, api):
        statuses = [api.query("SELECT COUNT(*) FROM Invoice").status_code for _ in range(6)]
        assert statuses == [200] * 5 + [429]
        refused = api.query("SELECT COUNT(*) FROM Invoice")
        assert refused.status_code == 429
        assert fault_codes(refused.json()) == ["3001"]
        assert "ThrottleExceeded" in refused.json()["Fault"]["Error"][0]["Message"]
        assert sandbox.ledger.count(platform="qbo", kind="rate_limited") == 2
        sandbox.clock.advance(timedelta(seconds=61))
        assert api.query("SELECT COUNT(*) FROM Invoice").status_code == 200


def test_per_second_limit() -> None:
    with serving(qbo=QboLimits(per_second=3)) as (sandbox, _server, api):
        statuses = [api.get("companyinfo/x").status_code for _ in range(4)]
        assert statuses == [200, 200, 200, 429]
        sandbox.clock.advance(timedelta(seconds=1.5))
        assert api.get("companyinfo/x").status_code == 200


def test_concurrency_cap_per_realm_and_app() -> None:
    with serving(qbo=QboLimits(concurrent=2, per_second=100), latency=0.4) as (
        sandbox,
        _server,
        api,
    ):
        statuses: list[int] = []
        barrier = threading.Barrier(6)

        def call() -> None:
            barrier.wait()
            statuses.append(api.get("companyinfo/x").status_code)

        threads = [threading.Thread(target=call) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert set(statuses) == {200, 429}
        refused = sandbox.ledger.entries(platform="qbo", kind="rate_limited")
        assert refused and {e.detail["problem"] for e in refused} == {"concurrent"}


def test_batch_of_more_than_30_items_is_refused(api: Api, sandbox: Sandbox) -> None:
    items = [{"bId": str(n), "Query": "SELECT COUNT(*) FROM Invoice"} for n in range(31)]
    refused = api.post("batch", {"BatchItemRequest": items})
    assert refused.status_code == 400
    assert "maximum is 30" in refused.json()["Fault"]["Error"][0]["Detail"]
    accepted = api.post("batch", {"BatchItemRequest": items[:30]})
    assert accepted.status_code == 200
    assert len(accepted.json()["BatchItemResponse"]) == 30


def test_batch_items_fail_one_by_one_with_http_200(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    items = [
        {"bId": "a", "Query": f"SELECT * FROM Invoice WHERE Id = '{inv.id}'"},
        {
            "bId": "b",
            "operation": "update",
            "Invoice": {"Id": str(inv.id), "SyncToken": "99", "sparse": True, "PrivateNote": "x"},
        },
        {
            "bId": "c",
            "operation": "create",
            "Attachable": {
                "Note": "batched",
                "AttachableRef": [{"EntityRef": {"type": "Invoice", "value": str(inv.id)}}],
            },
        },
        {"bId": "d", "Query": "SELECT * FROM Invoice WHERE Id = '1' OR Id = '2'"},
    ]
    reply = api.post("batch", {"BatchItemRequest": items})
    assert reply.status_code == 200
    by_id = {item["bId"]: item for item in reply.json()["BatchItemResponse"]}
    assert by_id["a"]["QueryResponse"]["Invoice"][0]["Id"] == str(inv.id)
    assert fault_codes(by_id["b"]) == ["5010"]
    assert by_id["c"]["Attachable"]["Note"] == "batched"
    assert fault_codes(by_id["d"]) == ["4000"]


def test_batch_requests_limited_per_minute() -> None:
    with serving(qbo=QboLimits(batch_per_minute=2)) as (_sandbox, _server, api):
        body = {"BatchItemRequest": [{"bId": "1", "Query": "SELECT COUNT(*) FROM Customer"}]}
        statuses = [api.post("batch", body).status_code for _ in range(3)]
        assert statuses == [200, 200, 429]
        assert api.query("SELECT COUNT(*) FROM Customer").status_code == 200  # others still pass


# -- querying ------------------------------------------------------------------------------------
def test_max_results_above_1000_is_a_validation_fault(api: Api) -> None:
    reply = api.query("SELECT * FROM Invoice STARTPOSITION 1 MAXRESULTS 1001")
    assert reply.status_code == 400
    error = reply.json()["Fault"]["Error"][0]
    assert error["code"] == "4001"
    assert (
        error["Detail"]
        == "QueryValidationError: value 1001 is too large. Max allowed value is 1000"
    )
    assert "time" in reply.json()


def test_bad_syntax_is_a_parser_fault_4000(api: Api) -> None:
    reply = api.get("query", query="SELECT * FROM Invoice WHERE Balance > '0' OR Id = '1'")
    assert reply.status_code == 400
    assert fault_codes(reply.json()) == ["4000"]
    assert reply.json()["Fault"]["Error"][0]["Detail"].startswith("QueryParserError")


def test_paging_envelope_and_default_page_size(api: Api, sandbox: Sandbox) -> None:
    total = len(sandbox.qbo.companies[realm_of(sandbox)].invoices)
    default = api.query("select * from invoice").json()
    assert default["QueryResponse"]["maxResults"] == 100
    assert default["QueryResponse"]["startPosition"] == 1
    assert "time" in default
    seen: list[str] = []
    start = 1
    while True:
        body = api.query(f"SELECT * FROM Invoice STARTPOSITION {start} MAXRESULTS 70").json()
        rows = body["QueryResponse"].get("Invoice", [])
        if not rows:
            assert body["QueryResponse"] == {}  # QBO's answer past the end
            break
        assert body["QueryResponse"]["startPosition"] == start
        assert body["QueryResponse"]["maxResults"] == len(rows)
        seen.extend(r["Id"] for r in rows)
        start += 70
    assert len(seen) == len(set(seen)) == total


def test_count(api: Api, sandbox: Sandbox) -> None:
    company = sandbox.qbo.companies[realm_of(sandbox)]
    body = api.query("SELECT COUNT(*) FROM Invoice WHERE Balance > '0'").json()
    assert body["QueryResponse"] == {
        "totalCount": sum(1 for i in company.invoices.values() if i.balance > 0)
    }


def test_preferences_and_company_info_are_one_read_only_object_each(
    api: Api, sandbox: Sandbox
) -> None:
    got = api.get("preferences")
    assert got.status_code == 200
    body = got.json()
    assert set(body) == {"Preferences", "time"}
    prefs = body["Preferences"]
    assert prefs["CurrencyPrefs"] == {
        "MultiCurrencyEnabled": False,
        "HomeCurrency": {"value": "USD"},
    }
    for section in (
        "AccountingInfoPrefs",
        "SalesFormsPrefs",
        "EmailMessagesPrefs",
        "OtherPrefs",
        "TimeTrackingPrefs",
    ):
        assert isinstance(prefs[section], dict), section
    assert prefs["SalesFormsPrefs"]["DefaultTerms"] == {"value": "3"}
    assert prefs["MetaData"]["CreateTime"].endswith(("-07:00", "-08:00"))  # company-local

    queried = api.query("select * from preferences").json()["QueryResponse"]
    assert queried == {"Preferences": [prefs], "startPosition": 1, "maxResults": 1}
    assert api.query("SELECT COUNT(*) FROM Preferences").json()["QueryResponse"] == {
        "totalCount": 1
    }
    sparse = api.query("SELECT CurrencyPrefs FROM Preferences").json()["QueryResponse"]
    assert sparse["Preferences"][0]["CurrencyPrefs"]["HomeCurrency"] == {"value": "USD"}
    assert "SalesFormsPrefs" not in sparse["Preferences"][0]
    none = api.query("SELECT * FROM Preferences WHERE MetaData.LastUpdatedTime > '2099-01-01'")
    assert none.json()["QueryResponse"] == {}
    assert api.query("SELECT * FROM Preferences STARTPOSITION 2").json()["QueryResponse"] == {}

    info = api.get("companyinfo/x").json()["CompanyInfo"]
    assert (info["Country"], info["CompanyAddr"]["CountrySubDivisionCode"]) == ("US", "CA")
    assert "DefaultTimeZone" not in info  # QBO has no time-zone field
    assert api.query("SELECT * FROM CompanyInfo").json()["QueryResponse"]["CompanyInfo"] == [info]

    written = api.post("preferences", {"Id": "1", "SyncToken": "0", "sparse": True})
    assert written.status_code == 400 and fault_codes(written.json()) == ["2010"]
    cdc = api.get("cdc", entities="Preferences", changedSince="2026-11-01T00:00:00Z")
    assert cdc.status_code == 400
    endpoints = [e.endpoint for e in sandbox.ledger.entries(kind="request", platform="qbo")]
    assert endpoints.count("GET /v3/company/{realmId}/preferences") == 1
    assert endpoints.count("GET /v3/company/{realmId}/companyinfo/{realmId}") == 1


def test_amounts_are_numbers_with_two_decimals(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    raw = api.get(f"invoice/{inv.id}").text
    assert f'"TotalAmt":{inv.total}' in raw
    assert str(inv.total).split(".")[1].__len__() == 2
    body = api.get(f"invoice/{inv.id}").json()["Invoice"]
    lines = [ln for ln in body["Line"] if ln["DetailType"] == "SalesItemLineDetail"]
    assert Decimal(str(body["TotalAmt"])) == sum(Decimal(str(ln["Amount"])) for ln in lines)
    assert body["CustomerRef"]["value"] and body["CurrencyRef"]["value"] == "USD"
    assert body["domain"] == "QBO" and body["sparse"] is False


def test_read_missing_object_is_fault_610(api: Api) -> None:
    reply = api.get("invoice/424242")
    assert reply.status_code == 400
    assert fault_codes(reply.json()) == ["610"]
    assert reply.json()["Fault"]["Error"][0]["Message"] == "Object Not Found"


def test_minorversion_missing_or_old_is_served_as_75(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    plain = api.client.get(f"{api.base}/invoice/{inv.id}")
    old = api.client.get(f"{api.base}/invoice/{inv.id}", params={"minorversion": 4})
    assert plain.status_code == old.status_code == 200
    assert plain.json()["Invoice"] == old.json()["Invoice"]


# -- change data capture -------------------------------------------------------------------------
def test_cdc_looks_back_at_most_30_days(api: Api, sandbox: Sandbox) -> None:
    now = sandbox.clock.now()
    too_old = (now - timedelta(days=31)).isoformat()
    reply = api.get("cdc", entities="Invoice", changedSince=too_old)
    assert reply.status_code == 400
    assert "Fault" in reply.json()
    fine = api.get("cdc", entities="Invoice", changedSince=(now - timedelta(days=29)).isoformat())
    assert fine.status_code == 200


def test_cdc_caps_at_1000_objects_and_reports_deletions() -> None:
    with serving(companies=_qbo_only(invoices=1100, customers=60)) as (sandbox, _server, api):
        realm = realm_of(sandbox)
        sandbox.clock.advance(timedelta(minutes=1))
        since = sandbox.clock.now()
        company = sandbox.qbo.companies[realm]
        ids = list(company.invoices)[:1010]
        for inv_id in ids:
            sandbox.clock.advance(timedelta(seconds=1))
            sandbox.event("qbo", realm, {"type": "edit", "invoice": inv_id, "private_note": "n"})
        sandbox.clock.advance(timedelta(seconds=1))
        sandbox.event("qbo", realm, {"type": "delete_invoice", "invoice": ids[0]})

        first = api.get("cdc", entities="Invoice,Payment", changedSince=since.isoformat()).json()
        responses = first["CDCResponse"][0]["QueryResponse"]
        invoices = responses[0]["Invoice"]
        assert len(invoices) == 1000  # saturated: the client must narrow the window
        assert responses[1] == {}
        stamps = [i["MetaData"]["LastUpdatedTime"] for i in invoices]
        assert stamps == sorted(stamps)
        # ids[0] was deleted after its edit: it now comes back only as a deletion, last.
        assert [i["Id"] for i in invoices] == [str(i) for i in ids[1:1001]]

        narrowed = api.get("cdc", entities="Invoice", changedSince=stamps[-1]).json()
        rest = narrowed["CDCResponse"][0]["QueryResponse"][0]["Invoice"]
        assert [i["Id"] for i in rest[:-1]] == [str(i) for i in ids[1000:1010]]
        deleted = rest[-1]
        assert deleted["Id"] == str(ids[0])
        assert deleted["status"] == "Deleted"
        assert "LastUpdatedTime" in deleted["MetaData"]
        gone = api.get(f"invoice/{ids[0]}")
        assert fault_codes(gone.json()) == ["610"]


# -- tokens --------------------------------------------------------------------------------------
def test_refresh_token_rotation_and_expiry(server: SandboxServer, sandbox: Sandbox) -> None:
    tokens = sandbox.connect("qbo", realm_of(sandbox))
    first = tokens.refresh_token

    same = token_request(server, grant_type="refresh_token", refresh_token=first).json()
    assert same["refresh_token"] == first  # within 24 hours the value does not change
    assert same["token_type"] == "bearer" and same["expires_in"] == 3600
    assert same["x_refresh_token_expires_in"] == 100 * 86400

    sandbox.clock.advance(timedelta(hours=24, minutes=1))
    rotated = token_request(server, grant_type="refresh_token", refresh_token=first).json()
    second = rotated["refresh_token"]
    assert second != first

    sandbox.clock.advance(timedelta(hours=23))
    grace = token_request(server, grant_type="refresh_token", refresh_token=first)
    assert grace.status_code == 200  # the superseded token still works for 24 hours
    assert grace.json()["refresh_token"] == second

    sandbox.clock.advance(timedelta(hours=2))
    dead = token_request(server, grant_type="refresh_token", refresh_token=first)
    assert dead.status_code == 400
    assert dead.json() == {"error": "invalid_grant"}
    assert (
        token_request(server, grant_type="refresh_token", refresh_token=second).status_code == 200
    )

    sandbox.clock.advance(timedelta(days=100))
    idle = token_request(server, grant_type="refresh_token", refresh_token=second)
    assert idle.status_code == 400 and idle.json()["error"] == "invalid_grant"
    rejected = sandbox.ledger.entries(platform="qbo", kind="token_rejected")
    assert [e.detail["error"] for e in rejected] == ["invalid_grant", "invalid_grant"]


def test_bad_client_credentials_are_invalid_client(server: SandboxServer) -> None:
    url = server.urls()["oauth.platform.intuit.com"] + "/oauth2/v1/tokens/bearer"
    reply = httpx.post(
        url,
        data={"grant_type": "refresh_token", "refresh_token": "x"},
        auth=(CLIENT.client_id, "wrong"),
    )
    assert reply.status_code == 401
    assert reply.json()["error"] == "invalid_client"


def test_revoked_refresh_fault_kills_the_grant(server: SandboxServer, sandbox: Sandbox) -> None:
    tokens = sandbox.connect("qbo", realm_of(sandbox))
    sandbox.faults.add(kind=FaultKind.REVOKED_REFRESH, platform="qbo", endpoint="POST /oauth2/*")
    reply = token_request(server, grant_type="refresh_token", refresh_token=tokens.refresh_token)
    assert reply.status_code == 400 and reply.json() == {"error": "invalid_grant"}
    again = token_request(server, grant_type="refresh_token", refresh_token=tokens.refresh_token)
    assert again.json() == {"error": "invalid_grant"}
    api = Api(server, realm_of(sandbox), tokens.access_token)
    assert api.get("companyinfo/x").status_code == 401


def test_expired_access_token_gets_intuits_401_body(api: Api, sandbox: Sandbox) -> None:
    assert api.query("SELECT COUNT(*) FROM Invoice").status_code == 200
    sandbox.expire_access_tokens("qbo")
    reply = api.query("SELECT COUNT(*) FROM Invoice")
    assert reply.status_code == 401
    body = reply.json()
    assert body["fault"]["type"] == "AUTHENTICATION"
    error = body["fault"]["error"][0]
    assert error["code"] == "3200"
    assert "AuthenticationFailed" in error["message"]
    assert "Fault" not in body


def test_realm_outside_the_grant_is_forbidden() -> None:
    specs = [
        CompanySpec("qbo", 7, 5, 10),
        CompanySpec("qbo", 8, 5, 10),
        CompanySpec("xero", 7, 3, 5),
    ]
    with serving(companies=specs) as (sandbox, server, api):
        other = sandbox.qbo.tenants()[1].tenant_id
        assert other != realm_of(sandbox)
        outside = Api(server, other, api.client.headers["Authorization"][7:])
        reply = outside.get("companyinfo/x")
        assert reply.status_code == 403
        assert fault_codes(reply.json()) == ["3100"]
        unknown = Api(server, "123", api.client.headers["Authorization"][7:])
        assert unknown.get("companyinfo/x").status_code == 403


def test_consent_page_refuses_bad_client_or_redirect_without_redirecting(
    server: SandboxServer,
) -> None:
    url = server.urls()["appcenter.intuit.com"] + "/connect/oauth2"
    base = {"response_type": "code", "scope": "com.intuit.quickbooks.accounting", "state": "s"}
    bad_client = httpx.get(url, params={**base, "client_id": "nope", "redirect_uri": REDIRECT_URI})
    assert bad_client.status_code == 400 and "text/html" in bad_client.headers["content-type"]
    bad_redirect = httpx.get(
        url, params={**base, "client_id": CLIENT.client_id, "redirect_uri": "https://evil.example/"}
    )
    assert bad_redirect.status_code == 400 and "location" not in bad_redirect.headers
    bad_scope = httpx.get(
        url,
        params={
            **base,
            "scope": "nonsense",
            "client_id": CLIENT.client_id,
            "redirect_uri": REDIRECT_URI,
        },
    )
    assert bad_scope.status_code == 302
    assert "error=invalid_scope" in bad_scope.headers["location"]


# -- writes --------------------------------------------------------------------------------------
def test_requestid_replays_the_first_response(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    first = api.send(str(inv.id), requestid="action-42")
    second = api.send(str(inv.id), requestid="action-42")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    assert sandbox.ledger.count(platform="qbo", kind="email_sent") == 1
    assert sandbox.ledger.count(platform="qbo", kind="replayed", idempotency_key="action-42") == 1
    assert (
        api.send(str(inv.id), requestid="action-43").json()["Invoice"]["SyncToken"]
        != (first.json()["Invoice"]["SyncToken"])
    )
    assert sandbox.ledger.count(platform="qbo", kind="email_sent") == 2


def test_stale_synctoken_is_fault_5010(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    current = api.get(f"invoice/{inv.id}").json()["Invoice"]
    update = {
        "Id": current["Id"],
        "SyncToken": current["SyncToken"],
        "sparse": True,
        "PrivateNote": "promised to pay Friday",
    }
    ok = api.post("invoice", update)
    assert ok.status_code == 200
    assert int(ok.json()["Invoice"]["SyncToken"]) == int(current["SyncToken"]) + 1
    assert ok.json()["Invoice"]["PrivateNote"] == "promised to pay Friday"
    assert ok.json()["Invoice"]["DueDate"] == current["DueDate"]  # sparse: the rest is kept
    stale = api.post("invoice", update)
    assert stale.status_code == 400
    assert fault_codes(stale.json()) == ["5010"]


def test_stale_synctoken_fault_plan_then_reread_and_retry(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    sandbox.faults.add(kind=FaultKind.STALE_SYNCTOKEN, platform="qbo", endpoint="POST */invoice")
    current = api.get(f"invoice/{inv.id}").json()["Invoice"]
    update = {
        "Id": current["Id"],
        "SyncToken": current["SyncToken"],
        "sparse": True,
        "PrivateNote": "note",
    }
    first = api.post("invoice", update)
    assert first.status_code == 400 and fault_codes(first.json()) == ["5010"]
    reread = api.get(f"invoice/{inv.id}").json()["Invoice"]
    assert reread["SyncToken"] != current["SyncToken"]  # someone else saved it
    retry = api.post("invoice", {**update, "SyncToken": reread["SyncToken"]})
    assert retry.status_code == 200


def test_payment_bumps_the_invoice_synctoken(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    before = api.get(f"invoice/{inv.id}").json()["Invoice"]
    sandbox.clock.advance(timedelta(minutes=3))
    sandbox.event(
        "qbo", realm_of(sandbox), {"type": "payment", "invoice": inv.id, "amount": "1.00"}
    )
    update = {
        "Id": before["Id"],
        "SyncToken": before["SyncToken"],
        "sparse": True,
        "PrivateNote": "x",
    }
    assert fault_codes(api.post("invoice", update).json()) == ["5010"]
    after = api.get(f"invoice/{inv.id}").json()["Invoice"]
    assert after["MetaData"]["LastUpdatedTime"] > before["MetaData"]["LastUpdatedTime"]


def test_send_without_an_email_address_is_a_fault(api: Api, sandbox: Sandbox) -> None:
    realm = realm_of(sandbox)
    company = sandbox.qbo.companies[realm]
    customer = next(c for c in company.customers.values() if c.email is None)
    made = sandbox.event(
        "qbo", realm, {"type": "create_invoice", "customer": customer.id, "amount": "80.00"}
    )
    reply = api.send(made["invoice"])
    assert reply.status_code == 400
    assert fault_codes(reply.json()) == ["6000"]
    assert sandbox.ledger.count(platform="qbo", kind="email_sent") == 0
    sent = api.send(made["invoice"], sendTo="accounts@example.com")
    assert sent.status_code == 200
    assert sent.json()["Invoice"]["BillEmail"] == {"Address": "accounts@example.com"}


def test_daily_email_cap() -> None:
    with serving(qbo=QboLimits(emails_per_day=2)) as (sandbox, server, api):
        inv = _open_invoice(sandbox)
        statuses = [api.send(str(inv.id), sendTo="a@example.com").status_code for _ in range(3)]
        assert statuses == [200, 200, 400]
        sandbox.clock.advance(timedelta(days=1))
        fresh = connect_api(server)  # a day later the first access token has long expired
        assert fresh.send(str(inv.id), sendTo="a@example.com").status_code == 200
        fresh.close()


def test_attachable_note_is_queryable_and_leaves_the_invoice(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    before = api.get(f"invoice/{inv.id}").json()["Invoice"]
    made = api.post(
        "attachable",
        {
            "Note": "Reminder 1 sent",
            "AttachableRef": [
                {"EntityRef": {"type": "Invoice", "value": str(inv.id)}, "IncludeOnSend": False}
            ],
        },
        requestid="note-1",
    )
    assert made.status_code == 200
    attachable = made.json()["Attachable"]
    assert attachable["SyncToken"] == "0" and attachable["Note"] == "Reminder 1 sent"
    found = api.query(
        "SELECT * FROM Attachable WHERE AttachableRef.EntityRef.Type = 'Invoice' "
        f"AND AttachableRef.EntityRef.value = '{inv.id}'"
    ).json()["QueryResponse"]["Attachable"]
    assert [a["Id"] for a in found] == [attachable["Id"]]
    assert api.get(f"invoice/{inv.id}").json()["Invoice"] == before
    notes = sandbox.ledger.entries(platform="qbo", kind="note_added")
    assert [e.detail["refs"] for e in notes] == [[f"Invoice:{inv.id}"]]


# -- transport faults through the pipeline -------------------------------------------------------
def test_drop_performs_nothing(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    sandbox.faults.add(kind=FaultKind.DROP, platform="qbo", endpoint="POST */send")
    with pytest.raises(httpx.TransportError):
        api.send(str(inv.id), requestid="r-drop")
    assert sandbox.ledger.count(platform="qbo", kind="email_sent") == 0
    assert api.send(str(inv.id), requestid="r-drop").status_code == 200
    assert sandbox.ledger.count(platform="qbo", kind="email_sent") == 1


def test_lost_reply_performs_the_write_exactly_once(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    sandbox.faults.add(kind=FaultKind.LOST_REPLY, platform="qbo", endpoint="POST */send")
    with pytest.raises(httpx.TransportError):
        api.send(str(inv.id), requestid="r-lost")
    assert sandbox.ledger.count(platform="qbo", kind="email_sent") == 1
    retry = api.send(str(inv.id), requestid="r-lost")
    assert retry.status_code == 200 and retry.json()["Invoice"]["EmailStatus"] == "EmailSent"
    assert sandbox.ledger.count(platform="qbo", kind="email_sent") == 1
    assert sandbox.ledger.count(platform="qbo", kind="replayed") == 1


def test_slow_reply_passes_a_client_timeout(api: Api, sandbox: Sandbox) -> None:
    sandbox.faults.add(
        kind=FaultKind.SLOW, platform="qbo", endpoint="GET */companyinfo/*", params={"delay": 1.0}
    )
    with pytest.raises(httpx.TimeoutException):
        api.client.get(f"{api.base}/companyinfo/x", timeout=0.2)
    assert api.get("companyinfo/x").status_code == 200


def test_server_errors_have_qbo_shapes(api: Api, sandbox: Sandbox) -> None:
    sandbox.faults.add(kind=FaultKind.SERVER_ERROR, platform="qbo", endpoint="POST */query")
    sandbox.faults.add(
        kind=FaultKind.SERVER_ERROR, platform="qbo", endpoint="POST */query", params={"status": 503}
    )
    first = api.query("SELECT COUNT(*) FROM Invoice")
    assert first.status_code == 500
    assert first.json()["Fault"]["type"] == "SystemFault"
    assert fault_codes(first.json()) == ["10000"]
    second = api.query("SELECT COUNT(*) FROM Invoice")
    assert second.status_code == 503 and "text/html" in second.headers["content-type"]
    assert api.query("SELECT COUNT(*) FROM Invoice").status_code == 200


def test_xml_throttle_even_when_json_was_asked(api: Api, sandbox: Sandbox) -> None:
    sandbox.faults.add(kind=FaultKind.XML_THROTTLE, platform="qbo", endpoint="* */query")
    reply = api.query("SELECT COUNT(*) FROM Invoice")
    assert reply.status_code == 429
    assert reply.headers["content-type"].startswith("application/xml")
    assert '<Error code="3001">' in reply.text
    assert "<IntuitResponse" in reply.text


def test_day_limit_and_expired_token_faults(api: Api, sandbox: Sandbox) -> None:
    sandbox.faults.add(kind=FaultKind.DAY_LIMIT, platform="qbo", endpoint="* */query")
    sandbox.faults.add(kind=FaultKind.EXPIRED_TOKEN, platform="qbo", endpoint="* */query")
    day = api.query("SELECT COUNT(*) FROM Invoice")
    assert day.status_code == 429 and int(day.headers["retry-after"]) >= 3600
    expired = api.query("SELECT COUNT(*) FROM Invoice")
    assert expired.status_code == 401 and expired.json()["fault"]["error"][0]["code"] == "3200"


# -- business events -----------------------------------------------------------------------------
def _invoice(api: Api, inv_id: object) -> dict[str, Any]:
    body = api.query(f"SELECT * FROM Invoice WHERE Id = '{inv_id}'").json()
    return dict(body["QueryResponse"]["Invoice"][0])


def test_business_events_show_in_query_and_cdc() -> None:
    # Many calls at one frozen instant: lift the per-second limit rather than wait.
    with serving(qbo=QboLimits(per_second=100)) as (sandbox, _server, api):
        _business_events(sandbox, api)


def _business_events(sandbox: Sandbox, api: Api) -> None:
    realm = realm_of(sandbox)
    sandbox.clock.advance(timedelta(seconds=5))
    since = sandbox.clock.now()
    sandbox.clock.advance(timedelta(seconds=5))
    inv = _open_invoice(sandbox)
    total = Decimal(str(_invoice(api, inv.id)["TotalAmt"]))
    balance = inv.balance

    paid = sandbox.event("qbo", realm, {"type": "payment", "invoice": inv.id, "amount": "10.00"})
    assert Decimal(str(_invoice(api, inv.id)["Balance"])) == balance - Decimal("10.00")
    payment = api.get(f"payment/{paid['payment']}").json()["Payment"]
    assert payment["Line"][0]["LinkedTxn"] == [{"TxnId": str(inv.id), "TxnType": "Invoice"}]

    credited = sandbox.event("qbo", realm, {"type": "credit", "invoice": inv.id, "amount": "5.00"})
    memo = api.get(f"creditmemo/{credited['credit_memo']}").json()["CreditMemo"]
    assert memo["TotalAmt"] == 5.0 and memo["RemainingCredit"] == 0
    applied = api.get(f"payment/{credited['payment']}").json()["Payment"]
    assert applied["TotalAmt"] == 0
    assert {ln["LinkedTxn"][0]["TxnType"] for ln in applied["Line"]} == {"Invoice", "CreditMemo"}
    assert Decimal(str(_invoice(api, inv.id)["Balance"])) == balance - Decimal("15.00")

    sandbox.event("qbo", realm, {"type": "edit", "invoice": inv.id, "due_date": "2027-01-31"})
    assert _invoice(api, inv.id)["DueDate"] == "2027-01-31"
    assert Decimal(str(_invoice(api, inv.id)["TotalAmt"])) == total

    company = sandbox.qbo.companies[realm]
    other = next(i for i in company.invoices.values() if i.balance > 0 and i.id != inv.id)
    sandbox.event("qbo", realm, {"type": "void", "invoice": other.id})
    voided = _invoice(api, other.id)
    assert voided["TotalAmt"] == 0 and voided["Balance"] == 0
    assert voided["PrivateNote"] == "Voided"

    made = sandbox.event(
        "qbo",
        realm,
        {
            "type": "create_invoice",
            "customer": inv.customer_id,
            "amount": "250.00",
            "terms_days": 15,
        },
    )
    created = _invoice(api, made["invoice"])
    assert created["Balance"] == 250.0
    assert created["SalesTermRef"]["value"] == "2"

    sandbox.event(
        "qbo",
        realm,
        {"type": "email_change", "customer": inv.customer_id, "email": "new@customer.example"},
    )
    customer = api.get(f"customer/{inv.customer_id}").json()["Customer"]
    assert customer["PrimaryEmailAddr"] == {"Address": "new@customer.example"}

    cdc = api.get(
        "cdc", entities="Invoice,Payment,CreditMemo,Customer", changedSince=since.isoformat()
    ).json()
    changed = {
        name: {o["Id"] for o in group.get(name, [])}
        for group, name in zip(
            cdc["CDCResponse"][0]["QueryResponse"],
            ["Invoice", "Payment", "CreditMemo", "Customer"],
            strict=True,
        )
    }
    assert changed["Invoice"] == {str(inv.id), str(other.id), made["invoice"]}
    assert changed["Payment"] == {paid["payment"], credited["payment"]}
    assert changed["CreditMemo"] == {credited["credit_memo"]}
    assert changed["Customer"] == {str(inv.customer_id)}


def test_bad_events_raise_value_errors(sandbox: Sandbox) -> None:
    realm = realm_of(sandbox)
    paid = next(i for i in sandbox.qbo.companies[realm].invoices.values() if i.balance == 0)
    for event in (
        {"type": "refund", "invoice": "1"},
        {"type": "payment", "invoice": "999999"},
        {"type": "payment", "invoice": paid.id},
        {"type": "payment", "invoice": "1", "amount": "lots"},
        {"type": "edit", "invoice": "1"},
        {"type": "create_invoice", "customer": "1"},
        {"type": "create_invoice", "customer": "1", "amount": "5", "terms_days": 10**10},
        {"type": "create_invoice", "customer": "1", "amount": "NaN"},
        {"type": "payment", "invoice": "1", "amount": "1e40"},
    ):
        with pytest.raises(ValueError):
            sandbox.event("qbo", realm, event)
    with pytest.raises(ValueError):
        sandbox.event("qbo", "not-a-realm", {"type": "void", "invoice": "1"})


def test_time_field_is_company_local(api: Api) -> None:
    stamp = api.query("SELECT COUNT(*) FROM Customer").json()["time"]
    assert datetime.fromisoformat(stamp).utcoffset() == timedelta(hours=-8)


def test_voiding_a_paid_invoice_leaves_its_payment_unapplied(api: Api, sandbox: Sandbox) -> None:
    realm = realm_of(sandbox)
    company = sandbox.qbo.companies[realm]
    inv = next(
        i
        for i in company.invoices.values()
        if i.balance == 0
        and i.total > 0
        and len(i.linked) == 1
        and company.payments[i.linked[0][0]].total > 0
    )
    payment_id = inv.linked[0][0]
    before = api.get(f"customer/{inv.customer_id}").json()["Customer"]["Balance"]
    sandbox.event("qbo", realm, {"type": "void", "invoice": inv.id})
    voided = api.get(f"invoice/{inv.id}").json()["Invoice"]
    assert voided["LinkedTxn"] == [] and voided["TotalAmt"] == 0
    payment = api.get(f"payment/{payment_id}").json()["Payment"]
    assert payment["UnappliedAmt"] == payment["TotalAmt"] > 0
    assert payment["Line"] == []
    after = api.get(f"customer/{inv.customer_id}").json()["Customer"]["Balance"]
    assert Decimal(str(after)) == Decimal(str(before)) - Decimal(str(payment["TotalAmt"]))


def test_client_auth_in_the_body_and_revocation(server: SandboxServer, sandbox: Sandbox) -> None:
    tokens = sandbox.connect("qbo", realm_of(sandbox))
    url = server.urls()["oauth.platform.intuit.com"] + "/oauth2/v1/tokens/bearer"
    posted = httpx.post(
        url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens.refresh_token,
            "client_id": CLIENT.client_id,
            "client_secret": CLIENT.client_secret,
        },
    )
    assert posted.status_code == 200 and posted.json()["access_token"]
    assert "id_token" not in posted.json()
    revoke = server.urls()["developer.api.intuit.com"] + "/v2/oauth2/tokens/revoke"
    reply = httpx.post(
        revoke, json={"token": tokens.refresh_token}, auth=(CLIENT.client_id, CLIENT.client_secret)
    )
    assert reply.status_code == 200
    assert sandbox.ledger.count(platform="qbo", kind="token_revoked") == 1
    dead = token_request(server, grant_type="refresh_token", refresh_token=tokens.refresh_token)
    assert dead.json() == {"error": "invalid_grant"}
    api = Api(server, realm_of(sandbox), posted.json()["access_token"])
    assert api.get("companyinfo/x").status_code == 401


# -- malformed input, exact money and concurrent writers ---------------------------------------
@pytest.fixture
def roomy() -> Iterator[tuple[Sandbox, Api]]:
    """Many calls at one frozen instant: the per-second limit is lifted rather than waited out."""
    with serving(qbo=QboLimits(per_second=1000)) as (sandbox, _server, client):
        yield sandbox, client


def _raw(api: Api, path: str, content: bytes, content_type: str = "application/json") -> Any:
    return api.client.post(
        f"{api.base}/{path}",
        content=content,
        headers={"Content-Type": content_type},
        params={"minorversion": 75},
    )


def test_malformed_input_gets_validation_faults_never_a_500(roomy: tuple[Sandbox, Api]) -> None:
    sandbox, api = roomy
    realm = realm_of(sandbox)
    company = sandbox.qbo.companies[realm]
    inv = _open_invoice(sandbox)
    cust = str(inv.customer_id)
    line = {"DetailType": "SalesItemLineDetail", "SalesItemLineDetail": {}}
    count_before = len(company.invoices)
    balance_before = api.get(f"customer/{cust}").json()["Customer"]["Balance"]
    cases: list[tuple[str, Any]] = [
        ("invoice", b'{"CustomerRef":{"value":"1"},"Line":[{"Amount":NaN}]}'),
        ("invoice", b"\xff\xfe{}"),
        ("invoice", {"CustomerRef": {"value": cust}, "Line": [{**line, "Amount": "NaN"}]}),
        ("invoice", {"CustomerRef": {"value": cust}, "Line": [{**line, "Amount": "1e30"}]}),
        (
            "invoice",
            b'{"CustomerRef":{"value":"1"},"Line":[{"DetailType":"SalesItemLineDetail",'
            b'"Amount":1e999999,"SalesItemLineDetail":{}}]}',
        ),
        (
            "invoice",
            {
                "CustomerRef": {"value": cust},
                "Line": [{**line, "Amount": 5, "SalesItemLineDetail": "x"}],
            },
        ),
        (
            "invoice",
            {
                "CustomerRef": {"value": cust},
                "Line": [{**line, "Amount": 5}],
                "DocNumber": "X" * 22,
            },
        ),
        (
            "invoice",
            {
                "Id": str(inv.id),
                "SyncToken": str(inv.sync),
                "sparse": True,
                "BillEmail": "not-an-object@example.com",
            },
        ),
        ("attachable", {"Note": "n", "AttachableRef": ["x"]}),
        ("attachable", {"Note": {"text": "n"}, "AttachableRef": []}),
        ("attachable", {"Note": "n", "AttachableRef": [{"EntityRef": "Invoice"}]}),
        ("customer", {"DisplayName": "New Co", "PrimaryPhone": "555"}),
        ("customer", {"DisplayName": {"name": "x"}}),
        ("customer", {"Id": cust, "SyncToken": "0", "sparse": True, "Active": "perhaps"}),
    ]
    for path, body in cases:
        reply = _raw(api, path, body) if isinstance(body, bytes) else api.post(path, body)
        assert reply.status_code == 400, (path, body, reply.text)
        fault = reply.json()["Fault"]
        assert fault["type"] == "ValidationFault" and "time" in reply.json()
        assert set(fault["Error"][0]) == {"Message", "Detail", "code", "element"}
    queries = [
        _raw(api, "query", b"\xff\xfeSELECT", "application/text"),
        api.query("SELECT * FROM Invoice STARTPOSITION 99999999999999999999999"),
        api.query(
            "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > '0001-01-01T00:00+14:00'"
        ),
        api.get("cdc", entities="Invoice", changedSince="9999-12-31T23:59:59-14:00"),
    ]
    for reply in queries:
        assert reply.status_code == 400, reply.text
        assert reply.json()["Fault"]["Error"][0]["code"] in {"4000", "4001", "2010"}
    assert api.get(f"invoice/{inv.id}", minorversion="9" * 5000).status_code == 200
    assert len(company.invoices) == count_before  # nothing half-made
    assert api.get(f"customer/{cust}").json()["Customer"]["Balance"] == balance_before


def test_a_refused_update_changes_nothing(roomy: tuple[Sandbox, Api]) -> None:
    sandbox, api = roomy
    inv = _open_invoice(sandbox)
    before = api.get(f"invoice/{inv.id}").json()["Invoice"]
    bad_date = {
        "Id": before["Id"],
        "SyncToken": before["SyncToken"],
        "sparse": True,
        "PrivateNote": "should not stick",
        "DueDate": "next Friday",
    }
    assert fault_codes(api.post("invoice", bad_date).json()) == ["2010"]
    assert api.get(f"invoice/{inv.id}").json()["Invoice"] == before
    customer = api.get(f"customer/{inv.customer_id}").json()["Customer"]
    taken = next(
        c.display_name
        for c in sandbox.qbo.companies[realm_of(sandbox)].customers.values()
        if c.id != inv.customer_id
    )
    rename = {
        "Id": customer["Id"],
        "SyncToken": customer["SyncToken"],
        "sparse": True,
        "Notes": "should not stick",
        "DisplayName": taken,
    }
    assert fault_codes(api.post("customer", rename).json()) == ["6240"]
    assert api.get(f"customer/{inv.customer_id}").json()["Customer"] == customer


def test_amounts_are_exact_decimals_end_to_end(roomy: tuple[Sandbox, Api]) -> None:
    sandbox, api = roomy
    inv = _open_invoice(sandbox)
    cust = str(inv.customer_id)
    before = Decimal(str(api.get(f"customer/{cust}").json()["Customer"]["Balance"]))
    lines = (
        '{"DetailType":"SalesItemLineDetail","Amount":0.1,"SalesItemLineDetail":{}},'
        '{"DetailType":"SalesItemLineDetail","Amount":0.2,'
        '"SalesItemLineDetail":{"Qty":3,"UnitPrice":0.0666666666666666666}}'
    )
    body = ('{"CustomerRef":{"value":"' + cust + '"},"Line":[' + lines + "]}").encode()
    made = _raw(api, "invoice", body)
    assert made.status_code == 200, made.text
    assert '"TotalAmt":0.30' in made.text and '"Balance":0.30' in made.text
    after = Decimal(str(api.get(f"customer/{cust}").json()["Customer"]["Balance"]))
    assert after - before == Decimal("0.30")


def test_string_booleans_are_read_as_booleans(api: Api, sandbox: Sandbox) -> None:
    inv = _open_invoice(sandbox)
    customer = api.get(f"customer/{inv.customer_id}").json()["Customer"]
    update = {
        "Id": customer["Id"],
        "SyncToken": customer["SyncToken"],
        "sparse": "true",
        "Active": "false",
    }
    saved = api.post("customer", update).json()["Customer"]
    assert saved["Active"] is False
    assert saved["DisplayName"] == customer["DisplayName"]  # sparse: the rest is kept


def test_batch_item_that_is_not_an_object_gets_its_own_fault(api: Api) -> None:
    items = ["nonsense", {"bId": "q", "Query": "SELECT COUNT(*) FROM Invoice"}]
    reply = api.post("batch", {"BatchItemRequest": items})
    assert reply.status_code == 200
    answers = reply.json()["BatchItemResponse"]
    assert len(answers) == 2
    assert fault_codes(answers[0]) == ["2010"]
    assert answers[1]["bId"] == "q" and "totalCount" in answers[1]["QueryResponse"]


def test_a_sandbox_failure_is_intuits_500_system_fault(
    api: Api, sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(company: Any) -> dict[str, Any]:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr("arsync.sandbox.qbo.prefs.company_info_json", broken)
    reply = api.get("companyinfo/x")
    assert reply.status_code == 500
    assert reply.json()["Fault"]["type"] == "SystemFault"
    assert fault_codes(reply.json()) == ["10000"]
    assert "Traceback" not in reply.text
    monkeypatch.undo()
    assert api.get("companyinfo/x").status_code == 200


def test_concurrent_updates_with_one_synctoken_save_exactly_once() -> None:
    with serving(qbo=QboLimits(per_second=100)) as (sandbox, _server, api):
        inv = _open_invoice(sandbox)
        current = api.get(f"invoice/{inv.id}").json()["Invoice"]
        barrier = threading.Barrier(8)
        statuses: list[int] = []
        lock = threading.Lock()

        def update(n: int) -> None:
            body = {
                "Id": current["Id"],
                "SyncToken": current["SyncToken"],
                "sparse": True,
                "PrivateNote": f"writer {n}",
            }
            barrier.wait()
            status = api.post("invoice", body).status_code
            with lock:
                statuses.append(status)

        threads = [threading.Thread(target=update, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(statuses) == [200] + [400] * 7
        final = api.get(f"invoice/{inv.id}").json()["Invoice"]
        assert int(final["SyncToken"]) == int(current["SyncToken"]) + 1
        assert final["PrivateNote"].startswith("writer ")


def test_attachable_ref_conditions_hold_for_one_reference(roomy: tuple[Sandbox, Api]) -> None:
    sandbox, api = roomy
    company = sandbox.qbo.companies[realm_of(sandbox)]
    inv = next(i for i in company.invoices.values() if i.id in company.customers)
    other = next(i for i in company.invoices.values() if i.id != inv.id)
    # One note on customer N and on some other invoice; a second note on invoice N itself.
    mixed = api.post(
        "attachable",
        {
            "Note": "customer note",
            "AttachableRef": [
                {"EntityRef": {"type": "Customer", "value": str(inv.id)}},
                {"EntityRef": {"type": "Invoice", "value": str(other.id)}},
            ],
        },
    ).json()["Attachable"]
    mine = api.post(
        "attachable",
        {
            "Note": "invoice note",
            "AttachableRef": [{"EntityRef": {"type": "Invoice", "value": str(inv.id)}}],
        },
    ).json()["Attachable"]
    found = api.query(
        "SELECT * FROM Attachable WHERE AttachableRef.EntityRef.Type = 'Invoice' "
        f"AND AttachableRef.EntityRef.value = '{inv.id}'"
    ).json()["QueryResponse"]["Attachable"]
    assert [a["Id"] for a in found] == [mine["Id"]]
    either = api.query(
        f"SELECT * FROM Attachable WHERE AttachableRef.EntityRef.value = '{inv.id}'"
    ).json()["QueryResponse"]["Attachable"]
    assert {a["Id"] for a in either} == {mixed["Id"], mine["Id"]}


def test_an_invoice_for_an_inactive_customer_is_fault_610(roomy: tuple[Sandbox, Api]) -> None:
    _sandbox, api = roomy
    customer = api.get("customer/1").json()["Customer"]
    body = {
        "CustomerRef": {"value": "1"},
        "Line": [{"DetailType": "SalesItemLineDetail", "Amount": 10, "SalesItemLineDetail": {}}],
    }
    assert api.post("invoice", body).status_code == 200
    update = {"Id": "1", "SyncToken": customer["SyncToken"], "sparse": True, "Active": False}
    assert api.post("customer", update).json()["Customer"]["Active"] is False
    refused = api.post("invoice", body)
    assert refused.status_code == 400 and fault_codes(refused.json()) == ["610"]
    assert "made inactive" in refused.json()["Fault"]["Error"][0]["Detail"]
