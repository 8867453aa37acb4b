"""The Accounting API (api.xro/2.0) and the connections endpoint of api.xero.com."""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from arsync.sandbox.oauth import AccessToken, Grant
from arsync.sandbox.xero import render
from arsync.sandbox.xero.serialise import (
    EPOCH,
    api_exception,
    envelope,
    json_response,
    ms_datetime,
    not_found,
    parse_if_modified_since,
    problem,
    validation_error,
)
from arsync.sandbox.xero.state import (
    Contact,
    ContactGroup,
    CreditNote,
    GroupError,
    HistoryEntry,
    IdempotentReply,
    Invoice,
    Organisation,
    Payment,
)
from arsync.sandbox.xero.where import WhereError, compile_where, parse

if TYPE_CHECKING:
    from arsync.sandbox.xero.sim import XeroSim

Handler = Callable[["Call"], Awaitable[Response]]

#: what the sandbox writes into History after an API email (XeroLimits.email_history): Xero's
#: own record is undocumented, so this wording is the sandbox's choice
EMAIL_CHANGES = "Sent"
EMAIL_DETAILS = "This invoice has been sent to {to}."
#: the sandbox's answer to an email over the day's cap (Xero's own wording is undocumented)
EMAIL_CAP_MESSAGE = "The daily limit of emails for this organisation has been reached"


def utf16_units(text: str) -> int:
    """A string's length as .NET (Xero) counts it: UTF-16 code units, so an emoji is 2."""
    return len(text.encode("utf-16-le")) // 2


# -- routes ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Route:
    method: str
    pattern: re.Pattern[str]
    template: str  # as the ledger and fault rules name it
    name: str
    scopes: frozenset[str]  # any one of them admits the call


def _r(method: str, path: str, name: str, scopes: set[str]) -> Route:
    # Xero's paths are case-insensitive: match on the lower-cased path, keep the id's own case.
    # A second id ({sub}) is kept in the same match: the handler reads "{id}/…/{sub}" as one.
    regex = re.escape(path.lower())
    if "{sub}" in path:
        regex = regex.replace(r"\{id\}", r"(?P<id>[^/]+").replace(r"\{sub\}", r"[^/]+)")
    else:
        regex = regex.replace(r"\{id\}", r"(?P<id>[^/]+)")
    template = path.replace("{id}", "{" + _ID_NAMES.get(path.split("/")[3], "id") + "}")
    template = template.replace("{sub}", "{ContactID}")
    return Route(
        method, re.compile(regex + r"/?\Z"), f"{method} {template}", name, frozenset(scopes)
    )


