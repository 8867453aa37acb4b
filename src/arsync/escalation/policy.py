"""The collection policy (config/policies/NAME.toml): ordered stages and the rules around them.

A policy is validated once, like the rest of the configuration, every problem reported with its
file and key. The models are frozen and hold no I/O: the planner reads them as plain values.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from functools import cache
from importlib import resources
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from arsync.config.models import parse_duration
from arsync.config.problems import NOTHING, Located, cross

#: the policies that ship with arsync (src/arsync/escalation/policies/)
BUILTIN = ("standard", "gentle")

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
#: a directory under config/templates/: lowercase names, no "..", nothing absolute
_TEMPLATES = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$")


class ActionKind(StrEnum):
    """What one stage can do."""

    EMAIL = "email"  # the platform emails the invoice with its reminder
    NOTE = "note"  # a dated note on the invoice, for the bookkeeper
    CALL = "call"  # a call task for a person at the firm
    HANDOVER = "handover"  # hand the debt to a collection agency
    LETTER = "letter"  # a letter in the stage's tone through the firm's own mail server


#: actions that reach the customer: they keep quiet hours, business days and contact spacing
CONTACT = frozenset({ActionKind.EMAIL, ActionKind.CALL, ActionKind.LETTER})


class Tone(StrEnum):
    """How a stage speaks, from the gentlest to the firmest."""

    FRIENDLY = "friendly"
    POLITE = "polite"
    FIRM = "firm"
    FINAL = "final"

    @property
    def rank(self) -> int:
        return list(Tone).index(self)

    def firmer(self) -> Tone:
        """One step firmer (a broken promise is followed in a firmer tone); final stays final."""
        tones = list(Tone)
        return tones[min(self.rank + 1, len(tones) - 1)]


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def _money(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise PydanticCustomError("money", 'must be an amount, like 25 or "25.00"')
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise PydanticCustomError("money", 'must be an amount, like 25 or "25.00"') from None
    if not amount.is_finite() or amount < 0:
        raise PydanticCustomError("money", "must be an amount of zero or more")
    if amount != amount.quantize(Decimal("0.01")):
        raise PydanticCustomError("money", "must have at most two decimal places")
    return amount


def _per_currency(value: dict[str, Decimal]) -> dict[str, Decimal]:
    for code in value:
        if not _CURRENCY.match(code):
            raise PydanticCustomError(
                "currency",
                'keys must be currency codes such as "USD" ("{code}" is not one)',
                {"code": code},
            )
    return value


def _clock(value: str) -> time:
    match = _CLOCK.match(value.strip()) if isinstance(value, str) else None
    if match is None:
        raise PydanticCustomError("clock", 'must be a time of day like "08:00"')
    return time(int(match[1]), int(match[2]))


def _days(value: object) -> timedelta:
    try:
        return parse_duration(value)
    except PydanticCustomError:
        raise PydanticCustomError(
            "duration", 'must be a duration like "24h" or "2d", or a number of seconds'
        ) from None


def _weekdays(value: list[str]) -> list[str]:
    if not value or any(d not in WEEKDAYS for d in value) or len(set(value)) != len(value):
        raise PydanticCustomError(
            "weekdays",
            "must list days of the week once each, from {days}",
            {"days": ", ".join(f'"{d}"' for d in WEEKDAYS)},
        )
    return value


Money = Annotated[Decimal, PlainValidator(_money)]
PerCurrency = Annotated[dict[str, Money], AfterValidator(_per_currency)]
Clock = Annotated[time, PlainValidator(_clock)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class QuietHours(_Model):
    """The window, in the customer's local time, in which arsync may contact them."""

    start: Clock = time(8, 0)
    end: Clock = time(21, 0)

    @model_validator(mode="after")
    def _ordered(self) -> QuietHours:
        if self.start >= self.end:
            raise cross((("end",), "must be later than start (a window within one day)", NOTHING))
        return self


class CalendarRules(_Model):
    #: the days of the week on which anyone is contacted
    business_days: Annotated[list[str], AfterValidator(_weekdays)] = Field(
        default_factory=lambda: list(WEEKDAYS[:5])
    )
    #: no contact on the public holidays of the firm's country and region
    public_holidays: bool = True
    #: contact only inside this window, in the customer's local time
    quiet_hours: QuietHours = Field(default_factory=QuietHours)

    @property
    def weekdays(self) -> frozenset[int]:
        return frozenset(WEEKDAYS.index(d) for d in self.business_days)


