"""Benchmark: how long the sandbox takes to serve a full sync of N invoices per platform.

Later benchmarks (sync, outbox) run against the sandbox; this one shows the sandbox is not their
bottleneck. The platforms' rate limits are lifted here (the question is the sandbox's own serving
speed, not the 60 calls a minute Xero allows), and each platform is read by its own paging rules:
QBO `SELECT * FROM Invoice … STARTPOSITION n MAXRESULTS 1000`,
Xero `GET /Invoices?page=n&pageSize=1000`.

    python bench/sandbox_full_sync.py [--invoices 100000] [--customers 2000]
"""

from __future__ import annotations

import argparse
import resource
import time
from dataclasses import replace

from arsync.connectors.quickbooks.client import QuickBooksClient
from arsync.connectors.xero.client import XeroClient
from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
from arsync.sandbox.core import CompanySpec, QboLimits, XeroLimits

UNLIMITED = 10**9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invoices", type=int, default=100_000)
    parser.add_argument("--customers", type=int, default=2_000)
    args = parser.parse_args()

    settings = SandboxSettings(
        companies=[
            CompanySpec("qbo", 1, args.customers, args.invoices),
            CompanySpec("xero", 1, args.customers, args.invoices),
        ],
        qbo=replace(QboLimits(), per_minute=UNLIMITED, per_second=UNLIMITED),
        xero=replace(
            XeroLimits(), per_minute=UNLIMITED, per_day=UNLIMITED, app_per_minute=UNLIMITED
        ),
    )
    started = time.perf_counter()
    sandbox = Sandbox(settings)
    built = time.perf_counter() - started
    print(f"generated and loaded 2 × {args.invoices:,} invoices in {built:.1f} s")

    with SandboxServer(sandbox) as server:
        for tenant in sandbox.tenants():
            token = sandbox.connect(tenant.platform, tenant.tenant_id).access_token
            before = sandbox.ledger.count(kind="request", tenant=tenant.tenant_id)
            t0 = time.perf_counter()
            if tenant.platform == "qbo":
                qbo = QuickBooksClient(
                    tenant.tenant_id, token, api_base=server.urls()["quickbooks.api.intuit.com"]
                )
                rows = sum(len(page) for page in qbo.query_all("Invoice"))
                qbo.close()
            else:
                xero = XeroClient(tenant.tenant_id, token, api_base=server.urls()["api.xero.com"])
                rows = sum(len(page) for page in xero.invoice_pages(summary_only=False))
                xero.close()
            elapsed = time.perf_counter() - t0
            calls = sandbox.ledger.count(kind="request", tenant=tenant.tenant_id) - before
            print(
                f"{tenant.platform:<5} {rows:>7,} invoices in {calls:>4} calls: {elapsed:6.1f} s "
                f"({rows / elapsed:,.0f} invoices/s, {1000 * elapsed / calls:.0f} ms per page)"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the process (sandbox and client together): {peak:,.0f} MB")


if __name__ == "__main__":
    main()
