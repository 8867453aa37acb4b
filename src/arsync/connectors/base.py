"""The Connector protocol and the platform registry: all the core knows of a platform.

A connector pulls one company's records as a stream of `Page`s (domain.py). Each page carries
the connector's whole cursor state after that page; the sync engine commits the page's records
and that state in one transaction, so a sync killed anywhere resumes from the last committed
page without missing or duplicating anything. The state is the connector's own JSON; the engine
only stores it and hands it back. A connector makes its calls through the `ApiSession` it is
given, which the connector's coordinator (runtime.py) shares with everything else that calls
the same company.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from arsync.domain import PLATFORM_NAMES, CompanyInfo, Invoice, Page
from arsync.errors import ArsyncError

if TYPE_CHECKING:
    from arsync.connectors.http import ApiSession


@dataclass(frozen=True)
class Limits:
    """What the rate governor keeps under, per company. Defaults are the platform's published
    limits; a connector file may lower them (or raise them against the sandbox)."""

    per_minute: int
    per_second: int | None
    concurrent: int
    per_day: int | None
    #: a wait longer than this parks the connector instead of sleeping in a worker
    park_after: timedelta = timedelta(minutes=5)
    #: how long the platform is taken to remember a write's idempotency key: a write whose
    #: reply was lost is sent again under its key only within it (None: RetryPolicy's default,
    #: 5 minutes, under Xero's reported 6; 0: never, when a platform honours no key)
    idempotency_window: timedelta | None = None


QBO_LIMITS = Limits(per_minute=500, per_second=10, concurrent=10, per_day=None)
XERO_LIMITS = Limits(per_minute=60, per_second=None, concurrent=5, per_day=5000)
#: what a platform allows one app (one client id) across all its companies, where it says:
#: Xero 10,000 calls a minute (QuickBooks' limits are per company and app, so per connector)
APP_LIMITS: dict[str, Limits] = {
    "xero": Limits(per_minute=10_000, per_second=None, concurrent=10_000, per_day=None),
}


@dataclass(frozen=True)
class Endpoints:
    """Where a platform lives. Production by default; `sandbox(root)` for arsync's sandbox."""

    authorize_url: str
    token_url: str
    revoke_url: str
    api_base: str
    #: Xero's tenant list; QBO names the company in the redirect (realmId)
    connections_url: str | None = None

    @staticmethod
    def production(platform: str) -> Endpoints:
        if platform == "qbo":
            return Endpoints(
                authorize_url="https://appcenter.intuit.com/connect/oauth2",
                token_url="https://oauth.platform.intuit.com/oauth2/v1/tokens/bearer",
                revoke_url="https://developer.api.intuit.com/v2/oauth2/tokens/revoke",
                api_base="https://quickbooks.api.intuit.com",
            )
        if platform == "xero":
            return Endpoints(
                authorize_url="https://login.xero.com/identity/connect/authorize",
                token_url="https://identity.xero.com/connect/token",
                revoke_url="https://identity.xero.com/connect/revocation",
                api_base="https://api.xero.com",
                connections_url="https://api.xero.com/connections",
            )
        raise ValueError(f"unknown platform {platform!r}")

    @staticmethod
    def sandbox(platform: str, root: str) -> Endpoints:
        """The same endpoints on arsync's sandbox served at `root` (e.g. http://127.0.0.1:8765)."""
        real = Endpoints.production(platform)
        root = root.rstrip("/")
        prefix = "/qbo" if platform == "qbo" else "/xero"
        hosts = {
            "appcenter.intuit.com": "appcenter",
            "oauth.platform.intuit.com": "oauth",
            "developer.api.intuit.com": "developer",
            "quickbooks.api.intuit.com": "api",
            "login.xero.com": "login",
            "identity.xero.com": "identity",
            "api.xero.com": "api",
        }

        def move(url: str) -> str:
            host, _, path = url.removeprefix("https://").partition("/")
            return f"{root}{prefix}/{hosts[host]}" + (f"/{path}" if path else "")

        return Endpoints(
            authorize_url=move(real.authorize_url),
            token_url=move(real.token_url),
            revoke_url=move(real.revoke_url),
            api_base=move(real.api_base),
            connections_url=move(real.connections_url) if real.connections_url else None,
        )


@dataclass(frozen=True)
class Link:
    """One connector as the platform code sees it: where to call and how often to sweep."""

    name: str
    platform: str
    tenant_id: str
    #: the API's base URL: https://quickbooks.api.intuit.com, https://api.xero.com or a sandbox's
    api_base: str
    limits: Limits
    sweep_every: timedelta = timedelta(hours=6)


class TokenSource(Protocol):
    """A valid access token for one connector; refreshes (single-flight) when needed."""

    def access_token(self) -> str: ...

    def invalidate(self, token: str) -> None:
        """The platform refused `token` (401): the next `access_token()` must be a fresh one."""


