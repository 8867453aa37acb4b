"""Tokens against the sandbox's real token endpoints, stored on SQLite and on PostgreSQL.

Each test seeds a connector with tokens the sandbox issued, then drives a TokenManager:
refresh ahead of expiry, a lost reply retried with the same refresh token, one refresh for
many threads and for two processes, a dead grant marking only its own connector, keep-alive,
and no secret in the database, reprs, logs or exception text.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet, MultiFernet
from sqlalchemy import Engine, create_engine, select, text

from arsync.clock import Clock, FollowingClock, FrozenClock
from arsync.connectors.base import Endpoints, TokenSource
from arsync.connectors.oauth import OAuthApp, TokenManager, TokenRecord, TokenVault
from arsync.domain import CompanyInfo
from arsync.errors import ReconnectNeeded, TransientError
from arsync.sandbox import FaultKind, Sandbox, SandboxServer
from arsync.sandbox.core import DEMO_CLIENTS, CompanySpec
from arsync.sandbox.oauth import Authority
from arsync.store import Store
from arsync.store.schema import connectors, events, metadata, tokens
from tests.support import TEST_NOW

TOKEN_ENDPOINT = {"qbo": "POST /oauth2/v1/tokens/bearer", "xero": "POST /connect/token"}
PLATFORMS = ["qbo", "xero"]


def no_sleep(_seconds: float) -> None:
    """Backoff between retries is not what these tests are about."""


def sandbox_clock(sandbox: Sandbox) -> Clock:
    """The sandbox's time, without waiting through the backoff between retries."""
    return FollowingClock(sandbox.clock.now, sandbox.clock.monotonic, no_sleep)


def make_app(platform: str, server_url: str, clock: Clock) -> OAuthApp:
    client = DEMO_CLIENTS[platform]
    return OAuthApp(
        platform,
        client.client_id,
        client.client_secret,
        Endpoints.sandbox(platform, server_url),
        clock=clock,
    )


def authority(sandbox: Sandbox, platform: str) -> Authority:
    found: Authority = sandbox.platform(platform).authority  # type: ignore[attr-defined]
    return found


@dataclass
class Seeded:
    connector_id: int
    tenant: str
    first: TokenRecord


class World:
    """One database, one sandbox server, and the helpers the tests share."""

    def __init__(self, engine: Engine, server: SandboxServer, key: bytes) -> None:
        self.engine = engine
        self.server = server
        self.sandbox = server.sandbox
        self.key = key
        self.clock = sandbox_clock(self.sandbox)
        self.store = Store(engine, self.clock)
        self.vault = TokenVault(self.store, MultiFernet([Fernet(key)]))
        self.apps: list[OAuthApp] = []

    def app(self, platform: str) -> OAuthApp:
        app = make_app(platform, self.server.url, self.clock)
        self.apps.append(app)
        return app

    def seed(
        self,
        platform: str,
        name: str,
        *,
        expires_in: timedelta,
        tenant: str | None = None,
    ) -> Seeded:
        """A connected connector whose stored access token expires `expires_in` from now."""
        tenant = tenant or self.sandbox.platform(platform).tenants()[0].tenant_id
        issued = self.sandbox.connect(platform, tenant)
        now = self.sandbox.clock.now()
        with self.store.transaction() as tx:
            row, _ = tx.connectors.link(name, platform, tenant, CompanyInfo(name), at=now)
            connector_id = row.id
        record = self.vault.save(
            connector_id,
            TokenRecord(
                access_token=issued.access_token,
                refresh_token=issued.refresh_token,
                access_expires_at=now + expires_in,
                refresh_expires_at=None,
                refreshed_at=now,
                connected_at=now,
            ),
        )
        return Seeded(connector_id, tenant, record)

    def manager(self, platform: str, connector_id: int, **options: Any) -> TokenManager:
        return TokenManager(self.vault, self.app(platform), connector_id, **options)

    def refreshes(self, platform: str) -> int:
        return self.sandbox.ledger.count(platform=platform, kind="token_refreshed")

    def rejections(self, platform: str) -> int:
        return self.sandbox.ledger.count(platform=platform, kind="token_rejected")

    def live(self, platform: str, access_token: str) -> bool:
        return authority(self.sandbox, platform).check_access(access_token) is not None

    def current_refresh(self, platform: str, refresh_token: str) -> str | None:
        grant = authority(self.sandbox, platform).grant_for_refresh(refresh_token)
        return None if grant is None or grant.revoked else grant.current_refresh

    def close(self) -> None:
        for app in self.apps:
            app.close()


