"""Collection policies: the shipped ones, and every problem of a bad one with its file and key."""

from __future__ import annotations

import tomllib
from datetime import time, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from arsync.config import InvalidConfig, load
from arsync.escalation.policy import (
    BUILTIN,
    ActionKind,
    Policy,
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
