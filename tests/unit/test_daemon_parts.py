"""The daemon's parts on their own: systemd's notify protocol on a real socket, the triggers."""

from __future__ import annotations

import os
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from arsync.daemon import Every, Notifier

T0 = datetime(2027, 3, 1, 9, 0, tzinfo=UTC)


def listening(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    return sock


def test_notify_sends_one_datagram_of_lines(tmp_path: Path) -> None:
    sock = listening(tmp_path / "notify")
    notifier = Notifier(str(tmp_path / "notify"))
    try:
        assert notifier.send("READY=1", "STATUS=2 connector(s); idle")
        assert sock.recv(4096) == b"READY=1\nSTATUS=2 connector(s); idle"
    finally:
        notifier.close()
        sock.close()


def test_notify_reaches_an_abstract_socket() -> None:
    name = f"arsync-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5)
    notifier = Notifier("@" + name)
    try:
        assert notifier.send("WATCHDOG=1")
        assert sock.recv(4096) == b"WATCHDOG=1"
    finally:
        notifier.close()
        sock.close()


def test_without_systemd_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier(None).send("READY=1")
    # a socket that went away is reported, not raised
    assert not Notifier(str(tmp_path / "gone")).send("READY=1")


def test_the_watchdog_is_fed_at_half_its_period_and_only_for_this_process(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier.from_env().watchdog_every == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert Notifier.from_env().watchdog_every is None
    monkeypatch.delenv("WATCHDOG_USEC")
    assert Notifier.from_env().watchdog_every is None


def test_a_trigger_fires_on_its_grid() -> None:
    every = Every(timedelta(minutes=15), T0, jitter=False)
    assert not every.due(T0 - timedelta(seconds=1))
    assert every.due(T0)
    every.fired(T0)
    assert every.next == T0 + timedelta(minutes=15)
    every.fired(T0 + timedelta(minutes=15, seconds=20))
    assert every.next == T0 + timedelta(minutes=30)


def test_a_late_trigger_fires_once_not_once_per_missed_interval() -> None:
    every = Every(timedelta(minutes=15), T0, jitter=False)
    late = T0 + timedelta(days=3, minutes=7)
    assert every.due(late)
    every.fired(late)
    assert not every.due(late)
    assert every.next == T0 + timedelta(days=3, minutes=15)


def test_jitter_spreads_fires_within_a_tenth_of_the_interval() -> None:
    seen = set()
    for _ in range(50):
        every = Every(timedelta(minutes=15), T0)
        every.fired(T0)
        offset = every.next - (T0 + timedelta(minutes=15))
        assert timedelta(0) <= offset <= timedelta(seconds=90)
        seen.add(offset)
    assert len(seen) > 1


def test_not_before_holds_a_trigger_back_only_forwards() -> None:
    every = Every(timedelta(minutes=15), T0, jitter=False)
    every.not_before(T0 + timedelta(hours=2))
    assert every.next == T0 + timedelta(hours=2)
    every.not_before(T0)
    assert every.next == T0 + timedelta(hours=2)
