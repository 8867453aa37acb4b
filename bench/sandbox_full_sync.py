"""Benchmark: how long the sandbox takes to serve a full sync of N invoices per platform.

Later benchmarks (sync, outbox) run against the sandbox; this one shows the sandbox is not their
bottleneck. The platforms' rate limits are lifted here (the question is the sandbox's own serving
speed, not the 60 calls a minute Xero allows), and each platform is read by its own paging rules:
QBO `SELECT * FROM Invoice STARTPOSITION n MAXRESULTS 1000`,
Xero `GET /Invoices?page=n&pageSize=1000`.
The client's share (decoding JSON) is timed apart from the wall time, so what remains is the
sandbox's (routing, filtering, rendering, encoding) plus loopback HTTP.

    python bench/sandbox_full_sync.py [--invoices 100000] [--customers 2000]
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace
from typing import Any

import httpx

from arsync.sandbox import Sandbox, SandboxServer, SandboxSettings
from arsync.sandbox.core import CompanySpec, QboLimits, XeroLimits
from arsync.sandbox.platform import TenantInfo

UNLIMITED = 10**9
PAGE = 1000


class Reader:
    """Pages through one tenant's invoices, timing the client's JSON decoding apart."""

    def __init__(self, server: SandboxServer, tenant: TenantInfo, token: str) -> None:
        self.http = httpx.Client(timeout=120)
        self.urls = server.urls()
        self.tenant = tenant
        self.auth = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        self.decode_seconds = 0.0
        self.bytes = 0

    def _json(self, response: httpx.Response) -> Any:
        response.raise_for_status()
        self.bytes += len(response.content)
        t0 = time.perf_counter()
        body = json.loads(response.content)
        self.decode_seconds += time.perf_counter() - t0
        return body

    def qbo(self) -> int:
        url = f"{self.urls['quickbooks.api.intuit.com']}/v3/company/{self.tenant.tenant_id}/query"
        headers = {**self.auth, "Content-Type": "application/text"}
        rows, start = 0, 1
        while True:
            sql = f"SELECT * FROM Invoice STARTPOSITION {start} MAXRESULTS {PAGE}"
            reply = self.http.post(url, params={"minorversion": "75"}, content=sql, headers=headers)
            page = self._json(reply)["QueryResponse"].get("Invoice", [])
            rows += len(page)
            if len(page) < PAGE:
                return rows
            start += PAGE

    def xero(self) -> int:
        url = f"{self.urls['api.xero.com']}/api.xro/2.0/Invoices"
        headers = {**self.auth, "xero-tenant-id": self.tenant.tenant_id}
        rows, number = 0, 1
        while True:
            params = {"page": str(number), "pageSize": str(PAGE)}
            page = self._json(self.http.get(url, params=params, headers=headers))["Invoices"]
            rows += len(page)
            if len(page) < PAGE:
                return rows
            number += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
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
    print(
        f"generated and loaded 2 × {args.invoices:,} invoices "
        f"in {time.perf_counter() - started:.1f} s"
    )
    with SandboxServer(sandbox) as server:
        for tenant in sandbox.tenants():
            reader = Reader(
                server, tenant, sandbox.connect(tenant.platform, tenant.tenant_id).access_token
            )
            before = sandbox.ledger.count(kind="request", tenant=tenant.tenant_id)
            t0 = time.perf_counter()
            rows = reader.qbo() if tenant.platform == "qbo" else reader.xero()
            wall = time.perf_counter() - t0
            calls = sandbox.ledger.count(kind="request", tenant=tenant.tenant_id) - before
            served = wall - reader.decode_seconds
            print(
                f"{tenant.platform:<5} {rows:>7,} invoices, {calls:>4} calls, "
                f"{reader.bytes / 1e6:,.0f} MB: wall {wall:5.1f} s, client decode "
                f"{reader.decode_seconds:4.1f} s, sandbox+HTTP {served:5.1f} s "
                f"({1000 * served / calls:.0f} ms per page, {rows / served:,.0f} invoices/s)"
            )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory of the process (both sandboxes and the client): {peak:,.0f} MB")


if __name__ == "__main__":
    main()
