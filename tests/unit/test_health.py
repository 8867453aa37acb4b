"""health.py on a store filled by hand (SQLite and PostgreSQL): each fact, the health rule at its
edges (two intervals, a late heartbeat), the firm's midnight for "today", the metrics the facts
become, the governor's 429 counter, and serving on loopback only without signal handlers."""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from arsync import health
from arsync.clock import FrozenClock
from arsync.config import Config
from arsync.config.models import ConnectorConfig, Settings
from arsync.connectors.base import Limits
from arsync.connectors.governor import RateGovernor
from arsync.domain import CompanyInfo
from arsync.errors import ConfigError
from arsync.health import Expected, Facts, FactsCollector, Heartbeat, Live, gather, judge
from arsync.store import RunOutcome, Store, Tx, open_store
from arsync.store.states import OutboxState

S = OutboxState
#: a Monday afternoon; Chicago is on CST (UTC-6), London on GMT
T = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
CONNECTED = T - timedelta(days=10)


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock(T)


@pytest.fixture
def store(db_url: str, clock: FrozenClock) -> Iterator[Store]:
    made = open_store(db_url, clock)
    yield made
    made.close()


@pytest.fixture
def empty(tmp_path: Path, clock: FrozenClock) -> Iterator[Store]:
    """A store with nothing in it, for what does not read it (one database is enough)."""
    made = open_store(f"sqlite:///{tmp_path / 'arsync.db'}", clock)
    yield made
    made.close()


def connector_file(name: str, platform: str, **extra: Any) -> ConnectorConfig:
    return ConnectorConfig.model_validate(
        {
            "name": name,
            "platform": platform,
            "display_name": name,
            "oauth": {"client_id": "id", "client_secret_env": "NO_SUCH_SECRET"},
            **extra,
        }
    )


def config(*connectors: ConnectorConfig) -> Config:
    return Config(home=Path(), settings=Settings(), connectors={c.name: c for c in connectors})


def link(store: Store, name: str, platform: str, company: CompanyInfo) -> int:
    with store.transaction() as tx:
        row, _ = tx.connectors.link(name, platform, f"tenant-{name}", company, at=CONNECTED)
        tx.tokens.save(
            row.id,
            access_token=b"sealed",
            refresh_token=b"sealed",
            access_expires_at=T + timedelta(minutes=20),
            refresh_expires_at=T + timedelta(days=30) if platform == "qbo" else None,
            refreshed_at=T - timedelta(days=5),
            connected_at=CONNECTED,
            scope=None,
        )
        return row.id


def synced(store: Store, cid: int, at: datetime) -> None:
    """A good sync that ended at `at` (stamped by a clock of its own)."""
    with Store(store.engine, FrozenClock(at)).transaction() as tx:
        run = tx.runs.begin(cid, full=False)
        tx.runs.finish(run, RunOutcome.OK, api_calls=3)


def action(
    tx: Tx, cid: int, action_id: str, state: OutboxState = S.READY, kind: str = "email"
) -> None:
    tx.outbox.add(
        cid,
        id=action_id,
        key=f"k/{action_id}",
        kind=kind,
        subject=f"invoice:{action_id}",
        customer_id="c1",
        invoice_id=action_id,
        stage="due-soon",
        stage_title="friendly reminder",
        tone="friendly",
        amount=Decimal("10.00"),
        currency="GBP",
        due_date=date(2026, 10, 31),
        at=tx.now,
        state=state,
    )


def move(store: Store, at: datetime, cid: int, action_id: str, to: OutboxState) -> None:
    with Store(store.engine, FrozenClock(at)).transaction() as tx:
        row = tx.outbox.get(cid, action_id)
        assert row is not None
        assert tx.outbox.move(row, to, reason="test")


def add_actions(store: Store, at: datetime, cid: int, *ids: str) -> None:
    with Store(store.engine, FrozenClock(at)).transaction() as tx:
        for action_id in ids:
            action(tx, cid, action_id)


