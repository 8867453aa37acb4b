"""The command line as a user meets it: help, the demo, and the standalone sandbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from arsync.demo import CompanyDemo, DemoRun, collect, render
from arsync.domain import HoldKind, HoldState
from arsync.sandbox import LedgerEntry, Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits
from arsync.sandbox.server import free_port
from arsync.store import Store
from arsync.store.states import OutboxState
from arsync.writeback.handover import slug
from tests.support import make_sandbox, store_for

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


@dataclass
class Walked:
    """One demo walk over a test sandbox (its clock fixed), with what it returned."""

    sandbox: Sandbox
    store: Store
    run: DemoRun

    def company(self, platform: str) -> CompanyDemo:
        return next(d for d in self.run.companies if d.tenant.platform == platform)

    def connector_id(self, demo: CompanyDemo) -> int:
        with self.store.reading() as tx:
            row = tx.connectors.by_name(demo.name)
            assert row is not None
            return row.id


@pytest.fixture(scope="module")
def walked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Walked]:
    # QuickBooks' daily cap on emails set low, so that the email channel is parked some days
    sandbox = make_sandbox(customers=15, invoices=120, qbo=QboLimits(emails_per_day=6))
    store = store_for(sandbox, f"sqlite:///{tmp_path_factory.mktemp('demo') / 'demo.db'}")
    try:
        with SandboxServer(sandbox) as server:
            walk = collect(server, store)
        yield Walked(sandbox, store, walk)
    finally:
        store.engine.dispose()


def test_demo_figures_equal_the_books_read_over_http(walked: Walked) -> None:
    sandbox, walk = walked.sandbox, walked.run
    assert {d.tenant.platform for d in walk.companies} == {"qbo", "xero"}
    for demo in walk.companies:
        assert demo.first.outcome == "ok" and demo.failed_syncs == []
        assert demo.syncs == walk.days == 100  # one sync each morning
        assert demo.start is not None and demo.end is not None and demo.status is not None
        assert (demo.end - demo.start).days == walk.days - 1 and demo.today == demo.end
        # the aging, from the store after the last morning's sync, is what the books say now
        by_currency = {row["currency"]: Decimal(row["total"]) for row in demo.status.aging}
        assert by_currency == open_balances_now(sandbox, demo.tenant.platform)
        # every payment the demo made is in the books, and counted once in its week
        assert demo.payments
        for paid in demo.payments:
            assert balance_of(sandbox, demo, paid.invoice_id) == 0
        weeks = Counter[str]()
        for week in demo.weeks.values():
            weeks.update(week)
        assert weeks["paid"] == len(demo.payments)
        # the weeks' emails and notes are the platform's own count of them
        tenant = demo.tenant
        sent = sandbox.ledger.entries(
            platform=tenant.platform, kind="email_sent", tenant=tenant.tenant_id
        )
        noted = sandbox.ledger.entries(
            platform=tenant.platform, kind="note_added", tenant=tenant.tenant_id
        )
        assert weeks["emailed"] == len(sent) > 0
        assert weeks["notes"] == len(noted) > 0


def test_each_company_tells_its_story(walked: Walked) -> None:
    qbo, xero = walked.company("qbo"), walked.company("xero")
    said = {d.tenant.platform: " | ".join(w for _, w in d.highlights) for d in (qbo, xero)}
    with walked.store.reading() as tx:
        disputes = [
            h for h in tx.holds.history(walked.connector_id(qbo)) if h.kind is HoldKind.DISPUTE
        ]
        promises = [
            h for h in tx.holds.history(walked.connector_id(xero)) if h.kind is HoldKind.PROMISE
        ]
        expected = tx.outbox.of(walked.connector_id(xero), kinds=("expect",))
    # QuickBooks: a customer disputes, and the invoice is held (the dispute noted on it)
    assert [(h.state, h.invoice_id) for h in disputes] == [(HoldState.ACTIVE, qbo.story_invoice)]
    assert "disputed" in said["qbo"] and "arsync noted the dispute on" in said["qbo"]
    # ... a customer pays right after the morning's sync: nothing of the stage goes out
    assert sum(w["skipped_paid"] for w in qbo.weeks.values()) >= 1
    assert "had paid it since the morning's sync, so nothing of its" in said["qbo"]
    # ... and QuickBooks' daily cap on emails parked the email channel
    assert qbo.parked
    # Xero: a customer promises, the Expected Date is set, the payment keeps the promise
    (promise,) = promises
    assert promise.state is HoldState.KEPT and promise.invoice_id == xero.story_invoice
    assert [r.state for r in expected] == [OutboxState.DONE]
    assert "set its Expected Date to" in said["xero"]
    assert "arsync recorded the promise as kept" in said["xero"]
    # one hand-over, approved by the owner: its evidence pack, whole
    packs = [d.pack for d in (qbo, xero) if d.pack is not None]
    assert len(packs) == 1
    assert {"MANIFEST.sha256", "pack.json", "index.html", "trail.csv"} <= set(packs[0].files)
    assert packs[0].folder.startswith(slug(packs[0].customer))


def test_the_notes_shown_are_read_back_from_the_platform(walked: Walked) -> None:
    for demo in walked.run.companies:
        shown = demo.shown
        assert shown is not None and shown.notes
        assert all(n.at is not None for n in shown.notes)
        written = [
            str(e.detail.get("note") or e.detail.get("details"))
            for e in walked.sandbox.ledger.entries(
                platform=demo.tenant.platform, kind="note_added", tenant=demo.tenant.tenant_id
            )
            if ledger_invoice(e) == shown.invoice_id.lower()
        ]
        texts = [n.text for n in shown.notes]
        assert written and set(written) <= set(texts)
        if demo.tenant.platform == "qbo":
            assert sorted(texts) == sorted(written)  # QuickBooks holds only arsync's notes


@pytest.mark.parametrize("platform", ["qbo", "xero"])
def test_the_ledger_holds_one_email_and_one_note_per_stage_reported(
    walked: Walked, platform: str
) -> None:
    """Counted from the sandbox's ledger: each stage the demo reports was emailed once (when
    it emailed) and noted once on its invoice; nothing else was emailed; and nothing was
    emailed or noted on an invoice after it was paid."""
    demo = walked.company(platform)
    tenant = demo.tenant.tenant_id
    entries = walked.sandbox.ledger.entries(platform=platform, tenant=tenant)
    emails = Counter(ledger_invoice(e) for e in entries if e.kind == "email_sent")
    stage_notes: Counter[tuple[str, str]] = Counter()
    with walked.store.reading() as tx:
        for e in entries:
            if e.kind != "note_added":
                continue
            text = str(e.detail.get("note") or e.detail.get("details"))
            (row,) = tx.outbox.find(text.rsplit("ref ", 1)[1].strip())
            if not row.stage.startswith("recorded:"):  # a dispute's, a letter's own notes
                stage_notes[(ledger_invoice(e), row.stage)] += 1
    reported = Counter((s.invoice_id.lower(), s.stage) for s in demo.stages)
    assert reported and set(reported.values()) == {1}
    assert stage_notes == reported
    assert emails == Counter(s.invoice_id.lower() for s in demo.stages if s.emailed)
    for paid in demo.payments:
        (event,) = [
            e
            for e in entries
            if e.kind == "business_event"
            and e.detail["event"].get("type") == "payment"
            and str(e.detail["event"]["invoice"]).lower() == paid.invoice_id.lower()
        ]
        after = [
            e
            for e in entries
            if e.seq > event.seq
            and e.kind in ("email_sent", "note_added")
            and ledger_invoice(e) == paid.invoice_id.lower()
        ]
        assert after == [], paid


def test_the_letters_reached_the_sandboxs_mail_server(walked: Walked) -> None:
    walk = walked.run
    with walked.store.reading() as tx:
        sent = {
            r.result["message_id"]
            for d in walk.companies
            for r in tx.outbox.of(walked.connector_id(d), kinds=("letter",))
            if r.state is OutboxState.DONE
        }
    assert sent and {str(m.message["Message-ID"]).strip() for m in walk.letters} == sent
    assert len(walk.letters) == len(sent)
    for demo in walk.companies:
        assert demo.letters and all(m.sender == demo.from_address for m in demo.letters)
    assert sum(len(d.letters) for d in walk.companies) == len(walk.letters)


def test_the_demo_says_what_happened(
    walked: Walked, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "400")
    render(walked.run)
    out = capsys.readouterr().out
    qbo, xero = walked.company("qbo"), walked.company("xero")
    assert out.count("then 100 days of the standard policy") == 2
    for _, words in qbo.highlights + xero.highlights:
        assert words in out
    assert f"the email channel was parked {len(qbo.parked)} day" in out
    assert "by QuickBooks' daily cap on emails" in out
    for demo, where in ((qbo, "QuickBooks Online"), (xero, "Xero")):
        assert demo.shown is not None
        assert f"of {demo.shown.customer} as {where} shows it now" in out
        for note in demo.shown.notes:
            assert note.text in out
    assert f"received {len(walked.run.letters)} letters, e.g." in out
    assert "Days overdue" in out


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


def balance_of(sandbox: Sandbox, demo: CompanyDemo, invoice_id: str) -> Decimal:
    """What the sandbox's books say is owed on one invoice now."""
    tenant = demo.tenant.tenant_id
    if demo.tenant.platform == "qbo":
        return sandbox.qbo.company(tenant).invoices[int(invoice_id)].balance
    return sandbox.xero.org(tenant).invoices[invoice_id.lower()].amount_due


def ledger_invoice(entry: LedgerEntry) -> str:
    """The invoice a ledger entry (an email, a note) is about, in lower case."""
    refs = entry.detail.get("refs")
    if refs:
        return str(refs[0]).split(":", 1)[1].lower()
    return str(entry.detail.get("invoice")).lower()


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