_ID_NAMES = {
    "Invoices": "InvoiceID",
    "Payments": "PaymentID",
    "CreditNotes": "CreditNoteID",
    "Contacts": "ContactID",
    "ContactGroups": "ContactGroupID",
}
_TX_READ = {"accounting.transactions", "accounting.transactions.read"}
_INV_READ = _TX_READ | {"accounting.invoices", "accounting.invoices.read"}
_INV_WRITE = {"accounting.transactions", "accounting.invoices"}
_PAY_READ = _TX_READ | {"accounting.payments", "accounting.payments.read"}
_CONTACT_READ = {"accounting.contacts", "accounting.contacts.read"}
_CONTACT_WRITE = {"accounting.contacts"}
_SETTINGS_READ = {"accounting.settings", "accounting.settings.read"}
_V = "/api.xro/2.0"
ROUTES: tuple[Route, ...] = (
    _r("GET", f"{_V}/Invoices", "list_invoices", _INV_READ),
    _r("GET", f"{_V}/Invoices/{{id}}", "get_invoice", _INV_READ),
    _r("POST", f"{_V}/Invoices/{{id}}", "update_invoice", _INV_WRITE),
    _r("GET", f"{_V}/Invoices/{{id}}/History", "get_history", _INV_READ),
    _r("PUT", f"{_V}/Invoices/{{id}}/History", "put_history", _INV_WRITE),
    _r("POST", f"{_V}/Invoices/{{id}}/Email", "email_invoice", _INV_WRITE),
    _r("GET", f"{_V}/Invoices/{{id}}/OnlineInvoice", "online_invoice", _INV_READ),
    _r("GET", f"{_V}/Payments", "list_payments", _PAY_READ),
    _r("GET", f"{_V}/Payments/{{id}}", "get_payment", _PAY_READ),
    _r("GET", f"{_V}/CreditNotes", "list_credit_notes", _INV_READ),
    _r("GET", f"{_V}/CreditNotes/{{id}}", "get_credit_note", _INV_READ),
    _r("GET", f"{_V}/Contacts", "list_contacts", _CONTACT_READ),
    _r("GET", f"{_V}/Contacts/{{id}}", "get_contact", _CONTACT_READ),
    _r("GET", f"{_V}/ContactGroups", "list_groups", _CONTACT_READ),
    _r("PUT", f"{_V}/ContactGroups", "create_groups", _CONTACT_WRITE),
    _r("GET", f"{_V}/ContactGroups/{{id}}", "get_group", _CONTACT_READ),
    _r("POST", f"{_V}/ContactGroups/{{id}}", "update_group", _CONTACT_WRITE),
    _r("PUT", f"{_V}/ContactGroups/{{id}}/Contacts", "add_group_contacts", _CONTACT_WRITE),
    _r("DELETE", f"{_V}/ContactGroups/{{id}}/Contacts", "clear_group_contacts", _CONTACT_WRITE),
    _r(
        "DELETE",
        f"{_V}/ContactGroups/{{id}}/Contacts/{{sub}}",
        "remove_group_contact",
        _CONTACT_WRITE,
    ),
    _r("GET", f"{_V}/Organisation", "get_organisation", _SETTINGS_READ),
)


def match_route(method: str, path: str) -> tuple[Route, str | None] | None:
    lowered = path.lower()
    for route in ROUTES:
        if route.method != method:
            continue
        m = route.pattern.match(lowered)
        if m is not None:
            ident = path[m.start("id") : m.end("id")] if "id" in m.groupdict() else None
            return route, ident
    return None


# -- field accessors for where and order ----------------------------------------------------------
INVOICE_FIELDS: dict[str, Callable[[Any], Any]] = {
    "type": lambda i: i.type,
    "status": lambda i: i.status,
    "invoiceid": lambda i: i.invoice_id,
    "invoicenumber": lambda i: i.number,
    "reference": lambda i: i.reference,
    "contact.contactid": lambda i: i.contact.contact_id,
    "contact.name": lambda i: i.contact.name,
    "date": lambda i: i.date,
    "duedate": lambda i: i.due_date,
    "fullypaidondate": lambda i: i.fully_paid_on,
    "updateddateutc": lambda i: i.updated,
    "amountdue": lambda i: i.amount_due,
    "amountpaid": lambda i: i.amount_paid,
    "amountcredited": lambda i: i.amount_credited,
    "subtotal": lambda i: i.sub_total,
    "total": lambda i: i.total,
    "totaltax": lambda i: 0,
    "currencycode": lambda i: i.currency,
    "senttocontact": lambda i: i.sent,
    "hasattachments": lambda i: False,
    "expectedpaymentdate": lambda i: i.expected_payment_date,
}
PAYMENT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "paymentid": lambda p: p.payment_id,
    "status": lambda p: p.status,
    "paymenttype": lambda p: p.payment_type,
    "amount": lambda p: p.amount,
    "date": lambda p: p.date,
    "reference": lambda p: p.reference,
    "updateddateutc": lambda p: p.updated,
    "invoice.invoiceid": lambda p: p.invoice.invoice_id,
    "invoice.invoicenumber": lambda p: p.invoice.number,
    "invoice.type": lambda p: p.invoice.type,
    "invoice.contact.contactid": lambda p: p.invoice.contact.contact_id,
}
CREDIT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "creditnoteid": lambda c: c.credit_note_id,
    "creditnotenumber": lambda c: c.number,
    "type": lambda c: c.type,
    "status": lambda c: c.status,
    "total": lambda c: c.total,
    "remainingcredit": lambda c: c.remaining,
    "date": lambda c: c.date,
    "updateddateutc": lambda c: c.updated,
    "contact.contactid": lambda c: c.contact.contact_id,
    "contact.name": lambda c: c.contact.name,
    "currencycode": lambda c: c.currency,
    "reference": lambda c: c.reference,
}
CONTACT_FIELDS: dict[str, Callable[[Any], Any]] = {
    "contactid": lambda c: c.contact_id,
    "name": lambda c: c.name,
    "firstname": lambda c: c.first_name,
    "lastname": lambda c: c.last_name,
    "emailaddress": lambda c: c.email,
    "contactstatus": lambda c: c.status,
    "iscustomer": lambda c: c.is_customer,
    "issupplier": lambda c: c.is_supplier,
    "updateddateutc": lambda c: c.updated,
    "defaultcurrency": lambda c: c.currency,
}
GROUP_FIELDS: dict[str, Callable[[Any], Any]] = {
    "contactgroupid": lambda g: g.group_id,
    "name": lambda g: g.name,
    "status": lambda g: g.status,
}
_DATE_FIELDS = frozenset(
    {"date", "duedate", "fullypaidondate", "updateddateutc", "expectedpaymentdate"}
)


