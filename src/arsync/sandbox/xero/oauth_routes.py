"""Xero's identity endpoints: the consent page, the token and revocation endpoints, discovery."""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from arsync.sandbox.faults import FaultKind
from arsync.sandbox.oauth import (
    Client,
    OAuthError,
    TokenSet,
    client_credentials,
    redirect_uri_allowed,
)

if TYPE_CHECKING:
    from arsync.sandbox.xero.sim import XeroSim

#: Scopes the simulated identity service grants: OpenID, offline access, the classic accounting
#: scopes, and the granular ones apps created from March 2026 receive.
KNOWN_SCOPES = frozenset(
    {
        "openid",
        "profile",
        "email",
        "offline_access",
        "accounting.transactions",
        "accounting.transactions.read",
        "accounting.contacts",
        "accounting.contacts.read",
        "accounting.settings",
        "accounting.settings.read",
        "accounting.reports.read",
        "accounting.journals.read",
        "accounting.attachments",
        "accounting.attachments.read",
        "accounting.budgets.read",
        "accounting.invoices",
        "accounting.invoices.read",
        "accounting.payments",
        "accounting.payments.read",
        "accounting.banktransactions",
        "accounting.banktransactions.read",
        "accounting.manualjournals",
        "accounting.manualjournals.read",
    }
)
_SCOPE_WORDS = {
    "offline_access": "Keep access while you are away (refresh tokens)",
    "openid": "Know who you are",
    "profile": "See your name",
    "email": "See your email address",
}
ISSUER = "https://identity.xero.com"
SANDBOX_USER = {
    "xero_userid": "6f8c1d5e-2b0a-4d8e-9a43-5e1f0c7b9a21",
    "given_name": "Sam",
    "family_name": "Sandbox",
    "email": "sam.sandbox@example.com",
}


def _scope_label(scope: str) -> str:
    if scope in _SCOPE_WORDS:
        return _SCOPE_WORDS[scope]
    area, _, rest = scope.removeprefix("accounting.").partition(".")
    verb = "View" if rest == "read" else "View and manage"
    return f"{verb} your {area.replace('banktransactions', 'bank transactions')}"


_STYLE = """
*{box-sizing:border-box}
body{margin:0;font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;background:#eef2f6;
color:#1e2a36}
.bar{background:#13b5ea;color:#fff;padding:14px 28px;font-weight:700;letter-spacing:.02em}
.card{max-width:520px;margin:40px auto;background:#fff;border-radius:10px;
box-shadow:0 2px 12px rgba(20,40,60,.12);padding:28px 32px}
h1{font-size:21px;margin:0 0 6px}
.muted{color:#5b6b7a;font-size:13px}
ul.scopes{padding-left:18px;margin:8px 0 18px}
fieldset{border:1px solid #d5dde5;border-radius:8px;padding:10px 14px;margin:0 0 20px}
legend{font-weight:600;padding:0 6px}
label.org{display:flex;gap:10px;align-items:center;padding:6px 2px}
.actions{display:flex;gap:12px;justify-content:flex-end}
button{font:inherit;border-radius:6px;padding:9px 20px;cursor:pointer;border:1px solid #b8c4cf;
background:#fff}
button.allow{background:#0b7a3e;border-color:#0b7a3e;color:#fff;font-weight:600}
.error{background:#fdecea;border:1px solid #f5b5ae;color:#8a1c11;border-radius:6px;
padding:10px 12px;margin:0 0 16px}
code{background:#f2f4f7;padding:1px 5px;border-radius:4px}
"""


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    doc = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>"
        f'<body><div class=bar>xero <span style="font-weight:400">sandbox</span></div>'
        f"<main class=card>{body}</main></body></html>"
    )
    return HTMLResponse(doc, status_code=status)


def error_page(message: str, status: int = 400) -> HTMLResponse:
    return _page(
        "Sorry, something went wrong",
        "<h1>Sorry, something went wrong</h1>"
        f"<div class=error>{html.escape(message)}</div>"
        "<p class=muted>The app that sent you here is not set up correctly. "
        "You can close this window.</p>",
        status,
    )


async def form_pairs(request: Request) -> list[tuple[str, str]]:
    """An urlencoded form body; parsed here because Starlette's parser needs python-multipart."""
    raw = await request.body()
    return parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)