# -- the facts ------------------------------------------------------------------------------------
@pytest.fixture
def filled(store: Store, clock: FrozenClock) -> dict[str, int]:
    """Two linked connectors and one the files no longer name, with usage, actions and parks."""
    xero = link(store, "books-xero", "xero", CompanyInfo("Harbor Ltd", timezone="GMTSTANDARDTIME"))
    qbo = link(store, "books-qbo", "qbo", CompanyInfo("Prairie Inc", country="US"))
    gone = link(store, "old-books", "xero", CompanyInfo("Gone Ltd"))
    synced(store, xero, T - timedelta(minutes=10))
    synced(store, qbo, T - timedelta(minutes=40))
    minute = T.replace(second=0)
    with store.transaction() as tx:
        tx.usage.add(
            xero,
            {
                minute - timedelta(minutes=5): 7,  # the last hour
                minute - timedelta(minutes=59): 2,  # still the last hour
                minute - timedelta(minutes=61): 3,  # the day, not the hour
                minute - timedelta(hours=23, minutes=59): 4,  # the day's first minute
                minute - timedelta(hours=24, minutes=2): 100,  # before the platform's day
            },
        )
        tx.usage.add(qbo, {minute - timedelta(minutes=1): 11})
        tx.outbox.park(qbo, "email", T + timedelta(hours=9), "QuickBooks' daily cap of emails")
        tx.connectors.park(xero, T + timedelta(hours=2), "the day limit")
        tx.connectors.mark_reconnect_needed(gone, "invalid_grant")
    # Xero's firm is in London (midnight 00:00 UTC); QuickBooks' in Chicago (06:00 UTC).
    add_actions(store, T - timedelta(days=3), xero, "x-old-done", "x-old-skip")
    move(store, T - timedelta(days=2), xero, "x-old-done", S.DONE)
    move(store, T - timedelta(days=2), xero, "x-old-skip", S.SKIPPED)
    add_actions(store, T - timedelta(hours=16), xero, "x-done", "x-person", "x-ready", "x-dead")
    move(store, T - timedelta(hours=14), xero, "x-done", S.DONE)  # 01:00 UTC: today in London
    move(store, T - timedelta(hours=16), xero, "x-dead", S.DEAD)  # 23:00 UTC yesterday
    move(store, T - timedelta(hours=1), xero, "x-person", S.NEEDS_PERSON)
    add_actions(store, T - timedelta(days=1), qbo, "q-early", "q-late", "q-wait")
    move(store, T - timedelta(hours=10), qbo, "q-early", S.DONE)  # 05:00 UTC: yesterday there
    move(store, T - timedelta(hours=8), qbo, "q-late", S.DONE)  # 07:00 UTC: today there
    move(store, T - timedelta(hours=8), qbo, "q-wait", S.AWAITING_APPROVAL)
    return {"xero": xero, "qbo": qbo, "gone": gone}


def files() -> Config:
    return config(
        connector_file("books-xero", "xero", limits={"per_day": 1000}),
        connector_file(
            "books-qbo", "quickbooks", timezone="America/Chicago", sync={"interval": "30m"}
        ),
        connector_file("idle-books", "xero", enabled=False),
    )


def test_every_fact_is_what_the_store_holds(store: Store, filled: dict[str, int]) -> None:
    facts = gather(store, files(), T)
    assert [c.name for c in facts.connectors] == [
        "books-qbo",
        "books-xero",
        "idle-books",
        "old-books",
    ]
    xero, qbo = facts.connector("books-xero"), facts.connector("books-qbo")

    assert (xero.state, xero.company, xero.enabled, xero.configured) == (
        "parked",
        "Harbor Ltd",
        True,
        True,
    )
    assert xero.parked_until == T + timedelta(hours=2)
    assert xero.last_ok_at == T - timedelta(minutes=10)
    assert xero.interval == timedelta(minutes=15)
    # the platform's day is the governor's: whole minutes from a minute before 24 h ago
    assert (xero.calls_last_hour, xero.calls_last_day) == (9, 16)
    assert (xero.day_limit, xero.quota_remaining) == (1000, 984)
    # Xero's unused limit (60 days from the last refresh) comes first: it gives no expiry
    assert xero.refresh_expires_at == T - timedelta(days=5) + timedelta(days=60)
    assert xero.access_expires_at == T + timedelta(minutes=20)
    assert xero.outbox == {
        **{s.value: 0 for s in OutboxState},
        "done": 2,
        "skipped": 1,
        "ready": 1,
        "needs_person": 1,
        "dead": 1,
    }
    assert (xero.zone, xero.day_started_at) == ("Europe/London", datetime(2026, 11, 23, tzinfo=UTC))
    assert xero.today == {"done": 1, "skipped": 0, "dead": 0, "needs_person": 1}
    assert xero.totals == {"done": 2, "skipped": 1, "dead": 1}
    assert xero.live is None  # not a running process: its counters are not known

    assert (qbo.state, qbo.interval, qbo.day_limit, qbo.quota_remaining) == (
        "ok",
        timedelta(minutes=30),
        None,  # QuickBooks has no day limit
        None,
    )
    assert (qbo.calls_last_hour, qbo.calls_last_day) == (11, 11)
    assert qbo.refresh_expires_at == T + timedelta(days=30)  # before its 100 days unused
    assert qbo.zone == "America/Chicago"
    assert qbo.day_started_at == datetime(2026, 11, 23, 6, tzinfo=UTC)
    assert qbo.today == {"done": 1, "skipped": 0, "dead": 0, "needs_person": 0}
    assert qbo.outbox["awaiting_approval"] == 1
    assert list(qbo.parked_channels) == ["email"]
    assert qbo.parked_channels["email"][0] == T + timedelta(hours=9)

    idle, old = facts.connector("idle-books"), facts.connector("old-books")
    assert (idle.state, idle.enabled, idle.detail) == (
        "not connected",
        False,
        "run `arsync connect idle-books`",
    )
    assert (old.state, old.configured, old.enabled) == ("reconnect needed", False, False)
    assert old.detail == "invalid_grant; no connectors file any more"
    assert facts.ok and facts.reasons == []


