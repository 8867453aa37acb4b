"""Letters end to end: the final-notice stage sends one letter per customer through a real SMTP
server, listing every overdue invoice, and a copy goes into the ledger as a note on each.

A Xero organisation (London) has one customer with two invoices past 90 days on Tue 24 Nov 2026
(due Mon 3 Aug and Wed 12 Aug: the final notice of the standard policy, whose actions are an
email, a letter, a note and a hand-over waiting for approval) and a second customer with one.
`run --once` with `[mail]` pointing at an SMTP server the test starts (aiosmtpd, on loopback)
must deliver exactly two letters: the first customer's lists both invoices; each letter's
Message-ID derives from its first action's id. Each invoice gets the stage's note and a note
recording the letter. A second run sends nothing more. Without a mail server the letters wait
for a person and nothing is lost.
"""

from __future__ import annotations

import email
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as Server
from aiosmtpd.smtp import Envelope, Session

from arsync.config import load
from arsync.logs import configure
from arsync.sandbox import Sandbox, SandboxServer
from arsync.sandbox.core import QboLimits, XeroLimits
from arsync.store.outbox import OutboxRow
from arsync.store.states import OutboxState
from arsync.writeback.run import UnitReport, run_once
from tests.e2e.test_escalation_scenarios import connect
from tests.e2e.test_mail_smtp import free_port
from tests.e2e.test_sync_e2e import SECRETS, write_home
from tests.support import clock_of, make_sandbox

NOW = datetime(2026, 11, 24, 14, 0, tzinfo=UTC)
S = OutboxState


@dataclass
class Inbox:
    envelopes: list[Envelope] = field(default_factory=list)

    async def handle_DATA(self, server: Server, session: Session, envelope: Envelope) -> str:
        self.envelopes.append(envelope)
        return "250 2.0.0 queued"

    def messages(self) -> list[EmailMessage]:
        out = []
        for envelope in self.envelopes:
            assert isinstance(envelope.content, bytes)
            message = email.message_from_bytes(envelope.content, policy=default)
            assert isinstance(message, EmailMessage)
            out.append(message)
        return out


@dataclass
class World:
    sandbox: Sandbox
    home: Path
    inbox: Inbox
    invoices: dict[str, str]
    contacts: dict[str, str]
    first: list[UnitReport] = field(default_factory=list)
    before: int = 0
    between: int = 0

    def rows(self) -> list[OutboxRow]:
        from arsync.runtime import Runtime

        runtime = Runtime.open(load(self.home), clock_of(self.sandbox))
        try:
            with runtime.store.reading() as tx:
                row = tx.connectors.by_name("books-xero")
                assert row is not None
                return tx.outbox.of(row.id)
        finally:
            runtime.close()


def _raise(sandbox: Sandbox, tenant: str, contact: str, due: date, amount: str) -> str:
    made = sandbox.event(
        "xero",
        tenant,
        {"type": "create_invoice", "contact": contact, "amount": amount, "currency": "GBP"},
    )
    ident = str(made["InvoiceID"])
    sandbox.event("xero", tenant, {"type": "edit", "invoice": ident, "due_date": due.isoformat()})
    return ident


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    sandbox = make_sandbox(
        customers=6,
        invoices=0,
        start=NOW,
        qbo=QboLimits(per_second=10_000, per_minute=100_000),
        xero=XeroLimits(per_minute=100_000, per_day=1_000_000),
    )
    tmp = tmp_path_factory.mktemp("letters")
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with pytest.MonkeyPatch.context() as env, SandboxServer(sandbox) as server:
            for key, value in SECRETS.items():
                env.setenv(key, value)
            configure(level="warning", fmt="json")
            home = tmp / "home"
            write_home(home, server.url, f"sqlite:///{tmp / 'arsync.db'}")
            settings = home / "config" / "arsync.toml"
            settings.write_text(
                settings.read_text()
                + f'[mail]\nhost = "127.0.0.1"\nport = {port}\nsecurity = "none"\n'
                + 'from_address = "accounts@kestrel.example"\n'
            )
            connect(home, "books-xero")
            tenant = next(t.tenant_id for t in sandbox.tenants() if t.platform == "xero")
            org = sandbox.xero.org(tenant)
            people = [c for c in org.contact_list if c.currency == "GBP" and c.email][:2]
            contacts = {"two": people[0].contact_id, "one": people[1].contact_id}
            invoices = {
                "two-a": _raise(sandbox, tenant, contacts["two"], date(2026, 8, 3), "1200.00"),
                "two-b": _raise(sandbox, tenant, contacts["two"], date(2026, 8, 12), "300.50"),
                "one": _raise(sandbox, tenant, contacts["one"], date(2026, 8, 5), "640.00"),
            }
            made = World(sandbox, home, inbox, invoices, contacts)
            made.before = len(sandbox.ledger.entries())
            made.first = run_once(load(home), ["books-xero"], clock=clock_of(sandbox))
            made.between = len(sandbox.ledger.entries())
            run_once(load(home), ["books-xero"], clock=clock_of(sandbox))
            yield made
    finally:
        controller.stop()


