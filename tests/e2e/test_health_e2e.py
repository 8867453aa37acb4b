"""/healthz and /metrics over real loopback HTTP after a real connect and sync against the
sandbox (a 429 storm included), on both stores: every metric checked against what the store
holds and what the sandbox saw; /healthz turning 503 on a late heartbeat and on a sync two
intervals old as the sandbox's frozen clock moves; `arsync status` reading the same facts."""

from __future__ import annotations

import io
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console

from arsync import commands, health, status
from arsync.config import Config, load
from arsync.health import Heartbeat, Live
from arsync.runtime import Coordinator, Runtime
from arsync.sandbox import FaultKind, Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.store import Store
from arsync.store.states import OutboxState
from arsync.sync import OK, sync_all
from tests.e2e.test_sync_e2e import SECRETS, approve, write_home
from tests.support import clock_of, make_sandbox

S = OutboxState
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@dataclass
class World:
    sandbox: Sandbox
    config: Config
    runtime: Runtime
    coordinators: dict[str, Coordinator]
    served: health.Served
    http: httpx.Client
    #: what the daemon's heartbeat callable answers (seconds since its loop beat)
    beat: list[float | None]

    @property
    def store(self) -> Store:
        return self.runtime.store

    def metrics(self) -> Samples:
        reply = self.http.get("/metrics")
        assert reply.status_code == 200, reply.text
        assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(reply.text)
            for s in family.samples
        }

    def healthz(self) -> tuple[int, dict[str, Any]]:
        reply = self.http.get("/healthz")
        body: dict[str, Any] = reply.json()
        return reply.status_code, body


def of(name: str, connector: str, platform: str, **more: str) -> Any:
    return (name, tuple(sorted({"connector": connector, "platform": platform, **more}.items())))


def connect(config: Config, name: str) -> None:
    """`arsync connect NAME --headless`, the person approving in the browser."""
    echoed: list[str] = []
    commands.connect(
        config,
        name,
        headless=True,
        open_browser=False,
        port=0,
        tenant=None,
        echo=echoed.append,
        read_line=lambda _prompt: approve(next(e for e in echoed if e.startswith("http"))),
        choose=lambda options: options[0],
    )


