"""Typed HTTP access to the QuickBooks Online Accounting API (no arsync domain here)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote

from arsync.connectors.http import ApiSession, Reply
from arsync.errors import DataError, PermanentError

PRODUCTION_API = "https://quickbooks.api.intuit.com"
MINOR_VERSION = "75"
#: the largest page QBO serves (more is a validation error)
MAX_RESULTS = 1000
#: ids per `Id IN (...)` query: keeps the query text short and the page well under MAX_RESULTS
IDS_PER_QUERY = 100
#: the most items QBO takes in one `POST /batch`
MAX_BATCH_ITEMS = 30

Row = dict[str, Any]


def _quote(value: str) -> str:
    """A string literal of the query language (it has no bind parameters)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class QuickBooksClient:
    """One company (realm) on QBO; every call goes through the connector's `ApiSession`."""

    def __init__(self, session: ApiSession, realm_id: str, api_base: str = PRODUCTION_API) -> None:
        self.session = session
        self.realm_id = realm_id
        self._base = f"{api_base.rstrip('/')}/v3/company/{realm_id}"

    # -- plumbing ----------------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        content: bytes | None = None,
        json: Any = None,
        request_id: str | None = None,
    ) -> tuple[dict[str, Any], str | None]:
        """One call; `request_id` makes it a write under QBO's `requestid` (every write here
        carries one, so a lost reply can be resent while Intuit remembers it)."""
        reply = self.session.call(
            method,
            f"{self._base}/{path}",
            what,
            params={**(params or {}), "minorversion": MINOR_VERSION},
            headers=headers,
            content=content,
            json=json,
            write=request_id is not None,
            idempotency_key=request_id,
        )
        body = reply.body
        if not isinstance(body, dict):
            raise DataError(f"{what}: the reply is not a JSON object")
        return body, _server_time(body, reply)

    # -- query -------------------------------------------------------------------------------------
    def query(self, sql: str) -> tuple[dict[str, Any], str | None]:
        """(the `QueryResponse` object, the platform's time of the reply) of one query."""
        body, at = self._call(
            "POST",
            "query",
            "QuickBooks query",
            headers={"Content-Type": "application/text"},
            content=sql.encode(),
        )
        response = body.get("QueryResponse")
        if not isinstance(response, dict):
            raise DataError("QuickBooks query: the reply has no QueryResponse object")
        return response, at

    def query_page(self, entity: str, where: str, start: int) -> tuple[list[Row], str | None]:
        """One page of up to MAX_RESULTS rows from the 1-based STARTPOSITION `start`.

        A page past the end is an empty QueryResponse (`{}`), so an empty list, not an error.
        """
        clause = f" WHERE {where}" if where else ""
        # `entity` and `where` come from code, never from the platform or a user.
        response, at = self.query(
            f"SELECT * FROM {entity}{clause} ORDERBY Id "
            f"STARTPOSITION {start} MAXRESULTS {MAX_RESULTS}"
        )
        return _rows(response, entity, "QuickBooks query"), at

    def query_pages(
        self, entity: str, where: str = "", start: int = 1
    ) -> Iterator[tuple[list[Row], str | None]]:
        """Every page of `entity` from `start` on, the last one short (possibly empty)."""
        while True:
            rows, at = self.query_page(entity, where, start)
            yield rows, at
            if len(rows) < MAX_RESULTS:
                return
            start += MAX_RESULTS

    def invoices_by_id(self, ids: Iterable[str]) -> list[Row]:
        """The invoices among `ids` that QBO still has (a deleted one is simply absent)."""
        wanted = sorted(set(ids), key=lambda i: (len(i), i))
        found: list[Row] = []
        for n in range(0, len(wanted), IDS_PER_QUERY):
            chunk = ", ".join(_quote(i) for i in wanted[n : n + IDS_PER_QUERY])
            response, _at = self.query(
                f"SELECT * FROM Invoice WHERE Id IN ({chunk}) STARTPOSITION 1 "
                f"MAXRESULTS {MAX_RESULTS}"
            )
            found.extend(_rows(response, "Invoice", "QuickBooks query"))
        return found

    def attachables_on(self, entity: str, ids: Iterable[str]) -> list[Row]:
        """Every Attachable linked to one of `ids` of `entity` (e.g. "Invoice"), read
        IDS_PER_QUERY ids per query and page by page.

        Intuit's examples ask `AttachableRef.EntityRef.Type = 'invoice' AND
        AttachableRef.EntityRef.value = '<id>'` (spelt so); `IN` is the query language's own
        list form of the same condition. QBO holds both conditions to one and the same
        reference of an attachable (a note on customer 5 that also points at invoice 9 is not
        a note on invoice 5).
        """
        wanted = sorted(set(ids), key=lambda i: (len(i), i))
        found: dict[str, Row] = {}
        for n in range(0, len(wanted), IDS_PER_QUERY):
            chunk = ", ".join(_quote(i) for i in wanted[n : n + IDS_PER_QUERY])
            where = (
                f"AttachableRef.EntityRef.Type = {_quote(entity)} "
                f"AND AttachableRef.EntityRef.value IN ({chunk})"
            )
            for rows, _at in self.query_pages("Attachable", where):
                for row in rows:
                    # An attachable linked to invoices of two chunks comes back in both.
                    found.setdefault(str(row.get("Id")), row)
        return list(found.values())

    # -- writes ------------------------------------------------------------------------------------
    def send_invoice(self, invoice_id: str, *, request_id: str, send_to: str | None = None) -> Row:
        """`POST /invoice/{id}/send[?sendTo=]`: QBO emails the invoice and answers with it
        (EmailStatus, DeliveryInfo, BillEmail as sent)."""
        what = "QuickBooks invoice email"
        body, _at = self._call(
            "POST",
            f"invoice/{quote(invoice_id, safe='')}/send",
            what,
            params={"sendTo": send_to} if send_to is not None else None,
            # Intuit's reference sends no body, typed application/octet-stream.
            headers={"Content-Type": "application/octet-stream"},
            content=b"",
            request_id=request_id,
        )
        row = body.get("Invoice")
        if not isinstance(row, dict):
            raise DataError(f"{what}: the reply has no Invoice object")
        return row

    def create_attachable(self, attachable: Row, *, request_id: str) -> Row:
        """`POST /attachable`: one Attachable created; QBO answers with it."""
        what = "QuickBooks attachable note"
        body, _at = self._call("POST", "attachable", what, json=attachable, request_id=request_id)
        row = body.get("Attachable")
        if not isinstance(row, dict):
            raise DataError(f"{what}: the reply has no Attachable object")
        return row

    def batch(self, items: list[Row], *, request_id: str) -> list[Row]:
        """`POST /batch` with up to MAX_BATCH_ITEMS items (each with its own `bId`); the
        `BatchItemResponse` items, in whatever order QBO gives them. A refused item carries a
        `Fault` and the batch is still HTTP 200."""
        what = "QuickBooks batch"
        if not 1 <= len(items) <= MAX_BATCH_ITEMS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_ITEMS} items, not {len(items)}")
        body, _at = self._call(
            "POST", "batch", what, json={"BatchItemRequest": items}, request_id=request_id
        )
        answers = body.get("BatchItemResponse")
        if not isinstance(answers, list) or not all(isinstance(a, dict) for a in answers):
            raise DataError(f"{what}: the reply has no BatchItemResponse list of objects")
        return answers

    # -- change data capture -----------------------------------------------------------------------
    def cdc(self, entities: list[str], since: datetime) -> tuple[dict[str, list[Row]], str | None]:
        """Objects of `entities` changed at or after `since`, by entity, and the reply's time.

        Deleted objects come back as rows with `"status": "Deleted"`.
        """
        what = "QuickBooks change data capture"
        if since.tzinfo is None:
            raise ValueError("cdc: `since` must be timezone-aware")
        body, at = self._call(
            "GET",
            "cdc",
            what,
            params={
                "entities": ",".join(entities),
                # Whole seconds, rounded down: an earlier bound only repeats, never misses.
                "changedSince": since.isoformat(timespec="seconds"),
            },
        )
        envelopes = body.get("CDCResponse")
        if not isinstance(envelopes, list):
            raise DataError(f"{what}: the reply has no CDCResponse list")
        changed: dict[str, list[Row]] = {entity: [] for entity in entities}
        for envelope in envelopes:
            responses = envelope.get("QueryResponse") if isinstance(envelope, dict) else None
            if not isinstance(responses, list):
                raise DataError(f"{what}: a CDCResponse has no QueryResponse list")
            for response in responses:
                if not isinstance(response, dict):
                    raise DataError(f"{what}: a QueryResponse entry is not an object")
                for entity in entities:
                    if entity in response:
                        changed[entity].extend(_rows(response, entity, what))
        return changed, at

    # -- the company -------------------------------------------------------------------------------
    def company_info(self) -> dict[str, Any]:
        body, _at = self._call("GET", f"companyinfo/{self.realm_id}", "QuickBooks company info")
        info = body.get("CompanyInfo")
        if not isinstance(info, dict):
            raise DataError("QuickBooks company info: the reply has no CompanyInfo object")
        return info

    def customer_types(self) -> list[Row]:
        """The company's customer types (QBO lists the active ones), in one page."""
        response, _at = self.query(
            f"SELECT * FROM CustomerType STARTPOSITION 1 MAXRESULTS {MAX_RESULTS}"
        )
        return _rows(response, "CustomerType", "QuickBooks customer types")

    def customer_type(self, type_id: str) -> Row | None:
        """One customer type by Id, inactive ones too; None when QBO has no such type."""
        what = "QuickBooks customer type"
        try:
            body, _at = self._call("GET", f"customertype/{quote(type_id, safe='')}", what)
        except PermanentError as err:
            if _fault_codes(err.body) & {"610"}:
                return None
            raise
        row = body.get("CustomerType")
        if not isinstance(row, dict):
            raise DataError(f"{what}: the reply has no CustomerType object")
        return row

    def preferences(self) -> dict[str, Any] | None:
        """The company's Preferences (home currency among them), None when QBO lists none."""
        response, _at = self.query("SELECT * FROM Preferences")
        rows = _rows(response, "Preferences", "QuickBooks preferences")
        return rows[0] if rows else None


