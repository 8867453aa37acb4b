"""Shared fixtures: a sandbox on a frozen clock, served over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest

from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings

#: Tests run on a fixed, frozen sandbox clock so that books and ages are the same every run.
TEST_NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def make_sandbox(**overrides: object) -> Sandbox:
    settings = SandboxSettings(start=TEST_NOW, frozen=True, seed=7)
    for key, value in overrides.items():
        setattr(settings, key, value)
    return Sandbox(settings)


@pytest.fixture
def sandbox_factory() -> Callable[..., Sandbox]:
    """`sandbox_factory(invoices=50, latency=0.2)`: a test sandbox with other settings."""
    return make_sandbox


@pytest.fixture
def sandbox() -> Sandbox:
    return make_sandbox()


@pytest.fixture
def server(sandbox: Sandbox) -> Iterator[SandboxServer]:
    with SandboxServer(sandbox) as running:
        yield running
