"""Token rules of both platforms, on the sandbox clock (pure)."""

from datetime import UTC, datetime, timedelta

import pytest

from arsync.sandbox.clock import SandboxClock
from arsync.sandbox.oauth import (
    QBO_RULES,
    XERO_RULES,
    Authority,
    Client,
    OAuthError,
    redirect_uri_allowed,
)

START = datetime(2026, 2, 1, tzinfo=UTC)
CLIENT = Client("cid", "secret", "test app", ["http://localhost/callback"])


def authority(rules: object, name: str) -> tuple[Authority, SandboxClock]:
    clock = SandboxClock(START, frozen=True)
    auth = Authority(name, rules, clock)  # type: ignore[arg-type]
    auth.register_client(CLIENT)
    return auth, clock


def test_code_is_single_use_and_bound_to_its_redirect() -> None:
    auth, _ = authority(XERO_RULES, "xero")
    code = auth.issue_code("cid", "http://localhost:5000/callback", ["t"], ["offline_access"])
    with pytest.raises(OAuthError, match="redirect_uri"):
        auth.exchange_code(CLIENT, code, "http://localhost:5001/callback")
    with pytest.raises(OAuthError, match="invalid or expired"):
        auth.exchange_code(CLIENT, code, "http://localhost:5000/callback")


def test_code_expires() -> None:
    auth, clock = authority(QBO_RULES, "qbo")
    code = auth.issue_code("cid", "http://localhost/callback", ["r"], [])
    clock.advance(timedelta(minutes=6))
    with pytest.raises(OAuthError) as err:
        auth.exchange_code(CLIENT, code, "http://localhost/callback")
    assert err.value.error == "invalid_grant"


def test_xero_rotates_on_every_refresh_with_a_thirty_minute_grace() -> None:
    auth, clock = authority(XERO_RULES, "xero")
    first = auth.issue_grant("cid", ["t"], ["offline_access"])
    second = auth.refresh(CLIENT, first.refresh_token)
    assert second.rotated and second.refresh_token != first.refresh_token
    assert second.expires_in == 1800
    # the reply was "lost": the old token still answers, with the same successor
    clock.advance(timedelta(minutes=29))
    replay = auth.refresh(CLIENT, first.refresh_token)
    assert replay.refresh_token == second.refresh_token
    clock.advance(timedelta(minutes=2))
    with pytest.raises(OAuthError, match="superseded"):
        auth.refresh(CLIENT, first.refresh_token)
    assert auth.refresh(CLIENT, second.refresh_token).refresh_token != second.refresh_token


def test_xero_racing_refresh_with_an_outdated_token_fails() -> None:
    auth, _ = authority(XERO_RULES, "xero")
    first = auth.issue_grant("cid", ["t"], ["offline_access"])
    second = auth.refresh(CLIENT, first.refresh_token)
    auth.refresh(CLIENT, second.refresh_token)
    with pytest.raises(OAuthError, match="superseded"):
        auth.refresh(CLIENT, first.refresh_token)


def test_xero_refresh_token_dies_after_sixty_days_unused() -> None:
    auth, clock = authority(XERO_RULES, "xero")
    tokens = auth.issue_grant("cid", ["t"], ["offline_access"])
    clock.advance(timedelta(days=59))
    tokens = auth.refresh(CLIENT, tokens.refresh_token)  # use keeps it alive
    clock.advance(timedelta(days=60))
    with pytest.raises(OAuthError, match="expired"):
        auth.refresh(CLIENT, tokens.refresh_token)


def test_qbo_keeps_the_refresh_token_for_a_day_then_rotates() -> None:
    auth, clock = authority(QBO_RULES, "qbo")
    first = auth.issue_grant("cid", ["r"], [])
    again = auth.refresh(CLIENT, first.refresh_token)
    assert again.refresh_token == first.refresh_token and not again.rotated
    assert again.expires_in == 3600
    clock.advance(timedelta(hours=25))
    rotated = auth.refresh(CLIENT, first.refresh_token)
    assert rotated.rotated and rotated.refresh_token != first.refresh_token
    # the superseded token works for 24 hours, answering with the latest…
    clock.advance(timedelta(hours=23))
    assert auth.refresh(CLIENT, first.refresh_token).refresh_token == rotated.refresh_token
    # …then dies
    clock.advance(timedelta(hours=2))
    with pytest.raises(OAuthError, match="superseded"):
        auth.refresh(CLIENT, first.refresh_token)


def test_qbo_hard_cap_of_five_years() -> None:
    auth, clock = authority(QBO_RULES, "qbo")
    tokens = auth.issue_grant("cid", ["r"], [])
    for _ in range(18):  # keep it in use every 99 days (1782 days in all)
        clock.advance(timedelta(days=99))
        tokens = auth.refresh(CLIENT, tokens.refresh_token)
    assert tokens.refresh_expires_in < 100 * 86400
    clock.advance(timedelta(days=99))
    with pytest.raises(OAuthError, match="maximum age"):
        auth.refresh(CLIENT, tokens.refresh_token)


def test_access_tokens_expire_and_revocation_kills_the_grant() -> None:
    auth, clock = authority(XERO_RULES, "xero")
    tokens = auth.issue_grant("cid", ["t"], ["offline_access"])
    assert auth.check_access(tokens.access_token) is not None
    clock.advance(1800)
    assert auth.check_access(tokens.access_token) is None
    fresh = auth.refresh(CLIENT, tokens.refresh_token)
    assert auth.revoke(fresh.refresh_token)
    assert auth.check_access(fresh.access_token) is None
    with pytest.raises(OAuthError):
        auth.refresh(CLIENT, fresh.refresh_token)


def test_client_authentication() -> None:
    auth, _ = authority(XERO_RULES, "xero")
    assert auth.authenticate_client("cid", "secret") is CLIENT
    with pytest.raises(OAuthError) as err:
        auth.authenticate_client("cid", "wrong")
    assert err.value.error == "invalid_client" and err.value.status == 401


def test_loopback_redirects_may_use_any_port() -> None:
    registered = ["http://localhost/callback", "https://app.example/cb"]
    assert redirect_uri_allowed(registered, "http://localhost:53117/callback")
    assert redirect_uri_allowed(registered, "https://app.example/cb")
    assert not redirect_uri_allowed(registered, "http://localhost:53117/other")
    assert not redirect_uri_allowed(registered, "http://evil.example/callback")
