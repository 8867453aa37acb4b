"""Two `arsync run` replicas on one PostgreSQL store, one SIGKILLed 20 times over a month.

Both replicas are the real console script, each with its own systemd notify socket, serving
the two sandbox companies on one PostgreSQL schema: each owns one connector through the lease
(a PostgreSQL advisory lock), and takes the other's when it dies. The sandbox's clock walks a
month a day at a time; at twenty chosen steps the victim is killed with SIGKILL, most
of them while it says (STATUS=) that it is working, at a random moment in its cycle; the other
replica takes its connector over and finishes its work, and the victim is started again at the
next step and takes its share back. Where each kill landed is recorded: after READY, serving
connectors, working or idle.

At the end every email and note is in the sandbox's ledger at most once, every action the
outbox holds is settled (done, or skipped for a reason of the policy's), and the same month
walked by one undisturbed `arsync run --once` per step on a twin sandbox did exactly the same
things: every due effect exactly once, none missing.
"""

from __future__ import annotations

import collections
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from arsync.config import load
from arsync.logs import configure
from arsync.runtime import Runtime
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.store.states import OutboxState
from arsync.writeback.dispatch import marker
from arsync.writeback.run import run_once
from tests.conftest import postgres_schema
from tests.e2e.test_daemon_e2e import Systemd
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_sync_e2e import SECRETS, write_home
from tests.e2e.test_writeback_e2e import Company, World, _raise
from tests.support import clock_of, make_sandbox

#: Tue 24 Nov 2026, 18:00 UTC
START = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
STEP = timedelta(days=1)
STEPS = 31  # a month, a day at a time (at 18:00 UTC: inside both companies' hours)
KILLS = 20
#: the stages of these fall inside the month (the standard policy: -3, 30, 60, 90 days)
INVOICES = {
    "a": (date(2026, 10, 25), Decimal("410.00")),  # 30 days on 24 Nov, 60 on 24 Dec
    "b": (date(2026, 12, 2), Decimal("95.50")),  # friendly reminder about 29 Nov
    "c": (date(2026, 9, 28), Decimal("1200.00")),  # 60 days on 27 Nov
    "d": (date(2026, 11, 5), Decimal("333.33")),  # 30 days on 5 Dec
    "e": (date(2026, 10, 10), Decimal("780.00")),  # 60 days on 9 Dec
}
ARSYNC = [str(Path(sys.executable).with_name("arsync"))]
PATIENCE = 120.0


def build(tmp: Path, sandbox: Sandbox, server_url: str, store_url: str) -> World:
    home = tmp / "home"
    write_home(home, server_url, store_url)
    with (home / "config" / "arsync.toml").open("a") as settings:
        settings.write('[daemon]\nlisten = ""\nstop_within = "3s"\nlease = "10s"\n')
    connect(home, "books-xero")
    connect(home, "books-qbo")
    tenants = {t.platform: t.tenant_id for t in sandbox.tenants()}
    xero = Company("books-xero", "xero", tenants["xero"])
    qbo = Company("books-qbo", "qbo", tenants["qbo"])
    org = sandbox.xero.org(xero.tenant)
    british = [c for c in org.contact_list if c.currency == "GBP" and c.email]
    xero.customers = dict(zip(INVOICES, [c.contact_id for c in british], strict=False))
    company = sandbox.qbo.company(qbo.tenant)
    with_email = [str(i) for i, c in sorted(company.customers.items()) if c.email]
    qbo.customers = dict(zip(INVOICES, with_email, strict=False))
    world = World(sandbox, load(home), home, xero, qbo)
    _raise(world, xero, INVOICES)
    _raise(world, qbo, INVOICES)
    sandbox.clock.set(START)
    return world


def new_sandbox() -> Sandbox:
    return make_sandbox(
        customers=10,
        invoices=0,
        start=START - timedelta(days=1),
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )


