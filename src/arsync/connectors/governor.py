"""The rate governor: one per connector, it keeps every call inside the platform's limits.

It counts calls in sliding windows (per second, per minute, per day) and caps how many run at
once. A call's slot is stamped when its reply has arrived: the platform counted the call when it
arrived, which is no later than that, so a new call sent after `stamp + window` cannot land inside
the platform's window with the old one, however the network reorders them. Replies that report
what is left (`X-MinLimit-Remaining`, `X-DayLimit-Remaining`) and 429s with `Retry-After` hold
back every later call; a wait longer than `Limits.park_after` raises `Parked` instead of blocking.

Time is the injected clock's (`monotonic` for windows, `sleep` for waits, `now` for the minute
a call is counted in). With a `UsageLog`, the calls made are written down by the minute, and a
new governor starts from what the last day's calls left, so a restart does not forget them.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections import deque
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Protocol

import structlog

from arsync.clock import Clock
from arsync.connectors.base import Limits
from arsync.errors import Parked
from arsync.words import span

log = structlog.get_logger("arsync.governor")

_IN_FLIGHT = math.inf
_MINUTE = 60.0
_DAY = 86_400.0


class UsageLog(Protocol):
    """Where a governor writes down its calls, by the UTC minute they were made in."""

    def recent(self, since: datetime) -> list[tuple[datetime, int]]:
        """(minute, calls) from `since` on."""
        ...

    def save(self, counts: dict[datetime, int]) -> None:
        """Add these calls to what is written down."""
        ...


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


class RateGovernor:
    def __init__(
        self,
        limits: Limits,
        clock: Clock,
        *,
        usage: UsageLog | None = None,
        flush_every: float = 1.0,
        parent: RateGovernor | None = None,
    ) -> None:
        self.limits = limits
        #: the app's own governor, shared by all its companies' (Xero's 10,000 a minute): a
        #: call takes a slot of both
        self.parent = parent
        self._clock = clock
        self._cond = threading.Condition()
        self._windows: list[tuple[float, int, deque[float]]] = []
        for seconds, cap in ((1.0, limits.per_second), (_MINUTE, limits.per_minute)):
            if cap:
                self._windows.append((seconds, cap, deque()))
        if limits.per_day:
            self._windows.append((_DAY, limits.per_day, deque()))
        self._running = 0
        #: when the replies of the last two minutes arrived (what a spent minute is read against)
        self._replies: deque[float] = deque()
        self._not_before = 0.0
        self._hold_reason = ""
        self.calls = 0
        #: 429 replies to calls through this governor: this process's alone (a restart counts
        #: from 0 again, as a Prometheus counter may), unlike the calls written down by minute
        self.throttled = 0
        self._usage = usage
        self._flush_every = flush_every
        self._pending: dict[datetime, int] = {}
        self._flushed_at = clock.monotonic()
        if usage is not None:
            self._remember(usage)

    # -- the two halves of a call --------------------------------------------------------------
    def acquire(self) -> float:
        """Block until a call may start; returns the moment it started (clock.monotonic)."""
        started = self._acquire()
        if self.parent is not None:
            try:
                self.parent.acquire()
            except BaseException:
                self.release(started=started)
                raise
        return started

    def _acquire(self) -> float:
        with self._cond:
            while True:
                wait, timed = self._wait_needed()
                if wait <= 0:
                    break
                if wait > self.limits.park_after.total_seconds():
                    raise Parked(
                        f"the platform's limits ask for a wait of {span(wait)}"
                        f"{' (' + self._hold_reason + ')' if self._hold_reason else ''}",
                        retry_after=wait,
                        problem=self._hold_reason or None,
                    ) from None
                if timed:
                    # A window or a hold: time alone frees it.
                    self._cond.release()
                    try:
                        self._clock.sleep(min(wait, 1.0))
                    finally:
                        self._cond.acquire()
                else:  # all slots busy: a reply frees one
                    self._cond.wait(timeout=1.0)
            self._running += 1
            self.calls += 1
            for _, _, stamps in self._windows:
                stamps.append(_IN_FLIGHT)
            if self._usage is not None:
                minute = _minute(self._clock.now())
                self._pending[minute] = self._pending.get(minute, 0) + 1
            started = self._clock.monotonic()
            due = self._usage is not None and started - self._flushed_at >= self._flush_every
        if due:
            self.flush()
        return started

    def release(
        self,
        headers: Mapping[str, str] | None = None,
        status: int | None = None,
        started: float | None = None,
    ) -> None:
        """The call's reply arrived (or it failed): stamp its slot and read what is left.
        `started` is what `acquire` returned for the call."""
        if self.parent is not None:
            self.parent.release(status=status, started=started)
        with self._cond:
            now = self._clock.monotonic()
            self._running -= 1
            if status == 429:
                self.throttled += 1
            self._replies.append(now)
            while self._replies and self._replies[0] <= now - 2 * _MINUTE:
                self._replies.popleft()
            for _, _, stamps in self._windows:
                # The oldest in-flight slot becomes a stamped one (order does not matter for
                # counting; the stamp is the latest moment the platform can have counted it).
                with contextlib.suppress(ValueError):  # acquire/release always pair
                    stamps.remove(_IN_FLIGHT)
                stamps.append(now)
            if headers is not None and status != 429:
                # a 429's own Retry-After says how long to wait (the caller holds for it)
                self._read_headers(headers, now, now if started is None else started)
            self._cond.notify_all()

    def hold(self, seconds: float, reason: str) -> None:
        """Nothing starts for `seconds` (a 429's Retry-After, or a wait the platform implied)."""
        with self._cond:
            until = self._clock.monotonic() + max(0.0, seconds)
            if until > self._not_before:
                self._not_before = until
                self._hold_reason = reason
            self._cond.notify_all()

    # -- usage that outlives the process -------------------------------------------------------
    def flush(self) -> None:
        """Write the calls counted since the last flush to the usage log (never raises: a call
        must not fail because its count could not be written; it is tried again next time)."""
        if self._usage is None:
            return
        with self._cond:
            pending, self._pending = self._pending, {}
            self._flushed_at = self._clock.monotonic()
        if not pending:
            return
        try:
            self._usage.save(pending)
        except Exception as err:  # a locked or damaged store: the calls themselves went fine
            log.warning("API usage not written; kept for the next try", error=str(err))
            with self._cond:
                for minute, calls in pending.items():
                    self._pending[minute] = self._pending.get(minute, 0) + calls

    def _remember(self, usage: UsageLog) -> None:
        """Fill the windows with the calls of the last day, each as if its reply arrived at the
        end of its minute (the latest it can have been counted)."""
        now, mono = self._clock.now(), self._clock.monotonic()
        for minute, calls in usage.recent(_minute(now) - timedelta(days=1)):
            stamp = mono - max(0.0, (now - minute).total_seconds() - _MINUTE)
            for seconds, _, stamps in self._windows:
                if stamp > mono - seconds:
                    stamps.extend([stamp] * calls)
            if stamp > mono - 2 * _MINUTE:  # ours too, when a spent minute is explained
                self._replies.extend([stamp] * calls)
        for stamps in [s for _, _, s in self._windows] + [self._replies]:
            ordered = sorted(stamps)
            stamps.clear()
            stamps.extend(ordered)

    # -- internals -----------------------------------------------------------------------------
    def _live(self, seconds: float, stamps: deque[float], now: float) -> list[float]:
        while stamps and stamps[0] != _IN_FLIGHT and stamps[0] <= now - seconds:
            stamps.popleft()
        return [s for s in stamps if s == _IN_FLIGHT or s > now - seconds]

    def _wait_needed(self) -> tuple[float, bool]:
        """(seconds to wait, whether time alone ends the wait)."""
        now = self._clock.monotonic()
        wait = self._not_before - now
        busy = self._running >= self.limits.concurrent
        for seconds, cap, stamps in self._windows:
            live = self._live(seconds, stamps, now)
            if len(live) >= cap:
                done = sorted(s for s in live if s != _IN_FLIGHT)
                excess = len(live) - cap  # this many of the oldest must leave the window
                if excess < len(done):
                    wait = max(wait, done[excess] + seconds - now)
                else:  # every slot is in flight: wait for a reply
                    busy = True
        if wait <= 0 and busy:
            return 0.05, False
        return wait, True

    def _read_headers(self, headers: Mapping[str, str], now: float, started: float) -> None:
        minute = _int(headers.get("X-MinLimit-Remaining"))
        if minute is not None and minute <= 0:
            until = now + self._minute_spent_wait(started, now)
            if until > self._not_before:
                self._not_before, self._hold_reason = until, "minute limit"
        day = _int(headers.get("X-DayLimit-Remaining"))
        if day is not None and day <= 0 and now + 3600 > self._not_before:
            # The 429 that follows carries the real wait; until then assume an hour.
            self._not_before, self._hold_reason = now + 3600, "day limit"

    def _minute_spent_wait(self, started: float, now: float) -> float:
        """How long to hold after the platform said, in the reply to a call sent at `started`,
        that its minute is spent.

        The platform counted that call when it arrived, after `started`, and its window then
        held a full minute's calls, each arrived less than a minute before. Any of ours among
        them had its reply after `started - 60`; a slot frees as soon as any call leaves that
        window, and the oldest of ours has left it a minute after its reply at the latest. So
        the hold ends then, whoever else spent the rest of the minute; only when none of the
        calls can be ours (another app spent the whole minute, at moments unknown) is it a
        whole minute.
        """
        ours = [r for r in self._replies if r > started - _MINUTE]
        if not ours:
            return _MINUTE
        return max(0.0, min(ours) + _MINUTE - now)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
