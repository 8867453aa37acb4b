"""The composition root: what one arsync process runs on, and one coordinator per connector.

`Runtime` holds the configuration, the clock and the store. `Coordinator` is one connector's
long-lived link to its company: the API session with its rate governor, the token source and
the platform's connector, built once and shared by everything that calls the company (sync
today, dispatch next), so they spend one budget of the platform's limits between them. The
governor writes its calls down in the store by the minute, so the day's count outlives a
restart. Nothing else in arsync builds sessions or governors for a connector.
"""

from __future__ import annotations

import dataclasses
import http.cookiejar
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import httpx
import structlog
from cryptography.fernet import MultiFernet

from arsync.clock import Clock, SystemClock, sandbox_clock
from arsync.config import SETTINGS_FILE, Config, ConnectorConfig
from arsync.connectors.base import APP_LIMITS, Connector, Link, TokenSource, factory_for
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import DEFAULT_TIMEOUT, ApiSession, RetryPolicy
from arsync.errors import NotConnected
from arsync.store import ConnectorRow, Store, open_store

if TYPE_CHECKING:
    from arsync.connectors.oauth import OAuthApp, TokenManager

log = structlog.get_logger("arsync.runtime")


def clock_for(config: Config) -> Clock:
    """The system's clock, or the sandbox's when the configuration says to follow it."""
    url = config.settings.clock.sandbox
    if url is None:
        return SystemClock()
    clock = sandbox_clock(url, where=f"{SETTINGS_FILE}: clock.sandbox")
    log.debug("time follows the sandbox", sandbox=url, now=clock.now().isoformat())
    return clock


class StoreUsage:
    """A connector's API calls written down in the store (a RateGovernor's UsageLog)."""

    #: how long written-down calls are kept: past a day they no longer count anywhere
    KEEP = timedelta(days=2)

    def __init__(self, store: Store, connector_id: int) -> None:
        self.store = store
        self.connector_id = connector_id

    def recent(self, since: datetime) -> list[tuple[datetime, int]]:
        with self.store.reading() as tx:
            return tx.usage.since(self.connector_id, since)

    def save(self, counts: dict[datetime, int]) -> None:
        with self.store.transaction() as tx:
            tx.usage.add(self.connector_id, counts)
            tx.usage.forget_before(self.connector_id, tx.now - self.KEEP)


class Coordinator:
    """One connector's session, governor, tokens and platform connector, built once."""

    def __init__(
        self,
        name: str,
        connector_id: int,
        link: Link,
        tokens: TokenSource,
        store: Store,
        *,
        http: httpx.Client | None = None,
        app: RateGovernor | None = None,
    ) -> None:
        self.name = name
        self.connector_id = connector_id
        self.link = link
        self.tokens = tokens
        self.store = store
        self.clock = store.clock
        #: a client handed in is shared with other coordinators: closing this one leaves it
        self._own_http = http is None
        self.governor = RateGovernor(
            link.limits, store.clock, usage=StoreUsage(store, connector_id), parent=app
        )
        self.session = ApiSession(
            platform=link.platform,
            tokens=tokens,
            governor=self.governor,
            clock=store.clock,
            http=http or httpx.Client(timeout=DEFAULT_TIMEOUT),
            retry=retry_policy(link),
        )
        self.connector: Connector = factory_for(link.platform)(link, self.session)

    def __repr__(self) -> str:
        return f"Coordinator({self.name!r}, platform={self.link.platform!r})"

    @property
    def api_calls(self) -> int:
        """Calls made through this coordinator so far (each retry counts)."""
        return self.governor.calls

    def before_work(self) -> None:
        """What runs before each unit of work: an idle link's keep-alive token refresh."""
        from arsync.connectors.oauth import TokenManager

        if isinstance(self.tokens, TokenManager):
            self.tokens.keep_alive()

    def close(self) -> None:
        self.governor.flush()
        if self._own_http:
            self.session.close()