@dataclass
class Process:
    """One replica: the `arsync run` process, its notify socket and what it last said."""

    name: str
    world: World
    tmp: Path
    starts: int = 0
    process: subprocess.Popen[str] | None = None
    systemd: Systemd | None = None
    status: str = ""

    def start(self) -> None:
        self.starts += 1
        self.systemd = Systemd(self.tmp / f"{self.name}-{self.starts}.sock")
        env = {**os.environ, **SECRETS, "NOTIFY_SOCKET": str(self.systemd.path)}
        log = (self.tmp / f"{self.name}-{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            [*ARSYNC, "run", "--home", str(self.world.home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.systemd.wait_for("READY", "1", process=self.process)
        self.status = ""

    def listen(self, timeout: float) -> None:
        assert self.systemd is not None
        got = self.systemd.receive(timeout)
        while got is not None:
            if "STATUS" in got:
                self.status = got["STATUS"]
            got = self.systemd.receive(0)

    def idle_at(self) -> datetime | None:
        seen = re.search(r"idle at (\S+ \S+) UTC", self.status)
        if seen is None:
            return None
        return datetime.strptime(seen[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)

    def serving(self) -> int:
        seen = re.search(r"serving (\d+)", self.status)
        return int(seen[1]) if seen else 0

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> int:
        assert self.process is not None and self.systemd is not None
        self.process.send_signal(signal.SIGKILL)
        code = self.process.wait(timeout=PATIENCE)
        self.systemd.close()
        return code

    def stop(self) -> int:
        assert self.process is not None and self.systemd is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=PATIENCE)
        self.systemd.close()
        return code


def settled(replicas: list[Process], moment: datetime) -> None:
    """Wait until every replica is idle at `moment` and between them they serve both."""
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        for r in replicas:
            r.listen(0.05)
            if not r.alive():
                pytest.fail(f"replica {r.name} died: see {r.tmp}/{r.name}-{r.starts}.log")
        idle = [r.idle_at() for r in replicas]
        if all(at is not None and at >= moment for at in idle) and (
            sum(r.serving() for r in replicas) == 2
        ):
            return
    pytest.fail(f"replicas never settled at {moment}: {[r.status for r in replicas]}")


@pytest.fixture
def schema() -> Iterator[str]:
    with postgres_schema() as url:
        yield url


@dataclass
class Landing:
    step: int
    working: bool
    serving: int
    status: str


@dataclass
class Effects:
    emails: collections.Counter[str] = field(default_factory=collections.Counter)
    done: set[tuple[str, str, str, str]] = field(default_factory=set)


def effects(world: World) -> Effects:
    """What the ledger and the outbox say was done, by (connector, invoice label, stage, kind),
    checking on the way that each email and note is in the ledger exactly once."""
    sandbox = world.sandbox
    found = Effects()
    found.emails.update(e.idempotency_key or "" for e in sandbox.ledger.entries(kind="email_sent"))
    notes = [str(e.detail) for e in sandbox.ledger.entries(kind="note_added")]
    runtime = Runtime.open(world.config, clock_of(sandbox))
    try:
        for company in (world.xero, world.qbo):
            labels = {v: k for k, v in company.ids.items()}
            with runtime.store.reading() as tx:
                row = tx.connectors.by_name(company.name)
                assert row is not None
                rows = tx.outbox.of(row.id)
            for r in rows:
                if r.kind not in ("email", "note"):
                    continue
                assert r.state is OutboxState.DONE, (r.kind, r.stage, r.state, r.reason)
                if r.kind == "email":
                    assert found.emails[r.id] == 1, r
                else:
                    assert sum(f"ref {marker(r.id)}" in n for n in notes) == 1, r
                label = labels.get(r.invoice_id or "", r.invoice_id or "")
                found.done.add((company.name, label, r.stage, r.kind))
    finally:
        runtime.close()
    assert all(n == 1 for n in found.emails.values()), found.emails.most_common(3)
    return found


def test_two_replicas_one_killed_twenty_times_over_a_month(tmp_path: Path, schema: str) -> None:
    configure(level="warning", fmt="json")
    chance = random.Random(20261124)
    kill_steps = sorted(chance.sample(range(2, STEPS - 3), KILLS))
    landings: list[Landing] = []
    sandbox = new_sandbox()
    with pytest.MonkeyPatch.context() as env, SandboxServer(sandbox) as server:
        for key, value in SECRETS.items():
            env.setenv(key, value)
        world = build(tmp_path / "chaos", sandbox, server.url, schema)
        tmp = tmp_path / "chaos"
        steady, victim = Process("steady", world, tmp), Process("victim", world, tmp)
        replicas = [steady, victim]
        try:
            steady.start()
            victim.start()
            settled(replicas, START)
            for step in range(1, STEPS + 1):
                if not victim.alive():
                    victim.start()  # back a step after its kill: it takes its share again
                moment = sandbox.clock.set(START + step * STEP)
                if step in kill_steps:
                    # wait for the victim to be at work on this step (once it has its share back
                    # after a restart), then kill it at a random moment of its cycle (or, if it
                    # had nothing to do, once it is idle serving its connector)
                    deadline = time.monotonic() + PATIENCE
                    while time.monotonic() < deadline:
                        victim.listen(0.01)
                        at = victim.idle_at()
                        if "working" in victim.status or (
                            at is not None and at >= moment and victim.serving()
                        ):
                            break
                    time.sleep(chance.uniform(0, 0.15))
                    victim.listen(0)
                    landings.append(
                        Landing(step, "working" in victim.status, victim.serving(), victim.status)
                    )
                    assert victim.kill() == -signal.SIGKILL
                    # the steady replica takes the dead one's connector over and does its work
                    settled([steady], moment)
                    continue
                settled(replicas, moment)
            assert steady.stop() == 0
            if victim.alive():
                assert victim.stop() == 0
        finally:
            for r in replicas:
                if r.alive():
                    assert r.process is not None
                    r.process.kill()
        chaos = effects(world)
        log = "\n".join(f.read_text() for f in sorted(tmp.glob("*.log")))
    # where the kills landed: every one after READY, most while the victim was at work, and
    # the victim served connectors then (it took them back after each restart)
    assert len(landings) == KILLS
    working = [k for k in landings if k.working]
    assert len(working) >= KILLS // 2, [k.status for k in landings]
    assert sum(k.serving > 0 for k in landings) >= KILLS // 2, [k.status for k in landings]
    # the steady replica took the victim's connector over, again and again
    takeovers = [
        line
        for line in (tmp / "steady-1.log").read_text().splitlines()
        if '"connectors served"' in line and '"taken": ["' in line
    ]
    assert len(takeovers) >= KILLS // 2, len(takeovers)
    # no token or secret the sandbox issued (tokens refreshed by both replicas, a day at a
    # time, with each restart), nor the clients' secrets, reached what they printed
    issued = sandbox.issued_secrets()
    assert len(issued) > 2 * STEPS
    for secret in [*issued, *SECRETS.values()]:
        assert secret not in log

    # the same month, undisturbed, one `run --once` per step, on a twin sandbox
    twin = new_sandbox()
    with pytest.MonkeyPatch.context() as env, SandboxServer(twin) as server:
        for key, value in SECRETS.items():
            env.setenv(key, value)
        calm = build(tmp_path / "calm", twin, server.url, f"sqlite:///{tmp_path / 'calm.db'}")
        run_once(calm.config, [], clock=clock_of(twin))
        for step in range(1, STEPS + 1):
            twin.clock.set(START + step * STEP)
            for report in run_once(calm.config, [], clock=clock_of(twin)):
                assert report.error is None, report.error
        expected = effects(calm)
    assert chaos.done == expected.done
    stages = {(c, s) for c, _, s, _ in expected.done}
    assert {("books-xero", "overdue-30"), ("books-qbo", "overdue-60")} <= stages
    assert len(chaos.emails) == len(expected.emails)
