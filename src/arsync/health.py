"""What a running arsync knows of itself: facts per connector, the health rule, /healthz, /metrics.

`gather(store, config, now)` reads the facts of every connector from the store in five queries
whatever the number of connectors: the age of the last good sync, the API calls of the last
hour and day and the day's quota left, the token horizon, the outbox by state, actions done,
skipped and waiting today and in all, parked channels and the connector's own state. `live`
adds what only the running process knows (429s and calls since it started, the job in
flight); a `Heartbeat` adds the scheduler's beat.

The rule (`judge`): unhealthy when an enabled, connected connector has had no good sync for
two of its intervals, or when the scheduler's heartbeat is late (three loop periods unless
told otherwise). `arsync status` reads the same facts (status.py).

`app(...)` serves them: GET /healthz (JSON; 200 healthy, 503 not) and GET /metrics (Prometheus
text, read through a Collector at scrape time: nothing global, nothing kept between scrapes).
`serve(listen, app)` runs it with uvicorn in a thread on a socket bound here, so port 0 gives a
known ephemeral port; uvicorn installs no signal handler (the daemon owns SIGTERM and SIGHUP).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import structlog

from arsync.config import SETTINGS_FILE, Config
from arsync.connectors.base import Limits
from arsync.domain import PLATFORM_NAMES
from arsync.errors import ConfigError
from arsync.store import ConnectorRow, ConnectorState, Store
from arsync.store.models import TokenTimes
from arsync.store.states import OutboxState
from arsync.words import span

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric
    from starlette.applications import Starlette
    from starlette.types import ASGIApp
    from uvicorn import Server

    from arsync.connectors.governor import RateGovernor

log = structlog.get_logger("arsync.health")

#: Xero refresh tokens die after 60 days unused; QBO's roll for 100 days
REFRESH_UNUSED_LIMIT = {"xero": timedelta(days=60), "qbo": timedelta(days=100)}
#: a connector is late when its last good sync is older than this many of its intervals
STALE_INTERVALS = 2
#: the scheduler's heartbeat is late past this many loop periods, unless told otherwise
LATE_PERIODS = 3
#: outcomes counted in "actions": the final states, and the one a person must settle
OUTCOMES = (OutboxState.DONE, OutboxState.SKIPPED, OutboxState.DEAD)
TODAY_OUTCOMES = (*OUTCOMES, OutboxState.NEEDS_PERSON)
#: a connector's states as status and metrics name them
STATES = ("ok", "not connected", "reconnect needed", "parked", "failing")
_HOUR = timedelta(hours=1)
_DAY = timedelta(days=1)


# -- what the caller hands in -----------------------------------------------------------------
@dataclass(frozen=True)
class Live:
    """What only the running process knows of one connector (none of it is in the store)."""

    #: 429 replies since this process started (RateGovernor.throttled): a restart starts at 0
    throttled: int = 0
    #: API calls since this process started (RateGovernor.calls)
    calls: int = 0
    #: the job in flight now ("sync", "dispatch"...), None when idle
    job: str | None = None
    #: when that job began (the injected clock's time)
    job_since: datetime | None = None

    @classmethod
    def of(
        cls, governor: RateGovernor, *, job: str | None = None, job_since: datetime | None = None
    ) -> Live:
        """The counters of a connector's governor, and its job in flight."""
        return cls(governor.throttled, governor.calls, job, job_since)


#: what the daemon hands `app`: each connector's live counters, read at every request
LiveSource = Callable[[], Mapping[str, Live]]


@dataclass(frozen=True)
class Heartbeat:
    """The scheduler's heartbeat: `age()` is the seconds since its loop last beat, or None when
    no scheduler runs; it is late past `late_after` seconds (default: three loop periods)."""

    age: Callable[[], float | None]
    #: the scheduler's loop period in seconds
    period: float
    late_after: float | None = None

    @property
    def limit(self) -> float:
        return self.late_after if self.late_after is not None else LATE_PERIODS * self.period


@dataclass(frozen=True)
class Expected:
    """What the configuration says of one connector (None: not known, so not judged)."""

    platform: str
    enabled: bool = True
    interval: timedelta | None = None
    limits: Limits | None = None
    #: the connector file's `timezone` and the file's name (for the firm's day)
    timezone: str | None = None
    source: str = ""


