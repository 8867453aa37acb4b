"""Rate limits as the platforms enforce them: sliding windows and concurrent-request caps."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from arsync.sandbox.clock import SandboxClock


@dataclass(frozen=True)
class Window:
    name: str  # "minute", "day", "appminute", "batch", "second"…
    limit: int
    seconds: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    problem: str | None  # the window that refused, or "concurrent"
    retry_after: int  # whole seconds until the refusing window admits one more
    remaining: dict[str, int]  # per window, after this request


class RateLimiter:
    """Counts admitted requests per key in sliding windows read off the sandbox clock.

    Refused requests do not count against a window (as on both platforms). Concurrency is counted
    by `enter`/`leave` around the handler.
    """

    def __init__(self, clock: SandboxClock) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._inflight: dict[str, int] = {}

    def _prune(self, key: tuple[str, str], horizon: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= horizon:
            hits.popleft()
        return hits

    def check(
        self,
        windows: list[tuple[str, Window]],
        *,
        concurrency: tuple[str, int] | None = None,
    ) -> Decision:
        """Admit one request against every (key, window) pair, or refuse it without counting.

        `concurrency` is (key, cap): a request over the cap of in-flight requests is refused;
        an admitted one is counted in flight until `leave(key)`.
        """
        now = self._clock.timestamp()
        with self._lock:
            remaining: dict[str, int] = {}
            refused: tuple[str, int] | None = None
            for key, window in windows:
                hits = self._prune((key, window.name), now - window.seconds)
                left = window.limit - len(hits)
                if left <= 0 and refused is None:
                    wait = hits[0] + window.seconds - now if hits else window.seconds
                    refused = (window.name, max(1, int(wait + 0.999)))
                remaining[window.name] = max(0, left - 1)
            if refused is None and concurrency is not None:
                ckey, cap = concurrency
                if self._inflight.get(ckey, 0) >= cap:
                    refused = ("concurrent", 1)
            if refused is not None:
                for key, window in windows:
                    hits = self._hits[(key, window.name)]
                    remaining[window.name] = max(0, window.limit - len(hits))
                return Decision(False, refused[0], refused[1], remaining)
            for key, window in windows:
                self._hits[(key, window.name)].append(now)
            if concurrency is not None:
                self._inflight[concurrency[0]] = self._inflight.get(concurrency[0], 0) + 1
            return Decision(True, None, 0, remaining)

    def peek(self, windows: list[tuple[str, Window]]) -> dict[str, int]:
        """What each window has left now, without counting a request."""
        now = self._clock.timestamp()
        with self._lock:
            return {
                window.name: max(
                    0, window.limit - len(self._prune((key, window.name), now - window.seconds))
                )
                for key, window in windows
            }

    def leave(self, concurrency_key: str) -> None:
        with self._lock:
            n = self._inflight.get(concurrency_key, 0)
            self._inflight[concurrency_key] = max(0, n - 1)

    def inflight(self, concurrency_key: str) -> int:
        with self._lock:
            return self._inflight.get(concurrency_key, 0)

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()
