"""`arsync run` with a thousand connectors: missed cycles, CPU, memory and API calls per cycle.

One sandbox process serves N companies (default 1,000: half QuickBooks Online, half Xero, 5
customers and 10 invoices each, the platforms' published limits) on the machine's own clock,
ticking in real time. One arsync home holds a connector file per company (`sync.interval`
15 minutes by default, every other setting the default one); each is linked the way
`arsync connect --headless` links it (arsync's own consent code: authorization request, code
exchange, the company's facts read with the new grant, `store_connection`), the person's
"Allow" posted straight to the sandbox's consent form. Then one `arsync run` process serves
them all on a SQLite store, with systemd's notify socket unset and its health server on a free
port.

Nothing is simulated faster than it happens: the daemon runs on the machine's clock, as in
production (following a sandbox's clock would make its loop poll the sandbox ten times a
second, which production never does). After the first cycle of every connector (its initial
sync), the bench measures K whole intervals (default 2), from a minute before the first
interval boundary after that: whether every connector cycled once per interval (the daemon's
"cycle" log lines, checked against the store's sync_runs), the daemon's CPU from
/proc/PID/stat (utime + stime, every thread) as a share of one core, its memory from
/proc/PID/status (VmRSS, VmHWM), each cycle's seconds (its log line) and how long after the
interval's boundary the last cycle ended, and the API calls of each connector per cycle as the
sandbox's ledger counted them (never arsync's own counters), with token refreshes apart.

    .venv/bin/python bench/daemon_scale.py                      # 1,000 companies, 2 × 15 min
    .venv/bin/python bench/daemon_scale.py --companies 100 --interval 1m --intervals 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.served import sandbox_process

#: the demo OAuth clients' secrets (not secret: they only open the sandbox)
SECRETS = {"QBO_SECRET": "sandbox-qbo-secret", "XERO_SECRET": "sandbox-xero-secret"}
#: an API call of each platform in the ledger's endpoint (not OAuth, not the control plane)
API = {"qbo": "/v3/company/", "xero": "/api.xro/2.0/"}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def revision() -> str:
    """The commit measured, and whether src/ differed from it (when run from a clone)."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except OSError:
        return "unknown"
    return (head or "unknown") + (" with uncommitted changes in src/" if dirty else "")


# -- the sandbox -------------------------------------------------------------------------------
def serve(port: int, companies: int, qbo_share: float, customers: int, invoices: int) -> None:
    """The sandbox process: `companies` small companies on the machine's clock, ticking."""
    from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
    from arsync.sandbox.core import CompanySpec

    qbo = round(companies * qbo_share)
    specs = [
        CompanySpec(
            "qbo" if i < qbo else "xero",
            seed=1000 + i,
            customers=customers,
            invoices=invoices,
            name=f"Bench company {i:04d}",
        )
        for i in range(companies)
    ]
    sandbox = Sandbox(SandboxSettings(seed=11, companies=specs))
    Path(f"/tmp/arsync-bench-{port}.pid").write_text(str(os.getpid()))
    with SandboxServer(sandbox, port=port):
        while True:
            time.sleep(3600)


def tenants(url: str) -> list[tuple[str, str, str]]:
    """(platform, tenant id, name) of every company the sandbox serves, in its order."""
    body = httpx.get(f"{url}/_sandbox/", timeout=60).json()
    return [(t["platform"], t["tenant_id"], t["name"]) for t in body["tenants"]]


def ledger(url: str, kind: str, since: int = 0) -> list[dict[str, Any]]:
    reply = httpx.get(f"{url}/_sandbox/ledger", params={"kind": kind, "since": since}, timeout=120)
    return list(reply.json()["entries"])


def last_seq(url: str) -> int:
    entries = ledger(url, "request")
    return max((int(e["seq"]) for e in entries), default=0)


# -- the home and its links --------------------------------------------------------------------
def connector_name(index: int, platform: str) -> str:
    return f"co{index:04d}-{platform}"


