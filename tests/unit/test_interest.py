"""Statutory late-payment interest and fixed compensation, worked out by hand."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from arsync.errors import ConfigError
from arsync.escalation.policy import LatePayment, Regime
from arsync.writeback.interest import (
    MissingRate,
    base_rate_on,
    claim,
    fixed_sum,
    money_text,
    reference_day,
)


def terms(regime: str, rates: list[tuple[date, float]], **more: Any) -> LatePayment:
    return LatePayment.model_validate(
        {
            "regime": regime,
            "base_rates": [{"from": since, "rate": rate} for since, rate in rates],
            **more,
        }
    )


#: the Bank of England cut to 3.75% on 18 Dec 2025 and (in this test) to 3.5% on 1 Jul 2026
UK = terms("uk", [(date(2025, 8, 7), 4.0), (date(2025, 12, 18), 3.75), (date(2026, 7, 1), 3.5)])
EU = terms("eu", [(date(2025, 6, 11), 2.15), (date(2026, 6, 20), 2.40)])


def amount(text: str) -> Decimal:
    return Decimal(text)


# -- the Act ---------------------------------------------------------------------------------------


def test_the_example_sentence() -> None:
    rates = terms("uk", [(date(2026, 1, 1), 4.0)])
    # 999.99 due 10 Jul 2026: interest from 11 Jul, a second-half start, at the rate of 30 Jun
    found = claim(rates, amount("999.99"), "GBP", date(2026, 7, 10), date(2026, 8, 24))
    assert found is not None
    # 999.99 × 12% × 45 / 365 = 14.7944...
    assert (found.days, found.interest, found.fixed_sum) == (45, Decimal("14.79"), Decimal(40))
    assert found.sentence == (
        "Statutory interest at 12.00% a year (Bank of England base rate 4.00% on 30 Jun 2026 "
        "+ 8%) for 45 days: 14.79 GBP; fixed compensation 40.00 GBP (Late Payment of "
        "Commercial Debts (Interest) Act 1998)"
    )
    assert found.total == Decimal("54.79")


def test_the_half_year_rule_fixes_the_rate_when_interest_starts() -> None:
    # due 29 Jun: interest starts 30 Jun, a first-half start: the rate of 31 Dec 2025 (3.75%)
    first = claim(UK, amount("5000.00"), "GBP", date(2026, 6, 29), date(2026, 7, 29))
    # due 30 Jun: interest starts 1 Jul: the rate of 30 Jun 2026 (still 3.75%, the cut of
    # 1 Jul comes a day late for it), and it stays for the debt's whole life
    second = claim(UK, amount("5000.00"), "GBP", date(2026, 6, 30), date(2027, 3, 1))
    # due 31 Dec 2026: interest starts 1 Jan 2027: the rate of 31 Dec 2026 (3.5%)
    third = claim(UK, amount("5000.00"), "GBP", date(2026, 12, 31), date(2027, 1, 31))
    assert first is not None and second is not None and third is not None
    assert (first.reference_day, first.base_rate, first.rate) == (
        date(2025, 12, 31),
        Decimal("3.75"),
        Decimal("11.75"),
    )
    assert (second.reference_day, second.base_rate) == (date(2026, 6, 30), Decimal("3.75"))
    assert len(second.periods) == 1 and second.days == 244
    assert (third.reference_day, third.rate) == (date(2026, 12, 31), Decimal("11.5"))
    # 5000 × 11.75% × 30 / 365 = 48.2876...; 5000 × 11.75% × 244 / 365 = 392.7397...;
    # 5000 × 11.5% × 31 / 365 = 48.8356...
    assert (first.days, first.interest) == (30, Decimal("48.29"))
    assert second.interest == Decimal("392.74")
    assert third.interest == Decimal("48.84")


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        ("0.01", 40),
        ("999.99", 40),
        ("1000.00", 70),
        ("9999.99", 70),
        ("10000.00", 100),
        ("2500000.00", 100),
    ],
)
def test_the_acts_fixed_sums_by_the_debts_size(principal: str, expected: int) -> None:
    assert fixed_sum(UK, amount(principal)) == Decimal(expected)
    found = claim(UK, amount(principal), "GBP", date(2026, 3, 1), date(2026, 3, 2))
    assert found is not None and found.fixed_sum == Decimal(expected)


def test_nothing_before_the_due_date_has_passed() -> None:
    due = date(2026, 3, 31)
    assert claim(UK, amount("500.00"), "GBP", due, date(2026, 3, 30)) is None
    assert claim(UK, amount("500.00"), "GBP", due, due) is None
    one = claim(UK, amount("500.00"), "GBP", due, date(2026, 4, 1))
    assert one is not None and one.days == 1
    # 500 × 11.75% / 365 = 0.1609...
    assert one.interest == Decimal("0.16")
    assert "for 1 day:" in one.sentence
    # nothing owed, or owed in another currency: nothing claimed
    assert claim(UK, amount("0.00"), "GBP", due, date(2026, 5, 1)) is None
    assert claim(UK, amount("500.00"), "EUR", due, date(2026, 5, 1)) is None


def test_a_leap_year_counts_29_february_and_a_year_is_still_365_days() -> None:
    rates = terms("uk", [(date(2027, 1, 1), 4.0)])
    # from 16 Feb to 15 Mar 2028: 14 days of February (16-29), 15 of March
    found = claim(rates, amount("3650.00"), "GBP", date(2028, 2, 15), date(2028, 3, 15))
    assert found is not None and found.days == 29
    # 3650 × 12% × 29 / 365 = 34.80 exactly
    assert found.interest == Decimal("34.80")


def test_interest_is_rounded_once_half_up_to_the_cent() -> None:
    rates = terms("uk", [(date(2026, 1, 1), 4.5)])
    # 0.20 at 12.5% for 365 days is 0.025: half up makes 0.03 (half even would make 0.02)
    found = claim(rates, amount("0.20"), "GBP", date(2026, 7, 1), date(2027, 7, 1))
    assert found is not None and found.days == 365
    assert found.interest == Decimal("0.03")
    assert money_text(Decimal("1234567.005"), "GBP") == "1,234,567.01 GBP"


def test_fixed_sums_may_be_left_out() -> None:
    rates = terms("uk", [(date(2026, 1, 1), 4.0)], fixed_sums=False)
    found = claim(rates, amount("999.99"), "GBP", date(2026, 7, 10), date(2026, 8, 24))
    assert found is not None and found.fixed_sum is None
    assert found.sentence.endswith(
        "for 45 days: 14.79 GBP (Late Payment of Commercial Debts (Interest) Act 1998)"
    )


def test_a_missing_base_rate_names_the_policy_key_and_the_day() -> None:
    rates = terms("uk", [(date(2026, 1, 1), 4.0)])
    # due 15 Mar 2026: interest starts 16 Mar, so the Act wants the rate of 31 Dec 2025
    with pytest.raises(MissingRate) as caught:
        claim(rates, amount("100.00"), "GBP", date(2026, 3, 15), date(2026, 4, 1))
    assert isinstance(caught.value, ConfigError)
    assert caught.value.key == "late_payment.base_rates"
    assert caught.value.needed == date(2025, 12, 31)
    assert str(caught.value) == (
        "late_payment.base_rates: no Bank of England base rate in force on 31 Dec 2025 (its "
        "earliest entry is from 1 Jan 2026); add the rate in force that day to the policy's "
        "[[late_payment.base_rates]] (from = 2025-12-31 or earlier, rate = ...)"
    )


def test_the_rate_in_force_is_the_latest_entry_from_that_day_or_before() -> None:
    assert base_rate_on(UK, date(2025, 8, 7)) == Decimal("4.0")
    assert base_rate_on(UK, date(2025, 12, 17)) == Decimal("4.0")
    assert base_rate_on(UK, date(2025, 12, 18)) == Decimal("3.75")
    assert base_rate_on(UK, date(2030, 1, 1)) == Decimal("3.5")


@pytest.mark.parametrize(
    ("regime", "day", "expected"),
    [
        (Regime.UK, date(2026, 1, 1), date(2025, 12, 31)),
        (Regime.UK, date(2026, 6, 30), date(2025, 12, 31)),
        (Regime.UK, date(2026, 7, 1), date(2026, 6, 30)),
        (Regime.UK, date(2026, 12, 31), date(2026, 6, 30)),
        (Regime.EU, date(2026, 1, 1), date(2026, 1, 1)),
        (Regime.EU, date(2026, 6, 30), date(2026, 1, 1)),
        (Regime.EU, date(2026, 7, 1), date(2026, 7, 1)),
        (Regime.EU, date(2026, 12, 31), date(2026, 7, 1)),
    ],
)
def test_reference_days(regime: Regime, day: date, expected: date) -> None:
    assert reference_day(regime, day) == expected


# -- the Directive ---------------------------------------------------------------------------------


def test_the_directive_within_one_half_year() -> None:
    found = claim(EU, amount("1000.00"), "EUR", date(2026, 1, 31), date(2026, 3, 2))
    assert found is not None
    # from 1 Feb to 2 Mar: 30 days at 2.15% + 8 = 10.15%: 1000 × 10.15% × 30 / 365 = 8.3424...
    assert (found.days, found.rate, found.interest) == (30, Decimal("10.15"), Decimal("8.34"))
    assert found.fixed_sum == Decimal(40)
    assert found.sentence == (
        "Statutory interest at 10.15% a year (ECB main refinancing rate 2.15% on 1 Jan 2026 "
        "+ 8%) for 30 days: 8.34 EUR; fixed compensation 40.00 EUR (Directive 2011/7/EU)"
    )


def test_the_directive_takes_each_half_years_rate_and_a_member_states_margin() -> None:
    rates = terms(
        "eu",
        [(date(2025, 6, 11), 2.15), (date(2026, 6, 20), 2.40)],
        margin=9,
        fixed_sum=50,
    )
    found = claim(rates, amount("10000.00"), "EUR", date(2026, 6, 15), date(2026, 7, 15))
    assert found is not None
    # 16-30 Jun at the rate of 1 Jan (2.15, the cut of 20 Jun waits for 1 Jul) + 9 = 11.15%;
    # 1-15 Jul at the rate of 1 Jul (2.40) + 9 = 11.40%:
    # 10000 × (11.15% × 15 + 11.40% × 15) / 365 = 92.6712...
    assert [(p.start, p.end, p.days, p.rate) for p in found.periods] == [
        (date(2026, 6, 16), date(2026, 6, 30), 15, Decimal("11.15")),
        (date(2026, 7, 1), date(2026, 7, 15), 15, Decimal("11.40")),
    ]
    assert found.days == 30
    assert found.interest == Decimal("92.67")
    assert found.fixed_sum == Decimal(50)
    assert found.sentence == (
        "Statutory interest at 11.15% a year (ECB main refinancing rate 2.15% on 1 Jan 2026 + "
        "9%) for 15 days and 11.40% a year (ECB main refinancing rate 2.40% on 1 Jul 2026 + 9%) "
        "for 15 days: 92.67 EUR; fixed compensation 50.00 EUR (Directive 2011/7/EU)"
    )


def test_the_directive_in_another_currency_with_its_own_rate_name() -> None:
    rates = terms(
        "eu",
        [(date(2026, 1, 1), 5.75)],
        currency="PLN",
        fixed_sum=170,
        rate_name="NBP reference rate",
    )
    found = claim(rates, amount("1000.00"), "PLN", date(2026, 2, 27), date(2026, 3, 1))
    assert found is not None
    assert found.sentence.startswith(
        "Statutory interest at 13.75% a year (NBP reference rate 5.75% on 1 Jan 2026 + 8%) "
        "for 2 days: 0.75 PLN; fixed compensation 170.00 PLN"
    )
    assert claim(rates, amount("1000.00"), "EUR", date(2026, 2, 27), date(2026, 3, 1)) is None
