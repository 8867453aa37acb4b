"""The calendar arsync contacts people by: business days, public holidays, quiet hours, zones.

Pure: it computes from its inputs and never reads a clock. A moment is allowed for contact when,
in the customer's own time zone, it falls on a business day that is not a public holiday of the
firm's country and region, inside the quiet-hours window. Daylight-saving changes are handled by
checking every candidate moment in local time: a window edge that falls into a skipped hour moves
to the first real moment after it, and a repeated hour is never counted twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib

from arsync.escalation.policy import WEEKDAYS, CalendarRules

#: how far ahead `earliest` looks before it gives up (a calendar with no business day at all)
_HORIZON_DAYS = 400


def holiday_table(
    country: str | None, region: str | None
) -> tuple[Callable[[date], str | None], str]:
    """The public holidays of a country and region (the `holidays` library), as a lookup, and
    what the table covers in words ("US (CA)", or why there is none)."""
    if not country:
        return (lambda _day: None), "no public holidays: the company's country is not known"
    code = country.upper()
    supported = holidays_lib.list_supported_countries()
    if code not in supported:
        return (lambda _day: None), f"no public holidays known for {code}"
    subdiv = region.upper() if region and region.upper() in supported[code] else None
    table = holidays_lib.country_holidays(code, subdiv=subdiv)
    covered = f"{code} ({subdiv})" if subdiv else code
    if region and subdiv is None:
        covered += f", country-wide only (no holiday table for region {region!r})"

    def lookup(day: date) -> str | None:
        name = table.get(day)
        return str(name) if name else None

    return lookup, covered


@dataclass(frozen=True, eq=False)
class Calendar:
    """Business days, public holidays and the quiet-hours window of one policy and firm."""

    weekdays: frozenset[int]
    start: time
    end: time
    holiday: Callable[[date], str | None] = field(default=lambda _day: None)
    #: what the holiday table covers, in words
    holidays_from: str = "no public holidays"

    @classmethod
    def of(cls, rules: CalendarRules, country: str | None, region: str | None) -> Calendar:
        if rules.public_holidays:
            lookup, covered = holiday_table(country, region)
        else:
            lookup, covered = (lambda _day: None), "public holidays not kept by the policy"
        return cls(
            weekdays=rules.weekdays,
            start=rules.quiet_hours.start,
            end=rules.quiet_hours.end,
            holiday=_cached(lookup),
            holidays_from=covered,
        )

    # -- days ---------------------------------------------------------------------------------
    def business_day(self, day: date) -> bool:
        return day.weekday() in self.weekdays and self.holiday(day) is None

    def closed_because(self, day: date) -> str | None:
        """Why nobody is contacted on `day` ("Saturday", "public holiday: Christmas Day")."""
        if day.weekday() not in self.weekdays:
            return day.strftime("%A")
        name = self.holiday(day)
        return f"public holiday: {name}" if name else None

    # -- moments ------------------------------------------------------------------------------
    def allowed(self, moment: datetime, zone: ZoneInfo) -> bool:
        """May the customer in `zone` be contacted at `moment`?"""
        local = moment.astimezone(zone)
        return self.business_day(local.date()) and self.start <= local.time() < self.end

    def window(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        """The quiet-hours window of a local day, in UTC (empty when DST swallows it)."""
        return _edge(day, self.start, zone), _edge(day, self.end, zone)

    def earliest(self, after: datetime, zone: ZoneInfo) -> datetime:
        """The first moment at or after `after` when the customer in `zone` may be contacted."""
        day = after.astimezone(zone).date()
        for _ in range(_HORIZON_DAYS):
            if self.business_day(day):
                opens, closes = self.window(day, zone)
                candidate = max(after, opens)
                if candidate < closes and self.allowed(candidate, zone):
                    return candidate
            day += timedelta(days=1)
        raise ValueError("the calendar has no business day within a year")

    def why_not(self, moment: datetime, zone: ZoneInfo) -> str | None:
        """Why `moment` is not allowed ("quiet hours", "Sunday"...), None when it is."""
        local = moment.astimezone(zone)
        closed = self.closed_because(local.date())
        if closed:
            return closed
        if not self.start <= local.time() < self.end:
            return "quiet hours"
        return None

    def weekday_names(self) -> list[str]:
        return [WEEKDAYS[d] for d in sorted(self.weekdays)]


def _cached(lookup: Callable[[date], str | None]) -> Callable[[date], str | None]:
    return lru_cache(maxsize=4096)(lookup)


def _edge(day: date, at: time, zone: ZoneInfo) -> datetime:
    """A local wall-clock time as a UTC moment. A time that does not exist (the hour skipped
    when clocks go forward) becomes the first real moment after the gap; a time that happens
    twice (clocks go back) is its first occurrence."""
    return _edge_cached(day, at, zone)


@lru_cache(maxsize=65536)
def _edge_cached(day: date, at: time, zone: ZoneInfo) -> datetime:
    naive = datetime.combine(day, at)
    first = naive.replace(tzinfo=zone, fold=0)
    utc = first.astimezone(UTC)
    if utc.astimezone(zone).replace(tzinfo=None) == naive:
        return utc
    # In a gap (clocks went forward over this wall time): fold=1 reads it with the offset from
    # after the change, which lands before the gap; step forward to the change itself, the
    # first real moment whose wall time is at or after `at`. Rare, so a minute's step will do.
    moment = naive.replace(tzinfo=zone, fold=1).astimezone(UTC)
    while moment < utc:
        local = moment.astimezone(zone).replace(tzinfo=None)
        if local >= naive:
            return moment
        moment += timedelta(minutes=1)
    return utc


def local_day(moment: datetime, zone: ZoneInfo) -> date:
    return moment.astimezone(zone).date()


def start_of(day: date, zone: ZoneInfo) -> datetime:
    """The first moment of a local day, in UTC."""
    return _edge(day, time(0, 0), zone)