def _notes(world: World, since: int, until: int | None = None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for e in world.sandbox.ledger.entries(kind="note_added", since_seq=since):
        if until is not None and e.seq > until:
            continue
        out.setdefault(str(e.detail["invoice"]), []).append(str(e.detail["details"]))
    return out


def test_one_letter_per_customer_lists_every_overdue_invoice(world: World) -> None:
    assert all(r.error is None for r in world.first), world.first
    messages = world.inbox.messages()
    assert len(messages) == 2
    by_subject: dict[str, Any] = {}
    for message in messages:
        body = message.get_body(("plain",))
        assert body is not None
        by_subject[str(message["To"])] = body.get_content()
    tenant = next(t.tenant_id for t in world.sandbox.tenants() if t.platform == "xero")
    org = world.sandbox.xero.org(tenant)
    two = org.contacts[world.contacts["two"].lower()]
    assert two.email is not None
    text = next(v for k, v in by_subject.items() if two.email in k)
    numbers = [org.invoices[world.invoices[x].lower()].number for x in ("two-a", "two-b")]
    assert all(n in text for n in numbers), text
    assert "1,500.50" in text  # both balances together
    html = next(m.get_body(("html",)) for m in messages if two.email in str(m["To"]))
    assert html is not None and numbers[0] in html.get_content()


def test_the_message_id_derives_from_the_first_actions_id(world: World) -> None:
    letters = [r for r in world.rows() if r.kind == "letter"]
    assert {r.state for r in letters} == {S.DONE}
    leads = {r.result["lead"] for r in letters}
    ids = {str(m["Message-ID"]) for m in world.inbox.messages()}
    assert ids == {f"<arsync.{lead}@kestrel.example>" for lead in leads}


def test_each_invoice_gets_the_stage_note_and_a_copy_of_the_letter(world: World) -> None:
    notes = _notes(world, world.before, world.between)
    assert set(notes) == set(world.invoices.values())
    for texts in notes.values():
        assert len(texts) == 2, texts
        assert sum("letter sent to" in t for t in texts) == 1, texts
        assert sum("final notice emailed to" in t for t in texts) == 1, texts
        assert all(len(t.encode("utf-16-le")) // 2 <= 250 for t in texts)


def test_a_second_run_sends_no_second_letter(world: World) -> None:
    assert len(world.inbox.envelopes) == 2
    assert _notes(world, world.between) == {}
    assert world.sandbox.ledger.entries(kind="email_sent", since_seq=world.between) == []


def test_the_hand_over_still_waits_for_approval(world: World) -> None:
    handovers = [r for r in world.rows() if r.kind == "handover"]
    assert len(handovers) == 3
    assert {r.state for r in handovers} == {S.AWAITING_APPROVAL}
