"""Two `arsync run` replicas on one PostgreSQL store: how soon the survivor of a SIGKILL takes over.

A sandbox process serves N small companies (default 50: half QuickBooks Online, half Xero, 5
customers and 10 invoices each) on the machine's clock. One arsync home links them all (as
bench/daemon_scale.py does: arsync's own headless consent, the person's "Allow" posted to the
sandbox's consent form) to a store in a fresh schema of the local PostgreSQL
(127.0.0.1:5432, database `test`, trust auth; the schema is dropped at the end), with
`[daemon] lease = "20s"` and each connector's `sync.interval` at its minimum, one minute, so a
connector taken over is due at once. Two `arsync run` processes serve that home and split the
connectors. Then, K times (default 5): SIGKILL one of them while it owns its share, and read
from the survivor's JSON log when it owned every connector ("connectors served") and when it
had ended a cycle of each connector the dead one owned ("cycle" lines); then start a new
replica in the dead one's place, wait for the split and for every connector to be due again,
and kill the other one next time. Every moment is the machine's (time.time() at the kill, the
log lines' timestamps).

    .venv/bin/python bench/replica_takeover.py [--connectors 50] [--kills 5] [--lease 20s]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, text

from bench.daemon_scale import SECRETS, connector_name, link_all, revision, serve, tenants
from bench.daemon_scale import write_home as write_scale_home
from bench.served import sandbox_process

POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
#: real seconds to wait for any one thing before giving up
PATIENCE = 180.0


@contextmanager
def fresh_schema() -> Iterator[str]:
    """A store URL on a schema of its own, dropped afterwards."""
    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{name}"'))
    try:
        yield f"{POSTGRES_URL}?options=-csearch_path%3D{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{name}" CASCADE'))
        admin.dispose()


def write_home(
    home: Path, url: str, store: str, links: list[tuple[str, str, str]], lease: str
) -> None:
    write_scale_home(home, url, links, "1m")
    (home / "config" / "arsync.toml").write_text(
        f'[store]\nurl = "{store}"\n'
        '[log]\nformat = "json"\n'
        f'[daemon]\nlisten = "127.0.0.1:0"\nlease = "{lease}"\n'
    )


def lines(log: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if not log.exists():
        return found
    with log.open() as text_:
        for line in text_:
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict) and "timestamp" in entry:
                entry["at"] = datetime.fromisoformat(entry["timestamp"]).timestamp()
                found.append(entry)
    return found


@dataclass
class Replica:
    """One `arsync run` process and what its log says."""

    label: str
    log: Path
    popen: subprocess.Popen[bytes]
    killed_at: float | None = None

    def entries(self) -> list[dict[str, Any]]:
        return lines(self.log)

    def owned(self, until: float = float("inf")) -> set[str]:
        """The connectors it served after its last "connectors served" line up to `until`."""
        held: set[str] = set()
        for e in self.entries():
            if e["event"] == "connectors served" and e["at"] <= until:
                held |= set(e["taken"])
                held -= set(e["given_up"])
        return held

    def owned_all_at(self, connectors: set[str], after: float) -> float | None:
        """When, after `after`, it first served every one of `connectors`."""
        held: set[str] = set()
        for e in self.entries():
            if e["event"] != "connectors served":
                continue
            held |= set(e["taken"])
            held -= set(e["given_up"])
            if e["at"] > after and connectors <= held:
                return float(e["at"])
        return None

    def cycled_at(self, connectors: set[str], after: float) -> dict[str, float]:
        """The end of its first cycle of each of `connectors` after `after`."""
        first: dict[str, float] = {}
        for e in self.entries():
            if e["event"] == "cycle" and e["at"] > after and e["connector"] in connectors:
                first.setdefault(e["connector"], float(e["at"]))
        return first

    def alive(self) -> bool:
        return self.popen.poll() is None


def start(home: Path, folder: Path, label: str) -> Replica:
    env = {**os.environ, **SECRETS}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    log = folder / f"{label}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            [sys.executable, "-m", "arsync", "run", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    return Replica(label, log, popen)


def wait_for(what: str, ready: Callable[[], bool], replicas: list[Replica]) -> None:
    deadline = time.monotonic() + PATIENCE
    while not ready():
        for r in replicas:
            if r.killed_at is None and not r.alive():
                raise SystemExit(f"{r.label} exited: {r.log.read_text()[-3000:]}")
        if time.monotonic() > deadline:
            raise SystemExit(f"waited {PATIENCE:.0f} s for {what}")
        time.sleep(0.2)


@dataclass
class Kill:
    victim: str
    held: int
    owned_after: float
    cycled_after: float
    cycles: list[float] = field(default_factory=list)


def owns_all(replica: Replica, connectors: set[str], after: float) -> bool:
    return replica.owned_all_at(connectors, after) is not None


def cycled_all(replica: Replica, connectors: set[str], after: float) -> bool:
    return set(replica.cycled_at(connectors, after)) >= connectors


def parse_seconds(text_: str) -> float:
    unit = {"s": 1, "m": 60}[text_.strip()[-1]]
    return float(text_.strip()[:-1]) * unit


def bench(args: argparse.Namespace) -> None:
    lease = parse_seconds(args.lease)
    with (
        sandbox_process(serve, args.connectors, 0.5, 5, 10) as (url, _port),
        fresh_schema() as store,
        tempfile.TemporaryDirectory() as tmp,
    ):
        folder = Path(tmp)
        links = [
            (connector_name(i, platform), platform, tenant)
            for i, (platform, tenant, _name) in enumerate(tenants(url))
        ]
        everything = {name for name, _, _ in links}
        home = folder / "home"
        write_home(home, url, store, links, args.lease)
        took = link_all(home, links)
        print(
            f"{len(links)} connectors linked in {took:.0f} s; store: a fresh PostgreSQL schema; "
            f"lease {args.lease} (claims every {lease / 4:g} s); sync.interval 1m; "
            f"code {revision()}",
            flush=True,
        )
        replicas: list[Replica] = []
        try:
            pair = [start(home, folder, "r1"), start(home, folder, "r2")]
            replicas += pair

            def split() -> bool:
                a, b = pair[0].owned(), pair[1].owned()
                return bool(a) and bool(b) and a | b == everything and not a & b

            wait_for("the two replicas to split the connectors", split, replicas)
            wait_for(
                "a first cycle of every connector",
                lambda: (
                    {e["connector"] for r in pair for e in r.entries() if e["event"] == "cycle"}
                    >= everything
                ),
                replicas,
            )
            kills: list[Kill] = []
            for k in range(args.kills):
                # every connector due again, so that the survivor cycles what it takes at once
                time.sleep(args.settle)
                victim, survivor = pair[k % 2], pair[1 - k % 2]
                held = victim.owned()
                if not held:
                    raise SystemExit(f"{victim.label} owns nothing to lose")
                victim.killed_at = time.time()
                os.kill(victim.popen.pid, signal.SIGKILL)
                victim.popen.wait()
                killed = victim.killed_at
                wait_for(
                    "the survivor to own every connector",
                    partial(owns_all, survivor, everything, killed),
                    replicas,
                )
                wait_for(
                    "the survivor to cycle what it took",
                    partial(cycled_all, survivor, held, killed),
                    replicas,
                )
                owned_at = survivor.owned_all_at(everything, killed)
                assert owned_at is not None
                cycled = survivor.cycled_at(held, killed)
                kill = Kill(
                    victim.label,
                    len(held),
                    owned_at - killed,
                    max(cycled.values()) - killed,
                    sorted(t - killed for t in cycled.values()),
                )
                kills.append(kill)
                print(
                    f"kill {k + 1}: {victim.label} (owning {kill.held}) SIGKILLed; "
                    f"{survivor.label} owned all {len(everything)} after "
                    f"{kill.owned_after:.2f} s and had cycled the {kill.held} it took after "
                    f"{kill.cycled_after:.2f} s (first {kill.cycles[0]:.2f} s)",
                    flush=True,
                )
                fresh = start(home, folder, f"r{len(replicas) + 1}")
                replicas.append(fresh)
                pair[k % 2] = fresh
                wait_for("the new replica to take its share", split, replicas)
        finally:
            for r in replicas:
                if r.alive():
                    r.popen.send_signal(signal.SIGTERM)
            for r in replicas:
                try:
                    r.popen.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    r.popen.kill()
                    r.popen.wait()
        owned_s = [k.owned_after for k in kills]
        cycled_s = [k.cycled_after for k in kills]
        print()
        print(
            "| lease | kills | connectors lost per kill | survivor owns all: median / max | "
            "survivor has cycled them all: median / max |"
        )
        print("|---|---|---|---|---|")
        print(
            f"| {args.lease} | {len(kills)} | {statistics.median(k.held for k in kills):.0f} | "
            f"{statistics.median(owned_s):.2f} s / {max(owned_s):.2f} s "
            f"({max(owned_s) / lease:.0%} of the lease) | "
            f"{statistics.median(cycled_s):.2f} s / {max(cycled_s):.2f} s "
            f"({max(cycled_s) / lease:.0%} of the lease) |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--connectors", type=int, default=50)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lease", default="20s", help="[daemon] lease")
    parser.add_argument(
        "--settle",
        type=float,
        default=70.0,
        help="seconds between a new replica's start and the next kill (over the 1 min interval)",
    )
    bench(parser.parse_args())


if __name__ == "__main__":
    main()
