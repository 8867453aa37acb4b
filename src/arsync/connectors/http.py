"""Shared HTTP plumbing: one table mapping HTTP outcomes to arsync's exception tree."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from arsync.connectors.base import Limits, TokenSource
from arsync.connectors.governor import RateGovernor
from arsync.errors import (
    ArsyncError,
    AuthError,
    DataError,
    Parked,
    PermanentError,
    RateLimited,
    TransientError,
)

DEFAULT_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
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
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def error_for_response(response: httpx.Response, what: str) -> ArsyncError:
    """The exception a non-2xx response stands for. The message never carries a token."""
    status = response.status_code
    snippet = response.text[:300].replace("\n", " ")
    if status == 429:
        return RateLimited(
            f"{what}: rate limited (HTTP 429)",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
            problem=response.headers.get("X-Rate-Limit-Problem"),
        )
    if status in (401, 403):
        return AuthError(f"{what}: not authorised (HTTP {status}): {snippet}")
    if status >= 500:
        return TransientError(
            f"{what}: the platform failed (HTTP {status})",
            retry_after=retry_after_seconds(response.headers.get("Retry-After")),
        )
    return PermanentError(f"{what}: refused (HTTP {status}): {snippet}")


def json_body(response: httpx.Response, what: str) -> Any:
    """The reply's JSON, with every non-integer number as an exact Decimal (never a float)."""
    try:
        return json.loads(response.content, parse_float=Decimal)
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError both
        raise DataError(f"{what}: the reply is not JSON") from err


def request(client: httpx.Client, method: str, url: str, what: str, **kwargs: Any) -> Any:
    """One HTTP exchange; transport failures become TransientError, bad statuses their class."""
    try:
        response = client.request(method, url, **kwargs)
    except httpx.TimeoutException as err:
        raise TransientError(f"{what}: timed out") from err
    except httpx.TransportError as err:
        raise TransientError(f"{what}: connection failed ({type(err).__name__})") from err
    if response.status_code >= 400:
        raise error_for_response(response, what)
    if response.status_code == 204 or not response.content:
        return None
    return json_body(response, what)


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


class ApiSession:
    """Every call a connector makes: token, rate governor, retries and error mapping.

    One per connector. `call` is safe from several threads; the governor caps how many run.
    """

    def __init__(
        self,
        *,
        platform: str,
        tokens: TokenSource,
        limits: Limits,
        http: httpx.Client | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        governor: RateGovernor | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.platform = platform
        self.tokens = tokens
        self.http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self.retry = retry or RetryPolicy()
        self.governor = governor or RateGovernor(limits, sleep=sleep)
        self._sleep = sleep
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
    ) -> Reply:
        """One logical call, retried as `RetryPolicy` says; raises the mapped ArsyncError."""
        policy = self.retry

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
            retry=retry_if_exception(_retryable),
            stop=stop_after_attempt(policy.attempts),
            wait=wait,
            sleep=self._sleep,
            reraise=True,
        )
        return retrying(self._once, method, url, what, params, headers, content, json)

    def _once(
        self,
        method: str,
        url: str,
        what: str,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        content: bytes | None,
        body: Any,
    ) -> Reply:
        for attempt in (1, 2):
            token = self.tokens.access_token()
            sent = {
                "Authorization": f"Bearer {token}",
                "Accept": "application/json",
                **self._extra,
                **(headers or {}),
            }
            self.governor.acquire()
            response: httpx.Response | None = None
            try:
                response = self.http.request(
                    method, url, params=params, headers=sent, content=content, json=body
                )
            except httpx.TimeoutException as err:
                raise TransientError(f"{what}: timed out") from err
            except httpx.TransportError as err:
                raise TransientError(f"{what}: connection failed ({type(err).__name__})") from err
            finally:
                if response is None:
                    self.governor.release()
                else:
                    self.governor.release(response.headers, response.status_code)
            if response.status_code == 401 and attempt == 1:
                # An access token can die early (revoked, clock skew): one fresh try.
                self.tokens.invalidate(token)
                continue
            if response.status_code == 429:
                limited = error_for_response(response, what)
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
                raise error_for_response(response, what)
            if response.status_code in (204, 304) or not response.content:
                return Reply(response.status_code, response.headers, None)
            return Reply(response.status_code, response.headers, json_body(response, what))
        raise AssertionError("unreachable")  # pragma: no cover


def _retryable(err: BaseException) -> bool:
    return isinstance(err, TransientError) and not isinstance(err, Parked)
