"""The firm's daily digest: what was sent yesterday, who to call today, what waits, what is wrong.

The long-running service calls `due()` on every pass and `send()` for each digest it returns.

**One digest per firm time zone.** `[digest] at` is a time of the firm's day, and "yesterday"
and "today" are the firm's: connectors whose firms keep the same zone (the usual case: one firm,
its QuickBooks and its Xero) share one digest; a connector in another zone gets its own, on its
own morning, so that each digest's yesterday is a whole local day. A connector whose zone
arsync cannot tell (QuickBooks without `timezone`) is named, with the fix, in every digest's
list of trouble; with no zone known at all, the digest keeps UTC. Disabled connectors are left
out; with no enabled connector, no digest is due.

**Due** once a firm-local day, at or after `at` there (a wall-clock time: on the day the clocks
go forward past it, from the first moment after; on the day they go back, once). A day missed
while the service was down is never sent late: at start-up only today's is due (from `at`, and
at once if that has passed), and yesterday's is simply not sent.

**Exactly once.** `send()` first claims the (zone, day) row in a transaction of its own,
committed before anything is composed or sent (store/digests.py): a second call, a restart or a
second replica finds the row and sends nothing. The outcome is recorded afterwards:

- sent: the mail server accepted it;
- failed: certainly not sent (nothing to send it with, a template that will not render, a
  server that could not be reached or refused it before the message was handed over): claimed
  again on a later pass from `next_at`, the same day only;
- unknown: the message was handed over and the server's answer was lost, or something
  unexpected happened while sending: never sent again.

A process killed between the claim and the outcome leaves the row "sending" for good: that day's
digest is not sent again, and the next digest says that it may not have arrived. A digest is an
internal summary, not a letter to a customer, and everything in it can be read again at any time
(`arsync status`, `calls`, `outbox`): a missed one costs a look at those; two of the same day
would teach the firm to skim it. Its Message-ID derives from the zone and the day, so a copy
sent by hand is recognisably the same digest.

**An empty day still sends** a short digest ("nothing needs you"): its arrival each morning is
how the firm knows arsync, and its mail, still work; silence could mean either.

The words come from `digest.txt.j2` (and, if present, `digest.html.j2` for an HTML part), looked
for in config/templates/ (the firm's own) and then among arsync's own templates, rendered by the
same sandboxed Jinja2 as letters (writeback/words.py). The text template may set the subject
(`{% set subject = "…" %}`); `subject` holds arsync's. It goes through the same SMTP path as
letters (writeback/mail.py), From `[mail] from_address`, To `[digest] to`; the letters' `bcc`
copy is not made for it (it is the firm's own mail already).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from arsync.collecting import Collecting, firm_of
from arsync.config import Config, ConnectorConfig
from arsync.config.models import SETTINGS_FILE, DigestSettings, MailSettings
from arsync.domain import PLATFORM_NAMES, Customer, Invoice, Kind
from arsync.errors import ArsyncError, ConfigError, OutcomeUnknown, PermanentError, TransientError
from arsync.escalation.reading import ZoneUnknown
from arsync.status import REFRESH_UNUSED_LIMIT
from arsync.store.digests import DigestRow, DigestsRepo, DigestState
from arsync.store.models import ConnectorRow
from arsync.store.outbox import OutboxRow
from arsync.store.states import ConnectorState, OutboxState
from arsync.store.unit import Store, Tx
from arsync.words import span
from arsync.writeback.calls import call_list, owed_text
from arsync.writeback.dispatch import worker_name
from arsync.writeback.mail import Mailer, message_id
from arsync.writeback.manage import SHORT, listing
from arsync.writeback.words import BUILTIN_DIR, TEMPLATES_DIR, TemplateProblem, Words

log = structlog.get_logger("arsync.digest")

S = OutboxState
#: arsync's own digest templates (a folder of their own: the letters' folder holds one set of
#: tone templates, which config/templates/ copies byte for byte)
BUILTIN_DIGEST_DIR = BUILTIN_DIR / "digest"
TEXT_TEMPLATE = "digest.txt.j2"
HTML_TEMPLATE = "digest.html.j2"
#: a link whose refresh token lapses sooner than this is in the digest, with `arsync connect`
TOKEN_HORIZON = timedelta(days=14)
#: the zone of a digest when no connector's zone is known
FALLBACK_ZONE = "UTC"
#: how far back a digest looks for an earlier one that may not have arrived
LOOKBACK_DAYS = 7
#: the most lines a section lists (the counts are always whole)
LIMIT = 40
#: a failed try is claimed again after these waits (the last one repeats), the same day only
RETRY_AFTER = (
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(minutes=30),
    timedelta(hours=1),
)
#: after a refusal or a configuration problem a person must fix: an hour, not minutes
RETRY_AFTER_REFUSAL = timedelta(hours=1)

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: the outbox's kinds as the digest counts them, in the order it says them
_KINDS: dict[str, tuple[str, str]] = {
    "email": ("reminder emailed", "reminders emailed"),
    "letter": ("letter sent", "letters sent"),
    "call": ("call task opened", "call tasks opened"),
    "handover": ("hand-over to an agency", "hand-overs to an agency"),
    "note": ("note written in the ledger", "notes written in the ledger"),
    "expect": ("expected date set", "expected dates set"),
}


# -- when ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DigestDue:
    """One digest to send now: the firm-local `day` in `zone`, for `connectors` (by name)."""

    zone: str
    day: date
    connectors: tuple[str, ...]
    #: connectors whose zone is unknown: each digest names them among its trouble
    unplaced: tuple[str, ...] = ()
    #: tries made before (0: the first; more: a failed try claimed again)
    attempts: int = 0

    @property
    def key(self) -> str:
        return f"{self.day.isoformat()}/{self.zone}"


def parse_at(text: str) -> time:
    """ "08:00" (as [digest] at holds it) → 08:00."""
    hours, _, minutes = text.partition(":")
    return time(int(hours), int(minutes))


def due_day(now: datetime, zone: ZoneInfo, at: time) -> date | None:
    """The firm-local day whose digest is due at `now`, or None before `at` there.

    Wall-clock time: on the day the clocks jump past `at` it is due from the jump; on the day
    they go back over it, `at` comes twice and the store's claim keeps it to once."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    local = now.astimezone(zone)
    return local.date() if local.time() >= at else None


