"""Shared HTTP plumbing: the API session every call goes through, and one table mapping HTTP
outcomes to arsync's exception tree.

Reads are retried inside a call on any transient failure. A write is different: once its
request may have reached the platform (a timeout after sending, a dropped connection, a 5xx),
sending it again could send a reminder twice. Such a write is retried only when it carries an
idempotency key the platform honours (QBO `requestid`, Xero `Idempotency-Key`), and only while
the platform still remembers the key; otherwise it raises `OutcomeUnknown`, for the caller to
settle by reading the platform back. A write that surely never left (no connection, a 429, a 401)
is retried as a read is.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from arsync.clock import Clock
from arsync.connectors.base import TokenSource
from arsync.connectors.governor import RateGovernor
from arsync.errors import (
    ArsyncError,
    AuthError,
    DataError,
    OutcomeUnknown,
    Parked,
    PermanentError,
    RateLimited,
    TransientError,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)

#: where each platform takes a write's idempotency key: ("query", name) or ("header", name)
IDEMPOTENCY_KEY: dict[str, tuple[str, str]] = {
    "qbo": ("query", "requestid"),
    "xero": ("header", "Idempotency-Key"),
}


def retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """`Retry-After` as seconds: either delta-seconds or an HTTP date (RFC 9110 section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now.timestamp())


def error_for_response(response: httpx.Response, what: str, now: datetime) -> ArsyncError:
    """The exception a non-2xx response stands for. The message never carries a token."""
    status = response.status_code
    snippet = response.text[:300].replace("\n", " ")
    if status == 429:
        return RateLimited(
            f"{what}: rate limited (HTTP 429)",
            retry_after=retry_after_seconds(response.headers.get("Retry-After"), now),
            problem=response.headers.get("X-Rate-Limit-Problem"),
        )
    if status in (401, 403):
        return AuthError(f"{what}: not authorised (HTTP {status}): {snippet}")
    if status >= 500:
        return TransientError(
            f"{what}: the platform failed (HTTP {status})",
            retry_after=retry_after_seconds(response.headers.get("Retry-After"), now),
        )
    try:
        body: Any = json.loads(response.content, parse_float=Decimal)
    except ValueError:
        body = None
    return PermanentError(f"{what}: refused (HTTP {status}): {snippet}", status=status, body=body)


def json_body(response: httpx.Response, what: str) -> Any:
    """The reply's JSON, with every non-integer number as an exact Decimal (never a float)."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both
        raise DataError(f"{what}: the reply is not JSON") from err


@dataclass(frozen=True)
class Reply:
    status: int
    headers: httpx.Headers
    body: Any


@dataclass(frozen=True)
class RetryPolicy:
    """Retries inside one call: 5xx, timeouts and short 429s; never validation or auth."""

    attempts: int = 6
    initial: float = 0.5
    cap: float = 30.0
    #: a 429 without Retry-After (QBO): Intuit says wait a minute
    default_throttle_wait: float = 60.0
    #: how long a platform remembers a write's idempotency key, with a margin (Xero about six
    #: minutes, secondary; Intuit does not say): no keyed write is resent after this
    idempotency_window: dict[str, timedelta] = field(
        default_factory=lambda: {"qbo": timedelta(minutes=5), "xero": timedelta(minutes=5)}
    )


class _MaybePerformed(TransientError):
    """A write's request may have reached the platform (inside a call only)."""


