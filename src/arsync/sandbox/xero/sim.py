"""Simulated Xero: identity, connections and the Accounting API behind the shared pipeline."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from starlette._utils import get_route_path
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from arsync.sandbox.books import Books
from arsync.sandbox.faults import FaultKind, FaultRule
from arsync.sandbox.oauth import XERO_RULES, Authority, Grant
from arsync.sandbox.platform import Classified, PlatformSim, TenantInfo
from arsync.sandbox.ratelimit import Decision, Window
from arsync.sandbox.xero.api import (
    AccountingRoutes,
    Call,
    QueryError,
    Route,
    bad_query,
    connection_id,
    expired_detail,
    forbidden,
    match_route,
    replay,
    request_fingerprint,
    unauthorised,
)
from arsync.sandbox.xero.oauth_routes import IdentityRoutes
from arsync.sandbox.xero.serialise import (
    BadIfModifiedSince,
    iso_utc,
    json_response,
    problem,
    validation_error,
)
from arsync.sandbox.xero.state import IdempotentReply, Organisation

if TYPE_CHECKING:
    from arsync.sandbox.core import Sandbox

_log = logging.getLogger(__name__)
_SERVER_ERROR_TITLES = {
    500: "An error occurred",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


def server_error(status: int) -> Response:
    """Xero's 5xx body."""
    return problem(
        status,
        _SERVER_ERROR_TITLES.get(status, "An error occurred"),
        "An error occurred in Xero. Check the API Status page "
        "http://status.developer.xero.com for current service status.",
    )


