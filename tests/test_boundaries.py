"""The layout's rules, read from the source: one clock, one SQL boundary, no platform in the core.

- Time: the engine reads "now", intervals and waits only from the injected Clock
  (`arsync/clock.py`); only the sandbox, which simulates the platforms' own clocks, and
  clock.py itself may touch the machine's clock.
- SQL: only `arsync/store/` speaks to the database (SQLAlchemy, Alembic, sqlite3, psycopg).
- The core (sync, runtime, store, status, commands) never imports a platform package, and only
  the demo and the CLI's `sandbox` command import the sandbox.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "arsync"

#: the machine's clock, however it is reached
WALL_CLOCK = {
    ("datetime", "now"),
    ("datetime", "utcnow"),
    ("datetime", "today"),
    ("date", "today"),
    ("time", "time"),
    ("time", "time_ns"),
    ("time", "monotonic"),
    ("time", "monotonic_ns"),
    ("time", "perf_counter"),
    ("time", "perf_counter_ns"),
    ("time", "sleep"),
}
DATABASE_MODULES = ("sqlalchemy", "alembic", "sqlite3", "psycopg")


def modules(*, outside: tuple[str, ...]) -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SRC.rglob("*.py")):
        relative = path.relative_to(SRC).as_posix()
        if any(relative == o or relative.startswith(o) for o in outside):
            continue
        yield relative, ast.parse(path.read_text(), filename=relative)


def wall_clock_reads(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in WALL_CLOCK:
                found.append(f"line {node.lineno}: {node.value.id}.{node.attr}")
        elif isinstance(node, ast.ImportFrom) and node.module == "time":
            for alias in node.names:
                if ("time", alias.name) in WALL_CLOCK:
                    found.append(f"line {node.lineno}: from time import {alias.name}")
    return found


def imports(tree: ast.Module) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
    return names


def test_the_scan_sees_what_it_looks_for() -> None:
    tree = ast.parse(
        "import time\nfrom time import sleep\nfrom datetime import datetime\n"
        "x = datetime.now()\ny = time.monotonic\n"
    )
    assert len(wall_clock_reads(tree)) == 3
    assert "sqlalchemy.orm" in imports(ast.parse("from sqlalchemy.orm import Session"))


def test_the_engine_reads_time_only_from_the_injected_clock() -> None:
    offenders = {
        name: found
        for name, tree in modules(outside=("sandbox/", "clock.py"))
        if (found := wall_clock_reads(tree))
    }
    assert offenders == {}, f"read the injected Clock instead: {offenders}"


def test_only_the_store_speaks_sql() -> None:
    offenders = {
        name: [m for m in imports(tree) if m.split(".")[0] in DATABASE_MODULES]
        for name, tree in modules(outside=("store/",))
    }
    offenders = {name: found for name, found in offenders.items() if found}
    assert offenders == {}, f"go through arsync.store's repositories: {offenders}"


@pytest.mark.parametrize(
    "core",
    [
        "sync.py",
        "runtime.py",
        "status.py",
        "commands.py",
        "domain.py",
        "escalation/",
        "clock.py",
        "store/",
        "connectors/base.py",
        "connectors/http.py",
        "connectors/governor.py",
        "connectors/oauth/",
    ],
)
def test_the_core_never_imports_a_platform_or_the_sandbox(core: str) -> None:
    for name, tree in modules(outside=()):
        if not (name == core or name.startswith(core)):
            continue
        platforms = [
            m
            for m in imports(tree)
            if m.startswith(("arsync.connectors.quickbooks", "arsync.connectors.xero"))
            or m.startswith("arsync.sandbox")
        ]
        assert platforms == [], f"{name} imports {platforms}"


def test_the_store_does_not_reach_back_into_connectors() -> None:
    for name, tree in modules(outside=()):
        if name.startswith("store/"):
            back = [m for m in imports(tree) if m.startswith("arsync.connectors")]
            assert back == [], f"{name} imports {back}: the store stands below the connectors"


PURE = (
    "escalation/policy.py",
    "escalation/calendar.py",
    "escalation/snapshot.py",
    "escalation/planner.py",
    "escalation/zones.py",
)


@pytest.mark.parametrize("pure", PURE)
def test_the_planner_and_its_inputs_are_pure(pure: str) -> None:
    """No store, no network, no clock: the planner reads only its snapshot, policy and now."""
    tree = ast.parse((SRC / pure).read_text(), filename=pure)
    impure = [
        m
        for m in imports(tree)
        if m.startswith(("arsync.store", "arsync.connectors", "arsync.clock", "arsync.runtime"))
        or m.split(".")[0] in {"httpx", "sqlalchemy", "socket", "time", "os", "subprocess"}
    ]
    assert impure == [], f"{pure} imports {impure}"
