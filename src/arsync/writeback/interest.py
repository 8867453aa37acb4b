"""Statutory late-payment interest and fixed compensation on a business debt, from the policy.

Two laws, as the policy's `[late_payment]` table names them:

- **uk**, the Late Payment of Commercial Debts (Interest) Act 1998: simple interest at 8 points
  over the Bank of England base rate in force on the reference day, 31 December for interest
  that starts from January to June, 30 June for interest that starts from July to December; the
  rate is fixed for the debt. Fixed sums: 40 GBP for a debt under 1,000, 70 under 10,000, 100
  from 10,000.
- **eu**, Directive 2011/7/EU: simple interest at the reference rate (the ECB's main
  refinancing rate) plus the margin, the rate in force on 1 January for the first half of each
  year and on 1 July for the second, so a debt late across half-years takes each half-year's
  rate for its days. Fixed compensation of at least 40 EUR.

Interest runs from the day after the due date up to and including the day asked about, on the
balance still owed, and a year counts 365 days (leap years too, as the UK government's own
calculator does). A part paid late earns no interest here: what is claimed is never more than the
law allows. The central banks' rates are never known here: they are the policy's dated entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal

from arsync.errors import ConfigError
from arsync.escalation.policy import EU_FIXED_SUM, LatePayment, Regime

CENT = Decimal("0.01")
YEAR_DAYS = 365
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
#: the Act's fixed sums, by the debt's size: (below this amount, this sum), then the top sum
UK_FIXED_SUMS = ((Decimal(1000), Decimal(40)), (Decimal(10000), Decimal(70)))
UK_TOP_SUM = Decimal(100)
LAW = {
    Regime.UK: "Late Payment of Commercial Debts (Interest) Act 1998",
    Regime.EU: "Directive 2011/7/EU",
}
#: the policy key that holds the dated reference rates, for the errors that name it
RATES_KEY = "late_payment.base_rates"


class MissingRate(ConfigError):
    """The policy has no reference rate in force on a day the law needs one for."""

    def __init__(self, message: str, *, needed: date) -> None:
        super().__init__(message)
        self.key = RATES_KEY
        self.needed = needed


@dataclass(frozen=True)
class Period:
    """Days of interest at one rate (the Directive changes the rate each half-year)."""

    start: date
    end: date  # inclusive
    reference_day: date
    base_rate: Decimal  # the reference rate in force on reference_day, percent a year
    rate: Decimal  # base_rate + margin, percent a year

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def interest(self, principal: Decimal) -> Decimal:
        """Unrounded: the sum is rounded once, not each half-year."""
        return principal * self.rate / 100 * self.days / YEAR_DAYS


@dataclass(frozen=True)
class Claim:
    """What the law adds to one late debt on one day, and the sentence that says so."""

    regime: Regime
    currency: str
    principal: Decimal
    due: date
    day: date
    margin: Decimal
    reference_name: str
    periods: tuple[Period, ...]
    #: the interest to the cent, rounded half up
    interest: Decimal
    #: the fixed compensation, or None when the policy claims none
    fixed_sum: Decimal | None

    @property
    def law(self) -> str:
        return LAW[self.regime]

    @property
    def days(self) -> int:
        return sum(p.days for p in self.periods)

    @property
    def rate(self) -> Decimal:
        """The rate of the first (under the Act, the only) period."""
        return self.periods[0].rate

    @property
    def base_rate(self) -> Decimal:
        return self.periods[0].base_rate

    @property
    def reference_day(self) -> date:
        return self.periods[0].reference_day

    @property
    def total(self) -> Decimal:
        """Interest and fixed compensation together (the balance itself not included)."""
        return self.interest + (self.fixed_sum or Decimal(0))

    @property
    def interest_text(self) -> str:
        return money_text(self.interest, self.currency)

    @property
    def fixed_sum_text(self) -> str | None:
        return None if self.fixed_sum is None else money_text(self.fixed_sum, self.currency)

    @property
    def sentence(self) -> str:
        """E.g. "Statutory interest at 12.00% a year (Bank of England base rate 4.00% on
        30 Jun 2026 + 8%) for 45 days: 14.79 GBP; fixed compensation 40.00 GBP (Late Payment
        of Commercial Debts (Interest) Act 1998)"."""
        spans = " and ".join(
            f"{_percent(p.rate)} a year ({self.reference_name} {_percent(p.base_rate)} on "
            f"{day_text(p.reference_day)} + {_points(self.margin)}%) for {_days(p.days)}"
            for p in self.periods
        )
        said = f"Statutory interest at {spans}: {self.interest_text}"
        if self.fixed_sum_text is not None:
            said += f"; fixed compensation {self.fixed_sum_text}"
        return f"{said} ({self.law})"


