"""The agency hand-over end to end, over real loopback HTTP on two linked companies.

On Tue 24 Nov 2026, 18:00 UTC, a Xero organisation (London) and a QuickBooks company
(California) hold, for one customer each and a few others:

- Xero `harbor`: an invoice paid in full in August (closed), one due 20 Sep with 200.00 paid
  (65 days overdue: the 60-day stage, emailed), one due 20 Oct (35 days overdue: the 30-day
  reminder, emailed in the same contact). A person hands `harbor` over to "Acme Recoveries" with
  `arsync handover`: the pack must hold every file, its manifest must verify, its CSV and JSON
  must agree with the store, its trail must hold the reminders with the addresses the platform
  emailed; the next run writes exactly one hand-over note per open invoice into the ledger, and
  nothing is emailed to `harbor` again as the clock moves past the 60- and 90-day stages, while
  `control`, an ordinary customer, is still chased.
- QuickBooks `late`: an invoice 95 days overdue (the 90-day stage, whose hand-over waits for
  approval) and one not yet due. Approved with `arsync approve`, the next run hands it over: the
  outbox action is done with its pack's path and manifest digest, and both invoices get a note.
- A pack whose writing fails half-way leaves nothing under its name and records nothing; a
  folder a killed hand-over left behind is cleared by the next one. An unknown customer exits 2
  and records nothing.

What the platforms performed is counted from the sandbox's ledger.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from arsync.collecting import BadInput, Collecting
from arsync.config import Config, load
from arsync.domain import HoldKind, Invoice, InvoiceStatus, Kind
from arsync.escalation.planner import Status
from arsync.logs import configure
from arsync.runtime import Runtime
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.sandbox.ledger import LedgerEntry
from arsync.store.states import Entity, OutboxState
from arsync.writeback import handover
from arsync.writeback.handover import MANIFEST, PackFailed, handover_command, verify
from arsync.writeback.run import UnitReport, run_once
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_sync_e2e import SECRETS, arsync, write_home
from tests.support import clock_of, make_sandbox

NOW = datetime(2026, 11, 24, 18, 0, tzinfo=UTC)
TODAY = NOW.date()
AGENCY = "Acme Recoveries"
FILES = {
    "statement.csv",
    "aging.csv",
    "invoices.csv",
    "trail.csv",
    "pack.json",
    "index.html",
    MANIFEST,
}


@dataclass
class World:
    sandbox: Sandbox
    config: Config
    home: Path
    packs: Path
    xero_tenant: str
    qbo_tenant: str
    #: label -> the platform's customer id
    customers: dict[str, str] = field(default_factory=dict)
    names: dict[str, str] = field(default_factory=dict)
    emails: dict[str, str] = field(default_factory=dict)
    #: label -> the platform's invoice id
    invoices: dict[str, str] = field(default_factory=dict)
    first: list[UnitReport] = field(default_factory=list)

    def run(self) -> list[UnitReport]:
        reports = run_once(self.config, [], clock=clock_of(self.sandbox))
        for report in reports:
            assert report.error is None, report.error
        return reports

    def at(self, when: datetime) -> None:
        self.sandbox.clock.set(when)


def _xero_invoice(world: World, who: str, amount: str, issued: datetime, terms: int) -> str:
    world.at(issued)
    made = world.sandbox.event(
        "xero",
        world.xero_tenant,
        {"type": "create_invoice", "contact": who, "amount": amount, "terms_days": terms},
    )
    return str(made["InvoiceID"])


def _xero_pay(world: World, invoice: str, amount: str | None, on: datetime) -> None:
    world.at(on)
    event: dict[str, Any] = {"type": "payment", "invoice": invoice, "date": on.date().isoformat()}
    if amount is not None:
        event["amount"] = amount
    world.sandbox.event("xero", world.xero_tenant, event)


def _qbo_invoice(world: World, who: str, amount: str, issued: datetime, due: date) -> str:
    world.at(issued)
    made = world.sandbox.event(
        "qbo",
        world.qbo_tenant,
        {"type": "create_invoice", "customer": who, "amount": amount, "due_date": due.isoformat()},
    )
    return str(made["invoice"])


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sandbox = make_sandbox(
        customers=8,
        invoices=0,
        start=NOW - timedelta(days=140),
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    tmp = tmp_path_factory.mktemp("handover")
    with pytest.MonkeyPatch.context() as env, SandboxServer(sandbox) as server:
        for key, value in SECRETS.items():
            env.setenv(key, value)
        configure(level="warning", fmt="json")
        home = tmp / "home"
        write_home(home, server.url, f"sqlite:///{tmp / 'state' / 'arsync.db'}")
        (tmp / "state").mkdir()
        tenants = {t.platform: t.tenant_id for t in sandbox.tenants()}
        world = World(
            sandbox, load(home), home, tmp / "state" / "handovers", tenants["xero"], tenants["qbo"]
        )
        org = sandbox.xero.org(world.xero_tenant)
        names = [c.name for c in org.contact_list]
        british = [
            c
            for c in org.contact_list
            if c.currency == "GBP" and c.email and names.count(c.name) == 1
        ]
        for label, contact in zip(("harbor", "other", "control"), british, strict=False):
            world.customers[label] = contact.contact_id
            world.names[label] = contact.name
            world.emails[label] = str(contact.email)
        company = sandbox.qbo.company(world.qbo_tenant)
        late = next(c for _, c in sorted(company.customers.items()) if c.email)
        world.customers["late"] = str(late.id)
        world.names["late"] = late.display_name
        day = timedelta(days=1)
        harbor = world.customers["harbor"]
        world.invoices["closed"] = _xero_invoice(world, harbor, "500.00", NOW - 120 * day, 30)
        _xero_pay(world, world.invoices["closed"], None, NOW - 100 * day)
        world.invoices["sixty"] = _xero_invoice(world, harbor, "900.00", NOW - 95 * day, 30)
        _xero_pay(world, world.invoices["sixty"], "200.00", NOW - 70 * day)
        world.invoices["thirty"] = _xero_invoice(world, harbor, "1200.00", NOW - 65 * day, 30)
        world.invoices["other"] = _xero_invoice(
            world, world.customers["other"], "410.00", NOW - 65 * day, 30
        )
        world.invoices["control"] = _xero_invoice(
            world, world.customers["control"], "640.00", NOW - 20 * day, 15
        )
        world.invoices["late"] = _qbo_invoice(
            world, world.customers["late"], "724.64", NOW - 125 * day, (NOW - 95 * day).date()
        )
        world.invoices["late-new"] = _qbo_invoice(
            world, world.customers["late"], "80.00", NOW - 5 * day, (NOW + 10 * day).date()
        )
        # linked now: a grant made 140 days ago would have lapsed
        world.at(NOW)
        connect(home, "books-xero")
        connect(home, "books-qbo")
        world.first = world.run()
        yield world


# -- reading what happened ------------------------------------------------------------------------
def _entries(world: World, kind: str, since: int = 0) -> list[LedgerEntry]:
    return world.sandbox.ledger.entries(kind=kind, since_seq=since)


def _invoice_of(entry: LedgerEntry) -> str:
    if entry.kind == "email_sent":
        return str(entry.detail.get("invoice") or entry.detail.get("InvoiceID"))
    refs = entry.detail.get("refs")
    if refs:
        return str(refs[0]).split(":", 1)[1]
    return str(entry.detail.get("invoice") or entry.detail.get("InvoiceID"))


def _position(world: World) -> int:
    entries = world.sandbox.ledger.entries()
    return entries[-1].seq if entries else 0


def _recorded(world: World) -> dict[str, int]:
    """How much each connector's store holds: events, holds, outbox actions."""
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        counts: dict[str, int] = {}
        with runtime.store.reading() as tx:
            for row in tx.connectors.all():
                counts[f"{row.name} events"] = len(tx.events.of(row.id))
                counts[f"{row.name} holds"] = len(tx.holds.history(row.id))
                counts[f"{row.name} actions"] = len(tx.outbox.of(row.id))
        return counts
    finally:
        runtime.close()


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


