"""End to end over loopback HTTP: `arsync connect`, `sync` and `status` as processes against the
sandbox, with the store compared field by field with the sandbox's books after every step."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import DEMO_CLIENTS, QboLimits, XeroLimits
from tests.books import actual, differences, expected
from tests.support import connector_row, form_fields, make_sandbox, store_for

ARSYNC = [sys.executable, "-m", "arsync"]
SECRETS = {"QBO_SECRET": "sandbox-qbo-secret", "XERO_SECRET": "sandbox-xero-secret"}


def write_home(home: Path, server_url: str, store_url: str) -> None:
    (home / "config").mkdir(parents=True)
    (home / "connectors").mkdir()
    # arsync follows the sandbox's (frozen) clock, as the demo does: a test means the same
    # whatever day it runs
    (home / "config" / "arsync.toml").write_text(
        f'[store]\nurl = "{store_url}"\n[log]\nformat = "json"\n[clock]\nsandbox = "{server_url}"\n'
    )
    for name, platform, client, env in (
        ("books-qbo", "quickbooks", DEMO_CLIENTS["qbo"], "QBO_SECRET"),
        ("books-xero", "xero", DEMO_CLIENTS["xero"], "XERO_SECRET"),
    ):
        (home / "connectors" / f"{name}.toml").write_text(
            f'platform = "{platform}"\ndisplay_name = "{name}"\n'
            f'[oauth]\nclient_id = "{client.client_id}"\nclient_secret_env = "{env}"\n'
            f"[limits]\nper_minute = 100000\nconcurrent = 5\n"
            f'[endpoints]\nsandbox = "{server_url}"\n'
        )


def arsync(home: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **SECRETS, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(
        [*ARSYNC, *args, "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


def approve(url: str) -> str:
    """What a person does in the browser: open the consent page, pick the company, allow."""
    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        is_qbo = "realm" in page.text
        hidden, offered = form_fields(page.text, "realm" if is_qbo else "tenant")
        form: dict[str, str | list[str]] = {
            **hidden,
            ("realm" if is_qbo else "tenant"): offered[0] if is_qbo else offered,
            "action": "connect" if is_qbo else "allow",
        }
        answer = browser.post(url.split("?")[0], data=form)
        assert answer.status_code == 302, answer.text
        return str(answer.headers["location"])


def connect(home: Path, name: str) -> str:
    """`arsync connect NAME --no-browser`: read the address it prints, approve, follow back."""
    env = {**os.environ, **SECRETS, "COLUMNS": "500"}
    proc = subprocess.Popen(
        [*ARSYNC, "connect", name, "--no-browser", "--home", str(home)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        url = ""
        while not url:
            line = proc.stdout.readline()
            assert line, f"connect ended early: {proc.stderr.read() if proc.stderr else ''}"
            if re.match(r"^https?://", line.strip()):
                url = line.strip()
        location = approve(url)
        assert urlsplit(location).hostname == "127.0.0.1"
        landing = httpx.get(location, timeout=30)
        assert landing.status_code == 200 and "arsync" in landing.text
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    return out


@pytest.fixture
def world(tmp_path: Path, db_url: str) -> Iterator[tuple[Sandbox, SandboxServer, Path, str]]:
    sandbox = make_sandbox(
        customers=25,
        invoices=150,
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    with SandboxServer(sandbox) as server:
        home = tmp_path / "home"
        write_home(home, server.url, db_url)
        yield sandbox, server, home, db_url


def assert_store_equals_books(sandbox: Sandbox, db_url: str) -> None:
    store = store_for(sandbox, db_url)
    try:
        for tenant in sandbox.tenants():
            name = f"books-{tenant.platform}"
            row = connector_row(store, name)
            assert row is not None and row.tenant_id == tenant.tenant_id
            want = expected(sandbox, tenant.platform, tenant.tenant_id)
            assert differences(want, actual(store, row.id, want)) == []
    finally:
        store.close()


def test_connect_sync_and_follow_the_books(
    world: tuple[Sandbox, SandboxServer, Path, str],
) -> None:
    sandbox, _server, home, db_url = world
    before = arsync(home, "sync")
    # nothing synced: the exit code says a person must connect first (3), as the README says
    assert before.returncode == 3 and "not connected yet" in before.stdout

    assert "books-qbo is connected to" in connect(home, "books-qbo")
    assert "books-xero is connected to" in connect(home, "books-xero")
    key = home / "secrets" / "arsync.key"
    assert key.stat().st_mode & 0o077 == 0

    first = arsync(home, "sync")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.count(" ok ") == 2
    assert_store_equals_books(sandbox, db_url)

    qbo = next(t for t in sandbox.tenants() if t.platform == "qbo")
    xero = next(t for t in sandbox.tenants() if t.platform == "xero")
    company = sandbox.qbo.company(qbo.tenant_id)
    open_qbo = sorted(i.id for i in company.invoices.values() if i.balance > 0)
    org = sandbox.xero.org(xero.tenant_id)
    open_xero = sorted(
        i.invoice_id
        for i in org.invoices.values()
        if i.type == "ACCREC" and i.status == "AUTHORISED" and not i.payments
    )
    customer = sorted(company.customers)[0]
    contact = sorted(org.contacts)[0]
    qbo_events: list[dict[str, object]] = [
        {"type": "payment", "invoice": open_qbo[0], "amount": "10.00"},
        {"type": "payment", "invoice": open_qbo[1]},
        {"type": "credit", "invoice": open_qbo[2], "amount": "5.00"},
        {"type": "void", "invoice": open_qbo[3]},
        {"type": "edit", "invoice": open_qbo[4], "due_date": "2026-12-31"},
        {"type": "delete_invoice", "invoice": open_qbo[5]},
        {"type": "create_invoice", "customer": customer, "amount": "99.95"},
        {"type": "email_change", "customer": customer, "email": "new@example.com"},
    ]
    for event in qbo_events:
        sandbox.event("qbo", qbo.tenant_id, event)
    xero_events: list[dict[str, object]] = [
        {"type": "payment", "invoice": open_xero[0], "amount": "10.00"},
        {"type": "payment", "invoice": open_xero[1]},
        {"type": "credit", "invoice": open_xero[2], "amount": "5.00"},
        {"type": "void", "invoice": open_xero[3]},
        {"type": "edit", "invoice": open_xero[4], "due_date": "2026-12-31"},
        {"type": "create_invoice", "contact": contact, "amount": "99.95"},
        {"type": "email_change", "contact": contact, "email": "new@example.com"},
    ]
    for event in xero_events:
        sandbox.event("xero", xero.tenant_id, event)
    calls = sandbox.ledger.count(kind="request")
    second = arsync(home, "sync")
    assert second.returncode == 0, second.stdout + second.stderr
    assert_store_equals_books(sandbox, db_url)
    # an incremental cycle: QBO one CDC call; Xero its four change feeds (invoices changed)
    assert sandbox.ledger.count(kind="request") - calls <= 1 + 4

    status = arsync(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    by_name = {c["name"]: c for c in data["connectors"]}
    assert {c["health"] for c in by_name.values()} == {"ok"}
    assert {c["last_sync"]["outcome"] for c in by_name.values()} == {"ok"}
    assert by_name["books-qbo"]["company"] == qbo.name
    owed = {row["currency"]: row["total"] for row in by_name["books-qbo"]["aging"]}
    books: dict[str, Decimal] = {}
    for inv in company.invoices.values():
        if inv.balance > 0:
            books[inv.currency] = books.get(inv.currency, 0) + inv.balance
    assert {k: str(v) for k, v in books.items()} == owed
    assert "sandbox-qbo-secret" not in status.stdout and "access" not in json.dumps(
        by_name["books-qbo"]["counts"]
    )
    human = arsync(home, "status")
    assert "Days overdue" in human.stdout and "health      ok" in human.stdout