def test_live_counters_are_the_running_process_own(store: Store, filled: dict[str, int]) -> None:
    live = {"books-xero": Live(throttled=4, calls=120, job="sync", job_since=T)}
    facts = gather(store, files(), T, live=live)
    assert facts.connector("books-xero").live == live["books-xero"]
    # a connector the process has not called yet has counted nothing
    assert facts.connector("books-qbo").live == Live()
    said = facts.to_json()["connectors"][1]
    assert said["api"]["throttled_since_start"] == 4 and said["job"]["name"] == "sync"


def test_only_names_some_connectors(store: Store, filled: dict[str, int]) -> None:
    facts = gather(store, files(), T, only=["books-qbo"])
    assert [c.name for c in facts.connectors] == ["books-qbo"]


def test_a_connector_whose_zone_is_unknown_counts_its_day_from_utc_midnight(
    store: Store, filled: dict[str, int]
) -> None:
    # no `timezone` in the file, and QuickBooks says none (the US spans several)
    facts = gather(store, config(connector_file("books-qbo", "quickbooks")), T)
    qbo = facts.connector("books-qbo")
    assert (qbo.zone, qbo.day_started_at) == ("UTC", datetime(2026, 11, 23, tzinfo=UTC))
    assert qbo.today["done"] == 2


def test_reading_the_facts_costs_the_same_queries_for_2_connectors_as_for_20(
    empty: Store,
) -> None:
    from sqlalchemy import event

    statements: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    event.listen(empty.engine, "before_cursor_execute", count)
    zones = ("Europe/London", "America/Chicago", "Asia/Tokyo")
    expected: dict[str, Expected] = {}
    cost = []
    for n in (2, 20):
        while len(expected) < n:
            name = f"c{len(expected):02d}"
            add_actions(empty, T, link(empty, name, "xero", CompanyInfo(name)), "a1", "a2")
            zone = zones[len(expected) % len(zones)]
            expected[name] = Expected("xero", timezone=zone, interval=timedelta(minutes=15))
        statements.clear()
        facts = gather(empty, expected, T)
        cost.append(len(statements))
        assert all(c.outbox["ready"] == 2 for c in facts.connectors)
    # a query per table (connectors, tokens, usage, parked channels, the outbox tally), the
    # zones' midnights as columns of one: none per connector
    assert cost == [5, 5], statements


# -- the rule -------------------------------------------------------------------------------------
def test_a_connector_is_late_past_two_of_its_intervals_not_at_them(
    store: Store, clock: FrozenClock
) -> None:
    cid = link(store, "books-xero", "xero", CompanyInfo("Harbor Ltd"))
    synced(store, cid, T)
    cfg = config(connector_file("books-xero", "xero", sync={"interval": "10m"}))
    clock.set(T + timedelta(minutes=20))
    facts = gather(store, cfg, clock.now())
    assert facts.ok and not facts.connector("books-xero").stale
    clock.advance(1)
    facts = gather(store, cfg, clock.now())
    assert not facts.ok and facts.connector("books-xero").stale
    assert facts.reasons == [
        "books-xero: no good sync for 20 min (over 2 intervals of 10 min)",
    ]
    # a good sync puts it right
    synced(store, cid, clock.now())
    assert gather(store, cfg, clock.now()).ok


def test_a_connector_never_synced_is_late_two_intervals_after_it_connected(
    store: Store, clock: FrozenClock
) -> None:
    link(store, "books-xero", "xero", CompanyInfo("Harbor Ltd"))  # connected ten days ago
    facts = gather(store, config(connector_file("books-xero", "xero")), T)
    assert facts.reasons == [
        "books-xero: no good sync since it connected 10 days ago (over 2 intervals of 15 min)"
    ]


