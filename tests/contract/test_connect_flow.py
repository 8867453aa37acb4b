"""`arsync connect` against the sandbox: consent pages driven the way a browser submits them.

The loopback tests follow the consent page's redirect to arsync's own listener on 127.0.0.1;
the headless tests paste the address the browser ended on. Storing a connection runs on SQLite
and on PostgreSQL.
"""

from __future__ import annotations

import html
import queue
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine, func, select

from arsync.connect import Connection, TenantChoice, connect, store_connection
from arsync.connectors.base import Endpoints
from arsync.connectors.oauth import OAuthApp, TokenRecord, TokenVault
from arsync.domain import CompanyInfo
from arsync.errors import AuthError, ConfigError
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import DEMO_CLIENTS, CompanySpec
from arsync.sandbox.oauth import Authority
from arsync.store import Store
from arsync.store.schema import connectors, events, tokens
from tests.support import clock_of, form_fields


def make_app(server: SandboxServer, platform: str, redirect_uri: str | None = None) -> OAuthApp:
    client = DEMO_CLIENTS[platform]
    return OAuthApp(
        platform,
        client.client_id,
        client.client_secret,
        Endpoints.sandbox(platform, server.url),
        redirect_uri=redirect_uri,
        clock=clock_of(server.sandbox),
    )


def live(sandbox: Sandbox, platform: str, access_token: str) -> bool:
    authority: Authority = sandbox.platform(platform).authority  # type: ignore[attr-defined]
    return authority.check_access(access_token) is not None


def consent(url: str, *, allow: bool = True, tenants: list[str] | None = None) -> str:
    """Open the consent page, pick companies, press a button; the redirect's address."""
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        choice = "realm" if "/qbo/" in url else "tenant"
        hidden, offered = form_fields(page.text, choice)
        data: dict[str, str | list[str]] = dict(hidden)
        if choice == "realm":
            data["realm"] = (tenants or offered)[0]
            data["action"] = "connect" if allow else "cancel"
        else:
            data["tenant"] = tenants if tenants is not None else offered
            data["action"] = "allow" if allow else "cancel"
        answer = browser.post(url.split("?")[0], data=data)
    assert answer.status_code == 302, answer.text
    return str(answer.headers["location"])


def with_state(location: str, state: str) -> str:
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = state
    return urlunsplit(parts._replace(query=urlencode(query)))


@dataclass
class Outcome:
    connection: Connection | None = None
    error: BaseException | None = None
    page: httpx.Response | None = None
    echoed: list[str] = field(default_factory=list)
    choices: list[list[TenantChoice]] = field(default_factory=list)


def run(
    app: OAuthApp,
    *,
    headless: bool,
    browser: Callable[[str], str],
    choose: Callable[[list[TenantChoice]], TenantChoice] = lambda options: options[0],
    timeout: float = 30,
    port: int = 0,
) -> Outcome:
    """Run `connect` with `browser` (consent address → redirect address) as the person."""
    outcome = Outcome()
    urls: queue.Queue[str] = queue.Queue()

    def echo(line: str) -> None:
        outcome.echoed.append(line)
        if line.startswith("http"):
            urls.put(line)

    def choose_tenant(options: list[TenantChoice]) -> TenantChoice:
        outcome.choices.append(options)
        return choose(options)

    def read_line(prompt: str) -> str:
        return browser(urls.get(timeout=10))

    def attempt() -> None:
        try:
            outcome.connection = connect(
                app,
                open_browser=False,
                headless=headless,
                choose_tenant=choose_tenant,
                port=port,
                timeout=timeout,
                echo=echo,
                read_line=read_line,
            )
        except Exception as err:  # the test inspects it
            outcome.error = err

    if headless:
        attempt()
        return outcome
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(attempt)
        location = browser(urls.get(timeout=10))
        assert location.startswith("http://127.0.0.1:"), location
        outcome.page = httpx.get(location, timeout=30)
        running.result(timeout=30)
    return outcome


