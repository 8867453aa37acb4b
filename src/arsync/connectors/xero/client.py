"""Typed HTTP access to the Xero Accounting API (no arsync domain here)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from arsync.connectors.http import ApiSession, Reply
from arsync.errors import DataError, PermanentError

PRODUCTION_API = "https://api.xero.com"
#: the most Xero serves in one page (since July 2024; the default is 100)
PAGE_SIZE = 1000
#: how many ids one `IDs=` look-up carries, to keep the URL well under Xero's length limit
IDS_PER_CALL = 100
ENDPOINTS = ("Invoices", "Payments", "CreditNotes", "Contacts")

Row = dict[str, Any]

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


def modified_since_header(moment: datetime) -> str:
    """`If-Modified-Since` as ISO 8601 in UTC, to the second, with an explicit offset.

    E.g. `2026-11-23T14:59:59+00:00`: Xero's OpenAPI file declares the header a `date-time`
    (RFC 3339), which is also what xero-python sends; RFC 1123 (HTTP's own form) is not allowed.
    """
    return moment.astimezone(UTC).replace(microsecond=0).isoformat()


def server_time(reply: Reply, what: str) -> datetime:
    """The reply's `Date` header as UTC: the platform's clock, which every cursor is kept in."""
    raw = reply.headers.get("date")
    if not raw:
        raise DataError(f"{what}: the reply has no Date header")
    try:
        moment = parsedate_to_datetime(raw)
    except (TypeError, ValueError, IndexError) as err:
        raise DataError(f"{what}: unreadable Date header {raw!r}") from err
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class XeroClient:
    """One organisation's Accounting API; every call names the tenant in `xero-tenant-id`."""

    def __init__(self, session: ApiSession, tenant_id: str, api_base: str = PRODUCTION_API) -> None:
        self.session = session
        self.tenant_id = tenant_id
        root = api_base.rstrip("/")
        self._base = f"{root}/api.xro/2.0"

    def _get(
        self,
        path: str,
        what: str,
        params: Mapping[str, str],
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        sent = {"xero-tenant-id": self.tenant_id, **(headers or {})}
        return self.session.call("GET", f"{self._base}{path}", what, params=params, headers=sent)

    def page(
        self,
        endpoint: str,
        page: int,
        *,
        where: str | None = None,
        statuses: str | None = None,
        modified_since: datetime | None = None,
        summary_only: bool = False,
        **extra: str,
    ) -> tuple[list[Row], dict[str, Any] | None, datetime]:
        """One page (1-based) of a list endpoint: (rows, pagination or None, server time)."""
        if endpoint not in ENDPOINTS:
            raise ValueError(f"unknown Xero list endpoint {endpoint!r}")
        if page < 1:
            raise ValueError("Xero pages start at 1")
        what = f"Xero {endpoint} page {page}"
        params = {"page": str(page), "pageSize": str(PAGE_SIZE), **extra}
        if where:
            params["where"] = where
        if statuses:
            params["Statuses"] = statuses
        if summary_only:
            params["summaryOnly"] = "true"
        headers = {}
        if modified_since is not None:
            headers["If-Modified-Since"] = modified_since_header(modified_since)
        reply = self._get(f"/{endpoint}", what, params, headers)
        when = server_time(reply, what)
        if reply.status == 304:
            return [], None, when  # HTTP's "nothing changed since": no body to read
        rows = _rows(reply.body, endpoint, what)
        pagination = reply.body.get("pagination")
        if pagination is not None and not isinstance(pagination, dict):
            raise DataError(f"{what}: pagination is not an object")
        return rows, pagination, when

    def invoices_by_id(self, ids: Iterable[str]) -> list[Row]:
        """The invoices with these InvoiceIDs (any status), read `IDS_PER_CALL` at a time."""
        wanted = list(dict.fromkeys(ids))
        rows: list[Row] = []
        for start in range(0, len(wanted), IDS_PER_CALL):
            chunk = wanted[start : start + IDS_PER_CALL]
            what = f"Xero Invoices by id ({len(chunk)})"
            reply = self._get("/Invoices", what, {"IDs": ",".join(chunk), "summaryOnly": "true"})
            rows.extend(_rows(reply.body, "Invoices", what))
        return rows

    def contact_groups(self) -> list[Row]:
        """Every contact group (GET /ContactGroups), without its members; Xero lists the
        ACTIVE ones only."""
        what = "Xero contact groups"
        reply = self._get("/ContactGroups", what, {})
        return _rows(reply.body, "ContactGroups", what)

    def contact_group(self, group_id: str) -> Row | None:
        """One contact group with its members (`Contacts`), however many: None when Xero no
        longer has it (deleted since it was listed)."""
        what = "Xero contact group"
        try:
            reply = self._get(f"/ContactGroups/{quote(group_id, safe='')}", what, {})
        except PermanentError as err:
            if err.status == 404:
                return None
            raise
        rows = _rows(reply.body, "ContactGroups", what)
        return rows[0] if rows else None

    # -- writes: each under the caller's Idempotency-Key ------------------------------------------
    def _write(self, method: str, path: str, what: str, body: Any, key: str) -> Reply:
        return self.session.call(
            method,
            f"{self._base}{path}",
            what,
            headers={"xero-tenant-id": self.tenant_id},
            json=body,
            write=True,
            idempotency_key=key,
        )

    def email_invoice(self, invoice_id: str, *, key: str) -> None:
        """POST /Invoices/{id}/Email with `{}`: Xero emails the invoice to its contact (204)."""
        self._write("POST", f"/Invoices/{_quoted(invoice_id)}/Email", "Xero email", {}, key)

    def add_history(self, invoice_id: str, details: str, *, key: str) -> list[Row]:
        """PUT /Invoices/{id}/History with one record; the records Xero says it made."""
        what = "Xero history note"
        body = {"HistoryRecords": [{"Details": details}]}
        reply = self._write("PUT", f"/Invoices/{_quoted(invoice_id)}/History", what, body, key)
        return _rows(reply.body, "HistoryRecords", what)

    def history(self, invoice_id: str) -> list[Row] | None:
        """GET /Invoices/{id}/History: every record; None when Xero has no such invoice."""
        what = "Xero invoice history"
        try:
            reply = self._get(f"/Invoices/{_quoted(invoice_id)}/History", what, {})
        except PermanentError as err:
            if err.status == 404:
                return None
            raise
        return _rows(reply.body, "HistoryRecords", what)

    def set_expected_date(self, invoice_id: str, day: str | None, *, key: str) -> Row | None:
        """POST /Invoices/{id} with the ExpectedPaymentDate (`YYYY-MM-DD`), or None to clear it
        (`"ExpectedPaymentDateString": ""`: a null would be read as "not given"); the invoice as
        Xero then has it, when the reply lists it."""
        what = "Xero expected payment date"
        item: Row = {"InvoiceID": invoice_id}
        if day is None:
            item["ExpectedPaymentDateString"] = ""
        else:
            item["ExpectedPaymentDate"] = day
        body = {"Invoices": [item]}
        reply = self._write("POST", f"/Invoices/{_quoted(invoice_id)}", what, body, key)
        rows = _rows(reply.body, "Invoices", what)
        return rows[0] if rows else None

    def organisation(self) -> Row:
        """The organisation itself (GET /Organisation)."""
        what = "Xero organisation"
        reply = self._get("/Organisation", what, {})
        rows = _rows(reply.body, "Organisations", what)
        if not rows:
            raise DataError(f"{what}: the reply lists no organisation")
        return rows[0]


def validation_messages(body: Any) -> list[str]:
    """The messages of a Xero 400: every `Elements[].ValidationErrors[].Message`, else the
    top-level `Message` (or a problem's `Detail`); [] when the body says nothing readable."""
    if not isinstance(body, dict):
        return []
    found: list[str] = []
    elements = body.get("Elements")
    for element in elements if isinstance(elements, list) else ():
        errors = element.get("ValidationErrors") if isinstance(element, dict) else None
        for error in errors if isinstance(errors, list) else ():
            message = error.get("Message") if isinstance(error, dict) else None
            if isinstance(message, str) and message.strip():
                found.append(message.strip())
    if not found:
        for name in ("Message", "Detail"):
            message = body.get(name)
            if isinstance(message, str) and message.strip():
                found.append(message.strip())
    return found


def _quoted(ident: str) -> str:
    return quote(ident, safe="")


def _rows(body: Any, key: str, what: str) -> list[Row]:
    if not isinstance(body, dict):
        raise DataError(f"{what}: the reply is not a JSON object")
    rows = body.get(key)
    if not isinstance(rows, list):
        raise DataError(f"{what}: {key} is missing or not a list")
    if not all(isinstance(row, dict) for row in rows):
        raise DataError(f"{what}: {key} holds something other than objects")
    return rows
