"""IANA time zones from what the books say: Xero's zone ids, a country and its region (pure)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import cache
from importlib import resources
from zoneinfo import ZoneInfo

from tzlocal.windows_tz import win_tz

# Xero's Organisation.Timezone is a Windows zone id with these characters removed and the rest
# upper-cased ("UTC-02" is served as "UTC02"; "UTC+12" keeps its "+").
_XERO_DROPPED = re.compile(r"[ .\-]")

# Two ids Xero still serves that CLDR's windowsZones no longer lists (Windows retired them).
# CLDR wins should it list them again, so these sit under the table rather than over it.
_XERO_BY_HAND = {
    "KAMCHATKASTANDARDTIME": "Asia/Kamchatka",
    "MIDATLANTICSTANDARDTIME": "Etc/GMT+2",
}


def _xero_key(windows_id: str) -> str:
    return _XERO_DROPPED.sub("", windows_id.strip().upper())


_XERO_ZONES: Mapping[str, str] = _XERO_BY_HAND | {
    _xero_key(name): zone for name, zone in win_tz.items()
}


def xero_zone(windows_id: str) -> str | None:
    """The IANA zone for Xero's Organisation.Timezone, or None for an id not (yet) mapped."""
    return _XERO_ZONES.get(_xero_key(windows_id))


# Countries the tz database splits into several zones only because their clocks differed in the
# past: every part keeps one legal clock today, and tz predicts it stays so. Cyprus and Palestine
# are left out on purpose: who sets the clock there is disputed, and their zones last parted in
# 2017 and 2011. A test holds each entry to the packaged tz data, so a split shows up there.
_ONE_CLOCK_COUNTRIES = {
    "AR": "America/Argentina/Buenos_Aires",
    "DE": "Europe/Berlin",  # Büsingen keeps Swiss time, which has matched Germany's since 1981
    "KZ": "Asia/Almaty",  # one zone by law since March 2024
    "MH": "Pacific/Majuro",
    "MY": "Asia/Kuala_Lumpur",
    "UZ": "Asia/Tashkent",
}

_EASTERN = "America/New_York"
_CENTRAL = "America/Chicago"
_MOUNTAIN = "America/Denver"
_PACIFIC = "America/Los_Angeles"

# (code, name, zone) for the regions whose whole territory keeps one legal clock. Left out, as
# split: US: AK, AZ (the Navajo Nation keeps daylight time), FL, ID, IN, KS, KY, MI, ND, NE,
# NV (West Wendover keeps Mountain time), OR, SD, TN, TX; Canada: BC (the East Kootenays and
# the Peace River country), SK (Lloydminster keeps Alberta's clock), ON, QC, NL (most of
# Labrador keeps Atlantic time), NT, NU; Australia: NSW (Broken Hill, Lord Howe Island).
# Towns that keep another clock only by local custom (Phenix City AL, Eucla WA) do not split.
_REGIONS: Mapping[str, tuple[tuple[str, str, str], ...]] = {
    "US": (
        ("AL", "Alabama", _CENTRAL),
        ("AR", "Arkansas", _CENTRAL),
        ("CA", "California", _PACIFIC),
        ("CO", "Colorado", _MOUNTAIN),
        ("CT", "Connecticut", _EASTERN),
        ("DC", "District of Columbia", _EASTERN),
        ("DE", "Delaware", _EASTERN),
        ("GA", "Georgia", _EASTERN),
        ("HI", "Hawaii", "Pacific/Honolulu"),
        ("IA", "Iowa", _CENTRAL),
        ("IL", "Illinois", _CENTRAL),
        ("LA", "Louisiana", _CENTRAL),
        ("MA", "Massachusetts", _EASTERN),
        ("MD", "Maryland", _EASTERN),
        ("ME", "Maine", _EASTERN),
        ("MN", "Minnesota", _CENTRAL),
        ("MO", "Missouri", _CENTRAL),
        ("MS", "Mississippi", _CENTRAL),
        ("MT", "Montana", _MOUNTAIN),
        ("NC", "North Carolina", _EASTERN),
        ("NH", "New Hampshire", _EASTERN),
        ("NJ", "New Jersey", _EASTERN),
        ("NM", "New Mexico", _MOUNTAIN),
        ("NY", "New York", _EASTERN),
        ("OH", "Ohio", _EASTERN),
        ("OK", "Oklahoma", _CENTRAL),
        ("PA", "Pennsylvania", _EASTERN),
        ("RI", "Rhode Island", _EASTERN),
        ("SC", "South Carolina", _EASTERN),
        ("UT", "Utah", _MOUNTAIN),
        ("VA", "Virginia", _EASTERN),
        ("VT", "Vermont", _EASTERN),
        ("WA", "Washington", _PACIFIC),
        ("WI", "Wisconsin", _CENTRAL),
        ("WV", "West Virginia", _EASTERN),
        ("WY", "Wyoming", _MOUNTAIN),
        # Territories, which US addresses give as a state; each is its own country in zone.tab.
        ("AS", "American Samoa", "Pacific/Pago_Pago"),
        ("GU", "Guam", "Pacific/Guam"),
        ("MP", "Northern Mariana Islands", "Pacific/Saipan"),
        ("PR", "Puerto Rico", "America/Puerto_Rico"),
        ("VI", "Virgin Islands", "America/St_Thomas"),
    ),
    "CA": (
        ("AB", "Alberta", "America/Edmonton"),
        ("MB", "Manitoba", "America/Winnipeg"),
        ("NB", "New Brunswick", "America/Moncton"),
        ("NS", "Nova Scotia", "America/Halifax"),  # Glace Bay's zone differs only before 1972
        ("PE", "Prince Edward Island", "America/Halifax"),
        ("YT", "Yukon", "America/Whitehorse"),  # Dawson's zone differs only before 1974
    ),
    "AU": (
        ("ACT", "Australian Capital Territory", "Australia/Sydney"),
        ("NT", "Northern Territory", "Australia/Darwin"),
        ("QLD", "Queensland", "Australia/Brisbane"),  # Lindeman's differs only before 1994
        ("SA", "South Australia", "Australia/Adelaide"),
        ("TAS", "Tasmania", "Australia/Hobart"),
        ("VIC", "Victoria", "Australia/Melbourne"),
        ("WA", "Western Australia", "Australia/Perth"),
    ),
    # ISO 3166-2:NZ: the Chatham Islands are a territory of their own, outside every region.
    "NZ": (
        ("AUK", "Auckland", "Pacific/Auckland"),
        ("BOP", "Bay of Plenty", "Pacific/Auckland"),
        ("CAN", "Canterbury", "Pacific/Auckland"),
        ("GIS", "Gisborne", "Pacific/Auckland"),
        ("HKB", "Hawke's Bay", "Pacific/Auckland"),
        ("MBH", "Marlborough", "Pacific/Auckland"),
        ("MWT", "Manawatū-Whanganui", "Pacific/Auckland"),
        ("NSN", "Nelson", "Pacific/Auckland"),
        ("NTL", "Northland", "Pacific/Auckland"),
        ("OTA", "Otago", "Pacific/Auckland"),
        ("STL", "Southland", "Pacific/Auckland"),
        ("TAS", "Tasman", "Pacific/Auckland"),
        ("TKI", "Taranaki", "Pacific/Auckland"),
        ("WGN", "Wellington", "Pacific/Auckland"),
        ("WKO", "Waikato", "Pacific/Auckland"),
        ("WTC", "West Coast", "Pacific/Auckland"),
        ("CIT", "Chatham Islands", "Pacific/Chatham"),
    ),
}


