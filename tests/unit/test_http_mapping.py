"""HTTP outcomes map to the exception tree; Retry-After and Xero dates parse."""

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest

from arsync.connectors.http import error_for_response, retry_after_seconds
from arsync.connectors.xero.client import parse_xero_date
from arsync.errors import AuthError, DataError, PermanentError, RateLimited, TransientError

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_seconds("120", NOW) == 120.0
    assert retry_after_seconds("Thu, 01 Jan 2026 00:02:00 GMT", NOW) == 120.0
    assert retry_after_seconds("Thu, 01 Jan 2026 00:02:00 GMT", NOW + timedelta(minutes=5)) == 0
    assert retry_after_seconds("soon", NOW) is None
    assert retry_after_seconds(None, NOW) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, RateLimited), (401, AuthError), (503, TransientError), (400, PermanentError)],
)
def test_status_table(status: int, kind: type[Exception]) -> None:
    response = httpx.Response(status, headers={"Retry-After": "7"}, text="{}")
    err = error_for_response(response, "call", NOW)
    assert type(err) is kind
    if isinstance(err, TransientError):
        assert err.retry_after == 7.0


def test_xero_dates() -> None:
    assert parse_xero_date("/Date(1439434356790+0000)/") == datetime(
        2015, 8, 13, 2, 52, 36, 790000, tzinfo=UTC
    )
    shifted = parse_xero_date("/Date(1439434356790+1300)/")
    assert shifted.utcoffset() == timedelta(hours=13)
    assert shifted == datetime(2015, 8, 13, 2, 52, 36, 790000, tzinfo=UTC)
    assert parse_xero_date("2026-11-30T00:00:00") == datetime(2026, 11, 30, tzinfo=UTC)
    assert parse_xero_date("2026-11-30T00:00:00+01:00").tzinfo == timezone(timedelta(hours=1))
    with pytest.raises(DataError):
        parse_xero_date("yesterday")
