"""The OAuth app on one platform (consent, code exchange, refresh, revoke) and the tokens it
yields. Tokens, client secrets and PKCE verifiers never reach reprs or exception messages."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from arsync.clock import Clock
from arsync.connectors.base import Endpoints
from arsync.connectors.http import retry_after_seconds
from arsync.domain import PLATFORM_NAMES
from arsync.errors import (
    ArsyncError,
    AuthError,
    ConfigError,
    DataError,
    RateLimited,
    TransientError,
)

#: what arsync asks for: reading the ledger and the organisation's settings (its time zone and
#: currency), sending reminders and writing notes
DEFAULT_SCOPES: dict[str, tuple[str, ...]] = {
    "qbo": ("com.intuit.quickbooks.accounting",),
    "xero": (
        "offline_access",
        "accounting.transactions",
        "accounting.contacts",
        "accounting.settings.read",
    ),
}

#: access-token lifetimes when a reply leaves out expires_in (API-FACTS.md)
_ACCESS_LIFETIME = {"qbo": timedelta(seconds=3600), "xero": timedelta(seconds=1800)}
#: Xero's refresh token dies 60 days after issue if unused; its replies do not say so
XERO_REFRESH_IDLE = timedelta(days=60)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


@dataclass(frozen=True)
class TokenRecord:
    """One connector's tokens as stored (clear text only in memory; the repr hides them)."""

    access_token: str
    refresh_token: str
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    #: when the refresh token was last used or issued (Xero: 60 days unused and it dies)
    refreshed_at: datetime
    connected_at: datetime
    scope: str | None = None
    #: bumped by every save, so a reader can tell someone refreshed meanwhile
    generation: int = 0

    def access_fresh(self, now: datetime, margin: timedelta = timedelta(0)) -> bool:
        """The access token is good for longer than `margin` from `now`."""
        return now + margin < self.access_expires_at

    def __repr__(self) -> str:
        return (
            "TokenRecord(access_token=<hidden>, refresh_token=<hidden>, "
            f"access_expires_at={self.access_expires_at.isoformat()}, "
            f"refresh_expires_at="
            f"{self.refresh_expires_at.isoformat() if self.refresh_expires_at else None}, "
            f"refreshed_at={self.refreshed_at.isoformat()}, "
            f"connected_at={self.connected_at.isoformat()}, scope={self.scope!r}, "
            f"generation={self.generation})"
        )

    __str__ = __repr__


class GrantRefused(AuthError):
    """The token endpoint refused the grant itself (a code or refresh token): `invalid_grant`."""

    def __init__(self, message: str, *, error: str) -> None:
        super().__init__(message)
        self.error = error


@dataclass(frozen=True)
class AuthorizationRequest:
    """One consent attempt: the address to open and what must come back with the code."""

    url: str
    state: str
    redirect_uri: str
    code_verifier: str | None = None

    def __repr__(self) -> str:
        return f"AuthorizationRequest(url={self.url!r}, redirect_uri={self.redirect_uri!r})"


_SAFE_WORD = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def safe_error_code(value: object) -> str:
    """An OAuth `error` value fit for a message: a bare word, or a placeholder."""
    if isinstance(value, str) and _SAFE_WORD.fullmatch(value):
        return value
    return "unrecognised error"


def pkce_challenge(verifier: str) -> str:
    """RFC 7636 S256: base64url(sha256(verifier)) without padding."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_record_from_reply(
    platform: str,
    body: Any,
    now: datetime,
    *,
    previous: TokenRecord | None = None,
    scopes: Sequence[str] = (),
) -> TokenRecord:
    """A token endpoint's JSON reply as a TokenRecord (times from `now`, when it arrived)."""
    if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
        raise DataError("the token endpoint's reply carries no access token")
    refresh = body.get("refresh_token")
    if not isinstance(refresh, str) or not refresh:
        if previous is None:
            raise DataError(
                "the token endpoint gave no refresh token (for Xero, offline_access must be "
                "among the scopes)"
            )
        refresh = previous.refresh_token  # QBO may leave an unchanged token out
    expires_in = _seconds(body.get("expires_in"))
    access_life = (
        timedelta(seconds=expires_in) if expires_in is not None else _ACCESS_LIFETIME[platform]
    )
    refresh_in = _seconds(body.get("x_refresh_token_expires_in"))
    refresh_expires: datetime | None
    if refresh_in is not None:
        refresh_expires = now + timedelta(seconds=refresh_in)
    elif platform == "xero":
        refresh_expires = now + XERO_REFRESH_IDLE
    else:
        refresh_expires = None
    scope = body.get("scope")
    if not isinstance(scope, str) or not scope:
        scope = previous.scope if previous and previous.scope else " ".join(scopes) or None
    return TokenRecord(
        access_token=body["access_token"],
        refresh_token=refresh,
        access_expires_at=now + access_life,
        refresh_expires_at=refresh_expires,
        refreshed_at=now,
        connected_at=previous.connected_at if previous else now,
        scope=scope,
        generation=previous.generation if previous else 0,
    )