def day_bounds(day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """The firm-local `day` as [start, end) in UTC: 23 or 25 hours on the days of a change."""
    start = datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), time(0), tzinfo=zone).astimezone(UTC)
    return start, end


@dataclass(frozen=True)
class Placed:
    """The enabled connectors by their firm's zone, and those whose zone is unknown (why)."""

    zones: dict[str, tuple[str, ...]]
    unplaced: dict[str, str]

    @property
    def groups(self) -> dict[str, tuple[str, ...]]:
        """Each digest's zone and connectors; UTC when there are connectors but no zone."""
        if self.zones:
            return dict(sorted(self.zones.items()))
        return {FALLBACK_ZONE: ()} if self.unplaced else {}


def place(config: Config, rows: Mapping[str, ConnectorRow]) -> Placed:
    """Which zone each enabled connector's digest is in (pure: the rows are given)."""
    zones: dict[str, list[str]] = {}
    unplaced: dict[str, str] = {}
    for name, connector in sorted(config.connectors.items()):
        if not connector.enabled:
            continue
        try:
            zone = zone_of(connector, rows.get(name))
        except ZoneUnknown as err:
            unplaced[name] = str(err)
            continue
        zones.setdefault(zone, []).append(name)
    return Placed({z: tuple(n) for z, n in zones.items()}, unplaced)


def zone_of(connector: ConnectorConfig, row: ConnectorRow | None) -> str:
    """The firm's IANA zone for a connector, as planning uses it; ZoneUnknown otherwise."""
    if row is not None:
        return firm_of(connector, row).zone.key
    if connector.timezone:
        return ZoneInfo(connector.timezone).key
    raise ZoneUnknown(
        f"{connector.source}: timezone: not connected yet, and the file sets no time zone"
    )


def plan_due(
    now: datetime,
    at: time,
    placed: Placed,
    rows: Mapping[tuple[str, date], DigestRow],
) -> list[DigestDue]:
    """The digests due at `now` (pure): each zone's today once `at` has come there, unless
    its row is claimed already (only a failed try whose `next_at` has come goes again)."""
    out: list[DigestDue] = []
    unplaced = tuple(placed.unplaced)
    for zone, names in placed.groups.items():
        day = due_day(now, ZoneInfo(zone), at)
        if day is None:
            continue
        row = rows.get((zone, day))
        if row is not None and not retryable(row, now):
            continue
        out.append(DigestDue(zone, day, names, unplaced, row.attempts if row else 0))
    return out


def retryable(row: DigestRow, now: datetime) -> bool:
    """A failed try (nothing was sent) whose wait is over."""
    return row.state is DigestState.FAILED and (row.next_at is None or row.next_at <= now)


def due(store: Store, config: Config, now: datetime) -> list[DigestDue]:
    """The digests due at `now` (none without [digest]); reads the store, writes nothing."""
    settings = config.settings.digest
    if settings is None:
        return []
    at = parse_at(settings.at)
    with store.reading() as tx:
        placed = place(config, {r.name: r for r in tx.connectors.all()})
        repo = DigestsRepo(tx)
        rows: dict[tuple[str, date], DigestRow] = {}
        for zone in placed.groups:
            local = now.astimezone(ZoneInfo(zone)).date()
            found = repo.get(zone, local)
            if found is not None:
                rows[(zone, local)] = found
    return plan_due(now, at, placed, rows)


