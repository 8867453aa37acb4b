"""Test support shared by every suite: the fixed clock and a sandbox factory."""

from __future__ import annotations

import html
import re
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


_INPUT = re.compile(r"<input\b([^>]*)>")
_ATTR = re.compile(r'([\w-]+)(?:="([^"]*)"|=(\S+))?')


def form_fields(page: str, choice: str) -> tuple[dict[str, str], list[str]]:
    """(hidden fields, values of the radio buttons or check boxes named `choice`) of a form.

    How tests drive the sandbox's consent pages the way a browser submits them.
    """
    hidden: dict[str, str] = {}
    choices: list[str] = []
    for match in _INPUT.finditer(page):
        attrs = {
            m.group(1): html.unescape(m.group(2) or m.group(3) or "")
            for m in _ATTR.finditer(match.group(1))
        }
        if attrs.get("type") == "hidden":
            hidden[attrs["name"]] = attrs.get("value", "")
        elif attrs.get("type") in ("radio", "checkbox") and attrs.get("name") == choice:
            choices.append(attrs["value"])
    return hidden, choices
