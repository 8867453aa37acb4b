"""`arsync run` as a process: systemd's notify socket, 100 days on the sandbox, signals.

The daemon runs as the real console script against a sandbox served over loopback HTTP, with
`$NOTIFY_SOCKET` pointing at a datagram socket this test reads, as systemd's would be. The test
moves the sandbox's clock a day at a time and waits for the daemon to say (STATUS=) that it
is idle at the new moment; at the end every email and note the policy called for is in the
sandbox's ledger exactly once. On the way: a second daemon on the same SQLite store is
refused; SIGHUP with a broken policy keeps the daemon on the old one; SIGTERM while a reminder
is in flight (the sandbox holds the reply) exits 0 within the bound, and so does one whose
reply outlasts the bound; each restart finishes the work with no duplicate.
"""

from __future__ import annotations

import collections
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from arsync.config import load
from arsync.logs import configure
from arsync.runtime import Runtime
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sandbox.faults import FaultKind, FaultRule
from arsync.sandbox.mail import MailSink
from arsync.store.states import OutboxState
from arsync.writeback.dispatch import marker
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_sync_e2e import SECRETS, write_home
from tests.e2e.test_writeback_e2e import Company, World, _raise
from tests.support import clock_of, make_sandbox

#: Tue 24 Nov 2026, 18:00 UTC: 18:00 in London, 10:00 in Los Angeles (both inside 08:00-21:00)
START = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
DAYS = 100
INVOICES = {
    "thirty": (date(2026, 10, 20), Decimal("1200.00")),
    "soon": (date(2026, 11, 27), Decimal("300.00")),
    "sixty": (date(2026, 9, 20), Decimal("724.64")),
    # its stages fall inside the hundred days: 27 Nov, 30 Dec, 29 Jan, 1 Mar (28 Feb a Sunday)
    "later": (date(2026, 11, 30), Decimal("88.10")),
}
ARSYNC = [str(Path(sys.executable).with_name("arsync"))]
#: real seconds to wait for the daemon at any one point (generous: CI machines are slow)
PATIENCE = 120.0
STOP_WITHIN = 3
#: the firm's owner, who gets the daily digest
OWNER = "owner@books.example"


