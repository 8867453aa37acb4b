"""The command line as a user meets it: help, the demo, and the standalone sandbox.

The demo's walk itself, and what it shows, is tested in test_demo.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

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
    demo = " ".join(run("demo", "--help").stdout.split())
    assert "100 days of collection on two demo companies" in demo
    assert "aged by days overdue" in demo
    serve = run("sandbox", "serve", "--help")
    assert "--port" in serve.stdout and "--seed" in serve.stdout


def test_demo_prints_the_walk_the_notes_and_the_aging_per_company() -> None:
    result = run("demo", "--customers", "10", "--invoices", "60")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "QuickBooks Online" in out and "Xero" in out
    assert out.count("first sync:") == 2
    # the timeline: a line per week and company, then what happened
    assert out.count("then 100 days of the standard policy") == 2
    assert out.count("cycles of `arsync run`") == 2  # the service did it
    for label in ("week of", "emailed", "notes", "calls", "letters", "hand-overs", "paid"):
        assert label in out
    assert out.count("in all") >= 2
    # two invoices' notes, as each platform shows them
    assert "as QuickBooks Online shows it now (attachment notes" in out
    assert "as Xero shows it now (History & notes" in out
    assert "ref " in out  # each note carries its marker
    # the aging
    for label in ("Days overdue", "not yet due", "1–30", "31–60", "61–90", "90+", "Total"):
        assert label in out
    assert "USD" in out and "GBP" in out
    # the letters, received by the sandbox's own mail server
    assert "The sandbox's mail server (127.0.0.1:" in out and "letters, e.g." in out


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


def test_demo_with_empty_books_chases_nothing() -> None:
    result = run("demo", "--customers", "3", "--invoices", "0")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.count("3 customers, 0 invoices, 0 payments, 0 credits") == 2
    assert out.count("nothing was owed, so nothing was chased") == 2
    assert out.count("Nothing is owed") == 2
    assert "mail server" not in out  # no letter was sent


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
