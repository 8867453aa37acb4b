"""Test support shared by every suite: the fixed clock and a sandbox factory."""

from __future__ import annotations

from datetime import UTC, datetime

from arsync.sandbox import Sandbox, SandboxSettings

#: Tests run on a fixed, frozen sandbox clock so that books and ages are the same every run.
TEST_NOW = datetime(2026, 11, 23, 15, 0, tzinfo=UTC)


def make_sandbox(**overrides: object) -> Sandbox:
    settings = SandboxSettings(start=TEST_NOW, frozen=True, seed=7)
    for key, value in overrides.items():
        if not hasattr(settings, key):
            raise TypeError(f"SandboxSettings has no setting {key!r}")
        setattr(settings, key, value)
    return Sandbox(settings)