@pytest.fixture
def apps(server: SandboxServer) -> Iterator[Callable[..., OAuthApp]]:
    made: list[OAuthApp] = []

    def build(platform: str, redirect_uri: str | None = None) -> OAuthApp:
        made.append(make_app(server, platform, redirect_uri))
        return made[-1]

    yield build
    for app in made:
        app.close()


@pytest.mark.parametrize("headless", [False, True], ids=["loopback", "headless"])
def test_qbo_connects_with_the_realm_from_the_redirect(
    server: SandboxServer, apps: Callable[..., OAuthApp], headless: bool
) -> None:
    sandbox = server.sandbox
    company = sandbox.qbo.tenants()[0]

    outcome = run(apps("qbo"), headless=headless, browser=consent)

    assert outcome.error is None, outcome.error
    connection = outcome.connection
    assert connection is not None
    assert connection.tenant_id == company.tenant_id
    assert connection.company.name == company.name
    # the company's own facts are read with the new grant
    assert connection.company.base_currency == company.base_currency
    assert connection.company.country == company.country
    assert live(sandbox, "qbo", connection.tokens.access_token)
    assert connection.tokens.connected_at == sandbox.clock.now()
    assert sandbox.ledger.count(platform="qbo", kind="token_issued") == 1
    assert outcome.choices == []
    if headless:
        assert connection.redirect_uri == "http://127.0.0.1/callback"
    else:
        assert outcome.page is not None and outcome.page.status_code == 200
        assert f"arsync is connected to {html.escape(company.name)}" in outcome.page.text
        assert "close this tab" in outcome.page.text


@pytest.mark.parametrize("headless", [False, True], ids=["loopback", "headless"])
def test_xero_connects_one_organisation_with_pkce(
    server: SandboxServer, apps: Callable[..., OAuthApp], headless: bool
) -> None:
    sandbox = server.sandbox
    org = sandbox.xero.tenants()[0]

    outcome = run(apps("xero"), headless=headless, browser=consent)

    assert outcome.error is None, outcome.error
    connection = outcome.connection
    assert connection is not None
    assert (connection.tenant_id, connection.company.name) == (org.tenant_id, org.name)
    assert connection.company.timezone is not None  # the organisation's, as Xero writes it
    assert "code_challenge_method=S256" in next(e for e in outcome.echoed if e.startswith("http"))
    assert live(sandbox, "xero", connection.tokens.access_token)
    assert connection.tokens.scope is not None and "offline_access" in connection.tokens.scope
    if not headless:
        assert outcome.page is not None
        assert f"arsync is connected to {html.escape(org.name)}" in outcome.page.text


def test_xero_with_two_organisations_asks_which_one(
    server: SandboxServer, apps: Callable[..., OAuthApp]
) -> None:
    sandbox = server.sandbox
    first = sandbox.xero.tenants()[0]
    second = sandbox.add_company(
        CompanySpec("xero", seed=12, customers=3, invoices=5, name="Second Org Ltd")
    )

    outcome = run(
        apps("xero"),
        headless=False,
        browser=consent,
        choose=lambda options: next(o for o in options if o.name == "Second Org Ltd"),
    )

    assert outcome.error is None, outcome.error
    assert len(outcome.choices) == 1
    assert {(c.tenant_id, c.name) for c in outcome.choices[0]} == {
        (first.tenant_id, first.name),
        (second.tenant_id, "Second Org Ltd"),
    }
    assert outcome.connection is not None
    assert outcome.connection.tenant_id == second.tenant_id
    assert outcome.connection.company.name == "Second Org Ltd"
    assert outcome.page is not None and "terminal" in outcome.page.text