@dataclass
class Call:
    """One authorised Accounting API request."""

    request: Request
    route: Route
    ident: str | None
    org: Organisation
    grant: Grant
    now: datetime
    provider: str

    @property
    def q(self) -> dict[str, str]:
        # Xero reads query parameter names case-insensitively (IDs, ids, pageSize, pagesize)
        return {k.lower(): v for k, v in self.request.query_params.items()}

    def ok(self, **payload: Any) -> Response:
        return json_response(envelope(self.now, self.provider, **payload))


class QueryError(ValueError):
    """A bad query parameter: Xero answers 400."""


def _split(raw: str | None) -> list[str]:
    return [p.strip().strip('"').lower() for p in (raw or "").split(",") if p.strip()]


def _bool(raw: str | None) -> bool:
    return (raw or "").strip().lower() == "true"


def _int(raw: str | None, name: str) -> int | None:
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise QueryError(f"{name} must be a whole number, not {raw!r}") from None


def _order_key(
    order: str | None, fields: dict[str, Callable[[Any], Any]]
) -> list[tuple[Callable[[Any], Any], bool]]:
    keys: list[tuple[Callable[[Any], Any], bool]] = []
    for part in (order or "").split(","):
        words = part.split()
        if not words:
            continue
        if len(words) > 2 or (len(words) == 2 and words[1].upper() not in ("ASC", "DESC")):
            raise QueryError(f"order must be 'Field [ASC|DESC]', not {part.strip()!r}")
        getter = fields.get(words[0].lower())
        if getter is None:
            raise QueryError(f"cannot order by unknown field {words[0]!r}")
        keys.append((getter, len(words) == 2 and words[1].upper() == "DESC"))
    return keys


def _sort(items: list[Any], keys: list[tuple[Callable[[Any], Any], bool]]) -> list[Any]:
    # Stable sorts applied from the last key to the first give a multi-key order; None sorts
    # first ascending, as SQL Server (Xero's store) does.
    for getter, desc in reversed(keys):
        items.sort(key=_nulls_first(getter), reverse=desc)
    return items


def _nulls_first(getter: Callable[[Any], Any]) -> Callable[[Any], tuple[bool, Any]]:
    def key(rec: Any) -> tuple[bool, Any]:
        value = getter(rec)
        return (value is not None, value)

    return key


