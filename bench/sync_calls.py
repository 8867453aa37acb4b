"""API calls and peak memory of `arsync sync` against the sandbox, run as a user would run it.

The sandbox (a QBO company and a Xero organisation of N invoices each, rate limits lifted) runs
in a process of its own, on a clock that ticks 400 days ahead of the machine's (arsync follows
it, so nothing may rest on the two agreeing); both connectors are linked through their consent
pages with `arsync connect`; then `arsync sync` runs in fresh processes: the initial sync, a
first and an idle incremental cycle, and one with a forced sweep. Each line gives the API calls
the sandbox's ledger counted per platform, the minimum the page caps allow for the initial sync,
and the sync process's peak resident memory (ru_maxrss).

    .venv/bin/python bench/sync_calls.py --invoices 10000 100000
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.served import sandbox_process
from tests.e2e.test_sync_e2e import ARSYNC, SECRETS, connect, write_home


def serve(port: int, invoices: int, customers: int) -> None:
    from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
    from arsync.sandbox.core import QboLimits, XeroLimits

    sandbox = Sandbox(
        SandboxSettings(
            seed=5,
            start=datetime.now(UTC) + timedelta(days=400),
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


#: an API call of each platform in the ledger (not OAuth, not the control plane)
API = {"qbo": "/v3/company/", "xero": "/api.xro/2.0/"}


def ledger_calls(url: str) -> dict[str, int]:
    """API calls so far, per platform, as the sandbox counted them."""
    entries = httpx.get(f"{url}/_sandbox/ledger", params={"kind": "request"}).json()["entries"]
    return {
        platform: sum(1 for e in entries if e["platform"] == platform and key in e["endpoint"])
        for platform, key in API.items()
    }


def run_sync(url: str, home: Path, *args: str) -> tuple[dict[str, int], float, str]:
    env = {**os.environ, **SECRETS, "COLUMNS": "200"}
    counted = ledger_calls(url)
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
    now = ledger_calls(url)
    calls = {f"books-{platform}": now[platform] - counted[platform] for platform in API}
    mem = f"{peak / 1024:.0f} MB" if peak > before else "≤ earlier peak"
    return calls, elapsed, mem


def bench(invoices: int, customers: int) -> None:
    with sandbox_process(serve, invoices, customers) as (url, port):
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
                calls, elapsed, mem = run_sync(url, home, *args)
                line = f"  {label:<20} {elapsed:6.1f} s  peak {mem:>10}  calls: " + ", ".join(
                    f"{k} {v}" for k, v in sorted(calls.items())
                )
                if label == "initial sync":
                    line += (
                        f"  (page-cap minimum: books-qbo {minimum(counts['qbo'])}, "
                        f"books-xero {minimum(counts['xero'])})"
                    )
                print(line, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--customers", type=int, default=2000)
    args = parser.parse_args()
    for n in args.invoices:
        bench(n, args.customers)


if __name__ == "__main__":
    main()