@pytest.fixture
def key() -> bytes:
    return Fernet.generate_key()


@pytest.fixture
def world(db_engine: Engine, server: SandboxServer, key: bytes) -> Iterator[World]:
    made = World(db_engine, server, key)
    yield made
    made.close()


@pytest.fixture
def slow_world(
    db_engine: Engine, sandbox_factory: Callable[..., Sandbox], key: bytes
) -> Iterator[World]:
    """A sandbox whose every answer takes a moment, so concurrent refreshes really overlap."""
    with SandboxServer(sandbox_factory(latency=0.3)) as server:
        made = World(db_engine, server, key)
        yield made
        made.close()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_refreshes_ahead_of_expiry_and_not_before(world: World, platform: str) -> None:
    seeded = world.seed(platform, "books", expires_in=timedelta(minutes=10))
    manager = world.manager(platform, seeded.connector_id)

    assert manager.access_token() == seeded.first.access_token
    assert world.refreshes(platform) == 0

    world.sandbox.clock.advance(timedelta(minutes=6))  # 4 minutes left: inside the margin
    fresh = manager.access_token()
    assert fresh != seeded.first.access_token
    assert world.refreshes(platform) == 1
    assert world.live(platform, fresh)
    stored = world.vault.load(seeded.connector_id)
    assert stored is not None
    assert stored.access_token == fresh
    assert stored.generation == seeded.first.generation + 1
    assert stored.access_expires_at > world.sandbox.clock.now() + timedelta(minutes=25)
    assert manager.access_token() == fresh  # now fresh: no more refreshing
    assert world.refreshes(platform) == 1


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_lost_reply_is_retried_with_the_same_refresh_token(world: World, platform: str) -> None:
    seeded = world.seed(platform, "books", expires_in=timedelta(minutes=1))
    # QBO hands out a new refresh token only once the old one is a day old
    world.sandbox.clock.advance(timedelta(hours=25) if platform == "qbo" else timedelta(0))
    rule = world.sandbox.faults.add(
        kind=FaultKind.LOST_REPLY, platform=platform, endpoint=TOKEN_ENDPOINT[platform]
    )
    manager = world.manager(platform, seeded.connector_id)

    token = manager.access_token()

    assert rule.fired == 1
    # the platform performed both refreshes: the one whose reply was lost, and the retry
    assert world.refreshes(platform) == 2
    assert world.rejections(platform) == 0
    assert world.live(platform, token)
    stored = world.vault.load(seeded.connector_id)
    assert stored is not None
    assert stored.access_token == token
    assert stored.generation == seeded.first.generation + 1
    # the rotation the lost reply carried was not lost: the store holds the chain's head
    assert stored.refresh_token != seeded.first.refresh_token
    assert world.current_refresh(platform, stored.refresh_token) == stored.refresh_token
    # and it keeps working
    manager.refresh(force=True)
    assert world.rejections(platform) == 0


@pytest.mark.parametrize("platform", PLATFORMS)
def test_a_process_killed_before_its_commit_recovers_on_the_next_start(
    world: World, platform: str
) -> None:
    seeded = world.seed(platform, "books", expires_in=timedelta(minutes=-1))
    world.sandbox.clock.advance(timedelta(hours=25) if platform == "qbo" else timedelta(0))
    world.sandbox.faults.add(
        kind=FaultKind.LOST_REPLY, platform=platform, endpoint=TOKEN_ENDPOINT[platform], times=3
    )
    with pytest.raises(TransientError, match="kept for the next try"):
        world.manager(platform, seeded.connector_id, attempts=3).access_token()
    # every reply was lost after the platform rotated: the store still has the old token
    unchanged = world.vault.load(seeded.connector_id)
    assert unchanged == seeded.first
    assert world.current_refresh(platform, seeded.first.refresh_token) != (
        seeded.first.refresh_token
    )

    restarted = world.manager(platform, seeded.connector_id)
    token = restarted.access_token()

    assert world.live(platform, token)
    assert world.rejections(platform) == 0
    stored = world.vault.load(seeded.connector_id)
    assert stored is not None
    assert world.current_refresh(platform, stored.refresh_token) == stored.refresh_token