def write_home(home: Path, url: str, links: list[tuple[str, str, str]], interval: str) -> None:
    """arsync.toml (SQLite store, JSON logs, health on a free port) and a connector file per
    company, every limit the platform's published one."""
    from arsync.sandbox.core import DEMO_CLIENTS

    (home / "config").mkdir(parents=True)
    (home / "connectors").mkdir()
    (home / "config" / "arsync.toml").write_text(
        f'[store]\nurl = "sqlite:///{home / "arsync.db"}"\n'
        '[log]\nformat = "json"\n'
        '[daemon]\nlisten = "127.0.0.1:0"\n'
    )
    for name, platform, _tenant in links:
        client = DEMO_CLIENTS[platform]
        env = "QBO_SECRET" if platform == "qbo" else "XERO_SECRET"
        kind = "quickbooks" if platform == "qbo" else "xero"
        (home / "connectors" / f"{name}.toml").write_text(
            f'platform = "{kind}"\ndisplay_name = "{name}"\n'
            f'[oauth]\nclient_id = "{client.client_id}"\nclient_secret_env = "{env}"\n'
            f'[sync]\ninterval = "{interval}"\n'
            f'[endpoints]\nsandbox = "{url}"\n'
        )


def allow(address: str, platform: str, tenant: str) -> str:
    """What the person's browser posts on the consent page: "Allow" for this one company.
    Returns the address the browser is sent back to (the code, the state, QBO's realmId)."""
    parts = urlsplit(address)
    form = dict(parse_qsl(parts.query))
    if platform == "qbo":
        form.update(realm=tenant, action="connect")
    else:
        form.update(tenant=tenant, action="allow")
    target = f"{parts.scheme}://{parts.netloc}{parts.path}"
    reply = httpx.post(target, data=form, follow_redirects=False, timeout=60)
    if reply.status_code != 302:
        raise SystemExit(f"the consent form answered {reply.status_code}: {reply.text[:300]}")
    return str(reply.headers["location"])


def link_all(home: Path, links: list[tuple[str, str, str]]) -> float:
    """Link every connector as `arsync connect --headless` does, one after another (as a
    person would: two connects at once can make the second's store probe, an immutable read,
    see a page the first is writing and call the store damaged); the seconds it took."""
    from arsync import commands
    from arsync.config import load
    from arsync.logs import configure

    os.environ.update(SECRETS)
    configure(level="error", fmt="json")
    config = load(home)
    started = time.monotonic()
    for done, (name, platform, tenant) in enumerate(links, start=1):
        said: list[str] = []

        def pasted(
            _prompt: str, said: list[str] = said, platform: str = platform, tenant: str = tenant
        ) -> str:
            return allow(next(s for s in said if s.startswith("http")), platform, tenant)

        commands.connect(
            config,
            name,
            headless=True,
            open_browser=False,
            port=0,
            tenant=tenant,
            echo=said.append,
            read_line=pasted,
            choose=lambda offered: offered[0],
        )
        if done % 100 == 0:
            print(f"  linked {done} of {len(links)}", flush=True)
    return time.monotonic() - started


# -- watching the daemon -----------------------------------------------------------------------
@dataclass
class Sample:
    at: float  # the machine's time (epoch seconds)
    cpu: float  # the process's CPU seconds so far (user + system, every thread)
    rss: int  # kB
    hwm: int  # kB


def proc_cpu(pid: int) -> float:
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK  # utime, stime


