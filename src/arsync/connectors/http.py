"""Shared HTTP plumbing: one table mapping HTTP outcomes to arsync's exception tree."""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from arsync.errors import (
    ArsyncError,
    AuthError,
    DataError,
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
    try:
        return response.json()
    except ValueError as err:
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
