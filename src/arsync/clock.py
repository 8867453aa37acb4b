"""The one source of "now": the system's clock, a frozen one, or one following the sandbox.

Every part of arsync that needs the time (sync's sweep schedule, status, the store's stamps,
token horizons, the rate governor, retries) is handed a `Clock` and reads only it; nothing else
in the engine reads the wall clock (a test enforces this). So a test means the same on any
day it runs, and the demo and the tests can run arsync on the sandbox's time, where a 100-day
collection cycle takes seconds.

A clock has three faces:
- `now()`: the current moment, timezone-aware UTC;
- `monotonic()`: seconds on a scale that never goes back, for intervals and rate windows;
- `sleep(seconds)`: wait that long on this clock's time (a frozen clock moves itself forward
  instead of blocking, so waiting is instant and deterministic).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import httpx

from arsync.errors import ConfigError


class Clock(Protocol):
    def now(self) -> datetime:
        """The current moment, timezone-aware, in UTC."""
        ...

    def monotonic(self) -> float:
        """Seconds on a scale that never goes back (only differences mean anything)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Let `seconds` pass on this clock."""
        ...


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a clock takes timezone-aware datetimes only")
    return moment.astimezone(UTC)


class SystemClock:
    """The machine's clock: what a daemon in production runs on."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"


class FrozenClock:
    """A clock that stands still until moved; `sleep` moves it instead of blocking.

    Waiting on it is instant: a rate window that frees in 40 s frees after `sleep(40)` at once,
    and the clock reads 40 s later. Safe to share between threads.
    """

    def __init__(self, at: datetime) -> None:
        self._lock = threading.Lock()
        self._at = _utc(at)

    def now(self) -> datetime:
        with self._lock:
            return self._at

    def monotonic(self) -> float:
        with self._lock:
            return self._at.timestamp()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.advance(timedelta(seconds=seconds))

    def advance(self, delta: timedelta | float) -> datetime:
        step = delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        if step < timedelta(0):
            raise ValueError("a clock only moves forward")
        with self._lock:
            self._at += step
            return self._at

    def set(self, moment: datetime) -> datetime:
        moment = _utc(moment)
        with self._lock:
            if moment < self._at:
                raise ValueError("a clock only moves forward")
            self._at = moment
            return moment

    def __repr__(self) -> str:
        return f"FrozenClock({self.now().isoformat()})"


class OffsetClock(SystemClock):
    """The machine's clock shifted by a fixed offset: ticks in real time from another epoch."""

    def __init__(self, offset: timedelta) -> None:
        self.offset = offset

    def now(self) -> datetime:
        return super().now() + self.offset

    def __repr__(self) -> str:
        return f"OffsetClock({self.offset})"


class FollowingClock:
    """A clock read from elsewhere (the sandbox's, in the same process): the three faces given."""

    def __init__(
        self,
        now: Callable[[], datetime],
        monotonic: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        self._now, self._monotonic, self._sleep = now, monotonic, sleep

    def now(self) -> datetime:
        return _utc(self._now())

    def monotonic(self) -> float:
        return self._monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self._sleep(seconds)

    def __repr__(self) -> str:
        return "FollowingClock()"


class Stopwatch:
    """Real seconds elapsed, for supervising a process (a stop's bound, the watchdog's beat,
    how long a unit of work took), never for business time, which is the injected clock's."""

    def __init__(self) -> None:
        self._start = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self._start

    def restart(self) -> float:
        """The seconds elapsed, and start again."""
        now = time.monotonic()
        elapsed, self._start = now - self._start, now
        return elapsed


def _read_sandbox(client: httpx.Client, url: str, where: str) -> tuple[datetime, bool]:
    what = f"{where}: cannot read the sandbox's clock at {url}"
    try:
        reply = client.get(f"{url.rstrip('/')}/_sandbox/clock")
        reply.raise_for_status()
        body = reply.json()
        return _utc(datetime.fromisoformat(str(body["now"]))), bool(body["frozen"])
    except httpx.HTTPError as err:
        raise ConfigError(
            f"{what} ({type(err).__name__}: {err}); is `arsync sandbox serve` running there?"
        ) from err
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{what}: the answer is not a sandbox's clock ({err})") from err


class SandboxFollower:
    """The sandbox's clock, followed for as long as a process runs (the daemon on the sandbox).

    `refresh()` reads the sandbox again (the daemon does at each wake-up), so a test or the demo
    moving the sandbox's clock moves the daemon's. Between reads a ticking sandbox is followed
    in real time and a frozen one stands still. `sleep` behaves as a frozen clock's: it moves
    this clock forward (never past what the sandbox says later) instead of blocking, so a
    retry's backoff does not wait for someone to move the sandbox. It never goes back.
    """

    def __init__(self, url: str, *, where: str = "clock.sandbox") -> None:
        self._url, self._where = url, where
        self._client = httpx.Client(timeout=httpx.Timeout(10.0))
        self._lock = threading.Lock()
        self._read_at = 0.0
        self._sandbox = datetime.min.replace(tzinfo=UTC)
        self._frozen = True
        self._floor = self._sandbox
        self.refresh()

    def refresh(self) -> datetime:
        moment, frozen = _read_sandbox(self._client, self._url, self._where)
        with self._lock:
            self._sandbox, self._frozen, self._read_at = moment, frozen, time.monotonic()
            self._floor = max(self._floor, moment)
            return self._floor

    def now(self) -> datetime:
        with self._lock:
            if self._frozen:
                return self._floor
            ticking = self._sandbox + timedelta(seconds=time.monotonic() - self._read_at)
            self._floor = max(self._floor, ticking)
            return self._floor

    def monotonic(self) -> float:
        return self.now().timestamp()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            with self._lock:
                self._floor += timedelta(seconds=seconds)

    @property
    def frozen(self) -> bool:
        """Whether the sandbox's clock stood still at the last read."""
        return self._frozen

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"SandboxFollower({self._url!r})"


def sandbox_clock(
    url: str, *, where: str = "clock.sandbox", http: httpx.Client | None = None
) -> Clock:
    """A clock that follows the sandbox served at `url` (`arsync sandbox serve`), read once now.

    A ticking sandbox clock gives an `OffsetClock` (real time from the sandbox's epoch); a frozen
    one a `FrozenClock` at its moment. Moving the sandbox's clock later is seen by the next
    arsync command, which reads it again.
    """
    client = http or httpx.Client(timeout=httpx.Timeout(10.0))
    try:
        moment, frozen = _read_sandbox(client, url, where)
    finally:
        if http is None:
            client.close()
    if frozen:
        return FrozenClock(moment)
    return OffsetClock(moment - datetime.now(UTC))


__all__ = [
    "Clock",
    "FollowingClock",
    "FrozenClock",
    "OffsetClock",
    "SandboxFollower",
    "Stopwatch",
    "SystemClock",
    "sandbox_clock",
]
