"""OAuth 2.0 authority shared by both simulated platforms, with each platform's token rules."""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import unquote_plus, urlsplit

from arsync.sandbox.clock import SandboxClock


@dataclass(frozen=True)
class TokenRules:
    """How one platform treats tokens (API-FACTS.md)."""

    access_lifetime: timedelta
    #: a refresh hands out a new refresh token only once the presented one is this old
    #: (QBO: the value changes every 24 hours); zero means on every refresh (Xero)
    rotate_after: timedelta
    #: how long a superseded refresh token still works (QBO 24 h; Xero 30 min grace)
    superseded_grace: timedelta
    #: a refresh token dies when unused this long (QBO rolling 100 days; Xero 60 days)
    idle_expiry: timedelta
    #: hard cap from the first issue of the grant (QBO 5 years; Xero none)
    hard_expiry: timedelta | None
    code_lifetime: timedelta = timedelta(minutes=5)


QBO_RULES = TokenRules(
    access_lifetime=timedelta(seconds=3600),
    rotate_after=timedelta(hours=24),
    superseded_grace=timedelta(hours=24),
    idle_expiry=timedelta(days=100),
    hard_expiry=timedelta(days=5 * 365),
)
XERO_RULES = TokenRules(
    access_lifetime=timedelta(seconds=1800),
    rotate_after=timedelta(0),
    superseded_grace=timedelta(minutes=30),
    idle_expiry=timedelta(days=60),
    hard_expiry=None,
)


class OAuthError(Exception):
    """An OAuth error the token endpoint answers with (RFC 6749 section 5.2)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status


@dataclass
class Client:
    client_id: str
    client_secret: str
    name: str
    #: exact redirect URIs; a loopback URI with any port also matches "http://localhost/…"
    redirect_uris: list[str]


@dataclass
class Grant:
    """One user's consent: a client, the tenants it may reach, and its refresh-token chain."""

    id: str
    client_id: str
    tenants: list[str]
    scopes: list[str]
    issued_at: datetime
    revoked: bool = False
    #: every refresh token of this grant ever issued: value -> state
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    current_refresh: str = ""


@dataclass
class RefreshToken:
    value: str
    issued_at: datetime
    last_used_at: datetime
    superseded_at: datetime | None = None
    child: str | None = None  # the token that replaced this one


@dataclass
class AccessToken:
    value: str
    grant_id: str
    expires_at: datetime
    revoked: bool = False


@dataclass(frozen=True)
class TokenSet:
    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    scopes: list[str]
    grant_id: str
    rotated: bool


@dataclass
class PendingCode:
    code: str
    client_id: str
    redirect_uri: str
    tenants: list[str]
    scopes: list[str]
    expires_at: datetime
    code_challenge: str | None = None
    code_challenge_method: str | None = None


def _token(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def client_credentials(
    authorization: str, form: Mapping[str, str]
) -> tuple[str | None, str | None]:
    """Client id and secret from HTTP Basic (preferred) or the form (RFC 6749 section 2.3.1)."""
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError) as err:
            raise OAuthError("invalid_client", "Malformed Basic authorization header", 401) from err
        client_id, _, secret = decoded.partition(":")
        return unquote_plus(client_id), unquote_plus(secret)
    return form.get("client_id"), form.get("client_secret")


def redirect_uri_allowed(registered: list[str], candidate: str) -> bool:
    if candidate in registered:
        return True
    parts = urlsplit(candidate)
    if parts.scheme != "http" or parts.hostname not in ("localhost", "127.0.0.1", "::1"):
        return False
    # RFC 8252 section 7.3: loopback redirects may use any port.
    for uri in registered:
        reg = urlsplit(uri)
        loopback = reg.scheme == "http" and reg.hostname in ("localhost", "127.0.0.1", "::1")
        if loopback and reg.path == parts.path:
            return True
    return False