def expected_of(config: Config) -> dict[str, Expected]:
    return {
        name: Expected(
            platform=c.platform_code,
            enabled=c.enabled,
            interval=c.sync_interval,
            limits=c.limits(),
            timezone=c.timezone,
            source=c.source,
        )
        for name, c in config.connectors.items()
    }


# -- the facts -------------------------------------------------------------------------------
@dataclass
class ConnectorFacts:
    name: str
    platform: str
    #: a connectors/NAME.toml names it (else the store alone remembers it)
    configured: bool
    enabled: bool
    #: ok | not connected | reconnect needed | parked | failing
    state: str = "not connected"
    detail: str | None = None
    company: str | None = None
    tenant_id: str | None = None
    parked_until: datetime | None = None
    last_sync_at: datetime | None = None
    last_ok_at: datetime | None = None
    #: the sync interval from the connector's file (None: not known)
    interval: timedelta | None = None
    #: whether the health rule applies (enabled, connected, interval known), and its verdict
    judged: bool = False
    stale: bool = False
    #: what the staleness is counted from: the last good sync, else the connect
    fresh_since: datetime | None = None
    access_expires_at: datetime | None = None
    #: when the link lapses unless refreshed (the refresh token's expiry or unused limit)
    refresh_expires_at: datetime | None = None
    calls_last_hour: int = 0
    #: the platform's day: the last 24 hours, as Xero counts its day limit and the governor
    calls_last_day: int = 0
    day_limit: int | None = None
    #: the outbox by state (every state, zeros included)
    outbox: dict[str, int] = field(default_factory=dict)
    #: actions that reached done / skipped / dead / needs_person since the firm's midnight
    today: dict[str, int] = field(default_factory=dict)
    #: the firm's midnight those are counted from, and its zone (UTC when it is not known)
    day_started_at: datetime | None = None
    zone: str = "UTC"
    parked_channels: dict[str, tuple[datetime, str]] = field(default_factory=dict)
    live: Live | None = None

    @property
    def quota_remaining(self) -> int | None:
        if self.day_limit is None:
            return None
        return max(0, self.day_limit - self.calls_last_day)

    @property
    def totals(self) -> dict[str, int]:
        """Actions that ended done, skipped or dead, in all."""
        return {s.value: self.outbox.get(s.value, 0) for s in OUTCOMES}

    def age(self, moment: datetime | None, now: datetime) -> float | None:
        return (now - moment).total_seconds() if moment is not None else None

    def to_json(self, now: datetime) -> dict[str, Any]:
        live = self.live
        return {
            "name": self.name,
            "platform": self.platform,
            "configured": self.configured,
            "enabled": self.enabled,
            "state": self.state,
            "detail": self.detail,
            "company": self.company,
            "sync": {
                "last_at": _iso(self.last_sync_at),
                "last_ok_at": _iso(self.last_ok_at),
                "last_ok_age_seconds": _int(self.age(self.last_ok_at, now)),
                "interval_seconds": _int(self.interval.total_seconds()) if self.interval else None,
                "judged": self.judged,
                "stale": self.stale,
            },
            "parked_until": _iso(self.parked_until),
            "token": {
                "access_expires_at": _iso(self.access_expires_at),
                "refresh_expires_at": _iso(self.refresh_expires_at),
                "expires_in_seconds": _int(-a)
                if (a := self.age(self.refresh_expires_at, now)) is not None
                else None,
            },
            "api": {
                "calls_last_hour": self.calls_last_hour,
                "calls_last_day": self.calls_last_day,
                "day_limit": self.day_limit,
                "quota_remaining": self.quota_remaining,
                "calls_since_start": live.calls if live else None,
                "throttled_since_start": live.throttled if live else None,
            },
            "outbox": self.outbox,
            "actions": {
                "today": self.today,
                "total": self.totals,
                "waiting_for_person": self.outbox.get(OutboxState.NEEDS_PERSON.value, 0),
                "awaiting_approval": self.outbox.get(OutboxState.AWAITING_APPROVAL.value, 0),
                "day_started_at": _iso(self.day_started_at),
                "zone": self.zone,
            },
            "parked_channels": {
                channel: {"until": until.isoformat(), "reason": why}
                for channel, (until, why) in self.parked_channels.items()
            },
            "job": {"name": live.job, "since": _iso(live.job_since)} if live and live.job else None,
        }