def _region_key(region: str) -> str:
    # "Hawke's Bay", "hawkes bay" and "Manawatu-Whanganui" are the same region to a person.
    plain = unicodedata.normalize("NFKD", region)
    return "".join(c for c in plain.casefold() if c.isascii() and c.isalnum())


_REGION_ZONES: Mapping[str, Mapping[str, str]] = {
    country: {_region_key(key): zone for code, name, zone in rows for key in (code, name)}
    for country, rows in _REGIONS.items()
}


@cache
def _zones_by_country() -> Mapping[str, tuple[str, ...]]:
    # zone.tab, not zone1970.tab: it has a line for every country-zone pair and names each
    # country's own zone (Norway is Europe/Oslo), where zone1970.tab files countries whose clocks
    # agree since 1970 under one zone of another country (Norway under Europe/Berlin).
    text = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    zones: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            country, _coordinates, zone, *_comment = line.split("\t")
            zones.setdefault(country, []).append(zone)
    return {country: tuple(names) for country, names in zones.items()}


def _country_code(country: str | None) -> str | None:
    code = (country or "").strip().upper()
    return code if len(code) == 2 and code.isascii() and code.isalpha() else None


def single_zone_country(country: str) -> str | None:
    """The zone of a country (ISO 3166 alpha-2) that keeps one clock throughout, else None."""
    code = _country_code(country)
    if code is None:
        return None
    zones = _zones_by_country().get(code, ())
    if len(zones) == 1:
        return zones[0]
    return _ONE_CLOCK_COUNTRIES.get(code)


def country_zone(country: str | None, region: str | None = None) -> str | None:
    """The zone for a country and optional region (state, province, ...), only if unambiguous.

    A country that keeps one clock gives its zone whatever the region; a split one (US, Canada,
    Australia, New Zealand) gives a zone only for a region, by code ("CA", "US-CA") or name
    ("California"), that keeps one clock throughout. Anything else is None.
    """
    code = _country_code(country)
    if code is None:
        return None
    zone = single_zone_country(code)
    if zone is not None or region is None:
        return zone
    given = region.strip().upper()
    if given.startswith(f"{code}-"):
        given = given[len(code) + 1 :]
    return _REGION_ZONES.get(code, {}).get(_region_key(given))


def zone_problem(name: str) -> str | None:
    """None when name is a time zone this system can load, else a short message saying why not."""
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        # KeyError: no such zone; ValueError: not a zone key at all ("", "../x", a file that is
        # not zone data); OSError: a folder of zones ("America").
        return f'unknown time zone "{name}" (an IANA name such as "Europe/London")'
    return None
