"""Token-endpoint answers mapped to arsync's errors over respx, never quoting what came back."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import respx

from arsync.clock import SystemClock
from arsync.connect import connect
from arsync.connectors.base import Endpoints
from arsync.connectors.oauth import GrantRefused, OAuthApp
from arsync.errors import AuthError, RateLimited, TransientError

ENDPOINTS = Endpoints.production("xero")
ECHO = "RT-echoed-secret"


@pytest.fixture
def app() -> Iterator[OAuthApp]:
    with OAuthApp("xero", "client-1", "client-secret-1", ENDPOINTS, clock=SystemClock()) as made:
        yield made


def refused_with(status: int, body: object, headers: dict[str, str] | None = None) -> None:
    respx.post(ENDPOINTS.token_url).mock(
        return_value=httpx.Response(status, json=body, headers=headers)
    )


@respx.mock
def test_invalid_grant_is_a_refused_grant(app: OAuthApp) -> None:
    refused_with(400, {"error": "invalid_grant", "error_description": f"token {ECHO} is dead"})
    with pytest.raises(GrantRefused) as caught:
        app.refresh(ECHO)
    assert caught.value.error == "invalid_grant"
    assert ECHO not in str(caught.value)


@respx.mock
def test_bad_client_credentials_are_not_mistaken_for_a_dead_grant(app: OAuthApp) -> None:
    refused_with(400, {"error": "invalid_client"})
    with pytest.raises(AuthError, match="client_id and client_secret") as caught:
        app.refresh(ECHO)
    assert not isinstance(caught.value, GrantRefused)


@respx.mock
def test_server_errors_and_throttling_are_transient(app: OAuthApp) -> None:
    refused_with(503, {"detail": ECHO})
    with pytest.raises(TransientError, match="HTTP 503") as failed:
        app.refresh(ECHO)
    assert ECHO not in str(failed.value)
    refused_with(429, {}, headers={"Retry-After": "7"})
    with pytest.raises(RateLimited) as limited:
        app.refresh(ECHO)
    assert limited.value.retry_after == 7.0


@respx.mock
def test_a_dropped_connection_is_transient_and_sends_basic_auth(app: OAuthApp) -> None:
    route = respx.post(ENDPOINTS.token_url).mock(side_effect=httpx.RemoteProtocolError("gone"))
    with pytest.raises(TransientError, match="connection failed"):
        app.refresh(ECHO)
    sent = route.calls.last.request
    assert sent.headers["Authorization"].startswith("Basic ")
    assert b"client-secret-1" not in sent.content  # the secret travels in the header only


@respx.mock
def test_a_consent_that_covers_no_organisation_is_a_clear_error(app: OAuthApp) -> None:
    respx.post(ENDPOINTS.token_url).mock(
        return_value=httpx.Response(
            200, json={"access_token": "AT", "refresh_token": "RT", "expires_in": 1800}
        )
    )
    assert ENDPOINTS.connections_url is not None
    respx.get(ENDPOINTS.connections_url).mock(return_value=httpx.Response(200, json=[]))
    printed: list[str] = []

    def paste(prompt: str) -> str:
        url = next(line for line in printed if line.startswith("https://"))
        state = httpx.URL(url).params["state"]
        return f"http://127.0.0.1/callback?code=c1&state={state}"

    with pytest.raises(AuthError, match="covered no Xero organisation"):
        connect(
            app,
            open_browser=False,
            headless=True,
            choose_tenant=lambda options: options[0],
            echo=printed.append,
            read_line=paste,
        )
