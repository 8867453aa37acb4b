"""The accounting API below /v3/company/{realmId}: query, CDC, read, write, send, batch."""

from __future__ import annotations

import json
import logging
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from arsync.sandbox.faults import FaultKind
from arsync.sandbox.qbo import ops, wire
from arsync.sandbox.qbo.model import ENTITIES, READ_ONLY, SINGLETONS, Company
from arsync.sandbox.qbo.oauth_routes import ACCOUNTING
from arsync.sandbox.qbo.query import Query, QueryError, page, parse_query, select
from arsync.sandbox.qbo.wire import QboFault

if TYPE_CHECKING:
    from arsync.sandbox.qbo.sim import QboSim

_log = logging.getLogger(__name__)

API_RE = re.compile(r"^/v3/company/(?P<realm>[^/]+)(?:/(?P<rest>.*))?$")
MINOR_VERSION = 75
_STALE = frozenset({FaultKind.STALE_SYNCTOKEN})
_WRITABLE = {"Invoice", "Customer", "Attachable"}


def endpoint_template(method: str, rest: str) -> str:
    """Ledger and fault-glob name of a call, e.g. "POST /v3/company/{realmId}/invoice/{id}/send"."""
    parts = [p for p in rest.split("/") if p]
    named = ["{id}" if i == 1 else p.lower() for i, p in enumerate(parts)]
    if parts[:1] == ["companyinfo"]:
        named = ["companyinfo", "{realmId}"][: len(parts)]
    return f"{method} /v3/company/{{realmId}}/" + "/".join(named)


def minor_version(request: Request) -> int:
    """Intuit serves every minor version below 75 (or none) as 75 now."""
    raw = request.query_params.get("minorversion", "")
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9:
        return MINOR_VERSION
    return max(MINOR_VERSION, int(raw))