def _redirect(uri: str, params: dict[str, str]) -> RedirectResponse:
    sep = "&" if "?" in uri else "?"
    return RedirectResponse(uri + sep + urlencode(params), status_code=302)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def id_token(client: Client, now: float, scopes: list[str], session: str) -> str:
    """An OpenID id_token, HS256-signed with the client secret (as OIDC allows for confidential
    clients), so a test can verify it without a key set."""
    claims: dict[str, Any] = {
        "nbf": int(now),
        "exp": int(now) + 300,
        "iss": ISSUER,
        "aud": client.client_id,
        "iat": int(now),
        "at_hash": _b64(hashlib.sha256(session.encode()).digest()[:16]),
        "sid": session,
        "sub": SANDBOX_USER["xero_userid"].replace("-", ""),
        "auth_time": int(now),
        "xero_userid": SANDBOX_USER["xero_userid"],
        "global_session_id": session,
        "preferred_username": SANDBOX_USER["email"],
    }
    if "email" in scopes:
        claims["email"] = SANDBOX_USER["email"]
    if "profile" in scopes:
        claims["given_name"] = SANDBOX_USER["given_name"]
        claims["family_name"] = SANDBOX_USER["family_name"]
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    sig = hmac.new(client.client_secret.encode(), signing_input, hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


class IdentityRoutes:
    """login.xero.com (consent) and identity.xero.com (tokens) of one simulated Xero."""

    def __init__(self, sim: XeroSim) -> None:
        self.sim = sim

    # -- consent ----------------------------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            pairs = await form_pairs(request)
            params = {k: v for k, v in pairs if k != "tenant"}
            chosen = [v for k, v in pairs if k == "tenant"]
        authority = self.sim.authority
        client = authority.clients.get(params.get("client_id", ""))
        if client is None:
            return error_page("Unknown client or client not enabled (unauthorized_client).")
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or not redirect_uri_allowed(client.redirect_uris, redirect_uri):
            return error_page(
                "Invalid redirect_uri: it is not registered for this app (invalid_request)."
            )
        state = params.get("state", "")
        back: dict[str, str] = {"state": state} if state else {}
        if params.get("response_type") != "code":
            return _redirect(redirect_uri, {"error": "unsupported_response_type", **back})
        scopes = params.get("scope", "").split()
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if not scopes or unknown:
            return _redirect(redirect_uri, {"error": "invalid_scope", **back})
        method = params.get("code_challenge_method") or (
            "plain" if params.get("code_challenge") else ""
        )
        if method and method not in ("S256", "plain"):
            return _redirect(redirect_uri, {"error": "invalid_request", **back})
        tenants = self.sim.tenants()
        if request.method == "GET":
            return self._consent(client, params, scopes, [t.tenant_id for t in tenants], "")
        if params.get("action") != "allow":
            return _redirect(redirect_uri, {"error": "access_denied", **back})
        known = {t.tenant_id for t in tenants}
        chosen = [t for t in dict.fromkeys(chosen) if t in known]
        if not chosen:
            return self._consent(
                client, params, scopes, [], "Choose at least one organisation to connect."
            )
        code = authority.issue_code(
            client.client_id,
            redirect_uri,
            chosen,
            scopes,
            code_challenge=params.get("code_challenge") or None,
            code_challenge_method=method or None,
        )
        return _redirect(
            redirect_uri,
            {"code": code, "scope": " ".join(scopes), **back, "session_state": uuid.uuid4().hex},
        )

    def _consent(
        self,
        client: Client,
        params: dict[str, str],
        scopes: list[str],
        checked: list[str],
        error: str,
    ) -> HTMLResponse:
        hidden = "".join(
            f'<input type=hidden name="{html.escape(k)}" value="{html.escape(v)}">'
            for k, v in params.items()
            if k != "action"
        )
        orgs = "".join(
            "<label class=org><input type=checkbox name=tenant "
            f'value="{html.escape(t.tenant_id)}"{" checked" if t.tenant_id in checked else ""}>'
            f"<span>{html.escape(t.name)} <span class=muted>({t.base_currency})</span></span>"
            "</label>"
            for t in self.sim.tenants()
        )
        items = "".join(
            f"<li>{html.escape(_scope_label(s))} <span class=muted><code>{html.escape(s)}</code>"
            "</span></li>"
            for s in scopes
        )
        body = (
            f"<h1>{html.escape(client.name)} wants to access your Xero data</h1>"
            f"<p class=muted>Signed in as {html.escape(SANDBOX_USER['email'])}</p>"
            + (f"<div class=error>{html.escape(error)}</div>" if error else "")
            + f"<p>This app will be able to:</p><ul class=scopes>{items}</ul>"
            "<form method=post>"
            f"{hidden}<fieldset><legend>Organisations to connect</legend>{orgs}</fieldset>"
            "<div class=actions><button type=submit name=action value=cancel>Cancel</button>"
            "<button class=allow type=submit name=action value=allow>Allow access</button></div>"
            "</form>"
        )
        return _page("Xero | Authorise app", body, 400 if error else 200)

    # -- tokens -----------------------------------------------------------------------------------
    def _client_credentials(
        self, request: Request, form: dict[str, str]
    ) -> tuple[str | None, str | None]:
        try:
            return client_credentials(request.headers.get("authorization", ""), form)
        except OAuthError:
            return None, None  # Xero answers a malformed header as any bad client

    def _token_error(self, err: OAuthError, **detail: Any) -> Response:
        self.sim.ledger.record(
            "xero", "token_rejected", error=err.error, reason=err.description, **detail
        )
        # Xero's identity server answers every token error, invalid_client included, with a
        # 400 and a body of just the error code.
        return JSONResponse({"error": err.error}, status_code=400)

    async def token(self, request: Request) -> Response:
        form = dict(await form_pairs(request))
        authority = self.sim.authority
        grant_type = form.get("grant_type", "")
        cid, secret = self._client_credentials(request, form)
        try:
            if not secret and grant_type == "authorization_code" and form.get("code_verifier"):
                # PKCE: a public client proves itself with the verifier instead of a secret
                maybe = authority.clients.get(cid or "")
                if maybe is None:
                    raise OAuthError("invalid_client", "Unknown client", status=400)
                client = maybe
            else:
                client = authority.authenticate_client(cid, secret)
        except OAuthError as err:
            return self._token_error(err, grant_type=grant_type)
        now = self.sim.clock.now()
        try:
            if grant_type == "authorization_code":
                tokens = authority.exchange_code(
                    client,
                    form.get("code", ""),
                    form.get("redirect_uri", ""),
                    form.get("code_verifier") or None,
                )
                kind = "token_issued"
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                grant = authority.grant_for_refresh(refresh)
                rule = self.sim.faults.draw(
                    "xero",
                    "POST /connect/token",
                    grant.tenants[0] if grant and grant.tenants else None,
                    kinds=frozenset({FaultKind.REVOKED_REFRESH}),
                )
                if rule is not None:
                    authority.revoke_refresh_chain(refresh)
                    self.sim.ledger.record(
                        "xero",
                        "fault_injected",
                        endpoint="POST /connect/token",
                        fault=rule.kind.value,
                        rule=rule.id,
                    )
                    self.sim.ledger.record(
                        "xero", "token_revoked", via="fault", grant=grant.id if grant else None
                    )
                    raise OAuthError("invalid_grant", "The grant was revoked")
                if grant is not None and "offline_access" not in grant.scopes:
                    raise OAuthError("invalid_grant", "offline_access was not granted")
                tokens = authority.refresh(client, refresh)
                kind = "token_refreshed"
            else:
                raise OAuthError("unsupported_grant_type", f"grant_type {grant_type!r}")
        except OAuthError as err:
            return self._token_error(err, grant_type=grant_type)
        grant = next(g for g in authority.grants() if g.id == tokens.grant_id)
        for tenant in grant.tenants:
            self.sim.ledger.record(
                "xero", kind, tenant=tenant, grant=grant.id, rotated=tokens.rotated
            )
        return JSONResponse(
            self._token_body(client, tokens, now.timestamp()),
            headers={"Cache-Control": "no-store", "Pragma": "no-cache"},
        )

    def _token_body(self, client: Client, tokens: TokenSet, now: float) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if "openid" in tokens.scopes:
            body["id_token"] = id_token(client, now, tokens.scopes, tokens.grant_id)
        body["access_token"] = tokens.access_token
        body["expires_in"] = tokens.expires_in
        body["token_type"] = "Bearer"
        if "offline_access" in tokens.scopes:
            body["refresh_token"] = tokens.refresh_token
        body["scope"] = " ".join(tokens.scopes)
        return body

    async def revocation(self, request: Request) -> Response:
        form = dict(await form_pairs(request))
        cid, secret = self._client_credentials(request, form)
        try:
            self.sim.authority.authenticate_client(cid, secret)
        except OAuthError as err:
            return self._token_error(err, grant_type="revocation")
        token = form.get("token", "")
        grant = self.sim.authority.grant_for_refresh(token)
        # RFC 7009: the answer is 200 whether or not the token was known
        if self.sim.authority.revoke(token):
            self.sim.ledger.record(
                "xero", "token_revoked", via="revocation", grant=grant.id if grant else None
            )
        return Response(status_code=200)

    def discovery(self, request: Request) -> Response:
        # The platform's mount point (".../xero"); the real hosts hang below it.
        url = request.url
        root = f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}"
        return JSONResponse(
            {
                "issuer": ISSUER,
                "authorization_endpoint": f"{root}/login/identity/connect/authorize",
                "token_endpoint": f"{root}/identity/connect/token",
                "revocation_endpoint": f"{root}/identity/connect/revocation",
                "response_types_supported": ["code"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "scopes_supported": sorted(KNOWN_SCOPES),
                "code_challenge_methods_supported": ["plain", "S256"],
                "id_token_signing_alg_values_supported": ["HS256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
            }
        )
