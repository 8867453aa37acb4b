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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from arsync.domain import PLATFORM_NAMES, CompanyInfo, Page

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


QBO_LIMITS = Limits(per_minute=500, per_second=10, concurrent=10, per_day=None)
XERO_LIMITS = Limits(per_minute=60, per_second=None, concurrent=5, per_day=5000)


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
    "Limits",
    "Link",
    "Page",
    "StaticTokens",
    "TokenSource",
    "factory_for",
    "load_builtin",
    "register",
]