class Systemd:
    """The notify socket's other end: what the daemon told systemd, in order."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.messages: list[dict[str, str]] = []

    def receive(self, timeout: float) -> dict[str, str] | None:
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(65536)
        except (TimeoutError, BlockingIOError):  # nothing came (a timeout of 0 does not block)
            return None
        fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
        self.messages.append(fields)
        return fields

    def wait_for(self, key: str, pattern: str = "", *, process: subprocess.Popen[str]) -> str:
        """The next message whose `key` matches `pattern` (a regex); fails if the daemon dies."""
        for _ in range(int(PATIENCE * 10)):
            got = self.receive(0.1)
            if got is not None and key in got and re.search(pattern, got[key]):
                return got[key]
            if got is None and process.poll() is not None:
                pytest.fail(f"arsync run exited ({process.returncode}) waiting for {key}")
        pytest.fail(f"no {key} matching {pattern!r} from arsync run; last: {self.messages[-3:]}")

    def close(self) -> None:
        self.sock.close()


@dataclass
class Service:
    world: World
    tmp: Path
    mail: MailSink
    process: subprocess.Popen[str] | None = None
    systemd: Systemd | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)

    def start(self) -> None:
        self.starts += 1
        self.systemd = Systemd(self.tmp / f"notify-{self.starts}.sock")
        env = {
            **os.environ,
            **SECRETS,
            "NOTIFY_SOCKET": str(self.systemd.path),
            "WATCHDOG_USEC": "2000000",
        }
        env.pop("WATCHDOG_PID", None)
        log = (self.tmp / f"daemon-{self.starts}.log").open("w")
        self.process = subprocess.Popen(
            [*ARSYNC, "run", "--home", str(self.world.home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.systemd.wait_for("READY", "1", process=self.process)

    def idle_at(self, moment: datetime) -> None:
        """Wait for the daemon to say it is idle at `moment` (or later)."""
        assert self.systemd is not None and self.process is not None
        for _ in range(int(PATIENCE * 10)):
            status = self.systemd.wait_for("STATUS", "idle at", process=self.process)
            seen = re.search(r"idle at (\S+ \S+) UTC", status)
            assert seen is not None
            at = datetime.strptime(seen[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
            if at >= moment:
                return
        pytest.fail(f"arsync run never went idle at {moment}")

    def stop(self) -> int:
        assert self.process is not None and self.systemd is not None
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(timeout=STOP_WITHIN + PATIENCE)
        self.exits.append(code)
        self.systemd.close()
        return code

    def health_url(self) -> str:
        """Where this start serves /healthz and /metrics (port 0: the daemon logged it)."""
        text = (self.tmp / f"daemon-{self.starts}.log").read_text()
        found = re.search(r'"url": "(http://127\.0\.0\.1:\d+)/healthz"', text)
        assert found, text[-2000:]
        return found[1]

    def log(self) -> str:
        return "\n".join(
            (self.tmp / f"daemon-{n}.log").read_text() for n in range(1, self.starts + 1)
        )


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    sandbox = make_sandbox(
        customers=10,
        invoices=0,
        start=START - timedelta(days=1),
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    tmp = tmp_path_factory.mktemp("daemon")
    with (
        pytest.MonkeyPatch.context() as env,
        SandboxServer(sandbox) as server,
        MailSink() as mail,
    ):
        for key, value in SECRETS.items():
            env.setenv(key, value)
        configure(level="warning", fmt="json")
        home = tmp / "home"
        write_home(home, server.url, f"sqlite:///{tmp / 'arsync.db'}")
        with (home / "config" / "arsync.toml").open("a") as settings:
            settings.write(
                f'[daemon]\nlisten = "127.0.0.1:0"\nstop_within = "{STOP_WITHIN}s"\n'
                f'[mail]\nhost = "127.0.0.1"\nport = {mail.port}\nsecurity = "none"\n'
                'from_address = "accounts@books.example"\n'
                f'[digest]\nto = "{OWNER}"\nat = "08:00"\n'
            )
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
        service = Service(world, tmp, mail)
        try:
            yield service
        finally:
            if service.process is not None and service.process.poll() is None:
                service.process.kill()
                service.process.wait()


def in_flight(sandbox: Sandbox, rule_id: int) -> bool:
    return any(r.id == rule_id and r.fired for r in sandbox.faults.rules)


def test_a_hundred_days_of_the_daemon(service: Service) -> None:
    world, sandbox = service.world, service.world.sandbox
    service.start()
    assert service.process is not None and service.systemd is not None
    service.idle_at(START)
    # a second daemon on the same SQLite store is refused, saying who serves it
    second = subprocess.run(
        [*ARSYNC, "run", "--home", str(world.home)],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={**os.environ, **SECRETS},
        check=False,
    )
    assert second.returncode == 4, second.stderr
    assert "already serves the SQLite store" in second.stderr
    assert f"pid {service.process.pid}" in second.stderr
    # the watchdog is fed from the loop's own beat
    service.systemd.wait_for("WATCHDOG", "1", process=service.process)
    policies = world.home / "config" / "policies"
    day = 0
    while day < DAYS:
        day += 1
        moment = sandbox.clock.set(START + timedelta(days=day))
        if day == 10:
            # a broken policy: SIGHUP keeps the daemon on the old one, and it says why
            policies.mkdir(parents=True, exist_ok=True)
            (policies / "standard.toml").write_text("[[stages]]\nname = 3\n")
            service.process.send_signal(signal.SIGHUP)
            refused = service.systemd.wait_for("STATUS", "reload refused", process=service.process)
            assert "standard" in refused
            (policies / "standard.toml").unlink()
        if day == DAYS - 2:
            # QuickBooks revokes arsync's grant: that connector is down and said so, once;
            # Xero goes on
            sandbox.revoke_grants("qbo")
        if day in (36, 66):
            # SIGTERM while the "later" invoice's reminder is in flight: the sandbox holds the
            # email's reply (within the bound on day 36, past it on day 66); the daemon exits
            # 0 either way
            delay = 1.0 if day == 36 else STOP_WITHIN + 3.0
            rule = sandbox.faults.add(
                FaultRule(
                    FaultKind.SLOW,
                    platform="xero",
                    endpoint="POST */Email",
                    params={"delay": delay},
                    times=1,
                )
            )
            sent = sandbox.ledger.count(kind="email_sent", platform="xero")
            for _ in range(int(PATIENCE * 20)):
                if in_flight(sandbox, rule.id) or service.process.poll() is not None:
                    break
                service.systemd.receive(0.05)
            assert in_flight(sandbox, rule.id), "the SIGTERM would not land mid-call"
            assert sandbox.ledger.count(kind="email_sent", platform="xero") == sent, (
                "landed after the email"
            )
            assert service.stop() == 0
            # the platform plays out the held request (performed, or dropped with its
            # client) before the daemon starts again; the restart settles it under its key
            time.sleep(delay)
            service.start()
        service.idle_at(moment)
    assert "1 down (books-qbo:" in service.systemd.messages[-1].get("STATUS", ""), (
        service.systemd.messages[-3:]
    )
    check_health(service, down="books-qbo")
    assert service.stop() == 0
    assert service.exits == [0, 0, 0]
    check_exactly_once(world)
    check_digests(service)
    text = service.log()
    assert '"event": "cycle"' in text
    # the outage is logged once, though the connector stayed down for two more cycles
    down = [line for line in text.splitlines() if '"connector down"' in line]
    assert len(down) == 1 and "books-qbo" in down[0], down
    # no token or secret the sandbox issued, nor the clients' secrets, reached the log
    issued = sandbox.issued_secrets()
    assert len(issued) > 10
    for secret in [*issued, *SECRETS.values()]:
        assert secret not in text


def check_digests(service: Service) -> None:
    """One digest a day for each firm time zone (London, Los Angeles), never two."""
    digests = [m for m in service.mail.received() if OWNER in m.recipients]
    ids = collections.Counter(m.message["Message-ID"] for m in digests)
    assert all(n == 1 for n in ids.values()), ids.most_common(2)
    # every day from the first morning on, in both zones
    assert len(ids) >= 2 * DAYS, len(ids)
    assert any("sent" in m.subject for m in digests), [m.subject for m in digests[:5]]


def check_health(service: Service, *, down: str) -> None:
    url = service.health_url()
    with httpx.Client(timeout=30) as client:
        healthz = client.get(f"{url}/healthz")
        metrics = client.get(f"{url}/metrics")
    # a connector whose grant died needs a person (arsync connect), not a restart: reported
    # in its state, while health judges the connectors that can sync
    assert healthz.status_code == 200, healthz.text
    state = {
        sample.labels["state"]
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "arsync_connector_state"
        and sample.labels.get("connector") == down
        and sample.value == 1
    }
    assert state == {"reconnect_needed"}, state
    assert metrics.status_code == 200
    done = {
        sample.labels["connector"]: sample.value
        for family in text_string_to_metric_families(metrics.text)
        for sample in family.samples
        if sample.name == "arsync_outbox_actions" and sample.labels.get("state") == "done"
    }
    assert set(done) == {"books-qbo", "books-xero"}
    assert all(n > 0 for n in done.values())


def check_exactly_once(world: World) -> None:
    sandbox = world.sandbox
    emails = collections.Counter(
        e.idempotency_key for e in sandbox.ledger.entries(kind="email_sent")
    )
    assert emails and all(n == 1 for n in emails.values()), emails.most_common(3)
    notes = [str(e.detail) for e in sandbox.ledger.entries(kind="note_added")]
    runtime = Runtime.open(world.config, clock_of(sandbox))
    try:
        stages: dict[str, set[str]] = {}
        for company in (world.xero, world.qbo):
            with runtime.store.reading() as tx:
                row = tx.connectors.by_name(company.name)
                assert row is not None
                rows = tx.outbox.of(row.id)
            for r in rows:
                if r.kind == "email":
                    assert r.state in (OutboxState.DONE, OutboxState.SKIPPED), r
                    assert (emails[r.id] == 1) == (r.state is OutboxState.DONE), r
                    if r.state is OutboxState.DONE:
                        stages.setdefault(f"{company.name}:{r.invoice_id}", set()).add(r.stage)
                if r.kind == "note" and r.state is OutboxState.DONE:
                    assert sum(f"ref {marker(r.id)}" in n for n in notes) == 1, r
            # the unpaid invoices went through every stage the standard policy emails
            sixty = stages[f"{company.name}:{company.ids['sixty']}"]
            assert {"overdue-90"} <= sixty, sixty
            later = stages[f"{company.name}:{company.ids['later']}"]
            assert {"overdue-30", "overdue-60", "overdue-90"} <= later, later
        # (QuickBooks' company is Californian: its friendly reminder fell on the day after
        # Thanksgiving, a state holiday, and then on the due date itself, too late for it)
        assert "due-soon" in stages[f"{world.xero.name}:{world.xero.ids['later']}"]
    finally:
        runtime.close()


def test_a_home_with_no_connector_runs_and_says_what_to_add(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "config").mkdir(parents=True)
    (home / "config" / "arsync.toml").write_text('[daemon]\nlisten = ""\n')
    systemd = Systemd(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(systemd.path)}
    env.pop("WATCHDOG_USEC", None)
    with (tmp_path / "daemon.log").open("w") as log:
        process = subprocess.Popen(
            [*ARSYNC, "run", "--home", str(home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
    try:
        systemd.wait_for("READY", "1", process=process)
        # systemctl status shows what to do, not "0 connector(s)"
        assert systemd.messages[-1]["STATUS"] == (
            "no connector to serve: add connectors/NAME.toml (or set enabled = true in one), "
            "link it with `arsync connect NAME`, then reload (systemctl reload arsync)"
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=STOP_WITHIN + PATIENCE) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        systemd.close()
    said = [line for line in (tmp_path / "daemon.log").read_text().splitlines() if line]
    warned = [line for line in said if '"event": "no connector to serve"' in line]
    assert len(warned) == 1 and "arsync connect NAME" in warned[0], said