_LIMIT_HEADERS = {
    "minute": "X-MinLimit-Remaining",
    "day": "X-DayLimit-Remaining",
    "appminute": "X-AppMinLimit-Remaining",
}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _bearer(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization") or ""
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return None


def _split_host(scope: Scope) -> tuple[str, str]:
    """("api" | "identity" | "login", the real path below that host)."""
    path = get_route_path(scope)
    host, _, rest = path.lstrip("/").partition("/")
    return host, "/" + rest


class XeroSim(PlatformSim):
    name = "xero"

    def __init__(self, sandbox: Sandbox) -> None:
        super().__init__(sandbox)
        self.authority = Authority("xero", XERO_RULES, sandbox.clock)
        self.orgs: dict[str, Organisation] = {}
        self.identity = IdentityRoutes(self)
        self.accounting = AccountingRoutes(self)

    # -- books and events -------------------------------------------------------------------------
    def load_books(self, books: Books) -> None:
        self.orgs[books.tenant_id] = Organisation(books)

    def tenants(self) -> list[TenantInfo]:
        return [
            TenantInfo("xero", o.tenant_id, o.name, o.base_currency, o.country, o.timezone)
            for o in self.orgs.values()
        ]

    def org(self, tenant: str) -> Organisation:
        org = self.orgs.get(tenant)
        if org is None:
            raise ValueError(f"no xero tenant {tenant!r} in this sandbox")
        return org

    def apply_event(self, tenant: str, event: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(event, dict) or "type" not in event:
            raise ValueError("an event is an object with a 'type'")
        with self.sandbox.lock:
            return self.org(tenant).apply_event(event, self.clock.now(), self._limits())

    # -- the pipeline's hooks ---------------------------------------------------------------------
    def _limits(self) -> Any:
        return self.sandbox.settings.xero

    def _windows(self, tenant: str, client_id: str) -> list[tuple[str, Window]]:
        limits = self._limits()
        # Xero counts per app and organisation, and app-wide per minute.
        key = f"xero:{client_id}:{tenant}"
        return [
            (key, Window("minute", limits.per_minute, 60.0)),
            (key, Window("day", limits.per_day, 86_400.0)),
            (f"xero:{client_id}", Window("appminute", limits.app_per_minute, 60.0)),
        ]

    def classify(self, scope: Scope) -> Classified | None:
        host, path = _split_host(scope)
        method = scope.get("method", "GET")
        if host == "identity":
            lowered = path.lower().rstrip("/")
            if lowered in ("/connect/token", "/connect/revocation"):
                return Classified(f"POST {lowered}", None, [])
            return None
        if host != "api":
            return None  # the consent pages are not API calls
        lowered = path.lower().rstrip("/")
        if lowered == "/connections" or lowered.startswith("/connections/"):
            template = "/connections" if lowered == "/connections" else "/connections/{id}"
            return Classified(f"{method} {template}", None, [])
        found = match_route(method, path)
        template = found[0].template if found else f"{method} /api.xro/2.0/{{unknown}}"
        tenant = _header(scope, b"xero-tenant-id")
        tenant = tenant.strip().lower() if tenant else None
        checked = self.authority.check_access(_bearer(scope))
        if checked is None or tenant is None or tenant not in checked[0].tenants:
            # refused before the limits apply (401/403 from the handler)
            return Classified(template, tenant, [])
        client_id = checked[0].client_id
        return Classified(
            template,
            tenant,
            self._windows(tenant, client_id),
            concurrency=(f"xero:{client_id}:{tenant}:inflight", self._limits().concurrent),
        )

    def _remaining(self, classified: Classified) -> dict[str, int]:
        """What each window has left, without counting a request (for injected 429s)."""
        return self.limiter.peek(classified.windows)

    def _limit_headers(self, remaining: dict[str, int]) -> dict[str, str]:
        return {_LIMIT_HEADERS[k]: str(v) for k, v in remaining.items() if k in _LIMIT_HEADERS}

    def limit_headers(self, decision: Decision, classified: Classified) -> dict[str, str]:
        return self._limit_headers(decision.remaining)

    def _too_many(self, problem_name: str, retry_after: int, remaining: dict[str, int]) -> Response:
        headers = self._limit_headers(remaining)
        if problem_name != "concurrent":
            # Xero sends Retry-After for the minute and day limits; a request refused for
            # being one too many in flight gets none and may simply be tried again shortly.
            headers["Retry-After"] = str(retry_after)
        headers["X-Rate-Limit-Problem"] = problem_name
        return problem(
            429,
            "Too Many Requests",
            f"Rate limit exceeded: {problem_name} limit",
            headers,
            typed=False,
        )

    def rate_limited_response(self, decision: Decision, classified: Classified) -> Response:
        return self._too_many(
            decision.problem or "minute", decision.retry_after, decision.remaining
        )

    def fault_response(self, rule: FaultRule, classified: Classified, scope: Scope) -> Response:
        remaining = self._remaining(classified)
        if rule.kind in (FaultKind.RATE_LIMIT, FaultKind.XML_THROTTLE):
            remaining["minute"] = 0
            return self._too_many("minute", int(rule.params.get("retry_after", 60)), remaining)
        if rule.kind is FaultKind.DAY_LIMIT:
            remaining["day"] = 0
            return self._too_many("day", int(rule.params.get("retry_after", 40_000)), remaining)
        if rule.kind is FaultKind.EXPIRED_TOKEN:
            return unauthorised(expired_detail(None))
        return server_error(int(rule.params.get("status", 500)))

    # -- routes -----------------------------------------------------------------------------------
    def routes_app(self) -> ASGIApp:
        async def app(scope: Scope, receive: Receive, send: Send) -> None:
            request = Request(scope, receive)
            response = await self._dispatch(request)
            await response(scope, receive, send)

        return app

    async def _dispatch(self, request: Request) -> Response:
        host, path = _split_host(request.scope)
        lowered = path.lower().rstrip("/")
        method = request.method
        if host == "login" and lowered == "/identity/connect/authorize":
            if method in ("GET", "POST"):
                return await self.identity.authorize(request)
        elif host == "identity":
            if lowered == "/connect/token" and method == "POST":
                return await self.identity.token(request)
            if lowered == "/connect/revocation" and method == "POST":
                return await self.identity.revocation(request)
            if lowered == "/.well-known/openid-configuration" and method == "GET":
                return self.identity.discovery(request)
        elif host == "api":
            if lowered == "/connections" or lowered.startswith("/connections/"):
                return self._connections(request, path)
            if lowered.startswith("/api.xro/2.0/"):
                return await self._accounting(request, path)
        return PlainTextResponse("Not found", status_code=404)

    def _grant(self, request: Request) -> tuple[Grant, Any] | Response:
        token = _bearer(request.scope)
        checked = self.authority.check_access(token)
        if checked is not None:
            return checked
        # Tell an expired token from a bad one, as Xero's 401 detail does.
        access = self.authority.find_access(token)
        if access is not None and not access.revoked:
            return unauthorised(expired_detail(access))
        return unauthorised("AuthenticationUnsuccessful")

    def _connections(self, request: Request, path: str) -> Response:
        checked = self._grant(request)
        if isinstance(checked, Response):
            return checked
        grant = checked[0]
        parts = path.strip("/").split("/")
        auth_event = connection_id(grant, "auth-event")
        created = iso_utc(grant.issued_at).replace("Z", ".0000000Z")
        if len(parts) == 1 and request.method == "GET":
            wanted = request.query_params.get("authEventId")
            rows = [
                {
                    "id": connection_id(grant, t),
                    "authEventId": auth_event,
                    "tenantId": t,
                    "tenantType": "ORGANISATION",
                    "tenantName": self.orgs[t].name if t in self.orgs else "",
                    "createdDateUtc": created,
                    "updatedDateUtc": created,
                }
                for t in grant.tenants
            ]
            if wanted:
                rows = [r for r in rows if r["authEventId"] == wanted.lower()]
            return json_response(rows)
        if len(parts) == 2 and request.method == "DELETE":
            with self.sandbox.lock:
                for tenant in list(grant.tenants):
                    if connection_id(grant, tenant) == parts[1].lower():
                        grant.tenants.remove(tenant)
                        self.ledger.record(
                            "xero",
                            "token_revoked",
                            tenant=tenant,
                            via="connection-deleted",
                            grant=grant.id,
                        )
                        return Response(status_code=204)
            return PlainTextResponse("Resource not found", status_code=404)
        return PlainTextResponse("Method not allowed", status_code=405)

    async def _accounting(self, request: Request, path: str) -> Response:
        checked = self._grant(request)
        if isinstance(checked, Response):
            return checked
        grant = checked[0]
        tenant = (request.headers.get("xero-tenant-id") or "").strip().lower()
        if not tenant or tenant not in grant.tenants or tenant not in self.orgs:
            return forbidden()
        found = match_route(request.method, path)
        if found is None:
            return PlainTextResponse(
                "The resource you're looking for cannot be found", status_code=404
            )
        route, ident = found
        if not route.scopes & set(grant.scopes):
            return problem(401, "Unauthorized", "AuthorizationUnsuccessful")
        accept = request.headers.get("accept", "")
        if "application/json" not in accept.lower():
            # Xero answers XML by default; the sandbox speaks JSON only and says so.
            return PlainTextResponse(
                "The sandbox serves JSON only: send 'Accept: application/json'.",
                status_code=406,
            )
        org = self.orgs[tenant]
        client = self.authority.clients.get(grant.client_id)
        provider = client.name if client else grant.client_id
        key = request.headers.get("idempotency-key")
        if request.method in ("PUT", "POST") and key is not None:
            return await self._idempotent(request, route, ident, org, grant, provider, key)
        return await self._run(request, route, ident, org, grant, provider)

    async def _run(
        self,
        request: Request,
        route: Route,
        ident: str | None,
        org: Organisation,
        grant: Grant,
        provider: str,
    ) -> Response:
        handler: Callable[[Call], Awaitable[Response]] = getattr(self.accounting, route.name)
        # Read the body before taking the lock: Starlette caches it, so the handler's own read
        # inside the lock never waits on the network.
        await request.body()
        with self.sandbox.lock:
            call = Call(request, route, ident, org, grant, self.clock.now(), provider)
            try:
                return await handler(call)
            except QueryError as err:
                return bad_query(str(err))
            except BadIfModifiedSince as err:
                return validation_error([str(err)])
            except Exception:
                # A sandbox bug must still look like Xero to the client (its 500 body), not a
                # bare traceback page; the traceback goes to the log.
                _log.exception("xero handler %s failed", route.name)
                return server_error(500)

    async def _idempotent(
        self,
        request: Request,
        route: Route,
        ident: str | None,
        org: Organisation,
        grant: Grant,
        provider: str,
        key: str,
    ) -> Response:
        if len(key) > 128 or not key.strip():
            return validation_error(["Idempotency-Key must be between 1 and 128 characters"])
        body = await request.body()
        fingerprint = request_fingerprint(request.method, request.url.path, body)
        window: timedelta = self._limits().idempotency_window
        now = self.clock.now()
        with self.sandbox.lock:
            previous = org.idempotency.get(key)
            # Remembered for less than the window (a window of 0 replays nothing); after it the
            # key is forgotten and the request is performed again.
            if previous is not None and now - previous.at < window:
                if previous.fingerprint != fingerprint:
                    return validation_error(
                        [
                            "The Idempotency-Key has already been used with a different "
                            "request; use a new key for a new request"
                        ]
                    )
                self.ledger.record(
                    "xero",
                    "replayed",
                    tenant=org.tenant_id,
                    idempotency_key=key,
                    path=request.url.path,
                    status=previous.status,
                )
                return replay(previous)
            response = await self._run(request, route, ident, org, grant, provider)
            if response.status_code < 500:
                org.idempotency[key] = IdempotentReply(
                    fingerprint,
                    response.status_code,
                    list(response.raw_headers),
                    bytes(response.body),
                    now,
                )
                self._forget_old_keys(org, now, window)
            return response

    def _forget_old_keys(self, org: Organisation, now: Any, window: timedelta) -> None:
        if len(org.idempotency) > 10_000:
            for k in [k for k, r in org.idempotency.items() if now - r.at >= window]:
                del org.idempotency[k]


__all__ = ["XeroSim"]
