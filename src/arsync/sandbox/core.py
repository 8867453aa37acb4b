"""The sandbox as one object: clock, ledger, fault plan, limits and both simulated platforms."""

from __future__ import annotations

import gc
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from arsync.sandbox.books import Books, generate_books
from arsync.sandbox.clock import SandboxClock
from arsync.sandbox.faults import FaultPlan
from arsync.sandbox.ledger import Ledger
from arsync.sandbox.oauth import Authority, Client, TokenSet
from arsync.sandbox.platform import RAW_SEND_KEY, PlatformSim, TenantInfo
from arsync.sandbox.ratelimit import RateLimiter

#: The OAuth apps every sandbox knows from the start. Their secrets are not secret: they only
#: open the simulated platforms on this machine.
DEMO_CLIENTS: dict[str, Client] = {
    "qbo": Client(
        client_id="ABarsyncDemoQuickBooksClient0000000000000000000",
        client_secret="sandbox-qbo-secret",
        name="arsync (sandbox)",
        redirect_uris=["http://localhost/callback", "http://127.0.0.1/callback"],
    ),
    "xero": Client(
        client_id="ARSYNCDEMOXEROCLIENT00000000000",
        client_secret="sandbox-xero-secret",
        name="arsync (sandbox)",
        redirect_uris=["http://localhost/callback", "http://127.0.0.1/callback"],
    ),
}


#: from this many invoices in all, the sandbox takes its books out of garbage collection
LARGE_BOOKS = 20_000


@dataclass(frozen=True)
class QboLimits:
    per_minute: int = 500
    per_second: int = 10
    concurrent: int = 10
    batch_per_minute: int = 40
    batch_items: int = 30
    max_results: int = 1000
    cdc_max_objects: int = 1000
    cdc_lookback_days: int = 30
    #: Intuit's sandbox caps emails at 40 a day per realm (primary); production documents no
    #: cap. On by default, as in Intuit's sandbox; None: no cap.
    emails_per_day: int | None = 40
    #: how long a requestid is remembered (undocumented by Intuit; best effort)
    requestid_window: timedelta = timedelta(days=1)


@dataclass(frozen=True)
class XeroLimits:
    concurrent: int = 5
    per_minute: int = 60
    per_day: int = 5000
    app_per_minute: int = 10_000
    max_page_size: int = 1000
    #: a History record's Details, in UTF-16 code units (Xero says 250 characters, not which
    #: kind: counted as .NET counts a string's Length, so an emoji is 2)
    history_details_max: int = 250
    #: Invoice emails a day per organisation, by its plan (secondary figures, so settings):
    #: paying organisations, trials (Class TRIAL) and the demo company (IsDemoCompany, or Class
    #: DEMO); None: no cap for that plan. The day is the organisation's own (its time zone).
    emails_per_day_paying: int | None = 1000
    emails_per_day_trial: int | None = 20
    emails_per_day_demo: int | None = 0
    #: one cap for every organisation whatever its plan, in place of the three above (None: by
    #: plan)
    emails_per_day: int | None = None
    #: how long a repeated Idempotency-Key answers with the first reply (about six minutes,
    #: secondary); after it the request is performed again. 0: never replayed.
    idempotency_window: timedelta = timedelta(minutes=6)
    #: Unknown on Xero: what an API email writes into the invoice's History. The sandbox's own
    #: choice when True: a record "Sent" / "This invoice has been sent to <addresses>."; False:
    #: nothing at all.
    email_history: bool = True
    #: Unknown on Xero: whether an API email sets the invoice's SentToContact. Default: it does
    #: (moving UpdatedDateUTC unless the invoice is partly paid, as Xero's caveat says).
    email_marks_sent: bool = True
    #: Unknown on Xero: whether putting a contact into a contact group (or taking it out, or
    #: deleting the group) moves the contact's UpdatedDateUTC. Default: it does not, so only a
    #: read of the groups (GET /ContactGroups/{id}) sees the change.
    group_change_moves_contact: bool = False
    #: Unknown on Xero: whether setting or clearing an invoice's ExpectedPaymentDate moves its
    #: UpdatedDateUTC. Default: it does not, so only a re-read of the open invoices sees it.
    expected_date_moves_invoice: bool = False

    def email_cap(self, org_class: str, is_demo_company: bool) -> int | None:
        """The day's cap of invoice emails for an organisation on this plan (None: none)."""
        if self.emails_per_day is not None:
            return self.emails_per_day
        if is_demo_company or org_class.upper() == "DEMO":
            return self.emails_per_day_demo
        if org_class.upper() == "TRIAL":
            return self.emails_per_day_trial
        return self.emails_per_day_paying


@dataclass(frozen=True)
class CompanySpec:
    """One simulated company to generate at start."""

    platform: str
    seed: int
    customers: int = 40
    invoices: int = 300
    name: str | None = None


@dataclass
class SandboxSettings:
    seed: int = 1
    #: the clock's start; None: now. Books are generated relative to it.
    start: datetime | None = None
    frozen: bool = False
    companies: list[CompanySpec] | None = None  # None: one demo company per platform
    customers: int = 40
    invoices: int = 300
    qbo: QboLimits = field(default_factory=QboLimits)
    xero: XeroLimits = field(default_factory=XeroLimits)
    #: artificial delay before every API handler (seconds), to make concurrency observable
    latency: float = 0.0

    def company_specs(self) -> list[CompanySpec]:
        if self.companies is not None:
            return self.companies
        return [
            CompanySpec("qbo", self.seed, self.customers, self.invoices),
            CompanySpec("xero", self.seed, self.customers, self.invoices),
        ]


