"""Receivables aging: open balances bucketed by days overdue, per currency (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

#: (label, first day overdue, last day overdue); "current" is not yet due (or due today).
BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("Current", -(10**6), 0),
    ("1–30", 1, 30),
    ("31–60", 31, 60),
    ("61–90", 61, 90),
    ("90+", 91, None),
)


@dataclass(frozen=True)
class OpenItem:
    """One open invoice as aging needs it: what is still owed, in which currency, due when."""

    due: date
    balance: Decimal
    currency: str


@dataclass
class AgingRow:
    currency: str
    buckets: list[Decimal] = field(default_factory=lambda: [Decimal(0)] * len(BUCKETS))
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))

    @property
    def total(self) -> Decimal:
        return sum(self.buckets, Decimal(0))

    @property
    def count(self) -> int:
        return sum(self.counts)


def bucket_index(days_overdue: int) -> int:
    for i, (_, low, high) in enumerate(BUCKETS):
        if days_overdue >= low and (high is None or days_overdue <= high):
            return i
    raise AssertionError("buckets cover every integer")  # pragma: no cover


def age(items: Iterable[OpenItem], today: date) -> list[AgingRow]:
    """Rows per currency (sorted by currency code); items with nothing owed are left out."""
    rows: dict[str, AgingRow] = {}
    for item in items:
        if item.balance <= 0:
            continue
        row = rows.setdefault(item.currency, AgingRow(item.currency))
        i = bucket_index((today - item.due).days)
        row.buckets[i] += item.balance
        row.counts[i] += 1
    return [rows[c] for c in sorted(rows)]
