"""The sandbox clock: frozen, ticking, set and advanced."""

from datetime import UTC, datetime, timedelta

import pytest

from arsync.sandbox.clock import SandboxClock

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def test_frozen_clock_stands_still_until_moved() -> None:
    clock = SandboxClock(START, frozen=True)
    assert clock.now() == START
    assert clock.advance(timedelta(days=100)) == START + timedelta(days=100)
    assert clock.now() == START + timedelta(days=100)
    clock.set(START)
    assert clock.today() == START.date()


def test_ticking_clock_starts_where_told_and_keeps_an_advance() -> None:
    clock = SandboxClock(START)
    first = clock.now()
    assert START <= first < START + timedelta(minutes=1)
    clock.advance(3600)
    assert clock.now() >= first + timedelta(hours=1)


def test_freeze_and_unfreeze_keep_the_time() -> None:
    clock = SandboxClock(START)
    frozen_at = clock.freeze()
    assert clock.frozen and clock.now() == frozen_at
    clock.unfreeze()
    assert not clock.frozen and clock.now() >= frozen_at


def test_naive_times_and_going_backwards_are_refused() -> None:
    clock = SandboxClock(START, frozen=True)
    with pytest.raises(ValueError, match="timezone-aware"):
        clock.set(datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)