class Api:
    """Handles one API request after the pipeline admitted it."""

    def __init__(self, sim: QboSim) -> None:
        self.sim = sim
        self.limits = sim.sandbox.settings.qbo

    async def handle(self, request: Request, rel: str) -> Response:
        sim = self.sim
        match = API_RE.match(rel)
        if match is None:
            return Response("Not Found", status_code=404, media_type="text/plain")
        realm, rest = match["realm"], match["rest"] or ""
        now = sim.clock.now()
        auth = request.headers.get("authorization", "")
        token = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        checked = sim.authority.check_access(token)
        if checked is None:
            detail = "Token expired or invalid" if token else "Authorization header missing"
            return wire.unauthorized_response(now, detail)
        grant, _access = checked
        company = sim.companies.get(realm)
        if company is None or realm not in grant.tenants or ACCOUNTING not in grant.scopes:
            return wire.fault_response(wire.forbidden(), stamp=_stamp(company, now))
        minor_version(request)  # every accepted version behaves as 75
        body = await request.body()
        method = request.method
        endpoint = endpoint_template(method, rest)
        request_id = request.query_params.get("requestid")
        is_write = method == "POST" and rest.lower() != "query"
        with sim.sandbox.lock:
            if is_write and request_id:
                replay = self._replayed(company, request_id, now, endpoint)
                if replay is not None:
                    return replay
            try:
                response = self._dispatch(company, request, method, rest, body, endpoint, now)
            except QboFault as fault:
                response = wire.fault_response(fault, stamp=company.stamp(now))
            except QueryError as err:
                refused = wire.validation(err.code, err.message, err.detail)
                response = wire.fault_response(refused, stamp=company.stamp(now))
            except Exception:
                # A bug in the sandbox: answer as Intuit answers its own failures (500, code
                # 10000) and keep the traceback for the log, never for the client.
                _log.exception("QBO sandbox failed on %s %s", method, rest)
                response = wire.server_error_response(500, stamp=company.stamp(now))
            # Only what was performed is remembered: a refused write (no address, the day's
            # email cap) is tried afresh under the same requestid once its cause is gone.
            if is_write and request_id and response.status_code == 200:
                if len(company.replays) > 10_000:
                    self._forget_old_requestids(company, now)
                company.replays[request_id] = (
                    now,
                    response.status_code,
                    bytes(response.body),
                    response.media_type or wire.JSON,
                )
        return response

    def _forget_old_requestids(self, company: Company, now: datetime) -> None:
        horizon = now - self.limits.requestid_window
        for key in [k for k, v in company.replays.items() if v[0] < horizon]:
            del company.replays[key]

    def _replayed(
        self, company: Company, request_id: str, now: datetime, endpoint: str
    ) -> Response | None:
        seen = company.replays.get(request_id)
        if seen is None:
            return None
        at, status, body, media = seen
        if now - at > self.limits.requestid_window:
            del company.replays[request_id]
            return None
        self.sim.ledger.record(
            "qbo", "replayed", tenant=company.realm, endpoint=endpoint, idempotency_key=request_id
        )
        return Response(body, status_code=status, media_type=media, headers=wire.headers())

    # -- dispatch ---------------------------------------------------------------------------------
    def _dispatch(
        self,
        company: Company,
        request: Request,
        method: str,
        rest: str,
        body: bytes,
        endpoint: str,
        now: datetime,
    ) -> Response:
        parts = [p for p in rest.split("/") if p]
        head = parts[0].lower() if parts else ""
        stamp = company.stamp(now)
        if head == "query" and len(parts) == 1 and method in ("GET", "POST"):
            text = (
                request.query_params.get("query", "")
                if method == "GET"
                else body.decode("utf-8", "replace")
            )
            return wire.json_response({"QueryResponse": self.query(company, text)}, stamp=stamp)
        if head == "cdc" and len(parts) == 1 and method == "GET":
            return wire.json_response(self.cdc(company, request, now), stamp=stamp)
        if head == "batch" and len(parts) == 1 and method == "POST":
            return wire.json_response(self.batch(company, body, endpoint, now), stamp=stamp)
        if head in SINGLETONS and method == "GET" and len(parts) <= 2:
            # GET /preferences, GET /companyinfo/{realmId}: the company's one object
            single = SINGLETONS[head]
            obj = company.render(single, next(iter(company.rows(single))))
            return wire.json_response({single: obj}, stamp=stamp)
        if head in READ_ONLY:
            return self._read_only(company, READ_ONLY[head], request, method, parts, body, stamp)
        entity = ENTITIES.get(head)
        if entity is None:
            raise wire.validation(
                "2010",
                "Request has invalid or unsupported property",
                f"Unsupported operation requested: {method} /{rest}",
            )
        if len(parts) == 3 and parts[2].lower() == "send" and method == "POST":
            if entity != "Invoice":
                raise wire.validation(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"send is not supported for {entity}",
                )
            result = self.send(company, parts[1], request, now)
            return wire.json_response(result, stamp=stamp)
        if len(parts) == 2 and method == "GET":
            rec = company.table(entity).get(_int(parts[1]))
            if rec is None:
                raise wire.not_found(entity, parts[1])
            return wire.json_response({entity: company.render(entity, rec)}, stamp=stamp)
        if len(parts) == 1 and method == "POST":
            data = _json_body(body)
            operation = request.query_params.get("operation", "")
            result = self.write(company, entity, operation, data, endpoint, now)
            return wire.json_response(result, stamp=stamp)
        raise wire.validation(
            "2010",
            "Request has invalid or unsupported property",
            f"Unsupported operation requested: {method} /{rest}",
        )

    def _read_only(
        self,
        company: Company,
        entity: str,
        request: Request,
        method: str,
        parts: list[str],
        body: bytes,
        stamp: str,
    ) -> Response:
        """GET /{entity}/{id} reads one; any write is QBO's "Unsupported Operation"."""
        if method == "GET" and len(parts) == 2:
            rec = company.table(entity).get(_int(parts[1]))
            if rec is None:
                raise wire.not_found(entity, parts[1])
            return wire.json_response({entity: company.render(entity, rec)}, stamp=stamp)
        if method == "POST" and len(parts) == 1:
            data = _json_body(body)
            raise wire.unsupported(_write_operation(request.query_params.get("operation"), data))
        raise wire.validation(
            "2010",
            "Request has invalid or unsupported property",
            f"Unsupported operation requested: {method} /{'/'.join(parts)}",
        )

    # -- reads ------------------------------------------------------------------------------------
    def query(self, company: Company, text: str) -> dict[str, Any]:
        q = parse_query(text, max_allowed=self.limits.max_results)
        lowered = q.entity.lower()
        entity = ENTITIES.get(lowered) or SINGLETONS.get(lowered) or READ_ONLY.get(lowered)
        if entity is None:
            raise QueryError(
                "4001",
                "Invalid query",
                f"QueryValidationError: Invalid context declaration : {q.entity}",
            )
        rows = self._matching(company, entity, q)
        if q.count:
            return {"totalCount": len(rows)}
        chosen = page(q, rows)
        if not chosen:
            return {}  # QBO answers an empty page with an empty QueryResponse
        rendered = [company.render(entity, r) for r in chosen]
        if q.fields:
            rendered = [_project(r, q.fields) for r in rendered]
        return {entity: rendered, "startPosition": q.start_position, "maxResults": len(rendered)}

    def _matching(self, company: Company, entity: str, q: Query) -> list[Any]:
        # QBO's name lists hide inactive entries unless the query names Active itself.
        implicit_active = entity in ("Customer", "CustomerType") and not q.mentions("Active")
        key = (entity, q.where, q.order, implicit_active)
        cached = company.query_cache.get(key)
        if cached is not None:
            return cached
        rows = list(company.rows(entity))
        if implicit_active:
            rows = [r for r in rows if r.active]
        getter = company.getter(entity)
        result = select(q, rows, getter, company.tz, probe=company.probe(entity))
        if entity == "Attachable":
            result = [r for r in result if _one_ref_matches(q, r, getter, company)]
        if len(company.query_cache) > 32:
            company.query_cache.clear()
        company.query_cache[key] = result
        return result

    def cdc(self, company: Company, request: Request, now: datetime) -> dict[str, Any]:
        names = [
            n.strip() for n in request.query_params.get("entities", "").split(",") if n.strip()
        ]
        raw_since = request.query_params.get("changedSince", "")
        if not names:
            raise wire.validation(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter entities is missing in the request",
                element="entities",
            )
        entities: list[str] = []
        for name in names:
            entity = ENTITIES.get(name.lower())
            if entity is None:
                raise wire.validation(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Property Name:entities specified is unsupported or invalid: {name}",
                )
            if entity not in entities:  # a name given twice is answered once
                entities.append(entity)
        since = _parse_since(raw_since, company)
        lookback = timedelta(days=self.limits.cdc_lookback_days)
        if since < now - lookback:
            raise wire.validation(
                "2010",
                "Request has invalid or unsupported property",
                f"Property Name:changedSince: the value {raw_since} is more than "
                f"{self.limits.cdc_lookback_days} days in the past",
                element="changedSince",
            )
        changed: list[tuple[datetime, int, str, Any]] = []
        wanted = set(entities)
        for entity in entities:
            changed.extend(
                (rec.updated, 0, entity, rec)
                for rec in company.rows(entity)
                if rec.updated >= since
            )
        changed.extend(
            (t.deleted_at, 1, t.entity, t)
            for t in company.tombstones
            if t.entity in wanted and t.deleted_at >= since
        )
        changed.sort(key=lambda c: (c[0], c[1]))
        # One response holds at most 1000 objects over all entities: the oldest changes first,
        # so a client that receives exactly the cap knows to narrow its window or split.
        changed = changed[: self.limits.cdc_max_objects]
        grouped: dict[str, list[dict[str, Any]]] = {e: [] for e in entities}
        for _at, deleted, entity, rec in changed:
            if deleted:
                grouped[entity].append(
                    {
                        "domain": "QBO",
                        "status": "Deleted",
                        "Id": str(rec.id),
                        "MetaData": {"LastUpdatedTime": company.fmt(rec.deleted_at)},
                    }
                )
            else:
                grouped[entity].append(company.render(entity, rec))
        responses: list[dict[str, Any]] = []
        for entity in entities:
            objects = grouped[entity]
            if objects:
                responses.append({entity: objects, "startPosition": 1, "maxResults": len(objects)})
            else:
                responses.append({})
        return {"CDCResponse": [{"QueryResponse": responses}]}

    # -- writes -----------------------------------------------------------------------------------
    def send(self, company: Company, ident: str, request: Request, now: datetime) -> dict[str, Any]:
        inv = ops.get_invoice(company, ident)
        cap = self.limits.emails_per_day
        day = company.local_day(now)
        if cap is not None and company.emails_by_day.get(day, 0) >= cap:
            # Per realm and per day where the company is. Intuit documents the cap but not its
            # refusal: this 400 business fault and its words are the sandbox's own choice.
            raise wire.business(
                f"You have reached the limit of {cap} emails a day for this company. "
                "Try again tomorrow."
            )
        send_to = request.query_params.get("sendTo")
        address = ops.send_invoice(company, inv, send_to, now)
        company.emails_by_day[day] = company.emails_by_day.get(day, 0) + 1
        self.sim.ledger.record(
            "qbo",
            "email_sent",
            tenant=company.realm,
            endpoint="POST /v3/company/{realmId}/invoice/{id}/send",
            idempotency_key=request.query_params.get("requestid"),
            invoice=str(inv.id),
            to=address,
        )
        return {"Invoice": company.render_invoice(inv)}

    def write(
        self,
        company: Company,
        entity: str,
        operation: str,
        data: dict[str, Any],
        endpoint: str,
        now: datetime,
    ) -> dict[str, Any]:
        if entity not in _WRITABLE:
            raise wire.validation(
                "2010",
                "Request has invalid or unsupported property",
                f"This sandbox does not create or change {entity} objects through the API; "
                "use a business event",
            )
        operation = operation.lower()
        ident = data.get("Id")
        if operation == "delete":
            ops.delete_record(company, entity, ident, data, now)
            return {entity: {"status": "Deleted", "domain": "QBO", "Id": str(ident)}}
        if operation == "void":
            if entity != "Invoice":
                raise wire.validation(
                    "2010",
                    "Request has invalid or unsupported property",
                    f"Operation void is not supported for {entity}",
                )
            inv = ops.get_invoice(company, ident)
            self._maybe_stale(company, entity, inv, endpoint, now)
            ops._check_sync(entity, inv, data)
            try:
                ops.void(company, inv, now)
            except ValueError as err:
                raise wire.business(str(err)) from err
            return {entity: company.render(entity, inv)}
        if ident in (None, "", 0, "0"):
            return {entity: company.render(entity, self._create(company, entity, data, now))}
        rec = company.table(entity).get(_int(ident))
        if rec is None:
            raise wire.not_found(entity, str(ident))
        self._maybe_stale(company, entity, rec, endpoint, now)
        if entity == "Invoice":
            ops.update_invoice(company, rec, data, now)
        elif entity == "Customer":
            ops.update_customer(company, rec, data, now)
        else:
            ops.update_attachable(company, rec, data, now)
        return {entity: company.render(entity, rec)}

    def _create(self, company: Company, entity: str, data: dict[str, Any], now: datetime) -> Any:
        if entity == "Invoice":
            return ops.create_invoice_from_body(company, data, now)
        if entity == "Customer":
            return ops.create_customer(company, data, now)
        att = ops.add_attachable(company, data, now)
        self.sim.ledger.record(
            "qbo",
            "note_added",
            tenant=company.realm,
            attachable=str(att.id),
            refs=[f"{r['EntityRef']['type']}:{r['EntityRef']['value']}" for r in att.refs],
            note=att.note,
        )
        return att

    def _maybe_stale(
        self, company: Company, entity: str, rec: Any, endpoint: str, now: datetime
    ) -> None:
        rule = self.sim.faults.draw("qbo", endpoint, company.realm, _STALE)
        if rule is None:
            return
        self.sim.ledger.record(
            "qbo",
            "fault_injected",
            tenant=company.realm,
            endpoint=endpoint,
            fault=rule.kind.value,
            rule=rule.id,
        )
        # As if a person saved the object a moment before: the client's SyncToken is now stale.
        ops.bump(company, rec, now)
        raise wire.stale(entity)

    def batch(self, company: Company, body: bytes, endpoint: str, now: datetime) -> dict[str, Any]:
        data = _json_body(body)
        items = data.get("BatchItemRequest")
        if not isinstance(items, list) or not items:
            raise wire.validation(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter BatchItemRequest is missing in the request",
            )
        if len(items) > self.limits.batch_items:
            raise wire.validation(
                "2010",
                "Request has invalid or unsupported property",
                f"Property Name:BatchItemRequest: the request holds {len(items)} items; "
                f"the maximum is {self.limits.batch_items}",
                element="BatchItemRequest",
            )
        out: list[dict[str, Any]] = []
        for item in items:
            if not isinstance(item, dict):
                refused = wire.validation(
                    "2010",
                    "Request has invalid or unsupported property",
                    "Property Name:BatchItemRequest: an item is not an object",
                    element="BatchItemRequest",
                )
                out.append({"bId": "", "Fault": refused.fault()})
                continue
            bid = item.get("bId")
            bid = "" if bid is None or isinstance(bid, dict | list) else str(bid)
            try:
                out.append({"bId": bid, **self._batch_item(company, item, endpoint, now)})
            except QboFault as fault:
                out.append({"bId": bid, "Fault": fault.fault()})
            except QueryError as err:
                refused = wire.validation(err.code, err.message, err.detail)
                out.append({"bId": bid, "Fault": refused.fault()})
        return {"BatchItemResponse": out}

    def _batch_item(
        self, company: Company, item: dict[str, Any], endpoint: str, now: datetime
    ) -> dict[str, Any]:
        if "Query" in item:
            return {"QueryResponse": self.query(company, str(item["Query"]))}
        if any(k.lower() in READ_ONLY for k in item):
            payload = next(v for k, v in item.items() if k.lower() in READ_ONLY)
            data = payload if isinstance(payload, dict) else {}
            operation = str(item.get("operation", ""))
            raise wire.unsupported(_write_operation(operation, data))
        key = next((k for k in item if k.lower() in ENTITIES), None)
        entity = ENTITIES[key.lower()] if key is not None else None
        operation = str(item.get("operation", "")).lower()
        if entity is None or operation not in ("create", "update", "delete"):
            raise wire.validation(
                "2010",
                "Request has invalid or unsupported property",
                "A batch item needs an operation (create, update, delete) and one entity",
            )
        payload = item[key] if key is not None else None
        if not isinstance(payload, dict):
            raise wire.validation(
                "2010",
                "Request has invalid or unsupported property",
                f"Property Name:{entity} specified is unsupported or invalid",
            )
        if operation == "create":
            payload = {k: v for k, v in payload.items() if k != "Id"}
        elif not payload.get("Id"):
            raise wire.validation(
                "2020",
                "Required param missing, need to supply the required value for the API",
                "Required parameter Id is missing",
            )
        op = "delete" if operation == "delete" else ""
        return self.write(company, entity, op, payload, endpoint, now)