# -- what it says ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ConnectorLine:
    name: str
    company: str
    platform: str


@dataclass(frozen=True)
class Tally:
    """How many of one kind of action were done: `words` is "3 reminders emailed"."""

    kind: str
    count: int
    words: str


@dataclass(frozen=True)
class DoneItem:
    """One action done (or refused for good) yesterday."""

    connector: str
    kind: str
    #: "INV-1042 · Harbor Cafe"
    label: str
    #: the stage's title, or what a person recorded
    stage: str
    #: "reminder emailed", "letter sent"...
    what: str
    #: where it went (an email address), when known
    to: str | None
    #: the firm-local time it ended
    at: datetime
    #: why it was refused (refused items only)
    why: str | None = None


@dataclass(frozen=True)
class CallItem:
    connector: str
    customer: str
    phone: str | None
    #: "1,200.00 GBP"
    owed: str
    oldest_days: int
    oldest_invoice: str
    stage: str
    #: earlier calls nobody answered
    tries: int


@dataclass(frozen=True)
class WaitItem:
    connector: str
    #: the first characters of the action's id, as `arsync outbox` shows them
    id: str
    kind: str
    label: str
    stage: str
    why: str | None


@dataclass(frozen=True)
class TokenItem:
    connector: str
    #: the firm-local moment the link lapses unless refreshed
    at: datetime
    #: whole days left (0: today; negative: lapsed)
    days: int


@dataclass(frozen=True)
class TroubleItem:
    connector: str
    what: str
    #: what to do about it, as a sentence
    fix: str


@dataclass(frozen=True)
class DoubtItem:
    """An earlier digest that may not have arrived."""

    day: date
    why: str


@dataclass(frozen=True)
class Digest:
    """Everything one digest says; the template's fields (and `quiet`)."""

    day: date
    yesterday: date
    zone: str
    connectors: tuple[ConnectorLine, ...]
    tallies: tuple[Tally, ...]
    sent: tuple[DoneItem, ...]
    refused: tuple[DoneItem, ...]
    calls: tuple[CallItem, ...]
    approve: tuple[WaitItem, ...]
    person: tuple[WaitItem, ...]
    expiring: tuple[TokenItem, ...]
    trouble: tuple[TroubleItem, ...]
    doubtful: tuple[DoubtItem, ...] = ()
    limit: int = LIMIT
    subject: str = field(default="")

    @property
    def quiet(self) -> bool:
        """Nothing was done and nothing needs anyone: the short digest."""
        return not (
            self.sent
            or self.refused
            or self.calls
            or self.approve
            or self.person
            or self.expiring
            or self.trouble
            or self.doubtful
        )

    def count(self, kind: str) -> int:
        return next((t.count for t in self.tallies if t.kind == kind), 0)

    def summary(self) -> dict[str, int]:
        """How many of each thing it told, for the store."""
        return {
            **{t.kind: t.count for t in self.tallies},
            "refused": len(self.refused),
            "calls": len(self.calls),
            "approve": len(self.approve),
            "person": len(self.person),
            "expiring": len(self.expiring),
            "trouble": len(self.trouble),
            "doubtful": len(self.doubtful),
        }


def short_day(day: date) -> str:
    """ "Tue 1 Dec", the same whatever the machine's locale."""
    return f"{_DAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]}"


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def subject_of(digest: Digest) -> str:
    """ "arsync: 3 reminders sent, 2 calls today — Tue 1 Dec"; "nothing needs you" when quiet."""
    parts: list[str] = []
    if n := digest.count("email"):
        parts.append(_n(n, "reminder sent", "reminders sent"))
    if n := digest.count("letter"):
        parts.append(_n(n, "letter sent", "letters sent"))
    if n := digest.count("handover"):
        parts.append(_n(n, "hand-over", "hand-overs"))
    if digest.calls:
        parts.append(_n(len(digest.calls), "call today", "calls today"))
    if digest.approve:
        parts.append(f"{len(digest.approve)} to approve")
    if digest.person:
        parts.append(_n(len(digest.person), "needs a person", "need a person"))
    troubled = {t.connector for t in digest.trouble} | {t.connector for t in digest.expiring}
    if troubled:
        parts.append(_n(len(troubled), "connector needs you", "connectors need you"))
    if not parts:
        parts.append("nothing needs you" if digest.quiet else "nothing sent yesterday")
    return f"arsync: {', '.join(parts)} — {short_day(digest.day)}"