@dataclass
class Facts:
    now: datetime
    connectors: list[ConnectorFacts]
    #: seconds since the scheduler's last beat (None: no scheduler, or not asked) and its limit
    heartbeat_age: float | None = None
    heartbeat_limit: float | None = None
    ok: bool = True
    reasons: list[str] = field(default_factory=list)

    def connector(self, name: str) -> ConnectorFacts:
        return next(c for c in self.connectors if c.name == name)

    def to_json(self) -> dict[str, Any]:
        return {
            "checked_at": self.now.isoformat(),
            "ok": self.ok,
            "reasons": self.reasons,
            "heartbeat": {
                "age_seconds": self.heartbeat_age,
                "late_after_seconds": self.heartbeat_limit,
            },
            "connectors": [c.to_json(self.now) for c in self.connectors],
        }

    def summary(self) -> dict[str, Any]:
        """/healthz: the verdict, its reasons, and a line per connector."""
        return {
            "ok": self.ok,
            "reasons": self.reasons,
            "checked_at": self.now.isoformat(),
            "heartbeat": {
                "age_seconds": self.heartbeat_age,
                "late_after_seconds": self.heartbeat_limit,
            },
            "connectors": {
                c.name: {
                    "platform": c.platform,
                    "enabled": c.enabled,
                    "state": c.state,
                    "stale": c.stale,
                    "last_ok_age_seconds": _int(c.age(c.last_ok_at, self.now)),
                    "quota_remaining": c.quota_remaining,
                    "waiting_for_person": c.outbox.get(OutboxState.NEEDS_PERSON.value, 0),
                    "throttled_since_start": c.live.throttled if c.live else None,
                    "job": c.live.job if c.live else None,
                }
                for c in self.connectors
            },
        }


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _int(seconds: float | None) -> int | None:
    return int(seconds) if seconds is not None else None


# -- reading them ------------------------------------------------------------------------------
def gather(
    store: Store,
    config: Config | Mapping[str, Expected],
    now: datetime,
    *,
    live: Mapping[str, Live] | None = None,
    heartbeat: Heartbeat | None = None,
    only: Sequence[str] = (),
) -> Facts:
    """Every connector's facts at `now` (the configured ones and any the store remembers), and
    the verdict. `config` may be what is expected of each connector instead of the whole
    configuration; `live` the running process's counters (None: not a running process)."""
    expected = dict(config) if isinstance(config, Mapping) else expected_of(config)
    minute = now.replace(second=0, microsecond=0)
    with store.reading() as tx:
        rows = {r.name: r for r in tx.connectors.all()}
        names = sorted(set(expected) | set(rows))
        if only:
            names = [n for n in names if n in only]
        tokens = tx.tokens.times()
        # the governor's own windows: whole minutes, from the minute 24 h (1 h) ago on
        usage = tx.usage.totals(minute - _DAY, minute - _HOUR)
        parks = tx.outbox.parked_by_connector(now)
        days = {rows[n].id: _firm_day(rows[n], expected.get(n), now) for n in names if n in rows}
        # connectors in one zone share their midnight: one column of the tally per midnight
        starts = sorted({start for start, _ in days.values()})
        tally = tx.outbox.tally(starts)
    facts = []
    for name in names:
        exp, row = expected.get(name), rows.get(name)
        platform = exp.platform if exp else (row.platform if row else "?")
        cf = ConnectorFacts(
            name=name,
            platform=platform,
            configured=exp is not None,
            enabled=exp.enabled if exp else False,
            interval=exp.interval if exp else None,
            day_limit=exp.limits.per_day if exp and exp.limits else None,
            live=(live.get(name) or Live()) if live is not None else None,
        )
        facts.append(cf)
        if row is None:
            cf.detail = f"run `arsync connect {name}`"
            continue
        _fill(cf, row, now, tokens.get(row.id))
        calls = usage.get(row.id, (0, 0))
        cf.calls_last_day, cf.calls_last_hour = calls
        counts = tally.get(row.id, {})
        cf.day_started_at, cf.zone = days[row.id]
        k = starts.index(cf.day_started_at)
        cf.outbox = {s.value: counts[s][0] if s in counts else 0 for s in OutboxState}
        cf.today = {s.value: counts[s][1][k] if s in counts else 0 for s in TODAY_OUTCOMES}
        cf.parked_channels = parks.get(row.id, {})
    beat = heartbeat.age() if heartbeat is not None else None
    limit = heartbeat.limit if heartbeat is not None else None
    reasons = judge(facts, now, beat, limit)
    return Facts(now, facts, beat, limit, not reasons, reasons)