class Authority:
    """Codes, access tokens and refresh-token chains for one platform, on the sandbox clock."""

    def __init__(self, platform: str, rules: TokenRules, clock: SandboxClock) -> None:
        self.platform = platform
        self.rules = rules
        self._clock = clock
        self._lock = threading.RLock()
        self.clients: dict[str, Client] = {}
        self._codes: dict[str, PendingCode] = {}
        self._grants: dict[str, Grant] = {}
        self._refresh_index: dict[str, str] = {}  # refresh value -> grant id
        self._access: dict[str, AccessToken] = {}

    # -- clients -------------------------------------------------------------------------------
    def register_client(self, client: Client) -> Client:
        with self._lock:
            self.clients[client.client_id] = client
        return client

    def authenticate_client(self, client_id: str | None, client_secret: str | None) -> Client:
        client = self.clients.get(client_id or "")
        if client is None or not secrets.compare_digest(
            client.client_secret.encode(), (client_secret or "").encode()
        ):
            raise OAuthError("invalid_client", "Client authentication failed", status=401)
        return client

    # -- authorization codes -------------------------------------------------------------------
    def issue_code(
        self,
        client_id: str,
        redirect_uri: str,
        tenants: list[str],
        scopes: list[str],
        code_challenge: str | None = None,
        code_challenge_method: str | None = None,
    ) -> str:
        code = _token("")
        with self._lock:
            self._codes[code] = PendingCode(
                code=code,
                client_id=client_id,
                redirect_uri=redirect_uri,
                tenants=list(tenants),
                scopes=list(scopes),
                expires_at=self._clock.now() + self.rules.code_lifetime,
                code_challenge=code_challenge,
                code_challenge_method=code_challenge_method,
            )
        return code

    def exchange_code(
        self, client: Client, code: str, redirect_uri: str, code_verifier: str | None = None
    ) -> TokenSet:
        with self._lock:
            pending = self._codes.pop(code, None)  # single use, even when the exchange fails
            if pending is None or pending.expires_at <= self._clock.now():
                raise OAuthError("invalid_grant", "The authorization code is invalid or expired")
            if pending.client_id != client.client_id:
                raise OAuthError("invalid_grant", "The code was issued to another client")
            if pending.redirect_uri != redirect_uri:
                raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
            if pending.code_challenge is not None:
                if not code_verifier:
                    raise OAuthError("invalid_grant", "code_verifier is required")
                if pending.code_challenge_method == "S256":
                    digest = hashlib.sha256(code_verifier.encode()).digest()
                    computed = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
                else:
                    computed = code_verifier
                if not secrets.compare_digest(computed, pending.code_challenge):
                    raise OAuthError("invalid_grant", "code_verifier does not match")
            now = self._clock.now()
            grant = Grant(
                id=secrets.token_hex(8),
                client_id=client.client_id,
                tenants=pending.tenants,
                scopes=pending.scopes,
                issued_at=now,
            )
            self._grants[grant.id] = grant
            refresh = self._new_refresh(grant, now)
            return self._token_set(grant, refresh, rotated=True)

    def issue_grant(self, client_id: str, tenants: list[str], scopes: list[str]) -> TokenSet:
        """Tokens as if a person had consented on the page: the control plane's shortcut."""
        client = self.clients.get(client_id)
        if client is None:
            raise OAuthError("invalid_client", f"unknown client {client_id!r}", status=401)
        code = self.issue_code(client_id, client.redirect_uris[0], tenants, scopes)
        return self.exchange_code(client, code, client.redirect_uris[0])

    # -- refresh ---------------------------------------------------------------------------------
    def refresh(self, client: Client, refresh_value: str) -> TokenSet:
        with self._lock:
            now = self._clock.now()
            grant_id = self._refresh_index.get(refresh_value)
            grant = self._grants.get(grant_id or "")
            if grant is None or grant.client_id != client.client_id or grant.revoked:
                raise OAuthError("invalid_grant", "The refresh token is invalid")
            token = grant.refresh_tokens[refresh_value]
            rules = self.rules
            if rules.hard_expiry is not None and now >= grant.issued_at + rules.hard_expiry:
                raise OAuthError("invalid_grant", "The refresh token has reached its maximum age")
            if now >= token.last_used_at + rules.idle_expiry:
                raise OAuthError("invalid_grant", "The refresh token has expired")
            if token.superseded_at is not None:
                if now >= token.superseded_at + rules.superseded_grace:
                    raise OAuthError("invalid_grant", "The refresh token has been superseded")
                # Within the grace: answer with the chain's current token again, so a client
                # whose reply was lost recovers. If the chain moved on past this token's own
                # child, two refreshes raced: Xero refuses, QBO answers with the latest.
                if token.child != grant.current_refresh and self.rules.rotate_after == timedelta(0):
                    raise OAuthError("invalid_grant", "The refresh token has been superseded")
                current = grant.refresh_tokens[grant.current_refresh]
                current.last_used_at = now
                token.last_used_at = now
                return self._token_set(grant, current, rotated=True)
            token.last_used_at = now
            if now - token.issued_at >= rules.rotate_after:
                new = self._new_refresh(grant, now)
                token.superseded_at = now
                token.child = new.value
                return self._token_set(grant, new, rotated=True)
            return self._token_set(grant, token, rotated=False)

    # -- revocation ------------------------------------------------------------------------------
    def revoke(self, token_value: str) -> bool:
        """Revoke the grant behind a refresh or access token (both platforms revoke the grant)."""
        with self._lock:
            grant_id = self._refresh_index.get(token_value)
            if grant_id is None and token_value in self._access:
                grant_id = self._access[token_value].grant_id
            grant = self._grants.get(grant_id or "")
            if grant is None:
                return False
            self._revoke_grant(grant)
            return True

    def _revoke_grant(self, grant: Grant) -> None:
        grant.revoked = True
        for access in self._access.values():
            if access.grant_id == grant.id:
                access.revoked = True

    def revoke_refresh_chain(self, refresh_value: str) -> bool:
        """Fault injection: the grant behind this refresh token dies (as when a user revokes)."""
        return self.revoke(refresh_value)

    def issued(self) -> list[str]:
        """Every code, access token and refresh token this authority ever issued (for tests
        that check none of them reached a log)."""
        with self._lock:
            return [*self._codes, *self._access, *self._refresh_index]

    def revoke_all(self, tenant: str | None = None) -> int:
        with self._lock:
            n = 0
            for grant in self._grants.values():
                if not grant.revoked and (tenant is None or tenant in grant.tenants):
                    self._revoke_grant(grant)
                    n += 1
            return n

    def expire_access_tokens(self, tenant: str | None = None) -> int:
        """Fault injection: every live access token (of a tenant) expires now."""
        with self._lock:
            now = self._clock.now()
            n = 0
            for access in self._access.values():
                grant = self._grants[access.grant_id]
                if access.expires_at > now and (tenant is None or tenant in grant.tenants):
                    access.expires_at = now
                    n += 1
            return n

    # -- access checks ---------------------------------------------------------------------------
    def check_access(self, value: str | None) -> tuple[Grant, AccessToken] | None:
        """The grant behind a bearer token, or None when it is unknown, expired or revoked."""
        if not value:
            return None
        with self._lock:
            access = self._access.get(value)
            if access is None or access.revoked or access.expires_at <= self._clock.now():
                return None
            grant = self._grants[access.grant_id]
            if grant.revoked:
                return None
            return grant, access

    def find_access(self, value: str | None) -> AccessToken | None:
        """The access token record, live or not (to tell "expired" from "unknown" in a 401)."""
        with self._lock:
            return self._access.get(value or "")

    def grants(self) -> list[Grant]:
        with self._lock:
            return list(self._grants.values())

    def grant_for_refresh(self, refresh_value: str) -> Grant | None:
        with self._lock:
            return self._grants.get(self._refresh_index.get(refresh_value, ""))

    # -- internals -------------------------------------------------------------------------------
    def _new_refresh(self, grant: Grant, now: datetime) -> RefreshToken:
        token = RefreshToken(value=_token("RT1-"), issued_at=now, last_used_at=now)
        grant.refresh_tokens[token.value] = token
        grant.current_refresh = token.value
        self._refresh_index[token.value] = grant.id
        return token

    def _token_set(self, grant: Grant, refresh: RefreshToken, *, rotated: bool) -> TokenSet:
        now = self._clock.now()
        access = AccessToken(
            value=_token("AT-"), grant_id=grant.id, expires_at=now + self.rules.access_lifetime
        )
        self._access[access.value] = access
        refresh_deadline = refresh.last_used_at + self.rules.idle_expiry
        if self.rules.hard_expiry is not None:
            refresh_deadline = min(refresh_deadline, grant.issued_at + self.rules.hard_expiry)
        return TokenSet(
            access_token=access.value,
            refresh_token=refresh.value,
            expires_in=int(self.rules.access_lifetime.total_seconds()),
            refresh_expires_in=max(0, int((refresh_deadline - now).total_seconds())),
            scopes=grant.scopes,
            grant_id=grant.id,
            rotated=rotated,
        )