def test_only_enabled_connected_connectors_with_known_intervals_are_judged(
    store: Store, clock: FrozenClock, filled: dict[str, int]
) -> None:
    clock.advance(timedelta(hours=1))
    facts = gather(store, files(), clock.now())
    judged = {c.name: (c.judged, c.stale) for c in facts.connectors}
    assert judged == {
        "books-qbo": (True, True),
        "books-xero": (True, True),  # parked by the platform, and late all the same
        "idle-books": (False, False),  # disabled (and never connected)
        "old-books": (False, False),  # its grant is dead: a person must reconnect it
    }
    assert facts.reasons == [
        "books-qbo: no good sync for 1.7 h (over 2 intervals of 30 min)",
        "books-xero: no good sync for 70 min (over 2 intervals of 15 min; parked: until "
        "2026-11-23 17:00 UTC: the day limit)",
    ]
    # `arsync status` before it is handed the configuration: intervals not known, not judged
    legacy = gather(store, {"books-xero": Expected("xero")}, clock.now())
    assert legacy.ok and not legacy.connector("books-xero").judged


def test_disabling_a_late_connector_makes_arsync_healthy(
    store: Store, clock: FrozenClock, filled: dict[str, int]
) -> None:
    clock.advance(timedelta(days=3))
    cfg = config(
        connector_file("books-xero", "xero", enabled=False),
        connector_file("books-qbo", "quickbooks", enabled=False),
    )
    assert gather(store, cfg, clock.now()).ok


@pytest.mark.parametrize(
    ("age", "late_after", "ok"),
    [
        (None, None, True),  # not under the daemon
        (15.0, None, True),  # three periods of 5 s: not yet late
        (15.5, None, False),
        (15.5, 20.0, True),  # the daemon's own threshold
        (20.5, 20.0, False),
    ],
)
def test_the_heartbeat_is_late_past_three_loop_periods_by_default(
    empty: Store, age: float | None, late_after: float | None, ok: bool
) -> None:
    beat = Heartbeat(lambda: age, period=5.0, late_after=late_after)
    facts = gather(empty, config(), T, heartbeat=beat)
    assert facts.ok is ok
    assert (facts.heartbeat_age, facts.heartbeat_limit) == (age, late_after or 15.0)
    if not ok:
        assert facts.reasons[0].startswith("the scheduler's last heartbeat was")


def test_judge_says_every_reason_at_once() -> None:
    late = health.ConnectorFacts(
        "a",
        "xero",
        configured=True,
        enabled=True,
        state="failing",
        detail="HTTP 500",
        interval=timedelta(minutes=15),
        last_ok_at=T - timedelta(hours=2),
        fresh_since=T - timedelta(hours=2),
        judged=True,
        stale=True,
    )
    reasons = judge([late], T, 100.0, 15.0)
    assert reasons == [
        "the scheduler's last heartbeat was 2 min ago (late after 15 s)",
        "a: no good sync for 2 h (over 2 intervals of 15 min; failing: HTTP 500)",
    ]


# -- the metrics ----------------------------------------------------------------------------------
def scrape(read: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FactsCollector(read))
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def at(name: str, connector: str, platform: str, **more: str) -> Any:
    return (name, tuple(sorted({"connector": connector, "platform": platform, **more}.items())))


