"""A replica process killed while it owns connectors: the other takes them all, none owned twice.

Two replica processes share one PostgreSQL store; the one holding connectors is killed
(SIGKILL), the other takes them all at its next claim, and no two processes ever claim one
connector at once. Each process claims in a loop and appends every claim to its own file: a
sequence number, the moments (CLOCK_MONOTONIC, shared by the machine's processes) the claim
began and returned, and what it returned. A process counts as owning a connector from the
return of a claim that listed it to the start of its next claim (or its death): those spans,
across processes, must never meet. The kill is checked to have landed while the victim held
connectors (its session held their locks on the server a moment before, and its last claim
listed them).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from arsync.clock import FrozenClock
from arsync.store import open_store
from arsync.store.leases import lock_classes
from tests.conftest import POSTGRES_URL

CONNECTORS = 200
#: seconds between one process's claims
ROUND = 0.1

REPLICA = """
import json, sys, time
from datetime import timedelta
from arsync.clock import SystemClock
from arsync.store import open_store
from arsync.store.leases import Replica

url, name, count, log, pause = sys.argv[1:]
replica = Replica(open_store(url, SystemClock()), name=name, lease=timedelta(seconds=10))
replica.start()
ids = range(1, int(count) + 1)
with open(log, "a") as out:
    seq = 0
    while True:
        began = time.monotonic()
        owned = replica.claim(ids)
        returned = time.monotonic()
        record = {"seq": seq, "began": began, "returned": returned, "owned": sorted(owned)}
        out.write(json.dumps(record) + "\\n")
        out.flush()
        seq += 1
        time.sleep(float(pause))