class Sandbox:
    """Build once, serve through `asgi_app()` (e.g. by `SandboxServer`), steer from Python."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        from arsync.sandbox.qbo.sim import QboSim
        from arsync.sandbox.xero.sim import XeroSim

        self.settings = settings or SandboxSettings()
        self.clock = SandboxClock(self.settings.start, frozen=self.settings.frozen)
        self.ledger = Ledger(self.clock)
        self.faults = FaultPlan(self.settings.seed)
        self.limiter = RateLimiter(self.clock)
        self.lock = threading.RLock()  # business state: one writer at a time
        self.qbo = QboSim(self)
        self.xero = XeroSim(self)
        self.platforms: dict[str, PlatformSim] = {"qbo": self.qbo, "xero": self.xero}
        for platform, client in DEMO_CLIENTS.items():
            self.register_client(platform, client)
        specs = self.settings.company_specs()
        for spec in specs:
            self.add_company(spec)
        if sum(spec.invoices for spec in specs) >= LARGE_BOOKS:
            # Large books are millions of long-lived objects; without this every full garbage
            # collection walks them all, and a single page of 1000 invoices takes seconds.
            # Frozen objects are never collected, so small (test) sandboxes are left alone.
            gc.freeze()

    # -- set-up --------------------------------------------------------------------------------
    def add_company(self, spec: CompanySpec) -> TenantInfo:
        books: Books = generate_books(
            platform=spec.platform,
            seed=spec.seed,
            now=self.clock.now(),
            customers=spec.customers,
            invoices=spec.invoices,
            company_name=spec.name,
        )
        sim = self.platform(spec.platform)
        with self.lock:
            sim.load_books(books)
        return next(t for t in sim.tenants() if t.tenant_id == books.tenant_id)

    def register_client(self, platform: str, client: Client) -> Client:
        return self.platform(platform).authority.register_client(client)  # type: ignore[attr-defined,no-any-return]

    def platform(self, name: str) -> PlatformSim:
        try:
            return self.platforms[name]
        except KeyError:
            raise ValueError(f"unknown platform {name!r}: use 'qbo' or 'xero'") from None

    def tenants(self) -> list[TenantInfo]:
        return [t for sim in self.platforms.values() for t in sim.tenants()]

    # -- business events and faults -------------------------------------------------------------
    def event(self, platform: str, tenant: str, event: dict[str, Any]) -> dict[str, Any]:
        sim = self.platform(platform)
        with self.lock:
            result = sim.apply_event(tenant, event)
        self.ledger.record(platform, "business_event", tenant=tenant, event=event, result=result)
        return result

    def connect(self, platform: str, tenant: str, scopes: list[str] | None = None) -> TokenSet:
        """Tokens for the demo client to one tenant, as if its owner had clicked "Allow"."""
        sim = self.platform(platform)
        if tenant not in {t.tenant_id for t in sim.tenants()}:
            raise ValueError(f"no {platform} tenant {tenant!r} in this sandbox")
        default = {
            "qbo": ["com.intuit.quickbooks.accounting"],
            # accounting.settings.read: GET /Organisation (the firm's name, currency, zone)
            "xero": [
                "offline_access",
                "accounting.transactions",
                "accounting.contacts",
                "accounting.settings.read",
            ],
        }[platform]
        authority: Authority = sim.authority  # type: ignore[attr-defined]
        tokens = authority.issue_grant(
            DEMO_CLIENTS[platform].client_id, [tenant], scopes or default
        )
        self.ledger.record(platform, "token_issued", tenant=tenant, via="control-plane")
        return tokens

    def expire_access_tokens(self, platform: str, tenant: str | None = None) -> int:
        return self.platform(platform).authority.expire_access_tokens(tenant)  # type: ignore[attr-defined,no-any-return]

    def revoke_grants(self, platform: str, tenant: str | None = None) -> int:
        return self.platform(platform).authority.revoke_all(tenant)  # type: ignore[attr-defined,no-any-return]

    def issued_secrets(self) -> list[str]:
        """Every OAuth code and token both platforms issued, and the clients' secrets."""
        found: list[str] = []
        for platform in ("qbo", "xero"):
            authority: Authority = self.platform(platform).authority  # type: ignore[attr-defined]
            found.extend(authority.issued())
            found.extend(c.client_secret for c in authority.clients.values())
        return found

    # -- serving -------------------------------------------------------------------------------
    def asgi_app(self) -> ASGIApp:
        from arsync.sandbox.control import control_app

        app = Starlette(
            routes=[
                Mount("/qbo", app=self.qbo.asgi_app()),
                Mount("/xero", app=self.xero.asgi_app()),
                Mount("/_sandbox", app=control_app(self)),
            ]
        )
        return _KeepRawSend(app, self.clock)


class _KeepRawSend:
    """Outermost layer: keeps the server's own `send` so a fault can drop the connection, and
    stamps every reply's `Date` header from the sandbox clock (clients read server time from it).
    """

    def __init__(self, app: ASGIApp, clock: SandboxClock) -> None:
        self.app = app
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        scope[RAW_SEND_KEY] = send

        async def dated(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"date"]
                stamp = format_datetime(self.clock.now().astimezone(UTC), usegmt=True)
                headers.append((b"date", stamp.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, dated)
