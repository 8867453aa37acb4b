"""Typed HTTP access to the Xero Accounting API (no arsync domain here)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import httpx

from arsync.connectors.http import DEFAULT_TIMEOUT, request
from arsync.errors import DataError

PRODUCTION_API = "https://api.xero.com"
PAGE_SIZE = 1000

_MS_DATE = re.compile(r"^/Date\((-?\d+)([+-]\d{4})?\)/$")


def parse_xero_date(value: str) -> datetime:
    """Xero's `/Date(1439434356790+0000)/` (milliseconds since the epoch) or an ISO string."""
    match = _MS_DATE.match(value)
    if match is None:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as err:
            raise DataError(f"not a Xero date: {value!r}") from err
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    moment = datetime.fromtimestamp(int(match.group(1)) / 1000, tz=UTC)
    offset = match.group(2)
    if offset:
        sign = 1 if offset[0] == "+" else -1
        delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[3:5])) * sign
        moment = moment.astimezone(timezone(delta))
    return moment


class XeroClient:
    def __init__(
        self,
        tenant_id: str,
        access_token: str,
        *,
        api_base: str = PRODUCTION_API,
        http: httpx.Client | None = None,
    ) -> None:
        self.tenant_id = tenant_id
        self._base = f"{api_base.rstrip('/')}/api.xro/2.0"
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._headers = {
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json",
            "xero-tenant-id": tenant_id,
        }

    def close(self) -> None:
        self._http.close()

    def get(self, path: str, what: str, **params: str) -> dict[str, Any]:
        body = request(
            self._http, "GET", f"{self._base}{path}", what, params=params, headers=self._headers
        )
        if not isinstance(body, dict):
            raise DataError(f"{what}: the reply is not a JSON object")
        return body

    def invoice_pages(
        self, *, where: str | None = None, statuses: str | None = None, summary_only: bool = True
    ) -> Iterator[list[dict[str, Any]]]:
        """Every matching invoice, a page of up to 1000 at a time."""
        params = {"pageSize": str(PAGE_SIZE)}
        if where:
            params["where"] = where
        if statuses:
            params["Statuses"] = statuses
        if summary_only:
            params["summaryOnly"] = "true"
        page = 1
        while True:
            body = self.get("/Invoices", "Xero invoices", page=str(page), **params)
            rows = body.get("Invoices", [])
            if not isinstance(rows, list):
                raise DataError("Xero invoices: Invoices is not a list")
            if rows:
                yield rows
            if len(rows) < PAGE_SIZE:
                return
            page += 1
