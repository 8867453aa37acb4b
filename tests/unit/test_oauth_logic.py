"""Pure OAuth logic: token replies, consent addresses, redirect checks, hidden reprs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import parse_qs, urlsplit

import pytest

from arsync.clock import SystemClock
from arsync.connect import Connection, check_redirect, parse_redirect
from arsync.connectors.base import Endpoints
from arsync.connectors.oauth import (
    OAuthApp,
    TokenRecord,
    pkce_challenge,
    safe_error_code,
    token_record_from_reply,
)
from arsync.domain import CompanyInfo
from arsync.errors import AuthError, DataError

NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def test_qbo_reply_takes_both_lifetimes_from_the_reply() -> None:
    body = {
        "access_token": "AT-1",
        "refresh_token": "RT-1",
        "expires_in": 3600,
        "x_refresh_token_expires_in": 8_640_000,
        "token_type": "bearer",
    }
    record = token_record_from_reply("qbo", body, NOW, scopes=["com.intuit.quickbooks.accounting"])
    assert record.access_expires_at == NOW + timedelta(hours=1)
    assert record.refresh_expires_at == NOW + timedelta(days=100)
    assert record.refreshed_at == record.connected_at == NOW
    assert record.scope == "com.intuit.quickbooks.accounting"


def test_xero_refresh_keeps_connection_time_and_counts_60_idle_days() -> None:
    earlier = TokenRecord(
        access_token="AT-0",
        refresh_token="RT-0",
        access_expires_at=NOW - timedelta(minutes=1),
        refresh_expires_at=None,
        refreshed_at=NOW - timedelta(days=3),
        connected_at=NOW - timedelta(days=30),
        scope="offline_access accounting.transactions",
        generation=4,
    )
    body = {"access_token": "AT-1", "refresh_token": "RT-1", "expires_in": 1800}
    record = token_record_from_reply("xero", body, NOW, previous=earlier)
    assert record.access_expires_at == NOW + timedelta(minutes=30)
    assert record.refresh_expires_at == NOW + timedelta(days=60)
    assert record.connected_at == earlier.connected_at
    assert record.scope == earlier.scope
    assert record.generation == 4


def test_a_refresh_reply_without_refresh_token_keeps_the_old_one_but_a_code_needs_one() -> None:
    earlier = token_record_from_reply(
        "qbo", {"access_token": "a", "refresh_token": "r", "expires_in": 60}, NOW
    )
    again = token_record_from_reply("qbo", {"access_token": "b"}, NOW, previous=earlier)
    assert again.refresh_token == "r"
    assert again.access_expires_at == NOW + timedelta(hours=1)  # QBO's documented default
    with pytest.raises(DataError, match="offline_access"):
        token_record_from_reply("xero", {"access_token": "b"}, NOW)
    with pytest.raises(DataError):
        token_record_from_reply("xero", {"error": "x"}, NOW)


def test_token_record_repr_and_str_hide_the_tokens() -> None:
    record = token_record_from_reply(
        "xero", {"access_token": "AT-secret", "refresh_token": "RT-secret"}, NOW
    )
    connection = Connection("xero", "t1", CompanyInfo("Acme"), record, "http://127.0.0.1/callback")
    for text in (repr(record), str(record), repr(connection)):
        assert "AT-secret" not in text
        assert "RT-secret" not in text
        assert "<hidden>" in text


def test_xero_consent_address_carries_state_and_an_s256_challenge() -> None:
    app = OAuthApp("xero", "client-1", "shh", Endpoints.production("xero"), clock=SystemClock())
    try:
        first = app.authorization_request("http://127.0.0.1:5000/callback")
        second = app.authorization_request("http://127.0.0.1:5000/callback")
    finally:
        app.close()
    query = {k: v[0] for k, v in parse_qs(urlsplit(first.url).query).items()}
    assert first.url.startswith("https://login.xero.com/identity/connect/authorize?")
    assert query["state"] == first.state
    assert first.state != second.state and len(first.state) >= 32
    assert first.code_verifier is not None
    assert query["code_challenge"] == pkce_challenge(first.code_verifier)
    assert query["code_challenge_method"] == "S256"
    assert query["scope"].split() == [
        "offline_access",
        "accounting.transactions",
        "accounting.contacts",
        "accounting.settings.read",
    ]
    assert query["redirect_uri"] == "http://127.0.0.1:5000/callback"
    assert "shh" not in first.url and first.code_verifier not in repr(first)
    assert "shh" not in repr(app)


def test_qbo_consent_address_is_a_confidential_client_without_pkce() -> None:
    with OAuthApp("qbo", "client-1", "shh", clock=SystemClock()) as app:
        request = app.authorization_request("http://127.0.0.1/callback")
    query = parse_qs(urlsplit(request.url).query)
    assert request.url.startswith("https://appcenter.intuit.com/connect/oauth2?")
    assert "code_challenge" not in query and request.code_verifier is None
    assert query["scope"] == ["com.intuit.quickbooks.accounting"]


def test_pkce_challenge_matches_rfc_7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_challenge(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_pasted_redirects_are_read_whole_or_as_a_query() -> None:
    full = "http://127.0.0.1/callback?code=abc&state=s1&realmId=9130"
    assert parse_redirect(f"  {full}\n") == {"code": "abc", "state": "s1", "realmId": "9130"}
    assert parse_redirect("?code=abc&state=s1") == {"code": "abc", "state": "s1"}
    with pytest.raises(AuthError, match="whole address"):
        parse_redirect("http://127.0.0.1/callback")


def test_check_redirect_wants_the_state_first_then_no_error_then_a_code() -> None:
    with OAuthApp("qbo", "c", "s", clock=SystemClock()) as app:
        request = app.authorization_request("http://127.0.0.1/callback")
    good = {"code": "abc", "state": request.state}
    assert check_redirect(good, request, "QuickBooks Online") == "abc"
    with pytest.raises(AuthError, match="does not belong"):
        check_redirect({**good, "state": "forged"}, request, "QBO")
    with pytest.raises(AuthError, match="does not belong"):
        check_redirect({"error": "access_denied"}, request, "QBO")
    with pytest.raises(AuthError, match="access was denied"):
        check_redirect({"error": "access_denied", "state": request.state}, request, "QBO")
    with pytest.raises(AuthError, match=r"refused the authorization \(invalid_scope\)"):
        check_redirect({"error": "invalid_scope", "state": request.state}, request, "QBO")
    with pytest.raises(AuthError, match="no authorization code"):
        check_redirect({"state": request.state}, request, "QBO")


def test_error_codes_from_the_wire_are_reduced_to_a_bare_word() -> None:
    assert safe_error_code("invalid_grant") == "invalid_grant"
    assert safe_error_code("<script>alert(1)</script>") == "unrecognised error"
    assert safe_error_code(None) == "unrecognised error"
    assert safe_error_code("x" * 200) == "unrecognised error"
