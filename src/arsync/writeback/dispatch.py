"""Dispatch: claim, read fresh, write once with the action's id as the key, record; settle doubt.

One `Dispatcher` works one connector's outbox. Each pass:

1. settles what an earlier run left uncertain: a claim whose lease lapsed goes back to ready if
   nothing was sent (`sent_at` is written, and committed, just before a write leaves), else it
   is unknown; an unknown action is read back from the platform (a note by the marker its text
   carries, an email by the platform's own record of it) and is done when its effect is found,
   retried under the same key when the platform's record proves it absent, retried under the
   same key while the platform still remembers that key, and otherwise waits for a person. It
   is never resent blindly.
2. keeps the guardrails: nothing is sent while the last good sync is older than the policy
   allows; a contact waits for the customer's quiet hours and business days (checked again now,
   not only at planning); a channel whose daily cap is spent is parked until the next day.
3. claims ready actions under a lease, reads their invoices fresh from the platform in batches,
   skips what no longer calls for them (paid, voided, credited, held, due date moved, below the
   minimum, a payment in flight) and writes the rest: reminders one by one, notes in batches.
   A note waits for the other actions of its stage, so that it can say what they did.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from arsync.config.models import MailSettings
from arsync.connectors.base import FreshInvoice, NoteWrite, Trail, Writer
from arsync.domain import Customer, Invoice, Kind, Money
from arsync.errors import (
    ArsyncError,
    AuthError,
    EmailCapReached,
    NoEmailAddress,
    OutcomeUnknown,
    Parked,
    PermanentError,
    TransientError,
)
from arsync.escalation.calendar import Calendar
from arsync.escalation.planner import action_id, in_flight
from arsync.escalation.policy import Policy, Stage, Tone
from arsync.escalation.reading import SEND_TO_SETTING, TIMEZONE_SETTING, FirmZone, person
from arsync.store import ConnectorRow, Store
from arsync.store.outbox import FINAL, OutboxRow
from arsync.store.states import OutboxState
from arsync.writeback.decide import Go, Skip, verdict
from arsync.writeback.ledger import RECORDED, record_in_ledger
from arsync.writeback.mail import Mailer, compose
from arsync.writeback.words import BUILTIN_DIR, CallOutcome, Event, LetterFacts, NoteFacts, Words

log = structlog.get_logger("arsync.dispatch")
S = OutboxState

#: the kinds whose effect reaches the customer: they keep quiet hours and business days
CONTACT_KINDS = frozenset({"email", "letter", "call"})
#: states in which arsync itself is still working an action (a stage's note waits for them; not
#: for one waiting for a person or for approval, which may take days)
IN_HAND = frozenset({S.PLANNED, S.READY, S.CLAIMED, S.RETRYING, S.UNKNOWN})
#: the kinds a stage's note reports on (a hand-over writes its own notes)
REPORTED_KINDS = ("email", "letter", "call")
#: how long a stage's note waits, at least, for the other actions of its stage
NOTE_WAIT = timedelta(minutes=5)
#: waits before the next try of a passing failure, by attempt (then it is dead)
BACKOFF = (
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=12),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
#: the platform's clock and ours may differ: its record of an email counts from this much before
#: our own record of sending it
CLOCK_MARGIN = timedelta(minutes=5)


def _tone(value: str) -> Tone:
    try:
        return Tone(value)
    except ValueError:
        return Tone.POLITE


#: characters of the action id a note carries as its reference
MARKER_LENGTH = 10


def marker(action: str) -> str:
    """The short reference every note carries, so read-back finds exactly this action's note
    (50 bits of the id: unique among one invoice's notes beyond doubt)."""
    return action[:MARKER_LENGTH]


def worker_name() -> str:
    """Who holds a lease: host, process and a random tail (a restarted process is another)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


@dataclass
class Outcome:
    """One action's result in this pass, for the run's report."""

    action: str
    kind: str
    subject: str
    state: OutboxState
    words: str
    #: what a person calls it: the invoice's number and the customer's name
    label: str = ""


@dataclass
class Dispatched:
    connector: str
    outcomes: list[Outcome] = field(default_factory=list)
    #: why nothing more was sent (stale sync, lost credentials...), said once
    stopped: str | None = None
    released: int = 0

    def count(self, state: OutboxState) -> int:
        return sum(1 for o in self.outcomes if o.state is state)


class Dispatcher:
    """One connector's outbox, worked through its platform's `Writer`."""

    def __init__(
        self,
        *,
        store: Store,
        row: ConnectorRow,
        writer: Writer,
        policy: Policy,
        firm: FirmZone,
        owner: str | None = None,
        lease: timedelta = timedelta(minutes=15),
        idempotency_window: timedelta = timedelta(0),
        batch: int = 30,
        words: Words | None = None,
        note_limit: int | None = None,
        mail: MailSettings | None = None,
        home: Path | None = None,
        limit: int | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.row = row
        self.writer = writer
        self.policy = policy
        self.firm = firm
        self.owner = owner or worker_name()
        self.lease = lease
        #: how long the platform is taken to remember a write's key (Xero's email): within
        #: it a lost email reply is retried under the same key; past it, a person decides
        self.idempotency_window = idempotency_window
        self.batch = batch
        #: the templates of notes and letters, and the platform's limit on a note (Xero: 250
        #: UTF-16 units); checked at start-up (run.py), so a note is never cut in practice
        self.words = words or Words.load([BUILTIN_DIR])
        self.note_limit = note_limit
        #: the firm's mail server for letters; None: letters wait for a person
        self.mail = mail
        #: the configuration's home, under whose state folder hand-over packs go when the
        #: store is not a SQLite file beside them
        self.home = home
        self.limit = limit
        #: asked before each claim: a stopping daemon claims nothing more
        self.stop = stop or (lambda: False)
        self.calendar = Calendar.of(policy.calendar, row.country, row.region)
        self._zones: dict[str, ZoneInfo] = {}
        #: channels the platform closed during this pass, until when and why
        self._parked_now: dict[str, tuple[datetime, str]] = {}
        #: the customers' own settings (time zone, address), read once per pass
        self._settings: dict[tuple[str, str], str] | None = None
        self._customers: dict[str, Customer] = {}
        self._numbers: dict[str, str] = {}

    # -- the pass ----------------------------------------------------------------------------------
    def run(self) -> Dispatched:
        report = Dispatched(self.row.name)
        # what the platform closed in an earlier pass is in the store's parks, with its end
        self._parked_now = {}
        self._settings = None
        self._recover(report)
        try:
            self._settle_unknown(report)
        except AuthError as err:
            report.stopped = f"the platform refused arsync's credentials: {err}"
            raise
        except TransientError as err:
            # nothing was moved: what is unknown stays so until the platform answers
            report.stopped = f"the platform could not be read back now: {err}"
            return report
        stale = self._stale()
        if stale:
            report.stopped = stale
            return report
        try:
            handled = 0
            first = ("email", "letter", "call", "handover", "expect")
            for kinds, exclude in ((first, ()), (("note",), ())):
                while (self.limit is None or handled < self.limit) and not self.stop():
                    size = (
                        self.batch if self.limit is None else min(self.batch, self.limit - handled)
                    )
                    with self.store.transaction() as tx:
                        claimed = tx.outbox.claim(
                            self.row.id,
                            owner=self.owner,
                            lease=self.lease,
                            limit=size,
                            kinds=kinds,
                            exclude_kinds=exclude,
                        )
                    if not claimed:
                        break
                    handled += len(claimed)
                    progressed = self._work(claimed, report)
                    if not progressed:
                        break
        except AuthError as err:
            report.stopped = f"the platform refused arsync's credentials: {err}"
            self._release_mine(report, "the platform refused arsync's credentials")
            raise
        except Parked as err:
            report.stopped = f"the platform asked to wait: {err}"
            self._release_mine(report, "the platform asked to wait")
        except TransientError as err:
            # e.g. the fresh read failed after its retries: nothing of this batch was sent, so
            # its claims go back now rather than after their lease
            report.stopped = f"the platform is not answering: {err}"
            self._release_mine(report, "the platform is not answering")
        return report

    # -- settling what an earlier run left ---------------------------------------------------------
    def _recover(self, report: Dispatched) -> None:
        with self.store.transaction() as tx:
            tx.outbox.promote(self.row.id)
            for row in tx.outbox.lapsed(self.row.id):
                if row.sent_at is None:
                    tx.outbox.move(
                        row,
                        S.READY,
                        event="action_released",
                        attempts=max(row.attempts - 1, 0),
                        reason=f"the claim of {row.lease_owner} lapsed before anything was sent",
                    )
                    report.released += 1
                else:
                    tx.outbox.move(
                        row,
                        S.UNKNOWN,
                        # the process died: not a failure of the action, not a try to count
                        attempts=max(row.attempts - 1, 0),
                        reason=(
                            f"the claim of {row.lease_owner} lapsed after it was sent at "
                            f"{row.sent_at:%Y-%m-%d %H:%M} UTC: reading the platform back"
                        ),
                        reason_code="lapsed",
                    )

    def _settle_unknown(self, report: Dispatched) -> None:
        with self.store.reading() as tx:
            unknown = tx.outbox.of(self.row.id, states=(S.UNKNOWN,))
        platform = [r for r in unknown if r.kind in ("email", "note") and r.invoice_id]
        for row in unknown:
            if row.kind == "expect":
                # setting a date twice to the same value does no harm: simply set it again
                with self.store.transaction() as tx:
                    self._retry(tx, row, report, "the reply was lost: set again", tx.now)
                continue
            if row not in platform:
                with self.store.transaction() as tx:
                    self._finish(
                        tx,
                        row,
                        S.NEEDS_PERSON,
                        report,
                        f"the {row.kind} may or may not have gone out and nothing can be read "
                        "back to tell: check, then `arsync resolve " + row.id[:8] + "`",
                        "cannot_tell",
                    )
        if not platform:
            return
        trails = self.writer.read_back(sorted({r.invoice_id for r in platform if r.invoice_id}))
        now = self.store.clock.now()
        for row in platform:
            assert row.invoice_id is not None
            trail = trails.get(row.invoice_id)
            with self.store.transaction() as tx:
                self._settle_one(tx, row, trail, now, report)

    def _settle_one(
        self, tx: Any, row: OutboxRow, trail: Trail | None, now: datetime, report: Dispatched
    ) -> None:
        if trail is None:
            self._finish(
                tx, row, S.SKIPPED, report, "the invoice is gone from the ledger", "deleted"
            )
            return
        if row.kind == "note":
            ref = f"ref {marker(row.id)}"
            found = next((n for n in trail.notes if ref in n.text), None)
            if found is not None:
                self._finish(
                    tx,
                    row,
                    S.DONE,
                    report,
                    "read back: the note is in the ledger",
                    result={"note": found.text, "ref": found.ref, "read_back": True},
                )
            else:
                # read back, it is surely not there: writing it (under its key) is safe
                self._retry(
                    tx, row, report, "read back: the note is not in the ledger", now, sent_at=None
                )
            return
        sent = row.sent_at or row.updated_at
        emailed = [e for e in trail.emails if e.at >= sent - CLOCK_MARGIN]
        if emailed:
            e = emailed[-1]
            self._finish(
                tx,
                row,
                S.DONE,
                report,
                f"read back: the platform emailed it at {e.at:%Y-%m-%d %H:%M} UTC",
                result={
                    "to": e.to,
                    "at": e.at.isoformat(),
                    "evidence": e.evidence,
                    "read_back": True,
                },
            )
        elif trail.emails_recorded:
            self._retry(
                tx, row, report, "read back: the platform has not emailed it", now, sent_at=None
            )
        elif now - sent < self.idempotency_window:
            # at once, while the platform still remembers the key: a repeat is answered, not
            # performed; a later pass would risk the key being forgotten (see _email's guard)
            self._finish(
                tx,
                row,
                S.RETRYING,
                report,
                "the reply was lost; tried again under the same key while the platform "
                "remembers it, so it cannot go twice",
                "retry",
                next_at=now,
            )
        else:
            self._finish(
                tx,
                row,
                S.NEEDS_PERSON,
                report,
                "the reply was lost and the platform's record cannot tell whether the email "
                f"went: look at the invoice's history in the ledger, then `arsync resolve "
                f"{row.id[:8]} --sent` or `--resend`",
                "cannot_tell",
            )

    # -- guardrails --------------------------------------------------------------------------------
    def _stale(self) -> str | None:
        now = self.store.clock.now()
        with self.store.reading() as tx:
            last = tx.connectors.get(self.row.id).last_sync_ok_at
        limit = self.policy.rules.stale_sync
        if last is None:
            return "nothing is sent before a first good sync"
        if now - last > limit:
            return (
                f"nothing is sent while the last good sync ({last:%Y-%m-%d %H:%M} UTC) is older "
                f"than the policy's {limit}"
            )
        return None

    def _zone(self, customer_id: str) -> ZoneInfo:
        zone = self._zones.get(customer_id)
        if zone is None:
            with self.store.reading() as tx:
                customer = tx.records.by_ids(self.row.id, Kind.CUSTOMER, [customer_id]).get(
                    customer_id
                )
                override = self._setting(tx, customer_id, TIMEZONE_SETTING)
            if isinstance(customer, Customer):
                self._customers[customer_id] = customer
                zone = person(customer, self.firm, override).zone
            else:
                zone = self.firm.zone
            self._zones[customer_id] = zone
        return zone

    # -- one claimed batch -------------------------------------------------------------------------
    def _work(self, claimed: list[OutboxRow], report: Dispatched) -> bool:
        """Work one claimed batch; False when none of it could move (all released)."""
        now = self.store.clock.now()
        with self.store.reading() as tx:
            parks = tx.outbox.parked(self.row.id)
        ready: list[OutboxRow] = []
        with self.store.transaction() as tx:
            for row in claimed:
                if row.kind in parks:
                    parked_until, why = parks[row.kind]
                    self._release(tx, row, parked_until, f"the {row.kind} channel is parked: {why}")
                    report.released += 1
                    continue
                if row.kind in CONTACT_KINDS:
                    zone = self._zone(row.customer_id)
                    why_not = self.calendar.why_not(now, zone)
                    if why_not is not None:
                        later = self.calendar.earliest(now, zone)
                        self._release(tx, row, later, f"not now ({why_not} in {zone.key})")
                        report.released += 1
                        continue
                if row.kind == "note":
                    waiting, until = self._siblings_pending(tx, row)
                    if waiting:
                        # not before its sibling can move: claimed again now, it would only
                        # stand in front of the notes that can go
                        later = max(until or now, now + NOTE_WAIT)
                        self._release(
                            tx, row, later, f"waits for the stage's {', '.join(waiting)} first"
                        )
                        report.released += 1
                        continue
                ready.append(row)
        if not ready:
            # everything released to a later moment: the next claim finds the rest
            return True
        fresh = self._fresh(ready)
        with self.store.reading() as tx:
            holds = tx.holds.active(self.row.id)
            covered = in_flight(
                tx.records.open_invoices(self.row.id), tx.records.unapplied(self.row.id)
            )
        notes: list[tuple[OutboxRow, str, Go]] = []
        letters: list[tuple[OutboxRow, Go]] = []
        for row in ready:
            if row.kind in self._parked_now:
                # the platform closed the channel during this batch: the rest waits, unsent
                closed_until, closed_why = self._parked_now[row.kind]
                with self.store.transaction() as tx:
                    self._release(
                        tx, row, closed_until, f"the {row.kind} channel is parked: {closed_why}"
                    )
                report.released += 1
                continue
            go = self._decide(row, fresh, holds, covered, report)
            if go is None:
                continue
            if row.kind == "email":
                self._email(row, go, report)
            elif row.kind == "call":
                with self.store.transaction() as tx:
                    self._finish(
                        tx,
                        row,
                        S.DONE,
                        report,
                        "on today's call list (`arsync calls`)",
                        result={"task": "call", "balance": str(go.balance)},
                    )
            elif row.kind == "note":
                notes.append((row, self._note_text(row, go), go))
            elif row.kind == "expect":
                self._expect(row, report)
            elif row.kind == "handover":
                self._handover(row, report)
            elif row.kind == "letter":
                letters.append((row, go))
            else:
                with self.store.transaction() as tx:
                    self._finish(
                        tx,
                        row,
                        S.NEEDS_PERSON,
                        report,
                        f"arsync cannot do a {row.kind} by itself yet: do it by hand, then "
                        f"`arsync resolve {row.id[:8]} --sent`",
                        "not_automatic",
                    )
        if letters:
            self._letters(letters, report)
        if notes:
            self._notes(notes, report)
        return True

    def _fresh(self, rows: Sequence[OutboxRow]) -> dict[str, FreshInvoice]:
        ids = sorted({r.invoice_id for r in rows if r.invoice_id})
        return self.writer.fresh(ids) if ids else {}

    def _decide(
        self,
        row: OutboxRow,
        fresh: dict[str, FreshInvoice],
        holds: Sequence[Any],
        covered: Mapping[str, str],
        report: Dispatched,
    ) -> Go | None:
        stage = self._stage(row.stage)
        if row.kind == "note":
            # A note reports on its stage: it goes when something of the stage happened, and
            # is skipped with the stage's own reason when nothing did.
            with self.store.reading() as tx:
                siblings = [
                    s
                    for s in tx.outbox.of(self.row.id, subject=row.subject)
                    if s.stage == row.stage and s.kind in REPORTED_KINDS
                ]
            if siblings and all(s.state in (S.SKIPPED, S.DEAD) for s in siblings):
                first = siblings[0]
                with self.store.transaction() as tx:
                    self._finish(
                        tx,
                        row,
                        S.SKIPPED,
                        report,
                        f"nothing of the stage happened: {first.reason or first.state.value}",
                        first.reason_code or "nothing_happened",
                    )
                return None
        found = verdict(
            fresh=fresh.get(row.invoice_id or ""),
            planned_amount=Money(row.amount, row.currency),
            planned_due=row.due_date,
            plan_subject=row.subject.startswith("plan:"),
            holds=holds,
            covered=covered,
            policy=self.policy,
            stage=stage,
        )
        if isinstance(found, Skip):
            recorded = row.stage.startswith(RECORDED)
            if recorded and found.code not in ("deleted", "voided", "draft", "paid"):
                # what a person recorded goes into the ledger whatever holds it set
                return Go(Money(fresh[row.invoice_id or ""].invoice.balance, row.currency))
            if row.kind == "note" and found.code not in ("deleted", "voided"):
                # the stage's reminder already went: the note still says so
                return Go(Money(fresh[row.invoice_id or ""].invoice.balance, row.currency))
            with self.store.transaction() as tx:
                self._finish(tx, row, S.SKIPPED, report, found.reason, found.code)
            return None
        return found

    def _stage(self, name: str) -> Stage | None:
        try:
            return self.policy.stage(name)
        except KeyError:
            return None

    # -- the writes --------------------------------------------------------------------------------
    def _email(self, row: OutboxRow, go: Go, report: Dispatched) -> None:
        assert row.invoice_id is not None
        with self.store.transaction() as tx:
            if row.sent_at is not None and tx.now - row.sent_at >= self.idempotency_window:
                # an earlier try may have gone, and the platform has forgotten its key by now:
                # resending could email twice, so the platform is read back first
                self._finish(
                    tx,
                    row,
                    S.UNKNOWN,
                    report,
                    f"an earlier try at {row.sent_at:%Y-%m-%d %H:%M} UTC may have gone and its "
                    "key has expired: reading the platform back before anything else",
                    "key_expired",
                )
                return
            if not tx.outbox.move(
                row,
                S.CLAIMED,
                event="action_sending",
                sent_at=row.sent_at or tx.now,
                lease_owner=self.owner,
                lease_until=tx.now + self.lease,
                owner=self.owner,
            ):
                return
        try:
            evidence = self.writer.email(
                row.invoice_id, key=row.id, send_to=self._send_to(row.customer_id)
            )
        except NoEmailAddress as err:
            with self.store.transaction() as tx:
                self._finish(
                    tx,
                    row,
                    S.SKIPPED,
                    report,
                    "no email address to send to: a call task instead",
                    "no_address",
                    detail={"platform": str(err)[:200]},
                )
                self._call_instead(tx, row)
            return
        except EmailCapReached as err:
            until = self._tomorrow()
            with self.store.transaction() as tx:
                why = f"the platform's daily email cap: {err}"
                tx.outbox.park(self.row.id, "email", until, why)
                self._parked_now["email"] = (until, why)
                # refused, so surely not sent: it waits for the next day, not for a person
                self._release(tx, row, until, "the platform's daily email cap is reached")
            report.released += 1
            return
        except OutcomeUnknown as err:
            with self.store.transaction() as tx:
                self._finish(tx, row, S.UNKNOWN, report, str(err), "reply_lost")
            return
        except (AuthError, Parked):
            with self.store.transaction() as tx:
                tx.outbox.move(
                    row,
                    S.READY,
                    event="action_released",
                    sent_at=row.sent_at,
                    attempts=max(row.attempts - 1, 0),
                    owner=self.owner,
                )
            raise
        except TransientError as err:
            with self.store.transaction() as tx:
                self._retry(
                    tx,
                    row,
                    report,
                    str(err),
                    tx.now,
                    retry_after=err.retry_after,
                    sent_at=row.sent_at,
                )
            return
        except PermanentError as err:
            with self.store.transaction() as tx:
                self._finish(tx, row, S.DEAD, report, f"refused: {err}", "refused")
            return
        result: dict[str, Any] = {"balance": str(go.balance)}
        if evidence is not None:
            result.update(to=evidence.to, at=evidence.at.isoformat(), evidence=evidence.evidence)
        customer = self._customers.get(row.customer_id)
        if "to" not in result and customer is not None:
            result["to"] = customer.email
        with self.store.transaction() as tx:
            words = f"emailed{' to ' + result['to'] if result.get('to') else ''}"
            self._finish(tx, row, S.DONE, report, words, result=result)

    def _letters(self, rows: list[tuple[OutboxRow, Go]], report: Dispatched) -> None:
        """One letter per customer (however many of its invoices reached a letter stage in
        this run), listing every overdue invoice, through the firm's mail server; its
        Message-ID derives from the first action's id. A letter's reply lost after it was
        handed over cannot be read back: it waits for a person, never resent blindly."""
        if self.mail is None:
            with self.store.transaction() as tx:
                for row, _ in rows:
                    self._finish(
                        tx,
                        row,
                        S.NEEDS_PERSON,
                        report,
                        "no mail server is set up for letters ([mail] in config/arsync.toml): "
                        f"post the letter, then `arsync resolve {row.id[:8]} --sent`",
                        "no_mail",
                    )
            return
        groups: dict[str, list[tuple[OutboxRow, Go]]] = {}
        for row, go in rows:
            groups.setdefault(row.customer_id, []).append((row, go))
        for customer_id, group in groups.items():
            self._letter(customer_id, group, report)

    def _letter(
        self, customer_id: str, group: list[tuple[OutboxRow, Go]], report: Dispatched
    ) -> None:
        assert self.mail is not None
        customer = self._customer(customer_id)
        if customer is None or not customer.email:
            with self.store.transaction() as tx:
                for row, _ in group:
                    self._finish(
                        tx,
                        row,
                        S.SKIPPED,
                        report,
                        "no email address to send a letter to: the call list has the customer",
                        "no_address",
                    )
            return
        lead = min((row for row, _ in group), key=lambda r: r.id)
        now = self.store.clock.now()
        with self.store.reading() as tx:
            owed = [
                i for i in tx.records.open_invoices(self.row.id) if i.customer_id == customer_id
            ]
        tone = max((_tone(row.tone) for row, _ in group), key=list(Tone).index)
        facts = LetterFacts.build(
            today=now.astimezone(self.firm.zone).date(),
            tone=tone,
            firm=self.row.company_name or self.row.name,
            firm_email=self.mail.reply_to or self.mail.from_address,
            firm_phone=None,
            customer=customer.name,
            customer_email=customer.email,
            invoices=owed,
            late_payment=self.policy.late_payment,
            reference=marker(lead.id),
            stage=lead.stage_title,
        )
        letter = self.words.letter(facts)
        message = compose(letter, facts, lead.id, self.mail, now=now.astimezone(self.firm.zone))
        with self.store.transaction() as tx:
            live = [
                row
                for row, _ in group
                if tx.outbox.move(
                    row,
                    S.CLAIMED,
                    event="action_sending",
                    sent_at=row.sent_at or tx.now,
                    lease_owner=self.owner,
                    lease_until=tx.now + self.lease,
                    owner=self.owner,
                )
            ]
        try:
            Mailer(self.mail).send(message)
        except OutcomeUnknown as err:
            with self.store.transaction() as tx:
                for row in live:
                    self._finish(
                        tx,
                        row,
                        S.NEEDS_PERSON,
                        report,
                        f"{err}: look for Message-ID {message['Message-ID']} in the mail "
                        f"server's log or the sent folder, then `arsync resolve {row.id[:8]}`",
                        "cannot_tell",
                    )
            return
        except TransientError as err:
            with self.store.transaction() as tx:
                for row in live:
                    self._retry(
                        tx,
                        row,
                        report,
                        str(err),
                        tx.now,
                        retry_after=err.retry_after,
                        sent_at=row.sent_at,
                    )
            return
        except PermanentError as err:
            with self.store.transaction() as tx:
                for row in live:
                    self._finish(tx, row, S.DEAD, report, f"refused: {err}", "refused")
            return
        result = {
            "to": customer.email,
            "subject": letter.subject,
            "message_id": str(message["Message-ID"]),
            "invoices": [line.number for line in facts.invoices],
            "lead": lead.id,
        }
        with self.store.transaction() as tx:
            for row in live:
                words = f"letter sent to {customer.email}: {letter.subject}"
                self._finish(tx, row, S.DONE, report, words, result=result)
                if row.invoice_id is None:
                    continue
                invoice = tx.records.by_ids(self.row.id, Kind.INVOICE, [row.invoice_id]).get(
                    row.invoice_id
                )
                if isinstance(invoice, Invoice):
                    # a copy of the letter in the ledger, as a note of its own
                    record_in_ledger(
                        tx,
                        tx.connectors.get(self.row.id),
                        invoice,
                        topic="letter",
                        title="letter",
                        words=words,
                        ref=lead.id[:MARKER_LENGTH],
                        facts={"event": "letter", "to": customer.email, "subject": letter.subject},
                    )

    def _expect(self, row: OutboxRow, report: Dispatched) -> None:
        """Set the promised date where the bookkeeper sees it (Xero's Expected Date)."""
        assert row.invoice_id is not None
        wanted = (row.result or {}).get("expected") if isinstance(row.result, dict) else None
        day = date.fromisoformat(wanted) if wanted else None
        try:
            written = self.writer.expect_payment(row.invoice_id, day, key=row.id)
        except OutcomeUnknown as err:
            with self.store.transaction() as tx:
                self._finish(tx, row, S.UNKNOWN, report, str(err), "reply_lost")
            return
        except (AuthError, Parked):
            with self.store.transaction() as tx:
                self._release(tx, row, None, "the platform cannot be reached now")
            raise
        except TransientError as err:
            with self.store.transaction() as tx:
                self._retry(
                    tx,
                    row,
                    report,
                    str(err),
                    tx.now,
                    retry_after=err.retry_after,
                    sent_at=row.sent_at,
                )
            return
        except PermanentError as err:
            with self.store.transaction() as tx:
                self._finish(tx, row, S.DEAD, report, f"refused: {err}", "refused")
            return
        with self.store.transaction() as tx:
            if written:
                words = f"Expected Date set to {day:%-d %b %Y}" if day else "Expected Date cleared"
                self._finish(tx, row, S.DONE, report, words, result={"expected": wanted})
            else:
                self._finish(
                    tx, row, S.SKIPPED, report, "the platform has no Expected Date", "no_field"
                )

    def _handover(self, row: OutboxRow, report: Dispatched) -> None:
        """Hand the customer over to the agency (writeback/handover.py): the evidence pack, a
        pause, a note on each open invoice; done with the pack's path and digest as result."""
        from arsync.collecting import BadInput
        from arsync.errors import Busy
        from arsync.writeback import handover

        root = handover.pack_root(self.store, self.home)
        if root is None:
            with self.store.transaction() as tx:
                self._finish(
                    tx,
                    row,
                    S.NEEDS_PERSON,
                    report,
                    "the store is not a file, so the evidence pack has no folder from here: "
                    "run `arsync handover CUSTOMER`, then `arsync resolve "
                    f"{row.id[:8]} --sent`",
                    "no_pack_folder",
                )
            return
        agency = handover.agency_of(self.policy)
        by = row.decided_by or "arsync"
        approved = f", approved by {row.decided_by}" if row.decided_by else ""

        def done(tx: Any, handed: handover.HandedOver) -> None:
            # in the hand-over's own transaction: recorded and done together, or neither
            self._finish(
                tx,
                row,
                S.DONE,
                report,
                f"handed over to {agency}: evidence pack {handed.path}",
                result={
                    "pack": str(handed.path),
                    "manifest_sha256": handed.digest,
                    "agency": agency,
                    "notes": len(handed.notes),
                },
            )

        try:
            handover.perform(
                self.store,
                self.row,
                row.customer_id,
                zone=self.firm.zone,
                agency=agency,
                by=by,
                reason=f"the policy's {row.stage_title}{approved}",
                root=root,
                action=row.id,
                then=done,
            )
        except BadInput as err:
            with self.store.transaction() as tx:
                self._finish(tx, row, S.SKIPPED, report, str(err), "not_needed")
        except Busy as err:
            with self.store.transaction() as tx:
                self._retry(tx, row, report, str(err), tx.now)
        except handover.PackFailed as err:
            with self.store.transaction() as tx:
                self._finish(
                    tx,
                    row,
                    S.NEEDS_PERSON,
                    report,
                    f"{err}; then `arsync resolve {row.id[:8]} --resend`",
                    "pack_failed",
                )
        except Exception as err:  # a bug here must not leave the claim to be retried forever
            log.exception("hand-over failed", connector=self.row.name, action=row.id)
            with self.store.transaction() as tx:
                self._finish(
                    tx, row, S.DEAD, report, f"the hand-over failed: {err}", "handover_failed"
                )

    def _notes(self, notes: list[tuple[OutboxRow, str, Go]], report: Dispatched) -> None:
        with self.store.transaction() as tx:
            live = [
                (row, text, go)
                for row, text, go in notes
                if tx.outbox.move(
                    row,
                    S.CLAIMED,
                    event="action_sending",
                    sent_at=row.sent_at or tx.now,
                    lease_owner=self.owner,
                    lease_until=tx.now + self.lease,
                    owner=self.owner,
                )
            ]
        writes = [NoteWrite(r.invoice_id or "", text, r.id) for r, text, _ in live]
        try:
            outcomes = self.writer.notes(writes)
        except OutcomeUnknown as err:
            with self.store.transaction() as tx:
                for row, _, _ in live:
                    self._finish(tx, row, S.UNKNOWN, report, str(err), "reply_lost")
            return
        except (AuthError, Parked):
            with self.store.transaction() as tx:
                for row, _, _ in live:
                    tx.outbox.move(
                        row,
                        S.READY,
                        event="action_released",
                        sent_at=row.sent_at,
                        attempts=max(row.attempts - 1, 0),
                        owner=self.owner,
                    )
            raise
        except TransientError as err:
            with self.store.transaction() as tx:
                for row, _, _ in live:
                    self._retry(
                        tx,
                        row,
                        report,
                        str(err),
                        tx.now,
                        retry_after=err.retry_after,
                        sent_at=row.sent_at,
                    )
            return
        by_key = {o.key: o for o in outcomes}
        stop: ArsyncError | None = None
        with self.store.transaction() as tx:
            for row, text, _ in live:
                outcome = by_key.get(row.id)
                error = outcome.error if outcome is not None else None
                if outcome is not None and outcome.written:
                    self._finish(
                        tx,
                        row,
                        S.DONE,
                        report,
                        "note written",
                        result={"note": text, "ref": outcome.ref},
                    )
                elif isinstance(error, (AuthError, Parked)):
                    # not written; the connector stops here, the note waits as it was
                    self._release(tx, row, None, str(error))
                    stop = error
                elif isinstance(error, TransientError):
                    self._retry(
                        tx,
                        row,
                        report,
                        str(error),
                        tx.now,
                        retry_after=error.retry_after,
                        sent_at=row.sent_at,
                    )
                else:
                    why = str(error) if error is not None else "no answer for it"
                    self._finish(tx, row, S.DEAD, report, f"refused: {why}", "refused")
        if stop is not None:
            raise stop

    def _call_instead(self, tx: Any, row: OutboxRow) -> None:
        """A reminder that cannot be emailed becomes a call task of the same stage."""
        key = row.key.rsplit("/", 1)[0] + "/call"
        tx.outbox.add(
            self.row.id,
            id=action_id(key),
            key=key,
            kind="call",
            subject=row.subject,
            customer_id=row.customer_id,
            invoice_id=row.invoice_id,
            stage=row.stage,
            stage_title=row.stage_title,
            tone=row.tone,
            amount=row.amount,
            currency=row.currency,
            due_date=row.due_date,
            at=tx.now,
            state=S.READY,
            detail={"instead_of": row.id, "why": "no email address"},
        )

    # -- the note's words --------------------------------------------------------------------------
    def _note_text(self, row: OutboxRow, go: Go) -> str:
        """The note's words, from the templates: what the stage did (or what a person
        recorded), the balance, the next step; dated in the firm's zone; then its marker."""
        today = self.store.clock.now().astimezone(self.firm.zone).date()
        with self.store.reading() as tx:
            siblings = [
                s
                for s in tx.outbox.of(self.row.id, subject=row.subject)
                if s.stage == row.stage and s.kind in REPORTED_KINDS
            ]
            invoice = tx.records.by_ids(self.row.id, Kind.INVOICE, [row.invoice_id or ""]).get(
                row.invoice_id or ""
            )
        number = getattr(invoice, "number", None) or row.invoice_id or ""
        customer = self._customer(row.customer_id)
        fields: dict[str, Any] = {}
        if row.stage.startswith(RECORDED):
            recorded = row.result if isinstance(row.result, dict) else {}
            event = Event(recorded.get("event", Event.NOTED.value))
            for name in ("to", "reason", "subject", "agency", "who", "amount"):
                if recorded.get(name) is not None:
                    fields[name] = str(recorded[name])
            if recorded.get("by"):
                fields["by"] = date.fromisoformat(str(recorded["by"]))
            if recorded.get("outcome"):
                fields["outcome"] = CallOutcome(str(recorded["outcome"]))
            if recorded.get("instalments") is not None:
                fields["instalments"] = int(recorded["instalments"])
            if event is Event.NOTED and "reason" not in fields:
                fields["reason"] = row.reason or "noted"
            stage: str | None = None
            next_step = None
        else:
            event, fields = self._stage_event(siblings, customer)
            stage = row.stage_title
            next_step = self._next_step(row)
        facts = NoteFacts(
            today=today,
            firm=self.row.company_name or self.row.name,
            customer=customer.name if customer else row.customer_id,
            invoice=str(number),
            stage=stage,
            tone=_tone(row.tone),
            event=event,
            balance=str(go.balance),
            planned_balance=str(go.planned) if go.planned is not None else None,
            next_step=next_step[0] if next_step else None,
            next_day=next_step[1] if next_step else None,
            **fields,
        )
        return self.words.note(facts, marker(row.id), limit_utf16=self.note_limit)

    @staticmethod
    def _stage_event(
        siblings: Sequence[OutboxRow], customer: Customer | None
    ) -> tuple[Event, dict[str, Any]]:
        """What a stage did, as one event for its note: the reminder first."""
        by_kind = {s.kind: s for s in siblings}
        email, call, letter = by_kind.get("email"), by_kind.get("call"), by_kind.get("letter")
        if email is not None and email.state is S.DONE:
            result = email.result if isinstance(email.result, dict) else {}
            to = result.get("to") or (customer.email if customer else None) or "the customer"
            return Event.EMAILED, {"to": str(to)}
        if email is not None and email.reason_code == "no_address":
            return Event.NOT_EMAILED, {"reason": "no email address on file: a call task instead"}
        if email is not None and email.state is S.NEEDS_PERSON:
            return Event.NOTED, {
                "reason": "the platform never confirmed the reminder email: a person checks"
            }
        if letter is not None and letter.state is S.DONE:
            result = letter.result if isinstance(letter.result, dict) else {}
            return Event.LETTER, {
                "to": str(result.get("to") or "the customer"),
                "subject": str(result.get("subject") or "letter"),
            }
        if call is not None and call.state is S.DONE:
            phone = customer.phone if customer else None
            return Event.CALL, {"to": phone} if phone else {}
        return Event.NOTED, {"reason": "noted"}

    def _label(self, tx: Any, row: OutboxRow) -> str:
        """ "INV-1042 · Harbor Cafe": the invoice as the ledger numbers it, and its customer."""
        number = self._numbers.get(row.invoice_id or "")
        if number is None and row.invoice_id:
            found = tx.records.by_ids(self.row.id, Kind.INVOICE, [row.invoice_id]).get(
                row.invoice_id
            )
            number = (getattr(found, "number", None) or row.invoice_id) if found else row.invoice_id
            self._numbers[row.invoice_id] = number
        customer = self._customers.get(row.customer_id)
        if customer is None:
            found = tx.records.by_ids(self.row.id, Kind.CUSTOMER, [row.customer_id]).get(
                row.customer_id
            )
            if isinstance(found, Customer):
                self._customers[row.customer_id] = customer = found
        name = customer.name if customer is not None else row.customer_id
        return f"{number} · {name}" if number else name

    def _send_to(self, customer_id: str) -> str | None:
        """Another address for the customer's reminders, set with `arsync customer --send-to`
        (QuickBooks only: Xero emails the contact's own addresses)."""
        if self.row.platform != "qbo":
            return None
        with self.store.reading() as tx:
            return self._setting(tx, customer_id, SEND_TO_SETTING)

    def _setting(self, tx: Any, customer_id: str, key: str) -> str | None:
        """A customer's own setting, from the connector's settings read once per pass (not
        once per action)."""
        if self._settings is None:
            self._settings = {(s.customer_id, s.key): s.value for s in tx.settings.of(self.row.id)}
        return self._settings.get((customer_id, key))

    def _customer(self, customer_id: str) -> Customer | None:
        found = self._customers.get(customer_id)
        if found is None:
            with self.store.reading() as tx:
                record = tx.records.by_ids(self.row.id, Kind.CUSTOMER, [customer_id]).get(
                    customer_id
                )
            if isinstance(record, Customer):
                self._customers[customer_id] = found = record
        return found

    def _next_step(self, row: OutboxRow) -> tuple[str, date] | None:
        """The policy's next stage after this one, and the day it falls due (before the
        calendar moves it)."""
        stages = list(self.policy.stages)
        names = [s.name for s in stages]
        if row.stage not in names or row.due_date is None:
            return None
        later = stages[names.index(row.stage) + 1 :]
        if not later:
            return None
        return later[0].label, row.due_date + timedelta(days=later[0].offset)

    # -- moving rows -------------------------------------------------------------------------------
    def _finish(
        self,
        tx: Any,
        row: OutboxRow,
        to: OutboxState,
        report: Dispatched,
        words: str,
        code: str | None = None,
        *,
        result: dict[str, Any] | None = None,
        detail: dict[str, Any] | None = None,
        **more: Any,
    ) -> None:
        fields: dict[str, Any] = {"reason": words, "reason_code": code, **more}
        if result is not None:
            fields["result"] = result
        current = tx.outbox.get(self.row.id, row.id) or row
        if current.state is S.CLAIMED and current.lease_owner != self.owner:
            # our lease lapsed and another worker took the action over: it is theirs now
            return
        expect = (current.state,) if current.state not in FINAL else ()
        if tx.outbox.move(current, to, expect=expect, detail=detail, owner=self.owner, **fields):
            report.outcomes.append(
                Outcome(row.id, row.kind, row.subject, to, words, self._label(tx, row))
            )
            log.info(
                "action",
                connector=self.row.name,
                action=row.id,
                kind=row.kind,
                subject=row.subject,
                state=to.value,
                why=words,
            )

    def _retry(
        self,
        tx: Any,
        row: OutboxRow,
        report: Dispatched,
        why: str,
        now: datetime,
        *,
        retry_after: float | None = None,
        **more: Any,
    ) -> None:
        current = tx.outbox.get(self.row.id, row.id) or row
        if current.attempts >= MAX_ATTEMPTS:
            self._finish(
                tx,
                current,
                S.DEAD,
                report,
                f"gave up after {current.attempts} tries: {why}",
                "attempts",
                **more,
            )
            return
        wait = BACKOFF[min(max(current.attempts - 1, 0), len(BACKOFF) - 1)]
        if retry_after is not None:
            wait = max(wait, timedelta(seconds=retry_after))
        self._finish(tx, current, S.RETRYING, report, why, "retry", next_at=now + wait, **more)

    def _release(self, tx: Any, row: OutboxRow, until: datetime | None, why: str) -> None:
        # nothing left: the claim is handed back as if it had not been made
        tx.outbox.move(
            row,
            S.READY,
            event="action_released",
            next_at=until,
            attempts=max(row.attempts - 1, 0),
            reason=why,
            # nothing was sent this time; an earlier try that may have gone still counts
            sent_at=row.sent_at,
            owner=self.owner,
        )
        if until is not None and row.kind in REPORTED_KINDS:
            # the stage's note waits as long: claimed before then, it would only be released
            for note in tx.outbox.of(
                self.row.id, subject=row.subject, kinds=["note"], states=[S.READY]
            ):
                if note.stage == row.stage and (note.next_at is None or note.next_at < until):
                    tx.outbox.move(
                        note,
                        S.READY,
                        event="action_waits",
                        next_at=until,
                        reason=f"waits for the stage's {row.kind}: {why}",
                    )

    def _release_mine(self, report: Dispatched, why: str) -> None:
        with self.store.transaction() as tx:
            for row in tx.outbox.release_owner(self.row.id, self.owner):
                if row.sent_at is None:
                    self._release(tx, row, None, why)
                    report.released += 1

    def _siblings_pending(self, tx: Any, row: OutboxRow) -> tuple[list[str], datetime | None]:
        """The kinds of the stage's other actions arsync is still working, and the latest
        moment one of them waits for."""
        pending = [
            s
            for s in tx.outbox.of(self.row.id, subject=row.subject)
            if s.stage == row.stage and s.kind in REPORTED_KINDS and s.state in IN_HAND
        ]
        until = max((s.next_at for s in pending if s.next_at is not None), default=None)
        return sorted({s.kind for s in pending}), until

    def _tomorrow(self) -> datetime:
        now = self.store.clock.now().astimezone(self.firm.zone)
        start = datetime.combine(
            now.date() + timedelta(days=1), datetime.min.time(), self.firm.zone
        )
        return start.astimezone(now.tzinfo)


def abandon(store: Store, connector_id: int, owner: str, why: str) -> tuple[int, int]:
    """A stopping process hands back its claims that it could not finish in time: what it
    never sent goes back to ready, what it may have sent is read back by the next pass
    (unknown), never resent blindly. A worker still busy with one of them can no longer move
    it (its claim is gone). Returns (released, unknown)."""
    released = unknown = 0
    with store.transaction() as tx:
        for row in tx.outbox.release_owner(connector_id, owner):
            if row.sent_at is None:
                moved = tx.outbox.move(
                    row,
                    S.READY,
                    event="action_released",
                    attempts=max(row.attempts - 1, 0),
                    reason=f"{why} before anything was sent",
                    owner=owner,
                )
                released += moved
            else:
                moved = tx.outbox.move(
                    row,
                    S.UNKNOWN,
                    attempts=max(row.attempts - 1, 0),
                    reason=(
                        f"{why} after it was sent at {row.sent_at:%Y-%m-%d %H:%M} UTC: "
                        "reading the platform back"
                    ),
                    reason_code="stopped",
                    owner=owner,
                )
                unknown += moved
    return released, unknown


__all__ = [
    "Dispatched",
    "Dispatcher",
    "Outcome",
    "abandon",
    "marker",
]