@dataclass
class Handed:
    path: Path
    output: str
    #: the sandbox's ledger position just after the hand-over
    after: int


@pytest.fixture(scope="module")
def handed(world: World) -> Handed:
    """A person hands `harbor` over with the CLI."""
    done = arsync(
        world.home,
        "handover",
        world.names["harbor"],
        "--connector",
        "books-xero",
        "--agency",
        AGENCY,
        "--reason",
        "no reply after the 60-day call",
    )
    assert done.returncode == 0, done.stderr
    folders = [p for p in (world.packs / "books-xero").iterdir() if not p.name.startswith(".")]
    assert len(folders) == 1, folders
    return Handed(folders[0], done.stdout, _position(world))


# -- the pack -------------------------------------------------------------------------------------
def test_the_pack_is_one_folder_of_every_file_named_for_the_customer_and_day(
    world: World, handed: Handed
) -> None:
    assert handed.path.name.endswith(f"-{TODAY.isoformat()}")
    assert {p.name for p in handed.path.iterdir()} == FILES
    assert str(handed.path) in handed.output
    assert AGENCY in handed.output
    # written whole: no hidden folder of a pack being written is left beside it
    assert [p.name for p in handed.path.parent.iterdir()] == [handed.path.name]


def test_the_manifest_lists_every_file_with_its_sha256(handed: Handed) -> None:
    lines = (handed.path / MANIFEST).read_text().splitlines()
    listed = {}
    for line in lines:
        digest, name = line.split("  ", 1)
        listed[name] = digest
    assert set(listed) == FILES - {MANIFEST}
    for name, digest in listed.items():
        assert hashlib.sha256((handed.path / name).read_bytes()).hexdigest() == digest, name
    assert verify(handed.path) == []
    # the manifest's own digest is in the paper trail's hand-over event, and said to the person
    digest = hashlib.sha256((handed.path / MANIFEST).read_bytes()).hexdigest()
    assert digest in handed.output


