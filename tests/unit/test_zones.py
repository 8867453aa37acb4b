"""Time zones from Xero's zone ids and from a country and region (pure)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from string import ascii_uppercase
from zoneinfo import ZoneInfo

import pytest
import yaml

from arsync.escalation.zones import country_zone, single_zone_country, xero_zone, zone_problem

XERO_SPEC = Path(__file__).parents[1] / "contract" / "openapi" / "xero_accounting.yaml"


def packaged_zone(name: str) -> ZoneInfo:
    """A zone read from the tz data package that zone.tab comes from, not the system's copy."""
    with resources.files("tzdata.zoneinfo").joinpath(*name.split("/")).open("rb") as f:
        return ZoneInfo.from_file(f, key=name)


def zone_tab() -> dict[str, list[str]]:
    """zone.tab as the tz data package ships it: country code -> its zones."""
    text = resources.files("tzdata.zoneinfo").joinpath("zone.tab").read_text(encoding="utf-8")
    zones: dict[str, list[str]] = defaultdict(list)
    for line in text.splitlines():
        if line and not line.startswith("#"):
            country, _, zone = line.split("\t")[:3]
            zones[country].append(zone)
    return zones


def offsets(zone: ZoneInfo, first: datetime, years: int) -> list[timedelta | None]:
    """The zone's UTC offset every six hours for some years: its clock, sampled."""
    return [
        (first + timedelta(hours=6 * i)).astimezone(zone).utcoffset() for i in range(1461 * years)
    ]


# ---- Xero ----


def test_every_zone_id_in_xeros_spec_maps_to_a_loadable_zone() -> None:
    doc = yaml.safe_load(XERO_SPEC.read_text(encoding="utf-8"))
    ids = doc["components"]["schemas"]["TimeZone"]["enum"]
    assert len(ids) == 141
    unmapped = [i for i in ids if xero_zone(i) is None]
    assert unmapped == []
    for i in ids:
        zone = xero_zone(i)
        assert zone is not None and zone_problem(zone) is None, i
        ZoneInfo(zone)


@pytest.mark.parametrize(
    ("xero", "zone"),
    [
        ("GMTSTANDARDTIME", "Europe/London"),
        ("NEWZEALANDSTANDARDTIME", "Pacific/Auckland"),
        ("EASTERNSTANDARDTIME", "America/New_York"),
        ("AUSEASTERNSTANDARDTIME", "Australia/Sydney"),
        ("PACIFICSTANDARDTIME", "America/Los_Angeles"),
        ("KAMCHATKASTANDARDTIME", "Asia/Kamchatka"),
        ("MIDATLANTICSTANDARDTIME", "Etc/GMT+2"),
        ("UTC02", "Etc/GMT+2"),  # Windows' "UTC-02"; POSIX signs in Etc/ names are reversed
        ("UTC+12", "Etc/GMT-12"),
    ],
)
def test_known_xero_ids(xero: str, zone: str) -> None:
    assert xero_zone(xero) == zone


def test_xero_utc_is_utc_all_year() -> None:
    zone = xero_zone("UTC")
    assert zone is not None
    tz = ZoneInfo(zone)
    for month in (1, 7):
        assert datetime(2026, month, 1, tzinfo=tz).utcoffset() == timedelta(0)


def test_xero_ids_match_whatever_the_case_and_surrounding_space() -> None:
    assert xero_zone("  newZealandStandardTime\n") == "Pacific/Auckland"
    # The Windows spelling normalises to Xero's, so it maps too.
    assert xero_zone("New Zealand Standard Time") == "Pacific/Auckland"
    assert xero_zone("utc-02") == "Etc/GMT+2"


@pytest.mark.parametrize("xero", ["NEWZONESTANDARDTIME", "", "   ", "Europe/London", "UTC+99"])
def test_unknown_xero_ids_are_unmapped_not_errors(xero: str) -> None:
    assert xero_zone(xero) is None


# ---- countries ----


@pytest.mark.parametrize(
    ("country", "zone"),
    [
        ("GB", "Europe/London"),
        ("IE", "Europe/Dublin"),
        ("ZA", "Africa/Johannesburg"),
        ("FR", "Europe/Paris"),
        ("NO", "Europe/Oslo"),
        ("SG", "Asia/Singapore"),
        ("IN", "Asia/Kolkata"),
        ("JP", "Asia/Tokyo"),
        ("PR", "America/Puerto_Rico"),
        # Several zones in zone.tab, one clock today.
        ("DE", "Europe/Berlin"),
        ("MY", "Asia/Kuala_Lumpur"),
        ("AR", "America/Argentina/Buenos_Aires"),
    ],
)
def test_single_zone_countries(country: str, zone: str) -> None:
    assert single_zone_country(country) == zone
    assert country_zone(country) == zone


@pytest.mark.parametrize(
    "country", ["US", "CA", "AU", "NZ", "BR", "RU", "MX", "ES", "PT", "CN", "ID", "CY", "PS"]
)
def test_countries_with_several_clocks_have_no_single_zone(country: str) -> None:
    assert single_zone_country(country) is None
    assert country_zone(country) is None


@pytest.mark.parametrize("country", ["", "  ", "ZZ", "XX", "USA", "U", "G1", "Ü"])
def test_unknown_countries_have_no_zone(country: str) -> None:
    assert single_zone_country(country) is None
    assert country_zone(country) is None
    assert country_zone(country, "CA") is None


def test_country_codes_match_whatever_the_case_and_surrounding_space() -> None:
    assert single_zone_country(" gb ") == "Europe/London"
    assert country_zone("nz", "auk") == "Pacific/Auckland"
    assert country_zone(None) is None
    assert country_zone(None, "CA") is None


