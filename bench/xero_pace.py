"""Xero's pace: how much of the published 60 calls a minute a long `arsync sync` uses, with 0.5 s
of latency on every call, measured from the sandbox's ledger.

The sandbox (one Xero organisation under the published limits: 60 calls a minute, 5 at once,
5,000 a day; every answer 0.5 s late; pages of 20 so a sync needs a few hundred calls) runs in a
process of its own on a clock that ticks in real time 400 days ahead of the machine's. arsync is
linked with `arsync connect` and follows that clock; then `arsync sync` runs the initial sync in
a fresh process, with no limit raised. From the ledger: the calls, the 429s, the most calls any
60 seconds held, and how many calls the minutes of the sync held on average (every 60 seconds
starting at a call, up to the last call), as a share of the 60 allowed.

    .venv/bin/python bench/xero_pace.py --invoices 4000
"""

from __future__ import annotations

import argparse
import itertools
import os
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

AHEAD = timedelta(days=400)


def serve(port: int, invoices: int, customers: int, latency: float, page: int) -> None:
    from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
    from arsync.sandbox.core import CompanySpec, XeroLimits

    sandbox = Sandbox(
        SandboxSettings(
            seed=5,
            start=datetime.now(UTC) + AHEAD,
            companies=[CompanySpec("xero", 5, customers, invoices)],
            latency=latency,
            xero=XeroLimits(max_page_size=page),  # the published limits otherwise
        )
    )
    with SandboxServer(sandbox, port=port):
        while True:
            time.sleep(3600)


def requests(url: str) -> list[tuple[datetime, int | None]]:
    body = httpx.get(
        f"{url}/_sandbox/ledger", params={"kind": "request", "platform": "xero"}
    ).json()
    return [
        (datetime.fromisoformat(e["at"]), e["status"])
        for e in body["entries"]
        if "/api.xro/2.0/" in (e["endpoint"] or "")
    ]


def bench(invoices: int, customers: int, latency: float, page: int) -> None:
    with sandbox_process(serve, invoices, customers, latency, page) as (url, _port):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp) / "home"
            write_home(home, url, f"sqlite:///{Path(tmp) / 'arsync.db'}")
            (home / "connectors" / "books-qbo.toml").unlink()
            xero = home / "connectors" / "books-xero.toml"
            # the published limits: none of the raised ones the fast tests use
            xero.write_text(xero.read_text().replace("per_minute = 100000\n", ""))
            connect(home, "books-xero")
            before = len(requests(url))
            start = time.monotonic()
            done = subprocess.run(
                [*ARSYNC, "sync", "books-xero", "--home", str(home)],
                capture_output=True,
                text=True,
                env={**os.environ, **SECRETS},
                check=False,
            )
            wall = time.monotonic() - start
            if done.returncode != 0:
                raise SystemExit(f"sync failed: {done.stdout}\n{done.stderr}")
        calls = requests(url)[before:]
        times = sorted(at for at, _ in calls)
        limited = sum(1 for _, status in calls if status == 429)
        minute = timedelta(seconds=60)

        def held(first: datetime) -> int:
            return sum(1 for t in times if first <= t < first + minute)

        # every whole minute of the sync, starting at each call (the last minute is cut short)
        minutes = [held(t) for t in times if t + minute <= times[-1]]
        if not minutes:
            raise SystemExit(f"{len(times)} calls took less than a minute: ask for more invoices")
        busiest = max(held(t) for t in times)
        mean = sum(minutes) / len(minutes)
        raw_gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
        print(
            f"{invoices:,} invoices, pages of {page}, {latency:.1f} s latency: "
            f"{len(times)} calls in {wall:.0f} s; 429s: {limited}; most in any 60 s: {busiest}; "
            f"a minute of the sync held {mean:.1f} calls on average ({mean / 60:.1%} of 60), "
            f"{min(minutes)} at the least; longest wait between calls {max(raw_gaps):.1f} s",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=4000)
    parser.add_argument("--customers", type=int, default=40)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--page", type=int, default=20)
    args = parser.parse_args()
    bench(args.invoices, args.customers, args.latency, args.page)


if __name__ == "__main__":
    main()