class Rules(_Model):
    #: at most one contact per customer in this many days (0: no spacing)
    contact_spacing_days: Annotated[int, Field(ge=0, le=365)] = 7
    #: more actions than this in one run wait for a person's approval instead (a breaker
    #: against a bad policy edit or a bad sync)
    max_actions_per_run: Annotated[int, Field(ge=1)] = 50
    #: no contact while the last good sync is older than this
    stale_sync: Annotated[timedelta, PlainValidator(_days)] = timedelta(hours=24)
    #: every action waits for a person's approval
    approval: bool = False


class Promises(_Model):
    #: days after the promised date before an unpaid promise counts as broken
    grace_days: Annotated[int, Field(ge=0, le=60)] = 3


class Plans(_Model):
    #: instalments that may be missed before a plan ends (a default for new plans)
    missed_allowed: Annotated[int, Field(ge=0, le=12)] = 1
    #: days after an instalment's date before it counts as missed
    grace_days: Annotated[int, Field(ge=0, le=60)] = 3


class Settlement(_Model):
    #: the lowest share of the balance the firm accepts in full settlement, in percent
    min_percent: Annotated[int, Field(ge=1, le=100)] = 70


class Ledger(_Model):
    """How a bookkeeper holds the chase from inside QuickBooks or Xero."""

    #: a customer with one of these labels is paused: a QuickBooks customer type or a Xero
    #: contact group, compared without regard to case
    pause_tags: list[str] = Field(default_factory=lambda: ["Do not chase"])
    #: a customer whose QuickBooks Notes contain this text is paused ("" turns it off)
    pause_marker: str = "#nochase"
    #: a Xero invoice's Expected Date counts as the customer's promise to pay on that date
    expected_date_is_promise: bool = True


class Regime(StrEnum):
    """Which law sets the statutory late-payment interest (business to business)."""

    UK = "uk"  # Late Payment of Commercial Debts (Interest) Act 1998
    EU = "eu"  # Directive 2011/7/EU, as a member state transposes it


#: the currency each regime's sums are stated in
REGIME_CURRENCY = {Regime.UK: "GBP", Regime.EU: "EUR"}
#: the points over the reference rate each law sets: the Act exactly, the Directive at least
STATUTORY_MARGIN = Decimal(8)
#: the Directive's fixed compensation for recovery costs: at least this, in euros
EU_FIXED_SUM = Decimal(40)


def _percent(value: object) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise PydanticCustomError("percent", "must be a number of percent, like 4.25")
    rate = Decimal(str(value))
    if not rate.is_finite() or not Decimal(-10) <= rate <= Decimal(100):
        raise PydanticCustomError("percent", "must be a number of percent between -10 and 100")
    if rate != rate.quantize(Decimal("0.0001")):
        raise PydanticCustomError("percent", "must have at most four decimal places")
    return rate


def _calendar_day(value: object) -> date:
    # TOML has real dates; a datetime or a quoted date is a slip worth naming
    if not isinstance(value, date) or isinstance(value, datetime):
        raise PydanticCustomError("day", "must be a date like 2026-01-01 (without quotes)")
    return value


def _currency(value: str) -> str:
    if not _CURRENCY.match(value):
        raise PydanticCustomError("currency", 'must be a currency code such as "GBP"')
    return value


def _templates_dir(value: str) -> str:
    if not _TEMPLATES.match(value):
        raise PydanticCustomError(
            "templates",
            "must name a directory under config/templates/ (lowercase letters, digits, hyphens "
            'and underscores, folders separated by "/")',
        )
    return value


