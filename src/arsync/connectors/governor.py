"""The rate governor: one per connector, it keeps every call inside the platform's limits.

It counts calls in sliding windows (per second, per minute, per day) and caps how many run at
once. A call's slot is stamped when its reply has arrived: the platform counted the call when it
arrived, which is no later than that, so a new call sent after `stamp + window` cannot land inside
the platform's window with the old one, however the network reorders them. Replies that report
what is left (`X-MinLimit-Remaining`, `X-DayLimit-Remaining`) and 429s with `Retry-After` hold
back every later call; a wait longer than `Limits.park_after` raises `Parked` instead of blocking.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

from arsync.connectors.base import Limits
from arsync.errors import Parked
from arsync.words import span

_IN_FLIGHT = math.inf


class RateGovernor:
    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._cond = threading.Condition()
        self._windows: list[tuple[float, int, deque[float]]] = []
        for seconds, cap in ((1.0, limits.per_second), (60.0, limits.per_minute)):
            if cap:
                self._windows.append((seconds, cap, deque()))
        if limits.per_day:
            self._windows.append((86_400.0, limits.per_day, deque()))
        self._running = 0
        self._not_before = 0.0
        self._hold_reason = ""
        self.calls = 0

    # -- the two halves of a call --------------------------------------------------------------
    def acquire(self) -> float:
        """Block until a call may start; returns its token for `release`."""
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
                    # A window or a hold: time alone frees it (the injected sleep, for tests).
                    self._cond.release()
                    try:
                        self._sleep(min(wait, 1.0))
                    finally:
                        self._cond.acquire()
                else:  # all slots busy: a reply frees one
                    self._cond.wait(timeout=1.0)
            self._running += 1
            self.calls += 1
            for _, _, stamps in self._windows:
                stamps.append(_IN_FLIGHT)
            return self._clock()

    def release(self, headers: Mapping[str, str] | None = None, status: int | None = None) -> None:
        """The call's reply arrived (or it failed): stamp its slot and read what is left."""
        with self._cond:
            now = self._clock()
            self._running -= 1
            for _, _, stamps in self._windows:
                # The oldest in-flight slot becomes a stamped one (order does not matter for
                # counting; the stamp is the latest moment the platform can have counted it).
                with contextlib.suppress(ValueError):  # acquire/release always pair
                    stamps.remove(_IN_FLIGHT)
                stamps.append(now)
            if headers is not None and status != 429:
                # a 429's own Retry-After says how long to wait (the caller holds for it)
                self._read_headers(headers, now)
            self._cond.notify_all()

    def hold(self, seconds: float, reason: str) -> None:
        """Nothing starts for `seconds` (a 429's Retry-After, or a wait the platform implied)."""
        with self._cond:
            until = self._clock() + max(0.0, seconds)
            if until > self._not_before:
                self._not_before = until
                self._hold_reason = reason
            self._cond.notify_all()

    # -- internals -----------------------------------------------------------------------------
    def _wait_needed(self) -> tuple[float, bool]:
        """(seconds to wait, whether time alone ends the wait)."""
        now = self._clock()
        wait = self._not_before - now
        busy = self._running >= self.limits.concurrent
        for seconds, cap, stamps in self._windows:
            while stamps and stamps[0] != _IN_FLIGHT and stamps[0] <= now - seconds:
                stamps.popleft()
            live = [s for s in stamps if s == _IN_FLIGHT or s > now - seconds]
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

    def _read_headers(self, headers: Mapping[str, str], now: float) -> None:
        minute = _int(headers.get("X-MinLimit-Remaining"))
        if minute is not None and minute <= 0 and now + 60 > self._not_before:
            # Someone else (another app on the same organisation) used the minute up.
            self._not_before, self._hold_reason = now + 60, "minute limit"
        day = _int(headers.get("X-DayLimit-Remaining"))
        if day is not None and day <= 0 and now + 3600 > self._not_before:
            # The 429 that follows carries the real wait; until then assume an hour.
            self._not_before, self._hold_reason = now + 3600, "day limit"


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