def proc_memory(pid: int) -> tuple[int, int]:
    found = dict(
        re.findall(r"^(VmRSS|VmHWM):\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    )
    return int(found.get("VmRSS", 0)), int(found.get("VmHWM", 0))


class Sampler:
    """The daemon's CPU and memory every second, on a thread of the bench."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                rss, hwm = proc_memory(self.pid)
                self.samples.append(Sample(time.time(), proc_cpu(self.pid), rss, hwm))
            except (FileNotFoundError, ProcessLookupError, ValueError):
                return
            self._stop.wait(1.0)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def at(self, moment: float) -> Sample:
        """The last sample taken at or before `moment`."""
        before = [s for s in self.samples if s.at <= moment]
        return before[-1] if before else self.samples[0]

    def within(self, start: float, end: float) -> list[Sample]:
        return [s for s in self.samples if start <= s.at <= end]


def cycles(log: Path) -> list[dict[str, Any]]:
    """The daemon's "cycle" lines so far, each with its moment as epoch seconds."""
    found = []
    with log.open() as lines:
        for line in lines:
            if '"event": "cycle"' not in line:
                continue
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            entry["at"] = datetime.fromisoformat(entry["timestamp"]).timestamp()
            found.append(entry)
    return found


def started_at(log: Path) -> float | None:
    """When the daemon said it was running (epoch seconds), or None yet."""
    with log.open() as lines:
        for line in lines:
            if '"event": "arsync is running"' in line:
                return datetime.fromisoformat(json.loads(line)["timestamp"]).timestamp()
    return None


@contextmanager
def daemon(home: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`arsync run` as a process of its own; SIGTERM at the end."""
    env = {**os.environ, **SECRETS}
    for key in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        env.pop(key, None)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "arsync", "run", "--home", str(home)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def store_runs(home: Path, start: float, end: float) -> Counter[str]:
    """Sync runs per connector that started in [start, end), from the store itself."""
    with sqlite3.connect(f"file:{home / 'arsync.db'}?mode=ro", uri=True) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        table = "sync_runs" if "sync_runs" in tables else "runs"
        rows = db.execute(
            f"SELECT c.name, r.started_at FROM {table} r JOIN connectors c ON c.id = r.connector_id"
        ).fetchall()
    counted: Counter[str] = Counter()
    for name, stamp in rows:
        moment = datetime.fromisoformat(str(stamp))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        if start <= moment.timestamp() < end:
            counted[name] += 1
    return counted


# -- the figures -------------------------------------------------------------------------------
@dataclass
class Interval:
    index: int
    start: float
    end: float
    boundary: float
    cycles: list[dict[str, Any]] = field(default_factory=list)
    cpu: float = 0.0
    rss_max: int = 0
    hwm: int = 0
    calls: dict[str, list[int]] = field(default_factory=dict)
    writeback: int = 0
    refreshes: Counter[str] = field(default_factory=Counter)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def parse_interval(text: str) -> float:
    found = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([smh])", text.strip())
    if not found:
        raise SystemExit(f"--interval: like 15m, 90s or 1h, not {text!r}")
    return float(found[1]) * {"s": 1, "m": 60, "h": 3600}[found[2]]


def is_writeback(platform: str, entry: dict[str, Any]) -> bool:
    """A write-back call (an email, a note, a batch, Xero's fresh read by ids), not a sync's
    read. QBO's queries are POSTs that read; a fresh read among them cannot be told apart
    (the ledger keeps no body), so it counts as a read."""
    endpoint = str(entry.get("endpoint") or "")
    if platform == "qbo":
        return endpoint.startswith("POST") and not endpoint.endswith("/query")
    return endpoint.startswith(("POST", "PUT")) or "IDs=" in str(entry["detail"].get("query"))


def bench(args: argparse.Namespace) -> None:
    every = parse_interval(args.interval)
    lead = min(60.0, every / 4)
    with (
        sandbox_process(serve, args.companies, args.qbo_share, args.customers, args.invoices) as (
            url,
            port,
        ),
        tempfile.TemporaryDirectory() as tmp,
    ):
        sandbox_pid = int(Path(f"/tmp/arsync-bench-{port}.pid").read_text())
        served = tenants(url)
        links = [
            (connector_name(i, platform), platform, tenant)
            for i, (platform, tenant, _name) in enumerate(served)
        ]
        by_tenant = {tenant: (name, platform) for name, platform, tenant in links}
        home = Path(tmp) / "home"
        write_home(home, url, links, args.interval)
        kinds = Counter(p for _, p, _ in links)
        print(
            f"{len(links)} companies ({kinds['qbo']} QuickBooks, {kinds['xero']} Xero), "
            f"{args.customers} customers and {args.invoices} invoices each; interval "
            f"{args.interval}; measuring {args.intervals} interval(s); code {revision()}",
            flush=True,
        )
        took = link_all(home, links)
        print(f"linked {len(links)} connectors in {took:.0f} s", flush=True)
        mark = last_seq(url)
        log = Path(tmp) / "daemon.log"
        with daemon(home, log) as proc:
            sampler = Sampler(proc.pid).start()
            t0 = None
            while t0 is None:
                if proc.poll() is not None:
                    raise SystemExit(f"arsync run exited: {log.read_text()[-3000:]}")
                time.sleep(0.5)
                t0 = started_at(log)
            print(f"arsync run (pid {proc.pid}) is running", flush=True)
            # the initial syncs: every connector's first cycle
            while True:
                seen = {c["connector"] for c in cycles(log)}
                if len(seen) >= len(links):
                    break
                if proc.poll() is not None:
                    raise SystemExit(f"arsync run exited: {log.read_text()[-3000:]}")
                time.sleep(2)
            first = cycles(log)
            initial_end = max(c["at"] for c in first)
            initial_cpu = sampler.at(initial_end).cpu
            print(
                f"first cycles of all {len(links)} done {initial_end - t0:.0f} s after start; "
                f"{initial_cpu:.0f} CPU-s so far; "
                f"VmHWM {sampler.at(initial_end).hwm / 1024:.0f} MB",
                flush=True,
            )
            m = math.ceil((initial_end + lead - t0) / every)
            m = max(m, 1)
            windows = [
                Interval(
                    k,
                    t0 + (m + k) * every - lead,
                    t0 + (m + k + 1) * every - lead,
                    t0 + (m + k) * every,
                )
                for k in range(args.intervals)
            ]
            end = windows[-1].end
            print(
                f"measuring from {datetime.fromtimestamp(windows[0].start, UTC):%H:%M:%S} to "
                f"{datetime.fromtimestamp(end, UTC):%H:%M:%S} UTC "
                f"({(end - time.time()) / 60:.1f} min from now)",
                flush=True,
            )
            while time.time() < end + 2:
                if proc.poll() is not None:
                    raise SystemExit(f"arsync run exited: {log.read_text()[-3000:]}")
                time.sleep(min(10.0, max(0.5, end + 2 - time.time())))
            sandbox_cpu_end = proc_cpu(sandbox_pid)
            sampler.stop()
            everything = cycles(log)
            requests = [e for e in ledger(url, "request", mark)]
            refreshed = [e for e in ledger(url, "token_refreshed", mark)]
            runs = store_runs(home, windows[0].start, end)
        if args.keep is not None:
            args.keep.mkdir(parents=True, exist_ok=True)
            (args.keep / "daemon.log").write_bytes(log.read_bytes())
            (args.keep / "samples.json").write_text(json.dumps([vars(s) for s in sampler.samples]))
        report(args, links, by_tenant, windows, sampler, everything, requests, refreshed, runs)
        print(f"sandbox process CPU over the whole bench: {sandbox_cpu_end:.0f} s (not counted)")


def report(
    args: argparse.Namespace,
    links: list[tuple[str, str, str]],
    by_tenant: dict[str, tuple[str, str]],
    windows: list[Interval],
    sampler: Sampler,
    everything: list[dict[str, Any]],
    requests: list[dict[str, Any]],
    refreshed: list[dict[str, Any]],
    runs: Counter[str],
) -> None:
    names = {name: platform for name, platform, _ in links}
    missed = 0
    twice = 0
    print()
    print(
        "| interval | cycles | connectors cycled once | failed | CPU-s | % of one core | "
        "VmRSS max | VmHWM | cycle s p50 / p95 / max | last cycle done after boundary | "
        "API calls per cycle QBO / Xero (mean, max) | write-back calls | token refreshes |"
    )
    print("|" + "---|" * 13)
    for w in windows:
        w.cycles = [c for c in everything if w.start <= c["at"] < w.end]
        per = Counter(c["connector"] for c in w.cycles)
        once = sum(1 for n in names if per[n] == 1)
        missed += sum(1 for n in names if per[n] == 0)
        twice += sum(1 for n in names if per[n] > 1)
        failed = sum(1 for c in w.cycles if c.get("error") or c.get("sync") != "ok")
        a, b = sampler.at(w.start), sampler.at(w.end)
        w.cpu = b.cpu - a.cpu
        inside = sampler.within(w.start, w.end)
        w.rss_max = max((s.rss for s in inside), default=0)
        w.hwm = b.hwm
        seconds = [float(c["seconds"]) for c in w.cycles]
        done_after = max((c["at"] for c in w.cycles), default=w.boundary) - w.boundary
        counted: dict[str, Counter[str]] = {"qbo": Counter(), "xero": Counter()}
        for e in requests:
            at = datetime.fromisoformat(e["at"]).timestamp()
            if not (w.start <= at < w.end) or e["tenant"] not in by_tenant:
                continue
            name, platform = by_tenant[e["tenant"]]
            path = str(e.get("endpoint") or "") + " " + str(e["detail"].get("path", ""))
            if API[platform] not in path:
                continue
            if is_writeback(platform, e):
                w.writeback += 1
                continue
            counted[platform][name] += 1
        for platform in ("qbo", "xero"):
            mine = [n for n, p in names.items() if p == platform]
            w.calls[platform] = [counted[platform][n] for n in mine]
        for e in refreshed:
            at = datetime.fromisoformat(e["at"]).timestamp()
            if w.start <= at < w.end:
                w.refreshes[e["platform"]] += 1
        span = w.end - w.start

        def calls(platform: str, w: Interval = w) -> str:
            values = w.calls[platform]
            if not values:
                return "-"
            return f"{statistics.mean(values):.2f}, {max(values)}"

        print(
            f"| {w.index + 1} | {len(w.cycles)} | {once} of {len(names)} | {failed} | "
            f"{w.cpu:.1f} | {100 * w.cpu / span:.2f} % | {w.rss_max / 1024:.0f} MB | "
            f"{w.hwm / 1024:.0f} MB | "
            + (
                f"{statistics.median(seconds):.3f} / {pct(seconds, 0.95):.3f} / {max(seconds):.3f}"
                if seconds
                else "-"
            )
            + f" | {done_after:.0f} s | {calls('qbo')} / {calls('xero')} | {w.writeback} | "
            f"QBO {w.refreshes['qbo']}, Xero {w.refreshes['xero']} |"
        )
    total = sum(w.cpu for w in windows)
    span = windows[-1].end - windows[0].start
    busy = []
    for w in windows:
        last = max((c["at"] for c in w.cycles), default=w.boundary)
        quiet = sampler.within(last + 5, w.end)
        if len(quiet) >= 2:
            busy.append((quiet[-1].cpu - quiet[0].cpu) / (quiet[-1].at - quiet[0].at))
    n_cycles = sum(len(w.cycles) for w in windows)
    print()
    print(
        f"over {len(windows)} interval(s), {span:.0f} s: {total:.1f} CPU-s, "
        f"**{100 * total / span:.2f} % of one core**; "
        f"{1000 * total / max(1, n_cycles):.1f} ms CPU per cycle (everything included)"
    )
    if busy:
        print(
            f"between bursts (after the last cycle of an interval): "
            f"{100 * statistics.mean(busy):.2f} % of one core"
        )
    print(
        f"missed: {missed} connector-intervals with no cycle; {twice} with more than one; "
        f"store's sync_runs in the window: {sum(runs.values())} for {len(runs)} connectors "
        f"(expected {len(names) * len(windows)})"
    )
    print(
        f"peak VmHWM of the daemon: {max(s.hwm for s in sampler.samples) / 1024:.0f} MB; "
        f"VmRSS at the end {sampler.samples[-1].rss / 1024:.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--companies", type=int, default=1000)
    parser.add_argument("--qbo-share", type=float, default=0.5, help="of the companies")
    parser.add_argument("--customers", type=int, default=5, help="per company")
    parser.add_argument("--invoices", type=int, default=10, help="per company")
    parser.add_argument("--interval", default="15m", help="each connector's sync.interval")
    parser.add_argument("--intervals", type=int, default=2, help="whole intervals measured")
    parser.add_argument("--keep", type=Path, help="a folder to keep the daemon's log in")
    bench(parser.parse_args())


if __name__ == "__main__":
    main()
