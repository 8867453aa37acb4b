"""Shared fixtures: a sandbox on a frozen clock, served over real loopback HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from arsync.sandbox import Sandbox, SandboxServer
from tests.support import make_sandbox


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