def _store_invoices(world: World, label: str, connector: str) -> list[Invoice]:
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name(connector)
            assert row is not None
            return sorted(
                (
                    i
                    for i in tx.records.live(row.id, Kind.INVOICE).values()
                    if isinstance(i, Invoice) and i.customer_id == world.customers[label]
                ),
                key=lambda i: i.id,
            )
    finally:
        runtime.close()


def test_the_csv_files_and_the_json_agree_with_the_store(world: World, handed: Handed) -> None:
    invoices = _store_invoices(world, "harbor", "books-xero")
    assert {i.id for i in invoices} == {world.invoices[x] for x in ("closed", "sixty", "thirty")}
    pack = json.loads((handed.path / "pack.json").read_text())
    rows = {r["invoice_id"]: r for r in _read(handed.path / "invoices.csv")}
    in_json = {i["invoice_id"]: i for i in pack["invoices"]}
    assert set(rows) == set(in_json) == {i.id for i in invoices}
    for invoice in invoices:
        for said in (rows[invoice.id], in_json[invoice.id]):
            assert said["number"] == invoice.number
            assert said["issue_date"] == invoice.issue_date.isoformat()
            assert said["due_date"] == invoice.due_date.isoformat()
            assert Decimal(said["total"]) == invoice.total
            assert Decimal(said["balance"]) == invoice.balance
            assert said["status"] == invoice.status.value
    # what was paid, and when
    sixty = in_json[world.invoices["sixty"]]
    assert Decimal(sixty["paid"]) == Decimal("200.00")
    assert [Decimal(a["amount"]) for a in sixty["allocations"]] == [Decimal("200.00")]
    assert sixty["allocations"][0]["date"] == (NOW - timedelta(days=70)).date().isoformat()
    assert in_json[world.invoices["closed"]]["status"] == InvoiceStatus.PAID.value
    assert "200.00" in rows[world.invoices["sixty"]]["allocations"]
    # the statement: the open invoices only, aged as of the firm's day
    statement = {r["invoice_id"]: r for r in _read(handed.path / "statement.csv")}
    assert set(statement) == {world.invoices["sixty"], world.invoices["thirty"]}
    assert statement[world.invoices["sixty"]]["days_overdue"] == "65"
    assert statement[world.invoices["sixty"]]["bucket"] == "61-90"
    assert statement[world.invoices["thirty"]]["days_overdue"] == "35"
    assert statement[world.invoices["thirty"]]["bucket"] == "31-60"
    aging = _read(handed.path / "aging.csv")
    assert aging == [
        {
            "currency": "GBP",
            "current": "0.00",
            "1-30": "0.00",
            "31-60": "1200.00",
            "61-90": "700.00",
            "90+": "0.00",
            "total": "1900.00",
        }
    ]
    assert pack["statement"]["totals"] == {"GBP": "1900.00"}
    customer = pack["customer"]
    assert customer["id"] == world.customers["harbor"]
    assert customer["name"] == world.names["harbor"]
    assert customer["email"] == world.emails["harbor"]
    assert pack["handover"]["agency"] == AGENCY
    assert pack["handover"]["reason"] == "no reply after the 60-day call"