def _named(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value.strip()


Percent = Annotated[Decimal, PlainValidator(_percent)]


class BaseRate(_Model):
    """A reference rate and the day from which it is in force (a central bank's decision)."""

    since: Annotated[date, PlainValidator(_calendar_day)] = Field(alias="from")
    #: percent a year, e.g. 4.0 for a Bank of England base rate of 4%
    rate: Percent


class LatePayment(_Model):
    """[late_payment]: statutory interest and fixed compensation on late business debts.

    The reference rates are dated entries the firm keeps up to date: the central banks change
    them, so arsync never knows them by itself."""

    regime: Annotated[Regime, Field(strict=False)]
    #: percentage points over the reference rate: 8 under the Act; at least 8 under the
    #: Directive (a member state may set more)
    margin: Percent = STATUTORY_MARGIN
    #: interest is claimed only on invoices in this currency; default: GBP (uk), EUR (eu)
    currency: Annotated[str, AfterValidator(_currency)] | None = None
    #: how letters name the reference rate; default: the Bank of England's or the ECB's
    rate_name: Annotated[str, AfterValidator(_named)] | None = None
    #: claim the fixed compensation as well as the interest
    fixed_sums: bool = True
    #: the Directive's fixed sum (eu only; at least 40 EUR, or its equal in another currency)
    fixed_sum: Money | None = None
    base_rates: list[BaseRate] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> LatePayment:
        problems = late_payment_problems(self)
        if problems:
            raise cross(*problems)
        return self

    @property
    def in_currency(self) -> str:
        return self.currency or REGIME_CURRENCY[self.regime]

    @property
    def reference_name(self) -> str:
        if self.rate_name:
            return self.rate_name
        if self.regime is Regime.UK:
            return "Bank of England base rate"
        return "ECB main refinancing rate"


def _shown(value: Decimal) -> int | float:
    # a problem shows the number as it was written: 7, not 7.0
    return int(value) if value == value.to_integral_value() else float(value)


def late_payment_problems(terms: LatePayment) -> list[Located]:
    """Problems between the keys of a valid-looking [late_payment] table."""
    found: list[Located] = []
    if not terms.base_rates:
        found.append(
            (
                ("base_rates",),
                "must list at least one dated rate ([[late_payment.base_rates]] with from and "
                "rate): arsync does not know the central banks' rates by itself",
                NOTHING,
            )
        )
    for n in range(1, len(terms.base_rates)):
        before, entry = terms.base_rates[n - 1].since, terms.base_rates[n].since
        if entry <= before:
            found.append(
                (
                    ("base_rates", n, "from"),
                    f"must be later than the entry before it ({before.isoformat()})",
                    entry,
                )
            )
    if terms.regime is Regime.UK:
        if terms.margin != STATUTORY_MARGIN:
            found.append(
                (
                    ("margin",),
                    "must be 8 under the Late Payment of Commercial Debts (Interest) Act 1998 "
                    "(another rate is a contract's, not the Act's)",
                    _shown(terms.margin),
                )
            )
        if terms.in_currency != "GBP":
            found.append(
                (
                    ("currency",),
                    'must be "GBP" under the uk regime (the Act\'s fixed sums are in pounds)',
                    terms.in_currency,
                )
            )
        if terms.fixed_sum is not None:
            found.append(
                (
                    ("fixed_sum",),
                    "is only for the eu regime: the Act sets 40, 70 or 100 GBP by the debt's size",
                    NOTHING,
                )
            )
    else:
        if terms.margin < STATUTORY_MARGIN:
            found.append(
                (
                    ("margin",),
                    "must be at least 8 under Directive 2011/7/EU",
                    _shown(terms.margin),
                )
            )
        if terms.in_currency == "EUR":
            if terms.fixed_sum is not None and terms.fixed_sum < EU_FIXED_SUM:
                found.append(
                    (
                        ("fixed_sum",),
                        "must be at least 40 (EUR) under Directive 2011/7/EU",
                        _shown(terms.fixed_sum),
                    )
                )
        elif terms.fixed_sums and terms.fixed_sum is None:
            found.append(
                (
                    ("fixed_sum",),
                    f"is required for {terms.in_currency}: the Directive's 40 EUR in that "
                    "currency (or fixed_sums = false)",
                    NOTHING,
                )
            )
    return found


class Stage(_Model):
    name: Annotated[str, AfterValidator(lambda v: _slug(v))]
    #: how the stage is named in reasons and notes; default: its name
    title: str | None = None
    #: days from the due date: negative before it, positive after; never 0
    offset: int
    actions: list[Annotated[ActionKind, Field(strict=False)]]
    tone: Annotated[Tone, Field(strict=False)]
    #: below this balance (per currency) the stage does not happen
    minimum_balance: PerCurrency = Field(default_factory=dict)
    #: the stage's actions wait for a person's approval; default: only a hand-over does
    approval: bool | None = None

    def waits(self, kind: ActionKind) -> bool:
        """Does this action of the stage wait for a person's approval?"""
        if self.approval is not None:
            return self.approval
        return kind is ActionKind.HANDOVER

    @property
    def label(self) -> str:
        return self.title or self.name.replace("-", " ")

    @property
    def contacts(self) -> bool:
        """The stage reaches the customer (and so keeps quiet hours and spacing)."""
        return any(a in CONTACT for a in self.actions)


def _slug(value: str) -> str:
    if not _SLUG.match(value):
        raise PydanticCustomError("slug", "must be lowercase letters, digits and hyphens")
    return value


class Policy(_Model):
    """config/policies/NAME.toml; `name` is the file's stem."""

    name: str = "standard"
    description: str = ""
    calendar: CalendarRules = Field(default_factory=CalendarRules)
    rules: Rules = Field(default_factory=Rules)
    #: per currency; a currency not listed has no minimum beyond a balance above zero
    minimum_balance: PerCurrency = Field(default_factory=dict)
    promises: Promises = Field(default_factory=Promises)
    plans: Plans = Field(default_factory=Plans)
    settlement: Settlement = Field(default_factory=Settlement)
    ledger: Ledger = Field(default_factory=Ledger)
    #: statutory late-payment interest and fixed compensation on letters; None: none claimed
    late_payment: LatePayment | None = None
    #: the policy's own words: a directory under config/templates/, searched before
    #: config/templates/ itself
    templates: Annotated[str, AfterValidator(_templates_dir)] | None = None
    stages: list[Stage]

    @model_validator(mode="after")
    def _stages_in_order(self) -> Policy:
        problems = stage_problems([s.model_dump() for s in self.stages])
        if problems:
            raise cross(*problems)
        return self

    def minimum(self, currency: str, stage: Stage | None = None) -> Decimal:
        """The balance below which nobody is chased in `currency` (at `stage`, if given)."""
        floor = self.minimum_balance.get(currency, Decimal(0))
        if stage is not None:
            floor = max(floor, stage.minimum_balance.get(currency, Decimal(0)))
        return floor

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)