def tallies_of(items: Iterable[DoneItem], letters: int) -> tuple[Tally, ...]:
    """Counts by kind in the digest's order; letters by message (one per customer, however
    many invoice rows it answered)."""
    counts: dict[str, int] = {}
    for item in items:
        counts[item.kind] = counts.get(item.kind, 0) + 1
    if "letter" in counts:
        counts["letter"] = letters
    order = [*_KINDS, *sorted(set(counts) - set(_KINDS))]
    out = []
    for kind in order:
        if counts.get(kind):
            one, many = _KINDS.get(kind, (f"{kind} done", f"{kind} done"))
            out.append(Tally(kind, counts[kind], _n(counts[kind], one, many)))
    return tuple(out)


def collect(store: Store, config: Config, due: DigestDue, *, now: datetime) -> Digest:
    """What the digest of `due` says, read from the store at `now`."""
    zone = ZoneInfo(due.zone)
    start, _ = day_bounds(due.day - timedelta(days=1), zone)
    end, _ = day_bounds(due.day, zone)
    names = [n for n in due.connectors if n in config.connectors]
    every = [*names, *(n for n in due.unplaced if n in config.connectors)]
    lines: list[ConnectorLine] = []
    sent: list[DoneItem] = []
    refused: list[DoneItem] = []
    letters = 0
    expiring: list[TokenItem] = []
    trouble: list[TroubleItem] = []
    with store.reading() as tx:
        rows = {r.name: r for r in tx.connectors.all()}
        for name in names:
            connector = config.connector(name)
            row = rows.get(name)
            lines.append(
                ConnectorLine(
                    name,
                    (row.company_name if row else None) or connector.display_name,
                    PLATFORM_NAMES.get(connector.platform_code, connector.platform),
                )
            )
            if row is None:
                continue
            ended = DigestsRepo(tx).ended_between(row.id, start, end, states=(S.DONE, S.DEAD))
            done, dead, messages = _done_items(tx, row, ended, zone)
            sent += done
            refused += dead
            letters += messages
        for name in every:
            connector = config.connector(name)
            row = rows.get(name)
            found, lapsing = _health(tx, config, connector, row, now, zone)
            trouble += found
            expiring += lapsing
            if name in due.unplaced and row is not None and row.linked:
                trouble.append(
                    TroubleItem(
                        name,
                        "arsync does not know its firm's time zone, so nothing is planned or "
                        "sent for it",
                        f'Set timezone in {connector.source}, e.g. timezone = "America/Chicago".',
                    )
                )
        history = DigestsRepo(tx).of_zone(
            due.zone, since=due.day - timedelta(days=LOOKBACK_DAYS), before=due.day
        )
    linked = [n for n in names if (r := rows.get(n)) is not None and r.linked]
    calls, call_trouble = _calls(store, config, linked)
    approve, person = _waiting(store, config, linked)
    made = Digest(
        day=due.day,
        yesterday=due.day - timedelta(days=1),
        zone=due.zone,
        connectors=tuple(lines),
        tallies=tallies_of(sent, letters),
        sent=tuple(sent),
        refused=tuple(refused),
        calls=tuple(calls),
        approve=tuple(approve),
        person=tuple(person),
        expiring=tuple(expiring),
        trouble=tuple(trouble + call_trouble),
        doubtful=doubtful(history),
    )
    return _with_subject(made)


def _with_subject(digest: Digest) -> Digest:
    return dataclasses.replace(digest, subject=subject_of(digest))


def doubtful(history: Sequence[DigestRow]) -> tuple[DoubtItem, ...]:
    """Earlier digests, since the last one that surely arrived, that may not have (pure)."""
    last_sent = max((r.day for r in history if r.state is DigestState.SENT), default=None)
    out = []
    for r in history:
        if last_sent is not None and r.day <= last_sent:
            continue
        if r.state is DigestState.SENDING:
            out.append(DoubtItem(r.day, "arsync stopped while sending it, so it was not resent"))
        elif r.state is DigestState.UNKNOWN:
            out.append(
                DoubtItem(
                    r.day,
                    "the mail server took it but its answer was lost, so it was not resent"
                    + (f" ({r.error})" if r.error else ""),
                )
            )
    return tuple(out)


