"""Typed HTTP access to the QuickBooks Online Accounting API (no arsync domain here)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from arsync.connectors.http import DEFAULT_TIMEOUT, request
from arsync.errors import DataError

PRODUCTION_API = "https://quickbooks.api.intuit.com"
MINOR_VERSION = "75"
MAX_RESULTS = 1000


class QuickBooksClient:
    def __init__(
        self,
        realm_id: str,
        access_token: str,
        *,
        api_base: str = PRODUCTION_API,
        http: httpx.Client | None = None,
    ) -> None:
        self.realm_id = realm_id
        self._base = f"{api_base.rstrip('/')}/v3/company/{realm_id}"
        self._http = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
        self._headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/json"}

    def close(self) -> None:
        self._http.close()

    def query(self, sql: str) -> dict[str, Any]:
        body = request(
            self._http,
            "POST",
            f"{self._base}/query",
            "QuickBooks query",
            params={"minorversion": MINOR_VERSION},
            content=sql.encode(),
            headers={**self._headers, "Content-Type": "application/text"},
        )
        if not isinstance(body, dict) or not isinstance(body.get("QueryResponse"), dict):
            raise DataError("QuickBooks query: no QueryResponse in the reply")
        return body["QueryResponse"]  # type: ignore[no-any-return]

    def query_all(self, entity: str, where: str = "") -> Iterator[list[dict[str, Any]]]:
        """Every row of `entity`, a page of up to 1000 at a time (STARTPOSITION is 1-based)."""
        start = 1
        clause = f" WHERE {where}" if where else ""
        while True:
            # The query language has no bind parameters; `entity` and `where` come from code.
            page = self.query(
                f"SELECT * FROM {entity}{clause} ORDERBY Id "
                f"STARTPOSITION {start} MAXRESULTS {MAX_RESULTS}"
            )
            rows = page.get(entity, [])
            if not isinstance(rows, list):
                raise DataError(f"QuickBooks query: {entity} is not a list")
            if rows:
                yield rows
            if len(rows) < MAX_RESULTS:
                return
            start += MAX_RESULTS