def _fill(cf: ConnectorFacts, row: ConnectorRow, now: datetime, tok: TokenTimes | None) -> None:
    cf.company, cf.tenant_id = row.company_name, row.tenant_id
    cf.last_sync_at, cf.last_ok_at = row.last_sync_at, row.last_sync_ok_at
    cf.parked_until = row.parked_until if row.parked_at(now) else None
    if tok is not None:
        cf.access_expires_at = tok.access_expires_at
        limit = REFRESH_UNUSED_LIMIT.get(row.platform)
        unused = tok.refreshed_at + limit if limit else None
        cf.refresh_expires_at = min(
            (t for t in (tok.refresh_expires_at, unused) if t is not None), default=None
        )
    if row.status is ConnectorState.RECONNECT_NEEDED:
        cf.state, cf.detail = "reconnect needed", row.status_reason
    elif row.status is not ConnectorState.CONNECTED:
        cf.state, cf.detail = "not connected", f"run `arsync connect {cf.name}`"
    elif cf.parked_until is not None:
        cf.state = "parked"
        cf.detail = f"until {cf.parked_until:%Y-%m-%d %H:%M} UTC: {row.parked_reason}"
    elif row.last_error:
        cf.state, cf.detail = "failing", row.last_error
    else:
        cf.state = "ok"
    if not cf.configured:
        cf.detail = (cf.detail + "; " if cf.detail else "") + "no connectors file any more"
    cf.judged = cf.enabled and cf.interval is not None and row.status is ConnectorState.CONNECTED
    # never synced well: the clock runs from the connect (the daemon's first sync is due then)
    cf.fresh_since = row.last_sync_ok_at or (tok.connected_at if tok else row.created_at)
    if cf.judged and cf.interval is not None:
        cf.stale = now - cf.fresh_since > STALE_INTERVALS * cf.interval


def _firm_day(row: ConnectorRow, exp: Expected | None, now: datetime) -> tuple[datetime, str]:
    """The firm's last midnight (UTC) and its zone's name; UTC's when the zone is unknown."""
    from arsync.escalation.reading import ZoneUnknown, firm_zone

    try:
        zone = firm_zone(
            row,
            exp.timezone if exp else None,
            exp.source if exp else "",
            PLATFORM_NAMES.get(row.platform, row.platform),
        ).zone
    except ZoneUnknown:
        return datetime.combine(now.date(), time(0), tzinfo=UTC), "UTC"
    local = now.astimezone(zone)
    midnight = datetime.combine(local.date(), time(0), tzinfo=zone)
    return midnight.astimezone(UTC), str(zone)


def judge(
    connectors: Iterable[ConnectorFacts],
    now: datetime,
    heartbeat_age: float | None,
    heartbeat_limit: float | None,
) -> list[str]:
    """Why arsync is unhealthy (nothing: healthy)."""
    reasons = []
    if (
        heartbeat_age is not None
        and heartbeat_limit is not None
        and heartbeat_age > heartbeat_limit
    ):
        reasons.append(
            f"the scheduler's last heartbeat was {span(heartbeat_age)} ago "
            f"(late after {span(heartbeat_limit)})"
        )
    for c in connectors:
        if not c.stale or c.interval is None or c.fresh_since is None:
            continue
        since = span((now - c.fresh_since).total_seconds())
        what = (
            f"no good sync for {since}"
            if c.last_ok_at is not None
            else f"no good sync since it connected {since} ago"
        )
        said = f"{c.name}: {what} (over {STALE_INTERVALS} intervals of "
        said += span(c.interval.total_seconds())
        if c.state != "ok" and c.detail:
            said += f"; {c.state}: {c.detail}"
        said += ")"
        reasons.append(said)
    return reasons


# -- /metrics ----------------------------------------------------------------------------------
_LABELS = ["connector", "platform"]