class AccountingRoutes:
    """Handlers of the Accounting API; each runs under the sandbox lock."""

    def __init__(self, sim: XeroSim) -> None:
        self.sim = sim

    @property
    def limits(self) -> Any:
        return self.sim.sandbox.settings.xero

    # -- listing machinery ------------------------------------------------------------------------
    def _select(
        self,
        call: Call,
        kind: str,
        items: Sequence[Any],
        fields: dict[str, Callable[[Any], Any]],
        extra: Callable[[Any], bool] | None,
        extra_key: Any,
    ) -> list[Any]:
        q = call.q
        where = q.get("where")
        since = parse_if_modified_since(call.request.headers.get("if-modified-since"))
        order = q.get("order")
        key = (kind, where, since, order, extra_key)
        predicate = None
        if where:
            try:
                predicate = compile_where(parse(where), fields, _DATE_FIELDS)
            except WhereError as err:
                raise QueryError(str(err)) from err
        order_keys = _order_key(order, fields)

        def compute() -> list[Any]:
            result = [
                rec
                for rec in items
                if (since is None or rec.updated >= since)
                and (extra is None or extra(rec))
                and (predicate is None or predicate(rec))
            ]
            return _sort(result, order_keys) if order_keys else result

        return call.org.cached(key, compute)

    def _page(self, call: Call, result: list[Any]) -> tuple[list[Any], dict[str, int] | None]:
        q = call.q
        page = _int(q.get("page"), "page")
        size = _int(q.get("pagesize"), "pageSize")
        if page is None:
            return result, None
        if page < 1:
            raise QueryError("page must be 1 or more")
        # Over the cap Xero serves the cap rather than failing; the pagination object says so.
        size = 100 if size is None or size < 1 else min(size, self.limits.max_page_size)
        start = (page - 1) * size
        count = len(result)
        return result[start : start + size], {
            "page": page,
            "pageSize": size,
            "pageCount": (count + size - 1) // size,
            "itemCount": count,
        }

    def _listing(
        self, call: Call, name: str, rows: list[dict[str, Any]], pagination: dict[str, int] | None
    ) -> Response:
        payload: dict[str, Any] = {}
        if pagination is not None:
            payload["pagination"] = pagination
        payload[name] = rows
        return call.ok(**payload)

    # -- invoices ---------------------------------------------------------------------------------
    async def list_invoices(self, call: Call) -> Response:
        q = call.q
        statuses = {s.upper() for s in _split(q.get("statuses"))}
        ids = set(_split(q.get("ids")))
        numbers = set(_split(q.get("invoicenumbers")))
        contacts = set(_split(q.get("contactids")))

        def extra(inv: Invoice) -> bool:
            return (
                (not statuses or inv.status in statuses)
                and (not ids or inv.invoice_id in ids)
                and (not numbers or inv.number.lower() in numbers)
                and (not contacts or inv.contact.contact_id in contacts)
            )

        flt = extra if statuses or ids or numbers or contacts else None
        key = (
            tuple(sorted(statuses)),
            tuple(sorted(ids)),
            tuple(sorted(numbers)),
            tuple(sorted(contacts)),
        )
        result = self._select(call, "invoices", call.org.invoice_list, INVOICE_FIELDS, flt, key)
        rows, pagination = self._page(call, result)
        summary = _bool(q.get("summaryonly"))
        # Line items come only with paging (or a single invoice), as Xero documents.
        lines = pagination is not None
        return self._listing(
            call,
            "Invoices",
            [render.invoice_json(inv, lines=lines, summary=summary) for inv in rows],
            pagination,
        )

    def _invoice(self, call: Call) -> Invoice | None:
        return call.org.find_invoice(call.ident or "")

    async def get_invoice(self, call: Call) -> Response:
        inv = self._invoice(call)
        if inv is None:
            return not_found()
        return call.ok(Invoices=[render.invoice_json(inv)])

    async def update_invoice(self, call: Call) -> Response:
        """POST /Invoices/{id}: the sandbox changes ExpectedPaymentDate only (set with a date,
        cleared with `"ExpectedPaymentDateString": ""`); other fields are refused, not ignored."""
        inv = self._invoice(call)
        if inv is None:
            return not_found()
        body = await _json_body(call.request)
        if not isinstance(body, dict):
            return post_data_invalid("the body must be a JSON object")
        if "Invoices" in body:
            items = body["Invoices"]
            if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
                return post_data_invalid("Invoices must be an array of objects")
            if len(items) != 1:
                return validation_error(["Send exactly one invoice to update"])
            item: dict[str, Any] = items[0]
        else:
            item = body
        element = {"InvoiceID": inv.invoice_id}
        refused = _unchangeable(item, inv)
        if refused is not None:
            return validation_error(
                [
                    f"{refused} cannot be changed here: the sandbox changes only the "
                    "ExpectedPaymentDate of an invoice through the API"
                ],
                element,
            )
        wanted: tuple[bool, date | None] | None = None  # (given, the day or None to clear)
        for key in ("ExpectedPaymentDateString", "ExpectedPaymentDate"):
            raw = item.get(key)
            if raw is None or (raw == "" and key == "ExpectedPaymentDate"):
                continue  # null (and an empty MS date) is "not given", as Xero reads it
            if not isinstance(raw, str):
                return post_data_invalid(f"{key} must be a string")
            if raw == "":
                wanted = (True, None)  # the documented way to clear it
                break
            day = parse_xero_day(raw)
            if day is None:
                return validation_error([f"{key} is not a date: {raw!r}"], element)
            wanted = (True, day)
            break
        if wanted is not None:
            try:
                call.org.set_expected_date(
                    inv, wanted[1], call.now, bool(self.limits.expected_date_moves_invoice)
                )
            except ValueError as err:
                return validation_error([str(err)], element)
        return call.ok(Invoices=[render.invoice_json(inv)])

    async def get_history(self, call: Call) -> Response:
        inv = self._invoice(call)
        if inv is None:
            return not_found()
        return call.ok(HistoryRecords=[render.history_json(e) for e in inv.history()])

    async def put_history(self, call: Call) -> Response:
        inv = self._invoice(call)
        if inv is None:
            return not_found()
        body = await _json_body(call.request)
        # A body Xero cannot deserialise (not JSON, or the wrong JSON types) is its error 14.
        if not isinstance(body, dict):
            return post_data_invalid("the body must be a JSON object")
        records = body.get("HistoryRecords")
        if records is not None and not isinstance(records, list):
            return post_data_invalid("HistoryRecords must be an array")
        if not records:
            return validation_error(["A HistoryRecords array with at least one record is required"])
        limit = self.limits.history_details_max
        details: list[str] = []
        for record in records:
            if not isinstance(record, dict):
                return post_data_invalid("each history record must be an object")
            text = record.get("Details")
            if isinstance(text, int | float) and not isinstance(text, bool):
                text = str(text)  # Xero's deserialiser turns a number into its text
            elif text is not None and not isinstance(text, str):
                return post_data_invalid("Details must be a string")
            if text is None or not text.strip():
                return validation_error(["The Details field is required"])
            if "\x00" in text:
                return validation_error(["The Details field contains invalid characters"])
            if utf16_units(text) > limit:
                return validation_error(
                    [f"The Details field must be no longer than {limit} characters"]
                )
            details.append(text)
        created = []
        for text in details:
            entry = HistoryEntry(call.now, "Note", text)
            inv.add_history(entry)
            created.append(entry)
            self.sim.ledger.record(
                "xero",
                "note_added",
                tenant=call.org.tenant_id,
                idempotency_key=call.request.headers.get("idempotency-key"),
                invoice=inv.invoice_id,
                invoice_number=inv.number,
                details=text,
            )
        call.org.touch()
        return call.ok(
            HistoryRecords=[
                {
                    "DateUTCString": e.at.strftime("%Y-%m-%dT%H:%M:%S"),
                    "DateUTC": ms_datetime(e.at),
                    "Details": e.details,
                    "ValidationErrors": [],
                }
                for e in created
            ]
        )

    async def email_invoice(self, call: Call) -> Response:
        inv = self._invoice(call)
        if inv is None:
            return not_found()
        element = {"InvoiceID": inv.invoice_id}
        if inv.type != "ACCREC":
            return validation_error(["Invoice not of valid type for sending by email"], element)
        if inv.status not in ("SUBMITTED", "AUTHORISED", "PAID"):
            return validation_error(["Invoice not of valid status for sending by email"], element)
        recipients = inv.contact.email_recipients()
        if not recipients:
            # neither the contact's EmailAddress nor a contact person with IncludeInEmails
            return validation_error(["The contact does not have a valid email address"], element)
        email = ", ".join(recipients)
        # The cap is counted per organisation and calendar day; which day Xero counts is not
        # documented: the sandbox takes the organisation's own (its time zone), as a person
        # there would, rather than UTC's.
        today = call.org.local_today(call.now)
        sent_today = call.org.emails_by_day.get(today, 0)
        cap = self.limits.email_cap(call.org.org_class, call.org.is_demo_company)
        if cap is not None and sent_today >= cap:
            # Xero's own over-cap answer is undocumented (a 400): the sandbox's wording.
            return validation_error([EMAIL_CAP_MESSAGE], element)
        call.org.emails_by_day[today] = sent_today + 1
        if self.limits.email_marks_sent:
            inv.sent = True
            # Xero's caveat: marking a partly paid invoice as sent does not move UpdatedDateUTC.
            if not inv.amount_paid > 0:
                inv.updated = call.now
        if self.limits.email_history:
            inv.add_history(HistoryEntry(call.now, EMAIL_CHANGES, EMAIL_DETAILS.format(to=email)))
        call.org.touch()
        self.sim.ledger.record(
            "xero",
            "email_sent",
            tenant=call.org.tenant_id,
            idempotency_key=call.request.headers.get("idempotency-key"),
            invoice=inv.invoice_id,
            invoice_number=inv.number,
            to=email,
        )
        return Response(status_code=204)

    async def online_invoice(self, call: Call) -> Response:
        inv = self._invoice(call)
        if inv is None:
            return not_found()
        if inv.type != "ACCREC" or inv.status in ("DRAFT", "DELETED"):
            return validation_error(
                ["Online invoices are only available for approved sales invoices"],
                {"InvoiceID": inv.invoice_id},
            )
        token = hashlib.sha256(f"{call.org.tenant_id}:{inv.invoice_id}".encode()).hexdigest()
        return call.ok(OnlineInvoices=[{"OnlineInvoiceUrl": f"https://in.xero.com/{token[:40]}"}])

    # -- payments, credit notes, contacts ---------------------------------------------------------
    async def list_payments(self, call: Call) -> Response:
        result = self._select(call, "payments", call.org.payment_list, PAYMENT_FIELDS, None, None)
        rows, pagination = self._page(call, result)
        return self._listing(
            call, "Payments", [render.payment_json(call.org, p) for p in rows], pagination
        )

    async def get_payment(self, call: Call) -> Response:
        payment: Payment | None = call.org.payments.get((call.ident or "").lower())
        if payment is None:
            return not_found()
        return call.ok(Payments=[render.payment_json(call.org, payment)])

    async def list_credit_notes(self, call: Call) -> Response:
        result = self._select(call, "credits", call.org.credit_list, CREDIT_FIELDS, None, None)
        rows, pagination = self._page(call, result)
        return self._listing(
            call,
            "CreditNotes",
            [render.credit_note_json(c, lines=pagination is not None) for c in rows],
            pagination,
        )

    async def get_credit_note(self, call: Call) -> Response:
        ref = (call.ident or "").lower()
        credit: CreditNote | None = call.org.credit_notes.get(ref) or (
            call.org.credit_note_by_number.get(ref)
        )
        if credit is None:
            return not_found()
        return call.ok(CreditNotes=[render.credit_note_json(credit)])

    async def list_contacts(self, call: Call) -> Response:
        q = call.q
        ids = set(_split(q.get("ids")))
        archived = _bool(q.get("includearchived"))

        def extra(c: Contact) -> bool:
            return (archived or c.status != "ARCHIVED" or bool(ids)) and (
                not ids or c.contact_id in ids
            )

        result = self._select(
            call,
            "contacts",
            call.org.contact_list,
            CONTACT_FIELDS,
            extra,
            (tuple(sorted(ids)), archived),
        )
        rows, pagination = self._page(call, result)
        summary = _bool(q.get("summaryonly"))
        # ContactGroups are filled only when the list is paged (as Xero's maintainers say);
        # unpaged, every contact carries an empty list.
        member_of: dict[str, list[ContactGroup]] = {}
        if pagination is not None:
            for group in call.org.active_groups():
                for contact_id in group.members:
                    member_of.setdefault(contact_id, []).append(group)
        return self._listing(
            call,
            "Contacts",
            [
                render.contact_full(
                    c,
                    summary=summary,
                    groups=member_of.get(c.contact_id, []) if pagination is not None else None,
                )
                for c in rows
            ],
            pagination,
        )

    async def get_contact(self, call: Call) -> Response:
        contact = call.org.contacts.get((call.ident or "").lower())
        if contact is None:
            return not_found()
        groups = call.org.groups_of(contact)
        return call.ok(Contacts=[render.contact_full(contact, groups=groups)])

    # -- contact groups ---------------------------------------------------------------------------
    def _moves_contact(self) -> bool:
        return bool(self.limits.group_change_moves_contact)

    async def list_groups(self, call: Call) -> Response:
        """Every ACTIVE group, without its members (those come with GET /ContactGroups/{id})."""
        q = call.q
        groups = call.org.active_groups()
        where = q.get("where")
        if where:
            try:
                predicate = compile_where(parse(where), GROUP_FIELDS, frozenset())
            except WhereError as err:
                raise QueryError(str(err)) from err
            groups = [g for g in groups if predicate(g)]
        order_keys = _order_key(q.get("order"), GROUP_FIELDS)
        if order_keys:
            groups = _sort(list(groups), order_keys)
        return call.ok(ContactGroups=[render.group_json(g) for g in groups])

    def _group(self, call: Call) -> ContactGroup | None:
        return call.org.find_group((call.ident or "").split("/")[0])

    async def get_group(self, call: Call) -> Response:
        group = self._group(call)
        if group is None:
            return not_found()
        return call.ok(ContactGroups=[render.group_json(group, members=True)])

    async def create_groups(self, call: Call) -> Response:
        items = await _items(call.request, "ContactGroups")
        if isinstance(items, Response):
            return items
        if not items:
            return validation_error(["A ContactGroups array with at least one group is required"])
        names: list[Any] = []
        for item in items:
            if "ContactGroupID" in item or item.get("Status", "ACTIVE") != "ACTIVE":
                return validation_error(
                    ["A new contact group takes a Name only (change one with POST)"]
                )
            names.append(item.get("Name"))
        try:
            # All or nothing: each name is checked against those made before it.
            made = []
            for name in names:
                made.append(call.org.create_group(name, call.now))
        except GroupError as err:
            for group in made:  # undo the ones made before the refusal
                call.org.group_list.remove(group)
                del call.org.groups[group.group_id]
            call.org.touch()
            element = {"Name": name if isinstance(name, str) else "", "Contacts": []}
            return validation_error([str(err)], element)
        return call.ok(ContactGroups=[render.group_json(g) for g in made])

    async def update_group(self, call: Call) -> Response:
        group = self._group(call)
        if group is None:
            return not_found()
        items = await _items(call.request, "ContactGroups")
        if isinstance(items, Response):
            return items
        if len(items) != 1:
            return validation_error(["Send exactly one contact group to update"])
        item = items[0]
        try:
            call.org.edit_group(
                group, item.get("Name"), item.get("Status"), call.now, self._moves_contact()
            )
        except GroupError as err:
            return validation_error([str(err)], {"ContactGroupID": group.group_id})
        return call.ok(ContactGroups=[render.group_json(group)])

    async def add_group_contacts(self, call: Call) -> Response:
        group = self._group(call)
        if group is None:
            return not_found()
        items = await _items(call.request, "Contacts")
        if isinstance(items, Response):
            return items
        if not items:
            return validation_error(["A Contacts array with at least one ContactID is required"])
        contacts: list[Contact] = []
        for item in items:
            raw = item.get("ContactID")
            contact = call.org.contacts.get(raw.strip().lower()) if isinstance(raw, str) else None
            if contact is None:
                return validation_error(
                    [f"The contact {raw!r} could not be found"],
                    {"ContactID": raw if isinstance(raw, str) else ""},
                )
            contacts.append(contact)
        call.org.add_to_group(group, contacts, call.now, self._moves_contact())
        # Xero lists every contact sent, those already in the group too.
        return call.ok(
            Contacts=[
                {**render.contact_ref(c), "ValidationErrors": []}
                for c in {c.contact_id: c for c in contacts}.values()
            ]
        )

    async def clear_group_contacts(self, call: Call) -> Response:
        group = self._group(call)
        if group is None:
            return not_found()
        members = list(group.members.values())
        call.org.remove_from_group(group, members, call.now, self._moves_contact())
        return Response(status_code=204)

    async def remove_group_contact(self, call: Call) -> Response:
        group = self._group(call)
        contact_ref = (call.ident or "").split("/")[-1].lower()
        contact = call.org.contacts.get(contact_ref)
        if group is None or contact is None:
            return not_found()
        # A contact that is not in the group is already where it should be: nothing to do.
        call.org.remove_from_group(group, [contact], call.now, self._moves_contact())
        return Response(status_code=204)

    # -- the organisation -------------------------------------------------------------------------
    async def get_organisation(self, call: Call) -> Response:
        return call.ok(Organisations=[render.organisation_json(call.org)])