def applies(terms: LatePayment | None, currency: str) -> bool:
    """Does the policy claim statutory interest on a debt in `currency`?"""
    return terms is not None and terms.in_currency == currency


def claim(
    terms: LatePayment, principal: Decimal, currency: str, due: date, day: date
) -> Claim | None:
    """The interest and fixed sum on `principal`, due on `due`, as they stand on `day`.

    None when the law adds nothing: the due date has not passed by `day`, nothing is owed, or
    the debt is in another currency than the policy's. MissingRate when the policy has no
    reference rate for a day the law needs."""
    if not applies(terms, currency) or principal <= 0 or day <= due:
        return None
    start = due + timedelta(days=1)
    periods = tuple(_periods(terms, start, day))
    interest = sum((p.interest(principal) for p in periods), Decimal(0))
    return Claim(
        regime=terms.regime,
        currency=currency,
        principal=principal,
        due=due,
        day=day,
        margin=terms.margin,
        reference_name=terms.reference_name,
        periods=periods,
        interest=interest.quantize(CENT, rounding=ROUND_HALF_UP),
        fixed_sum=fixed_sum(terms, principal) if terms.fixed_sums else None,
    )


def fixed_sum(terms: LatePayment, principal: Decimal) -> Decimal:
    """The fixed compensation for one debt of `principal` (the policy's currency)."""
    if terms.regime is Regime.UK:
        for below, amount in UK_FIXED_SUMS:
            if principal < below:
                return amount
        return UK_TOP_SUM
    return terms.fixed_sum if terms.fixed_sum is not None else EU_FIXED_SUM


def reference_day(regime: Regime, day: date) -> date:
    """The day whose reference rate applies to interest running on `day`.

    UK: interest that starts on `day` takes the rate of 31 December (a start from January to
    June) or 30 June (a start from July to December). EU: the rate of 1 January or 1 July of
    the half-year `day` falls in."""
    if regime is Regime.UK:
        return date(day.year - 1, 12, 31) if day.month <= 6 else date(day.year, 6, 30)
    return date(day.year, 1, 1) if day.month <= 6 else date(day.year, 7, 1)


def base_rate_on(terms: LatePayment, day: date) -> Decimal:
    """The reference rate in force on `day`: the policy's latest entry from that day or before."""
    found: Decimal | None = None
    for entry in terms.base_rates:  # in order of date (the policy's validation sees to it)
        if entry.since > day:
            break
        found = entry.rate
    if found is None:
        earliest = (
            f"its earliest entry is from {day_text(terms.base_rates[0].since)}"
            if terms.base_rates
            else "it has no entry"
        )
        raise MissingRate(
            f"{RATES_KEY}: no {terms.reference_name} in force on {day_text(day)} "
            f"({earliest}); add the rate in force that day to the policy's "
            f"[[{RATES_KEY}]] (from = {day.isoformat()} or earlier, rate = ...)",
            needed=day,
        )
    return found


def _periods(terms: LatePayment, start: date, end: date) -> list[Period]:
    if terms.regime is Regime.UK:
        # the Act fixes the rate for the debt from the day its interest starts
        ref = reference_day(Regime.UK, start)
        base = base_rate_on(terms, ref)
        return [Period(start, end, ref, base, base + terms.margin)]
    periods: list[Period] = []
    cursor = start
    while cursor <= end:
        ref = reference_day(Regime.EU, cursor)
        half_end = date(ref.year, 6, 30) if ref.month == 1 else date(ref.year, 12, 31)
        last = min(end, half_end)
        base = base_rate_on(terms, ref)
        periods.append(Period(cursor, last, ref, base, base + terms.margin))
        cursor = last + timedelta(days=1)
    return periods


# -- how amounts, rates and days are said ---------------------------------------------------


def money_text(amount: Decimal, currency: str) -> str:
    """ "1,200.00 USD": the amount to the cent with thousands separated, then the currency."""
    return f"{amount.quantize(CENT, rounding=ROUND_HALF_UP):,.2f} {currency}"


def day_text(day: date) -> str:
    """ "2 Dec 2026", the same whatever the machine's locale."""
    return f"{day.day} {_MONTHS[day.month - 1]} {day.year}"


def _percent(rate: Decimal) -> str:
    return f"{rate.quantize(CENT, rounding=ROUND_HALF_UP):.2f}%"


def _points(margin: Decimal) -> str:
    # "8", "8.5": the margin as a law or a member state writes it
    return f"{margin.normalize():f}"


def _days(days: int) -> str:
    return "1 day" if days == 1 else f"{days} days"
