"""The simulated Xero's documented behaviours, one test each, over real loopback HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import timedelta, timezone
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from arsync.sandbox import FaultKind, Sandbox, SandboxServer
from arsync.sandbox.core import XeroLimits
from tests.contract import xero_support as xs


@dataclass
class Xero:
    sandbox: Sandbox
    server: SandboxServer
    tokens: dict[str, Any]
    tenant: str

    def client(self, timeout: float = 10.0) -> AbstractContextManager[httpx.Client]:
        return xs.api(self.server, self.tokens["access_token"], self.tenant, timeout)

    @property
    def org(self) -> Any:
        return self.sandbox.xero.orgs[self.tenant]

    def invoice(self, **want: Any) -> Any:
        """The first invoice whose attributes match, e.g. status="AUTHORISED"."""
        return next(
            i for i in self.org.invoice_list if all(getattr(i, k) == v for k, v in want.items())
        )


@contextmanager
def running(**overrides: Any) -> Iterator[Xero]:
    sandbox = xs.make_sandbox(**overrides)
    with SandboxServer(sandbox) as server:
        tokens = xs.connect(server)
        yield Xero(sandbox, server, tokens, xs.tenant_of(sandbox))


@pytest.fixture
def xero() -> Iterator[Xero]:
    with running() as setup:
        yield setup


def open_invoice(x: Xero, **extra: Any) -> Any:
    return next(
        i
        for i in x.org.invoice_list
        if i.type == "ACCREC"
        and i.status == "AUTHORISED"
        and i.contact.email
        and all(getattr(i, k) == v for k, v in extra.items())
    )


# -- limits ---------------------------------------------------------------------------------------
def test_minute_limit_answers_429_and_headers_count_down() -> None:
    with running(xero=XeroLimits(per_minute=3)) as x, x.client() as api:
        seen = [api.get("/Contacts", params={"page": "1"}) for _ in range(4)]
        assert [r.status_code for r in seen] == [200, 200, 200, 429]
        assert [r.headers["X-MinLimit-Remaining"] for r in seen] == ["2", "1", "0", "0"]
        assert [r.headers["X-DayLimit-Remaining"] for r in seen] == ["4999", "4998", "4997", "4997"]
        assert all("X-AppMinLimit-Remaining" in r.headers for r in seen)
        refused = seen[-1]
        assert refused.headers["X-Rate-Limit-Problem"] == "minute"
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert x.sandbox.ledger.count(kind="rate_limited", tenant=x.tenant) == 1
        x.sandbox.clock.advance(timedelta(seconds=61))
        assert api.get("/Contacts").status_code == 200


def test_day_limit_asks_to_wait_for_hours() -> None:
    with running(xero=XeroLimits(per_day=2)) as x, x.client() as api:
        assert [api.get("/Contacts").status_code for _ in range(2)] == [200, 200]
        refused = api.get("/Contacts")
        assert refused.status_code == 429
        assert refused.headers["X-Rate-Limit-Problem"] == "day"
        assert int(refused.headers["Retry-After"]) > 3600
        assert refused.headers["X-DayLimit-Remaining"] == "0"


def test_concurrency_cap() -> None:
    with running(xero=XeroLimits(concurrent=2), latency=0.5) as x, x.client() as api:
        answers: list[httpx.Response] = []
        barrier = threading.Barrier(5)

        def call() -> None:
            barrier.wait()
            answers.append(api.get("/Contacts"))

        threads = [threading.Thread(target=call) for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        statuses = sorted(r.status_code for r in answers)
        # the first two to arrive are always admitted; the rest arrive while both are in flight
        assert statuses.count(200) >= 2 and statuses.count(429) >= 1
        refused = [r for r in answers if r.status_code == 429]
        assert all(r.headers["X-Rate-Limit-Problem"] == "concurrent" for r in refused)
        # Xero names a wait only for the minute and day limits
        assert all("Retry-After" not in r.headers for r in refused)


# -- reading --------------------------------------------------------------------------------------
def test_page_size_defaults_to_100_and_is_capped() -> None:
    with running(xero=XeroLimits(max_page_size=50)) as x, x.client() as api:
        page = api.get("/Invoices", params={"page": "1", "pageSize": "500"}).json()
        assert page["pagination"]["pageSize"] == 50 and len(page["Invoices"]) == 50
        assert page["pagination"]["pageCount"] == 6 and page["pagination"]["itemCount"] == 300
    with running() as x, x.client() as api:
        page = api.get("/Invoices", params={"page": "1"}).json()
        assert page["pagination"]["pageSize"] == 100 and len(page["Invoices"]) == 100


def test_pagination_object_only_when_paging(xero: Xero) -> None:
    with xero.client() as api:
        everything = api.get("/Invoices").json()
        assert "pagination" not in everything and len(everything["Invoices"]) == 300
        assert all(i["LineItems"] == [] for i in everything["Invoices"]), (
            "without paging Xero leaves out line items"
        )
        last = api.get("/Invoices", params={"page": "3"}).json()
        assert last["pagination"] == {"page": 3, "pageSize": 100, "pageCount": 3, "itemCount": 300}
        assert all(i["LineItems"] for i in last["Invoices"])
        beyond = api.get("/Invoices", params={"page": "4"}).json()
        assert beyond["Invoices"] == [] and beyond["pagination"]["itemCount"] == 300
        for key in ("Id", "Status", "ProviderName", "DateTimeUTC"):
            assert key in last


def test_if_modified_since_in_iso_forms(xero: Xero) -> None:
    now = xero.sandbox.clock.now()
    target = open_invoice(xero)
    xero.sandbox.clock.advance(timedelta(minutes=20))  # within the access token's 30 minutes
    xero.sandbox.event(
        "xero", xero.tenant, {"type": "payment", "invoice": target.invoice_id, "amount": "1.00"}
    )
    since = now + timedelta(minutes=10)
    with xero.client() as api:
        for header in (
            since.isoformat(),  # arsync's form: UTC with an explicit offset
            since.replace(tzinfo=None).isoformat(),  # xero-python with a naive datetime: UTC
            since.strftime("%Y-%m-%dT%H:%M:%SZ"),
            since.astimezone(timezone(timedelta(hours=13))).isoformat(),
            (since + timedelta(microseconds=123456)).isoformat(),  # read to the second
        ):
            changed = api.get("/Invoices", headers={"If-Modified-Since": header}).json()
            assert [i["InvoiceID"] for i in changed["Invoices"]] == [target.invoice_id], header
            payments = api.get("/Payments", headers={"If-Modified-Since": header}).json()
            assert len(payments["Payments"]) == 1
            assert payments["Payments"][0]["Amount"] == 1.0
        later = (xero.sandbox.clock.now() + timedelta(seconds=1)).isoformat()
        assert api.get("/Invoices", headers={"If-Modified-Since": later}).json()["Invoices"] == []


def test_if_modified_since_is_strict(xero: Xero) -> None:
    """Only ISO 8601 date-times, as the OpenAPI file declares: nothing is quietly ignored."""
    with xero.client() as api:
        everything = len(api.get("/Invoices").json()["Invoices"])
        for header, expected in (
            ("0001-01-01T00:00:00+01:00", everything),
            ("9999-12-31T23:59:59-01:00", 0),
        ):
            answer = api.get("/Invoices", headers={"If-Modified-Since": header})
            assert answer.status_code == 200, (header, answer.text)
            assert len(answer.json()["Invoices"]) == expected, header
        before = xero.sandbox.ledger.count(kind="request", tenant=xero.tenant)
        for header in (
            format_datetime(xero.sandbox.clock.now(), usegmt=True),  # RFC 1123, HTTP's own
            "not a date",
            "2026-11-23",
            "2026-13-01T00:00:00",
            "",
        ):
            for path in ("/Invoices", "/Payments", "/CreditNotes", "/Contacts"):
                answer = api.get(path, headers={"If-Modified-Since": header})
                assert answer.status_code == 400, (header, path, answer.text)
                body = answer.json()
                assert (body["ErrorNumber"], body["Type"]) == (10, "ValidationException")
                message = body["Elements"][0]["ValidationErrors"][0]["Message"]
                assert "If-Modified-Since" in message and "ISO 8601" in message
        # refused requests still count as calls
        assert xero.sandbox.ledger.count(kind="request", tenant=xero.tenant) == before + 20
        # a single record ignores the header, as Xero's single-record GETs declare none
        invoice = open_invoice(xero).invoice_id
        one = api.get(f"/Invoices/{invoice}", headers={"If-Modified-Since": "not a date"})
        assert one.status_code == 200


def test_organisation_needs_the_settings_scope_and_counts_as_a_call(xero: Xero) -> None:
    with xero.client() as api:
        refused = api.get("/Organisation")  # the default grant has no accounting.settings
        assert refused.status_code == 401
        assert refused.json()["Detail"] == "AuthorizationUnsuccessful"
    tokens = xs.connect(xero.server, [*xs.SCOPES, "accounting.settings.read"])
    with xs.api(xero.server, tokens["access_token"], xero.tenant) as api:
        first = api.get("/Organisation")
        second = api.get("/organisation")  # Xero's paths are case-insensitive
    assert (first.status_code, second.status_code) == (200, 200)
    assert int(first.headers["X-MinLimit-Remaining"]) - 1 == int(
        second.headers["X-MinLimit-Remaining"]
    )
    body = first.json()
    assert {"Id", "Status", "ProviderName", "DateTimeUTC"} <= set(body)
    org = body["Organisations"][0]
    assert (org["OrganisationID"], org["Name"]) == (xero.tenant, xero.org.name)
    assert (org["BaseCurrency"], org["CountryCode"], org["Version"]) == ("GBP", "GB", "UK")
    assert org["CreatedDateUTC"].startswith("/Date(") and org["ShortCode"].startswith("!")
    entries = xero.sandbox.ledger.entries(
        kind="request", tenant=xero.tenant, endpoint="GET /api.xro/2.0/Organisation"
    )
    assert [e.status for e in entries] == [401, 200, 200]


def test_organisation_event_checks_everything_before_changing_anything(xero: Xero) -> None:
    org = xero.org
    for event, reason in (
        ({}, "needs one of"),
        ({"colour": "red"}, "unknown keys"),
        ({"zone": "Mars/Olympus_Mons"}, "IANA time zone"),
        ({"zone": "Asia/Kathmandu"}, "give timezone as well"),
        ({"timezone": "", "class": "DEMO"}, "non-empty text"),
        ({"class": 3}, "non-empty text"),
        ({"is_demo_company": "yes"}, "true or false"),
        ({"zone": "Pacific/Auckland", "is_demo_company": 1}, "true or false"),
    ):
        with pytest.raises(ValueError, match=reason):
            xero.sandbox.event("xero", xero.tenant, {"type": "organisation", **event})
    assert (org.timezone, org.xero_timezone, org.org_class, org.is_demo_company) == (
        "Europe/London",
        "GMTSTANDARDTIME",
        "PREMIUM",
        False,
    )
    result = xero.sandbox.event(
        "xero",
        xero.tenant,
        {"type": "organisation", "zone": "Asia/Kathmandu", "timezone": "NEPALSTANDARDTIME"},
    )
    assert (result["Timezone"], result["zone"]) == ("NEPALSTANDARDTIME", "Asia/Kathmandu")
    assert xero.sandbox.xero.tenants()[0].timezone == "Asia/Kathmandu"
    # The organisation's calendar moves with its zone: 15:00 UTC is 04:00 tomorrow in Auckland.
    now = xero.sandbox.clock.now()
    xero.sandbox.event("xero", xero.tenant, {"type": "organisation", "zone": "Pacific/Auckland"})
    assert org.xero_timezone == "NEWZEALANDSTANDARDTIME"
    assert org.local_today(now) == now.date() + timedelta(days=1)


def test_where_statuses_ids_and_order(xero: Xero) -> None:
    contact = open_invoice(xero).contact
    with xero.client() as api:
        rows = api.get(
            "/Invoices",
            params={
                "where": f'Type=="ACCREC" && Contact.ContactID==guid("{contact.contact_id}")',
                "Statuses": "AUTHORISED,PAID",
                "order": "Date DESC",
            },
        ).json()["Invoices"]
        assert rows and all(r["Contact"]["ContactID"] == contact.contact_id for r in rows)
        assert all(r["Status"] in ("AUTHORISED", "PAID") for r in rows)
        dates = [r["DateString"] for r in rows]
        assert dates == sorted(dates, reverse=True)
        ids = [rows[0]["InvoiceID"], rows[-1]["InvoiceID"]]
        by_id = api.get("/Invoices", params={"IDs": ",".join(ids)}).json()["Invoices"]
        assert {r["InvoiceID"] for r in by_id} == set(ids)
        bad = api.get("/Invoices", params={"where": "Colour==1"})
        assert bad.status_code == 400 and bad.json()["Type"] == "QueryParseException"
        one = api.get(f"/Invoices/{rows[0]['InvoiceNumber']}").json()["Invoices"][0]
        assert one["InvoiceID"] == rows[0]["InvoiceID"], "an invoice reads by its number too"


def test_hostile_filters_are_query_parse_errors(xero: Xero) -> None:
    with xero.client() as api:
        for where in (
            "(" * 200 + 'Type=="ACCREC"' + ")" * 200,
            "NOT " * 200 + 'Type=="ACCREC"',
            " AND ".join(['Type=="ACCREC"'] * 1000),
            "Date>=DateTime(2026,1,1,99999999999999999999,0,0)",
        ):
            refused = api.get("/Invoices", params={"where": where})
            assert refused.status_code == 400, refused.text
            assert refused.json()["ErrorNumber"] == 16
            assert refused.json()["Type"] == "QueryParseException"
        both = api.get("/Invoices", params={"where": 'Type<>"ACCPAY" AND Status<>"DRAFT"'})
        rows = both.json()["Invoices"]
        assert rows and all(r["Type"] == "ACCREC" and r["Status"] != "DRAFT" for r in rows)


def test_a_handler_failure_still_answers_like_xero(
    xero: Xero, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(call: Any) -> Any:
        raise RuntimeError("sandbox bug")

    monkeypatch.setattr(xero.sandbox.xero.accounting, "list_contacts", broken)
    with xero.client() as api:
        failed = api.get("/Contacts")
        assert failed.status_code == 500
        assert failed.headers["content-type"].startswith("application/json")
        assert failed.json()["Title"] == "An error occurred" and failed.json()["Status"] == 500
        assert api.get("/Invoices", params={"page": "1"}).status_code == 200


# -- access ---------------------------------------------------------------------------------------
def test_tenant_header_and_token_checks(xero: Xero) -> None:
    base = f"{xero.server.urls()['api.xero.com']}/api.xro/2.0/Invoices"
    auth = {"Authorization": f"Bearer {xero.tokens['access_token']}", "Accept": "application/json"}
    assert httpx.get(base, headers=auth).status_code == 403
    other = {**auth, "xero-tenant-id": "00000000-0000-0000-0000-000000000000"}
    forbidden = httpx.get(base, headers=other)
    assert forbidden.status_code == 403 and forbidden.json()["Detail"] == (
        "AuthenticationUnsuccessful"
    )
    xml = httpx.get(
        base, headers={**auth, "xero-tenant-id": xero.tenant, "Accept": "application/xml"}
    )
    assert xml.status_code == 406
    xero.sandbox.clock.advance(timedelta(seconds=1800))
    expired = httpx.get(base, headers={**auth, "xero-tenant-id": xero.tenant})
    assert expired.status_code == 401
    assert expired.json()["Detail"].startswith("TokenExpired")
    assert "invalid_token" in expired.headers["WWW-Authenticate"]


def test_granular_scopes_limit_what_a_token_reads(server: SandboxServer, sandbox: Sandbox) -> None:
    tokens = xs.connect(server, ["offline_access", "accounting.invoices.read"])
    with xs.api(server, tokens["access_token"], xs.tenant_of(sandbox)) as api:
        assert api.get("/Invoices", params={"page": "1"}).status_code == 200
        refused = api.get("/Contacts")
        assert refused.status_code == 401 and refused.json()["Detail"] == (
            "AuthorizationUnsuccessful"
        )
        invoice = sandbox.xero.orgs[xs.tenant_of(sandbox)].invoice_list[0].invoice_id
        note = {"HistoryRecords": [{"Details": "x"}]}
        assert api.put(f"/Invoices/{invoice}/History", json=note).status_code == 401


def test_deleting_the_connection_cuts_off_the_tenant(xero: Xero) -> None:
    api_host = xero.server.urls()["api.xero.com"]
    auth = {"Authorization": f"Bearer {xero.tokens['access_token']}"}
    connection = httpx.get(f"{api_host}/connections", headers=auth).json()[0]
    assert (
        httpx.delete(f"{api_host}/connections/{connection['id']}", headers=auth).status_code == 204
    )
    assert httpx.get(f"{api_host}/connections", headers=auth).json() == []
    with xero.client() as api:
        assert api.get("/Invoices").status_code == 403
    assert (
        httpx.delete(f"{api_host}/connections/{connection['id']}", headers=auth).status_code == 404
    )


# -- OAuth ----------------------------------------------------------------------------------------
def test_consent_page_cancel_and_bad_redirect(server: SandboxServer) -> None:
    denied = xs.consent(server, action="cancel")
    assert denied == {"error": ["access_denied"], "state": ["st-1"]}
    page = httpx.get(xs.authorize_url(server, xs.SCOPES, redirect_uri="https://evil.example/cb"))
    assert page.status_code == 400 and "location" not in page.headers
    assert "redirect_uri" in page.text and "<html" in page.text
    discovery = httpx.get(
        f"{server.urls()['identity.xero.com']}/.well-known/openid-configuration"
    ).json()
    assert discovery["token_endpoint"] == f"{server.urls()['identity.xero.com']}/connect/token"
    unknown = httpx.get(xs.authorize_url(server, xs.SCOPES).replace(xs.CLIENT.client_id, "nope"))
    assert unknown.status_code == 400 and "location" not in unknown.headers


def test_pkce_and_no_refresh_token_without_offline_access(server: SandboxServer) -> None:
    verifier = "v" * 50
    import base64
    import hashlib

    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = xs.consent(
        server,
        ["accounting.transactions.read"],
        code_challenge=challenge.decode(),
        code_challenge_method="S256",
    )
    assert query["scope"] == ["accounting.transactions.read"]
    wrong = httpx.post(
        f"{server.urls()['identity.xero.com']}/connect/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "client_id": xs.CLIENT.client_id,
            "redirect_uri": xs.REDIRECT_URI,
            "code_verifier": "w" * 50,
        },
    )
    assert wrong.status_code == 400 and wrong.json() == {"error": "invalid_grant"}
    query = xs.consent(
        server,
        ["accounting.transactions.read"],
        code_challenge=challenge.decode(),
        code_challenge_method="S256",
    )
    right = httpx.post(
        f"{server.urls()['identity.xero.com']}/connect/token",
        data={
            "grant_type": "authorization_code",
            "code": query["code"][0],
            "client_id": xs.CLIENT.client_id,
            "redirect_uri": xs.REDIRECT_URI,
            "code_verifier": verifier,
        },
    )
    body = right.json()
    assert right.status_code == 200 and body["expires_in"] == 1800
    assert "refresh_token" not in body and "id_token" not in body


def test_refresh_rotates_with_grace_and_idle_expiry(xero: Xero) -> None:
    first = xero.tokens["refresh_token"]
    xero.sandbox.faults.add(
        kind=FaultKind.LOST_REPLY, platform="xero", endpoint="POST /connect/token"
    )
    with pytest.raises(httpx.TransportError):
        xs.refresh(xero.server, first)  # performed, but the reply never arrives
    retry = xs.refresh(xero.server, first)  # the client retries with the token it still has
    assert retry.status_code == 200
    second = retry.json()["refresh_token"]
    assert second != first, "the retry hands over the rotated token"
    third = xs.refresh(xero.server, second).json()["refresh_token"]
    assert third not in (first, second), "a new refresh token on every refresh"
    xero.sandbox.clock.advance(timedelta(minutes=31))
    late = xs.refresh(xero.server, first)
    assert late.status_code == 400 and late.json() == {"error": "invalid_grant"}
    fourth = xs.refresh(xero.server, third)
    assert fourth.status_code == 200
    xero.sandbox.clock.advance(timedelta(days=60))
    idle = xs.refresh(xero.server, fourth.json()["refresh_token"])
    assert idle.status_code == 400 and idle.json() == {"error": "invalid_grant"}
    assert xero.sandbox.ledger.count(kind="token_rejected") == 2
    assert xero.sandbox.ledger.count(kind="token_refreshed", tenant=xero.tenant) == 4


def test_revocation_and_client_authentication(xero: Xero) -> None:
    identity = xero.server.urls()["identity.xero.com"]
    wrong = httpx.post(
        f"{identity}/connect/token",
        data={"grant_type": "refresh_token", "refresh_token": xero.tokens["refresh_token"]},
        auth=(xs.CLIENT.client_id, "not-the-secret"),
    )
    assert wrong.status_code == 400 and wrong.json() == {"error": "invalid_client"}
    revoked = httpx.post(
        f"{identity}/connect/revocation",
        data={"token": xero.tokens["refresh_token"]},
        auth=(xs.CLIENT.client_id, xs.CLIENT.client_secret),
    )
    assert revoked.status_code == 200
    with xero.client() as api:
        assert api.get("/Invoices").status_code == 401
    gone = xs.refresh(xero.server, xero.tokens["refresh_token"])
    assert gone.status_code == 400 and gone.json() == {"error": "invalid_grant"}
    assert xero.sandbox.ledger.count(kind="token_revoked") == 1


def test_revoked_refresh_fault_kills_the_grant(xero: Xero) -> None:
    xero.sandbox.faults.add(kind=FaultKind.REVOKED_REFRESH, platform="xero")
    refused = xs.refresh(xero.server, xero.tokens["refresh_token"])
    assert refused.status_code == 400 and refused.json() == {"error": "invalid_grant"}
    with xero.client() as api:
        assert api.get("/Invoices").status_code == 401
    assert xero.sandbox.ledger.count(kind="token_revoked") == 1


# -- writing --------------------------------------------------------------------------------------
def test_idempotent_replay_within_the_window_only(xero: Xero) -> None:
    inv = open_invoice(xero)
    note = {"HistoryRecords": [{"Details": "Reminder 1 [arsync:x1]"}]}
    path = f"/Invoices/{inv.invoice_id}/History"
    with xero.client() as api:
        one = api.put(path, json=note, headers={"Idempotency-Key": "x1"})
        two = api.put(path, json=note, headers={"Idempotency-Key": "x1"})
        assert one.status_code == two.status_code == 200 and one.content == two.content
        other = api.put(
            path, json={"HistoryRecords": [{"Details": "else"}]}, headers={"Idempotency-Key": "x1"}
        )
        assert other.status_code == 400 and other.json()["Type"] == "ValidationException"
        assert api.put(path, json=note, headers={"Idempotency-Key": "k" * 129}).status_code == 400
        xero.sandbox.clock.advance(timedelta(minutes=7))
        three = api.put(path, json=note, headers={"Idempotency-Key": "x1"})
        assert three.status_code == 200 and three.content != one.content
    ledger = xero.sandbox.ledger
    assert ledger.count(kind="note_added", idempotency_key="x1") == 2
    assert ledger.count(kind="replayed", idempotency_key="x1") == 1


def test_history_details_limit(xero: Xero) -> None:
    inv = open_invoice(xero)
    with xero.client() as api:
        path = f"/Invoices/{inv.invoice_id}/History"
        ok = api.put(path, json={"HistoryRecords": [{"Details": "x" * 250}]})
        assert ok.status_code == 200
        too_long = api.put(path, json={"HistoryRecords": [{"Details": "x" * 251}]})
        assert too_long.status_code == 400
        body = too_long.json()
        assert body["ErrorNumber"] == 10 and body["Message"] == "A validation exception occurred"
        assert "250" in body["Elements"][0]["ValidationErrors"][0]["Message"]
        history = api.get(path).json()["HistoryRecords"]
        assert [h["Details"] for h in history].count("x" * 250) == 1


def test_unreadable_history_bodies_are_post_data_errors(xero: Xero) -> None:
    inv = open_invoice(xero)
    path = f"/Invoices/{inv.invoice_id}/History"
    with xero.client() as api:
        for body in (
            b"{not json",
            b"\xff\xfe",
            b"[" * 50_000 + b"]" * 50_000,
            b'[{"Details": "x"}]',
            b'{"HistoryRecords": "x"}',
            b'{"HistoryRecords": ["x"]}',
            b'{"HistoryRecords": [{"Details": {"text": "x"}}]}',
        ):
            refused = api.put(path, content=body, headers={"Content-Type": "application/json"})
            assert refused.status_code == 400, (body[:40], refused.text)
            assert refused.json()["ErrorNumber"] == 14
            assert refused.json()["Type"] == "PostDataInvalidException"
        empty = api.put(path, json={"HistoryRecords": []})
        assert empty.status_code == 400 and empty.json()["ErrorNumber"] == 10
        number = api.put(path, json={"HistoryRecords": [{"Details": 42}]})
        assert number.status_code == 200 and number.json()["HistoryRecords"][0]["Details"] == "42"
    assert xero.sandbox.ledger.count(kind="note_added") == 1


def test_email_preconditions_and_daily_cap() -> None:
    with running(xero=XeroLimits(emails_per_day=1)) as x, x.client() as api:

        def email(inv: Any) -> httpx.Response:
            return api.post(f"/Invoices/{inv.invoice_id}/Email", json={})

        def message(response: httpx.Response) -> str:
            assert response.status_code == 400
            return str(response.json()["Elements"][0]["ValidationErrors"][0]["Message"])

        assert "status" in message(email(x.invoice(status="DRAFT")))
        assert "type" in message(email(x.invoice(type="ACCPAY")))
        inv = open_invoice(x)
        x.sandbox.event(
            "xero",
            x.tenant,
            {"type": "email_change", "contact": inv.contact.contact_id, "email": None},
        )
        assert "email address" in message(email(inv))
        x.sandbox.event(
            "xero",
            x.tenant,
            {"type": "email_change", "contact": inv.contact.contact_id, "email": "ap@example.com"},
        )
        assert email(inv).status_code == 204
        assert "limit" in message(email(inv))
        history = api.get(f"/Invoices/{inv.invoice_id}/History").json()["HistoryRecords"]
        assert any("ap@example.com" in h["Details"] for h in history)
        assert x.sandbox.ledger.count(kind="email_sent") == 1
        x.sandbox.clock.advance(timedelta(days=1))
        fresh = xs.refresh(x.server, x.tokens["refresh_token"]).json()["access_token"]
        with xs.api(x.server, fresh, x.tenant) as tomorrow:
            resent = tomorrow.post(f"/Invoices/{inv.invoice_id}/Email", json={})
        assert resent.status_code == 204, "the cap is per day"


def test_email_goes_to_contact_persons_included_in_emails(xero: Xero) -> None:
    inv = open_invoice(xero)
    contact = inv.contact.contact_id

    def change(**event: Any) -> None:
        xero.sandbox.event(
            "xero", xero.tenant, {"type": "email_change", "contact": contact, **event}
        )

    left_out = {"first_name": "Pat", "email": "pat@example.com", "include_in_emails": False}
    change(email=None, persons=[left_out])
    with xero.client() as api:
        refused = api.post(f"/Invoices/{inv.invoice_id}/Email", json={})
        assert refused.status_code == 400
        assert "email address" in refused.json()["Elements"][0]["ValidationErrors"][0]["Message"]
        change(
            persons=[
                left_out,
                {"first_name": "Ann", "email": "ap@example.com", "include_in_emails": True},
            ]
        )
        shown = api.get(f"/Contacts/{contact}").json()["Contacts"][0]
        assert shown["EmailAddress"] == ""
        assert [(p["EmailAddress"], p["IncludeInEmails"]) for p in shown["ContactPersons"]] == [
            ("pat@example.com", False),
            ("ap@example.com", True),
        ]
        assert api.post(f"/Invoices/{inv.invoice_id}/Email", json={}).status_code == 204
    sent = xero.sandbox.ledger.entries(kind="email_sent")
    assert [e.detail["to"] for e in sent] == ["ap@example.com"]


def test_concurrent_writes_keep_the_books_consistent() -> None:
    limits = XeroLimits(concurrent=50, per_minute=500, emails_per_day=3)
    with running(xero=limits) as x:
        targets = [
            i
            for i in x.org.invoice_list
            if i.type == "ACCREC" and i.status == "AUTHORISED" and i.contact.email
        ][:8]
        note_target = targets[0]
        answers: list[int] = []
        barrier = threading.Barrier(16)

        def email(inv: Any) -> None:
            with x.client() as api:
                barrier.wait()
                answers.append(api.post(f"/Invoices/{inv.invoice_id}/Email", json={}).status_code)

        def note(n: int) -> None:
            body = {"HistoryRecords": [{"Details": f"note {n}"}]}
            with x.client() as api:
                barrier.wait()
                path = f"/Invoices/{note_target.invoice_id}/History"
                answers.append(api.put(path, json=body).status_code)

        threads = [threading.Thread(target=email, args=(inv,)) for inv in targets]
        threads += [threading.Thread(target=note, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(answers) == [200] * 8 + [204] * 3 + [400] * 5, "the daily cap holds exactly"
        assert x.sandbox.ledger.count(kind="email_sent") == 3
        with x.client() as api:
            history = api.get(f"/Invoices/{note_target.invoice_id}/History").json()
        notes = [h["Details"] for h in history["HistoryRecords"] if h["Details"].startswith("note")]
        assert sorted(notes) == sorted(f"note {n}" for n in range(8))


# -- transport faults -----------------------------------------------------------------------------
def test_drop_performs_nothing(xero: Xero) -> None:
    inv = open_invoice(xero)
    xero.sandbox.faults.add(kind=FaultKind.DROP, platform="xero", endpoint="POST */Email")
    with xero.client() as api:
        with pytest.raises(httpx.TransportError):
            api.post(f"/Invoices/{inv.invoice_id}/Email", json={})
        assert xero.sandbox.ledger.count(kind="email_sent") == 0
        assert api.post(f"/Invoices/{inv.invoice_id}/Email", json={}).status_code == 204
    assert xero.sandbox.ledger.count(kind="email_sent") == 1


def test_lost_reply_performs_once_and_the_retry_replays(xero: Xero) -> None:
    inv = open_invoice(xero)
    xero.sandbox.faults.add(kind=FaultKind.LOST_REPLY, platform="xero", endpoint="POST */Email")
    with xero.client() as api:
        with pytest.raises(httpx.TransportError):
            api.post(
                f"/Invoices/{inv.invoice_id}/Email", json={}, headers={"Idempotency-Key": "mail-1"}
            )
        assert xero.sandbox.ledger.count(kind="email_sent") == 1
        retry = api.post(
            f"/Invoices/{inv.invoice_id}/Email", json={}, headers={"Idempotency-Key": "mail-1"}
        )
        assert retry.status_code == 204
    assert xero.sandbox.ledger.count(kind="email_sent") == 1
    assert xero.sandbox.ledger.count(kind="replayed", idempotency_key="mail-1") == 1


def test_slow_answer_outlasts_a_client_timeout(xero: Xero) -> None:
    xero.sandbox.faults.add(
        kind=FaultKind.SLOW, platform="xero", endpoint="GET */Contacts", params={"delay": 1.5}
    )
    with xero.client(timeout=0.3) as api, pytest.raises(httpx.ReadTimeout):
        api.get("/Contacts")
    with xero.client() as api:
        assert api.get("/Contacts").status_code == 200


def test_server_error_and_expired_token_faults(xero: Xero) -> None:
    xero.sandbox.faults.add(
        kind=FaultKind.SERVER_ERROR,
        platform="xero",
        endpoint="GET */Invoices",
        params={"status": 503},
    )
    xero.sandbox.faults.add(
        kind=FaultKind.EXPIRED_TOKEN, platform="xero", endpoint="GET */Payments"
    )
    with xero.client() as api:
        failed = api.get("/Invoices")
        assert failed.status_code == 503 and failed.json()["Title"] == "Service Unavailable"
        expired = api.get("/Payments")
        assert expired.status_code == 401 and "invalid_token" in expired.headers["WWW-Authenticate"]
        assert api.get("/Invoices").status_code == 200, "each rule fires once by default"
        assert api.get("/Payments").status_code == 200
    assert xero.sandbox.ledger.count(kind="fault_injected") == 2


def test_rate_limit_faults_carry_xero_headers(xero: Xero) -> None:
    xero.sandbox.faults.add(kind=FaultKind.RATE_LIMIT, platform="xero", endpoint="GET *")
    xero.sandbox.faults.add(kind=FaultKind.DAY_LIMIT, platform="xero", endpoint="GET *")
    with xero.client() as api:
        minute, day = api.get("/Contacts"), api.get("/Contacts")
    assert (minute.status_code, minute.headers["X-Rate-Limit-Problem"]) == (429, "minute")
    assert minute.headers["X-MinLimit-Remaining"] == "0"
    assert (day.status_code, day.headers["X-Rate-Limit-Problem"]) == (429, "day")
    assert int(day.headers["Retry-After"]) == 40_000
    assert "X-AppMinLimit-Remaining" in day.headers


# -- business events ------------------------------------------------------------------------------
def test_business_events_show_through_if_modified_since(xero: Xero) -> None:
    sandbox, tenant = xero.sandbox, xero.tenant
    start = sandbox.clock.now()
    sandbox.clock.advance(timedelta(minutes=10))
    stamp = {"If-Modified-Since": (start + timedelta(minutes=5)).isoformat()}
    paid = open_invoice(xero, amount_paid=xs_zero())
    credited = next(
        i
        for i in xero.org.invoice_list
        if i.type == "ACCREC"
        and i.status == "AUTHORISED"
        and i.invoice_id != paid.invoice_id
        and not i.payments
    )
    voided = next(
        i
        for i in xero.org.invoice_list
        if i.type == "ACCREC"
        and i.status == "AUTHORISED"
        and not i.payments
        and not i.allocations
        and i.invoice_id not in (paid.invoice_id, credited.invoice_id)
    )
    sandbox.event("xero", tenant, {"type": "payment", "invoice": paid.invoice_id})
    sandbox.event(
        "xero", tenant, {"type": "credit", "invoice": credited.invoice_id, "amount": "10.00"}
    )
    sandbox.event("xero", tenant, {"type": "void", "invoice": voided.invoice_id})
    made = sandbox.event(
        "xero",
        tenant,
        {
            "type": "create_invoice",
            "contact": paid.contact.contact_id,
            "amount": "99.95",
            "terms_days": 14,
        },
    )
    with xero.client() as api:
        rows = {r["InvoiceID"]: r for r in api.get("/Invoices", headers=stamp).json()["Invoices"]}
        assert set(rows) == {
            paid.invoice_id,
            credited.invoice_id,
            voided.invoice_id,
            made["InvoiceID"],
        }
        assert rows[paid.invoice_id]["Status"] == "PAID"
        assert rows[paid.invoice_id]["AmountDue"] == 0
        assert "FullyPaidOnDate" in rows[paid.invoice_id]
        assert rows[credited.invoice_id]["AmountCredited"] == 10.0
        assert rows[voided.invoice_id]["Status"] == "VOIDED"
        assert rows[made["InvoiceID"]]["Total"] == 99.95
        credits = api.get("/CreditNotes", headers=stamp).json()["CreditNotes"]
        assert [c["Allocations"][0]["Invoice"]["InvoiceID"] for c in credits] == [
            credited.invoice_id
        ]
        assert len(api.get("/Payments", headers=stamp).json()["Payments"]) == 1


def test_due_date_edit_on_a_partly_paid_invoice_does_not_move_updated(xero: Xero) -> None:
    partly = next(
        i
        for i in xero.org.invoice_list
        if i.status == "AUTHORISED" and i.payments and i.amount_due > 0
    )
    fresh = open_invoice(xero, amount_paid=xs_zero())
    before = xero.sandbox.clock.now()
    xero.sandbox.clock.advance(timedelta(minutes=10))
    for inv in (partly, fresh):
        xero.sandbox.event(
            "xero",
            xero.tenant,
            {"type": "edit", "invoice": inv.invoice_id, "due_date": "2027-01-31"},
        )
    stamp = {"If-Modified-Since": (before + timedelta(minutes=5)).isoformat()}
    with xero.client() as api:
        changed = [r["InvoiceID"] for r in api.get("/Invoices", headers=stamp).json()["Invoices"]]
        assert changed == [fresh.invoice_id], "Xero's caveat: the partly paid one is missed"
        reread = api.get(f"/Invoices/{partly.invoice_id}").json()["Invoices"][0]
        assert reread["DueDateString"] == "2027-01-31T00:00:00", "a sweep still sees it"


def test_bad_events_are_refused_with_a_reason(xero: Xero) -> None:
    paid = xero.invoice(status="PAID")
    for event, reason in (
        ({"type": "refund"}, "unknown xero event type"),
        ({"type": "payment"}, "needs 'invoice'"),
        ({"type": "payment", "invoice": "nope"}, "no invoice"),
        ({"type": "payment", "invoice": paid.invoice_id}, "AUTHORISED invoices only"),
        ({"type": "void", "invoice": paid.invoice_id}, "PAID"),
        ({"type": "edit", "invoice": open_invoice(xero).invoice_id, "amount": "-1"}, "positive"),
        ({"type": "create_invoice", "contact": "x", "amount": "1"}, "ContactID"),
        ({"type": "payment", "invoice": paid.invoice_id, "colour": 1}, "unknown keys"),
    ):
        with pytest.raises(ValueError, match=reason):
            xero.sandbox.event("xero", xero.tenant, event)


def xs_zero() -> Any:
    from decimal import Decimal

    return Decimal("0.00")
