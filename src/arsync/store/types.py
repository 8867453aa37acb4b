"""Column types that keep money exact and times in UTC on SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect
from sqlalchemy.types import TypeDecorator

#: amounts are stored as whole ten-thousandths: exact, summable in SQL, on every database
SCALE = Decimal(10_000)


def to_units(value: Decimal) -> int:
    """An amount as whole ten-thousandths; more places than four is refused, never rounded."""
    if not isinstance(value, Decimal):
        raise TypeError(f"amounts must be Decimal, got {type(value).__name__}")
    scaled = value * SCALE
    if scaled != scaled.to_integral_value():
        raise ValueError(f"amount {value} has more than four decimal places")
    return int(scaled)


def from_units(units: int) -> Decimal:
    """Back to a Decimal: two places when that is exact (money as people write it), else four."""
    amount = Decimal(units) / SCALE
    return amount.quantize(Decimal("0.01")) if units % 100 == 0 else amount


class Amount(TypeDecorator[Decimal]):
    """A Decimal with at most four places, stored as an integer count of ten-thousandths.

    SQLite has no decimal type (SQLAlchemy's Numeric goes through float there); an integer is
    exact on both databases and sums exactly in SQL.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        return None if value is None else to_units(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        return None if value is None else from_units(int(value))


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes in, the same out (SQLite keeps no offset of its own)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware times")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
