"""The fault plan's matching and the rate limiter's windows (pure, on a frozen clock)."""

from datetime import UTC, datetime

import pytest

from arsync.sandbox.clock import SandboxClock
from arsync.sandbox.faults import FaultKind, FaultPlan, FaultRule
from arsync.sandbox.ledger import Ledger
from arsync.sandbox.ratelimit import RateLimiter, Window

START = datetime(2026, 3, 1, tzinfo=UTC)


def test_scripted_rule_skips_then_fires_a_fixed_number_of_times() -> None:
    plan = FaultPlan()
    plan.add(kind="server_error", platform="xero", endpoint="GET */Invoices", skip=1, times=2)
    fired = [plan.draw("xero", "GET /api.xro/2.0/Invoices") for _ in range(5)]
    assert [r is not None for r in fired] == [False, True, True, False, False]
    assert plan.draw("qbo", "GET /api.xro/2.0/Invoices") is None


def test_rules_filter_by_tenant_and_kind() -> None:
    plan = FaultPlan()
    plan.add(kind="stale_synctoken", platform="qbo", tenant="1", times=None)
    transport = frozenset({FaultKind.DROP})
    assert plan.draw("qbo", "POST /v3/company/{realmId}/invoice", "1", transport) is None
    assert plan.draw("qbo", "POST /v3/company/{realmId}/invoice", "2") is None
    rule = plan.draw("qbo", "POST /v3/company/{realmId}/invoice", "1")
    assert rule is not None and rule.kind is FaultKind.STALE_SYNCTOKEN


def test_seeded_random_plan_replays_identically() -> None:
    def run(seed: int) -> list[bool]:
        plan = FaultPlan(seed)
        plan.add(kind="drop", times=None, probability=0.3)
        return [plan.draw("qbo", "GET x") is not None for _ in range(200)]

    assert run(5) == run(5)
    assert 20 < sum(run(5)) < 100
    assert run(5) != run(6)


def test_rule_from_json_rejects_unknown_keys_and_kinds() -> None:
    with pytest.raises(ValueError, match="unknown fault rule keys: tims"):
        FaultRule.from_json({"kind": "drop", "tims": 3})
    with pytest.raises(ValueError, match="kind, one of"):
        FaultRule.from_json({"kind": "meteor"})
    rule = FaultRule.from_json({"kind": "slow", "params": {"delay": 2}, "times": None})
    assert rule.kind is FaultKind.SLOW and rule.times is None


def test_minute_window_refuses_without_counting_and_slides() -> None:
    clock = SandboxClock(START, frozen=True)
    limiter = RateLimiter(clock)
    minute = [("t1", Window("minute", 3, 60))]
    decisions = [limiter.check(minute) for _ in range(4)]
    assert [d.allowed for d in decisions] == [True, True, True, False]
    assert [d.remaining["minute"] for d in decisions[:3]] == [2, 1, 0]
    assert decisions[3].problem == "minute" and decisions[3].retry_after == 60
    clock.advance(30)
    assert limiter.check(minute).retry_after == 30
    clock.advance(30)
    assert limiter.check(minute).allowed
    # another tenant has its own window
    assert limiter.check([("t2", Window("minute", 3, 60))]).allowed


def test_concurrency_cap_counts_in_flight_requests() -> None:
    limiter = RateLimiter(SandboxClock(START, frozen=True))
    cap = ("t1", 2)
    assert limiter.check([], concurrency=cap).allowed
    assert limiter.check([], concurrency=cap).allowed
    refused = limiter.check([], concurrency=cap)
    assert not refused.allowed and refused.problem == "concurrent"
    limiter.leave("t1")
    assert limiter.check([], concurrency=cap).allowed


def test_ledger_filters_and_counts() -> None:
    ledger = Ledger(SandboxClock(START, frozen=True))
    ledger.record("xero", "request", tenant="a", endpoint="GET /x", status=200)
    ledger.record("xero", "email_sent", tenant="a", idempotency_key="k1", invoice="i1")
    ledger.record("qbo", "request", tenant="b", endpoint="GET /y", status=429)
    assert ledger.count(platform="xero") == 2
    assert ledger.count(kind="email_sent", idempotency_key="k1") == 1
    assert ledger.request_counts() == {"GET /x": 1, "GET /y": 1}
    assert [e.seq for e in ledger.entries(since_seq=1)] == [2, 3]
    with pytest.raises(ValueError, match="unknown ledger kind"):
        ledger.record("xero", "telepathy")