def metric_families(facts: Facts) -> list[Metric]:
    """The facts as Prometheus metric families (read anew at every scrape)."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    def gauge(name: str, doc: str, extra: Sequence[str] = ()) -> GaugeMetricFamily:
        return GaugeMetricFamily(f"arsync_{name}", doc, labels=[*_LABELS, *extra])

    def counter(name: str, doc: str, extra: Sequence[str] = ()) -> CounterMetricFamily:
        return CounterMetricFamily(f"arsync_{name}", doc, labels=[*_LABELS, *extra])

    up = GaugeMetricFamily(
        "arsync_up", "1 when arsync is healthy (what /healthz says), else 0", value=int(facts.ok)
    )
    out: list[Metric] = [up]
    if facts.heartbeat_age is not None:
        out.append(
            GaugeMetricFamily(
                "arsync_heartbeat_age_seconds",
                "Seconds since the scheduler's loop last beat",
                value=facts.heartbeat_age,
            )
        )
    if facts.heartbeat_limit is not None:
        out.append(
            GaugeMetricFamily(
                "arsync_heartbeat_late_after_seconds",
                "How old the heartbeat may grow before arsync is unhealthy",
                value=facts.heartbeat_limit,
            )
        )
    state = gauge("connector_state", "1 for the connector's present state", ["state"])
    stale = gauge(
        "sync_stale", f"1 when the last good sync is over {STALE_INTERVALS} intervals old"
    )
    age = gauge("last_sync_age_seconds", "Seconds since the connector's last good sync")
    interval = gauge("sync_interval_seconds", "The connector's sync interval")
    hour = gauge("api_calls_last_hour", "API calls in the last hour (all processes)")
    day = gauge(
        "api_calls_last_day",
        "API calls in the last 24 hours, the platform's rolling day (all processes)",
    )
    limit = gauge("api_day_limit", "The platform's limit of calls a day")
    quota = gauge("quota_remaining", "Calls left of the platform's day limit")
    calls = counter("api_calls", "API calls made by this process since it started")
    throttled = counter("api_throttled", "429 replies to this process since it started")
    token = gauge(
        "token_expires_in_seconds", "Seconds until the link lapses unless its token is refreshed"
    )
    actions = gauge("outbox_actions", "Actions in the outbox by state", ["state"])
    total = counter("actions", "Actions that ended, by outcome, in all", ["outcome"])
    today = gauge(
        "actions_today", "Actions that reached an outcome since the firm's midnight", ["outcome"]
    )
    channel = gauge("channel_parked", "1 for a channel closed for now (a day's cap)", ["channel"])
    job = gauge("job_running", "1 for the job in flight", ["job"])
    for c in facts.connectors:
        labels = [c.name, c.platform]
        for s in STATES:
            state.add_metric([*labels, s.replace(" ", "_")], int(c.state == s))
        stale.add_metric(labels, int(c.stale))
        if c.last_ok_at is not None:
            age.add_metric(labels, (facts.now - c.last_ok_at).total_seconds())
        if c.interval is not None:
            interval.add_metric(labels, c.interval.total_seconds())
        hour.add_metric(labels, c.calls_last_hour)
        day.add_metric(labels, c.calls_last_day)
        if c.day_limit is not None:
            limit.add_metric(labels, c.day_limit)
            quota.add_metric(labels, c.quota_remaining or 0)
        if c.live is not None:
            calls.add_metric(labels, c.live.calls)
            throttled.add_metric(labels, c.live.throttled)
            if c.live.job:
                job.add_metric([*labels, c.live.job], 1)
        if c.refresh_expires_at is not None:
            token.add_metric(labels, (c.refresh_expires_at - facts.now).total_seconds())
        for name, n in c.outbox.items():
            actions.add_metric([*labels, name], n)
        for name, n in c.totals.items():
            total.add_metric([*labels, name], n)
        for name, n in c.today.items():
            today.add_metric([*labels, name], n)
        for ch in c.parked_channels:
            channel.add_metric([*labels, ch], 1)
    out += [state, stale, age, interval, hour, day, limit, quota, calls, throttled]
    out += [token, actions, total, today, channel, job]
    return out


class FactsCollector:
    """A Prometheus collector that reads the facts when scraped (nothing kept in between)."""

    def __init__(self, read: Callable[[], Facts]) -> None:
        self._read = read

    def describe(self) -> list[Metric]:
        # Nothing to declare up front: registering must not read the store.
        return []

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily

        try:
            facts = self._read()
        except Exception as err:  # a scrape reports an unreadable store; it never raises
            log.warning("metrics: the facts could not be read", error=str(err), exc_info=True)
            yield GaugeMetricFamily(
                "arsync_up", "1 when arsync is healthy (what /healthz says), else 0", value=0
            )
            return
        yield from metric_families(facts)


# -- the app -----------------------------------------------------------------------------------
def app(
    store: Store,
    config: Config | Callable[[], Config],
    *,
    live: LiveSource | None = None,
    heartbeat: Heartbeat | None = None,
) -> Starlette:
    """GET /healthz and GET /metrics on the facts, read at each request on the store's clock.

    `config` may be a callable, so that a reloaded configuration is what the next request
    reads; `live` gives the running process's counters at each request."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    def read() -> Facts:
        current = config() if callable(config) else config
        return gather(
            store,
            current,
            store.clock.now(),
            live=live() if live is not None else None,
            heartbeat=heartbeat,
        )

    registry = CollectorRegistry(auto_describe=False)
    registry.register(FactsCollector(read))
    private = {"Cache-Control": "no-store"}

    # Plain functions: Starlette runs them in its thread pool, off the event loop, as the
    # store's reads block.
    def healthz(request: Request) -> Response:
        try:
            facts = read()
        except Exception as err:  # an unreadable store is an unhealthy arsync, said as such
            log.warning("healthz: the facts could not be read", error=str(err), exc_info=True)
            body = {"ok": False, "reasons": [f"the facts cannot be read: {err}"]}
            return JSONResponse(body, status_code=503, headers=private)
        return JSONResponse(facts.summary(), status_code=200 if facts.ok else 503, headers=private)

    def metrics(request: Request) -> Response:
        # Prometheus' classic text unless the scraper asks for OpenMetrics
        encode, media_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encode(registry), headers={**private, "Content-Type": media_type})

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


