"""The command line as a user meets it: help, the demo, and the standalone sandbox."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest

from arsync.demo import collect
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.server import free_port
from tests.support import store_for

ARSYNC = [sys.executable, "-m", "arsync"]


def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "160", "NO_COLOR": "1"}
    return subprocess.run(
        [*ARSYNC, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False
    )


def test_help_lists_the_commands_and_each_has_help() -> None:
    top = run("--help")
    assert top.returncode == 0
    for command in ("demo", "sandbox", "version"):
        assert command in top.stdout
    demo = run("demo", "--help")
    assert "aged by days overdue" in demo.stdout.replace("\n", " ")
    serve = run("sandbox", "serve", "--help")
    assert "--port" in serve.stdout and "--seed" in serve.stdout


def test_demo_prints_an_aging_table_per_company() -> None:
    result = run("demo", "--customers", "12", "--invoices", "80")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "QuickBooks Online" in out and "Xero" in out
    for label in ("Days overdue", "not yet due", "1–30", "31–60", "61–90", "90+", "Total"):
        assert label in out
    assert "USD" in out and "GBP" in out
    assert "first sync:" in out and "the next sync saw it in 1 API call" in out
    assert out.count("the next 100 days by week:") == 2
    for label in ("week of", "reminders", "calls", "letters", "hand-overs", "chased"):
        assert label in out


def test_demo_figures_equal_the_books_read_over_http(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path
) -> None:
    sandbox = sandbox_factory(customers=15, invoices=120)
    store = store_for(sandbox, f"sqlite:///{tmp_path / 'demo.db'}")
    with SandboxServer(sandbox) as server:
        demos = collect(server, store)
    assert {d.tenant.platform for d in demos} == {"qbo", "xero"}
    for demo in demos:
        assert demo.first.outcome == "ok" and demo.second is not None
        assert demo.second.outcome == "ok"
        assert demo.second.created >= 2 and demo.second.changed >= 1  # payment, new invoice
        by_currency = {row["currency"]: Decimal(row["total"]) for row in demo.status.aging}
        assert by_currency == open_balances_now(sandbox, demo.tenant.platform)
        # the forecast: 100 days in a row from today, each stage of each invoice at most once,
        # every action on its own day, amounts never above what the books say is owed
        days = [d.day for d in demo.forecast]
        assert len(days) == 100 and days[0] == demo.today
        assert all((b - a).days == 1 for a, b in itertools.pairwise(days))
        stages = [
            (a.subject, a.stage) for d in demo.forecast for a in d.actions if a.kind == "note"
        ]
        assert len(stages) == len(set(stages)) > 0
        zone = ZoneInfo(demo.zone)
        for day in demo.forecast:
            for action in day.actions:
                assert action.at.astimezone(zone).date() <= day.day
                assert action.amount.amount <= by_currency[action.amount.currency]
    store.engine.dispose()


def open_balances_now(sandbox: Sandbox, platform: str) -> dict[str, Decimal]:
    """What the sandbox's books say is owed right now, per currency."""
    totals: dict[str, Decimal] = {}
    for tenant in sandbox.tenants():
        if tenant.platform != platform:
            continue
        if platform == "qbo":
            items = [
                (i.currency, i.balance)
                for i in sandbox.qbo.company(tenant.tenant_id).invoices.values()
            ]
        else:
            items = [
                (i.currency, i.amount_due)
                for i in sandbox.xero.org(tenant.tenant_id).invoices.values()
                if i.type == "ACCREC" and i.status == "AUTHORISED"
            ]
        for currency, balance in items:
            if balance > 0:
                totals[currency] = totals.get(currency, Decimal(0)) + balance
    return totals


@pytest.fixture
def served() -> Iterator[tuple[subprocess.Popen[str], int]]:
    port = free_port()
    proc = subprocess.Popen(
        [*ARSYNC, "sandbox", "serve", "--port", str(port), "--seed", "3", "--invoices", "50"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/_sandbox/", timeout=1)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"sandbox did not start: {proc.stderr.read() if proc.stderr else ''}"
                    ) from None
                time.sleep(0.1)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_sandbox_serves_standalone_with_clickable_consent_pages(
    served: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = served
    root = f"http://127.0.0.1:{port}"
    overview = httpx.get(f"{root}/_sandbox/").json()
    assert {t["platform"] for t in overview["tenants"]} == {"qbo", "xero"}
    qbo_client = overview["clients"]["qbo"]["client_id"]
    xero_client = overview["clients"]["xero"]["client_id"]
    qbo = httpx.get(
        f"{root}/qbo/appcenter/connect/oauth2",
        params={
            "client_id": qbo_client,
            "response_type": "code",
            "scope": "com.intuit.quickbooks.accounting",
            "redirect_uri": "http://localhost:9999/callback",
            "state": "s1",
        },
    )
    assert qbo.status_code == 200
    assert "<form" in qbo.text and "Harbor" in qbo.text
    xero = httpx.get(
        f"{root}/xero/login/identity/connect/authorize",
        params={
            "client_id": xero_client,
            "response_type": "code",
            "scope": "offline_access accounting.invoices",
            "redirect_uri": "http://localhost:9999/callback",
            "state": "s2",
        },
    )
    assert xero.status_code == 200
    assert "<form" in xero.text and "Kestrel" in xero.text
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=20) == 0
    assert proc.stdout is not None
    printed = proc.stdout.read()
    assert f"http://127.0.0.1:{port}/qbo/api" in printed
    assert "Consent pages" in printed


def test_serve_refuses_a_port_out_of_range() -> None:
    result = run("sandbox", "serve", "--port", "70000")
    assert result.returncode == 2
    assert "--port" in result.stderr
    assert "65535" in result.stderr


def test_serve_reports_a_taken_port_clearly(served: tuple[subprocess.Popen[str], int]) -> None:
    _, port = served
    result = run("sandbox", "serve", "--port", str(port), "--invoices", "10", timeout=60)
    assert result.returncode == 2
    assert f"cannot serve on 127.0.0.1:{port}" in result.stderr


def test_demo_with_empty_books_owes_only_the_invoice_it_raises() -> None:
    result = run("demo", "--customers", "3", "--invoices", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("3 customers, 0 invoices, 0 payments, 0 credits") == 2
    assert "paid invoice" not in out  # nothing was open to pay
    assert out.count("1,250.00") >= 4  # raised, then aged, in each company


def test_status_and_sync_before_any_connect_report_and_create_nothing(tmp_path: Path) -> None:
    (tmp_path / "connectors").mkdir()
    (tmp_path / "connectors" / "acme.toml").write_text(
        'platform = "xero"\ndisplay_name = "Acme"\n'
        '[oauth]\nclient_id = "abc"\nclient_secret_env = "ACME_SECRET"\n'
    )
    result = run("status", "--home", str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "not connected: run `arsync connect acme`" in result.stdout
    synced = run("sync", "--home", str(tmp_path))
    assert synced.returncode == 3, synced.stderr
    assert "not connected yet: run `arsync connect acme`" in synced.stdout
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["acme.toml", "connectors"]
