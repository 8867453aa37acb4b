"""Aging buckets (pure)."""

from datetime import date, timedelta
from decimal import Decimal

from arsync.aging import OpenItem, age, bucket_index

TODAY = date(2026, 11, 23)


def item(days_overdue: int, amount: str, currency: str = "USD") -> OpenItem:
    return OpenItem(TODAY - timedelta(days=days_overdue), Decimal(amount), currency)


def test_bucket_edges() -> None:
    assert [bucket_index(d) for d in (-5, 0, 1, 30, 31, 60, 61, 90, 91, 400)] == [
        0, 0, 1, 1, 2, 2, 3, 3, 4, 4,
    ]  # fmt: skip


def test_rows_per_currency_with_exact_totals() -> None:
    rows = age(
        [item(-3, "10.10"), item(0, "0.20"), item(45, "100.00"), item(95, "5.05", "EUR"),
         item(10, "0.00")],
        TODAY,
    )  # fmt: skip
    assert [r.currency for r in rows] == ["EUR", "USD"]
    eur, usd = rows
    assert eur.buckets[4] == Decimal("5.05") and eur.total == Decimal("5.05")
    assert usd.buckets[0] == Decimal("10.30") and usd.buckets[2] == Decimal("100.00")
    assert usd.total == Decimal("110.30") and usd.count == 3
