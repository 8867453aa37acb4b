"""The contact calendar: quiet hours across daylight-saving changes, business days, holidays.

Every expectation is worked out by hand from the zone's rules for 2026: London goes forward at
01:00 UTC on Sun 29 Mar and back at 01:00 UTC on Sun 25 Oct; New York at 07:00 UTC on Sun 8 Mar
and 06:00 UTC on Sun 1 Nov; Lord Howe Island moves by half an hour, forward at 15:30 UTC on
Sat 3 Oct (02:00 local becomes 02:30) and back at 15:00 UTC on Sat 4 Apr.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from arsync.escalation.calendar import Calendar, holiday_table, start_of
from arsync.escalation.policy import WEEKDAYS, CalendarRules

LONDON = ZoneInfo("Europe/London")
NEW_YORK = ZoneInfo("America/New_York")
LORD_HOWE = ZoneInfo("Australia/Lord_Howe")
EVERY_DAY = frozenset(range(7))


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def hours(start: str, end: str, weekdays: frozenset[int] = EVERY_DAY) -> Calendar:
    """A calendar with no public holidays: only the window and the days of the week."""
    return Calendar(weekdays=weekdays, start=time.fromisoformat(start), end=time.fromisoformat(end))


def rules(**changes: object) -> CalendarRules:
    return CalendarRules.model_validate(changes)


# -- London -------------------------------------------------------------------------------------

SPRING = date(2026, 3, 29)  # 01:00-02:00 does not happen
AUTUMN = date(2026, 10, 25)  # 01:00-02:00 happens twice


@pytest.mark.parametrize(
    ("start", "end", "opens", "closes"),
    [
        # the start falls into the skipped hour: the window opens when the clocks go forward
        ("01:00", "02:30", utc(2026, 3, 29, 1), utc(2026, 3, 29, 1, 30)),
        ("01:30", "03:00", utc(2026, 3, 29, 1), utc(2026, 3, 29, 2)),
        # the end falls into it: the window closes when the clocks go forward
        ("00:30", "01:30", utc(2026, 3, 29, 0, 30), utc(2026, 3, 29, 1)),
        # both: the day has no such window at all
        ("01:15", "01:45", utc(2026, 3, 29, 1), utc(2026, 3, 29, 1)),
        # an ordinary window: 08:00 and 21:00 BST
        ("08:00", "21:00", utc(2026, 3, 29, 7), utc(2026, 3, 29, 20)),
    ],
)
def test_london_spring_forward_windows(
    start: str, end: str, opens: datetime, closes: datetime
) -> None:
    assert hours(start, end).window(SPRING, LONDON) == (opens, closes)


def test_london_spring_forward_earliest_and_allowed() -> None:
    cal = hours("01:00", "02:30")
    sunday_start = start_of(SPRING, LONDON)
    assert sunday_start == utc(2026, 3, 29, 0)
    first = cal.earliest(sunday_start, LONDON)
    assert first == utc(2026, 3, 29, 1)  # 02:00 BST, the first real moment after 01:00
    assert cal.allowed(first, LONDON)
    assert not cal.allowed(first - timedelta(minutes=1), LONDON)  # 00:59 GMT
    assert cal.allowed(utc(2026, 3, 29, 1, 29), LONDON)  # 02:29 BST
    assert not cal.allowed(utc(2026, 3, 29, 1, 30), LONDON)  # 02:30 BST
    # a window the change swallows whole: the next day's
    swallowed = hours("01:15", "01:45")
    assert swallowed.earliest(sunday_start, LONDON) == utc(2026, 3, 30, 0, 15)  # 01:15 BST


@pytest.mark.parametrize(
    ("start", "end", "opens", "closes"),
    [
        # a time that happens twice is its first occurrence (still on summer time)
        ("01:00", "02:30", utc(2026, 10, 25, 0), utc(2026, 10, 25, 2, 30)),
        ("01:30", "03:00", utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 3)),
        ("01:00", "01:30", utc(2026, 10, 25, 0), utc(2026, 10, 25, 0, 30)),
        # an ordinary window on that day is an hour longer in real time
        ("00:00", "08:00", utc(2026, 10, 24, 23), utc(2026, 10, 25, 8)),
        ("08:00", "21:00", utc(2026, 10, 25, 8), utc(2026, 10, 25, 21)),
    ],
)
def test_london_fall_back_windows(start: str, end: str, opens: datetime, closes: datetime) -> None:
    assert hours(start, end).window(AUTUMN, LONDON) == (opens, closes)


def test_london_fall_back_counts_the_repeated_hour_once() -> None:
    cal = hours("01:00", "01:30")
    day = start_of(AUTUMN, LONDON)
    assert day == utc(2026, 10, 24, 23)  # midnight BST
    assert cal.earliest(day, LONDON) == utc(2026, 10, 25, 0)  # 01:00 BST
    assert cal.earliest(utc(2026, 10, 25, 0, 20), LONDON) == utc(2026, 10, 25, 0, 20)
    # past the first 01:00-01:30: not again at 01:00 GMT the same night, but the next night
    assert cal.earliest(utc(2026, 10, 25, 0, 45), LONDON) == utc(2026, 10, 26, 1)
    # every moment of a window that spans the change is allowed, the repeated hour included
    wide = hours("01:00", "02:30")
    opens, closes = wide.window(AUTUMN, LONDON)
    moment = opens
    while moment < closes:
        assert wide.allowed(moment, LONDON), moment
        moment += timedelta(minutes=10)
    assert not wide.allowed(closes, LONDON)


# -- New York and Lord Howe ---------------------------------------------------------------------


def test_new_york_spring_forward_and_fall_back() -> None:
    cal = hours("02:30", "04:00")
    # 02:00 EST becomes 03:00 EDT at 07:00 UTC: 02:30 does not happen on Sun 8 Mar
    assert cal.window(date(2026, 3, 8), NEW_YORK) == (utc(2026, 3, 8, 7), utc(2026, 3, 8, 8))
    assert cal.earliest(utc(2026, 3, 8, 5), NEW_YORK) == utc(2026, 3, 8, 7)  # 03:00 EDT
    assert cal.window(date(2026, 3, 9), NEW_YORK) == (
        utc(2026, 3, 9, 6, 30),
        utc(2026, 3, 9, 8),
    )
    # on Sun 1 Nov 01:00-02:00 happens twice; 08:00 to 21:00 EST is 13:00 to 02:00 UTC
    office = hours("08:00", "21:00")
    assert office.window(date(2026, 11, 1), NEW_YORK) == (utc(2026, 11, 1, 13), utc(2026, 11, 2, 2))
    assert office.earliest(utc(2026, 11, 1, 12, 59), NEW_YORK) == utc(2026, 11, 1, 13)
    assert office.allowed(utc(2026, 11, 2, 1, 59), NEW_YORK)  # 20:59 EST
    assert not office.allowed(utc(2026, 11, 2, 2), NEW_YORK)


def test_lord_howes_half_hour_change() -> None:
    cal = hours("02:00", "03:00")
    # Sun 4 Oct 2026: 02:00 LHST (UTC+10:30) becomes 02:30 LHDT (UTC+11) at 15:30 UTC on Sat 3
    assert cal.window(date(2026, 10, 4), LORD_HOWE) == (
        utc(2026, 10, 3, 15, 30),
        utc(2026, 10, 3, 16),
    )
    assert cal.earliest(utc(2026, 10, 3, 14), LORD_HOWE) == utc(2026, 10, 3, 15, 30)
    # Sun 5 Apr 2026: 02:00 LHDT becomes 01:30 LHST at 15:00 UTC on Sat 4; 01:30-02:00 twice
    back = hours("01:30", "02:30")
    assert back.window(date(2026, 4, 5), LORD_HOWE) == (
        utc(2026, 4, 4, 14, 30),  # 01:30 LHDT, the first time
        utc(2026, 4, 4, 16),  # 02:30 LHST
    )


# -- days -------------------------------------------------------------------------------------


def test_business_days_weekends_and_holidays_in_words() -> None:
    cal = Calendar.of(rules(), "GB", "ENG")
    assert cal.holidays_from == "GB (ENG)"
    assert cal.closed_because(date(2026, 12, 26)) == "Saturday"
    assert cal.closed_because(date(2026, 12, 28)) == "public holiday: Boxing Day (observed)"
    assert cal.closed_because(date(2026, 12, 29)) is None
    assert not cal.business_day(date(2026, 12, 25))
    assert cal.business_day(date(2026, 12, 24))
    # Christmas Eve, 17:00 GMT: allowed; Christmas Day: closed; the next window, Tue 29 Dec
    assert cal.allowed(utc(2026, 12, 24, 17), LONDON)
    assert cal.why_not(utc(2026, 12, 24, 21), LONDON) == "quiet hours"
    assert cal.why_not(utc(2026, 12, 25, 12), LONDON) == "public holiday: Christmas Day"
    assert cal.earliest(utc(2026, 12, 24, 21), LONDON) == utc(2026, 12, 29, 8)
    # the policy's own week: a firm that works on Saturdays
    saturdays = Calendar.of(rules(business_days=["mon", "sat"]), "GB", "ENG")
    assert saturdays.business_day(date(2026, 12, 5))
    assert not saturdays.business_day(date(2026, 12, 1))
    assert saturdays.weekday_names() == ["mon", "sat"]
    # a policy that does not keep public holidays
    open_ = Calendar.of(rules(public_holidays=False), "GB", "ENG")
    assert open_.business_day(date(2026, 12, 25))
    assert open_.holidays_from == "public holidays not kept by the policy"


def test_holiday_table_of_a_country_and_region() -> None:
    lookup, words = holiday_table("gb", "sct")
    assert words == "GB (SCT)"
    assert lookup(date(2026, 11, 30)) == "Saint Andrew's Day"
    lookup, words = holiday_table("US", "CA")
    assert (words, lookup(date(2026, 3, 31))) == ("US (CA)", "Cesar Chavez Day")
    lookup, words = holiday_table("US", None)
    assert (words, lookup(date(2026, 3, 31))) == ("US", None)
    assert lookup(date(2026, 7, 3)) == "Independence Day (observed)"


def test_an_unknown_region_falls_back_to_the_country_with_words() -> None:
    lookup, words = holiday_table("GB", "XX")
    assert words == "GB, country-wide only (no holiday table for region 'XX')"
    assert lookup(date(2026, 12, 25)) == "Christmas Day"
    assert lookup(date(2026, 11, 30)) is None  # Scotland's alone


@pytest.mark.parametrize(
    ("country", "words"),
    [
        ("ZZ", "no public holidays known for ZZ"),
        (None, "no public holidays: the company's country is not known"),
        ("", "no public holidays: the company's country is not known"),
    ],
)
def test_no_holiday_table_for_an_unknown_country(country: str | None, words: str) -> None:
    lookup, said = holiday_table(country, "ENG")
    assert said == words
    assert lookup(date(2026, 12, 25)) is None
    cal = Calendar.of(rules(), country, None)
    assert cal.business_day(date(2026, 12, 25))
    assert cal.holidays_from == words


# -- earliest, over any window and any moment near a change ----------------------------------------

ZONES = [LONDON, NEW_YORK, LORD_HOWE, ZoneInfo("Pacific/Auckland"), ZoneInfo("America/St_Johns")]
CHANGES = [
    utc(2026, 3, 8, 7),
    utc(2026, 3, 29, 1),
    utc(2026, 4, 4, 14),
    utc(2026, 4, 4, 15),
    utc(2026, 9, 26, 14),
    utc(2026, 10, 3, 15, 30),
    utc(2026, 10, 25, 1),
    utc(2026, 11, 1, 6),
    utc(2026, 11, 1, 4, 30),
]


@st.composite
def calendars(draw: st.DrawFn) -> Calendar:
    start = draw(st.integers(0, 23 * 60 + 58))
    end = draw(st.integers(start + 1, 23 * 60 + 59))
    days = draw(st.lists(st.sampled_from(WEEKDAYS), min_size=1, max_size=7, unique=True))
    return Calendar(
        weekdays=frozenset(WEEKDAYS.index(d) for d in days),
        start=time(start // 60, start % 60),
        end=time(end // 60, end % 60),
    )


@settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    calendars(),
    st.sampled_from(ZONES),
    st.sampled_from(CHANGES),
    st.integers(-2 * 24 * 60, 2 * 24 * 60),
)
def test_earliest_is_allowed_and_skips_only_a_repeated_hours_second_pass(
    cal: Calendar, zone: ZoneInfo, change: datetime, minutes: int
) -> None:
    after = change + timedelta(minutes=minutes)
    found = cal.earliest(after, zone)
    assert found >= after
    assert cal.allowed(found, zone)
    local = found.astimezone(zone)
    assert cal.start <= local.time() < cal.end
    assert WEEKDAYS[local.weekday()] in [WEEKDAYS[d] for d in cal.weekdays]
    # nothing allowed was passed over, but for the second pass of an hour the clocks repeat
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    horizon = min(found, after + timedelta(days=3))
    while moment < horizon:
        if cal.allowed(moment, zone):
            assert moment.astimezone(zone).fold == 1, (after, moment, found)
        moment += timedelta(minutes=1)
