"""The sandbox's clock: real time shifted by an offset, or frozen, and movable by tests."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta


def _as_utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("the sandbox clock takes timezone-aware datetimes only")
    return moment.astimezone(UTC)


class SandboxClock:
    """Every time-dependent rule of the sandbox reads this clock, never the system clock.

    By default it ticks with real time (so a person clicking through the consent page sees tokens
    age normally); `freeze()` stops it so a test controls every second. `set()` and `advance()`
    move it in either mode: time travel for 100-day collection cycles.
    """

    def __init__(self, start: datetime | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        real_now = datetime.now(UTC)
        self._offset = (_as_utc(start) - real_now) if start is not None else timedelta(0)
        self._frozen_at: datetime | None = _as_utc(start or real_now) if frozen else None

    def now(self) -> datetime:
        with self._lock:
            if self._frozen_at is not None:
                return self._frozen_at
            return datetime.now(UTC) + self._offset

    def today(self) -> date:
        return self.now().date()

    def timestamp(self) -> float:
        return self.now().timestamp()

    @property
    def frozen(self) -> bool:
        return self._frozen_at is not None

    def set(self, moment: datetime) -> datetime:
        moment = _as_utc(moment)
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at = moment
            else:
                self._offset = moment - datetime.now(UTC)
        return moment

    def advance(self, delta: timedelta | float) -> datetime:
        if not isinstance(delta, timedelta):
            delta = timedelta(seconds=delta)
        if delta < timedelta(0):
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            if self._frozen_at is not None:
                self._frozen_at += delta
                return self._frozen_at
            self._offset += delta
            return datetime.now(UTC) + self._offset

    def freeze(self) -> datetime:
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = datetime.now(UTC) + self._offset
            return self._frozen_at

    def unfreeze(self) -> None:
        with self._lock:
            if self._frozen_at is not None:
                self._offset = self._frozen_at - datetime.now(UTC)
                self._frozen_at = None

    def monotonic(self) -> float:
        """Seconds on a monotonic scale that also moves when the clock is set or advanced."""
        return time.monotonic() if self._frozen_at is None else self._frozen_at.timestamp()