def test_the_trail_holds_each_reminder_with_its_address_and_evidence(
    world: World, handed: Handed
) -> None:
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            emailed = tx.outbox.of(
                row.id,
                customer_id=world.customers["harbor"],
                kinds=["email"],
                states=[OutboxState.DONE],
            )
            notes = tx.outbox.of(
                row.id,
                customer_id=world.customers["harbor"],
                kinds=["note"],
                states=[OutboxState.DONE],
            )
    finally:
        runtime.close()
    assert emailed, "the first run emailed harbor"
    trail = _read(handed.path / "trail.csv")
    for action in emailed:
        found = [t for t in trail if t["action"] == action.id and t["event"] == "action_done"]
        assert len(found) == 1, action.id
        assert found[0]["channel"] == "email"
        assert found[0]["to"] == world.emails["harbor"] == action.result["to"]
        # Xero answers an email with no record of it: what it says, and no more
        assert found[0]["platform_at"] == str(action.result.get("at") or "")
        assert found[0]["at_local"] == f"{TODAY.isoformat()} 18:00"
    # each note's own words
    for note in notes:
        found = [t for t in trail if t["action"] == note.id and t["event"] == "action_done"]
        assert found and found[0]["text"] == note.result["note"]
    # the page shows them too, every value escaped
    page = (handed.path / "index.html").read_text()
    assert world.emails["harbor"] in page
    assert "@media print" in page
    assert "<script" not in page and "http://" not in page and "https://" not in page


def test_the_hand_over_is_recorded_with_its_pause_and_digest(world: World, handed: Handed) -> None:
    digest = hashlib.sha256((handed.path / MANIFEST).read_bytes()).hexdigest()
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            events = tx.events.of(
                row.id,
                entity=Entity.CUSTOMER,
                external_id=world.customers["harbor"],
                actions=["handover"],
            )
            holds = [
                h
                for h in tx.holds.active(row.id)
                if h.customer_id == world.customers["harbor"] and h.kind is HoldKind.PAUSE
            ]
    finally:
        runtime.close()
    assert len(events) == 1
    detail = events[0].detail
    assert detail["agency"] == AGENCY
    assert detail["pack"] == str(handed.path)
    assert detail["manifest_sha256"] == digest
    assert detail["by"]
    assert len(holds) == 1 and holds[0].until is None
    assert holds[0].reason == f"handed over to {AGENCY} on 24 Nov 2026"


def test_a_second_hand_over_of_the_same_customer_is_refused(world: World, handed: Handed) -> None:
    before = _recorded(world)
    with pytest.raises(BadInput, match="was handed over to Acme Recoveries"):
        handover_command(
            world.config,
            world.names["harbor"],
            None,
            "books-xero",
            None,
            clock=clock_of(world.sandbox),
        )
    assert _recorded(world) == before
    assert [p.name for p in handed.path.parent.iterdir()] == [handed.path.name]


# -- the runs that follow -------------------------------------------------------------------------
@dataclass
class Next:
    notes: list[LedgerEntry]
    notes_after: list[LedgerEntry]


@pytest.fixture(scope="module")
def next_runs(world: World, handed: Handed) -> Next:
    """The next run after `harbor`'s hand-over, and one more at the same moment."""
    world.run()
    middle = _position(world)
    world.run()
    return Next(_entries(world, "note_added", handed.after), _entries(world, "note_added", middle))