@pytest.fixture
def world(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    for key, value in SECRETS.items():
        monkeypatch.setenv(key, value)
    sandbox = make_sandbox(
        customers=10,
        invoices=40,
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    handlers = {s: signal.getsignal(s) for s in SIGNALS}
    with SandboxServer(sandbox) as server:
        home = tmp_path / "home"
        write_home(home, server.url, db_url)
        config = load(home)
        connect(config, "books-xero")
        connect(config, "books-qbo")
        # Xero answers two calls of the sync with 429 (a minute's limit spent, retry in 1 s)
        sandbox.faults.add(
            kind=FaultKind.RATE_LIMIT, platform="xero", times=2, params={"retry_after": 1}
        )
        # arsync on the sandbox's own clock: moving the sandbox moves what /healthz sees
        runtime = Runtime.open(config, clock_of(sandbox))
        coordinators = {n: runtime.coordinator(n) for n in ("books-qbo", "books-xero")}
        reports = sync_all(runtime.store, list(coordinators.values()), workers=1)
        assert {r.name: r.outcome for r in reports} == {"books-qbo": OK, "books-xero": OK}
        for coordinator in coordinators.values():
            coordinator.governor.flush()  # the calls written down, as a daemon does each second
        beat: list[float | None] = [1.0]
        app = health.app(
            runtime.store,
            config,
            live=lambda: {n: Live.of(c.governor) for n, c in coordinators.items()},
            heartbeat=Heartbeat(lambda: beat[0], period=5.0),
        )
        served = health.serve("127.0.0.1:0", app)
        try:
            with httpx.Client(base_url=served.url, timeout=30) as http:
                yield World(sandbox, config, runtime, coordinators, served, http, beat)
        finally:
            served.close()
            runtime.close()
    # the daemon owns its signals: serving installed no handler of its own
    assert {s: signal.getsignal(s) for s in SIGNALS} == handlers


def enqueue(store: Store, name: str) -> None:
    """Three actions as the write-back leaves them: one done, one for a person, one ready."""
    with store.transaction() as tx:
        row = tx.connectors.by_name(name)
        assert row is not None
        for action in ("a-done", "a-person", "a-ready"):
            tx.outbox.add(
                row.id,
                id=action,
                key=f"{name}/{action}",
                kind="email",
                subject=f"invoice:{action}",
                customer_id="c1",
                invoice_id=action,
                stage="due-soon",
                stage_title="friendly reminder",
                tone="friendly",
                amount=Decimal("10.00"),
                currency="GBP",
                due_date=date(2026, 10, 31),
                at=tx.now,
                state=S.READY,
            )
        for action, to in (("a-done", S.DONE), ("a-person", S.NEEDS_PERSON)):
            found = tx.outbox.get(row.id, action)
            assert found is not None and tx.outbox.move(found, to)


def test_the_metrics_are_what_the_store_holds_and_the_sandbox_saw(world: World) -> None:
    enqueue(world.store, "books-xero")
    got = world.metrics()
    now = world.sandbox.clock.now()
    minute = now.replace(second=0, microsecond=0)
    assert got[("arsync_up", ())] == 1
    assert got[("arsync_heartbeat_age_seconds", ())] == 1
    assert got[("arsync_heartbeat_late_after_seconds", ())] == 15
    with world.store.reading() as tx:
        for name, platform in (("books-xero", "xero"), ("books-qbo", "qbo")):
            row = tx.connectors.by_name(name)
            tokens = tx.tokens.load(row.id) if row else None
            assert row is not None and row.last_sync_ok_at is not None and tokens is not None
            labels = (name, platform)
            assert got[of("arsync_connector_state", *labels, state="ok")] == 1
            assert got[of("arsync_sync_stale", *labels)] == 0
            assert got[of("arsync_last_sync_age_seconds", *labels)] == pytest.approx(
                (now - row.last_sync_ok_at).total_seconds()
            )
            assert got[of("arsync_sync_interval_seconds", *labels)] == 15 * 60
            written = sum(n for _, n in tx.usage.since(row.id, minute - timedelta(days=1)))
            assert got[of("arsync_api_calls_last_day", *labels)] == written
            # the sandbox counted the same API calls: the connect's and the sync's, 429s too
            seen = [
                e
                for e in world.sandbox.ledger.entries(platform=platform, kind="request")
                if "/connect/" not in (e.endpoint or "") and "oauth" not in (e.endpoint or "")
            ]
            assert written == len(seen) > 0
            governor = world.coordinators[name].governor
            assert got[of("arsync_api_calls_total", *labels)] == governor.calls
            horizon = tokens.refresh_expires_at or tokens.refreshed_at + timedelta(days=100)
            if platform == "xero":  # 60 days unused, and Xero gives no expiry of its own
                horizon = tokens.refreshed_at + timedelta(days=60)
            assert got[of("arsync_token_expires_in_seconds", *labels)] == pytest.approx(
                (horizon - now).total_seconds()
            )
        xero = tx.connectors.by_name("books-xero")
        assert xero is not None
        counts = tx.outbox.counts(xero.id)
    # the two 429s the sandbox sent, counted by the governor of this process
    throttled = world.sandbox.ledger.count(platform="xero", kind="request", status=429)
    assert throttled == 2
    assert got[of("arsync_api_throttled_total", "books-xero", "xero")] == throttled
    assert got[of("arsync_api_throttled_total", "books-qbo", "qbo")] == 0
    x = ("books-xero", "xero")
    calls = got[of("arsync_api_calls_last_day", *x)]
    assert got[of("arsync_api_day_limit", *x)] == 5000  # Xero's own, not overridden
    assert got[of("arsync_quota_remaining", *x)] == 5000 - calls
    assert of("arsync_quota_remaining", "books-qbo", "qbo") not in got  # no day limit
    for state in S:
        assert got[of("arsync_outbox_actions", *x, state=state.value)] == counts.get(state, 0)
    assert got[of("arsync_actions_total", *x, outcome="done")] == 1
    assert got[of("arsync_actions_today", *x, outcome="done")] == 1
    assert got[of("arsync_actions_today", *x, outcome="needs_person")] == 1

    code, body = world.healthz()
    assert (code, body["ok"], body["reasons"]) == (200, True, [])
    assert body["connectors"]["books-xero"]["throttled_since_start"] == 2
    assert body["connectors"]["books-xero"]["waiting_for_person"] == 1
    assert body["connectors"]["books-xero"]["quota_remaining"] == 5000 - calls


def test_healthz_turns_503_when_the_heartbeat_is_late(world: World) -> None:
    world.beat[0] = 15.0  # three loop periods of 5 s: not late yet
    assert world.healthz()[0] == 200
    world.beat[0] = 16.0
    code, body = world.healthz()
    assert code == 503 and body["ok"] is False
    assert body["reasons"] == ["the scheduler's last heartbeat was 16 s ago (late after 15 s)"]
    assert world.metrics()[("arsync_up", ())] == 0
    world.beat[0] = None  # not under a scheduler: nothing to be late
    assert world.healthz()[0] == 200
    assert ("arsync_heartbeat_age_seconds", ()) not in world.metrics()
    world.beat[0] = 0.5
    assert world.healthz()[0] == 200


def test_healthz_turns_503_when_a_sync_is_two_intervals_old(world: World) -> None:
    with world.store.reading() as tx:
        ends = {r.name: r.last_sync_ok_at for r in tx.connectors.all()}
    assert all(ends.values())
    first = min(ends, key=lambda n: ends[n] or 0)
    oldest = ends[first]
    assert oldest is not None
    # at exactly two intervals (15 min each) the connector is not late yet
    world.sandbox.clock.set(oldest + timedelta(minutes=30))
    code, body = world.healthz()
    assert (code, body["ok"]) == (200, True), body
    world.sandbox.clock.advance(1)
    code, body = world.healthz()
    assert code == 503 and body["connectors"][first]["stale"] is True
    assert body["reasons"][0] == f"{first}: no good sync for 30 min (over 2 intervals of 15 min)"
    got = world.metrics()
    platform = "xero" if first == "books-xero" else "qbo"
    assert got[of("arsync_sync_stale", first, platform)] == 1
    assert got[("arsync_up", ())] == 0
    # a sync puts it right
    (report,) = sync_all(world.store, [world.coordinators[first]], workers=1)
    assert report.outcome == OK
    second = "books-qbo" if first == "books-xero" else "books-xero"
    code, body = world.healthz()
    assert body["connectors"][first]["stale"] is False
    assert code == (503 if body["connectors"][second]["stale"] else 200)


def test_status_reads_the_same_facts(world: World) -> None:
    enqueue(world.store, "books-xero")
    statuses = status.gather(world.store, world.config)
    now = world.sandbox.clock.now()
    said = status.document(statuses, now)
    assert (said["ok"], said["reasons"]) == (True, [])
    by_name = {c["name"]: c for c in said["connectors"]}
    _, body = world.healthz()
    for name, summary in body["connectors"].items():
        facts = by_name[name]["facts"]
        assert facts["state"] == summary["state"] == by_name[name]["health"] == "ok"
        assert facts["api"]["quota_remaining"] == summary["quota_remaining"]
        assert facts["sync"]["last_ok_age_seconds"] == summary["last_ok_age_seconds"]
        # not the running process: its counters are not known to `arsync status`
        assert facts["api"]["throttled_since_start"] is None
    xero = by_name["books-xero"]["facts"]
    assert xero["actions"]["today"] == {"done": 1, "skipped": 0, "dead": 0, "needs_person": 1}
    assert xero["actions"]["waiting_for_person"] == 1
    assert xero["api"]["day_limit"] == 5000

    console = Console(file=io.StringIO(), width=200, no_color=True)
    status.render(statuses, now, console=console)
    text = console.file.getvalue()  # type: ignore[attr-defined]
    calls = xero["api"]["calls_last_day"]
    assert f"{calls} in 24 h; {5000 - calls:,} of the 5,000 a day left" in text
    assert "today       1 done, 1 waiting for a person (since midnight," in text
    assert "health      ok" in text

    # two intervals and a minute later, `arsync status` says which connector is late
    world.sandbox.clock.advance(timedelta(minutes=31))
    statuses = status.gather(world.store, world.config)
    said = status.document(statuses, world.sandbox.clock.now())
    assert said["ok"] is False and len(said["reasons"]) == 2
    console = Console(file=io.StringIO(), width=200, no_color=True)
    status.render(statuses, world.sandbox.clock.now(), console=console)
    assert "late        no good sync for 31 min" in console.file.getvalue()  # type: ignore[attr-defined]


def test_closing_stops_serving(world: World) -> None:
    world.served.close()
    assert not world.served.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{world.served.url}/healthz", timeout=5)
    world.served.close()  # a second close is harmless
