"""The rate governor on a fake clock: windows, holds, parking and the reply headers."""

from __future__ import annotations

import threading
from datetime import timedelta

import httpx
import pytest
import respx

from arsync.connectors.base import Limits, StaticTokens
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession, RetryPolicy
from arsync.errors import AuthError, Parked, PermanentError, RateLimited, TransientError


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def governor(limits: Limits, t: FakeTime) -> RateGovernor:
    return RateGovernor(limits, clock=t.clock, sleep=t.sleep)


def calls(g: RateGovernor, n: int, t: FakeTime, duration: float = 0.0) -> list[float]:
    """Start times of `n` sequential calls each taking `duration`."""
    starts = []
    for _ in range(n):
        g.acquire()
        starts.append(t.now)
        t.now += duration
        g.release()
    return starts


def test_per_second_window_admits_ten_then_waits_for_the_oldest_reply() -> None:
    t = FakeTime()
    g = governor(Limits(per_minute=500, per_second=10, concurrent=10, per_day=None), t)
    starts = calls(g, 25, t)
    for i in range(len(starts)):
        window = [s for s in starts if starts[i] - 1.0 < s <= starts[i]]
        assert len(window) <= 10, f"call {i} saw {len(window)} in one second"
    assert starts[10] >= starts[0] + 1.0


def test_per_minute_window_counts_from_the_reply() -> None:
    t = FakeTime()
    g = governor(Limits(per_minute=60, per_second=None, concurrent=5, per_day=None), t)
    starts = calls(g, 61, t, duration=0.5)
    # the first call's reply came at +0.5: the 61st may start only a minute after that
    assert starts[60] >= starts[0] + 0.5 + 60


def test_a_long_wait_parks_instead_of_sleeping() -> None:
    t = FakeTime()
    g = governor(Limits(per_minute=60, per_second=None, concurrent=5, per_day=None), t)
    g.hold(4 * 3600, "day")
    with pytest.raises(Parked) as caught:
        g.acquire()
    assert caught.value.retry_after == pytest.approx(4 * 3600)
    assert "4 h" in str(caught.value) and caught.value.problem == "day"
    assert t.slept == []


def test_replies_saying_the_minute_is_spent_hold_back_later_calls() -> None:
    t = FakeTime()
    g = governor(Limits(per_minute=60, per_second=None, concurrent=5, per_day=5000), t)
    g.acquire()
    g.release({"X-MinLimit-Remaining": "0", "X-DayLimit-Remaining": "4000"})
    before = t.now
    g.acquire()
    assert t.now >= before + 60


def test_the_day_limit_reported_spent_parks() -> None:
    t = FakeTime()
    g = governor(Limits(per_minute=60, per_second=None, concurrent=5, per_day=5000), t)
    g.acquire()
    g.release({"X-DayLimit-Remaining": "0"})
    with pytest.raises(Parked):
        g.acquire()


def test_concurrency_never_exceeds_the_cap() -> None:
    g = RateGovernor(Limits(per_minute=10_000, per_second=None, concurrent=3, per_day=None))
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Barrier(8)

    def worker() -> None:
        nonlocal running, peak
        gate.wait()
        for _ in range(5):
            g.acquire()
            with lock:
                running += 1
                peak = max(peak, running)
            with lock:
                running -= 1
            g.release()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert peak <= 3
    assert g.calls == 40


# -- ApiSession: retries and error mapping over respx ---------------------------------------------
URL = "https://api.example.test/thing"
LIMITS = Limits(per_minute=10_000, per_second=None, concurrent=5, per_day=None)


class CountingTokens(StaticTokens):
    def __init__(self) -> None:
        super().__init__("tok-1")
        self.invalidated: list[str] = []
        self.current = "tok-1"

    def access_token(self) -> str:
        return self.current

    def invalidate(self, token: str) -> None:
        self.invalidated.append(token)
        self.current = "tok-2"


def session(t: FakeTime, tokens: StaticTokens | None = None) -> ApiSession:
    return ApiSession(
        platform="test",
        tokens=tokens or StaticTokens("tok"),
        limits=LIMITS,
        retry=RetryPolicy(attempts=4, initial=0.5, cap=8.0),
        governor=RateGovernor(LIMITS, clock=t.clock, sleep=t.sleep),
        sleep=t.sleep,
    )


@respx.mock
def test_5xx_and_timeouts_are_retried_then_succeed() -> None:
    t = FakeTime()
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(503),
            httpx.ConnectTimeout("slow"),
            httpx.Response(200, json={"ok": 1.5}),
        ]
    )
    reply = session(t).call("GET", URL, "thing")
    assert route.call_count == 3
    assert str(reply.body["ok"]) == "1.5" and type(reply.body["ok"]).__name__ == "Decimal"
    assert len(t.slept) == 2 and all(0 < s <= 8.0 for s in t.slept)


@respx.mock
def test_retries_give_up_after_the_policy() -> None:
    t = FakeTime()
    route = respx.get(URL).mock(return_value=httpx.Response(500))
    with pytest.raises(TransientError):
        session(t).call("GET", URL, "thing")
    assert route.call_count == 4


@respx.mock
def test_validation_errors_are_never_retried() -> None:
    t = FakeTime()
    route = respx.get(URL).mock(return_value=httpx.Response(400, json={"error": "bad"}))
    with pytest.raises(PermanentError):
        session(t).call("GET", URL, "thing")
    assert route.call_count == 1


@respx.mock
def test_429_retry_after_in_seconds_or_as_a_date_holds_the_governor() -> None:
    t = FakeTime()
    route = respx.get(URL).mock(
        side_effect=[
            httpx.Response(429, headers={"Retry-After": "3", "X-Rate-Limit-Problem": "minute"}),
            httpx.Response(200, json={}),
        ]
    )
    session(t).call("GET", URL, "thing")
    assert route.call_count == 2
    assert sum(t.slept) >= 3


@respx.mock
def test_429_with_a_wait_of_hours_parks() -> None:
    t = FakeTime()
    respx.get(URL).mock(
        return_value=httpx.Response(
            429, headers={"Retry-After": "30000", "X-Rate-Limit-Problem": "day"}
        )
    )
    with pytest.raises(Parked) as caught:
        session(t).call("GET", URL, "thing")
    assert caught.value.problem == "day"
    assert sum(t.slept) < 60


@respx.mock
def test_a_429_storm_gives_up_as_rate_limited() -> None:
    t = FakeTime()
    route = respx.get(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": "1"}))
    with pytest.raises(RateLimited):
        session(t).call("GET", URL, "thing")
    assert route.call_count == 4


@respx.mock
def test_a_401_gets_one_fresh_token_then_fails_as_auth() -> None:
    t = FakeTime()
    tokens = CountingTokens()
    route = respx.get(URL).mock(
        side_effect=[httpx.Response(401), httpx.Response(200, json={"a": 1})]
    )
    session(t, tokens).call("GET", URL, "thing")
    assert tokens.invalidated == ["tok-1"]
    assert route.calls[1].request.headers["Authorization"] == "Bearer tok-2"
    respx.get(URL).mock(return_value=httpx.Response(401))
    with pytest.raises(AuthError) as caught:
        session(t, tokens).call("GET", URL, "thing")
    assert "tok-" not in str(caught.value)


def test_park_after_is_a_setting() -> None:
    t = FakeTime()
    limits = Limits(60, None, 5, None, park_after=timedelta(hours=5))
    g = RateGovernor(limits, clock=t.clock, sleep=t.sleep)
    g.hold(4 * 3600, "day")
    g.acquire()  # slept through rather than parked
    assert sum(t.slept) >= 4 * 3600