def test_the_next_run_writes_one_hand_over_note_per_open_invoice(
    world: World, next_runs: Next
) -> None:
    harbor = {world.invoices["sixty"], world.invoices["thirty"]}
    mine = [e for e in next_runs.notes if _invoice_of(e) in harbor]
    assert sorted(_invoice_of(e) for e in mine) == sorted(harbor)
    for entry in mine:
        assert f"handed over to {AGENCY}" in str(entry.detail)
    assert next_runs.notes_after == []


@dataclass
class Approved:
    action: str
    result: dict[str, Any]
    since: int


@pytest.fixture(scope="module")
def approved(world: World, next_runs: Next) -> Approved:
    """The 90-day stage's hand-over of `late`, approved with the CLI, done by the next run."""
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-qbo")
            assert row is not None
            waiting = tx.outbox.of(
                row.id, kinds=["handover"], states=[OutboxState.AWAITING_APPROVAL]
            )
    finally:
        runtime.close()
    assert [w.invoice_id for w in waiting] == [world.invoices["late"]]
    action = waiting[0].id
    said = arsync(world.home, "approve", action[:10])
    assert said.returncode == 0, said.stderr
    since = _position(world)
    world.run()
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-qbo")
            assert row is not None
            done = tx.outbox.get(row.id, action)
    finally:
        runtime.close()
    assert done is not None
    assert done.state is OutboxState.DONE, (done.state, done.reason)
    return Approved(action, done.result, since)


def test_an_approved_hand_over_is_done_by_the_dispatcher_with_its_pack(
    world: World, approved: Approved
) -> None:
    pack = Path(approved.result["pack"])
    assert pack.parent == world.packs / "books-qbo"
    assert pack.name.endswith(f"-{TODAY.isoformat()}")
    assert {p.name for p in pack.iterdir()} == FILES
    assert verify(pack) == []
    digest = hashlib.sha256((pack / MANIFEST).read_bytes()).hexdigest()
    assert approved.result["manifest_sha256"] == digest
    assert approved.result["agency"] == handover.DEFAULT_AGENCY
    statement = {r["invoice_id"] for r in _read(pack / "statement.csv")}
    assert statement == {world.invoices["late"], world.invoices["late-new"]}
    trail = _read(pack / "trail.csv")
    assert any(t["event"] == "action_approved" and t["action"] == approved.action for t in trail)
    # QuickBooks says when it emailed the final notice and how: its evidence is in the trail
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-qbo")
            assert row is not None
            emailed = tx.outbox.of(
                row.id,
                invoice_id=world.invoices["late"],
                kinds=["email"],
                states=[OutboxState.DONE],
            )
    finally:
        runtime.close()
    assert len(emailed) == 1
    found = [t for t in trail if t["action"] == emailed[0].id and t["event"] == "action_done"]
    assert len(found) == 1
    assert found[0]["to"] == emailed[0].result["to"]
    assert found[0]["platform_at"] == emailed[0].result["at"]
    evidence = emailed[0].result["evidence"]
    assert evidence
    assert found[0]["evidence"] == (
        evidence if isinstance(evidence, str) else json.dumps(evidence, sort_keys=True)
    )
    # a note on each open invoice reached the ledger, in the same run
    notes = [
        e
        for e in _entries(world, "note_added", approved.since)
        if "handed over to the collection agency" in str(e.detail)
    ]
    assert sorted(_invoice_of(e) for e in notes) == sorted(
        [world.invoices["late"], world.invoices["late-new"]]
    )


@dataclass
class Later:
    emails: list[LedgerEntry]
    planned: dict[str, Status]


@pytest.fixture(scope="module")
def later(world: World, handed: Handed, approved: Approved) -> Later:
    """The runs as the clock moves past harbor's 60- and 90-day stages: 6 weeks on, then 10
    (Tuesdays, 18:00 UTC: business days, in both firms' quiet hours)."""
    for weeks in (6, 10):
        world.at(NOW + timedelta(weeks=weeks))
        world.run()
    with Collecting(world.config, clock_of(world.sandbox)) as collecting:
        planned = collecting.planned(["books-xero"], 0)[0]
    statuses = {d.invoice_id: d.status for d in planned.plan.decisions if d.invoice_id}
    return Later(_entries(world, "email_sent", handed.after), statuses)