@pytest.mark.parametrize("headless", [False, True], ids=["loopback", "headless"])
@pytest.mark.parametrize("platform", ["qbo", "xero"])
def test_an_answer_with_another_state_is_refused_and_the_code_never_used(
    server: SandboxServer, apps: Callable[..., OAuthApp], platform: str, headless: bool
) -> None:
    outcome = run(
        apps(platform),
        headless=headless,
        browser=lambda url: with_state(consent(url), "forged-state"),
    )

    assert isinstance(outcome.error, AuthError)
    assert "does not belong to this connect attempt" in str(outcome.error)
    assert outcome.connection is None
    assert server.sandbox.ledger.count(platform=platform, kind="token_issued") == 0
    if not headless:
        assert outcome.page is not None and outcome.page.status_code == 400
        assert "arsync was not connected" in outcome.page.text


@pytest.mark.parametrize("headless", [False, True], ids=["loopback", "headless"])
@pytest.mark.parametrize("platform", ["qbo", "xero"])
def test_access_denied_on_the_consent_page_is_reported(
    server: SandboxServer, apps: Callable[..., OAuthApp], platform: str, headless: bool
) -> None:
    outcome = run(apps(platform), headless=headless, browser=lambda url: consent(url, allow=False))

    assert isinstance(outcome.error, AuthError)
    assert "access was denied" in str(outcome.error)
    assert "nothing was stored" in str(outcome.error)
    assert server.sandbox.ledger.count(platform=platform, kind="token_issued") == 0
    if not headless:
        assert outcome.page is not None and "access was denied" in outcome.page.text


