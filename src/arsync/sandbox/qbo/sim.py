"""Simulated QuickBooks Online: the platform hooks, business events and the ASGI router."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from arsync.sandbox.books import Books
from arsync.sandbox.faults import FaultKind, FaultRule
from arsync.sandbox.oauth import QBO_RULES, Authority
from arsync.sandbox.platform import Classified, PlatformSim, TenantInfo
from arsync.sandbox.qbo import ops, wire
from arsync.sandbox.qbo.api import API_RE, Api, endpoint_template
from arsync.sandbox.qbo.model import Company, Line, clean_text, money
from arsync.sandbox.qbo.oauth_routes import (
    REVOKE_ENDPOINT,
    TOKEN_ENDPOINT,
    TOKEN_PATH,
    USERINFO_ENDPOINT,
    OAuthRoutes,
)
from arsync.sandbox.qbo.wire import QboFault
from arsync.sandbox.ratelimit import Decision, Window

if TYPE_CHECKING:
    from arsync.sandbox.core import Sandbox

EVENT_TYPES = (
    "payment",
    "credit",
    "void",
    "edit",
    "create_invoice",
    "delete_invoice",
    "email_change",
    "customer_type",
    "customer_type_edit",
    "customer_edit",
)


def relative_path(scope: Scope) -> str:
    """The path below the /qbo mount (Starlette keeps the mount prefix in `path`)."""
    path: str = scope.get("path", "")
    root: str = scope.get("root_path", "")
    return path[len(root) :] if root and path.startswith(root) else path


def _bearer(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            text = value.decode("latin-1")
            return text[7:].strip() if text.lower().startswith("bearer ") else None
    return None


class QboSim(PlatformSim):
    name = "qbo"

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox)
        self.authority = Authority("qbo", QBO_RULES, sandbox.clock)
        self.companies: dict[str, Company] = {}
        self.api = Api(self)
        self.oauth = OAuthRoutes(self)

    # -- set-up -----------------------------------------------------------------------------------
    def load_books(self, books: Books) -> None:
        if books.platform != "qbo":
            raise ValueError(f"QBO cannot load {books.platform} books")
        self.companies[books.tenant_id] = Company(books)

    def tenants(self) -> list[TenantInfo]:
        return [
            TenantInfo("qbo", c.realm, c.name, c.currency, c.country, c.timezone)
            for c in self.companies.values()
        ]

    def company(self, realm: str) -> Company:
        try:
            return self.companies[realm]
        except KeyError:
            raise ValueError(f"no QBO company with realm {realm!r}") from None

    # -- business events --------------------------------------------------------------------------
    def apply_event(self, tenant: str, event: dict[str, Any]) -> dict[str, Any]:
        company = self.company(tenant)
        kind = event.get("type")
        if kind not in EVENT_TYPES:
            raise ValueError(
                f"unknown QBO event type {kind!r}; use one of {', '.join(EVENT_TYPES)}"
            )
        now = self.clock.now()
        try:
            return self._apply(company, str(kind), event, now)
        except QboFault as fault:
            raise ValueError(f"{kind}: {fault.message} ({fault.detail})") from None

    def _apply(
        self, company: Company, kind: str, event: dict[str, Any], now: datetime
    ) -> dict[str, Any]:
        def amount() -> Decimal | None:
            raw = event.get("amount")
            return None if raw is None else money(str(raw))

        if kind == "email_change":
            if "customer" not in event or "email" not in event:
                raise ValueError("email_change needs customer and email (null to remove)")
            cust = ops.get_customer(company, event["customer"])
            ops.set_email(company, cust, event["email"], now)
            return {"customer": str(cust.id), "email": cust.email, "sync_token": str(cust.sync)}
        if kind == "customer_type":
            # Made in QuickBooks' settings (the API cannot create one).
            unknown = set(event) - {"type", "name", "active"}
            if unknown:
                raise ValueError(f"customer_type: unknown keys {', '.join(sorted(unknown))}")
            ctype = ops.create_customer_type(
                company, event.get("name"), event.get("active", True), now
            )
            return self._type_result(ctype)
        if kind == "customer_type_edit":
            unknown = set(event) - {"type", "customer_type", "name", "active"}
            if unknown:
                raise ValueError(f"customer_type_edit: unknown keys {', '.join(sorted(unknown))}")
            if "customer_type" not in event or not {"name", "active"} & set(event):
                raise ValueError("customer_type_edit needs customer_type and name and/or active")
            ctype = ops.get_customer_type(company, event["customer_type"])
            ops.edit_customer_type(company, ctype, event, now)
            return self._type_result(ctype)
        if kind == "customer_edit":
            fields = {"notes", "customer_type", "country", "region"}
            unknown = set(event) - fields - {"type", "customer"}
            if unknown:
                raise ValueError(f"customer_edit: unknown keys {', '.join(sorted(unknown))}")
            if "customer" not in event or not fields & set(event):
                raise ValueError(
                    "customer_edit needs customer and one of notes, customer_type (an Id, or "
                    "null to remove it), country, region"
                )
            cust = ops.get_customer(company, event["customer"])
            ops.edit_customer(company, cust, event, now)
            return {
                "customer": str(cust.id),
                "sync_token": str(cust.sync),
                "notes": cust.notes,
                "customer_type": None if cust.type_id is None else str(cust.type_id),
                "country": cust.country,
                "region": cust.region,
            }
        if kind == "create_invoice":
            if "customer" not in event:
                raise ValueError("create_invoice needs customer")
            cust = ops.get_customer(company, event["customer"])
            total = amount()
            if total is None or total <= 0:
                raise ValueError("create_invoice needs an amount above 0")
            terms = int(event.get("terms_days", 30))
            if not 0 <= terms <= 3650:
                raise ValueError("terms_days must be between 0 and 3650")
            due = event.get("due_date")
            inv = ops.create_invoice(
                company,
                cust,
                [Line(clean_text(event.get("description", "Services")), Decimal(1), total, total)],
                now,
                terms_days=terms,
                due_date=_date(due, "due_date") if due else None,
            )
            return self._invoice_result(inv)
        if "invoice" not in event:
            raise ValueError(f"{kind} needs invoice (an Invoice Id)")
        inv = ops.get_invoice(company, event["invoice"])
        if kind == "payment":
            day = event.get("date")
            payment = ops.pay(company, inv, amount(), _date(day, "date") if day else None, now)
            return {**self._invoice_result(inv), "payment": str(payment.id)}
        if kind == "credit":
            cm, payment = ops.credit(company, inv, amount(), now)
            return {
                **self._invoice_result(inv),
                "credit_memo": str(cm.id),
                "payment": str(payment.id),
            }
        if kind == "void":
            ops.void(company, inv, now)
            return self._invoice_result(inv)
        if kind == "edit":
            ops.edit(company, inv, event, now)
            return self._invoice_result(inv)
        ops.delete_invoice(company, inv, now)
        return {"invoice": str(inv.id), "deleted": True}

    @staticmethod
    def _type_result(ctype: Any) -> dict[str, Any]:
        return {
            "customer_type": str(ctype.id),
            "name": ctype.name,
            "active": ctype.active,
            "sync_token": str(ctype.sync),
        }

    @staticmethod
    def _invoice_result(inv: Any) -> dict[str, Any]:
        return {
            "invoice": str(inv.id),
            "doc_number": inv.doc_number,
            "sync_token": str(inv.sync),
            "total": str(inv.total),
            "balance": str(inv.balance),
            "due_date": inv.due_date.isoformat(),
        }

    # -- pipeline hooks ---------------------------------------------------------------------------
    def classify(self, scope: Scope) -> Classified | None:
        rel = relative_path(scope)
        method = scope.get("method", "GET")
        if rel.startswith("/api/"):
            match = API_RE.match(rel[4:])
            if match is None:
                return None
            realm, rest = match["realm"], match["rest"] or ""
            limits = self.sandbox.settings.qbo
            key = f"qbo:{realm}"
            windows = [
                (key, Window("minute", limits.per_minute, 60.0)),
                (key, Window("second", limits.per_second, 1.0)),
            ]
            if rest.strip("/").lower() == "batch":
                windows.append((key, Window("batch", limits.batch_per_minute, 60.0)))
            checked = self.authority.check_access(_bearer(scope))
            app = checked[0].client_id if checked else "-"
            return Classified(
                endpoint=endpoint_template(method, rest),
                tenant=realm,
                windows=windows,
                concurrency=(f"{key}:{app}", limits.concurrent),
            )
        if rel.rstrip("/") == TOKEN_PATH:
            return Classified(endpoint=TOKEN_ENDPOINT, tenant=None, windows=[])
        if rel.rstrip("/") == "/developer/v2/oauth2/tokens/revoke":
            return Classified(endpoint=REVOKE_ENDPOINT, tenant=None, windows=[])
        if rel.rstrip("/") == "/accounts/v1/openid_connect/userinfo":
            return Classified(endpoint=USERINFO_ENDPOINT, tenant=None, windows=[])
        return None  # discovery, consent pages and JWKS: outside the API

    def _stamp(self, tenant: str | None) -> str:
        now = self.clock.now()
        company = self.companies.get(tenant or "")
        return company.stamp(now) if company else now.isoformat(timespec="milliseconds")

    def fault_response(self, rule: FaultRule, classified: Classified, scope: Scope) -> Response:
        stamp = self._stamp(classified.tenant)
        kind = rule.kind
        if kind is FaultKind.RATE_LIMIT:
            return wire.fault_response(wire.throttle(), stamp=stamp)
        if kind is FaultKind.XML_THROTTLE:
            return wire.xml_fault_response(wire.throttle(), stamp=stamp)
        if kind is FaultKind.DAY_LIMIT:
            response = wire.fault_response(wire.throttle(), stamp=stamp)
            response.headers["Retry-After"] = str(
                int(rule.params.get("retry_after", self._seconds_to_midnight(classified.tenant)))
            )
            return response
        if kind is FaultKind.EXPIRED_TOKEN:
            return wire.unauthorized_response(self.clock.now(), "Token expired")
        status = int(rule.params.get("status", 500))
        return wire.server_error_response(status, stamp=stamp)

    def _seconds_to_midnight(self, tenant: str | None) -> int:
        now = self.clock.now()
        company = self.companies.get(tenant or "")
        local = now.astimezone(company.tz) if company else now
        midnight = datetime.combine(local.date() + timedelta(days=1), time(0), tzinfo=local.tzinfo)
        return max(3600, int((midnight - local).total_seconds()))

    def rate_limited_response(self, decision: Decision, classified: Classified) -> Response:
        # Intuit's throttle reply carries no Retry-After: its documentation says to wait 60 s.
        return wire.fault_response(wire.throttle(), stamp=self._stamp(classified.tenant))

    # -- routes -----------------------------------------------------------------------------------
    def routes_app(self) -> ASGIApp:
        return self._route

    async def _route(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        rel = relative_path(scope)
        response: Response | None
        if rel.startswith("/api/"):
            response = await self.api.handle(request, rel[4:])
        else:
            response = await self.oauth.handle(request, rel)
        if response is None:
            response = Response("Not Found", status_code=404, media_type="text/plain")
        await response(scope, receive, send)


def _date(value: object, what: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError as err:
        raise ValueError(f"{what}: not an ISO date: {value!r}") from err