@pytest.mark.parametrize("platform", PLATFORMS)
def test_eight_threads_on_an_expired_token_make_one_refresh(
    slow_world: World, platform: str
) -> None:
    world = slow_world
    seeded = world.seed(platform, "books", expires_in=timedelta(minutes=-1))
    shared = world.manager(platform, seeded.connector_id)
    own = [world.manager(platform, seeded.connector_id) for _ in range(4)]
    managers = [shared] * 4 + own
    start = threading.Barrier(len(managers))

    def call(manager: TokenManager) -> str:
        start.wait()
        return manager.access_token()

    with ThreadPoolExecutor(len(managers)) as pool:
        got = list(pool.map(call, managers))

    assert len(set(got)) == 1
    assert world.refreshes(platform) == 1
    stored = world.vault.load(seeded.connector_id)
    assert stored is not None
    assert stored.access_token == got[0]
    assert stored.generation == seeded.first.generation + 1


def _refresh_in_child(
    db_url: str,
    key: bytes,
    server_url: str,
    platform: str,
    connector_id: int,
    now: datetime,
    start: Any,
    results: Any,
) -> None:
    """One process of the two-process test: build everything anew, then race the other."""
    clock = FrozenClock(now)
    store = Store(create_engine(db_url), clock)
    vault = TokenVault(store, MultiFernet([Fernet(key)]))
    with make_app(platform, server_url, clock) as app:
        manager = TokenManager(vault, app, connector_id)
        start.wait()
        results.put(manager.access_token())
    store.close()