#: flags clients send back as they read them (xero-python sends HasAttachments and HasErrors
#: with every invoice it writes); Xero ignores them in a write
_READ_ONLY_FLAGS = frozenset(
    {"HasAttachments", "HasErrors", "IsDiscounted", "HasValidationErrors", "ValidationErrors"}
)
_EXPECTED_DATE_FIELDS = frozenset({"ExpectedPaymentDate", "ExpectedPaymentDateString"})


def _unchangeable(item: dict[str, Any], inv: Invoice) -> str | None:
    """The first field of an invoice update the sandbox cannot make: any but the expected date,
    unless it is sent with the value the invoice already has (or is a read-only flag)."""
    current = render.invoice_json(inv)
    for key, value in item.items():
        if key in _EXPECTED_DATE_FIELDS or key in _READ_ONLY_FLAGS:
            continue
        if key == "Contact" and isinstance(value, dict):
            given = value.get("ContactID")
            if isinstance(given, str) and given.lower() == inv.contact.contact_id:
                continue
            return key
        have = current.get(key)
        if isinstance(value, str) and isinstance(have, str) and value.lower() == have.lower():
            continue
        if value == have and not isinstance(value, dict | list):
            continue
        return key
    return None


async def _items(request: Request, key: str) -> list[dict[str, Any]] | Response:
    """The objects of `{key: [...]}` (or one bare object) in a request body."""
    body = await _json_body(request)
    if not isinstance(body, dict):
        return post_data_invalid("the body must be a JSON object")
    if key not in body:
        return [body] if body else []
    items = body[key]
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        return post_data_invalid(f"{key} must be an array of objects")
    return items


