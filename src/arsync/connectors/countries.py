"""Country names as people type them into a ledger's addresses, read as ISO 3166 alpha-2 codes.

Both platforms keep a customer's billing country as free text ("USA", "United Kingdom", "UK",
"Deutschland"...). `iso_country` gives the ISO 3166-1 alpha-2 code when the text says one country
without doubt, and None otherwise: an unknown name, or one that could mean two places (Georgia
the country or the US state, Korea, Congo, the Virgin Islands) is not guessed at. The table is
deliberately small: every assigned alpha-2 code, and the names, alpha-3 codes and common
spellings of the countries small firms on QuickBooks Online and Xero mostly bill.
"""

from __future__ import annotations

import re

#: every officially assigned ISO 3166-1 alpha-2 code
_ALPHA2 = """
    AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ
    BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM
    DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS
    GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN
    KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ
    MR MS MT MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM
    PN PR PS PT PW PY QA RE RO RS RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV
    SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI
    VN VU WF WS YE YT ZA ZM ZW
"""
CODES = frozenset(_ALPHA2.split())

#: names, alpha-3 codes and common spellings (normalised as `_key` does) by alpha-2 code
_NAMES: dict[str, tuple[str, ...]] = {
    "US": (
        "usa",
        "united states",
        "united states of america",
        "us of a",
        "u s",
        "u s a",
    ),
    "GB": (
        "gbr",
        "uk",
        "u k",
        "united kingdom",
        "united kingdom of great britain and northern ireland",
        "great britain",
        "britain",
        "england",
        "scotland",
        "wales",
        "northern ireland",
    ),
    "CA": ("can", "canada"),
    "AU": ("aus", "australia"),
    "NZ": ("nzl", "new zealand", "aotearoa"),
    "IE": ("irl", "ireland", "republic of ireland", "eire", "éire"),
    "ZA": ("zaf", "south africa", "rsa"),
    "SG": ("sgp", "singapore"),
    "HK": ("hkg", "hong kong", "hong kong sar"),
    "MY": ("mys", "malaysia"),
    "IN": ("ind", "india"),
    "PH": ("phl", "philippines"),
    "AE": ("are", "uae", "united arab emirates"),
    "FR": ("fra", "france"),
    "DE": ("deu", "germany", "deutschland"),
    "ES": ("esp", "spain", "españa", "espana"),
    "IT": ("ita", "italy", "italia"),
    "PT": ("prt", "portugal"),
    "NL": ("nld", "netherlands", "holland"),
    "BE": ("bel", "belgium"),
    "LU": ("lux", "luxembourg"),
    "CH": ("che", "switzerland"),
    "AT": ("aut", "austria"),
    "DK": ("dnk", "denmark"),
    "SE": ("swe", "sweden"),
    "NO": ("nor", "norway"),
    "FI": ("fin", "finland"),
    "IS": ("isl", "iceland"),
    "PL": ("pol", "poland"),
    "CZ": ("cze", "czech republic", "czechia"),
    "SK": ("svk", "slovakia"),
    "HU": ("hun", "hungary"),
    "RO": ("rou", "romania"),
    "BG": ("bgr", "bulgaria"),
    "GR": ("grc", "greece"),
    "CY": ("cyp", "cyprus"),
    "MT": ("mlt", "malta"),
    "HR": ("hrv", "croatia"),
    "SI": ("svn", "slovenia"),
    "EE": ("est", "estonia"),
    "LV": ("lva", "latvia"),
    "LT": ("ltu", "lithuania"),
    "TR": ("tur", "turkey", "türkiye", "turkiye"),
    "IL": ("isr", "israel"),
    "JP": ("jpn", "japan"),
    "CN": ("chn", "china", "people's republic of china", "prc"),
    "TW": ("twn", "taiwan"),
    "TH": ("tha", "thailand"),
    "VN": ("vnm", "vietnam", "viet nam"),
    "ID": ("idn", "indonesia"),
    "MX": ("mex", "mexico", "méxico"),
    "BR": ("bra", "brazil", "brasil"),
    "AR": ("arg", "argentina"),
    "CL": ("chl", "chile"),
    "CO": ("col", "colombia"),
    "PE": ("per", "peru"),
    "JM": ("jam", "jamaica"),
    "TT": ("tto", "trinidad and tobago"),
    "BS": ("bhs", "bahamas"),
    "BM": ("bmu", "bermuda"),
    "KY": ("cym", "cayman islands"),
    "PR": ("pri", "puerto rico"),
    "FJ": ("fji", "fiji"),
    "PG": ("png", "papua new guinea"),
    "WS": ("wsm", "samoa"),
    "TO": ("ton", "tonga"),
    "NG": ("nga", "nigeria"),
    "KE": ("ken", "kenya"),
    "GH": ("gha", "ghana"),
    "EG": ("egy", "egypt"),
    "MA": ("mar", "morocco"),
    "SA": ("sau", "saudi arabia"),
    "QA": ("qat", "qatar"),
    "KW": ("kwt", "kuwait"),
    "BH": ("bhr", "bahrain"),
    "OM": ("omn", "oman"),
    "PK": ("pak", "pakistan"),
    "BD": ("bgd", "bangladesh"),
    "LK": ("lka", "sri lanka"),
    "NP": ("npl", "nepal"),
    "UA": ("ukr", "ukraine"),
    "RS": ("srb", "serbia"),
    "IM": ("imn", "isle of man"),
    "JE": ("jey", "jersey"),
    "GG": ("ggy", "guernsey"),
    "GI": ("gib", "gibraltar"),
    "MC": ("mco", "monaco"),
    "LI": ("lie", "liechtenstein"),
}
_BY_NAME = {name: code for code, names in _NAMES.items() for name in names}
_SPACES = re.compile(r"[\s_\-]+")


def _key(text: str) -> str:
    """Lower case, no dots or commas, one space between words, "&" as "and", no leading "the"."""
    key = text.casefold().replace(".", " ").replace(",", " ").replace("&", " and ")
    key = _SPACES.sub(" ", key).strip()
    return key.removeprefix("the ")


def iso_country(text: str | None) -> str | None:
    """The ISO 3166-1 alpha-2 code `text` names without doubt, else None."""
    if not text or not text.strip():
        return None
    key = _key(text)
    code = _BY_NAME.get(key)
    if code is not None:
        return code
    compact = key.replace(" ", "").upper()
    return compact if len(compact) == 2 and compact in CODES else None