def _write_operation(operation: str | None, data: dict[str, Any]) -> str:
    """The operation a write asks for, as QBO names it in its faults."""
    op = (operation or "").lower()
    if op in ("create", "update", "delete", "void"):
        return op.capitalize()
    return "Update" if data.get("Id") not in (None, "", 0, "0") else "Create"


def _int(ident: object) -> int:
    try:
        return int(str(ident))
    except ValueError:
        return -1


def _stamp(company: Company | None, now: datetime) -> str:
    if company is None:
        return now.astimezone(UTC).isoformat(timespec="milliseconds")
    return company.stamp(now)


def _json_body(body: bytes) -> dict[str, Any]:
    if b"\\u0000" in body or b"\x00" in body:
        # NUL has no place in accounting text, and the renderer reserves it (model.num).
        raise wire.validation(
            "2010", "Request has invalid or unsupported property", "NUL characters are not allowed"
        )
    try:
        # Numbers are read as exact decimals (10.005 stays 10.005, never a binary float);
        # the NaN and Infinity that Python's json would accept are not JSON, so they are refused.
        data = json.loads(body or b"{}", parse_float=Decimal, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise wire.validation(
            "2010", "Request has invalid or unsupported property", f"Error parsing JSON: {err}"
        ) from err
    if not isinstance(data, dict):
        raise wire.validation(
            "2010", "Request has invalid or unsupported property", "The body is not an object"
        )
    return data


def _one_ref_matches(q: Query, att: Any, getter: Any, company: Company) -> bool:
    """Conditions on AttachableRef hold for one and the same reference, not for any mix.

    `Type = 'Invoice' AND value = '5'` finds the notes on invoice 5, never a note on customer 5
    that also points at some other invoice.
    """
    conds = tuple(c for c in q.where if c.field.lower().startswith("attachableref."))
    if len(conds) < 2:
        return True
    sub = Query(q.entity, where=conds)
    return any(select(sub, [replace(att, refs=[ref])], getter, company.tz) for ref in att.refs)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _parse_since(raw: str, company: Company) -> datetime:
    if not raw:
        raise wire.validation(
            "2020",
            "Required param missing, need to supply the required value for the API",
            "Required parameter changedSince is missing in the request",
            element="changedSince",
        )
    text = raw.strip().replace("Z", "+00:00").replace(" ", "+")
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=company.tz)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise wire.validation(
            "2010",
            "Request has invalid or unsupported property",
            f"Property Name:changedSince: not a date time: {raw}",
            element="changedSince",
        ) from err


def _project(rendered: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
    lowered = {k.lower(): k for k in rendered}
    out: dict[str, Any] = {"domain": "QBO", "sparse": True, "Id": rendered["Id"]}
    for name in fields:
        key = lowered.get(name.split(".")[0].lower())
        if key is not None:
            out[key] = rendered[key]
    return out
