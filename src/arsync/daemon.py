"""`arsync run`: the long-running service, one coordinator per connector, under systemd.

The scheduler only triggers work; all state is in the store (DESIGN rule 4). Each connector has
its triggers (APScheduler's `IntervalTrigger`, with jitter so a thousand connectors do not fire
in the same second): a cycle at its sync interval (sync; then settle, plan, enqueue and
dispatch, whose own rules keep quiet hours and business days), a full pass (weekly by
default) and the token keep-alive inside each cycle. Store housekeeping and the firm's digest
are the daemon's own jobs. The first fire of each trigger is read from the store (the last
sync, the last full pass), so a restart neither loses a cycle nor repeats one.

APScheduler's schedulers read the machine's clock themselves; its triggers take "now" as an
argument. So the loop is ours, on the injected clock, and the triggers are APScheduler's: on
the sandbox's clock (the demo, the tests) a month passes in seconds, the same jobs firing.

The loop wakes for due work, signals and the watchdog: SIGTERM stops claiming, lets work in
flight finish within `[daemon] stop_within`, hands back what is still claimed (nothing sent:
ready again; perhaps sent: read back by the next pass) and exits 0; SIGHUP reloads the
configuration and keeps the old one, saying why, when the new one is not valid. systemd hears
READY=1 once the store is migrated and answered, STATUS= with one line, WATCHDOG=1 from the
loop's own heartbeat (a hung loop is restarted) and STOPPING=1.

One connector's failure never stops the others: an outage is logged once when it starts and
once when it ends, and one summary line is logged per cycle.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

import structlog
from apscheduler.triggers.interval import IntervalTrigger  # type: ignore[import-untyped]

from arsync.clock import Clock, SandboxFollower, Stopwatch, SystemClock
from arsync.config import Config, ConnectorConfig, load
from arsync.errors import ArsyncError, ConfigError, NotConnected, Unexpected
from arsync.runtime import Runtime
from arsync.store import open_store
from arsync.store.leases import Replica
from arsync.store.states import OutboxState as S
from arsync.sync import OK, sync_connector

log = structlog.get_logger("arsync.daemon")

#: how often a loop on a moving sandbox clock looks at it again (real seconds)
FOLLOW_POLL = 0.1
#: the longest the loop sleeps when nothing is due (real seconds): the heartbeat's period
BEAT = 5.0
#: what the service says while no connector is enabled, and what to do about it
NOTHING_TO_SERVE = "no connector to serve"
ADD_A_CONNECTOR = (
    "add connectors/NAME.toml (or set enabled = true in one), link it with "
    "`arsync connect NAME`, then reload (systemctl reload arsync)"
)


# -- systemd's notify protocol -------------------------------------------------------------------
class Notifier:
    """Datagrams to `$NOTIFY_SOCKET` (sd_notify(3)); silent when not under systemd."""

    def __init__(self, address: str | None, watchdog_usec: int | None = None) -> None:
        self.address = address
        #: how often systemd wants WATCHDOG=1 (half its WatchdogSec=), or None
        self.watchdog_every = watchdog_usec / 2e6 if watchdog_usec else None
        self._sock: socket.socket | None = None

    @classmethod
    def from_env(cls) -> Notifier:
        address = os.environ.get("NOTIFY_SOCKET") or None
        usec: int | None = None
        raw = os.environ.get("WATCHDOG_USEC", "")
        pid = os.environ.get("WATCHDOG_PID", "")
        if raw.isdigit() and (not pid or pid == str(os.getpid())):
            usec = int(raw)
        return cls(address, usec)

    def send(self, *lines: str) -> bool:
        """Send `KEY=value` lines in one datagram; False when there is nobody to tell."""
        if not self.address:
            return False
        target = self.address
        if target.startswith("@"):  # an abstract socket
            target = "\0" + target[1:]
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(lines).encode(), target)
        except OSError as err:
            log.warning("systemd notify failed", error=str(err))
            return False
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# -- triggers ------------------------------------------------------------------------------------
def _jitter(every: timedelta) -> int:
    """Up to a tenth of the interval, at most five minutes: spreads a thousand connectors."""
    return int(min(every.total_seconds() / 10, 300))


class Every:
    """An APScheduler interval trigger anchored at the first moment it may fire. A late fire
    (a long pass, a stopped process, a clock moved by days) is one fire, not a burst."""

    def __init__(self, every: timedelta, first: datetime, *, jitter: bool = True) -> None:
        self.every = every
        self.trigger = IntervalTrigger(
            seconds=max(int(every.total_seconds()), 1),
            start_date=first,
            timezone=UTC,
            jitter=_jitter(every) if jitter else None,
        )
        self.next: datetime = first

    def due(self, now: datetime) -> bool:
        return now >= self.next

    def fired(self, now: datetime) -> None:
        """Fired at `now`: the next fire is the first point of the grid after it."""
        found = self.trigger.get_next_fire_time(None, now + timedelta(microseconds=1))
        self.next = found if found is not None else now + self.every

    def not_before(self, moment: datetime) -> None:
        self.next = max(self.next, moment)


@dataclass
class Watched:
    """One connector as the loop watches it."""

    name: str
    cycle: Every
    full: Every
    busy: Future[None] | None = None
    busy_since: datetime | None = None
    #: when it went down, and why (an outage is logged once, its end once)
    down_since: datetime | None = None
    down_why: str = ""
    failures: int = 0
    #: its configuration changed: rebuild its coordinator when it is idle
    rebuild: bool = False
    last: dict[str, Any] = field(default_factory=dict)


# -- the service ---------------------------------------------------------------------------------
class Daemon:
    """The loop of `arsync run`: triggers, a worker pool, signals, systemd and health."""

    def __init__(
        self,
        home: Path,
        config: Config,
        *,
        clock: Clock | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.home = home
        self.config = config
        self.clock = clock or _clock_for(config)
        self.notifier = notifier or Notifier.from_env()
        #: who holds this process's claims in the outbox
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.runtime: Runtime | None = None
        self.replica: Replica | None = None
        self.served: Any = None
        self._digest: Future[None] | None = None
        self._digest_checked: datetime | None = None
        #: connector ids by name, as of the last claim
        self._ids: dict[str, int] = {}
        self._claimed_at: datetime | None = None
        self._owned: frozenset[int] = frozenset()
        self._since_claim = Stopwatch()
        self.watched: dict[str, Watched] = {}
        self.housekeeping: Every | None = None
        self._stop = threading.Event()
        self._reload = False
        self._wake_r, self._wake_w = os.pipe()
        for fd in (self._wake_r, self._wake_w):
            os.set_blocking(fd, False)
        self._pool: ThreadPoolExecutor | None = None
        self._beat = Stopwatch()
        self._since_watchdog = Stopwatch()
        self._status = ""
        self._jobs: list[Future[None]] = []
        #: each connector's checked templates, loaded once (again after a reload)
        self._words: dict[str, tuple[Any, int | None]] = {}
        self.passes = 0

    # -- life --------------------------------------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM; the process's exit code."""
        with self._signals():
            try:
                self.start()
            except ArsyncError as err:
                log.error("arsync could not start", error=str(err))
                self.notifier.send(f"STATUS=cannot start: {err}"[:400])
                self._close()
                return err.exit_code
            try:
                while not self._stop.is_set():
                    self.step()
                    self._wait()
            finally:
                self.stop()
        return 0

    def start(self) -> None:
        """Open (migrate) the store, check it answers, schedule every connector: READY."""
        store = open_store(self.config.settings.store_url(), self.clock)
        self.runtime = Runtime(self.config, store)
        self.replica = Replica(store, name=self.owner, lease=self.config.settings.daemon.lease)
        self.replica.start()  # a second daemon on one SQLite store stops here, saying why
        problems = self._digest_problems(self.config)
        if problems:
            raise ConfigError("the digest's templates would not work:\n  " + "\n  ".join(problems))
        listen = self.config.settings.daemon.listen
        if listen:
            from arsync import health

            self.served = health.serve(
                listen,
                health.app(
                    store,
                    lambda: self.config,
                    live=self._live,
                    heartbeat=health.Heartbeat(self.heartbeat_age, period=BEAT),
                ),
            )
            log.info("health and metrics served", url=f"{self.served.url}/healthz")
        with self.runtime.store.reading() as tx:
            rows = {r.name: r for r in tx.connectors.all()}
            last_full = tx.runs.last_full_ok()
            # work an earlier process left claimed or unsettled is finished first, at once
            unsettled = {
                r.name
                for r in rows.values()
                if {S.CLAIMED, S.UNKNOWN} & set(tx.outbox.counts(r.id))
            }
        now = self.clock.now()
        for connector in self._enabled(self.config):
            self._watch(
                connector,
                rows.get(connector.name),
                last_full,
                now,
                at_once=connector.name in unsettled,
            )
        settings = self.config.settings.daemon
        self.housekeeping = Every(settings.housekeeping, now + timedelta(minutes=5))
        self._pool = ThreadPoolExecutor(
            max_workers=self.config.settings.sync.workers, thread_name_prefix="arsync-work"
        )
        log.info(
            "arsync is running",
            connectors=len(self.watched),
            store=repr(self.runtime.store),
            workers=self.config.settings.sync.workers,
        )
        self._say_if_idle_for_good()
        self.notifier.send("READY=1", f"STATUS={self._summary(now)}", f"MAINPID={os.getpid()}")

    def _watch(
        self,
        connector: ConnectorConfig,
        row: Any,
        last_full: dict[int, datetime],
        now: datetime,
        *,
        at_once: bool = False,
    ) -> None:
        interval = connector.sync.interval
        last = row.last_sync_at if row is not None else None
        first = max(now, last + interval) if last is not None and not at_once else now
        anchor = last_full.get(row.id) if row is not None else None
        if anchor is None and row is not None:
            anchor = row.created_at
        full_first = max(now, anchor + self.config.settings.daemon.full_pass) if anchor else now
        self.watched[connector.name] = Watched(
            connector.name,
            Every(interval, first, jitter=first > now),
            Every(self.config.settings.daemon.full_pass, full_first),
        )

    def step(self) -> None:
        """One pass of the loop: reload if asked, beat, start what is due."""
        if self._reload:
            self._reload = False
            self.reload()
        if isinstance(self.clock, SandboxFollower) and not self._in_flight():
            try:
                self.clock.refresh()
            except ConfigError as err:
                log.warning("cannot read the sandbox's clock", error=str(err))
        now = self.clock.now()
        self._heartbeat()
        self._reap()
        assert self._pool is not None
        self._claim(now)
        for watched in self.watched.values():
            if watched.busy is not None or self._stop.is_set():
                continue
            if not self.serves(watched.name):
                continue  # another replica serves it
            if watched.cycle.due(now):
                full = watched.full.due(now)
                watched.cycle.fired(now)
                if full:
                    watched.full.fired(now)
                watched.busy = self._submit(self._cycle, watched, full)
                watched.busy_since = now
        self._digests(now)
        if self.housekeeping is not None and self.housekeeping.due(now):
            self.housekeeping.fired(now)
            self._jobs.append(self._submit(self._housekeep))
        self.passes += 1
        self._tell(now)

    def _claim(self, now: datetime) -> frozenset[int]:
        """The connectors this replica serves; asked again every `renew_every`, on the clock's
        time and in real time (a clock moved by days is a new claim too)."""
        assert self.replica is not None
        assert self.runtime is not None
        every = self.replica.renew_every
        if (
            self._claimed_at is not None
            and now - self._claimed_at < every
            and self._since_claim.elapsed() < every.total_seconds()
        ):
            self._owned = self.replica.owned
            return self._owned
        with self.runtime.store.reading() as tx:
            self._ids = {r.name: r.id for r in tx.connectors.all() if r.name in self.watched}
        before = self._owned
        busy = [self._ids[w.name] for w in self.watched.values() if w.busy and w.name in self._ids]
        owned = self.replica.claim(self._ids.values(), busy=busy)
        self._owned = owned
        self._claimed_at = now
        self._since_claim.restart()
        taken = owned - before
        if taken:
            # their earlier holder lost them: its claims end now, to be settled at once
            with self.runtime.store.transaction() as tx:
                ended = {cid: tx.outbox.expire_others(cid, self.owner) for cid in taken}
            if any(ended.values()):
                log.info("claims of a lost holder ended", actions=sum(ended.values()))
        if owned != before:
            names = {i: n for n, i in self._ids.items()}
            log.info(
                "connectors served",
                replica=self.owner,
                serving=len(owned),
                taken=sorted(names[i] for i in owned - before if i in names),
                given_up=sorted(names[i] for i in before - owned if i in names),
            )
        if self.replica.problem:
            log.warning("replica lease trouble", problem=self.replica.problem)
        return owned

    def _digests(self, now: datetime) -> None:
        """The firm's digest, when one is due (looked for once a minute of the clock's time)."""
        if self.config.settings.digest is None or self._stop.is_set():
            return
        if self._digest is not None and not self._digest.done():
            return
        if self._digest_checked is not None and now - self._digest_checked < timedelta(minutes=1):
            return
        self._digest_checked = now
        assert self._pool is not None
        self._digest = self._submit(self._send_digests, now)
        self._jobs.append(self._digest)

    def _send_digests(self, now: datetime) -> None:
        from arsync.writeback import digest

        assert self.runtime is not None
        try:
            for due in digest.due(self.runtime.store, self.config, now):
                sent = digest.send(self.runtime.store, self.config, due)
                log.info(
                    "digest",
                    zone=due.zone,
                    day=due.day.isoformat(),
                    outcome=str(sent.outcome),
                    to=sent.to,
                    error=sent.error,
                )
        except Exception:
            log.exception("digest failed")

    @staticmethod
    def _digest_problems(config: Config) -> list[str]:
        if config.settings.digest is None:
            return []
        from arsync.writeback import digest

        return digest.check(config.home)

    def _live(self) -> dict[str, Any]:
        from arsync.health import Live

        assert self.runtime is not None
        live: dict[str, Any] = {}
        for name, coordinator in self.runtime.coordinators().items():
            watched = self.watched.get(name)
            busy = watched is not None and watched.busy is not None
            live[name] = Live.of(
                coordinator.governor,
                job="cycle" if busy else None,
                job_since=watched.busy_since if watched is not None and busy else None,
            )
        return live

    def settle(self) -> int:
        """Step the loop until nothing runs and nothing is due; the passes it took. The demo
        drives the service so, moving the sandbox's clock between calls (start() first)."""
        passes = self.passes
        while True:
            self.step()
            if self.idle() or self._stop.is_set():
                return self.passes - passes
            self._wait()

    def idle(self) -> bool:
        """Nothing running and nothing due now."""
        now = self.clock.now()
        return not any(
            w.busy is not None or (self.serves(w.name) and w.cycle.due(now))
            for w in self.watched.values()
        ) and not any(not j.done() for j in self._jobs)

    def serves(self, name: str) -> bool:
        """Whether this replica serves connector `name` (one never linked has no id yet, and
        its cycle only says so)."""
        cid = self._ids.get(name)
        return cid is None or cid in self._owned

    def next_due(self) -> datetime | None:
        moments = [
            w.cycle.next for w in self.watched.values() if w.busy is None and self.serves(w.name)
        ]
        if self.housekeeping is not None:
            moments.append(self.housekeeping.next)
        return min(moments, default=None)

    def request_stop(self) -> None:
        self._stop.set()
        self._wake()

    def request_reload(self) -> None:
        self._reload = True
        self._wake()

    def _submit(self, job: Callable[..., None], *args: Any) -> Future[None]:
        """Run `job` on the pool; its end wakes the loop (no polling while work runs)."""
        assert self._pool is not None
        future = self._pool.submit(job, *args)
        future.add_done_callback(lambda _: self._wake())
        return future

    def stop(self, *, exit_if_stuck: bool = True) -> None:
        """Stop claiming; let work in flight finish within the bound; hand back the rest.
        A worker stuck past the bound cannot be joined: the process then exits at once
        (`exit_if_stuck`; an in-process caller, the demo, may prefer to carry on)."""
        self._stop.set()
        self.notifier.send("STOPPING=1", "STATUS=stopping: finishing the work in flight")
        bound = self.config.settings.daemon.stop_within.total_seconds()
        running = [w for w in self.watched.values() if w.busy is not None]
        waited = Stopwatch()
        while any(not f.done() for f in self._in_flight()) and waited.elapsed() < bound:
            self._reap()
            with contextlib.suppress(OSError):
                select.select([self._wake_r], [], [], 0.05)
            self._drain()
        unfinished = [w.name for w in running if w.busy is not None and not w.busy.done()]
        handed = self._hand_back() if self.runtime is not None else (0, 0)
        if unfinished:
            log.warning(
                "stopped with work in flight",
                connectors=unfinished,
                released=handed[0],
                to_read_back=handed[1],
                bound_seconds=bound,
            )
        log.info("arsync stopped", passes=self.passes)
        self._close()
        if unfinished and exit_if_stuck:
            # a worker stuck in a call cannot be joined; its claims were handed back above
            os._exit(0)

    # -- work --------------------------------------------------------------------------------------
    def _cycle(self, watched: Watched, full: bool) -> None:
        from arsync.writeback.run import UnitReport, unit, words_for

        assert self.runtime is not None
        runtime, name = self.runtime, watched.name
        took = Stopwatch()
        summary: dict[str, Any] = {"connector": name}
        try:
            if watched.rebuild:
                runtime.forget(name)
                watched.rebuild = False
            connector = runtime.config.connector(name)
            coordinator = runtime.coordinator(name)
            calls = coordinator.api_calls
            report = sync_connector(runtime.store, coordinator, full=full)
            summary.update(sync=str(report.outcome), changed=report.changed, full=full)
            if report.outcome is not OK:
                error = report.error or ArsyncError(report.message)
                self._down(watched, error, summary)
                return
            # unit() records what the ledger and the calendar settled (holds, promises) before
            # it plans: once per cycle, not again here as `arsync sync` does
            words = self._words.get(name)
            if words is None:
                policy = runtime.config.policy_of(connector)
                words = words_for(runtime.config, connector, policy, connector.platform_code)
                self._words[name] = words
            done = UnitReport(name)
            unit(
                runtime,
                connector,
                done,
                dry_run=False,
                owner=self.owner,
                stop=self._stop.is_set,
                words=words,
            )
            if done.enqueued is not None:
                summary.update(enqueued=done.enqueued.added)
            if done.dispatched is not None:
                d = done.dispatched
                summary.update(
                    {s.value: n for s in _COUNTED if (n := d.count(s))},
                )
                if d.stopped:
                    summary.update(stopped=d.stopped)
            summary.update(calls=coordinator.api_calls - calls)
            self._up(watched)
        except NotConnected as err:
            self._down(watched, err, summary)
        except ArsyncError as err:
            self._down(watched, err, summary)
        except Exception as err:  # one connector's bug never stops the others (rule 9)
            log.exception("cycle failed unexpectedly", connector=name)
            self._down(watched, Unexpected.wrap(err), summary)
        finally:
            summary.update(seconds=round(took.elapsed(), 3))
            watched.last = summary
            log.info("cycle", **summary)

    def _up(self, watched: Watched) -> None:
        if watched.down_since is not None:
            log.info(
                "connector recovered",
                connector=watched.name,
                down_since=watched.down_since.isoformat(),
                failures=watched.failures,
                was=watched.down_why,
            )
        watched.down_since, watched.down_why, watched.failures = None, "", 0

    def _down(self, watched: Watched, err: ArsyncError, summary: dict[str, Any]) -> None:
        summary.update(error=str(err))
        watched.failures += 1
        why = str(err)
        if watched.down_since is None:
            watched.down_since = self.clock.now()
            watched.down_why = why
            log.warning("connector down", connector=watched.name, error=why)
        retry_after = getattr(err, "retry_after", None)
        if retry_after:
            watched.cycle.not_before(self.clock.now() + timedelta(seconds=float(retry_after)))

    def _housekeep(self) -> None:
        from arsync.store.housekeeping import housekeep

        assert self.runtime is not None
        settings = self.config.settings.daemon
        now = self.clock.now()
        took = Stopwatch()
        try:
            done = housekeep(
                self.runtime.store,
                runs_before=now - settings.keep_runs,
                events_before=now - settings.keep_events if settings.keep_events else None,
            )
        except Exception:
            log.exception("housekeeping failed")
            return
        log.info(
            "housekeeping",
            runs_deleted=done.runs_deleted,
            events_deleted=done.events_deleted,
            vacuumed=done.vacuumed,
            seconds=round(took.elapsed(), 3),
        )

    def _hand_back(self) -> tuple[int, int]:
        from arsync.writeback.dispatch import abandon

        assert self.runtime is not None
        released = unknown = 0
        with self.runtime.store.reading() as tx:
            ids = [r.id for r in tx.connectors.all()]
        for cid in ids:
            try:
                r, u = abandon(self.runtime.store, cid, self.owner, "arsync stopped")
            except Exception:
                log.exception("could not hand back claims", connector_id=cid)
                continue
            released, unknown = released + r, unknown + u
        return released, unknown

    # -- configuration -----------------------------------------------------------------------------
    def reload(self) -> None:
        """SIGHUP: the new configuration if it is whole, else the old one and why."""
        from arsync.logs import configure
        from arsync.writeback.run import words_for

        try:
            fresh = load(self.home)
            for connector in self._enabled(fresh):
                words_for(fresh, connector, fresh.policy_of(connector), connector.platform_code)
            problems = self._digest_problems(fresh)
            if problems:
                raise ConfigError(
                    "the digest's templates would not work:\n  " + "\n  ".join(problems)
                )
        except ArsyncError as err:
            log.error("configuration not reloaded: still running on the old one", error=str(err))
            self.notifier.send(
                f"STATUS=reload refused, running on the old configuration: {err}"[:400]
            )
            return
        old = self.config
        unsafe = [
            key
            for key, a, b in (
                ("store.url", old.settings.store_url(), fresh.settings.store_url()),
                ("daemon.listen", old.settings.daemon.listen, fresh.settings.daemon.listen),
                ("clock.sandbox", old.settings.clock.sandbox, fresh.settings.clock.sandbox),
            )
            if a != b
        ]
        if unsafe:
            log.error(
                "configuration not reloaded: a restart is needed for these",
                keys=unsafe,
                fix="systemctl restart arsync",
            )
            return
        configure(level=fresh.settings.log.level, fmt=fresh.settings.log.format)
        assert self.runtime is not None
        self.config = fresh
        self._words = {}
        self.runtime.config = fresh
        with self.runtime.store.reading() as tx:
            rows = {r.name: r for r in tx.connectors.all()}
            last_full = tx.runs.last_full_ok()
        now = self.clock.now()
        wanted = {c.name: c for c in self._enabled(fresh)}
        for name in list(self.watched):
            if name not in wanted:
                gone = self.watched.pop(name)
                if gone.busy is None:
                    self.runtime.forget(name)
        for name, connector in wanted.items():
            if name not in self.watched:
                self._watch(connector, rows.get(name), last_full, now)
            elif old.connectors.get(name) != connector:
                self.watched[name].rebuild = True
                if connector.sync.interval != self.watched[name].cycle.every:
                    self.watched[name].cycle = Every(connector.sync.interval, now)
        log.info("configuration reloaded", connectors=len(self.watched))
        self._say_if_idle_for_good()

    def _say_if_idle_for_good(self) -> None:
        if not self.watched:
            log.warning(NOTHING_TO_SERVE, fix=ADD_A_CONNECTOR)

    @staticmethod
    def _enabled(config: Config) -> list[ConnectorConfig]:
        return [c for _, c in sorted(config.connectors.items()) if c.enabled]

    # -- the loop's plumbing -----------------------------------------------------------------------
    def _in_flight(self) -> list[Future[None]]:
        busy = [w.busy for w in self.watched.values() if w.busy is not None]
        return busy + [j for j in self._jobs if not j.done()]

    def _reap(self) -> None:
        for watched in self.watched.values():
            if watched.busy is not None and watched.busy.done():
                watched.busy = None
        self._jobs = [j for j in self._jobs if not j.done()]

    def _heartbeat(self) -> None:
        self._beat.restart()
        every = self.notifier.watchdog_every
        if every is not None and self._since_watchdog.elapsed() >= every:
            self._since_watchdog.restart()
            self.notifier.send("WATCHDOG=1")

    def heartbeat_age(self) -> float:
        """Real seconds since the loop last beat (for /healthz)."""
        return self._beat.elapsed()

    def _summary(self, now: datetime) -> str:
        down = [w for w in self.watched.values() if w.down_since is not None]
        busy = [w.name for w in self.watched.values() if w.busy is not None]
        served = sum(self.serves(n) for n in self.watched)
        if not self.watched:
            return f"{NOTHING_TO_SERVE}: {ADD_A_CONNECTOR}"
        parts = [f"{len(self.watched)} connector(s), serving {served}"]
        if down:
            parts.append(
                f"{len(down)} down ("
                + "; ".join(f"{w.name}: {w.down_why[:80]}" for w in down[:3])
                + ")"
            )
        if busy:
            parts.append("working: " + ", ".join(busy[:5]))
        else:
            nxt = self.next_due()
            parts.append(
                f"idle at {now:%Y-%m-%d %H:%M:%S} UTC"
                + (f", next at {nxt:%Y-%m-%d %H:%M} UTC" if nxt else "")
            )
        return "; ".join(parts)

    def _tell(self, now: datetime) -> None:
        status = self._summary(now)
        if status != self._status:
            self._status = status
            self.notifier.send(f"STATUS={status}")

    def _wait(self) -> None:
        """Sleep until something is due, a signal, a job's end or the next beat."""
        timeout = BEAT
        if self.notifier.watchdog_every is not None:
            timeout = min(timeout, self.notifier.watchdog_every / 2)
        if self._in_flight():
            pass  # a job's end wakes the loop (its done callback writes to the pipe)
        elif isinstance(self.clock, SandboxFollower):
            timeout = min(timeout, FOLLOW_POLL)
        else:
            nxt = self.next_due()
            if nxt is not None and not isinstance(self.clock, SandboxFollower):
                timeout = min(timeout, max((nxt - self.clock.now()).total_seconds(), 0.0))
        with contextlib.suppress(InterruptedError):
            select.select([self._wake_r], [], [], timeout)
        self._drain()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"\0")

    def _drain(self) -> None:
        with contextlib.suppress(OSError):
            while os.read(self._wake_r, 512):
                pass

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_term(signum: int, frame: FrameType | None) -> None:
            self.request_stop()

        def on_hup(signum: int, frame: FrameType | None) -> None:
            self.request_reload()

        before = {
            s: signal.signal(s, h)
            for s, h in (
                (signal.SIGTERM, on_term),
                (signal.SIGINT, on_term),
                (signal.SIGHUP, on_hup),
            )
        }
        try:
            yield
        finally:
            for s, h in before.items():
                signal.signal(s, h)

    def _close(self) -> None:
        if self.served is not None:
            with contextlib.suppress(Exception):
                self.served.close()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        if self.replica is not None:
            with contextlib.suppress(Exception):
                self.replica.close()
        if self.runtime is not None:
            with contextlib.suppress(Exception):
                self.runtime.close()
        if isinstance(self.clock, SandboxFollower):
            self.clock.close()
        self.notifier.close()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)


def _clock_for(config: Config) -> Clock:
    url = config.settings.clock.sandbox
    if url is None:
        return SystemClock()
    return SandboxFollower(url, where="config/arsync.toml: clock.sandbox")


#: the outcomes a cycle's summary line counts
_COUNTED = (S.DONE, S.SKIPPED, S.RETRYING, S.UNKNOWN, S.NEEDS_PERSON, S.DEAD)


def serve(home: Path, config: Config) -> int:
    """`arsync run` without --once."""
    return Daemon(home, config).run()


__all__ = ["Daemon", "Every", "Notifier", "serve"]