"""


@dataclass(frozen=True)
class Claim:
    seq: int
    began: float
    returned: float
    owned: frozenset[int]


@dataclass
class Process:
    name: str
    log: Path
    popen: subprocess.Popen[bytes]
    died: float | None = None

    def claims(self) -> list[Claim]:
        found = []
        for line in self.log.read_text().splitlines() if self.log.exists() else []:
            try:
                r = json.loads(line)
            except ValueError:  # the last line of a process killed while writing it
                continue
            found.append(Claim(r["seq"], r["began"], r["returned"], frozenset(r["owned"])))
        assert [c.seq for c in found] == list(range(len(found))), f"{self.name} lost a claim"
        return found

    def last(self) -> Claim | None:
        claims = self.claims()
        return claims[-1] if claims else None


def wait_for(what: str, ready: Callable[[], bool], seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        assert time.monotonic() < deadline, f"waited {seconds} s for {what}"
        time.sleep(0.02)


def spans(process: Process, end: float) -> dict[int, list[tuple[float, float]]]:
    """Per connector, when `process` took itself to own it: from a claim's return to the start
    of its next claim, the last one until `end`."""
    claims = process.claims()
    owned: dict[int, list[tuple[float, float]]] = {}
    for claim, following in zip(claims, [*claims[1:], None], strict=True):
        until = following.began if following is not None else end
        for connector in claim.owned:
            owned.setdefault(connector, []).append((claim.returned, until))
    return owned


def overlaps(
    a: dict[int, list[tuple[float, float]]], b: dict[int, list[tuple[float, float]]]
) -> list[tuple[int, tuple[float, float], tuple[float, float]]]:
    return [
        (connector, x, y)
        for connector in a.keys() & b.keys()
        for x in a[connector]
        for y in b[connector]
        if x[0] < y[1] and y[0] < x[1]
    ]


def test_the_overlap_check_sees_an_overlap() -> None:
    assert overlaps({1: [(0.0, 2.0)]}, {1: [(1.0, 3.0)]}) == [(1, (0.0, 2.0), (1.0, 3.0))]
    assert overlaps({1: [(0.0, 1.0)]}, {1: [(1.0, 3.0)], 2: [(0.0, 3.0)]}) == []


@pytest.fixture
def schema() -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


@pytest.fixture
def admin() -> Iterator[Engine]:
    engine = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def backend(admin: Engine, name: str) -> int | None:
    with admin.connect() as conn:
        pid = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :n"),
            {"n": f"arsync run {name}"},
        ).scalar()
    return None if pid is None else int(pid)


def locks_held(admin: Engine, pid: int, classid: int) -> int:
    with admin.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE pid = :p AND locktype = 'advisory' "
                    "AND objsubid = 2 AND classid::int8 = :c AND granted"
                ),
                {"p": pid, "c": classid},
            ).scalar_one()
        )


def test_sigkill_of_the_owner_hands_every_connector_to_the_survivor(
    tmp_path: Path, schema: str, admin: Engine
) -> None:
    url = f"{POSTGRES_URL}?options=-csearch_path%3D{schema}"
    open_store(url, FrozenClock(datetime(2026, 11, 24, tzinfo=UTC))).close()  # migrated once
    everything = frozenset(range(1, CONNECTORS + 1))
    tag = uuid.uuid4().hex[:8]
    processes: list[Process] = []

    def launch(role: str) -> Process:
        name = f"{role}-{tag}"
        log = tmp_path / f"{role}.jsonl"
        popen = subprocess.Popen(
            [sys.executable, "-c", REPLICA, url, name, str(CONNECTORS), str(log), str(ROUND)],
            stdin=subprocess.DEVNULL,
        )
        process = Process(name, log, popen)
        processes.append(process)
        return process

    try:
        victim = launch("victim")
        wait_for("the victim to own everything", lambda: _owns(victim, everything))
        survivor = launch("survivor")
        # the victim gives back what is beyond its share, the survivor takes it
        wait_for(
            "a split between the two",
            lambda: _split(victim, survivor, everything),
        )

        victim_pid = backend(admin, victim.name)
        assert victim_pid is not None
        held = locks_held(admin, victim_pid, lock_classes(schema)[0])
        assert held == CONNECTORS // 2, "the victim's session should hold its half"
        os.kill(victim.popen.pid, signal.SIGKILL)
        victim.died = time.monotonic()
        victim.popen.wait(timeout=10)
        last = victim.last()
        assert last is not None
        assert len(last.owned) == CONNECTORS // 2, "the kill must land while the victim owns"

        # its session ends with its socket; from then on, one claim of the survivor takes all
        wait_for("the victim's session to end", lambda: backend(admin, victim.name) is None)
        gone = time.monotonic()
        wait_for(
            "a survivor's claim begun after the victim's session ended",
            lambda: any(c.began > gone for c in survivor.claims()),
        )
        first_after = next(c for c in survivor.claims() if c.began > gone)
        assert first_after.owned == everything
        took_all = min(c.returned for c in survivor.claims() if c.owned == everything)
        assert took_all > victim.died
        assert took_all - victim.died < 2.0, "taken over within a round or two"
        wait_for(
            "five more claims of the survivor",
            lambda: len(survivor.claims()) >= first_after.seq + 6,
        )
        assert all(c.owned == everything for c in survivor.claims()[first_after.seq :])
    finally:
        for process in processes:
            if process.popen.poll() is None:
                process.popen.send_signal(signal.SIGKILL)
                process.popen.wait()
    end = time.monotonic()

    assert victim.died is not None
    found = overlaps(spans(victim, victim.died), spans(survivor, end))
    assert found == [], f"two processes owned a connector at once: {found[:5]}"
    # the victim owned everything, then gave half back: spans that could have met were there
    assert len(victim.claims()[0].owned) == CONNECTORS


def _owns(process: Process, connectors: frozenset[int]) -> bool:
    last = process.last()
    return last is not None and last.owned == connectors


def _split(a: Process, b: Process, connectors: frozenset[int]) -> bool:
    first, second = a.last(), b.last()
    return (
        first is not None
        and second is not None
        and len(first.owned) == len(second.owned) == len(connectors) // 2
        and first.owned | second.owned == connectors
    )
