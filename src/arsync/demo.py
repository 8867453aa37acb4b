"""`arsync demo`: the sandbox's two demo companies, read over real HTTP, and their aging."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from zoneinfo import ZoneInfo

from arsync.aging import BUCKETS, AgingRow, OpenItem, age
from arsync.connectors.quickbooks.client import QuickBooksClient
from arsync.connectors.xero.client import XeroClient, parse_xero_date
from arsync.errors import DataError
from arsync.sandbox.core import Sandbox, SandboxSettings
from arsync.sandbox.platform import TenantInfo
from arsync.sandbox.server import SandboxServer

PLATFORM_NAMES = {"qbo": "QuickBooks Online", "xero": "Xero"}


@dataclass
class CompanyReport:
    tenant: TenantInfo
    today: date
    rows: list[AgingRow]
    open_invoices: int
    api_calls: int


@contextmanager
def _readable(platform: str) -> Iterator[None]:
    """A record missing a field or of the wrong type is a DataError, not a traceback."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, ArithmeticError) as err:
        raise DataError(f"{platform}: an invoice in the reply is not readable ({err!r})") from err


def _qbo_items(server: SandboxServer, tenant: TenantInfo, token: str) -> list[OpenItem]:
    client = QuickBooksClient(
        tenant.tenant_id, token, api_base=server.urls()["quickbooks.api.intuit.com"]
    )
    try:
        with _readable("QuickBooks"):
            return [
                OpenItem(
                    due=date.fromisoformat(inv.get("DueDate") or inv["TxnDate"]),
                    balance=Decimal(str(inv["Balance"])),
                    currency=str(inv.get("CurrencyRef", {}).get("value", tenant.base_currency)),
                )
                for page in client.query_all("Invoice", "Balance > '0'")
                for inv in page
            ]
    finally:
        client.close()


def _xero_items(server: SandboxServer, tenant: TenantInfo, token: str) -> list[OpenItem]:
    client = XeroClient(tenant.tenant_id, token, api_base=server.urls()["api.xero.com"])
    try:
        with _readable("Xero"):
            return [
                OpenItem(
                    due=parse_xero_date(inv.get("DueDate") or inv["Date"]).date(),
                    balance=Decimal(str(inv["AmountDue"])),
                    currency=str(inv.get("CurrencyCode", tenant.base_currency)),
                )
                for page in client.invoice_pages(where='Type=="ACCREC"', statuses="AUTHORISED")
                for inv in page
            ]
    finally:
        client.close()


def collect(server: SandboxServer) -> list[CompanyReport]:
    """Connect to every sandbox company, read its open invoices over HTTP and age them."""
    sandbox = server.sandbox
    reports = []
    for tenant in sandbox.tenants():
        before = sandbox.ledger.count(
            platform=tenant.platform, kind="request", tenant=tenant.tenant_id
        )
        tokens = sandbox.connect(tenant.platform, tenant.tenant_id)
        reader = _qbo_items if tenant.platform == "qbo" else _xero_items
        items = reader(server, tenant, tokens.access_token)
        today = sandbox.clock.now().astimezone(ZoneInfo(tenant.timezone)).date()
        after = sandbox.ledger.count(
            platform=tenant.platform, kind="request", tenant=tenant.tenant_id
        )
        reports.append(
            CompanyReport(
                tenant,
                today,
                age(items, today),
                sum(1 for i in items if i.balance > 0),
                after - before,
            )
        )
    return reports


def run_demo(seed: int = 1, customers: int = 40, invoices: int = 300) -> list[CompanyReport]:
    sandbox = Sandbox(SandboxSettings(seed=seed, customers=customers, invoices=invoices))
    with SandboxServer(sandbox) as server:
        return collect(server)


def money(amount: Decimal) -> str:
    return f"{amount:,.2f}"


def render(reports: list[CompanyReport]) -> None:
    """One table per company: a row per aging bucket, a column per currency."""
    from rich import box
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console()
    for report in reports:
        t = report.tenant
        calls = f"{report.api_calls} API call{'s' if report.api_calls != 1 else ''}"
        console.print(f"[bold]{escape(t.name)}[/bold] · {PLATFORM_NAMES[t.platform]}")
        console.print(
            f"[dim]{report.open_invoices} open invoices, aged as of {report.today:%d %b %Y}; "
            f"read over HTTP in {calls}[/dim]"
        )
        if not report.rows:
            console.print("Nothing is owed: no open invoices.\n")
            continue
        table = Table(box=box.SIMPLE_HEAD, show_footer=True)
        table.add_column("Days overdue", footer="Total", no_wrap=True)
        table.add_column("Invoices", justify="right", footer=str(report.open_invoices))
        for row in report.rows:
            table.add_column(row.currency, justify="right", no_wrap=True, footer=money(row.total))
        for i, (label, _, _) in enumerate(BUCKETS):
            count = sum(row.counts[i] for row in report.rows)
            table.add_row(
                "not yet due" if label == "Current" else label,
                str(count) if count else "–",
                *(money(row.buckets[i]) if row.buckets[i] else "–" for row in report.rows),
            )
        console.print(table)
        console.print()