def stage_problems(stages: list[Any]) -> list[Located]:
    """Problems between stages, found in their raw (maybe invalid) data."""
    found: list[Located] = []
    if isinstance(stages, list) and not stages:
        found.append((("stages",), "must have at least one stage ([[stages]])", NOTHING))
    names: set[str] = set()
    last_offset: int | None = None
    last_tone: Tone | None = None
    for n, raw in enumerate(stages if isinstance(stages, list) else []):
        if not isinstance(raw, dict):
            continue
        name, offset, actions = raw.get("name"), raw.get("offset"), raw.get("actions")
        tone = raw.get("tone")
        if isinstance(name, str):
            if name in names:
                found.append((("stages", n, "name"), "is used by an earlier stage", name))
            names.add(name)
        if isinstance(offset, int) and not isinstance(offset, bool):
            if offset == 0:
                found.append(
                    (
                        ("stages", n, "offset"),
                        "must not be 0: never chase on the day a bill falls due",
                        offset,
                    )
                )
            elif last_offset is not None and offset <= last_offset:
                found.append(
                    (
                        ("stages", n, "offset"),
                        f"must be later than the stage before it ({last_offset:+d} days)",
                        offset,
                    )
                )
            last_offset = offset
        if isinstance(actions, list):
            if not actions:
                found.append((("stages", n, "actions"), "must list at least one", actions))
            elif len(set(map(str, actions))) != len(actions):
                found.append((("stages", n, "actions"), "lists an action twice", actions))
        if isinstance(tone, str) and tone in Tone.__members__.values():
            current = Tone(tone)
            if last_tone is not None and current.rank < last_tone.rank:
                found.append(
                    (
                        ("stages", n, "tone"),
                        f'must not be gentler than the stage before it ("{last_tone.value}"): '
                        "tone rises stage by stage",
                        tone,
                    )
                )
            last_tone = current
    return found


@cache
def builtin_policies() -> dict[str, Policy]:
    """The policies shipped with arsync, by name (read once; they are valid by test)."""
    found: dict[str, Policy] = {}
    for name in BUILTIN:
        text = resources.files("arsync.escalation").joinpath(f"policies/{name}.toml").read_text()
        found[name] = Policy.model_validate({**tomllib.loads(text), "name": name})
    return found


def builtin_text(name: str) -> str:
    return resources.files("arsync.escalation").joinpath(f"policies/{name}.toml").read_text()
