"""Local ingest speed: the store's `apply_page` against a bare sqlite3 `executemany`.

Both write the same 100,000 invoices (the columns `invoices` holds) in pages of 1,000, one
transaction per page, into a fresh SQLite file with the same pragmas (WAL, synchronous=FULL).
arsync does more per page: it reads the page's ids back to tell new from changed, logs an event
per new record, and writes the cursor; the ratio says what that costs.

    .venv/bin/python bench/ingest_ratio.py [--invoices 100000] [--runs 3]
"""

from __future__ import annotations

import argparse
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from arsync.clock import SystemClock
from arsync.connectors.base import Page
from arsync.domain import Invoice, InvoiceStatus
from arsync.store import open_store

PAGE = 1000


def make_invoices(n: int) -> list[Invoice]:
    t = datetime(2026, 11, 1, tzinfo=UTC)
    d = date(2026, 10, 1)
    return [
        Invoice(
            id=str(i),
            number=f"INV-{i:06d}",
            customer_id=str(i % 2000),
            issue_date=d + timedelta(days=i % 60),
            due_date=d + timedelta(days=30 + i % 60),
            currency="USD" if i % 5 else "EUR",
            total=Decimal(f"{100 + i % 9000}.{i % 100:02d}"),
            balance=Decimal(f"{i % 500}.{i % 100:02d}"),
            status=InvoiceStatus.OPEN,
            sent=bool(i % 2),
            updated_at=t + timedelta(seconds=i),
        )
        for i in range(1, n + 1)
    ]


def arsync_ingest(invoices: list[Invoice], folder: Path) -> float:
    store = open_store(f"sqlite:///{folder / 'arsync.db'}", SystemClock())
    with store.transaction() as tx:
        cid = tx.connectors.ensure("bench", "qbo").id
        sync = tx.runs.begin(cid, full=True)
    start = time.perf_counter()
    for i in range(0, len(invoices), PAGE):
        page = Page("invoices", list(invoices[i : i + PAGE]), {"start": i + PAGE}, full_pass="p")
        with store.transaction() as tx:
            outcome = tx.records.apply_page(cid, sync, page)
            tx.runs.page_applied(sync, outcome)
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def bare_ingest(invoices: list[Invoice], folder: Path) -> float:
    conn = sqlite3.connect(folder / "bare.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE invoices (connector_id INTEGER, external_id TEXT, number TEXT, "
        "customer_id TEXT, issue_date TEXT, due_date TEXT, currency TEXT, total INTEGER, "
        "balance INTEGER, status TEXT, sent INTEGER, updated_at TEXT, deleted INTEGER, "
        "seen_pass TEXT, sync_id INTEGER, PRIMARY KEY (connector_id, external_id))"
    )
    start = time.perf_counter()
    for i in range(0, len(invoices), PAGE):
        rows = [
            (
                1,
                inv.id,
                inv.number,
                inv.customer_id,
                inv.issue_date.isoformat(),
                inv.due_date.isoformat(),
                inv.currency,
                int(inv.total * 10000),
                int(inv.balance * 10000),
                inv.status.value,
                int(inv.sent),
                inv.updated_at.isoformat(),
                0,
                "p",
                1,
            )
            for inv in invoices[i : i + PAGE]
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO invoices VALUES (" + ",".join("?" * 15) + ")", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    invoices = make_invoices(args.invoices)
    ratios = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            bare = bare_ingest(invoices, Path(tmp))
            ours = arsync_ingest(invoices, Path(tmp))
        ratios.append(ours / bare)
        print(
            f"run {run}: bare executemany {bare:.2f} s ({len(invoices) / bare:,.0f}/s), "
            f"arsync apply_page {ours:.2f} s ({len(invoices) / ours:,.0f}/s), "
            f"ratio {ours / bare:.2f}x"
        )
    print(f"median ratio {statistics.median(ratios):.2f}x (goal: within 3x)")


if __name__ == "__main__":
    main()
