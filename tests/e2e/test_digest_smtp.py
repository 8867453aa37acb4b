"""The daily digest through a real SMTP server started by the test, on SQLite and PostgreSQL.

A London firm's QuickBooks connector emailed one reminder on Mon 30 Nov 2026; its digest for
Tue 1 Dec is due from 08:00. It must arrive once: a second `send` of the same day, a restart
(a new store object on the same database) and a second replica sending at the same moment send
nothing more. A try the server refused is tried again later and then arrives once; one whose
reply was lost, or whose process died while sending, is never sent again, and the next day's
digest says it may not have arrived.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from arsync.clock import FrozenClock
from arsync.config import Config
from arsync.domain import CompanyInfo, Customer, Page
from arsync.store import Store, open_store
from arsync.store.digests import DigestsRepo, DigestState
from arsync.store.states import OutboxState
from arsync.writeback.digest import DigestDue, Outcome, SentDigest, due, send
from arsync.writeback.mail import Mailer
from tests.e2e.test_mail_smtp import Inbox, Running, free_port, serve
from tests.support import invoice
from tests.unit.test_digest import add, config_of

NOW = datetime(2026, 12, 1, 8, 5, tzinfo=UTC)
DAY = date(2026, 12, 1)
ZONE = "Europe/London"


@dataclass
class World:
    url: str
    clock: FrozenClock
    store: Store
    config: Config
    inbox: Inbox

    def reopen(self) -> Store:
        """A restart: another store object on the same database."""
        self.store.close()
        self.store = open_store(self.url, self.clock)
        return self.store

    def state(self, day: date = DAY) -> DigestState | None:
        with self.store.reading() as tx:
            found = DigestsRepo(tx).get(ZONE, day)
        return found.state if found else None


@pytest.fixture
def smtp() -> Iterator[Running]:
    yield from serve(Inbox())


@pytest.fixture
def world(db_url: str, tmp_path: Path, smtp: Running) -> Iterator[World]:
    clock = FrozenClock(datetime(2026, 11, 30, 9, 0, tzinfo=UTC))
    store = open_store(db_url, clock)
    config = config_of(tmp_path, {"books": {"timezone": ZONE}}, port=smtp.port)
    with store.transaction() as tx:
        row, _ = tx.connectors.link(
            "books", "qbo", "realm-1", CompanyInfo("Harbor & Finch Ltd", "GBP", "GB"), at=tx.now
        )
        tx.records.apply_page(
            row.id,
            None,
            Page(
                "test",
                [
                    Customer("c1", "Acme Trading", "ap@acme.example", None, "GBP", True, tx.now),
                    invoice("1", "480.00", number="INV-1"),
                ],
                {"n": 1},
            ),
        )
        add(tx, row.id, "e1", kind="email", invoice_id="1")
        found = tx.outbox.get(row.id, "e1")
        assert found is not None
        tx.outbox.move(found, OutboxState.DONE, result={"to": "ap@acme.example"})
    clock.set(NOW - timedelta(hours=1))
    with store.transaction() as tx:
        tx.connectors.sync_finished(row.id, ok=True, error=None)
    clock.set(NOW)
    made = World(db_url, clock, store, config, smtp.inbox)
    try:
        yield made
    finally:
        made.store.close()


def received(inbox: Inbox) -> list[EmailMessage]:
    out = []
    for n in range(len(inbox.envelopes)):
        message = inbox.message(n)
        assert isinstance(message, EmailMessage)
        out.append(message)
    return out


def synced(world: World, at: datetime) -> None:
    world.clock.set(at)
    with world.store.transaction() as tx:
        row = tx.connectors.by_name("books")
        assert row is not None
        tx.connectors.sync_finished(row.id, ok=True, error=None)


def one_due(world: World) -> DigestDue:
    [made] = due(world.store, world.config, world.clock.now())
    assert (made.zone, made.connectors) == (ZONE, ("books",))
    return made


def test_the_digest_arrives_once_however_often_it_is_sent(world: World) -> None:
    assert due(world.store, world.config, NOW - timedelta(minutes=10)) == []  # 07:55 in London
    today = one_due(world)
    first = send(world.store, world.config, today)
    assert first.outcome is Outcome.SENT, first
    assert first.subject == "arsync: 1 reminder sent — Tue 1 Dec"
    [envelope] = world.inbox.envelopes
    # to the digest's address only: the letters' bcc copy is not made for the firm's own mail
    assert envelope.rcpt_tos == ["office@harbor.example"]
    [message] = received(world.inbox)
    assert message["Subject"] == first.subject
    assert message["Message-ID"] == "<arsync.digest.20261201.Europe.London@harbor.example>"
    body = message.get_body(("plain",))
    assert body is not None
    text = body.get_content()
    assert "1 reminder emailed." in text
    assert "09:00 books · INV-1 · Acme Trading: friendly reminder, reminder emailed" in text
    assert world.state() is DigestState.SENT
    # the same day again: nothing
    assert send(world.store, world.config, today).outcome is Outcome.TAKEN
    assert due(world.store, world.config, NOW + timedelta(hours=3)) == []
    # a restart: a new store object on the same database sends nothing more
    world.reopen()
    assert due(world.store, world.config, NOW + timedelta(hours=3)) == []
    assert send(world.store, world.config, today).outcome is Outcome.TAKEN
    assert len(world.inbox.envelopes) == 1
    # the next morning is another digest (a quiet one, after the night's sync)
    synced(world, NOW + timedelta(days=1) - timedelta(hours=1))
    world.clock.set(NOW + timedelta(days=1))
    tomorrow = one_due(world)
    assert tomorrow.day == DAY + timedelta(days=1)
    again = send(world.store, world.config, tomorrow)
    assert again.outcome is Outcome.SENT
    assert again.subject == "arsync: nothing needs you — Wed 2 Dec"
    assert len(world.inbox.envelopes) == 2


def test_two_replicas_at_the_same_moment_send_one_digest(world: World) -> None:
    today = one_due(world)
    outcomes: list[SentDigest] = []
    lock = threading.Lock()
    start = threading.Barrier(2)

    def replica() -> None:
        store = open_store(world.url, world.clock)
        try:
            start.wait()
            made = send(store, world.config, today)
        finally:
            store.close()
        with lock:
            outcomes.append(made)

    threads = [threading.Thread(target=replica) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(o.outcome.value for o in outcomes) == ["sent", "taken"]
    assert len(world.inbox.envelopes) == 1


def test_a_refused_try_is_tried_again_later_and_then_arrives_once(world: World) -> None:
    today = one_due(world)
    world.inbox.refuse_rcpt = "451 4.3.0 mailbox busy, try again later"
    first = send(world.store, world.config, today)
    assert first.outcome is Outcome.FAILED and "451" in (first.error or "")
    assert first.retry_at == NOW + timedelta(minutes=5)
    assert world.inbox.envelopes == []
    # not before its wait is over
    assert due(world.store, world.config, NOW + timedelta(minutes=4)) == []
    assert send(world.store, world.config, today).outcome is Outcome.TAKEN
    world.inbox.refuse_rcpt = None
    world.clock.advance(timedelta(minutes=5))
    [again] = due(world.store, world.config, world.clock.now())
    assert again.attempts == 1
    assert send(world.store, world.config, again).outcome is Outcome.SENT
    assert send(world.store, world.config, again).outcome is Outcome.TAKEN
    assert len(world.inbox.envelopes) == 1
    with world.store.reading() as tx:
        row = DigestsRepo(tx).get(ZONE, DAY)
    assert row is not None and row.attempts == 2 and row.error is None


def test_a_server_not_listening_sends_nothing_and_is_tried_again(world: World) -> None:
    elsewhere = config_of(world.config.home, {"books": {"timezone": ZONE}}, port=free_port())
    failed = send(world.store, elsewhere, one_due(world))
    assert failed.outcome is Outcome.FAILED and "cannot connect" in (failed.error or "")
    world.clock.advance(timedelta(minutes=5))
    assert send(world.store, world.config, one_due(world)).outcome is Outcome.SENT
    assert len(world.inbox.envelopes) == 1


def test_a_lost_reply_is_never_resent_and_the_next_digest_says_so(world: World) -> None:
    world.inbox.hang_up_after_data = True
    lost = send(world.store, world.config, one_due(world))
    assert lost.outcome is Outcome.UNKNOWN
    assert world.state() is DigestState.UNKNOWN
    world.inbox.hang_up_after_data = False
    world.clock.advance(timedelta(hours=6))
    assert due(world.store, world.config, world.clock.now()) == []
    assert len(world.inbox.envelopes) == 1  # it did arrive: a resend would have been a second
    world.clock.set(NOW + timedelta(days=1))
    assert send(world.store, world.config, one_due(world)).outcome is Outcome.SENT
    text = _text(received(world.inbox)[-1])
    assert "the digest of 1 Dec 2026 may not have reached you: the mail server took it" in text


class Dying(Mailer):
    """The process is killed while the message is on its way."""

    def send(self, message: EmailMessage) -> None:
        raise KeyboardInterrupt


def test_a_process_killed_while_sending_leaves_the_day_unsent_and_says_so(world: World) -> None:
    today = one_due(world)
    assert world.config.settings.mail is not None
    with pytest.raises(KeyboardInterrupt):
        send(world.store, world.config, today, mailer=Dying(world.config.settings.mail))
    assert world.state() is DigestState.SENDING
    world.reopen()
    world.clock.advance(timedelta(hours=2))
    assert due(world.store, world.config, world.clock.now()) == []
    assert send(world.store, world.config, today).outcome is Outcome.TAKEN
    assert world.inbox.envelopes == []
    world.clock.set(NOW + timedelta(days=1))
    assert send(world.store, world.config, one_due(world)).outcome is Outcome.SENT
    [message] = received(world.inbox)
    assert "the digest of 1 Dec 2026 may not have reached you: arsync stopped" in _text(message)
    assert "nothing needs you" not in str(message["Subject"])


def _text(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())