def _seconds(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


class OAuthApp:
    """arsync's registered app on one platform: consent URL, code exchange, refresh, revoke.

    Client authentication is HTTP Basic (both platforms take it). Xero gets PKCE (S256) on top
    of the secret; QBO, a confidential client, the secret alone. All HTTP goes through httpx.
    """

    def __init__(
        self,
        platform: str,
        client_id: str,
        client_secret: str,
        endpoints: Endpoints | None = None,
        scopes: Sequence[str] | None = None,
        redirect_uri: str | None = None,
        *,
        http: httpx.Client | None = None,
        clock: Clock,
    ) -> None:
        if platform not in PLATFORM_NAMES:
            raise ConfigError(f"unknown platform {platform!r}: use 'qbo' or 'xero'")
        self.platform = platform
        self.client_id = client_id
        self._client_secret = client_secret
        self.endpoints = endpoints or Endpoints.production(platform)
        self.scopes = tuple(scopes or DEFAULT_SCOPES[platform])
        self.redirect_uri = redirect_uri
        self.clock = clock
        self._own_http = http is None
        self.http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)

    @property
    def label(self) -> str:
        return PLATFORM_NAMES[self.platform]

    @property
    def uses_pkce(self) -> bool:
        return self.platform == "xero"

    def __repr__(self) -> str:
        return f"OAuthApp(platform={self.platform!r}, client_id={self.client_id!r})"

    def close(self) -> None:
        if self._own_http:
            self.http.close()

    def __enter__(self) -> OAuthApp:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- consent -------------------------------------------------------------------------------
    def authorization_request(self, redirect_uri: str) -> AuthorizationRequest:
        """The consent address with a fresh random `state` (and PKCE verifier for Xero)."""
        state = secrets.token_urlsafe(24)
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(self.scopes),
            "state": state,
        }
        verifier = None
        if self.uses_pkce:
            verifier = secrets.token_urlsafe(64)  # 86 characters: within RFC 7636's 43..128
            params["code_challenge"] = pkce_challenge(verifier)
            params["code_challenge_method"] = "S256"
        sep = "&" if "?" in self.endpoints.authorize_url else "?"
        url = f"{self.endpoints.authorize_url}{sep}{urlencode(params)}"
        return AuthorizationRequest(url, state, redirect_uri, verifier)

    def exchange_code(
        self,
        code: str,
        redirect_uri: str,
        code_verifier: str | None = None,
        *,
        now: datetime | None = None,
    ) -> TokenRecord:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri}
        if code_verifier:
            form["code_verifier"] = code_verifier
        body = self._token_call(form, f"{self.label}: exchanging the authorization code")
        return token_record_from_reply(
            self.platform, body, now or self.clock.now(), scopes=self.scopes
        )

    def refresh(
        self,
        refresh_token: str,
        *,
        previous: TokenRecord | None = None,
        now: datetime | None = None,
    ) -> TokenRecord:
        """New tokens for `refresh_token`. GrantRefused when the platform refuses the token;
        TransientError when the answer was lost (the same token may then be tried again)."""
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        body = self._token_call(form, f"{self.label}: refreshing tokens")
        return token_record_from_reply(
            self.platform, body, now or self.clock.now(), previous=previous, scopes=self.scopes
        )

    def revoke(self, token: str) -> None:
        """Revoke the grant behind a refresh token (both platforms end the whole grant)."""
        what = f"{self.label}: revoking tokens"
        url = self.endpoints.revoke_url
        if self.platform == "qbo":
            response = self._post(url, what, json={"token": token})
        else:
            response = self._post(url, what, data={"token": token})
        if response.status_code >= 400:
            raise self._refusal(response, what)

    # -- the token endpoint ----------------------------------------------------------------------
    def _post(self, url: str, what: str, **kwargs: Any) -> httpx.Response:
        try:
            return self.http.post(
                url,
                auth=(self.client_id, self._client_secret),
                headers={"Accept": "application/json"},
                **kwargs,
            )
        except httpx.TimeoutException as err:
            raise TransientError(f"{what}: timed out") from err
        except httpx.TransportError as err:
            # the request may have been performed: a lost reply (type name only, no body)
            raise TransientError(f"{what}: connection failed ({type(err).__name__})") from err

    def _token_call(self, form: dict[str, str], what: str) -> Any:
        response = self._post(self.endpoints.token_url, what, data=form)
        if response.status_code >= 400:
            raise self._refusal(response, what)
        try:
            return response.json()
        except ValueError:
            # a 200 we cannot read may still have rotated the token: worth another try
            raise TransientError(f"{what}: the reply was not JSON") from None

    def _refusal(self, response: httpx.Response, what: str) -> ArsyncError:
        """The error a failed token or revoke call stands for; never quotes the body."""
        status = response.status_code
        if status == 429:
            return RateLimited(
                f"{what}: rate limited (HTTP 429)",
                retry_after=retry_after_seconds(
                    response.headers.get("Retry-After"), self.clock.now()
                ),
            )
        if status >= 500:
            return TransientError(
                f"{what}: the platform failed (HTTP {status})",
                retry_after=retry_after_seconds(
                    response.headers.get("Retry-After"), self.clock.now()
                ),
            )
        try:
            body = response.json()
        except ValueError:
            body = None
        error = safe_error_code(body.get("error") if isinstance(body, dict) else None)
        if error in ("invalid_client", "unauthorized_client") or status == 401:
            return AuthError(
                f"{what}: {self.label} refused the app's credentials ({error}, HTTP {status}): "
                "check the connector's client_id and client_secret"
            )
        return GrantRefused(f"{what}: refused ({error}, HTTP {status})", error=error)
