"""The command line as a user meets it: help, the demo, and the standalone sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import httpx
import pytest

from arsync.demo import collect
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.server import free_port

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
    assert "aged by days overdue" in demo.stdout
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
    assert "open invoices, aged as of" in out


def test_demo_figures_equal_the_books_read_over_http(
    sandbox_factory: Callable[..., Sandbox],
) -> None:
    sandbox = sandbox_factory(customers=15, invoices=120)
    with SandboxServer(sandbox) as server:
        reports = collect(server)
    assert {r.tenant.platform for r in reports} == {"qbo", "xero"}
    for report in reports:
        by_currency = {row.currency: row.total for row in report.rows}
        assert by_currency == expected_open_balances(sandbox, report.tenant.platform)
        assert report.api_calls >= 1


def expected_open_balances(sandbox: Sandbox, platform: str) -> dict[str, Decimal]:
    from arsync.sandbox.books import generate_books

    books = generate_books(
        platform=platform,
        seed=sandbox.settings.seed,
        now=sandbox.clock.now(),
        customers=sandbox.settings.customers,
        invoices=sandbox.settings.invoices,
    )
    return {c: v for c, v in books.receivable_total().items() if v}


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


def test_demo_with_empty_books_says_nothing_is_owed() -> None:
    result = run("demo", "--customers", "3", "--invoices", "0")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("Nothing is owed: no open invoices.") == 2
    assert "Days overdue" not in result.stdout


def test_a_malformed_invoice_is_a_data_error_naming_the_platform() -> None:
    from arsync.demo import _readable
    from arsync.errors import DataError

    with (
        pytest.raises(DataError, match="Xero: an invoice in the reply is not readable"),
        _readable("Xero"),
    ):
        {"AmountDue": "1.00"}["DueDate"]