# -- serving it --------------------------------------------------------------------------------
class Served:
    """The app served in a thread of its own: `port` (the real one, for port 0), `close()`."""

    def __init__(self, host: str, port: int, server: Server, thread: threading.Thread) -> None:
        self.host, self.port = host, port
        self._server, self._thread = server, thread

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self) -> None:
        """Stop serving: no new connection, those open finish within the server's stop bound
        (`stop_within`), then the thread ends. Safe to call twice."""
        self._server.should_exit = True
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> Served:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Served({self.url})"


def _address(listen: str) -> tuple[str, int]:
    """(host to bind, port) from `listen`, refusing anything off this machine."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'listen must be "host:port", not {listen!r}')
    if host == "localhost":
        # one address, known in advance, whatever the resolver says of localhost
        host = "127.0.0.1"
    if not ipaddress.ip_address(host).is_loopback:
        raise ValueError(f"health and metrics are served on loopback only, not {host}")
    return host, int(port)


def serve(listen: str, app: ASGIApp, *, stop_within: int = 2) -> Served:
    """Serve `app` on `listen` ("127.0.0.1:9187"; port 0: an ephemeral port) in a thread.

    The socket is bound here, before the thread starts, so a taken port is a ConfigError now
    and the port is known at once (connections wait in its backlog until uvicorn accepts).
    `stop_within`: the seconds `close()` lets open requests finish."""
    import uvicorn

    if not listen:
        raise ValueError('listen is "": health and metrics are off')
    host, port = _address(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise ConfigError(
            f"{SETTINGS_FILE}: daemon.listen: cannot serve on {listen}: {err.strerror}"
        ) from err
    config = uvicorn.Config(
        app,
        lifespan="off",
        # uvicorn leaves the process's logging alone and says only what went wrong
        log_config=None,
        log_level="warning",
        access_log=False,
        proxy_headers=False,
        server_header=False,
        timeout_graceful_shutdown=stop_within,
    )
    config.load()  # a broken app fails here, not silently in the thread
    server = _quiet_server()(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="arsync-health", daemon=True
    )
    thread.start()
    served = Served(host, sock.getsockname()[1], server, thread)
    log.info("health and metrics served", url=served.url)
    return served


@functools.cache
def _quiet_server() -> type[Server]:
    """The server class, made on first use (importing uvicorn costs `arsync status` 80 ms)."""
    import uvicorn

    class Quiet(uvicorn.Server):
        """uvicorn's server without its signal handlers, wherever it runs: the daemon owns
        SIGTERM, SIGINT and SIGHUP. (uvicorn 0.55 skips them off the main thread already;
        this holds if that changes or the server is run on the main thread.)"""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return Quiet