_MS_DAY = re.compile(r"^/Date\((-?\d+)(?:[+-]\d{4})?\)/$")


def parse_xero_day(raw: str) -> date | None:
    """A calendar date as clients send one: 2026-12-20, 2026-12-20T00:00:00 or /Date(ms)/."""
    text = raw.strip()
    match = _MS_DAY.match(text)
    try:
        if match is not None:
            return (EPOCH + timedelta(milliseconds=int(match.group(1)))).date()
        return date.fromisoformat(text[:10]) if len(text) in (10, 19) else None
    except (ValueError, OverflowError):
        return None


async def _json_body(request: Request) -> Any:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):
        # not JSON (or not UTF-8), or nested past what the parser takes: the handler refuses it
        return None


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    return hashlib.sha256(b"%s %s\n%s" % (method.encode(), path.lower().encode(), body)).hexdigest()


def replay(reply: IdempotentReply) -> Response:
    response = Response(reply.body, status_code=reply.status)
    response.raw_headers = list(reply.headers)
    return response


def connection_id(grant: Grant, tenant: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"xero-connection:{grant.id}:{tenant}"))


def unauthorised(detail: str) -> Response:
    return problem(
        401,
        "Unauthorized",
        detail,
        {"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def forbidden() -> Response:
    return problem(403, "Forbidden", "AuthenticationUnsuccessful")


def expired_detail(access: AccessToken | None) -> str:
    if access is None:
        return "TokenExpired: token expired"
    return f"TokenExpired: token expired at {access.expires_at:%m/%d/%Y %H:%M:%S}"


def post_data_invalid(reason: str) -> Response:
    """HTTP 400, ErrorNumber 14: a request body Xero cannot read into its objects."""
    return api_exception(
        14, "PostDataInvalidException", f"JSON for post data was invalid, {reason}"
    )


def bad_query(message: str) -> Response:
    return api_exception(16, "QueryParseException", message)
