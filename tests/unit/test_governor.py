"""The rate governor on a fake clock: windows, holds, parking, the reply headers, the calls
remembered across a restart; and the API session's retries, reads apart from writes."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from arsync.clock import SystemClock
from arsync.connectors.base import Limits, StaticTokens
from arsync.connectors.governor import RateGovernor
from arsync.connectors.http import ApiSession, RetryPolicy
from arsync.errors import (
    AuthError,
    OutcomeUnknown,
    Parked,
    PermanentError,
    RateLimited,
    TransientError,
)

EPOCH = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


class FakeTime:
    """A Clock whose sleeps move it forward at once, and which remembers them."""

    def __init__(self) -> None:
        self.now_s = 1000.0
        self.slept: list[float] = []

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.now_s)

    def monotonic(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now_s += seconds


def governor(limits: Limits, t: FakeTime) -> RateGovernor:
    return RateGovernor(limits, t)


def calls(g: RateGovernor, n: int, t: FakeTime, duration: float = 0.0) -> list[float]:
    """Start times of `n` sequential calls each taking `duration`."""
    starts = []
    for _ in range(n):
        g.acquire()
        starts.append(t.now_s)
        t.now_s += duration
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
    before = t.now_s
    g.acquire()
    assert t.now_s >= before + 60


def test_the_day_limit_reported_spent_parks() -> None:
    t = FakeTime()
    g = governor(Limits(per_minute=60, per_second=None, concurrent=5, per_day=5000), t)
    g.acquire()
    g.release({"X-DayLimit-Remaining": "0"})
    with pytest.raises(Parked):
        g.acquire()


def test_concurrency_never_exceeds_the_cap() -> None:
    g = RateGovernor(
        Limits(per_minute=10_000, per_second=None, concurrent=3, per_day=None), SystemClock()
    )
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


def session(t: FakeTime, tokens: StaticTokens | None = None, platform: str = "xero") -> ApiSession:
    return ApiSession(
        platform=platform,
        tokens=tokens or StaticTokens("tok"),
        retry=RetryPolicy(attempts=4, initial=0.5, cap=8.0),
        governor=RateGovernor(LIMITS, t),
        clock=t,
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
    g = RateGovernor(limits, t)
    g.hold(4 * 3600, "day")
    g.acquire()  # slept through rather than parked
    assert sum(t.slept) >= 4 * 3600


# -- the minute spent, as Xero's headers say it ---------------------------------------------------
XERO = Limits(per_minute=60, per_second=None, concurrent=5, per_day=5000)


def test_a_spent_minute_that_this_governor_spent_frees_when_its_oldest_call_leaves() -> None:
    t = FakeTime()
    g = governor(XERO, t)
    starts = []
    for n in range(60):
        starts.append(g.acquire())
        t.now_s += 0.5  # the reply takes half a second
        left = 60 - (n + 1)
        g.release({"X-MinLimit-Remaining": str(left), "X-DayLimit-Remaining": "4000"})
    first_reply = starts[0] + 0.5
    assert t.now_s == pytest.approx(first_reply + 59 * 0.5)
    nxt = g.acquire()
    # every call in Xero's window was ours: the slot frees when the first one's reply is a
    # minute old (not a whole minute from the last reply, as a flat wait would have it)
    assert nxt == pytest.approx(first_reply + 60)
    assert nxt < t.now_s + 60 - 20


class SimulatedXero:
    """Xero's minute as the sandbox keeps it: a call counts when it arrives (a moment after it is
    sent), the answer comes half a second later with what is left of the minute, and a call
    that would be the 61st in 60 seconds is refused."""

    def __init__(self, t: FakeTime, latency: float = 0.5) -> None:
        self.t, self.latency = t, latency
        self.arrivals: list[float] = []
        self.refused = 0

    def call(self, g: RateGovernor) -> None:
        started = g.acquire()
        self.t.now_s += 0.01  # on the wire
        arrived = self.t.now_s
        window = [a for a in self.arrivals if a > arrived - 60]
        self.t.now_s += self.latency
        if len(window) >= 60:
            self.refused += 1
            g.release({"X-MinLimit-Remaining": "0"}, 429, started)
            g.hold(60, "minute")
            return
        self.arrivals.append(arrived)
        left = 60 - len(window) - 1
        g.release({"X-MinLimit-Remaining": str(left)}, 200, started)
        self.t.now_s += 0.03  # the page is committed before the next call


def test_under_xeros_minute_with_slow_replies_the_pace_holds_and_nothing_is_refused() -> None:
    """A long sync through the governor keeps to Xero's 60 a minute, never over, and near it
    (the bench measures the same against the sandbox)."""
    t = FakeTime()
    g = governor(XERO, t)
    xero = SimulatedXero(t)
    for _ in range(400):
        xero.call(g)
    minutes = (xero.arrivals[-1] - xero.arrivals[0]) / 60
    assert xero.refused == 0
    assert (len(xero.arrivals) - 1) / minutes >= 0.95 * 60


def test_a_minute_mostly_spent_by_someone_else_waits_for_the_oldest_of_ours_to_leave() -> None:
    t = FakeTime()
    g = governor(XERO, t)
    replies = []
    for _ in range(10):
        started = g.acquire()
        t.now_s += 0.5
        replies.append(t.now_s)
        g.release({"X-MinLimit-Remaining": "40"}, 200, started)
    started = g.acquire()
    t.now_s += 0.5
    g.release({"X-MinLimit-Remaining": "0"}, 200, started)  # another app spent the rest
    # Xero's window holds our eleven and 49 of theirs, times unknown; ours leave it a minute
    # after their replies at the latest, and the first of them frees a slot
    assert g.acquire() == pytest.approx(replies[0] + 60)


def test_a_minute_spent_before_our_first_call_waits_a_whole_minute_from_it() -> None:
    t = FakeTime()
    g = governor(XERO, t)
    started = g.acquire()
    t.now_s += 0.5
    g.release({"X-MinLimit-Remaining": "0"}, 200, started)  # the minute was spent already
    said_at = t.now_s
    assert g.acquire() == pytest.approx(said_at + 60)


# -- calls remembered across a restart ------------------------------------------------------------
class MemoryUsage:
    """A UsageLog in memory (the store's is tested with the store)."""

    def __init__(self) -> None:
        self.minutes: dict[datetime, int] = {}
        self.saves = 0

    def recent(self, since: datetime) -> list[tuple[datetime, int]]:
        return sorted((m, c) for m, c in self.minutes.items() if m >= since)

    def save(self, counts: dict[datetime, int]) -> None:
        self.saves += 1
        for minute, calls in counts.items():
            self.minutes[minute] = self.minutes.get(minute, 0) + calls


def test_the_days_calls_outlive_the_governor() -> None:
    t = FakeTime()
    usage = MemoryUsage()
    limits = Limits(per_minute=1000, per_second=None, concurrent=5, per_day=100)
    first = RateGovernor(limits, t, usage=usage)
    for _ in range(100):
        first.acquire()
        t.now_s += 0.3
        first.release()
    first.flush()
    assert sum(usage.minutes.values()) == 100
    assert usage.saves > 1  # written as it went, not only at the end

    t.now_s += 3600  # an hour later, a new process
    restarted = RateGovernor(limits, t, usage=usage)
    with pytest.raises(Parked) as caught:  # the day's 100 are spent: about 23 h to wait
        restarted.acquire()
    assert caught.value.retry_after is not None and caught.value.retry_after > 20 * 3600

    t.now_s += 86_400  # a day later every one of them has left the window
    again = RateGovernor(limits, t, usage=usage)
    again.acquire()
    again.release()


def test_a_failing_usage_log_never_fails_a_call() -> None:
    class Broken(MemoryUsage):
        def save(self, counts: dict[datetime, int]) -> None:
            from arsync.errors import StoreDamaged

            raise StoreDamaged("the store is damaged")

    t = FakeTime()
    usage = Broken()
    g = RateGovernor(XERO, t, usage=usage, flush_every=0.0)
    for _ in range(3):
        g.acquire()
        g.release()
    g.flush()
    assert g.calls == 3


# -- writes are never repeated blindly -------------------------------------------------------------
WRITE = "https://api.example.test/Invoices/1/Email"


@respx.mock
def test_a_write_whose_reply_timed_out_is_outcome_unknown_and_not_resent() -> None:
    t = FakeTime()
    route = respx.post(WRITE).mock(side_effect=httpx.ReadTimeout("no reply"))
    with pytest.raises(OutcomeUnknown, match="may or may not"):
        session(t).call("POST", WRITE, "emailing", json={}, write=True)
    assert route.call_count == 1


@respx.mock
@pytest.mark.parametrize(
    "failure",
    [httpx.RemoteProtocolError("dropped"), httpx.ReadError("reset"), httpx.Response(502)],
)
def test_a_write_that_may_have_been_performed_is_not_resent(
    failure: httpx.Response | Exception,
) -> None:
    t = FakeTime()
    route = respx.post(WRITE).mock(side_effect=[failure, httpx.Response(204)])
    with pytest.raises(OutcomeUnknown):
        session(t).call("POST", WRITE, "emailing", json={}, write=True)
    assert route.call_count == 1


@respx.mock
def test_a_write_that_never_left_is_retried() -> None:
    t = FakeTime()
    route = respx.post(WRITE).mock(
        side_effect=[
            httpx.ConnectError("refused"),
            httpx.Response(429, headers={"Retry-After": "1"}),
            httpx.Response(204),
        ]
    )
    reply = session(t).call("POST", WRITE, "emailing", json={}, write=True)
    assert reply.status == 204 and route.call_count == 3


@respx.mock
def test_a_keyed_write_is_resent_with_the_same_key_where_the_platform_reads_it() -> None:
    t = FakeTime()
    route = respx.post(WRITE).mock(
        side_effect=[httpx.ReadTimeout("no reply"), httpx.Response(502), httpx.Response(204)]
    )
    session(t).call("POST", WRITE, "emailing", json={}, write=True, idempotency_key="act-1")
    assert route.call_count == 3
    assert [c.request.headers["Idempotency-Key"] for c in route.calls] == ["act-1"] * 3

    send = "https://api.example.test/v3/company/1/invoice/9/send"
    qbo = respx.post(send).mock(
        side_effect=[httpx.ReadTimeout("no reply"), httpx.Response(200, json={})]
    )
    session(t, platform="qbo").call("POST", send, "sending", write=True, idempotency_key="act-2")
    assert [c.request.url.params["requestid"] for c in qbo.calls] == ["act-2", "act-2"]


@respx.mock
def test_a_keyed_write_is_not_resent_once_the_platform_may_have_forgotten_the_key() -> None:
    t = FakeTime()

    def slow_timeout(request: httpx.Request) -> httpx.Response:
        t.now_s += 200  # each attempt waits long for its reply
        raise httpx.ReadTimeout("no reply")

    route = respx.post(WRITE).mock(side_effect=slow_timeout)
    with pytest.raises(OutcomeUnknown):
        session(t).call("POST", WRITE, "emailing", json={}, write=True, idempotency_key="k")
    # 5 minutes of memory: the first two attempts fit, a third would not be recognised
    assert route.call_count == 2


@respx.mock
def test_a_read_that_timed_out_is_retried_even_as_a_post() -> None:
    t = FakeTime()
    route = respx.post(URL).mock(
        side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json={"QueryResponse": {}})]
    )
    reply = session(t, platform="qbo").call("POST", URL, "query", content=b"SELECT")
    assert route.call_count == 2 and reply.body == {"QueryResponse": {}}


