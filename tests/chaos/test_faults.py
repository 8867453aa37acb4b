"""Syncs through the sandbox's fault plan: 429 storms, 5xx, slow replies, dropped connections,
expired and revoked tokens and lost refresh replies. Afterwards the store equals the books, the
ledger shows no request over a limit, and no refresh token was lost."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.faults import FaultKind
from tests.books import actual, differences, expected
from tests.e2e.test_sync_e2e import arsync, connect, write_home
from tests.support import connector_row, make_sandbox, store_for


@pytest.fixture
def linked(tmp_path: Path) -> Iterator[tuple[Sandbox, Path, Path]]:
    # A ticking clock and the platforms' real limits: the governor has to keep under them.
    sandbox = make_sandbox(customers=20, invoices=120, frozen=False)
    db = tmp_path / "arsync.db"
    with SandboxServer(sandbox) as server:
        home = tmp_path / "home"
        write_home(home, server.url, f"sqlite:///{db}")
        for name in ("books-qbo", "books-xero"):
            # the connector files' raised limits are for the fast tests; these use the real ones
            path = home / "connectors" / f"{name}.toml"
            text = path.read_text().replace("per_minute = 100000\n", "")
            path.write_text(text)
        connect(home, "books-qbo")
        connect(home, "books-xero")
        yield sandbox, home, db


def store_matches(sandbox: Sandbox, db: Path) -> None:
    store = store_for(sandbox, f"sqlite:///{db}")
    try:
        for tenant in sandbox.tenants():
            row = connector_row(store, f"books-{tenant.platform}")
            assert row is not None
            want = expected(sandbox, tenant.platform, tenant.tenant_id)
            assert differences(want, actual(store, row.id, want)) == []
    finally:
        store.engine.dispose()


def no_limit_exceeded(sandbox: Sandbox) -> None:
    """The sandbox refused nothing for going over a limit (injected faults are not ours)."""
    assert sandbox.ledger.count(kind="rate_limited") == 0


def test_transport_faults_and_5xx_are_retried_through(linked: tuple[Sandbox, Path, Path]) -> None:
    sandbox, home, db = linked
    for kind, params in (
        (FaultKind.SERVER_ERROR, {"status": 503}),
        (FaultKind.DROP, {}),
        (FaultKind.SERVER_ERROR, {"status": 500}),
    ):
        sandbox.faults.add(kind=kind, platform="*", endpoint="GET *", times=1, params=params)
    sandbox.faults.add(kind=FaultKind.SLOW, platform="qbo", times=1, params={"delay": 0.5})
    done = arsync(home, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    store_matches(sandbox, db)
    no_limit_exceeded(sandbox)
    assert sandbox.ledger.count(kind="fault_injected") >= 4


def test_a_429_storm_is_waited_out(linked: tuple[Sandbox, Path, Path]) -> None:
    sandbox, home, db = linked
    sandbox.faults.add(
        kind=FaultKind.RATE_LIMIT, platform="xero", times=3, params={"retry_after": 1}
    )
    done = arsync(home, "sync", "books-xero")
    assert done.returncode == 0, done.stdout + done.stderr
    store = store_for(sandbox, f"sqlite:///{db}")
    row = connector_row(store, "books-xero")
    assert row is not None and row.tenant_id is not None
    tenant = row.tenant_id
    want = expected(sandbox, "xero", tenant)
    assert differences(want, actual(store, row.id, want)) == []
    store.engine.dispose()


def test_a_day_limit_parks_the_connector_and_spares_the_other(
    linked: tuple[Sandbox, Path, Path],
) -> None:
    sandbox, home, _db = linked
    sandbox.faults.add(
        kind=FaultKind.DAY_LIMIT, platform="xero", times=1, params={"retry_after": 30000}
    )
    done = arsync(home, "sync")
    assert done.returncode == 4  # transient: try later
    assert "books-xero" in done.stdout and "parked until" in done.stdout
    assert re.search(r"books-qbo +ok", done.stdout)
    calls = sandbox.ledger.count(platform="xero", kind="request")
    again = arsync(home, "sync", "books-xero")
    assert "parked until" in again.stdout
    assert again.returncode == 4  # still parked: still not synced, on every run until then
    assert sandbox.ledger.count(platform="xero", kind="request") == calls  # parked: no call
    status = arsync(home, "status", "books-xero")
    assert "parked" in status.stdout


def test_expired_tokens_and_a_lost_refresh_reply_lose_no_grant(
    linked: tuple[Sandbox, Path, Path],
) -> None:
    sandbox, home, db = linked
    sandbox.expire_access_tokens("qbo")
    sandbox.expire_access_tokens("xero")
    sandbox.faults.add(kind=FaultKind.LOST_REPLY, platform="*", endpoint="POST *token*", times=2)
    done = arsync(home, "sync")
    assert done.returncode == 0, done.stdout + done.stderr
    store_matches(sandbox, db)
    assert sandbox.ledger.count(kind="token_refreshed") >= 2
    # the grants still work afterwards: another sync with fresh expiries refreshes again
    sandbox.expire_access_tokens("qbo")
    sandbox.expire_access_tokens("xero")
    again = arsync(home, "sync")
    assert again.returncode == 0, again.stdout + again.stderr


def test_a_revoked_grant_needs_reconnecting_and_spares_the_other(
    linked: tuple[Sandbox, Path, Path],
) -> None:
    sandbox, home, db = linked
    sandbox.revoke_grants("xero")
    done = arsync(home, "sync")
    assert done.returncode == 3, done.stdout + done.stderr
    assert re.search(r"books-qbo +ok", done.stdout)
    assert "arsync connect books-xero" in done.stdout
    status = arsync(home, "status")
    assert "reconnect needed" in status.stdout
    later = arsync(home, "sync", "books-xero")
    assert "reconnect needed" in later.stdout
    connect(home, "books-xero")
    healed = arsync(home, "sync")
    assert healed.returncode == 0, healed.stdout + healed.stderr
    store_matches(sandbox, db)
