"""`arsync demo`: arsync's sync engine against the sandbox's two demo companies.

The sandbox starts on a free loopback port with a QuickBooks Online company and a Xero
organisation. Each is synced into a throw-away store exactly as a connected company would be
(first a full sync, then, after a customer pays and a new invoice is raised, an incremental one),
and the store's receivables are shown aged by days overdue. arsync runs on the sandbox's clock.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from arsync.clock import Clock, FollowingClock, SystemClock
from arsync.connectors.base import (
    PLATFORM_NAMES,
    QBO_LIMITS,
    XERO_LIMITS,
    Endpoints,
    Link,
    StaticTokens,
)
from arsync.domain import CompanyInfo
from arsync.escalation.planner import Action, Day, count_by, forecast, plan
from arsync.escalation.policy import ActionKind, builtin_policies
from arsync.escalation.reading import firm_zone, snapshot
from arsync.runtime import Coordinator
from arsync.sandbox.core import Sandbox, SandboxSettings
from arsync.sandbox.platform import TenantInfo
from arsync.sandbox.server import SandboxServer
from arsync.status import ConnectorStatus, gather
from arsync.store import RecordCounts, Store, open_store
from arsync.sync import SyncReport, sync_connector

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class CompanyDemo:
    tenant: TenantInfo
    first: SyncReport
    first_counts: RecordCounts
    story: list[str]
    second: SyncReport | None
    status: ConnectorStatus
    today: date
    now: datetime
    #: API calls each sync made, as the sandbox counted them (not arsync's own count)
    calls: list[int]
    #: the standard policy's next 100 days for this company, by day (as if nobody paid)
    forecast: list[Day] = field(default_factory=list)
    #: how today's plan stands: decisions per status
    today_plan: dict[str, int] = field(default_factory=dict)
    zone: str = ""


def _api_calls(sandbox: Sandbox, tenant: TenantInfo) -> int:
    return sandbox.ledger.count(platform=tenant.platform, kind="request", tenant=tenant.tenant_id)


def _open_invoice(sandbox: Sandbox, tenant: TenantInfo) -> tuple[str, str, Decimal] | None:
    """(id, number, balance) of the open invoice with the largest balance."""
    if tenant.platform == "qbo":
        company = sandbox.qbo.company(tenant.tenant_id)
        qbo = [i for i in company.invoices.values() if i.balance > 0]
        if not qbo:
            return None
        best = max(qbo, key=lambda i: (i.balance, -i.id))
        return str(best.id), best.doc_number, best.balance
    org = sandbox.xero.org(tenant.tenant_id)
    xero = [
        i
        for i in org.invoices.values()
        if i.type == "ACCREC" and i.status == "AUTHORISED" and i.amount_due > 0
    ]
    if not xero:
        return None
    top = max(xero, key=lambda i: (i.amount_due, i.number))
    return top.invoice_id, top.number, top.amount_due


def _customer(sandbox: Sandbox, tenant: TenantInfo) -> str | None:
    if tenant.platform == "qbo":
        ids = sorted(sandbox.qbo.company(tenant.tenant_id).customers)
        return str(ids[0]) if ids else None
    contacts = [c for c in sandbox.xero.org(tenant.tenant_id).contacts.values() if c.is_customer]
    return contacts[0].contact_id if contacts else None


def _business_happens(sandbox: Sandbox, tenant: TenantInfo) -> list[str]:
    """A customer pays their largest invoice and a new invoice is raised: what a day brings."""
    story = []
    paid = _open_invoice(sandbox, tenant)
    if paid is not None:
        ident, number, balance = paid
        sandbox.event(tenant.platform, tenant.tenant_id, {"type": "payment", "invoice": ident})
        story.append(
            f"a customer paid invoice {number} in full ({balance:,.2f} {tenant.base_currency})"
        )
    customer = _customer(sandbox, tenant)
    if customer is not None:
        sandbox.event(
            tenant.platform,
            tenant.tenant_id,
            {
                "type": "create_invoice",
                "customer" if tenant.platform == "qbo" else "contact": customer,
                "amount": "1250.00",
            },
        )
        story.append(f"a new invoice of 1,250.00 {tenant.base_currency} was raised")
    return story


def sandbox_time(sandbox: Sandbox) -> Clock:
    """arsync's clock on the sandbox's: what it reads, and its waits move a frozen sandbox."""

    def sleep(seconds: float) -> None:
        if sandbox.clock.frozen:
            sandbox.clock.advance(seconds)
        else:
            SystemClock().sleep(seconds)

    return FollowingClock(sandbox.clock.now, sandbox.clock.monotonic, sleep)


def collect(server: SandboxServer, store: Store) -> list[CompanyDemo]:
    sandbox = server.sandbox
    demos = []
    for tenant in sandbox.tenants():
        name = f"demo-{tenant.platform}"
        with store.transaction() as tx:
            row, _ = tx.connectors.link(
                name,
                tenant.platform,
                tenant.tenant_id,
                CompanyInfo(tenant.name, tenant.base_currency, tenant.country),
                at=tx.now,
            )
        tokens = sandbox.connect(tenant.platform, tenant.tenant_id)
        link = Link(
            name=name,
            platform=tenant.platform,
            tenant_id=tenant.tenant_id,
            api_base=Endpoints.sandbox(tenant.platform, server.url).api_base,
            limits=QBO_LIMITS if tenant.platform == "qbo" else XERO_LIMITS,
        )
        coordinator = Coordinator(name, row.id, link, StaticTokens(tokens.access_token), store)
        calls: list[int] = []
        try:
            before = _api_calls(sandbox, tenant)
            first = sync_connector(store, coordinator)
            calls.append(_api_calls(sandbox, tenant) - before)
            with store.reading() as tx:
                first_counts = tx.records.counts(row.id)
            story: list[str] = []
            second = None
            if first.outcome == "ok":
                story = _business_happens(sandbox, tenant)
                before = _api_calls(sandbox, tenant)
                second = sync_connector(store, coordinator)
                calls.append(_api_calls(sandbox, tenant) - before)
        finally:
            coordinator.close()
        today = store.clock.now().astimezone(ZoneInfo(tenant.timezone)).date()
        (status,) = gather(store, {name: tenant.platform}, only=[name], today=today)
        demo = CompanyDemo(
            tenant, first, first_counts, story, second, status, today, store.clock.now(), calls
        )
        if first.outcome == "ok":
            _plan(store, demo, name)
        demos.append(demo)
    return demos


#: how far the demo's forecast looks
FORECAST_DAYS = 100


def _plan(store: Store, demo: CompanyDemo, name: str) -> None:
    """Today's plan and the next 100 days under the standard policy (the demo's connector files
    would name the company's zone, as a QuickBooks connector's file does)."""
    policy = builtin_policies()["standard"]
    with store.reading() as tx:
        row = tx.connectors.by_name(name)
        assert row is not None
        firm = firm_zone(row, demo.tenant.timezone, f"connectors/{name}.toml", name)
        now = tx.now
        snap = snapshot(tx, row, policy, firm, now)
    today = plan(snap, policy, now)
    for decision in today.decisions:
        demo.today_plan[decision.status.value] = demo.today_plan.get(decision.status.value, 0) + 1
    demo.forecast = forecast(snap, policy, now, FORECAST_DAYS)
    demo.zone = firm.zone.key


def run_demo(seed: int = 1, customers: int = 40, invoices: int = 300) -> list[CompanyDemo]:
    sandbox = Sandbox(SandboxSettings(seed=seed, customers=customers, invoices=invoices))
    with tempfile.TemporaryDirectory(prefix="arsync-demo-") as tmp:
        store = open_store(f"sqlite:///{Path(tmp) / 'demo.db'}", sandbox_time(sandbox))
        try:
            with SandboxServer(sandbox) as server:
                return collect(server, store)
        finally:
            store.close()


def _calls(n: int) -> str:
    return f"{n} API call{'s' if n != 1 else ''}"


def render(demos: list[CompanyDemo]) -> None:
    from rich.console import Console
    from rich.markup import escape

    from arsync.status import render as render_status

    console = Console()
    for demo in demos:
        t = demo.tenant
        console.print(f"[bold]{escape(t.name)}[/bold] · {PLATFORM_NAMES[t.platform]} (sandbox)")
        first = demo.first
        if first.outcome != "ok":
            console.print(f"  [red]first sync failed:[/red] {escape(first.message)}\n")
            continue
        counts = demo.first_counts
        console.print(f"  first sync: {first.created} records in {_calls(demo.calls[0])}:")
        console.print(
            f"    {counts.customers} customers, {counts.invoices} invoices, "
            f"{counts.payments} payments, {counts.credits} credits"
        )
        if demo.story and demo.second is not None:
            console.print(f"  then {demo.story[0]}")
            for line in demo.story[1:]:
                console.print(f"  and {line};")
            second = demo.second
            if second.outcome == "ok":
                console.print(
                    f"  the next sync saw it in {_calls(demo.calls[1])}: {second.created} new, "
                    f"{second.changed} changed"
                )
            else:
                console.print(f"  [red]the next sync failed:[/red] {escape(second.message)}")
        console.print(f"  [dim]receivables as of {demo.today:%d %b %Y}, from arsync's store:[/dim]")
        # the status view without its own heading lines: the aging table is what matters here
        demo.status.detail = None
        render_status([demo.status], demo.now, aging_only=True, console=console)
        if demo.forecast:
            render_forecast(demo, console)
        console.print()


def render_forecast(demo: CompanyDemo, console: Console) -> None:
    """The next 100 days of collection under the standard policy, by week."""
    from rich.table import Table

    plan_words = ", ".join(f"{n} {status}" for status, n in demo.today_plan.items())
    console.print(f"  [dim]collection under the standard policy, in {demo.zone}:[/dim]")
    console.print(f"  [dim]today {plan_words}; the next {FORECAST_DAYS} days by week:[/dim]")
    table = Table(box=None, padding=(0, 1), show_edge=False)
    for column in ("week of", "reminders", "notes", "calls", "letters", "hand-overs", "chased"):
        table.add_column(column, justify="left" if column == "week of" else "right")
    weeks: dict[date, list[Action]] = {}
    for day in demo.forecast:
        monday = day.day - timedelta(days=day.day.weekday())
        weeks.setdefault(monday, []).extend(day.actions)
    for monday, actions in sorted(weeks.items()):
        kinds = count_by(actions)
        chased: dict[str, Decimal] = {}
        for a in actions:
            if a.kind is ActionKind.NOTE:  # one per stage: counts each invoice once
                chased[a.amount.currency] = (
                    chased.get(a.amount.currency, Decimal(0)) + a.amount.amount
                )
        table.add_row(
            f"{monday:%d %b %Y}",
            str(kinds.get(ActionKind.EMAIL, 0)),
            str(kinds.get(ActionKind.NOTE, 0)),
            str(kinds.get(ActionKind.CALL, 0)),
            str(kinds.get(ActionKind.LETTER, 0)),
            str(kinds.get(ActionKind.HANDOVER, 0)),
            ", ".join(f"{v:,.2f} {k}" for k, v in sorted(chased.items())) or "-",
        )
    console.print(table)
    console.print("  [dim]as if nobody paid; hand-overs wait for a person's approval[/dim]")
