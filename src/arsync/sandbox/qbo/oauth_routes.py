"""Intuit's OAuth 2.0 and OpenID endpoints: discovery, consent, tokens, revoke, JWKS, userinfo."""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
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
from arsync.sandbox.qbo import pages

if TYPE_CHECKING:
    from arsync.sandbox.qbo.sim import QboSim

ACCOUNTING = "com.intuit.quickbooks.accounting"
KNOWN_SCOPES = {
    ACCOUNTING,
    "com.intuit.quickbooks.payment",
    "openid",
    "profile",
    "email",
    "phone",
    "address",
    "intuit_name",
}
TOKEN_PATH = "/oauth/oauth2/v1/tokens/bearer"
TOKEN_ENDPOINT = "POST /oauth2/v1/tokens/bearer"
REVOKE_ENDPOINT = "POST /v2/oauth2/tokens/revoke"
USERINFO_ENDPOINT = "GET /v1/openid_connect/userinfo"
_REVOKED = frozenset({FaultKind.REVOKED_REFRESH})
#: the one person who "signs in" on the sandbox's consent page
SANDBOX_USER = {
    "sub": "4a7d1ed4-1a3c-4b57-9b8e-5e0f5a1c0d01",
    "givenName": "Sam",
    "familyName": "Sandbox",
    "email": "owner@sandbox.example",
    "emailVerified": True,
    "phoneNumber": "+1 415 555 0100",
    "phoneNumberVerified": False,
}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _int_b64(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


class SigningKey:
    """The RS256 key that signs id_tokens, made on first use (key generation is slow)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key: rsa.RSAPrivateKey | None = None
        self.kid = ""

    def key(self) -> rsa.RSAPrivateKey:
        with self._lock:
            if self._key is None:
                self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
                der_n = self._key.public_key().public_numbers().n.to_bytes(256, "big")
                self.kid = hashlib.sha256(der_n).hexdigest()[:16]
            return self._key

    def jwks(self) -> dict[str, Any]:
        numbers = self.key().public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "e": _int_b64(numbers.e),
                    "use": "sig",
                    "kid": self.kid,
                    "alg": "RS256",
                    "n": _int_b64(numbers.n),
                }
            ]
        }

    def sign(self, claims: dict[str, Any]) -> str:
        key = self.key()
        header = {"kid": self.kid, "alg": "RS256"}
        signing_input = (
            _b64url(json.dumps(header, separators=(",", ":")).encode())
            + "."
            + _b64url(json.dumps(claims, separators=(",", ":")).encode())
        )
        signature = key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)


def qbo_root(request: Request) -> str:
    """Absolute URL of the /qbo mount as the client reached it."""
    # Not request.base_url: under a Mount that keeps the application's root, not the mount's.
    url = request.url
    return f"{url.scheme}://{url.netloc}{request.scope.get('root_path', '')}".rstrip("/")


def discovery(root: str) -> dict[str, Any]:
    return {
        "issuer": f"{root}/oauth/op/v1",
        "authorization_endpoint": f"{root}/appcenter/connect/oauth2",
        "token_endpoint": f"{root}{TOKEN_PATH}",
        "userinfo_endpoint": f"{root}/accounts/v1/openid_connect/userinfo",
        "revocation_endpoint": f"{root}/developer/v2/oauth2/tokens/revoke",
        "jwks_uri": f"{root}/oauth/op/v1/jwks",
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": ["openid", "email", "profile", "address", "phone"],
        "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic"],
        "claims_supported": [
            "aud",
            "exp",
            "iat",
            "iss",
            "realmid",
            "sub",
            "givenName",
            "familyName",
            "email",
            "emailVerified",
            "phoneNumber",
            "phoneNumberVerified",
        ],
    }


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    body = {"error": error}
    if description and error != "invalid_grant":
        # Intuit answers invalid_grant with the bare error; others carry a description.
        body["error_description"] = description
    return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store"})


async def form_of(request: Request) -> dict[str, str]:
    """An application/x-www-form-urlencoded body (no multipart parser is needed for these)."""
    body = (await request.body()).decode("utf-8", "replace")
    return dict(parse_qsl(body, keep_blank_values=True))


def _with_query(uri: str, params: dict[str, str]) -> str:
    parts = urlsplit(uri)
    query = parts.query + ("&" if parts.query else "") + urlencode(params)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class OAuthRoutes:
    """Everything below the Intuit identity hosts."""

    def __init__(self, sim: QboSim) -> None:
        self.sim = sim
        self.signing = SigningKey()

    async def handle(self, request: Request, rel: str) -> Response | None:
        path = rel.rstrip("/") or "/"
        method = request.method
        if path in (
            "/developer/.well-known/openid_configuration",
            "/developer/.well-known/openid_sandbox_configuration",
        ):
            return JSONResponse(discovery(qbo_root(request)))
        if path == "/appcenter/connect/oauth2" and method in ("GET", "POST"):
            return await self.authorize(request)
        if path == TOKEN_PATH and method == "POST":
            return await self.token(request)
        if path == "/developer/v2/oauth2/tokens/revoke" and method == "POST":
            return await self.revoke(request)
        if path == "/oauth/op/v1/jwks" and method == "GET":
            return JSONResponse(self.signing.jwks())
        if path == "/accounts/v1/openid_connect/userinfo" and method == "GET":
            return self.userinfo(request)
        return None

    # -- consent ----------------------------------------------------------------------------------
    async def authorize(self, request: Request) -> Response:
        params: dict[str, str] = dict(request.query_params)
        if request.method == "POST":
            params.update(await form_of(request))
        authority = self.sim.authority
        client = authority.clients.get(params.get("client_id", ""))
        if client is None:
            return HTMLResponse(
                pages.error_page(
                    "Unknown app",
                    "No app with this client ID is registered with QuickBooks.",
                    params.get("client_id", "(no client_id)"),
                ),
                status_code=400,
            )
        redirect_uri = params.get("redirect_uri", "")
        if not redirect_uri or not redirect_uri_allowed(client.redirect_uris, redirect_uri):
            return HTMLResponse(
                pages.error_page(
                    "Redirect URI not allowed",
                    "The redirect URI does not match any URI registered for this app.",
                    redirect_uri or "(no redirect_uri)",
                ),
                status_code=400,
            )
        state = params.get("state", "")

        def fail(error: str, description: str) -> Response:
            query = {"error": error, "error_description": description}
            if state:
                query["state"] = state
            return RedirectResponse(_with_query(redirect_uri, query), status_code=302)

        if params.get("response_type") != "code":
            return fail("unsupported_response_type", "response_type must be code")
        scopes = params.get("scope", "").split()
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if not scopes or unknown:
            return fail("invalid_scope", f"unknown scope: {' '.join(unknown) or '(none)'}")
        if not state:
            return fail("invalid_request", "state is required")
        companies = [(t.tenant_id, t.name) for t in self.sim.tenants()]
        if request.method == "GET":
            hidden: dict[str, str] = {
                k: params[k]
                for k in (
                    "client_id",
                    "redirect_uri",
                    "response_type",
                    "scope",
                    "state",
                    "code_challenge",
                    "code_challenge_method",
                )
                if k in params
            }
            html = pages.consent_page(
                app_name=client.name,
                scopes=scopes,
                companies=companies,
                hidden=hidden,
                action=str(request.url.path),
            )
            return HTMLResponse(html)
        if params.get("action") != "connect":
            return fail("access_denied", "The user did not authorize the app")
        realm = params.get("realm", "")
        if realm not in {r for r, _ in companies}:
            return HTMLResponse(
                pages.error_page("Choose a company", "Pick one of your companies to connect."),
                status_code=400,
            )
        code = authority.issue_code(
            client.client_id,
            redirect_uri,
            [realm],
            scopes,
            code_challenge=params.get("code_challenge") or None,
            code_challenge_method=params.get("code_challenge_method") or None,
        )
        return RedirectResponse(
            _with_query(redirect_uri, {"code": code, "state": state, "realmId": realm}),
            status_code=302,
        )

    # -- tokens -----------------------------------------------------------------------------------
    def _client(self, request: Request, form: dict[str, str]) -> Client:
        client_id, secret = client_credentials(request.headers.get("authorization", ""), form)
        return self.sim.authority.authenticate_client(client_id, secret)

    async def token(self, request: Request) -> Response:
        form = await form_of(request)
        grant_type = form.get("grant_type", "")
        ledger = self.sim.ledger
        try:
            client = self._client(request, form)
            if grant_type == "authorization_code":
                if not form.get("code") or not form.get("redirect_uri"):
                    raise OAuthError("invalid_request", "code and redirect_uri are required")
                tokens = self.sim.authority.exchange_code(
                    client, form["code"], form["redirect_uri"], form.get("code_verifier")
                )
            elif grant_type == "refresh_token":
                refresh = form.get("refresh_token", "")
                if not refresh:
                    raise OAuthError("invalid_request", "refresh_token is required")
                grant = self.sim.authority.grant_for_refresh(refresh)
                tenant = grant.tenants[0] if grant and grant.tenants else None
                rule = self.sim.faults.draw("qbo", TOKEN_ENDPOINT, tenant, _REVOKED)
                if rule is not None:
                    ledger.record(
                        "qbo",
                        "fault_injected",
                        tenant=tenant,
                        endpoint=TOKEN_ENDPOINT,
                        fault=rule.kind.value,
                        rule=rule.id,
                    )
                    self.sim.authority.revoke_refresh_chain(refresh)
                    raise OAuthError("invalid_grant", "The grant was revoked")
                tokens = self.sim.authority.refresh(client, refresh)
            elif not grant_type:
                raise OAuthError("invalid_request", "grant_type is required")
            else:
                raise OAuthError("unsupported_grant_type", f"grant_type {grant_type} is unknown")
        except OAuthError as err:
            ledger.record(
                "qbo",
                "token_rejected",
                endpoint=TOKEN_ENDPOINT,
                status=err.status,
                error=err.error,
                reason=err.description,
                grant_type=grant_type,
            )
            return _oauth_error(err.error, err.description, err.status)
        grant = self.sim.authority.grant_for_refresh(tokens.refresh_token)
        tenant = grant.tenants[0] if grant and grant.tenants else None
        if grant_type == "authorization_code":
            ledger.record("qbo", "token_issued", tenant=tenant, endpoint=TOKEN_ENDPOINT, via="code")
        else:
            ledger.record(
                "qbo",
                "token_refreshed",
                tenant=tenant,
                endpoint=TOKEN_ENDPOINT,
                rotated=tokens.rotated and tokens.refresh_token != form.get("refresh_token"),
            )
        body = self._token_body(request, client, tokens, tenant)
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _token_body(
        self, request: Request, client: Client, tokens: TokenSet, tenant: str | None
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "x_refresh_token_expires_in": tokens.refresh_expires_in,
            "refresh_token": tokens.refresh_token,
            "access_token": tokens.access_token,
            "token_type": "bearer",
            "expires_in": tokens.expires_in,
        }
        if "openid" in tokens.scopes:
            now = int(self.sim.clock.timestamp())
            claims = {
                "sub": SANDBOX_USER["sub"],
                "aud": [client.client_id],
                "realmid": tenant,
                "auth_time": now,
                "iss": discovery(qbo_root(request))["issuer"],
                "exp": now + 3600,
                "iat": now,
            }
            body["id_token"] = self.signing.sign(claims)
        return body

    async def revoke(self, request: Request) -> Response:
        raw = await request.body()
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            data = dict(parse_qsl(raw.decode("utf-8", "replace")))
        token = str(data.get("token", "")) if isinstance(data, dict) else ""
        try:
            self._client(request, {})
        except OAuthError as err:
            return _oauth_error(err.error, err.description, err.status)
        if not token:
            return _oauth_error("invalid_request", "token is required")
        grant = self.sim.authority.grant_for_refresh(token)
        revoked = self.sim.authority.revoke(token)
        self.sim.ledger.record(
            "qbo",
            "token_revoked",
            tenant=grant.tenants[0] if grant and grant.tenants else None,
            endpoint=REVOKE_ENDPOINT,
            known=revoked,
        )
        # Revoking an unknown or dead token is not an error (RFC 7009 section 2.2).
        return Response(status_code=200)

    def userinfo(self, request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        checked = self.sim.authority.check_access(token)
        if checked is None:
            return JSONResponse(
                {"error": "invalid_token"},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        scopes = set(checked[0].scopes)
        if "openid" not in scopes:
            return JSONResponse({"error": "insufficient_scope"}, status_code=403)
        info: dict[str, Any] = {"sub": SANDBOX_USER["sub"]}
        if "profile" in scopes:
            info.update(givenName=SANDBOX_USER["givenName"], familyName=SANDBOX_USER["familyName"])
        if "email" in scopes:
            info.update(email=SANDBOX_USER["email"], emailVerified=SANDBOX_USER["emailVerified"])
        if "phone" in scopes:
            info.update(
                phoneNumber=SANDBOX_USER["phoneNumber"],
                phoneNumberVerified=SANDBOX_USER["phoneNumberVerified"],
            )
        return JSONResponse(info)