class Runtime:
    """The configuration, the clock, the store and the connectors' coordinators of a process."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store
        self.clock = store.clock
        self._fernet: MultiFernet | None = None
        self._coordinators: dict[str, Coordinator] = {}
        self._apps: list[OAuthApp] = []
        self._http: httpx.Client | None = None
        #: one governor per platform app (client id) where the platform limits the app
        self._apps_governors: dict[tuple[str, str], RateGovernor] = {}

    @classmethod
    def open(cls, config: Config, clock: Clock | None = None) -> Runtime:
        """Open the configured store (migrating it) on the configured clock."""
        clock = clock or clock_for(config)
        return cls(config, open_store(config.settings.store_url(), clock))

    def http(self) -> httpx.Client:
        """The one HTTP client of this process's coordinators and OAuth apps: its connection
        pool and TLS context are made once, not twice per connector (35 ms and a TLS context
        each), and connections to a platform are kept alive across connectors and cycles."""
        if self._http is None:
            # no cookie is kept: a platform's cookie for one company must not ride along
            # with the calls of another through the shared client
            refuse = http.cookiejar.DefaultCookiePolicy(allowed_domains=[])
            self._http = httpx.Client(
                timeout=DEFAULT_TIMEOUT,
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
                cookies=http.cookiejar.CookieJar(policy=refuse),
            )
        return self._http

    def key_ring(self, *, create: bool = False) -> MultiFernet:
        from arsync.connectors.oauth import load_key

        if self._fernet is None:
            settings = self.config.settings
            self._fernet = load_key(
                settings.key_location(), credential=settings.secrets.credential, create=create
            )
        return self._fernet

    def oauth_app(self, connector: ConnectorConfig) -> OAuthApp:
        app = oauth_app(connector, self.clock, http=self.http())
        self._apps.append(app)
        return app

    def coordinator(self, name: str) -> Coordinator:
        """The coordinator of connector `name`, built on first use. ConfigError when it is not
        configured, NotConnected when it was never linked to its company."""
        found = self._coordinators.get(name)
        if found is not None:
            return found
        connector = self.config.connector(name)
        with self.store.transaction() as tx:
            row = tx.connectors.ensure(connector.name, connector.platform_code)
        if not row.linked or row.tenant_id is None:
            raise NotConnected(f"not connected yet: run `arsync connect {name}`")
        made = Coordinator(
            name,
            row.id,
            link_for(connector, row),
            self.token_manager(connector, row),
            self.store,
            http=self.http(),
            app=self.app_governor(connector),
        )
        self._coordinators[name] = made
        return made

    def coordinators(self) -> dict[str, Coordinator]:
        """The coordinators built so far, by connector name (a copy)."""
        return dict(self._coordinators)

    def app_governor(self, connector: ConnectorConfig) -> RateGovernor | None:
        """The governor every connector of one app (platform and client id) shares: Xero
        limits an app across all its organisations as well as each one."""
        limits = APP_LIMITS.get(connector.platform_code)
        if limits is None:
            return None
        key = (connector.platform_code, connector.oauth.client_id)
        found = self._apps_governors.get(key)
        if found is None:
            found = self._apps_governors[key] = RateGovernor(limits, self.clock)
        return found

    def forget(self, name: str) -> None:
        """Close connector `name`'s coordinator (its configuration changed, or it went)."""
        found = self._coordinators.pop(name, None)
        if found is not None:
            found.close()

    def token_manager(self, connector: ConnectorConfig, row: ConnectorRow) -> TokenManager:
        from arsync.connectors.oauth import TokenManager, TokenVault

        vault = TokenVault(self.store, self.key_ring())
        return TokenManager(vault, self.oauth_app(connector), row.id)

    def close(self) -> None:
        for coordinator in self._coordinators.values():
            coordinator.close()
        for app in self._apps:
            app.close()
        if self._http is not None:
            self._http.close()
        self.store.close()


def retry_policy(link: Link) -> RetryPolicy:
    """Retries inside a call, with the connector's own idempotency window if it sets one."""
    policy = RetryPolicy()
    window = link.limits.idempotency_window
    if window is None:
        return policy
    return dataclasses.replace(
        policy, idempotency_window={**policy.idempotency_window, link.platform: window}
    )


def link_for(connector: ConnectorConfig, row: ConnectorRow) -> Link:
    assert row.tenant_id is not None
    return Link(
        name=connector.name,
        platform=connector.platform_code,
        tenant_id=row.tenant_id,
        api_base=connector.endpoints().api_base,
        limits=connector.limits(),
        sweep_every=connector.sweep_interval,
    )


def oauth_app(
    connector: ConnectorConfig, clock: Clock, *, http: httpx.Client | None = None
) -> OAuthApp:
    from arsync.connectors.oauth import OAuthApp

    return OAuthApp(
        connector.platform_code,
        connector.oauth.client_id,
        connector.client_secret(),
        connector.endpoints(),
        connector.oauth.scopes,
        str(connector.oauth.redirect_uri) if connector.oauth.redirect_uri else None,
        clock=clock,
        http=http,
    )