def test_an_idempotency_key_on_a_read_is_a_mistake() -> None:
    with pytest.raises(ValueError, match="belongs to a write"):
        session(FakeTime()).call("GET", URL, "thing", idempotency_key="k")


def test_an_apps_limit_is_shared_by_all_its_companies() -> None:
    t = FakeTime()
    app = RateGovernor(Limits(per_minute=5, per_second=None, concurrent=100, per_day=None), t)
    own = Limits(per_minute=60, per_second=None, concurrent=5, per_day=None)
    a, b = RateGovernor(own, t, parent=app), RateGovernor(own, t, parent=app)
    starts = calls(a, 3, t) + calls(b, 3, t)
    # each company is far under its own 60 a minute; the app's fifth call was the last in
    # that minute, so the sixth, whichever company's, waits for the minute to pass
    assert starts[5] >= starts[0] + 60
    assert (a.calls, b.calls, app.calls) == (3, 3, 6)


def test_a_call_the_apps_limit_parks_gives_the_companys_slot_back() -> None:
    t = FakeTime()
    app = RateGovernor(Limits(per_minute=1, per_second=None, concurrent=100, per_day=None), t)
    tight = Limits(
        per_minute=1, per_second=None, concurrent=5, per_day=None, park_after=timedelta(0)
    )
    a = RateGovernor(tight, t, parent=app)
    app.hold(3600, "the app is throttled")
    with pytest.raises(Parked):
        a.acquire()
    # the company's own concurrency slot was handed back when the app's refused
    assert a._running == 0
