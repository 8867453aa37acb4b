"""Xero's wire formats: MS-JSON dates, exact decimals, envelopes and error bodies."""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from starlette.responses import Response

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)
JSON_TYPE = "application/json; charset=utf-8"


# -- dates ----------------------------------------------------------------------------------------
def ms_date(day: date) -> str:
    """A calendar date as Xero sends it: midnight UTC in milliseconds, e.g. /Date(…+0000)/."""
    return f"/Date({(day - EPOCH.date()).days * 86_400_000}+0000)/"


def ms_datetime(moment: datetime) -> str:
    return f"/Date({(moment - EPOCH) // _MS}+0000)/"


def ms_datetime_bare(moment: datetime) -> str:
    """Envelope timestamps (DateTimeUTC) come without an offset."""
    return f"/Date({(moment - EPOCH) // _MS})/"


def iso_date(day: date) -> str:
    return day.isoformat() + "T00:00:00"


def iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


#: An ISO 8601 date-time as clients write it: date, "T" (or a space), hours and minutes, optional
#: seconds and fraction, optional "Z" or +hh:mm offset. xero-python sends `datetime.isoformat()`.
_ISO_DATE_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
    r"(?:[Zz]|[+-]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)


class BadIfModifiedSince(ValueError):
    """An If-Modified-Since header that is not an ISO 8601 date-time."""


def parse_if_modified_since(raw: str | None) -> datetime | None:
    """The If-Modified-Since header, to the second, as UTC; None when the header is absent.

    The OpenAPI file declares the header `format: date-time`; xero-python sends
    `datetime.isoformat()` (naive means UTC). Anything else (RFC 1123 included) raises
    BadIfModifiedSince, which the API answers with a 400 rather than quietly reading everything.
    """
    if raw is None:
        return None
    text = raw.strip()
    if _ISO_DATE_TIME.fullmatch(text) is None:
        raise BadIfModifiedSince(_bad_since(raw))
    try:
        moment = datetime.fromisoformat(text.replace(",", "."))
    except ValueError:
        raise BadIfModifiedSince(_bad_since(raw)) from None  # e.g. month 13, hour 25
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC).replace(microsecond=0)
    except OverflowError:
        # an offset pushing year 1 or 9999 off the calendar: before everything or after it
        return None if moment.year == 1 else datetime.max.replace(microsecond=0, tzinfo=UTC)


def _bad_since(raw: str) -> str:
    shown = raw if len(raw) <= 64 else raw[:61] + "..."
    return (
        "The If-Modified-Since header must be an ISO 8601 date-time such as "
        f"2026-11-23T14:59:59+00:00, not {shown!r}"
    )


# -- JSON ---------------------------------------------------------------------------------------
# Xero writes money as JSON numbers with their decimals (40.00), which the standard encoder cannot
# do for Decimal. The C encoder hands each Decimal to `default`, which returns it as a string
# fenced by NUL markers; two plain replacements then strip the quotes and fences into a number.
# No NUL reaches the output any other way: inputs carrying one are refused at the API edge.
_OPEN, _CLOSE = "\x00<", "\x00>"
_OPEN_JSON, _CLOSE_JSON = '"\\u0000<', '\\u0000>"'


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return _OPEN + format(value, "f") + _CLOSE
    raise TypeError(f"cannot encode {type(value).__name__} as JSON")


def dumps(value: Any) -> bytes:
    text = json.dumps(value, default=_default, separators=(",", ":"))
    return text.replace(_OPEN_JSON, "").replace(_CLOSE_JSON, "").encode("ascii")


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(dumps(body), status_code=status, media_type=JSON_TYPE, headers=headers)


def envelope(now: datetime, provider: str, **payload: Any) -> dict[str, Any]:
    """The wrapper every Accounting API answer carries."""
    return {
        "Id": str(uuid.uuid4()),
        "Status": "OK",
        "ProviderName": provider,
        "DateTimeUTC": ms_datetime_bare(now),
        **payload,
    }


# -- errors ---------------------------------------------------------------------------------------
def validation_error(messages: list[str], element: Mapping[str, Any] | None = None) -> Response:
    """HTTP 400, ErrorNumber 10: the shape of every Xero validation failure."""
    item: dict[str, Any] = dict(element or {})
    item["ValidationErrors"] = [{"Message": m} for m in messages]
    return json_response(
        {
            "ErrorNumber": 10,
            "Type": "ValidationException",
            "Message": "A validation exception occurred",
            "Elements": [item],
        },
        400,
    )


def api_exception(number: int, kind: str, message: str, status: int = 400) -> Response:
    """Xero's other numbered errors, e.g. 16 QueryParseException, 404 NotFound."""
    return json_response({"ErrorNumber": number, "Type": kind, "Message": message}, status)


def not_found() -> Response:
    # Xero answers an unknown id with 404 and a plain sentence, not JSON.
    return Response(
        "The resource you're looking for cannot be found",
        status_code=404,
        media_type="text/plain; charset=utf-8",
    )


def problem(
    status: int,
    title: str,
    detail: str,
    headers: Mapping[str, str] | None = None,
    *,
    typed: bool = True,
) -> Response:
    """The problem-details body Xero's gateway uses for 401, 403, 429 and 5xx.

    `typed=False` leaves out the null "Type", so that a 429 also reads as the spec's Error object.
    """
    body: dict[str, Any] = {"Type": None} if typed else {}
    body.update(
        Title=title, Status=status, Detail=detail, Instance=str(uuid.uuid4()), Extensions={}
    )
    return json_response(body, status, headers)