def _done_items(
    tx: Tx, row: ConnectorRow, ended: Sequence[OutboxRow], zone: ZoneInfo
) -> tuple[list[DoneItem], list[DoneItem], int]:
    """Done and refused items, and how many letters (messages) the done letter rows sent."""
    invoices = tx.records.by_ids(
        row.id, Kind.INVOICE, {r.invoice_id for r in ended if r.invoice_id}
    )
    customers = tx.records.by_ids(row.id, Kind.CUSTOMER, {r.customer_id for r in ended})
    done: list[DoneItem] = []
    dead: list[DoneItem] = []
    leads: dict[str, list[OutboxRow]] = {}
    for r in ended:
        if r.kind == "letter" and r.state is S.DONE:
            result = r.result if isinstance(r.result, dict) else {}
            leads.setdefault(str(result.get("lead") or r.id), []).append(r)
            continue
        item = _item(row.name, r, invoices, customers, zone)
        (done if r.state is S.DONE else dead).append(item)
    for group in leads.values():
        # one letter per customer: one line, naming every invoice it listed
        first = group[0]
        result = first.result if isinstance(first.result, dict) else {}
        numbers = [str(n) for n in result.get("invoices") or ()] or [
            _number(r, invoices) for r in group
        ]
        item = _item(row.name, first, invoices, customers, zone)
        name = _customer_name(first, customers)
        done.append(
            DoneItem(
                item.connector,
                item.kind,
                f"{', '.join(numbers)} · {name}",
                item.stage,
                item.what,
                item.to,
                max(_local(r.done_at or r.updated_at, zone) for r in group),
            )
        )
    done.sort(key=lambda i: (i.at, i.kind, i.label))
    return done, dead, len(leads)


def _item(
    connector: str,
    r: OutboxRow,
    invoices: Mapping[str, object],
    customers: Mapping[str, object],
    zone: ZoneInfo,
) -> DoneItem:
    result = r.result if isinstance(r.result, dict) else {}
    number = _number(r, invoices) if r.invoice_id else ""
    name = _customer_name(r, customers)
    to = result.get("to")
    return DoneItem(
        connector=connector,
        kind=r.kind,
        label=f"{number} · {name}" if number else name,
        stage=r.stage_title,
        what=_KINDS.get(r.kind, (r.kind, r.kind))[0],
        to=str(to) if to else None,
        at=_local(r.done_at or r.updated_at, zone),
        why=r.reason if r.state is S.DEAD else None,
    )


def _number(r: OutboxRow, invoices: Mapping[str, object]) -> str:
    invoice = invoices.get(r.invoice_id or "")
    return (invoice.number if isinstance(invoice, Invoice) else None) or r.invoice_id or ""


def _customer_name(r: OutboxRow, customers: Mapping[str, object]) -> str:
    customer = customers.get(r.customer_id)
    return customer.name if isinstance(customer, Customer) else r.customer_id


