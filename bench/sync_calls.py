"""API calls and peak memory of `arsync sync` against the sandbox, run as a user would run it.

The sandbox (a QBO company and a Xero organisation of N invoices each, rate limits lifted) runs
in a process of its own; both connectors are linked through their consent pages with
`arsync connect`; then `arsync sync` runs three times in fresh processes: the initial sync, an
idle incremental cycle, and the same with a forced sweep. Each line gives the calls the sync
made per connector, the minimum the page caps allow for the initial sync, and the sync
process's peak resident memory (ru_maxrss).

    .venv/bin/python bench/sync_calls.py --invoices 10000 100000
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.test_sync_e2e import ARSYNC, SECRETS, connect, write_home


def serve(invoices: int, customers: int, port: int) -> None:
    from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
    from arsync.sandbox.core import QboLimits, XeroLimits

    sandbox = Sandbox(
        SandboxSettings(
            seed=5,
            customers=customers,
            invoices=invoices,
            qbo=QboLimits(per_second=100_000, per_minute=1_000_000),
            xero=XeroLimits(per_minute=1_000_000, per_day=10_000_000),
        )
    )
    counts = {}
    for t in sandbox.tenants():
        if t.platform == "qbo":
            c = sandbox.qbo.company(t.tenant_id)
            counts["qbo"] = [len(c.customers), len(c.invoices), len(c.payments), len(c.credits)]
        else:
            o = sandbox.xero.org(t.tenant_id)
            counts["xero"] = [
                len(o.contacts),
                sum(1 for i in o.invoices.values() if i.type == "ACCREC"),
                sum(1 for p in o.payments.values() if p.invoice.type == "ACCREC"),
                sum(1 for c in o.credit_notes.values() if c.type == "ACCRECCREDIT"),
            ]
    Path(f"/tmp/arsync-bench-{port}.counts").write_text(repr(counts))
    with SandboxServer(sandbox, port=port):
        while True:
            time.sleep(3600)


def minimum(sizes: list[int]) -> int:
    # a page of 1000 per call; an entity that fills its last page needs one more (empty) call
    return sum(max(1, math.floor(n / 1000) + 1) for n in sizes)


def run_sync(home: Path, *args: str) -> tuple[dict[str, int], float, str]:
    env = {**os.environ, **SECRETS, "COLUMNS": "200"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.monotonic()
    done = subprocess.run(
        [*ARSYNC, "sync", *args, "--home", str(home)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    elapsed = time.monotonic() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if done.returncode != 0:
        raise SystemExit(f"sync failed: {done.stdout}\n{done.stderr}")
    calls = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^(\S+)\s+ok\s.*\((\d+) API calls?\)", done.stdout, re.M)
    }
    mem = f"{peak / 1024:.0f} MB" if peak > before else "≤ earlier peak"
    return calls, elapsed, mem


def bench(invoices: int, customers: int) -> None:
    from arsync.sandbox.server import free_port

    port = free_port()
    proc = multiprocessing.get_context("spawn").Process(
        target=serve, args=(invoices, customers, port), daemon=True
    )
    proc.start()
    try:
        url = f"http://127.0.0.1:{port}"
        while True:
            try:
                httpx.get(f"{url}/_sandbox/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.5)
        counts = eval(Path(f"/tmp/arsync-bench-{port}.counts").read_text())
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            write_home(home, url, f"sqlite:///{Path(tmp) / 'arsync.db'}")
            connect(home, "books-qbo")
            connect(home, "books-xero")
            print(f"\n{invoices:,} invoices per company, {customers:,} customers")
            for label, args in (
                ("initial sync", ()),
                ("first incremental", ()),
                ("idle incremental", ()),
                ("incremental + sweep", ("--sweep",)),
            ):
                calls, elapsed, mem = run_sync(home, *args)
                line = f"  {label:<20} {elapsed:6.1f} s  peak {mem:>10}  calls: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(calls.items())
                )
                if label == "initial sync":
                    line += (
                        f"  (page-cap minimum: books-qbo {minimum(counts['qbo'])}, "
                        f"books-xero {minimum(counts['xero'])})"
                    )
                print(line, flush=True)
    finally:
        proc.kill()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--customers", type=int, default=2000)
    args = parser.parse_args()
    for n in args.invoices:
        bench(n, args.customers)


if __name__ == "__main__":
    main()