@pytest.mark.parametrize("platform", PLATFORMS)
def test_two_processes_on_an_expired_token_make_one_refresh(
    slow_world: World, platform: str
) -> None:
    world = slow_world
    seeded = world.seed(platform, "books", expires_in=timedelta(minutes=-1))
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results = context.Queue()
    url = world.engine.url.render_as_string(hide_password=False)
    processes = [
        context.Process(
            target=_refresh_in_child,
            args=(
                url,
                world.key,
                world.server.url,
                platform,
                seeded.connector_id,
                TEST_NOW,
                start,
                results,
            ),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    got = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=30)
        assert process.exitcode == 0

    assert got[0] == got[1]
    assert world.refreshes(platform) == 1
    assert world.live(platform, got[0])


@pytest.mark.parametrize("platform", PLATFORMS)
@pytest.mark.parametrize("how", ["revoked", "fault"])
def test_a_dead_grant_marks_its_connector_and_spares_the_others(
    world: World, platform: str, how: str
) -> None:
    second = world.sandbox.add_company(CompanySpec(platform, seed=11, customers=3, invoices=5))
    dead = world.seed(platform, "alpha", expires_in=timedelta(minutes=-1))
    alive = world.seed(platform, "beta", expires_in=timedelta(minutes=-1), tenant=second.tenant_id)
    if how == "revoked":
        assert world.sandbox.revoke_grants(platform, dead.tenant) == 1
    else:
        world.sandbox.faults.add(
            kind=FaultKind.REVOKED_REFRESH,
            platform=platform,
            endpoint=TOKEN_ENDPOINT[platform],
            tenant=dead.tenant,
        )
    manager = world.manager(platform, dead.connector_id)

    with pytest.raises(ReconnectNeeded) as caught:
        manager.access_token()

    message = str(caught.value)
    assert "'alpha'" in message
    assert "arsync connect alpha" in message
    assert world.rejections(platform) == 1
    with world.engine.connect() as conn:
        row = conn.execute(select(connectors).where(connectors.c.id == dead.connector_id)).one()
        marked = conn.execute(
            select(events).where(events.c.connector_id == dead.connector_id).order_by(events.c.id)
        ).all()
    assert row.status == "reconnect_needed"
    assert "arsync connect alpha" in row.status_reason
    assert [(e.entity, e.action) for e in marked] == [
        ("connector", "connected"),
        ("connector", "reconnect_needed"),
    ]

    # never retried: neither this manager nor a new one asks the platform again
    for again in (manager, world.manager(platform, dead.connector_id)):
        with pytest.raises(ReconnectNeeded, match="arsync connect alpha"):
            again.access_token()
    assert world.rejections(platform) == 1
    assert world.refreshes(platform) == 0

    other = world.manager(platform, alive.connector_id)
    assert world.live(platform, other.access_token())
    assert world.refreshes(platform) == 1
    with world.engine.connect() as conn:
        status = conn.execute(
            select(connectors.c.status).where(connectors.c.id == alive.connector_id)
        ).scalar_one()
    assert status == "connected"


@pytest.mark.parametrize("platform", PLATFORMS)
def test_keep_alive_refreshes_a_link_idle_for_a_week(world: World, platform: str) -> None:
    seeded = world.seed(platform, "books", expires_in=timedelta(minutes=30))
    manager = world.manager(platform, seeded.connector_id, keepalive=timedelta(days=7))

    assert manager.keep_alive() is False
    world.sandbox.clock.advance(timedelta(days=3))
    assert manager.keep_alive() is False
    assert world.refreshes(platform) == 0

    world.sandbox.clock.advance(timedelta(days=5))
    assert manager.keep_alive() is True
    assert world.refreshes(platform) == 1
    stored = world.vault.load(seeded.connector_id)
    assert stored is not None
    assert stored.refreshed_at == world.sandbox.clock.now()
    assert world.live(platform, stored.access_token)
    assert manager.keep_alive() is False
    assert world.refreshes(platform) == 1


def test_invalidate_after_a_401_refreshes_only_the_token_still_current(world: World) -> None:
    seeded = world.seed("xero", "books", expires_in=timedelta(minutes=30))
    manager: TokenSource = world.manager("xero", seeded.connector_id)
    first = manager.access_token()

    manager.invalidate(first)
    second = manager.access_token()
    assert second != first
    assert world.refreshes("xero") == 1

    manager.invalidate(first)  # a late 401 for the token already replaced
    assert manager.access_token() == second
    assert world.refreshes("xero") == 1


def _chain(err: BaseException | None) -> Iterator[BaseException]:
    while err is not None:
        yield err
        err = err.__cause__ or err.__context__


def test_no_secret_reaches_the_database_reprs_logs_or_errors(
    world: World,
    db_engine: Engine,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    platform = "xero"
    second = world.sandbox.add_company(CompanySpec(platform, seed=11, customers=3, invoices=5))
    kept = world.seed(platform, "kept", expires_in=timedelta(minutes=-1))
    lost = world.seed(platform, "lost", expires_in=timedelta(minutes=-1), tenant=second.tenant_id)
    manager = world.manager(platform, kept.connector_id)
    fresh = manager.access_token()
    stored = world.vault.load(kept.connector_id)
    assert stored is not None

    failures: list[BaseException] = []
    world.sandbox.faults.add(
        kind=FaultKind.LOST_REPLY, platform=platform, endpoint=TOKEN_ENDPOINT[platform], times=2
    )
    with pytest.raises(TransientError) as transient:
        world.manager(platform, kept.connector_id, attempts=2).refresh(force=True)
    failures.append(transient.value)
    world.sandbox.revoke_grants(platform, second.tenant_id)
    with pytest.raises(ReconnectNeeded) as dead:
        world.manager(platform, lost.connector_id).access_token()
    failures.append(dead.value)

    secrets = {
        kept.first.access_token,
        kept.first.refresh_token,
        lost.first.access_token,
        lost.first.refresh_token,
        fresh,
        stored.refresh_token,
        DEMO_CLIENTS[platform].client_secret,
    }
    with db_engine.connect() as conn:
        raw = [
            repr(conn.execute(text(f"SELECT * FROM {table.name}")).all())
            for table in metadata.sorted_tables
        ]
        blobs = conn.execute(select(tokens.c.access_token, tokens.c.refresh_token)).all()
    assert len(blobs) == 2
    if db_engine.dialect.name == "sqlite":
        database = Path(str(db_engine.url.database))
        raw += [
            path.read_bytes().decode("latin-1")
            for path in database.parent.glob(database.name + "*")
        ]
    texts = {
        "database": "\n".join(raw),
        "reprs": "\n".join(
            repr(x) for x in (manager, world.vault, world.apps[0], stored, kept.first)
        ),
        "errors": "\n".join(str(e) for f in failures for e in _chain(f)),
        "logs": caplog.text + "\n".join(capsys.readouterr()),
    }
    for where, found in texts.items():
        leaked = [s for s in secrets if s in found]
        assert not leaked, f"a secret reached the {where}"
    assert "kept for the next try" in texts["errors"]
    assert "arsync connect lost" in texts["errors"]


class HeldRefresh(OAuthApp):
    """An app whose token endpoint answers only when the test lets it: a slow platform."""

    def __init__(self, app: OAuthApp) -> None:
        super().__init__(
            app.platform, app.client_id, app._client_secret, app.endpoints, clock=app.clock
        )
        self.entered = threading.Event()
        self.release = threading.Event()

    def refresh(
        self,
        refresh_token: str,
        *,
        previous: TokenRecord | None = None,
        now: datetime | None = None,
    ) -> TokenRecord:
        self.entered.set()
        assert self.release.wait(timeout=60)
        return super().refresh(refresh_token, previous=previous, now=now)


def test_a_slow_token_endpoint_holds_no_transaction_and_blocks_no_other_writer(
    world: World,
) -> None:
    platform = "xero"
    second = world.sandbox.add_company(CompanySpec(platform, seed=11, customers=3, invoices=5))
    slow = world.seed(platform, "slow", expires_in=timedelta(minutes=-1))
    other = world.seed(platform, "other", expires_in=timedelta(minutes=30), tenant=second.tenant_id)
    app = HeldRefresh(world.app(platform))
    world.apps.append(app)
    manager = TokenManager(world.vault, app, slow.connector_id)
    got: list[str] = []
    refreshing = threading.Thread(target=lambda: got.append(manager.access_token()))
    refreshing.start()
    try:
        assert app.entered.wait(timeout=30)  # the refresh is out on the network now
        if world.engine.dialect.name == "sqlite":
            # Another writer, one that will not wait a moment for the lock, gets it at once.
            path = str(world.engine.url.database)
            with contextlib.closing(sqlite3.connect(path, timeout=0, isolation_level=None)) as db:
                db.execute("BEGIN IMMEDIATE")
                db.execute(
                    "UPDATE connectors SET last_error = 'written meanwhile' WHERE id = ?",
                    (other.connector_id,),
                )
                db.execute("COMMIT")
        else:
            with world.engine.connect() as conn:
                # a transaction left open on this store's tables (other tests may share the
                # database, each store in a schema of its own)
                open_elsewhere = conn.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity a"
                        " WHERE a.datname = current_database() AND a.pid <> pg_backend_pid()"
                        " AND a.state LIKE 'idle in transaction%' AND EXISTS ("
                        "  SELECT 1 FROM pg_locks l JOIN pg_class c ON c.oid = l.relation"
                        "  JOIN pg_namespace n ON n.oid = c.relnamespace"
                        "  WHERE l.pid = a.pid AND n.nspname = current_schema())"
                    )
                ).scalar_one()
            assert open_elsewhere == 0
        with world.store.transaction() as tx:  # and arsync's own writes go through too
            tx.connectors.park(other.connector_id, world.sandbox.clock.now(), "a test")
    finally:
        app.release.set()
        refreshing.join(timeout=60)
    assert got and got[0] != slow.first.access_token
    assert world.refreshes(platform) == 1