def _local(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment.astimezone(zone)


def _health(
    tx: Tx,
    config: Config,
    connector: ConnectorConfig,
    row: ConnectorRow | None,
    now: datetime,
    zone: ZoneInfo,
) -> tuple[list[TroubleItem], list[TokenItem]]:
    """What is wrong with a connector (as `arsync status` sees it), and a link about to lapse."""
    name = connector.name
    reconnect = f"Run `arsync connect {name}`."
    if row is None or row.status is ConnectorState.NEW or not row.linked:
        return [TroubleItem(name, "not connected yet", reconnect)], []
    if row.status is ConnectorState.RECONNECT_NEEDED:
        said = f": {row.status_reason}" if row.status_reason else ""
        return [TroubleItem(name, f"its link to the ledger is dead{said}", reconnect)], []
    trouble: list[TroubleItem] = []
    if row.parked_at(now):
        assert row.parked_until is not None
        trouble.append(
            TroubleItem(
                name,
                f"parked until {_when(row.parked_until, zone, now)}: {row.parked_reason}",
                "It resumes by itself.",
            )
        )
    # the dispatcher's own guardrail: past it, nothing is sent for the connector
    stale = config.policy_of(connector).rules.stale_sync
    last = row.last_sync_ok_at
    failed = f"; the last try said: {row.last_error}" if row.last_error else ""
    if last is None:
        trouble.append(
            TroubleItem(
                name,
                f"no sync has finished yet, so nothing is sent for it{failed}",
                f"Run `arsync sync {name}`, or see `arsync status {name}`.",
            )
        )
    elif now - last > stale:
        trouble.append(
            TroubleItem(
                name,
                f"not synced for {span((now - last).total_seconds())} (the last good sync was "
                f"{_when(last, zone, now)}), so nothing is sent for it{failed}",
                f"See `arsync status {name}`.",
            )
        )
    for channel, (until, why) in sorted(tx.outbox.parked(row.id).items()):
        trouble.append(
            TroubleItem(
                name,
                f"{channel} is parked until {_when(until, zone, now)}: {why}",
                "It resumes by itself.",
            )
        )
    tokens = tx.tokens.load(row.id)
    lapsing: list[TokenItem] = []
    if tokens is not None:
        limit = REFRESH_UNUSED_LIMIT.get(row.platform)
        unused = tokens.refreshed_at + limit if limit else None
        lapses = min(
            (t for t in (tokens.refresh_expires_at, unused) if t is not None), default=None
        )
        if lapses is not None and lapses - now < TOKEN_HORIZON:
            local = lapses.astimezone(zone)
            lapsing.append(
                TokenItem(name, local, (local.date() - now.astimezone(zone).date()).days)
            )
    return trouble, lapsing


def _when(moment: datetime, zone: ZoneInfo, now: datetime) -> str:
    """ "14:05 today", "09:00 Wed 2 Dec": a moment in the firm's time."""
    local, today = moment.astimezone(zone), now.astimezone(zone).date()
    day = "today" if local.date() == today else short_day(local.date())
    return f"{local:%H:%M} {day}"


class _OnStore(Collecting):
    """The call list's reader on the digest's own store and configuration (`call_list` reads
    only these two), without opening another runtime."""

    def __init__(self, config: Config, store: Store) -> None:
        self.config = config
        self.store = store


def _calls(
    store: Store, config: Config, names: Sequence[str]
) -> tuple[list[CallItem], list[TroubleItem]]:
    """Today's calls of each connector, as `arsync calls` lists them; a connector whose list
    cannot be made (a template, a missing rate) is trouble, not the end of the digest."""
    reader = _OnStore(config, store)
    calls: list[CallItem] = []
    trouble: list[TroubleItem] = []
    for name in names:
        try:
            lists = call_list(reader, [name])
        except ArsyncError as err:
            trouble.append(
                TroubleItem(name, f"its call list cannot be made: {err}", "See `arsync calls`.")
            )
            continue
        for made in lists:
            for call in made.calls:
                calls.append(
                    CallItem(
                        connector=made.connector,
                        customer=call.customer,
                        phone=call.phone,
                        owed=owed_text(call.owed),
                        oldest_days=call.oldest_days,
                        oldest_invoice=call.oldest_invoice,
                        stage=call.stage,
                        tries=call.tries,
                    )
                )
    return calls, trouble


def _waiting(
    store: Store, config: Config, names: Sequence[str]
) -> tuple[list[WaitItem], list[WaitItem]]:
    """What waits for approval, and for a person, as `arsync outbox` lists it."""
    if not names:
        return [], []
    approve: list[WaitItem] = []
    person: list[WaitItem] = []
    for item in listing(store, config, names, everything=False):
        r = item.row
        if r.state is S.AWAITING_APPROVAL:
            approve.append(
                WaitItem(
                    item.connector, r.id[:SHORT], r.kind, item.label, r.stage_title, r.approval
                )
            )
        elif r.state is S.NEEDS_PERSON:
            person.append(
                WaitItem(item.connector, r.id[:SHORT], r.kind, item.label, r.stage_title, r.reason)
            )
    return approve, person


# -- the words and the message ---------------------------------------------------------------------
@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str | None


def search_path(home: Path) -> list[Path]:
    """Where the digest's templates are looked for: the firm's config/templates/, then
    arsync's own."""
    base = Path(home) / TEMPLATES_DIR
    return [*([base] if base.is_dir() else []), BUILTIN_DIGEST_DIR]


def render(digest: Digest, words: Words) -> Rendered:
    """The digest's subject, plain text and (if a digest.html.j2 is found) HTML.

    TemplateProblem ("file: template: message") when a template cannot be rendered."""
    fields = _fields(digest)
    text, exported = words._render_module(TEXT_TEMPLATE, fields)
    # one line, whatever the template did: a line break in a header would start another
    subject = " ".join(str(exported.get("subject") or digest.subject).split())
    html = None
    if any((d / HTML_TEMPLATE).is_file() for d in words.dirs):
        html = words._render(HTML_TEMPLATE, {**fields, "subject": subject}).strip() + "\n"
    return Rendered(subject or digest.subject, _tidy(text), html)


def sample(day: date = date(2026, 9, 28)) -> Digest:
    """A digest with every section filled, for `check()`."""
    zone = ZoneInfo("Europe/London")
    at = datetime.combine(day, time(9, 30), tzinfo=zone)
    done = DoneItem(
        "books",
        "email",
        "INV-2026-000123 · Northwind Traders",
        "30-day reminder",
        "reminder emailed",
        "ap@northwind.example",
        at,
    )
    wait = WaitItem("books", "k7q2m4xa", "handover", done.label, "final notice", "approval")
    made = Digest(
        day=day,
        yesterday=day - timedelta(days=1),
        zone=zone.key,
        connectors=(ConnectorLine("books", "Harbor & Finch Ltd", "Xero"),),
        tallies=tallies_of([done], 0),
        sent=(done,) * (LIMIT + 1),
        refused=(dataclasses.replace(done, why="refused: 550 no such mailbox"),),
        calls=(
            CallItem("books", "Northwind Traders", None, "1,200.00 GBP", 45, "INV-1", "call", 1),
        )
        * (LIMIT + 1),
        approve=(wait,) * (LIMIT + 1),
        person=(dataclasses.replace(wait, why=None),) * (LIMIT + 1),
        expiring=(TokenItem("books", at, 5), TokenItem("books", at, 0), TokenItem("books", at, -2)),
        trouble=(TroubleItem("books", "not connected yet", "Run `arsync connect books`."),),
        doubtful=(DoubtItem(day - timedelta(days=1), "arsync stopped while sending it"),),
    )
    return _with_subject(made)


def check(home: Path) -> list[str]:
    """Every problem the digest's templates would cause ("file: template: message"), found by
    rendering them with every section filled and with none, and by reading every branch for
    fields that do not exist: for the service to say at start-up, not at 08:00."""
    words = Words.load(search_path(home), home=home)
    full = sample()
    known = frozenset(_fields(full))
    problems: list[str] = []
    for name in (TEXT_TEMPLATE, HTML_TEMPLATE):
        if any((d / name).is_file() for d in words.dirs):
            extra = {"subject"} if name == HTML_TEMPLATE else set()
            problems += words.unknown_fields(name, known | extra)
    for digest in (full, empty_sample(full.day)):
        try:
            render(digest, words)
        except TemplateProblem as err:
            problems.append(str(err))
    return list(dict.fromkeys(problems))


def empty_sample(day: date) -> Digest:
    """A quiet day's digest, for `check()`."""
    made = Digest(
        day=day,
        yesterday=day - timedelta(days=1),
        zone="UTC",
        connectors=(),
        tallies=(),
        sent=(),
        refused=(),
        calls=(),
        approve=(),
        person=(),
        expiring=(),
        trouble=(),
    )
    return _with_subject(made)


def _fields(digest: Digest) -> dict[str, Any]:
    values = {f.name: getattr(digest, f.name) for f in dataclasses.fields(digest)}
    values["quiet"] = digest.quiet
    return values


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.strip().splitlines()]
    return "\n".join(lines) + "\n"