class StaticTokens:
    """A fixed access token (the demo, and tests that do not exercise refreshing)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def access_token(self) -> str:
        return self._token

    def invalidate(self, token: str) -> None:
        pass

    def __repr__(self) -> str:
        return "StaticTokens(<hidden>)"


class Connector(Protocol):
    platform: ClassVar[str]

    def company(self) -> CompanyInfo:
        """The company's own facts: name, home currency, country, the platform's time zone."""
        ...

    def pull(
        self,
        state: Mapping[str, Any] | None,
        *,
        full: bool,
        force_sweep: bool,
        local_open: Callable[[], set[str]],
        now: datetime,
    ) -> Iterator[Page]:
        """Pages from `state` on (None: nothing pulled yet, so a full pass).

        `full` starts a new full pass whatever the state. The connector sweeps the open
        invoices when `state` says the last sweep is older than `Link.sweep_every`, or when
        `force_sweep`; `local_open()` gives the ids the store holds as open, so the sweep can
        re-read the ones the platform no longer lists as open.
        """
        ...


# -- the writer side ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FreshInvoice:
    """An invoice as the platform has it at this moment: the fresh read before a write."""

    invoice: Invoice
    #: where the platform would email it now (QBO `BillEmail`); None where the invoice does not
    #: say (Xero sends to the contact's addresses, which the invoice does not carry)
    bill_email: str | None = None
    #: the platform's own record of its last email of the invoice (QBO `DeliveryInfo` of type
    #: Email: `DeliveryTime`); None when it has none or the platform keeps none on the invoice
    delivered_at: datetime | None = None


@dataclass(frozen=True)
class NoteWrite:
    """One dated note to put on one invoice, under an idempotency key."""

    invoice_id: str
    text: str
    #: the write's idempotency key (the action id, or derived from it)
    key: str


@dataclass(frozen=True)
class NoteOutcome:
    """What became of one `NoteWrite`: `ref` (the platform's id of the note, when it gives one)
    when written, or `error` when the platform refused that one note."""

    key: str
    written: bool
    ref: str | None = None
    error: ArsyncError | None = None


@dataclass(frozen=True)
class FoundNote:
    """A note the platform holds on an invoice (QBO attachable note, Xero history record)."""

    text: str
    at: datetime | None
    ref: str | None = None


@dataclass(frozen=True)
class FoundEmail:
    """The platform's evidence that it emailed an invoice: when, to whom, in its own words."""

    at: datetime
    to: str | None
    evidence: str


@dataclass(frozen=True)
class Trail:
    """What the platform shows of an invoice's notes and emails: the read-back of a write."""

    notes: tuple[FoundNote, ...] = ()
    emails: tuple[FoundEmail, ...] = ()
    #: the platform keeps a dependable record of its own emails on the invoice (QBO
    #: DeliveryInfo). False for Xero, whose History after an API email is undocumented: an
    #: absent email there proves nothing
    emails_recorded: bool = False


@runtime_checkable
class Writer(Protocol):
    """What the dispatcher asks of a platform. Every write carries an idempotency key; a write
    whose reply was lost raises OutcomeUnknown (never resent inside the call beyond what the
    session allows); a refusal raises PermanentError, or one of its precise kinds:
    `NoEmailAddress` (the customer has no address to send to) and `EmailCapReached` (the
    platform's daily cap of emails for the company is spent)."""

    def fresh(self, invoice_ids: Sequence[str]) -> dict[str, FreshInvoice]:
        """The invoices as they are now, batched (⌈N/page⌉ calls). An id missing from the
        answer is an invoice the platform no longer has."""
        ...

    def email(self, invoice_id: str, *, key: str, send_to: str | None = None) -> FoundEmail | None:
        """Have the platform email the invoice to its customer (or to `send_to`, where the
        platform allows another address). Returns the platform's evidence when the reply
        carries it (QBO), None when the reply is empty (Xero's 204)."""
        ...

    def notes(self, notes: Sequence[NoteWrite]) -> list[NoteOutcome]:
        """Put the notes on their invoices (QBO: batches of up to 30; Xero: one call each).
        One outcome per note, in order; raises OutcomeUnknown when a call's reply was lost
        (which of its notes were written is then for `read_back` to say)."""
        ...

    def read_back(self, invoice_ids: Sequence[str]) -> dict[str, Trail]:
        """The notes and emails the platform shows on each invoice (an id missing from the
        answer: the invoice is gone)."""
        ...

    def expect_payment(self, invoice_id: str, day: date | None, *, key: str) -> bool:
        """Write a promised payment date where the bookkeeper sees it (Xero's Expected Date);
        None clears it. False when the platform has no such field (QBO), so nothing was done."""
        ...


class ConnectorFactory(Protocol):
    def __call__(self, link: Link, session: ApiSession) -> Connector: ...


_REGISTRY: dict[str, ConnectorFactory] = {}


def register(platform: str, factory: ConnectorFactory) -> None:
    _REGISTRY[platform] = factory


_LOADING = threading.Lock()


def factory_for(platform: str) -> ConnectorFactory:
    # Connectors for several companies start on worker threads at once: load under a lock, or
    # one thread could see the registry half-filled by another's import.
    with _LOADING:
        if platform not in _REGISTRY:
            load_builtin()
    try:
        return _REGISTRY[platform]
    except KeyError:
        raise KeyError(f"no connector for platform {platform!r}") from None


def load_builtin() -> None:
    """Import the platforms shipped with arsync; each registers itself on import."""
    for module in ("arsync.connectors.quickbooks.connector", "arsync.connectors.xero.connector"):
        importlib.import_module(module)


__all__ = [
    "PLATFORM_NAMES",
    "QBO_LIMITS",
    "XERO_LIMITS",
    "CompanyInfo",
    "Connector",
    "ConnectorFactory",
    "Endpoints",
    "FoundEmail",
    "FoundNote",
    "FreshInvoice",
    "Limits",
    "Link",
    "NoteOutcome",
    "NoteWrite",
    "Page",
    "StaticTokens",
    "TokenSource",
    "Trail",
    "Writer",
    "factory_for",
    "load_builtin",
    "register",
]
