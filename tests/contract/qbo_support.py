"""Helpers for the QBO contract tests: the consent flow in code, tokens and raw API calls."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import DEMO_CLIENTS
from tests import support

CLIENT = DEMO_CLIENTS["qbo"]
REDIRECT_URI = "http://localhost:8765/callback"
ACCOUNTING = "com.intuit.quickbooks.accounting"


def form_fields(page: str) -> tuple[dict[str, str], list[str]]:
    """(hidden fields, company radio values) of the consent form."""
    return support.form_fields(page, "realm")


def realm_of(sandbox: Sandbox) -> str:
    return sandbox.qbo.tenants()[0].tenant_id


def api_base(server: SandboxServer) -> str:
    return server.urls()["quickbooks.api.intuit.com"]


def discovery_url(server: SandboxServer) -> str:
    return server.urls()["developer.intuit.com"] + "/.well-known/openid_configuration/"


def consent(authorize_url: str, *, action: str = "connect", realm: str | None = None) -> str:
    """Fetch the consent page like a browser, submit it, return the redirect's Location."""
    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        hidden, realms = form_fields(page.text)
        form = {**hidden, "realm": realm or realms[0], "action": action}
        posted = browser.post(authorize_url.split("?")[0], data=form)
        assert posted.status_code == 302, posted.text
        return str(posted.headers["location"])


def redirect_params(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


class Api:
    """Raw calls to one realm with one bearer token, over real HTTP."""

    def __init__(self, server: SandboxServer, realm: str, access_token: str) -> None:
        self.base = f"{api_base(server)}/v3/company/{realm}"
        self.client = httpx.Client(
            headers={"Authorization": f"Bearer {access_token}", "Accept": "application/json"},
            timeout=30.0,
        )

    def close(self) -> None:
        self.client.close()

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(f"{self.base}/{path}", params={"minorversion": 75, **params})

    def post(self, path: str, body: Any = None, **params: Any) -> httpx.Response:
        return self.client.post(
            f"{self.base}/{path}", json=body, params={"minorversion": 75, **params}
        )

    def query(self, text: str) -> httpx.Response:
        return self.client.post(
            f"{self.base}/query",
            content=text.encode(),
            headers={"Content-Type": "application/text"},
            params={"minorversion": 75},
        )

    def send(self, invoice_id: str, **params: Any) -> httpx.Response:
        return self.client.post(
            f"{self.base}/invoice/{invoice_id}/send",
            content=b"",
            headers={"Content-Type": "application/octet-stream"},
            params={"minorversion": 75, **params},
        )


def connect_api(server: SandboxServer, realm: str | None = None) -> Api:
    """An API client with a control-plane token (the consent flow is tested elsewhere)."""
    sandbox = server.sandbox
    realm = realm or realm_of(sandbox)
    tokens = sandbox.connect("qbo", realm)
    return Api(server, realm, tokens.access_token)


def token_request(server: SandboxServer, **form: str) -> httpx.Response:
    url = server.urls()["oauth.platform.intuit.com"] + "/oauth2/v1/tokens/bearer"
    return httpx.post(
        url,
        data=form,
        auth=(CLIENT.client_id, CLIENT.client_secret),
        headers={"Accept": "application/json"},
    )


def fault_codes(body: dict[str, Any]) -> list[str]:
    return [str(e["code"]) for e in body["Fault"]["Error"]]