def digest_id(zone: str, day: date) -> str:
    """The id a digest's Message-ID is made from: the same for every try of one day."""
    slug = re.sub(r"[^A-Za-z0-9._-]", "-", zone.replace("/", ".").replace("+", "p"))
    return f"digest.{day:%Y%m%d}.{slug}"


def message(
    rendered: Rendered,
    due: DigestDue,
    settings: DigestSettings,
    mail: MailSettings,
    *,
    now: datetime,
) -> EmailMessage:
    """The digest as an email: From arsync at [mail] from_address, To [digest] to."""
    zone = ZoneInfo(due.zone)
    made = EmailMessage(policy=SMTP)
    made["From"] = Address(mail.from_name or "arsync", addr_spec=mail.from_address)
    made["To"] = Address(addr_spec=settings.to)
    made["Subject"] = rendered.subject
    made["Date"] = format_datetime(now.astimezone(zone))
    ident = digest_id(due.zone, due.day)
    made["Message-ID"] = message_id(ident, mail.from_address)
    # RFC 3834: sent by a program, so an out-of-office robot should not answer it
    made["Auto-Submitted"] = "auto-generated"
    made.set_content(rendered.text)
    if rendered.html is not None:
        made.add_alternative(rendered.html, subtype="html")
        # not random: the same digest is the same bytes
        made.set_boundary(f"=_arsync_{ident}")
    return made


# -- sending ---------------------------------------------------------------------------------------
class Outcome(StrEnum):
    SENT = "sent"
    #: another call, process or replica has this day's digest (or had it): nothing was sent
    TAKEN = "taken"
    #: certainly not sent: claimed again on a later pass from `retry_at`, the same day only
    FAILED = "failed"
    #: handed over without an answer, or interrupted: never sent again
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class SentDigest:
    due: DigestDue
    outcome: Outcome
    to: str | None = None
    subject: str | None = None
    message_id: str | None = None
    error: str | None = None
    retry_at: datetime | None = None
    summary: dict[str, int] = field(default_factory=dict)