def test_a_fixed_loopback_redirect_is_listened_on_as_given(
    server: SandboxServer, apps: Callable[..., OAuthApp]
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redirect = f"http://127.0.0.1:{port}/callback"

    outcome = run(apps("qbo", redirect), headless=False, browser=consent)

    assert outcome.error is None, outcome.error
    assert outcome.connection is not None
    assert outcome.connection.redirect_uri == redirect


def test_no_answer_in_time_and_a_busy_port_are_clear_errors(
    server: SandboxServer, apps: Callable[..., OAuthApp]
) -> None:
    app = apps("qbo")
    with pytest.raises(AuthError, match="no answer from the browser within"):
        connect(
            app,
            open_browser=False,
            headless=False,
            choose_tenant=lambda options: options[0],
            timeout=0.2,
            echo=lambda line: None,
            read_line=lambda prompt: "",
        )
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        with pytest.raises(ConfigError, match="--headless"):
            connect(
                app,
                open_browser=False,
                headless=False,
                choose_tenant=lambda options: options[0],
                port=busy.getsockname()[1],
                echo=lambda line: None,
                read_line=lambda prompt: "",
            )


# -- storing a connection ------------------------------------------------------------------------


def connection_for(sandbox: Sandbox, platform: str, tenant: str, name: str) -> Connection:
    issued = sandbox.connect(platform, tenant)
    now = sandbox.clock.now()
    record = TokenRecord(
        access_token=issued.access_token,
        refresh_token=issued.refresh_token,
        access_expires_at=now + timedelta(seconds=issued.expires_in),
        refresh_expires_at=now + timedelta(seconds=issued.refresh_expires_in),
        refreshed_at=now,
        connected_at=now,
        scope=" ".join(issued.scopes),
    )
    return Connection(platform, tenant, CompanyInfo(name), record, "http://127.0.0.1/callback")


@pytest.fixture
def store(db_engine: Engine, sandbox: Sandbox) -> Store:
    return Store(db_engine, clock_of(sandbox))


@pytest.fixture
def vault(store: Store) -> TokenVault:
    return TokenVault(store, MultiFernet([Fernet(Fernet.generate_key())]))


def test_a_loopback_connection_is_stored_in_one_go(
    server: SandboxServer,
    apps: Callable[..., OAuthApp],
    db_engine: Engine,
    store: Store,
    vault: TokenVault,
) -> None:
    outcome = run(apps("xero"), headless=False, browser=consent)
    assert outcome.connection is not None

    connector_id = store_connection(store, vault, "acme-books", "xero", outcome.connection)

    with db_engine.connect() as conn:
        row = conn.execute(select(connectors).where(connectors.c.id == connector_id)).one()
        trail = conn.execute(select(events).where(events.c.connector_id == connector_id)).all()
    assert (row.name, row.platform, row.status) == ("acme-books", "xero", "connected")
    assert row.tenant_id == outcome.connection.tenant_id
    assert row.company_name == outcome.connection.company.name
    assert row.platform_timezone == outcome.connection.company.timezone
    assert row.base_currency == outcome.connection.company.base_currency
    assert [(e.entity, e.action, e.external_id) for e in trail] == [
        ("connector", "connected", outcome.connection.tenant_id)
    ]
    stored = vault.load(connector_id)
    assert stored is not None
    assert stored.access_token == outcome.connection.tokens.access_token
    assert stored.refresh_token == outcome.connection.tokens.refresh_token
    assert stored.generation == 1


def test_reconnecting_the_same_company_clears_the_reconnect_mark(
    sandbox: Sandbox, db_engine: Engine, store: Store, vault: TokenVault
) -> None:
    realm = sandbox.qbo.tenants()[0].tenant_id
    first = connection_for(sandbox, "qbo", realm, "Acme")
    connector_id = store_connection(store, vault, "acme", "qbo", first)
    with store.transaction() as tx:
        tx.connectors.mark_reconnect_needed(connector_id, "refused; run `arsync connect acme`")

    again = connection_for(sandbox, "qbo", realm, "Acme Renamed")
    assert store_connection(store, vault, "acme", "qbo", again) == connector_id

    with db_engine.connect() as conn:
        row = conn.execute(select(connectors).where(connectors.c.id == connector_id)).one()
        actions = (
            conn.execute(
                select(events.c.action)
                .where(events.c.connector_id == connector_id)
                .order_by(events.c.id)
            )
            .scalars()
            .all()
        )
    assert (row.status, row.status_reason, row.company_name) == ("connected", None, "Acme Renamed")
    assert actions == ["connected", "reconnect_needed", "connected"]
    stored = vault.load(connector_id)
    assert stored is not None
    assert stored.refresh_token == again.tokens.refresh_token
    assert stored.generation == 2


def test_reconnecting_to_a_different_company_is_refused_and_changes_nothing(
    sandbox: Sandbox, db_engine: Engine, store: Store, vault: TokenVault
) -> None:
    other = sandbox.add_company(CompanySpec("xero", seed=12, customers=3, invoices=5))
    mine = sandbox.xero.tenants()[0]
    connector_id = store_connection(
        store, vault, "acme", "xero", connection_for(sandbox, "xero", mine.tenant_id, "Acme")
    )
    before = vault.load(connector_id)
    switched = connection_for(sandbox, "xero", other.tenant_id, other.name)

    with pytest.raises(ConfigError) as caught:
        store_connection(store, vault, "acme", "xero", switched)

    message = str(caught.value)
    assert "belong to the other company" in message
    assert "new connector file" in message
    assert switched.tokens.access_token not in message
    assert vault.load(connector_id) == before
    with db_engine.connect() as conn:
        row = conn.execute(select(connectors).where(connectors.c.id == connector_id)).one()
        n_events = conn.execute(select(func.count()).select_from(events)).scalar_one()
        n_tokens = conn.execute(select(func.count()).select_from(tokens)).scalar_one()
    assert (row.tenant_id, row.company_name) == (mine.tenant_id, "Acme")
    assert (n_events, n_tokens) == (1, 1)
    with pytest.raises(ConfigError, match="Xero connector"):
        store_connection(
            store,
            vault,
            "acme",
            "qbo",
            connection_for(sandbox, "qbo", sandbox.qbo.tenants()[0].tenant_id, "Q"),
        )