def test_nothing_more_is_emailed_to_a_customer_handed_over(world: World, later: Later) -> None:
    emailed = {_invoice_of(e) for e in later.emails}
    handed_over = {world.invoices[x] for x in ("sixty", "thirty", "late", "late-new")}
    assert emailed.isdisjoint(handed_over)
    # while a customer not handed over is still chased: the clock did move past a stage
    assert world.invoices["control"] in emailed
    # and the planner plans nothing for harbor: its invoices are held
    assert later.planned[world.invoices["sixty"]] is Status.HELD
    assert later.planned[world.invoices["thirty"]] is Status.HELD


# -- failures -------------------------------------------------------------------------------------
def test_a_pack_that_fails_half_way_leaves_nothing_and_records_nothing(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = world.packs / "books-xero"
    before_files = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    before = _recorded(world)
    written: list[Path] = []
    real = handover._write

    def full_disk(path: Path, data: bytes) -> None:
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        real(path, data)
        written.append(path)

    monkeypatch.setattr(handover, "_write", full_disk)
    with pytest.raises(PackFailed, match="No space left on device"):
        handover_command(
            world.config,
            world.names["other"],
            AGENCY,
            "books-xero",
            None,
            clock=clock_of(world.sandbox),
        )
    assert len(written) == 3
    assert sorted(p.name for p in folder.iterdir()) == before_files
    assert _recorded(world) == before


def test_a_folder_a_killed_hand_over_left_is_cleared_by_the_next(world: World) -> None:
    folder = world.packs / "books-xero"
    day = world.sandbox.clock.now().astimezone(ZoneInfo("Europe/London")).date()
    slug = handover.slug(world.names["other"])
    leftover = folder / f".{slug}-{day.isoformat()}.killed{handover.PARTIAL}"
    leftover.mkdir(parents=True)
    (leftover / "statement.csv").write_text("half")
    said = handover_command(
        world.config,
        world.names["other"],
        AGENCY,
        "books-xero",
        "gone quiet",
        clock=clock_of(world.sandbox),
    )
    assert not leftover.exists()
    pack = folder / f"{slug}-{day.isoformat()}"
    assert str(pack) in said
    assert verify(pack) == []


def test_an_unknown_customer_exits_2_and_records_nothing(world: World) -> None:
    before = _recorded(world)
    listing = sorted(str(p) for p in world.packs.rglob("*")) if world.packs.exists() else []
    said = arsync(world.home, "handover", "Nobody Of That Name", "--agency", AGENCY)
    assert said.returncode == 2, said.stderr
    assert "Nobody Of That Name" in said.stderr
    assert _recorded(world) == before
    assert (sorted(str(p) for p in world.packs.rglob("*")) if world.packs.exists() else []) == (
        listing
    )


def test_an_invoice_is_not_a_customer_to_hand_over(world: World) -> None:
    runtime = Runtime.open(world.config, clock_of(world.sandbox))
    try:
        with runtime.store.reading() as tx:
            row = tx.connectors.by_name("books-xero")
            assert row is not None
            found = tx.records.by_ids(row.id, Kind.INVOICE, [world.invoices["control"]])
    finally:
        runtime.close()
    invoice = found[world.invoices["control"]]
    assert isinstance(invoice, Invoice) and invoice.number
    said = arsync(world.home, "handover", invoice.number, "--connector", "books-xero")
    assert said.returncode == 2
    assert "is an invoice" in said.stderr


def test_what_the_ledger_says_is_escaped_on_the_page_and_inert_in_a_spreadsheet(
    handed: Handed,
) -> None:
    doc = json.loads((handed.path / "pack.json").read_text())
    doc["customer"]["name"] = '<script>alert("x")</script>'
    doc["trail"][0]["text"] = '=HYPERLINK("http://evil.example")'
    files = handover.contents(doc)
    page = files["index.html"].decode()
    assert "<script>" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    trail = list(csv.DictReader(files["trail.csv"].decode().splitlines()))
    assert trail[0]["text"] == '\'=HYPERLINK("http://evil.example")'
    # amounts below zero stay numbers
    assert handover._cell("-10") == "-10"