def test_every_country_answer_is_its_own_zone_and_loads() -> None:
    table = zone_tab()
    answered = 0
    for code in (a + b for a in ascii_uppercase for b in ascii_uppercase):
        zone = single_zone_country(code)
        if len(table.get(code, [])) == 1:
            assert zone == table[code][0], code
        if zone is not None:
            answered += 1
            assert zone in table[code], code
            assert zone_problem(zone) is None, code
    assert answered > 200


def test_countries_taken_as_one_clock_keep_one_clock_in_the_tz_data() -> None:
    # Guards the hand-kept list: a tz release that parts these clocks fails here.
    table = zone_tab()
    first = datetime(2026, 1, 1, tzinfo=UTC)
    for code in ("AR", "DE", "KZ", "MH", "MY", "UZ"):
        assert len(table[code]) > 1, code
        zone = single_zone_country(code)
        assert zone is not None
        clock = offsets(packaged_zone(zone), first, 5)
        for other in table[code]:
            assert offsets(packaged_zone(other), first, 5) == clock, (code, other)


# ---- regions ----


@pytest.mark.parametrize(
    ("country", "region", "zone"),
    [
        ("US", "CA", "America/Los_Angeles"),
        ("US", "California", "America/Los_Angeles"),
        ("US", " california ", "America/Los_Angeles"),
        ("US", "US-CA", "America/Los_Angeles"),
        ("US", "NY", "America/New_York"),
        ("US", "new york", "America/New_York"),
        ("US", "WA", "America/Los_Angeles"),
        ("US", "IL", "America/Chicago"),
        ("US", "CO", "America/Denver"),
        ("US", "HI", "Pacific/Honolulu"),
        ("US", "DC", "America/New_York"),
        ("US", "PR", "America/Puerto_Rico"),
        ("CA", "AB", "America/Edmonton"),
        ("CA", "MB", "America/Winnipeg"),
        ("CA", "NB", "America/Moncton"),
        ("CA", "NS", "America/Halifax"),
        ("CA", "PE", "America/Halifax"),
        ("CA", "YT", "America/Whitehorse"),
        ("CA", "Nova Scotia", "America/Halifax"),
        ("AU", "VIC", "Australia/Melbourne"),
        ("AU", "QLD", "Australia/Brisbane"),
        ("AU", "SA", "Australia/Adelaide"),
        ("AU", "WA", "Australia/Perth"),
        ("AU", "TAS", "Australia/Hobart"),
        ("AU", "ACT", "Australia/Sydney"),
        ("AU", "NT", "Australia/Darwin"),
        ("AU", "Western Australia", "Australia/Perth"),
        ("NZ", "AUK", "Pacific/Auckland"),
        ("NZ", "Hawkes Bay", "Pacific/Auckland"),
        ("NZ", "Manawatu-Whanganui", "Pacific/Auckland"),
        ("NZ", "Manawatū-Whanganui", "Pacific/Auckland"),
        ("NZ", "Chatham Islands", "Pacific/Chatham"),
        ("NZ", "CIT", "Pacific/Chatham"),
    ],
)
def test_regions_that_keep_one_clock(country: str, region: str, zone: str) -> None:
    assert country_zone(country, region) == zone


@pytest.mark.parametrize(
    ("country", "region"),
    [
        *[("US", s) for s in ("TX", "FL", "KY", "TN", "IN", "MI", "ND", "SD", "NE", "KS")],
        *[("US", s) for s in ("OR", "ID", "AK", "AZ", "NV", "Texas", "Arizona")],
        *[("CA", p) for p in ("ON", "QC", "BC", "SK", "NL", "NT", "NU", "Ontario")],
        ("AU", "NSW"),
        ("AU", "New South Wales"),
        ("US", None),
        ("US", ""),
        ("US", "Narnia"),
        ("US", "CA-BC"),
        ("CA", "CA"),  # California is a US state, not a Canadian province
        ("MX", "Sonora"),  # no region table for this country
    ],
)
def test_split_or_unknown_regions_have_no_zone(country: str, region: str | None) -> None:
    assert country_zone(country, region) is None


def test_a_single_zone_country_ignores_its_region() -> None:
    assert country_zone("GB", "Scotland") == "Europe/London"
    assert country_zone("IE", "nonsense") == "Europe/Dublin"


def test_region_answers_are_zones_of_that_country() -> None:
    table = zone_tab()
    regions = {
        "US": ["CA", "NY", "IL", "CO", "HI", "GA", "MN", "UT"],
        "CA": ["AB", "MB", "NB", "NS", "PE", "YT"],
        "AU": ["ACT", "NT", "QLD", "SA", "TAS", "VIC", "WA"],
        "NZ": ["AUK", "WGN", "CIT"],
    }
    for country, codes in regions.items():
        for code in codes:
            assert country_zone(country, code) in table[country], (country, code)
    # A US territory gives the zone that zone.tab gives it as a country of its own.
    for territory in ("AS", "GU", "MP", "PR", "VI"):
        assert country_zone("US", territory) == single_zone_country(territory) is not None


# ---- zone names ----


@pytest.mark.parametrize("name", ["Europe/London", "Pacific/Auckland", "UTC", "Etc/GMT+2"])
def test_loadable_zones_have_no_problem(name: str) -> None:
    assert zone_problem(name) is None


@pytest.mark.parametrize(
    "name", ["Europe/Londn", "", "America", "../etc/passwd", "/etc/passwd", "zone.tab"]
)
def test_unloadable_zones_are_named_with_an_example(name: str) -> None:
    assert (
        zone_problem(name) == f'unknown time zone "{name}" (an IANA name such as "Europe/London")'
    )
