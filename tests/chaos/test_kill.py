"""A sync killed (SIGKILL) at random points of an initial and an incremental sync: after a
restart the store equals the sandbox's books, and nothing was logged twice."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from sqlalchemy import func, select

from arsync.sandbox import SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.store import open_store
from arsync.store.schema import events
from tests.books import actual, differences, expected
from tests.e2e.test_sync_e2e import ARSYNC, SECRETS, arsync, connect, write_home
from tests.support import make_sandbox

KILLS = 6


def killed_syncs(home: Path, rng: random.Random, count: int) -> int:
    """Start `arsync sync` `count` times, killing each at a random moment; returns how many
    were killed before they finished."""
    env = {**os.environ, **SECRETS}
    killed = 0
    for _ in range(count):
        proc = subprocess.Popen(
            [*ARSYNC, "sync", "--home", str(home)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        time.sleep(rng.uniform(0.3, 3.0))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait()
    return killed


def test_killed_syncs_resume_without_losing_or_duplicating(tmp_path: Path) -> None:
    rng = random.Random(20261123)
    sandbox = make_sandbox(
        customers=60,
        invoices=2600,
        latency=0.05,
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    db = tmp_path / "arsync.db"
    with SandboxServer(sandbox) as server:
        home = tmp_path / "home"
        write_home(home, server.url, f"sqlite:///{db}")
        connect(home, "books-qbo")
        connect(home, "books-xero")

        assert killed_syncs(home, rng, KILLS) >= 1
        done = arsync(home, "sync")
        assert done.returncode == 0, done.stdout + done.stderr
        check(sandbox, db)

        qbo = next(t for t in sandbox.tenants() if t.platform == "qbo")
        xero = next(t for t in sandbox.tenants() if t.platform == "xero")
        company = sandbox.qbo.company(qbo.tenant_id)
        org = sandbox.xero.org(xero.tenant_id)
        open_qbo = [i.id for i in company.invoices.values() if i.balance > 0]
        open_xero = [
            i.invoice_id
            for i in org.invoices.values()
            if i.type == "ACCREC" and i.status == "AUTHORISED"
        ]
        for round_ in range(KILLS):
            sandbox.event("qbo", qbo.tenant_id, {"type": "payment", "invoice": open_qbo[round_]})
            sandbox.event("xero", xero.tenant_id, {"type": "payment", "invoice": open_xero[round_]})
            sandbox.event(
                "qbo", qbo.tenant_id, {"type": "create_invoice", "customer": 1, "amount": "7.00"}
            )
            killed_syncs(home, rng, 1)
        done = arsync(home, "sync")
        assert done.returncode == 0, done.stdout + done.stderr
        check(sandbox, db)


def check(sandbox: object, db: Path) -> None:
    from arsync.sandbox import Sandbox

    assert isinstance(sandbox, Sandbox)
    store = open_store(f"sqlite:///{db}")
    try:
        for tenant in sandbox.tenants():
            row = store.connector(f"books-{tenant.platform}")
            assert row is not None
            want = expected(sandbox, tenant.platform, tenant.tenant_id)
            assert differences(want, actual(store, row.id, want)) == []
        with store.engine.connect() as conn:
            twice = conn.execute(
                select(events.c.entity, events.c.external_id, events.c.action, events.c.detail)
                .where(events.c.action == "created")
                .group_by(events.c.entity, events.c.external_id, events.c.action, events.c.detail)
                .having(func.count() > 1)
            ).all()
        assert twice == []
    finally:
        store.engine.dispose()