def send(
    store: Store, config: Config, due: DigestDue, *, mailer: Mailer | None = None
) -> SentDigest:
    """Claim `due`'s day, compose the digest and send it once (see the module's doc).

    `mailer`: the SMTP path of letters by default ([mail], without its bcc copy)."""
    settings, mail = config.settings.digest, config.settings.mail
    if settings is None or mail is None:
        raise ConfigError(f"{SETTINGS_FILE}: [digest] and [mail] are needed to send a digest")
    owner = worker_name()
    with store.transaction() as tx:
        claimed = DigestsRepo(tx).claim(due.zone, due.day, owner=owner, recipient=settings.to)
    if claimed is None:
        log.info("digest_taken", zone=due.zone, day=due.day.isoformat())
        return SentDigest(due, Outcome.TAKEN, to=settings.to)
    attempt = _Try(store, due, owner, settings.to, claimed.attempts)
    now = store.clock.now()
    try:
        digest = collect(store, config, due, now=now)
        rendered = render(digest, Words.load(search_path(config.home), home=config.home))
        made = message(rendered, due, settings, mail, now=now)
    except ArsyncError as err:
        return attempt.failed(str(err), RETRY_AFTER_REFUSAL)
    except Exception as err:
        # a fault of arsync's own, before anything was sent: said once with its traceback, and
        # tried again later like any failure that sent nothing
        log.exception("digest_not_composed", zone=due.zone, day=due.day.isoformat())
        return attempt.failed(f"{type(err).__name__}: {err}", None)
    attempt.subject, attempt.ident = rendered.subject, str(made["Message-ID"])
    summary = digest.summary()
    # the letters' copy to [mail] bcc is for customers' letters: not for the firm's own digest
    sender = mailer or Mailer(mail.model_copy(update={"bcc": None}))
    try:
        sender.send(made)
    except OutcomeUnknown as err:
        return attempt.ended(DigestState.UNKNOWN, summary, str(err))
    except TransientError as err:
        asked = timedelta(seconds=err.retry_after) if err.retry_after else None
        return attempt.failed(str(err), asked)
    except (PermanentError, ConfigError) as err:
        # refused, or [mail] cannot be used as it is: a person must look, so not every minute
        return attempt.failed(str(err), RETRY_AFTER_REFUSAL)
    except Exception as err:
        # the message may have left: never resent
        log.exception("digest_send_interrupted", zone=due.zone, day=due.day.isoformat())
        return attempt.ended(DigestState.UNKNOWN, summary, f"{type(err).__name__}: {err}")
    return attempt.ended(DigestState.SENT, summary, None)


def retry_wait(attempt: int, asked: timedelta | None = None) -> timedelta:
    """How long a failed try waits before the next (the server's own wait, if longer)."""
    wait = RETRY_AFTER[min(max(attempt, 1), len(RETRY_AFTER)) - 1]
    return max(wait, asked) if asked is not None else wait


@dataclass
class _Try:
    """One claimed try of a day's digest, and how its outcome is recorded."""

    store: Store
    due: DigestDue
    owner: str
    to: str
    attempt: int
    subject: str | None = None
    ident: str | None = None

    def failed(self, error: str, wait: timedelta | None) -> SentDigest:
        """Nothing was sent: the day may be claimed again after the wait."""
        retry_at = self.store.clock.now() + retry_wait(self.attempt, wait)
        log.warning(
            "digest_failed",
            zone=self.due.zone,
            day=self.due.day.isoformat(),
            error=error,
            attempt=self.attempt,
            retry_at=retry_at.isoformat(),
        )
        self._record(DigestState.FAILED, error=error, next_at=retry_at)
        return SentDigest(
            self.due,
            Outcome.FAILED,
            to=self.to,
            subject=self.subject,
            message_id=self.ident,
            error=error,
            retry_at=retry_at,
        )

    def ended(self, state: DigestState, summary: dict[str, int], error: str | None) -> SentDigest:
        """Sent, or handed over without an answer (unknown): never sent again either way."""
        said = {"zone": self.due.zone, "day": self.due.day.isoformat(), "attempt": self.attempt}
        if state is DigestState.SENT:
            log.info("digest_sent", to=self.to, subject=self.subject, **said)
        else:
            log.warning("digest_unknown", error=error, **said)
        self._record(state, error=error, summary=summary)
        outcome = Outcome.SENT if state is DigestState.SENT else Outcome.UNKNOWN
        return SentDigest(
            self.due,
            outcome,
            to=self.to,
            subject=self.subject,
            message_id=self.ident,
            error=error,
            summary=summary,
        )

    def _record(self, state: DigestState, **fields: Any) -> None:
        with self.store.transaction() as tx:
            kept = DigestsRepo(tx).settle(
                self.due.zone,
                self.due.day,
                owner=self.owner,
                state=state,
                subject=self.subject,
                message_id=self.ident,
                **fields,
            )
        if not kept:
            # only a person editing the table moves a claimed row: say so, change nothing
            log.warning(
                "digest_row_moved",
                zone=self.due.zone,
                day=self.due.day.isoformat(),
                owner=self.owner,
            )


__all__ = [
    "Digest",
    "DigestDue",
    "Outcome",
    "Rendered",
    "SentDigest",
    "check",
    "collect",
    "day_bounds",
    "due",
    "due_day",
    "message",
    "place",
    "plan_due",
    "render",
    "send",
    "subject_of",
]