#: transport failures before the request was sent: nothing can have been performed
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class ApiSession:
    """Every call a connector makes: token, rate governor, retries and error mapping.

    One per connector, shared by everything that calls its company (see runtime.py). `call` is
    safe from several threads; the governor caps how many run.
    """

    def __init__(
        self,
        *,
        platform: str,
        tokens: TokenSource,
        governor: RateGovernor,
        clock: Clock,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.platform = platform
        self.tokens = tokens
        self.http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self.retry = retry or RetryPolicy()
        self.governor = governor
        self.clock = clock
        self._extra = dict(extra_headers or {})

    @property
    def calls(self) -> int:
        return self.governor.calls

    def close(self) -> None:
        self.http.close()

    def call(
        self,
        method: str,
        url: str,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        write: bool = False,
        idempotency_key: str | None = None,
    ) -> Reply:
        """One logical call, retried as `RetryPolicy` says; raises the mapped ArsyncError.

        `write`: the call changes something on the platform (a QBO query is a POST that only
        reads: not a write). A write whose request may have been performed is retried only with
        an `idempotency_key`, which is sent where the platform reads it; otherwise, and once the
        key's window has passed, it raises OutcomeUnknown.
        """
        policy = self.retry
        if idempotency_key is not None:
            if not write:
                raise ValueError("an idempotency key belongs to a write")
            place, name = IDEMPOTENCY_KEY[self.platform]
            if place == "query":
                params = {**(params or {}), name: idempotency_key}
            else:
                headers = {**(headers or {}), name: idempotency_key}
        window = policy.idempotency_window.get(self.platform, timedelta(0))
        first = self.clock.monotonic()

        def retryable(err: BaseException) -> bool:
            if isinstance(err, _MaybePerformed):
                # resent only under a key the platform still remembers
                keyed = idempotency_key is not None
                return keyed and self.clock.monotonic() - first < window.total_seconds()
            return isinstance(err, TransientError) and not isinstance(err, Parked)

        def wait(state: RetryCallState) -> float:
            err = state.outcome.exception() if state.outcome else None
            backoff = min(policy.cap, policy.initial * 2 ** (state.attempt_number - 1))
            backoff = random.uniform(backoff / 2, backoff)  # jitter, not security
            if isinstance(err, RateLimited):
                # The governor holds every other call back for as long; this one waits too.
                return 0.0
            if isinstance(err, TransientError) and err.retry_after is not None:
                return min(max(err.retry_after, 0.0), policy.cap)
            return backoff

        retrying = Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(policy.attempts),
            wait=wait,
            sleep=self.clock.sleep,
            reraise=True,
        )
        try:
            return retrying(self._once, method, url, what, params, headers, content, json, write)
        except _MaybePerformed as err:
            raise OutcomeUnknown(
                f"{what}: no answer came back ({err}), so it may or may not have been done; "
                "it is not sent again before the platform is read back"
            ) from err

    def _once(
        self,
        method: str,
        url: str,
        what: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        content: bytes | None,
        body: Any,
        write: bool,
    ) -> Reply:
        for attempt in (1, 2):
            token = self.tokens.access_token()
            sent = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                **self._extra,
                **(headers or {}),
            }
            started = self.governor.acquire()
            response: httpx.Response | None = None
            try:
                response = self.http.request(
                    method, url, params=params, headers=sent, content=content, json=body
                )
            except _NOT_SENT as err:
                raise TransientError(f"{what}: connection failed ({type(err).__name__})") from err
            except httpx.TimeoutException as err:
                failed = _MaybePerformed if write else TransientError
                raise failed(f"{what}: timed out") from err
            except httpx.TransportError as err:
                failed = _MaybePerformed if write else TransientError
                raise failed(f"{what}: connection failed ({type(err).__name__})") from err
            finally:
                if response is None:
                    self.governor.release(started=started)
                else:
                    self.governor.release(response.headers, response.status_code, started)
            if response.status_code == 401 and attempt == 1:
                # An access token can die early (revoked, clock skew): one fresh try.
                self.tokens.invalidate(token)
                continue
            if response.status_code == 429:
                limited = error_for_response(response, what, self.clock.now())
                assert isinstance(limited, RateLimited)
                wait = limited.retry_after
                if wait is None:
                    wait = (
                        1.0 if limited.problem == "concurrent" else self.retry.default_throttle_wait
                    )
                    limited.retry_after = wait
                self.governor.hold(wait, limited.problem or "rate limit")
                raise limited
            if response.status_code >= 400:
                error = error_for_response(response, what, self.clock.now())
                if write and response.status_code >= 500:
                    # The platform may have done it before failing: unknown for a write.
                    raise _MaybePerformed(
                        str(error), retry_after=getattr(error, "retry_after", None)
                    )
                raise error
            if response.status_code in (204, 304) or not response.content:
                return Reply(response.status_code, response.headers, None)
            return Reply(response.status_code, response.headers, json_body(response, what))
        raise AssertionError("unreachable")  # pragma: no cover