def _rows(response: dict[str, Any], entity: str, what: str) -> list[Row]:
    rows = response.get(entity, [])
    if not isinstance(rows, list):
        raise DataError(f"{what}: {entity} is not a list")
    for row in rows:
        if not isinstance(row, dict):
            raise DataError(f"{what}: a {entity} row is not an object")
    return rows


def fault_errors(body: object) -> list[dict[str, Any]]:
    """The `Error` objects of a QBO fault body (`{"Fault": {"Error": [...]}}`) or of a bare
    `Fault` object (as a batch item carries it)."""
    fault = body.get("Fault", body) if isinstance(body, dict) else None
    errors = fault.get("Error") if isinstance(fault, dict) else None
    if not isinstance(errors, list):
        return []
    return [e for e in errors if isinstance(e, dict)]


def _fault_codes(body: object) -> set[str]:
    """The error codes of a QBO fault body (`{"Fault": {"Error": [{"code": ...}]}}`)."""
    return {str(e.get("code")) for e in fault_errors(body)}


def _server_time(body: dict[str, Any], reply: Reply) -> str | None:
    """The platform's clock at the reply: the envelope's `time`, else the `Date` header."""
    stamp = body.get("time")
    if isinstance(stamp, str) and stamp:
        return stamp
    header = reply.headers.get("date")
    if header:
        try:
            moment = parsedate_to_datetime(header)
        except (TypeError, ValueError):
            return None
        # Whole seconds only, so never later than the platform's real time.
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()
    return None
