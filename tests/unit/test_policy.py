"""Collection policies: the shipped ones, and every problem of a bad one with its file and key."""

from __future__ import annotations

import re
import tomllib
from datetime import date, time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from arsync.config import InvalidConfig, load
from arsync.escalation.policy import (
    BUILTIN,
    ActionKind,
    Policy,
    Regime,
    Tone,
    builtin_policies,
    builtin_text,
)

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "src" / "arsync" / "escalation" / "policies"
SECRET_ENV = "ARSYNC_TEST_POLICY_SECRET"

CONNECTOR = """\
platform = "quickbooks"
display_name = "Acme Plumbing Ltd"
policy = "{policy}"

[oauth]
client_id = "ABC123"
client_secret_env = "{env}"
"""

BAD = """\
[calendar]
business_days = ["mon", "funday"]
quiet_hours = { start = "21:00", end = "08:00" }

[minimum_balance]
usd = 10

[rules]
contact_spacing = 7

[[stages]]
name = "first"
offset = 0
actions = ["email"]
tone = "polite"

[[stages]]
name = "first"
offset = -5
actions = ["email", "fax"]
tone = "friendly"
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(SECRET_ENV, "not-a-real-secret")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    root = tmp_path / "home"
    root.mkdir()
    return root


def write(home: Path, rel: str, text: str) -> None:
    path = home / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def problems(home: Path) -> list[str]:
    with pytest.raises(InvalidConfig) as caught:
        load(home)
    return [str(p) for p in caught.value.problems]


# -- the shipped policies ---------------------------------------------------------------------


def test_the_shipped_policies_load() -> None:
    policies = builtin_policies()
    assert sorted(policies) == sorted(BUILTIN) == ["gentle", "standard"]
    standard, gentle = policies["standard"], policies["gentle"]
    assert [(s.name, s.offset, s.tone) for s in standard.stages] == [
        ("due-soon", -3, Tone.FRIENDLY),
        ("overdue-30", 30, Tone.POLITE),
        ("overdue-60", 60, Tone.FIRM),
        ("overdue-90", 90, Tone.FINAL),
    ]
    assert standard.stage("overdue-90").actions == [
        ActionKind.EMAIL,
        ActionKind.LETTER,
        ActionKind.NOTE,
        ActionKind.HANDOVER,
    ]
    assert [s.offset for s in gentle.stages] == [-5, 14, 45, 75, 120]
    assert gentle.calendar.quiet_hours.start == time(9, 0)
    assert gentle.calendar.quiet_hours.end == time(17, 30)
    assert gentle.rules.contact_spacing_days == 14
    assert gentle.minimum("GBP") == Decimal(40)
    assert gentle.stage("overdue-120").approval is True
    assert all(gentle.stage("overdue-120").waits(kind) for kind in ActionKind)


def test_the_standard_policy_file_states_the_built_in_defaults() -> None:
    data = tomllib.loads(builtin_text("standard"))
    bare = Policy.model_validate(
        {
            "name": "standard",
            "description": data["description"],
            "minimum_balance": data["minimum_balance"],
            "stages": data["stages"],
        }
    )
    assert bare == builtin_policies()["standard"]
    assert bare.rules.stale_sync == timedelta(hours=24)
    assert bare.calendar.business_days == ["mon", "tue", "wed", "thu", "fri"]


def test_a_handover_waits_for_approval_unless_the_stage_says_otherwise() -> None:
    final = builtin_policies()["standard"].stage("overdue-90")
    assert [final.waits(k) for k in final.actions] == [False, False, False, True]
    assert Tone.POLITE.firmer() is Tone.FIRM
    assert Tone.FINAL.firmer() is Tone.FINAL


def test_an_empty_home_knows_the_shipped_policies(home: Path) -> None:
    assert load(home).policies == builtin_policies()


def test_the_repos_policy_files_are_the_packaged_ones_byte_for_byte() -> None:
    shipped = sorted((ROOT / "config" / "policies").glob("*.toml"))
    packaged = sorted(PACKAGED.glob("*.toml"))
    assert [p.name for p in shipped] == [p.name for p in packaged]
    assert [p.stem for p in packaged] == sorted(BUILTIN)
    for copy, original in zip(shipped, packaged, strict=True):
        assert copy.read_bytes() == original.read_bytes(), copy.name


# -- a bad policy file --------------------------------------------------------------------------


def test_every_problem_of_a_bad_policy_comes_out_at_once_with_file_and_key(home: Path) -> None:
    write(home, "config/policies/bad.toml", BAD)
    file = "config/policies/bad.toml"
    assert problems(home) == [
        f'{file}: calendar.business_days: must list days of the week once each, from "mon", '
        '"tue", "wed", "thu", "fri", "sat", "sun", got ["mon", "funday"]',
        f"{file}: calendar.quiet_hours.end: must be later than start (a window within one day)",
        f'{file}: rules.contact_spacing: unknown key (did you mean "contact_spacing_days"?)',
        f'{file}: minimum_balance: keys must be currency codes such as "USD" ("usd" is not '
        "one), got a table",
        f'{file}: stages[1].actions[1]: must be "email", "note", "call", "handover" or '
        '"letter", got "fax"',
        f"{file}: stages[0].offset: must not be 0: never chase on the day a bill falls due, got 0",
        f'{file}: stages[1].name: is used by an earlier stage, got "first"',
        f"{file}: stages[1].offset: must be later than the stage before it (+0 days), got -5",
        f'{file}: stages[1].tone: must not be gentler than the stage before it ("polite"): '
        'tone rises stage by stage, got "friendly"',
    ]


def test_problems_between_stages_alone_are_each_reported_once(home: Path) -> None:
    stages = "".join(
        f'[[stages]]\nname = "{name}"\noffset = {offset}\nactions = ["email"]\ntone = "{tone}"\n'
        for name, offset, tone in [("a", 10, "firm"), ("b", 5, "polite"), ("a", 20, "final")]
    )
    write(home, "config/policies/order.toml", stages)
    file = "config/policies/order.toml"
    assert problems(home) == [
        f"{file}: stages[1].offset: must be later than the stage before it (+10 days), got 5",
        f'{file}: stages[1].tone: must not be gentler than the stage before it ("firm"): '
        'tone rises stage by stage, got "polite"',
        f'{file}: stages[2].name: is used by an earlier stage, got "a"',
    ]


def test_a_stage_minimum_with_a_bad_currency_and_a_policy_with_no_stages(home: Path) -> None:
    write(
        home,
        "config/policies/small.toml",
        '[[stages]]\nname = "a"\noffset = 5\nactions = []\ntone = "firm"\n'
        "minimum_balance = { Euro = 5 }\n",
    )
    write(home, "config/policies/empty.toml", 'description = "nothing yet"\nstages = []\n')
    assert problems(home) == [
        "config/policies/empty.toml: stages: must have at least one stage ([[stages]])",
        "config/policies/small.toml: stages[0].minimum_balance: keys must be currency codes "
        'such as "USD" ("Euro" is not one), got a table',
        "config/policies/small.toml: stages[0].actions: must list at least one, got []",
    ]


def test_a_connector_naming_an_unknown_policy_is_a_problem_at_its_policy_key(
    home: Path,
) -> None:
    write(home, "connectors/acme.toml", CONNECTOR.format(policy="firm", env=SECRET_ENV))
    assert problems(home) == [
        'connectors/acme.toml: policy: no policy "firm" (config/policies/firm.toml); '
        "known: gentle, standard"
    ]
    # a policy file that exists but is invalid is reported for itself, not a second time
    write(home, "config/policies/firm.toml", BAD)
    found = problems(home)
    assert all(line.startswith("config/policies/firm.toml: ") for line in found)
    assert len(found) == 9


def test_a_valid_policy_file_is_known_and_may_replace_a_shipped_one(home: Path) -> None:
    text = builtin_text("standard").replace("contact_spacing_days = 7", "contact_spacing_days = 3")
    write(home, "config/policies/standard.toml", text)
    write(home, "config/policies/patient.toml", builtin_text("gentle"))
    write(home, "connectors/acme.toml", CONNECTOR.format(policy="patient", env=SECRET_ENV))
    config = load(home)
    assert sorted(config.policies) == ["gentle", "patient", "standard"]
    assert config.policies["standard"].rules.contact_spacing_days == 3
    assert config.policy_of(config.connectors["acme"]).name == "patient"
    assert config.policies["patient"].stages == builtin_policies()["gentle"].stages


def test_a_policy_file_may_not_name_itself(home: Path) -> None:
    write(home, "config/policies/mine.toml", 'name = "other"\n' + builtin_text("gentle"))
    assert problems(home) == [
        "config/policies/mine.toml: name: unknown key (a policy's name is its file name)"
    ]


# -- statutory late-payment interest ------------------------------------------------------------


def uncommented(text: str) -> str:
    """The policy with its commented [late_payment] example (and templates key) switched on."""
    out, inside = [], False
    for line in text.splitlines():
        if line.startswith("# [late_payment]"):
            inside = True
        if inside and re.match(r"# (\[|[a-z_]+ = )", line):
            out.append(line[2:])
            continue
        if not line.startswith("#"):
            inside = False
        out.append(line.replace('# templates = "standard"', 'templates = "standard"'))
    return "\n".join(out) + "\n"


@pytest.mark.parametrize(("name", "regime"), [("standard", Regime.UK), ("gentle", Regime.EU)])
def test_the_shipped_late_payment_examples_are_off_and_valid_once_uncommented(
    home: Path, name: str, regime: Regime
) -> None:
    assert builtin_policies()[name].late_payment is None
    assert builtin_policies()[name].templates is None
    write(home, "config/policies/mine.toml", uncommented(builtin_text(name)))
    policy = load(home).policies["mine"]
    assert policy.late_payment is not None
    assert policy.late_payment.regime is regime
    assert policy.late_payment.margin == Decimal(8)
    assert policy.late_payment.in_currency == {"uk": "GBP", "eu": "EUR"}[regime.value]
    assert len(policy.late_payment.base_rates) == 1
    assert policy.templates == ("standard" if name == "standard" else None)


def late(table: str) -> str:
    return builtin_text("standard") + "\n[late_payment]\n" + table


def test_late_payment_values_are_read(home: Path) -> None:
    write(
        home,
        "config/policies/eu.toml",
        late(
            'regime = "eu"\nmargin = 9.5\nfixed_sums = true\nfixed_sum = 50\n'
            'rate_name = "Central Bank rate"\n'
            "[[late_payment.base_rates]]\nfrom = 2025-06-11\nrate = 2.15\n"
            "[[late_payment.base_rates]]\nfrom = 2026-01-01\nrate = 2\n"
        ),
    )
    terms = load(home).policies["eu"].late_payment
    assert terms is not None
    assert (terms.margin, terms.fixed_sum, terms.in_currency) == (
        Decimal("9.5"),
        Decimal(50),
        "EUR",
    )
    assert terms.reference_name == "Central Bank rate"
    assert [(r.since, r.rate) for r in terms.base_rates] == [
        (date(2025, 6, 11), Decimal("2.15")),
        (date(2026, 1, 1), Decimal(2)),
    ]


@pytest.mark.parametrize(
    ("table", "expected"),
    [
        (
            'regime = "us"\n[[late_payment.base_rates]]\nfrom = 2026-01-01\nrate = 4.0\n',
            ['late_payment.regime: must be "uk" or "eu", got "us"'],
        ),
        (
            'regime = "uk"\n[[late_payment.base_rates]]\nfrom = "2026-01-01"\nrate = "4.0"\n',
            [
                "late_payment.base_rates[0].from: must be a date like 2026-01-01 (without "
                'quotes), got "2026-01-01"',
                "late_payment.base_rates[0].rate: must be a number of percent, like 4.25, "
                'got "4.0"',
            ],
        ),
        (
            'regime = "uk"\n[[late_payment.base_rates]]\nfrom = 2026-01-01\nrates = 4.0\n',
            [
                "late_payment.base_rates[0].rate: is required",
                # (problems.py suggests no near key inside a list of tables)
                "late_payment.base_rates[0].rates: unknown key",
            ],
        ),
        (
            'regime = "uk"\n',
            [
                "late_payment.base_rates: must list at least one dated rate "
                "([[late_payment.base_rates]] with from and rate): arsync does not know the "
                "central banks' rates by itself"
            ],
        ),
        (
            'regime = "uk"\nmargin = 9\ncurrency = "EUR"\nfixed_sum = 50\n'
            "[[late_payment.base_rates]]\nfrom = 2026-01-01\nrate = 4.0\n"
            "[[late_payment.base_rates]]\nfrom = 2026-01-01\nrate = 3.75\n",
            [
                "late_payment.base_rates[1].from: must be later than the entry before it "
                "(2026-01-01), got 2026-01-01",
                "late_payment.margin: must be 8 under the Late Payment of Commercial Debts "
                "(Interest) Act 1998 (another rate is a contract's, not the Act's), got 9",
                'late_payment.currency: must be "GBP" under the uk regime (the Act\'s fixed sums '
                'are in pounds), got "EUR"',
                "late_payment.fixed_sum: is only for the eu regime: the Act sets 40, 70 or 100 "
                "GBP by the debt's size",
            ],
        ),
        (
            'regime = "eu"\nmargin = 7.5\nfixed_sum = 30\n'
            "[[late_payment.base_rates]]\nfrom = 2026-01-01\nrate = 2.15\n",
            [
                "late_payment.margin: must be at least 8 under Directive 2011/7/EU, got 7.5",
                "late_payment.fixed_sum: must be at least 40 (EUR) under Directive 2011/7/EU, "
                "got 30",
            ],
        ),
        (
            'regime = "eu"\ncurrency = "PLN"\n'
            "[[late_payment.base_rates]]\nfrom = 2026-01-01\nrate = 5.75\n",
            [
                "late_payment.fixed_sum: is required for PLN: the Directive's 40 EUR in that "
                "currency (or fixed_sums = false)"
            ],
        ),
        (
            'regime = "eu"\ncurrency = "euro"\nmargin = 200\n'
            "[[late_payment.base_rates]]\nfrom = 2026-01-01T00:00:00\nrate = 2.123456\n",
            [
                "late_payment.margin: must be a number of percent between -10 and 100, got 200",
                'late_payment.currency: must be a currency code such as "GBP", got "euro"',
                "late_payment.base_rates[0].from: must be a date like 2026-01-01 (without "
                "quotes), got 2026-01-01T00:00:00",
                "late_payment.base_rates[0].rate: must have at most four decimal places, "
                "got 2.123456",
            ],
        ),
    ],
)
def test_late_payment_problems_come_with_file_and_key(
    home: Path, table: str, expected: list[str]
) -> None:
    write(home, "config/policies/lp.toml", late(table))
    assert problems(home) == [f"config/policies/lp.toml: {line}" for line in expected]


def test_a_policys_templates_directory_is_checked_for_its_form(home: Path) -> None:
    write(
        home,
        "config/policies/own.toml",
        'templates = "../outside"\n' + builtin_text("gentle"),
    )
    assert problems(home) == [
        "config/policies/own.toml: templates: must name a directory under config/templates/ "
        '(lowercase letters, digits, hyphens and underscores, folders separated by "/"), got '
        '"../outside"'
    ]
