"""arsync's own clocks: frozen and moved by its sleeps, offset, and following a sandbox."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
import respx

from arsync.clock import FrozenClock, OffsetClock, SystemClock, sandbox_clock
from arsync.errors import ConfigError

START = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)
URL = "http://127.0.0.1:8765"


def test_a_frozen_clock_moves_only_when_told_or_slept_on() -> None:
    clock = FrozenClock(START)
    assert clock.now() == START and clock.monotonic() == START.timestamp()
    clock.sleep(40)
    assert clock.now() == START + timedelta(seconds=40)
    clock.sleep(-5)  # a negative wait is no wait
    assert clock.now() == START + timedelta(seconds=40)
    with pytest.raises(ValueError, match="forward"):
        clock.set(START)
    with pytest.raises(ValueError, match="timezone-aware"):
        FrozenClock(datetime(2026, 1, 1))


def test_an_offset_clock_runs_with_the_machine_from_another_epoch() -> None:
    ahead = OffsetClock(timedelta(days=400))
    gap = ahead.now() - SystemClock().now()
    assert timedelta(days=400) - timedelta(seconds=5) < gap <= timedelta(days=400)


@respx.mock
def test_a_sandbox_clock_is_frozen_or_offset_as_the_sandbox_is() -> None:
    route = respx.get(f"{URL}/_sandbox/clock")
    route.mock(return_value=httpx.Response(200, json={"now": START.isoformat(), "frozen": True}))
    frozen = sandbox_clock(URL)
    assert isinstance(frozen, FrozenClock) and frozen.now() == START
    route.mock(return_value=httpx.Response(200, json={"now": START.isoformat(), "frozen": False}))
    ticking = sandbox_clock(URL)
    assert isinstance(ticking, OffsetClock)
    assert abs(ticking.now() - START) < timedelta(seconds=5)


@respx.mock
def test_a_sandbox_clock_that_cannot_be_read_is_a_configuration_error() -> None:
    route = respx.get(f"{URL}/_sandbox/clock")
    route.mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(
        ConfigError, match=r"config/arsync\.toml: clock\.sandbox: cannot read"
    ) as err:
        sandbox_clock(URL, where="config/arsync.toml: clock.sandbox")
    assert "arsync sandbox serve" in str(err.value)
    route.mock(return_value=httpx.Response(200, json={"time": "now"}))
    with pytest.raises(ConfigError, match="not a sandbox's clock"):
        sandbox_clock(URL)
