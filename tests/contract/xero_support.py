"""Helpers for the Xero contract tests: the consent flow in code, tokens and API clients."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import DEMO_CLIENTS
from tests import support
from tests.support import make_sandbox

__all__ = ["make_sandbox"]

CLIENT = DEMO_CLIENTS["xero"]
REDIRECT_URI = "http://localhost:53682/callback"
SCOPES = [
    "openid",
    "profile",
    "email",
    "offline_access",
    "accounting.transactions",
    "accounting.contacts",
]


def form_fields(page: str) -> tuple[dict[str, str], list[str]]:
    """(hidden fields, tenant checkbox values) of the consent form."""
    return support.form_fields(page, "tenant")


def tenant_of(sandbox: Sandbox) -> str:
    return sandbox.xero.tenants()[0].tenant_id


def authorize_url(
    server: SandboxServer,
    scopes: list[str],
    state: str = "st-1",
    redirect_uri: str = REDIRECT_URI,
    **extra: str,
) -> str:
    params = httpx.QueryParams(
        {
            "response_type": "code",
            "client_id": CLIENT.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(scopes),
            "state": state,
            **extra,
        }
    )
    return f"{server.urls()['login.xero.com']}/identity/connect/authorize?{params}"


def consent(
    server: SandboxServer,
    scopes: list[str] | None = None,
    *,
    action: str = "allow",
    tenants: list[str] | None = None,
    **extra: str,
) -> dict[str, list[str]]:
    """Open the consent page, tick organisations, press a button; the redirect's query."""
    url = authorize_url(server, scopes or SCOPES, **extra)
    with httpx.Client(follow_redirects=False) as client:
        page = client.get(url)
        assert page.status_code == 200, page.text
        hidden, offered = form_fields(page.text)
        data: dict[str, str | list[str]] = dict(hidden)
        data["tenant"] = offered if tenants is None else tenants
        data["action"] = action
        answer = client.post(url.split("?")[0], data=data)
    assert answer.status_code == 302, answer.text
    location = answer.headers["location"]
    assert location.startswith(REDIRECT_URI.split("?")[0])
    return parse_qs(urlsplit(location).query)


def exchange(server: SandboxServer, code: str, **extra: str) -> httpx.Response:
    return httpx.post(
        f"{server.urls()['identity.xero.com']}/connect/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            **extra,
        },
        auth=(CLIENT.client_id, CLIENT.client_secret),
    )


def connect(server: SandboxServer, scopes: list[str] | None = None) -> dict[str, Any]:
    """Tokens through the real authorization-code flow."""
    query = consent(server, scopes)
    response = exchange(server, query["code"][0])
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def refresh(server: SandboxServer, refresh_token: str) -> httpx.Response:
    return httpx.post(
        f"{server.urls()['identity.xero.com']}/connect/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": CLIENT.client_id,
            "client_secret": CLIENT.client_secret,
        },
    )


@contextmanager
def api(
    server: SandboxServer, access_token: str, tenant: str, timeout: float = 10.0
) -> Iterator[httpx.Client]:
    """An httpx client on the Accounting API as a Xero app would call it."""
    with httpx.Client(
        base_url=f"{server.urls()['api.xero.com']}/api.xro/2.0",
        headers={
            "Authorization": f"Bearer {access_token}",
            "xero-tenant-id": tenant,
            "Accept": "application/json",
        },
        timeout=timeout,
    ) as client:
        yield client
