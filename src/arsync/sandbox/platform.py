"""What both simulated platforms share: the request pipeline of ledger, faults and limits."""

from __future__ import annotations

import asyncio
import contextlib
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arsync.sandbox.books import Books
from arsync.sandbox.faults import TRANSPORT_FAULTS, FaultKind, FaultRule
from arsync.sandbox.ratelimit import Decision, Window

if TYPE_CHECKING:
    from arsync.sandbox.core import Sandbox


@dataclass(frozen=True)
class TenantInfo:
    """One simulated company (QBO realm) or organisation (Xero tenant)."""

    platform: str
    tenant_id: str
    name: str
    base_currency: str
    country: str
    timezone: str


@dataclass(frozen=True)
class Classified:
    """What the pipeline needs to know about a request before it runs."""

    endpoint: str  # template for the ledger and fault globs, e.g. "GET /api.xro/2.0/Invoices"
    tenant: str | None
    #: (key, window) pairs to admit the request against; empty for unlimited endpoints
    windows: list[tuple[str, Window]]
    concurrency: tuple[str, int] | None = None
    counted: bool = True  # written to the ledger as a request


class PlatformSim(ABC):
    """One platform: its ASGI routes plus the hooks the shared pipeline calls."""

    name: str

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.clock = sandbox.clock
        self.ledger = sandbox.ledger
        self.faults = sandbox.faults
        self.limiter = sandbox.limiter

    # -- to implement ---------------------------------------------------------------------------
    @abstractmethod
    def routes_app(self) -> ASGIApp:
        """The platform's routes, below the platform prefix (e.g. "/api/api.xro/2.0/Invoices")."""

    @abstractmethod
    def load_books(self, books: Books) -> None:
        """Create one tenant from generated books."""

    @abstractmethod
    def tenants(self) -> list[TenantInfo]: ...

    @abstractmethod
    def apply_event(self, tenant: str, event: dict[str, Any]) -> dict[str, Any]:
        """A business event (payment, credit, void, edit, new invoice, email change)."""

    @abstractmethod
    def classify(self, scope: Scope) -> Classified | None:
        """Endpoint template, tenant and limits of a request; None for pages outside the API."""

    @abstractmethod
    def fault_response(self, rule: FaultRule, classified: Classified, scope: Scope) -> Response:
        """The platform's wire shape for an injected 429/5xx/401."""

    @abstractmethod
    def rate_limited_response(self, decision: Decision, classified: Classified) -> Response:
        """The platform's 429 for a request refused by its limits."""

    def limit_headers(self, decision: Decision, classified: Classified) -> dict[str, str]:
        """Headers every admitted response carries (Xero's X-*-Remaining); none by default."""
        return {}

    # -- the pipeline ---------------------------------------------------------------------------
    def asgi_app(self) -> ASGIApp:
        return _Pipeline(self, self.routes_app())


RAW_SEND_KEY = "arsync.sandbox.raw_send"


async def abort_connection(scope: Scope) -> None:
    """Close the client connection without an answer.

    The outermost sandbox app stores the server's own `send` in the scope; under uvicorn it is a
    bound method of the request cycle, which owns the socket's transport.
    """
    send = scope.get(RAW_SEND_KEY)
    owner = getattr(send, "__self__", None)
    transport = getattr(owner, "transport", None)
    if transport is not None:
        transport.abort()
        return
    # Not under uvicorn (e.g. an in-process transport): the nearest thing is a broken reply.
    raise ConnectionAbortedError("sandbox dropped the connection")


class _Pipeline:
    """ledger → transport faults → rate limits → handler (with added headers) → ledger."""

    def __init__(self, sim: PlatformSim, app: ASGIApp) -> None:
        self.sim = sim
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sim = self.sim
        classified = sim.classify(scope)
        if classified is None:
            # consent pages and discovery: a client that leaves mid-body is a dropped request
            with contextlib.suppress(ClientDisconnect):
                await self.app(scope, receive, send)
            return
        status_box: dict[str, int] = {}
        recorded = False

        def record(status: int | None) -> None:
            nonlocal recorded
            if classified.counted and not recorded:
                recorded = True
                sim.ledger.record(
                    sim.name,
                    "request",
                    tenant=classified.tenant,
                    endpoint=classified.endpoint,
                    status=status,
                    idempotency_key=_idempotency_key(scope),
                    path=scope.get("path", ""),
                    query=scope.get("query_string", b"").decode("latin-1"),
                )

        async def record_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
                # In the ledger before the client can see the answer, so a test that reads the
                # ledger right after a reply always finds the request there.
                record(message["status"])
            await send(message)

        try:
            await self._run(scope, receive, record_send, classified, status_box)
        except ClientDisconnect:
            # The client went away before the sandbox had read its body (a killed process, a
            # timeout): nobody is left to answer, and it is no sandbox failure to log. The
            # ledger keeps the request with no status, as for any dropped connection. Only
            # this exception is caught: anything else is a real error and must surface.
            pass
        finally:
            record(status_box.get("status"))  # dropped connections: never answered

    async def _run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        classified: Classified,
        status_box: dict[str, int],
    ) -> None:
        sim = self.sim
        rule = sim.faults.draw(sim.name, classified.endpoint, classified.tenant, TRANSPORT_FAULTS)
        if rule is not None:
            sim.ledger.record(
                sim.name,
                "fault_injected",
                tenant=classified.tenant,
                endpoint=classified.endpoint,
                fault=rule.kind.value,
                rule=rule.id,
            )
            if rule.kind is FaultKind.SLOW:
                await asyncio.sleep(float(rule.params.get("delay", 30.0)))
            elif rule.kind is FaultKind.DROP:
                status_box["status"] = 0
                await abort_connection(scope)
                return
            elif rule.kind is FaultKind.LOST_REPLY:
                await self._perform_then_drop(scope, receive, status_box)
                return
            else:
                await sim.fault_response(rule, classified, scope)(scope, receive, send)
                return
        latency = sim.sandbox.settings.latency
        decision = sim.limiter.check(classified.windows, concurrency=classified.concurrency)
        if not decision.allowed:
            sim.ledger.record(
                sim.name,
                "rate_limited",
                tenant=classified.tenant,
                endpoint=classified.endpoint,
                problem=decision.problem,
                retry_after=decision.retry_after,
            )
            await sim.rate_limited_response(decision, classified)(scope, receive, send)
            return
        extra = [
            (k.lower().encode(), v.encode())
            for k, v in sim.limit_headers(decision, classified).items()
        ]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = dict(message)
                message["headers"] = list(message.get("headers", [])) + extra
            await send(message)

        try:
            if latency > 0:
                await asyncio.sleep(latency)
            await self.app(scope, receive, send_with_headers)
        finally:
            if classified.concurrency is not None:
                sim.limiter.leave(classified.concurrency[0])

    async def _perform_then_drop(
        self,
        scope: Scope,
        receive: Receive,
        status_box: dict[str, int],
    ) -> None:
        async def discard(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box["performed"] = message["status"]

        with contextlib.suppress(Exception):
            await self.app(scope, receive, discard)
        status_box["status"] = 0
        await abort_connection(scope)


def _idempotency_key(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"idempotency-key":
            return str(value.decode("latin-1"))
    query = scope.get("query_string", b"").decode("latin-1")
    for part in query.split("&"):
        if part.startswith("requestid="):
            return str(part.split("=", 1)[1])
    return None