def test_the_metrics_are_the_facts(store: Store, filled: dict[str, int]) -> None:
    live = {"books-xero": Live(throttled=4, calls=120, job="dispatch", job_since=T)}
    beat = Heartbeat(lambda: 2.0, period=5.0)
    got = scrape(lambda: gather(store, files(), T, live=live, heartbeat=beat))
    assert got[("arsync_up", ())] == 1
    assert got[("arsync_heartbeat_age_seconds", ())] == 2
    assert got[("arsync_heartbeat_late_after_seconds", ())] == 15
    x = ("books-xero", "xero")
    assert got[at("arsync_connector_state", *x, state="parked")] == 1
    assert got[at("arsync_connector_state", *x, state="ok")] == 0
    assert got[at("arsync_sync_stale", *x)] == 0
    assert got[at("arsync_last_sync_age_seconds", *x)] == 600
    assert got[at("arsync_sync_interval_seconds", *x)] == 900
    assert got[at("arsync_api_calls_last_hour", *x)] == 9
    assert got[at("arsync_api_calls_last_day", *x)] == 16
    assert got[at("arsync_api_day_limit", *x)] == 1000
    assert got[at("arsync_quota_remaining", *x)] == 984
    assert got[at("arsync_api_calls_total", *x)] == 120
    assert got[at("arsync_api_throttled_total", *x)] == 4
    assert got[at("arsync_token_expires_in_seconds", *x)] == 55 * 86400
    assert got[at("arsync_outbox_actions", *x, state="done")] == 2
    assert got[at("arsync_outbox_actions", *x, state="claimed")] == 0
    assert got[at("arsync_actions_total", *x, outcome="dead")] == 1
    assert got[at("arsync_actions_today", *x, outcome="needs_person")] == 1
    assert got[at("arsync_job_running", *x, job="dispatch")] == 1
    q = ("books-qbo", "qbo")
    assert got[at("arsync_channel_parked", *q, channel="email")] == 1
    assert got[at("arsync_api_throttled_total", *q)] == 0
    assert at("arsync_quota_remaining", *q) not in got  # no day limit to speak of
    assert got[at("arsync_connector_state", "old-books", "xero", state="reconnect_needed")] == 1


def test_metrics_without_a_running_process_leave_its_counters_out(
    store: Store, filled: dict[str, int]
) -> None:
    got = scrape(lambda: gather(store, files(), T))
    assert not any(
        name in ("arsync_api_throttled_total", "arsync_api_calls_total") for name, _ in got
    )
    assert ("arsync_heartbeat_age_seconds", ()) not in got


def test_a_scrape_of_an_unreadable_store_says_down_and_never_raises() -> None:
    def broken() -> Facts:
        raise ConfigError("the store is gone")

    assert scrape(broken) == {("arsync_up", ()): 0}


def test_healthz_says_503_when_the_facts_cannot_be_read(empty: Store) -> None:
    def unreadable() -> Config:
        raise ConfigError("connectors/acme.toml: timezone: not a zone")

    served = health.serve("127.0.0.1:0", health.app(empty, unreadable))
    with served, httpx.Client(base_url=served.url) as client:
        reply = client.get("/healthz")
        assert reply.status_code == 503
        assert reply.json() == {
            "ok": False,
            "reasons": ["the facts cannot be read: connectors/acme.toml: timezone: not a zone"],
        }
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "arsync_up 0.0" in metrics.text
        assert client.post("/healthz").status_code == 405


# -- the governor counts 429s ---------------------------------------------------------------------
def test_the_governor_counts_the_429s_it_is_told_of() -> None:
    governor = RateGovernor(
        Limits(per_minute=100, per_second=None, concurrent=2, per_day=None), FrozenClock(T)
    )
    for status in (200, 429, None, 429, 500):
        started = governor.acquire()
        governor.release({}, status, started)
    assert (governor.calls, governor.throttled) == (5, 2)
    assert Live.of(governor, job="sync", job_since=T) == Live(2, 5, "sync", T)


# -- serving --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("listen", "bound"),
    [
        ("127.0.0.1:9187", ("127.0.0.1", 9187)),
        ("localhost:0", ("127.0.0.1", 0)),
        ("[::1]:8", ("::1", 8)),
    ],
)
def test_the_address_is_loopback_only(listen: str, bound: tuple[str, int]) -> None:
    assert health._address(listen) == bound


@pytest.mark.parametrize("listen", ["0.0.0.0:9187", "192.168.1.4:80", "127.0.0.1", "127.0.0.1:x"])
def test_an_address_off_this_machine_is_refused(listen: str) -> None:
    with pytest.raises(ValueError):
        health._address(listen)


def test_listen_off_is_refused_by_serve(empty: Store) -> None:
    with pytest.raises(ValueError, match="off"):
        health.serve("", health.app(empty, config()))


def test_a_taken_port_is_a_config_error_naming_the_setting(empty: Store) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        with pytest.raises(
            ConfigError, match=rf"daemon\.listen: cannot serve on 127\.0\.0\.1:{port}"
        ):
            health.serve(f"127.0.0.1:{port}", health.app(empty, config()))


def test_the_server_never_installs_signal_handlers_even_on_the_main_thread() -> None:
    assert threading.current_thread() is threading.main_thread()
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    import uvicorn

    async def nothing(scope: Any, receive: Any, send: Any) -> None:
        pass

    server = health._quiet_server()(uvicorn.Config(app=nothing))
    with server.capture_signals():
        during = {s: signal.getsignal(s) for s in before}
    assert during == before
    assert {s: signal.getsignal(s) for s in before} == before
