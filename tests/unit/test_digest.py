"""The firm's daily digest: when it is due (zones, DST, days missed), what it says (from a store
filled here, on SQLite and PostgreSQL), its words (arsync's template, a firm's own), and the
claim that keeps each day's digest to one."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from arsync.clock import FrozenClock
from arsync.config import Config, ConnectorConfig, Settings
from arsync.domain import CompanyInfo, Customer, Page
from arsync.escalation.policy import builtin_policies
from arsync.store import Store, open_store
from arsync.store.digests import DigestRow, DigestsRepo, DigestState
from arsync.store.states import OutboxState
from arsync.writeback.digest import (
    FALLBACK_ZONE,
    LIMIT,
    Digest,
    DigestDue,
    check,
    collect,
    day_bounds,
    digest_id,
    doubtful,
    due,
    due_day,
    message,
    place,
    plan_due,
    render,
    retry_wait,
    sample,
    search_path,
    subject_of,
)
from arsync.writeback.words import Words
from tests.support import invoice

S = OutboxState
AT = time(8, 0)
LONDON, CHICAGO, SYDNEY = (
    ZoneInfo("Europe/London"),
    ZoneInfo("America/Chicago"),
    ZoneInfo("Australia/Sydney"),
)
NEW_YORK = ZoneInfo("America/New_York")
#: the digest's day in the store tests: Tue 1 Dec 2026 (London keeps GMT, so local = UTC)
DAY = date(2026, 12, 1)
NOW = datetime(2026, 12, 1, 8, 5, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


# -- due: pure -------------------------------------------------------------------------------------
def test_the_same_moment_is_a_different_morning_in_each_zone() -> None:
    now = utc(2026, 12, 1, 7, 30)
    assert due_day(now, LONDON, AT) is None  # 07:30 there
    assert due_day(now, SYDNEY, AT) == date(2026, 12, 1)  # 18:30 there
    assert due_day(now, CHICAGO, AT) is None  # 01:30 on 1 Dec: 30 Nov's day is over
    assert due_day(utc(2026, 12, 1, 8, 0), LONDON, AT) == date(2026, 12, 1)
    assert due_day(utc(2026, 12, 1, 14, 0), CHICAGO, AT) == date(2026, 12, 1)
    # either side of the date line, the same instant is two days
    now = utc(2026, 12, 1, 20, 0)
    assert due_day(now, ZoneInfo("Pacific/Kiritimati"), AT) == date(2026, 12, 2)
    assert due_day(now, ZoneInfo("Pacific/Pago_Pago"), AT) == date(2026, 12, 1)


def test_a_naive_now_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        due_day(datetime(2026, 12, 1, 9, 0), LONDON, AT)


def test_when_the_clocks_jump_past_the_hour_it_is_due_from_the_jump() -> None:
    # New York, Sun 8 Mar 2026: 02:00 EST becomes 03:00 EDT; 02:30 never happens
    at = time(2, 30)
    assert due_day(utc(2026, 3, 8, 6, 59), NEW_YORK, at) is None  # 01:59 EST
    assert due_day(utc(2026, 3, 8, 7, 0), NEW_YORK, at) == date(2026, 3, 8)  # 03:00 EDT
    # London, Sun 29 Mar 2026: 01:00 GMT becomes 02:00 BST
    at = time(1, 30)
    assert due_day(utc(2026, 3, 29, 0, 59), LONDON, at) is None
    assert due_day(utc(2026, 3, 29, 1, 0), LONDON, at) == date(2026, 3, 29)


def test_when_the_clocks_go_back_over_the_hour_the_claim_keeps_it_to_once() -> None:
    # New York, Sun 1 Nov 2026: 01:30 comes twice, at 05:30 and at 06:30 UTC
    at = time(1, 30)
    first, second = utc(2026, 11, 1, 5, 30), utc(2026, 11, 1, 6, 30)
    assert due_day(first, NEW_YORK, at) == due_day(second, NEW_YORK, at) == date(2026, 11, 1)
    placed = place(config_of(Path("."), {"ny": {"timezone": "America/New_York"}}), {})
    [made] = plan_due(first, at, placed, {})
    assert (made.zone, made.day, made.connectors) == (
        "America/New_York",
        date(2026, 11, 1),
        ("ny",),
    )
    taken = {(made.zone, made.day): row(made.zone, made.day, DigestState.SENT)}
    assert plan_due(second, at, placed, taken) == []


def test_a_day_is_23_or_25_hours_when_the_clocks_change() -> None:
    spring = day_bounds(date(2026, 3, 29), LONDON)
    autumn = day_bounds(date(2026, 10, 25), LONDON)
    assert spring == (utc(2026, 3, 29, 0, 0), utc(2026, 3, 29, 23, 0))
    assert autumn == (utc(2026, 10, 24, 23, 0), utc(2026, 10, 26, 0, 0))
    assert day_bounds(date(2026, 12, 1), CHICAGO) == (utc(2026, 12, 1, 6), utc(2026, 12, 2, 6))


def test_days_missed_while_down_are_not_sent_late_only_today() -> None:
    placed = place(config_of(Path("."), {"books": {"timezone": "Europe/London"}}), {})
    # the last digest went on Fri 27 Nov; the service comes back on Tue 1 Dec at 07:00
    sent = {("Europe/London", date(2026, 11, 27)): row("Europe/London", date(2026, 11, 27))}
    assert plan_due(utc(2026, 12, 1, 7, 0), AT, placed, sent) == []
    [made] = plan_due(utc(2026, 12, 1, 10, 0), AT, placed, sent)
    assert made.day == date(2026, 12, 1) and made.attempts == 0


def test_a_failed_try_goes_again_when_its_wait_is_over_and_nothing_else_does() -> None:
    placed = place(config_of(Path("."), {"books": {"timezone": "Europe/London"}}), {})
    key = ("Europe/London", DAY)
    later = NOW + timedelta(minutes=15)
    failed = row(*key, DigestState.FAILED, attempts=2, next_at=later)
    assert plan_due(NOW, AT, placed, {key: failed}) == []
    [again] = plan_due(later, AT, placed, {key: failed})
    assert again.attempts == 2
    for state in (DigestState.SENT, DigestState.SENDING, DigestState.UNKNOWN):
        assert plan_due(later, AT, placed, {key: row(*key, state)}) == [], state


def test_connectors_are_placed_by_their_firms_zone() -> None:
    config = config_of(
        Path("."),
        {
            "london-books": {"timezone": "Europe/London"},
            "london-xero": {"platform": "xero"},
            "chicago": {"timezone": "America/Chicago"},
            "somewhere": {},  # QuickBooks, never connected, no timezone
            "off": {"timezone": "Asia/Tokyo", "enabled": False},
        },
    )
    rows = {"london-xero": connector_row("london-xero", "xero", "GMTSTANDARDTIME")}
    placed = place(config, rows)
    assert placed.groups == {
        "America/Chicago": ("chicago",),
        "Europe/London": ("london-books", "london-xero"),
    }
    assert list(placed.unplaced) == ["somewhere"]
    assert "sets no time zone" in placed.unplaced["somewhere"]
    [chicago, london] = plan_due(utc(2026, 12, 1, 15), AT, placed, {})
    assert chicago.unplaced == london.unplaced == ("somewhere",)
    # with no zone known at all, the digest keeps UTC
    alone = place(config_of(Path("."), {"somewhere": {}}), {})
    assert alone.groups == {FALLBACK_ZONE: ()}
    assert place(config_of(Path("."), {}), {}).groups == {}


def test_without_digest_settings_nothing_is_due(tmp_path: Path) -> None:
    config = config_of(tmp_path, {"books": {"timezone": "Europe/London"}}, digest=False)
    store = open_store(f"sqlite:///{tmp_path / 'a.db'}", FrozenClock(NOW))
    try:
        assert due(store, config, NOW) == []
    finally:
        store.close()


def test_retries_wait_longer_each_time_and_at_least_what_the_server_asked() -> None:
    waits = [retry_wait(n) for n in range(1, 7)]
    assert waits[:4] == [timedelta(minutes=m) for m in (5, 15, 30, 60)]
    assert waits[4:] == [timedelta(hours=1)] * 2
    assert retry_wait(1, timedelta(minutes=20)) == timedelta(minutes=20)


def test_earlier_digests_in_doubt_are_said_once_in_the_next_that_goes() -> None:
    zone = "Europe/London"
    history = [
        row(zone, date(2026, 11, 25), DigestState.SENDING),  # before the last sent one: said
        row(zone, date(2026, 11, 26)),
        row(zone, date(2026, 11, 27), DigestState.SENDING),
        row(zone, date(2026, 11, 28), DigestState.FAILED),  # certainly not sent: nothing to say
        row(zone, date(2026, 11, 30), DigestState.UNKNOWN, error="no reply"),
    ]
    found = doubtful(history)
    assert [d.day for d in found] == [date(2026, 11, 27), date(2026, 11, 30)]
    assert "stopped while sending" in found[0].why
    assert "answer was lost" in found[1].why and "(no reply)" in found[1].why


def test_a_digests_message_id_is_the_same_for_every_try_of_its_day() -> None:
    assert digest_id("Europe/London", DAY) == "digest.20261201.Europe.London"
    assert digest_id("Etc/GMT+5", DAY) != digest_id("Etc/GMT-5", DAY)
    assert digest_id("America/Argentina/Buenos_Aires", DAY).endswith("Argentina.Buenos_Aires")


# -- the subject and the words ---------------------------------------------------------------------
def empty(**changes: Any) -> Digest:
    made = Digest(
        day=DAY,
        yesterday=DAY - timedelta(days=1),
        zone="Europe/London",
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
    made = replace(made, **changes)
    return replace(made, subject=subject_of(made))


def test_an_empty_day_says_nothing_needs_you() -> None:
    quiet = empty()
    assert quiet.quiet
    assert quiet.subject == "arsync: nothing needs you — Tue 1 Dec"
    text = render(quiet, Words.load(search_path(Path("/nonexistent")))).text
    assert "Nothing needs you today." in text
    assert "YESTERDAY" not in text


def test_a_firms_own_template_wins_and_may_set_the_subject(tmp_path: Path) -> None:
    own = tmp_path / "config" / "templates"
    own.mkdir(parents=True)
    (own / "digest.txt.j2").write_text(
        '{% set subject = "Morning, " ~ (calls | length) ~ " calls" %}Hello {{ day | day }}.\n'
    )
    (own / "digest.html.j2").write_text("<p>{{ subject }} &amp; {{ zone }}</p>\n")
    words = Words.load(search_path(tmp_path), home=tmp_path)
    made = render(empty(), words)
    assert made.subject == "Morning, 0 calls"
    assert made.text == "Hello 1 Dec 2026.\n"
    assert made.html == "<p>Morning, 0 calls &amp; Europe/London</p>\n"
    config = config_of(tmp_path, {})
    assert config.settings.digest is not None and config.settings.mail is not None
    mail = message(
        made,
        DigestDue("Europe/London", DAY, ()),
        config.settings.digest,
        config.settings.mail,
        now=NOW,
    )
    assert mail.get_content_type() == "multipart/alternative"
    assert mail.get_boundary() == "=_arsync_digest.20261201.Europe.London"


def test_arsyncs_own_template_renders_every_section_and_checks_clean(tmp_path: Path) -> None:
    assert check(tmp_path) == []
    full = sample()
    text = render(full, Words.load(search_path(tmp_path))).text
    assert "… and 1 more: `arsync history`" in text
    assert text.count("Northwind Traders · no phone on file") == LIMIT
    assert "lapsed 2 days ago" in text and "lapses today" in text and "lapses in 5 days" in text
    assert "the digest of 27 Sep 2026 may not have reached you" in text


def test_the_check_finds_a_firms_unknown_field_in_a_branch_not_taken(tmp_path: Path) -> None:
    own = tmp_path / "config" / "templates"
    own.mkdir(parents=True)
    (own / "digest.txt.j2").write_text("{% if quiet %}{{ calls_today }}{% endif %}{{ zone }}\n")
    [problem] = check(tmp_path)
    assert problem.startswith("config/templates/digest.txt.j2: digest.txt.j2: line 1:")
    assert "calls_today" in problem


def test_a_firms_template_naming_an_unknown_field_is_said_with_its_file(tmp_path: Path) -> None:
    from arsync.writeback.words import TemplateProblem

    own = tmp_path / "config" / "templates"
    own.mkdir(parents=True)
    (own / "digest.txt.j2").write_text("{{ nonsense }}\n")
    with pytest.raises(TemplateProblem, match=r"config/templates/digest.txt.j2: .*nonsense"):
        render(empty(), Words.load(search_path(tmp_path), home=tmp_path))


def test_the_message_is_plain_text_from_the_firms_address_to_the_digests(tmp_path: Path) -> None:
    config = config_of(tmp_path, {"books": {"timezone": "Europe/London"}})
    assert config.settings.digest is not None and config.settings.mail is not None
    made = render(empty(), Words.load(search_path(tmp_path)))
    mail = message(
        made,
        DigestDue("Europe/London", DAY, ("books",)),
        config.settings.digest,
        config.settings.mail,
        now=NOW,
    )
    assert str(mail["To"]) == "office@harbor.example"
    assert str(mail["From"]) == "arsync <letters@harbor.example>"
    assert mail["Message-ID"] == "<arsync.digest.20261201.Europe.London@harbor.example>"
    assert mail["Date"] == "Tue, 01 Dec 2026 08:05:00 +0000"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "text/plain"


# -- what it says, from a store --------------------------------------------------------------------
@dataclass
class Filled:
    store: Store
    clock: FrozenClock
    config: Config
    ids: dict[str, int]


@pytest.fixture
def filled(db_url: str, tmp_path: Path) -> Iterator[Filled]:
    clock = FrozenClock(utc(2026, 11, 27, 10))
    store = open_store(db_url, clock)
    config = config_of(
        tmp_path,
        {
            "london-xero": {"platform": "xero"},
            "london-qbo": {"timezone": "Europe/London"},
            "chicago": {"timezone": "America/Chicago"},
            "us-qbo": {},  # connected, but QuickBooks says no zone and the US has several
            "new-books": {"timezone": "Europe/London"},  # never connected
        },
    )
    ids: dict[str, int] = {}
    with store.transaction() as tx:
        for name, platform, info in (
            (
                "london-xero",
                "xero",
                CompanyInfo("Harbor & Finch Ltd", "GBP", "GB", None, "GMTSTANDARDTIME"),
            ),
            ("london-qbo", "qbo", CompanyInfo("Harbor Trading Ltd", "GBP", "GB")),
            ("chicago", "qbo", CompanyInfo("Lakeside Inc", "USD", "US", "IL")),
            ("us-qbo", "qbo", CompanyInfo("Anywhere Inc", "USD", "US")),
        ):
            row, _ = tx.connectors.link(name, platform, f"t-{name}", info, at=tx.now)
            ids[name] = row.id
            tx.connectors.sync_finished(row.id, ok=True, error=None)
            tx.tokens.save(
                row.id,
                access_token=b"a",
                refresh_token=b"r",
                access_expires_at=tx.now + timedelta(hours=1),
                # london-qbo's link lapses on Sun 6 Dec, the others' far later
                refresh_expires_at=utc(2026, 12, 6, 12) if name == "london-qbo" else None,
                refreshed_at=utc(2026, 11, 30, 12) if name != "london-qbo" else tx.now,
                connected_at=tx.now,
                scope=None,
            )
        xero = ids["london-xero"]
        people = [
            Customer("c1", "Acme Trading", "ap@acme.example", "020 7946 0000", "GBP", True, tx.now),
            Customer("c2", "Bolt Ltd", "pay@bolt.example", None, "GBP", True, tx.now),
        ]
        books = [
            invoice("1", "480.00", customer_id="c1", number="INV-1", due_date=date(2026, 9, 30)),
            invoice("2", "120.00", customer_id="c1", number="INV-2", due_date=date(2026, 10, 15)),
            invoice("3", "75.50", customer_id="c2", number="INV-3"),
        ]
        tx.records.apply_page(xero, None, Page("test", [*people, *books], {"n": 1}))
    # what happened, when: Sun 29 Nov late (not yesterday), Mon 30 Nov (yesterday), Tue 1 Dec
    # just after midnight (today)
    done = [
        ("old", "email", "1", utc(2026, 11, 29, 23, 59)),
        ("e1", "email", "1", utc(2026, 11, 30, 9, 0)),
        ("e2", "email", "3", utc(2026, 11, 30, 9, 1)),
        ("l1", "letter", "1", utc(2026, 11, 30, 9, 2)),
        ("l2", "letter", "2", utc(2026, 11, 30, 9, 2)),
        ("n1", "note", "1", utc(2026, 11, 30, 9, 3)),
        ("k1", "call", "2", utc(2026, 11, 30, 9, 4)),
        ("x1", "email", "3", utc(2026, 11, 30, 23, 59, 59)),
        ("today", "email", "2", utc(2026, 12, 1, 0, 0)),
    ]
    for ident, kind, inv, when in done:
        clock.set(when)
        with store.transaction() as tx:
            add(tx, xero, ident, kind=kind, invoice_id=inv, customer="c2" if inv == "3" else "c1")
            got = tx.outbox.get(xero, ident)
            assert got is not None
            result: dict[str, Any] = {"to": "ap@acme.example"} if kind == "email" else {}
            if kind == "letter":
                result = {"to": "ap@acme.example", "lead": "l1", "invoices": ["INV-1", "INV-2"]}
            if ident == "x1":
                tx.outbox.move(got, S.DEAD, reason="refused: 550 no such mailbox")
            else:
                tx.outbox.move(got, S.DONE, result=result)
    clock.set(utc(2026, 12, 1, 0, 30))
    with store.transaction() as tx:
        add(
            tx,
            xero,
            "h1",
            kind="handover",
            invoice_id="1",
            state=S.AWAITING_APPROVAL,
            approval="the policy asks a person to approve a hand-over",
        )
        add(
            tx,
            xero,
            "u1",
            kind="email",
            invoice_id="3",
            customer="c2",
            state=S.NEEDS_PERSON,
            reason="the reply was lost: look at the invoice's history",
        )
        # the Chicago firm's day is its own: not in London's digest
        add(tx, ids["chicago"], "c-e1", kind="email", invoice_id="9")
        got = tx.outbox.get(ids["chicago"], "c-e1")
        assert got is not None
        tx.outbox.move(got, S.DONE, result={"to": "x@lakeside.example"})
    clock.set(NOW - timedelta(hours=1))
    with store.transaction() as tx:
        for name in ("london-xero", "chicago", "us-qbo"):
            tx.connectors.sync_finished(ids[name], ok=True, error=None)
        # london-qbo last synced on 27 Nov and has failed since
        tx.connectors.sync_finished(ids["london-qbo"], ok=False, error="503 from QuickBooks")
    clock.set(NOW)
    try:
        yield Filled(store, clock, config, ids)
    finally:
        store.close()


def test_the_digest_says_what_was_done_yesterday_who_to_call_and_what_waits(
    filled: Filled,
) -> None:
    [london, chicago] = sorted(
        due(filled.store, filled.config, utc(2026, 12, 1, 14)),
        key=lambda d: d.zone != "Europe/London",
    )
    assert (london.zone, london.day, london.connectors) == (
        "Europe/London",
        DAY,
        ("london-qbo", "london-xero", "new-books"),
    )
    assert london.unplaced == ("us-qbo",) and chicago.zone == "America/Chicago"
    digest = collect(filled.store, filled.config, london, now=NOW)
    assert [t.words for t in digest.tallies] == [
        "2 reminders emailed",
        "1 letter sent",
        "1 call task opened",
        "1 note written in the ledger",
    ]
    assert [(i.kind, i.label) for i in digest.sent] == [
        ("email", "INV-1 · Acme Trading"),
        ("email", "INV-3 · Bolt Ltd"),
        ("letter", "INV-1, INV-2 · Acme Trading"),
        ("note", "INV-1 · Acme Trading"),
        ("call", "INV-2 · Acme Trading"),
    ]
    assert digest.sent[0].to == "ap@acme.example" and digest.sent[0].at.hour == 9
    [refused] = digest.refused
    assert refused.label == "INV-3 · Bolt Ltd" and refused.why == "refused: 550 no such mailbox"
    [call] = digest.calls
    assert (call.customer, call.phone, call.owed) == ("Acme Trading", "020 7946 0000", "600.00 GBP")
    assert call.oldest_invoice == "INV-1" and call.oldest_days == 62
    [approve] = digest.approve
    assert approve.id == "h1" and approve.kind == "handover" and "approve" in (approve.why or "")
    [person] = digest.person
    assert person.label == "INV-3 · Bolt Ltd" and "reply was lost" in (person.why or "")
    [lapsing] = digest.expiring
    assert (lapsing.connector, lapsing.days) == ("london-qbo", 5)
    trouble = {t.connector: t for t in digest.trouble}
    assert set(trouble) == {"london-qbo", "new-books", "us-qbo"}
    assert "not synced for 4 days" in trouble["london-qbo"].what
    assert "503 from QuickBooks" in trouble["london-qbo"].what
    assert trouble["new-books"].what == "not connected yet"
    assert trouble["new-books"].fix == "Run `arsync connect new-books`."
    assert "does not know its firm's time zone" in trouble["us-qbo"].what
    assert "connectors/us-qbo.toml" in trouble["us-qbo"].fix
    assert digest.subject == (
        "arsync: 2 reminders sent, 1 letter sent, 1 call today, 1 to approve, 1 needs a person, "
        "3 connectors need you — Tue 1 Dec"
    )
    text = render(digest, Words.load(search_path(filled.config.home))).text
    assert "2 reminders emailed, 1 letter sent, 1 call task opened" in text
    assert (
        "09:00 london-xero · INV-1 · Acme Trading: friendly reminder, reminder emailed to "
        "ap@acme.example" in text
    )
    assert "Acme Trading · 020 7946 0000 · owes 600.00 GBP · 62 days overdue (INV-1)" in text
    assert "h1 london-xero · handover · INV-1 · Acme Trading" in text
    assert (
        "lapses in 5 days (6 Dec 2026 12:00) unless refreshed: `arsync connect london-qbo`" in text
    )
    assert "new-books: not connected yet. Run `arsync connect new-books`." in text
    # Chicago's digest has its own day's work only
    other = collect(filled.store, filled.config, chicago, now=utc(2026, 12, 1, 14))
    assert [(i.connector, i.label) for i in other.sent] == [("chicago", "9 · c1")]


def test_a_quiet_install_still_gets_a_short_digest(db_url: str, tmp_path: Path) -> None:
    clock = FrozenClock(NOW - timedelta(hours=2))
    store = open_store(db_url, clock)
    try:
        config = config_of(tmp_path, {"books": {"timezone": "Europe/London"}})
        with store.transaction() as tx:
            row, _ = tx.connectors.link(
                "books", "qbo", "t", CompanyInfo("Harbor Ltd", "GBP", "GB"), at=tx.now
            )
            tx.connectors.sync_finished(row.id, ok=True, error=None)
        clock.set(NOW)
        [made] = due(store, config, NOW)
        digest = collect(store, config, made, now=NOW)
        assert digest.quiet and digest.subject == "arsync: nothing needs you — Tue 1 Dec"
        text = render(digest, Words.load(search_path(tmp_path))).text
        assert text.startswith("arsync's digest for 1 Dec 2026 (Europe/London): Harbor Ltd\n")
    finally:
        store.close()


# -- the claim, on both databases ------------------------------------------------------------------
@pytest.fixture
def store(db_url: str) -> Iterator[tuple[Store, FrozenClock]]:
    clock = FrozenClock(NOW)
    made = open_store(db_url, clock)
    yield made, clock
    made.close()


def test_a_day_is_claimed_once_and_settled_only_by_its_claimer(
    store: tuple[Store, FrozenClock],
) -> None:
    db, _ = store
    zone = "Europe/London"
    with db.transaction() as tx:
        first = DigestsRepo(tx).claim(zone, DAY, owner="a", recipient="office@harbor.example")
    assert first is not None and (first.state, first.attempts) == (DigestState.SENDING, 1)
    with db.transaction() as tx:
        assert DigestsRepo(tx).claim(zone, DAY, owner="b", recipient="x@harbor.example") is None
        # another zone, or another day, is another digest
        assert DigestsRepo(tx).claim("America/Chicago", DAY, owner="b", recipient="x@y.example")
        assert DigestsRepo(tx).claim(
            zone, DAY + timedelta(days=1), owner="b", recipient="x@y.example"
        )
    with db.transaction() as tx:
        repo = DigestsRepo(tx)
        assert repo.settle(zone, DAY, owner="b", state=DigestState.SENT) is False
        assert repo.settle(
            zone, DAY, owner="a", state=DigestState.SENT, subject="s", summary={"email": 2}
        )
        # settled: no second outcome
        assert repo.settle(zone, DAY, owner="a", state=DigestState.FAILED) is False
    with db.reading() as tx:
        got = DigestsRepo(tx).get(zone, DAY)
    assert got is not None and got.state is DigestState.SENT and got.sent_at == NOW
    assert (
        got.subject == "s"
        and got.summary == {"email": 2}
        and got.recipient == "office@harbor.example"
    )


def test_only_a_failed_try_is_claimed_again_and_only_once_its_wait_is_over(
    store: tuple[Store, FrozenClock],
) -> None:
    db, clock = store
    zone = "Europe/London"
    with db.transaction() as tx:
        assert DigestsRepo(tx).claim(zone, DAY, owner="a", recipient="o@h.example")
        DigestsRepo(tx).settle(
            zone,
            DAY,
            owner="a",
            state=DigestState.FAILED,
            error="451",
            next_at=NOW + timedelta(minutes=5),
        )
    with db.transaction() as tx:
        assert DigestsRepo(tx).claim(zone, DAY, owner="b", recipient="o@h.example") is None
    clock.advance(timedelta(minutes=5))
    with db.transaction() as tx:
        again = DigestsRepo(tx).claim(zone, DAY, owner="b", recipient="o@h.example")
    assert again is not None and (again.owner, again.attempts, again.next_at) == ("b", 2, None)
    with db.transaction() as tx:
        assert DigestsRepo(tx).claim(zone, DAY, owner="c", recipient="o@h.example") is None
        DigestsRepo(tx).settle(zone, DAY, owner="b", state=DigestState.UNKNOWN, error="no reply")
    clock.advance(timedelta(days=1))
    with db.transaction() as tx:
        # an unknown outcome is never taken over, however long after
        assert DigestsRepo(tx).claim(zone, DAY, owner="c", recipient="o@h.example") is None
    with db.reading() as tx:
        history = DigestsRepo(tx).of_zone(
            zone, since=DAY - timedelta(days=7), before=DAY + timedelta(days=1)
        )
    assert [(r.day, r.state) for r in history] == [(DAY, DigestState.UNKNOWN)]


def test_two_claimers_at_once_get_one_claim(store: tuple[Store, FrozenClock]) -> None:
    import threading

    db, _ = store
    got: list[DigestRow | None] = []
    lock = threading.Lock()
    start = threading.Barrier(4)

    def claim(owner: str) -> None:
        start.wait()
        with db.transaction() as tx:
            made = DigestsRepo(tx).claim("Europe/London", DAY, owner=owner, recipient="o@h.example")
        with lock:
            got.append(made)

    threads = [threading.Thread(target=claim, args=(f"w{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4 and sum(1 for g in got if g is not None) == 1


def test_the_database_refuses_a_state_it_does_not_know(store: tuple[Store, FrozenClock]) -> None:
    from sqlalchemy import text
    from sqlalchemy.exc import IntegrityError

    db, _ = store
    with db.transaction() as tx:
        DigestsRepo(tx).claim("Europe/London", DAY, owner="a", recipient="o@h.example")
    with pytest.raises(IntegrityError), db.transaction() as tx:
        tx.conn.execute(text("UPDATE digests SET state = 'lost'"))
    assert {s.value for s in DigestState} == {"sending", "sent", "failed", "unknown"}


# -- helpers ---------------------------------------------------------------------------------------
def config_of(
    home: Path, connectors: dict[str, dict[str, Any]], *, digest: bool = True, port: int = 2525
) -> Config:
    """A configuration under `home`: [mail] on this machine's `port` (with a bcc, which the
    digest does not copy), [digest] at 08:00, and a QuickBooks connector per name (`connectors`
    gives each one's own keys)."""
    settings: dict[str, Any] = {
        "mail": {
            "host": "127.0.0.1",
            "port": port,
            "security": "none",
            "from_address": "letters@harbor.example",
            "bcc": "copies@harbor.example",
        }
    }
    if digest:
        settings["digest"] = {"to": "office@harbor.example", "at": "08:00"}
    made = {
        name: ConnectorConfig.model_validate(
            {
                "name": name,
                "platform": "quickbooks",
                "display_name": name,
                "oauth": {"client_id": "id", "client_secret_env": "SECRET"},
                **more,
            }
        )
        for name, more in connectors.items()
    }
    return Config(
        home=home,
        settings=Settings.model_validate(settings).at(home),
        connectors=made,
        policies=dict(builtin_policies()),
    )


def connector_row(name: str, platform: str, zone: str | None = None) -> Any:
    from arsync.store.models import ConnectorRow
    from arsync.store.states import ConnectorState

    return ConnectorRow(
        id=1,
        name=name,
        platform=platform,
        tenant_id="t",
        company_name=name,
        base_currency="GBP",
        country="GB",
        region=None,
        platform_timezone=zone,
        edition=None,
        status=ConnectorState.CONNECTED,
        status_reason=None,
        parked_until=None,
        parked_reason=None,
        created_at=NOW,
        last_sync_at=NOW,
        last_sync_ok_at=NOW,
        last_error=None,
    )


def row(zone: str, day: date, state: DigestState = DigestState.SENT, **changes: Any) -> DigestRow:
    made = DigestRow(
        zone=zone,
        day=day,
        state=state,
        owner="w",
        claimed_at=NOW,
        attempts=1,
        next_at=None,
        sent_at=NOW if state is DigestState.SENT else None,
        recipient="office@harbor.example",
        subject=None,
        message_id=None,
        error=None,
        summary=None,
        updated_at=NOW,
    )
    return replace(made, **changes)


def add(
    tx: Any,
    cid: int,
    ident: str,
    *,
    kind: str,
    invoice_id: str,
    customer: str = "c1",
    state: OutboxState = S.READY,
    approval: str | None = None,
    reason: str | None = None,
) -> None:
    tx.outbox.add(
        cid,
        id=ident,
        key=f"books/invoice:{invoice_id}/overdue-30/{kind}/{ident}",
        kind=kind,
        subject=f"invoice:{invoice_id}",
        customer_id=customer,
        invoice_id=invoice_id,
        stage="overdue-30",
        stage_title="friendly reminder" if kind != "call" else "60-day call",
        tone="firm",
        amount=Decimal("100.00"),
        currency="GBP",
        due_date=date(2026, 10, 31),
        at=tx.now,
        state=state,
        approval=approval,
        reason=reason,
    )
