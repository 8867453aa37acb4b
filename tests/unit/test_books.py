"""The books generator: realistic, reproducible small-firm books."""

from datetime import UTC, datetime
from decimal import Decimal

from arsync.sandbox.books import generate_books

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def test_same_seed_same_books_and_another_seed_other_books() -> None:
    a = generate_books(platform="xero", seed=3, now=NOW)
    b = generate_books(platform="xero", seed=3, now=NOW)
    c = generate_books(platform="xero", seed=4, now=NOW)
    assert a == b
    assert a.invoices != c.invoices


def test_books_look_like_a_small_firm() -> None:
    books = generate_books(platform="xero", seed=1, now=NOW)
    assert len(books.customers) == 40 and len(books.invoices) == 300
    assert any(c.email is None for c in books.customers)
    assert any(c.phone is None for c in books.customers)
    assert {i.terms_days for i in books.invoices} == {7, 15, 30, 60}
    assert len({i.currency for i in books.invoices}) >= 2  # Xero books are multi-currency
    sales = [i for i in books.invoices if not i.is_bill and i.state == "open"]
    paid = [i for i in sales if i.balance == 0 and i.payments]
    partly = [i for i in sales if 0 < i.amount_paid < i.total]
    credited = [i for i in sales if i.credits]
    voided = [i for i in books.invoices if i.state == "void"]
    late = [i for i in paid if max(p.paid_on for p in i.payments) > i.due_on]
    assert len(paid) > len(sales) / 2  # most are paid…
    assert late and partly and credited and voided  # …some late, partly, credited, voided
    assert any(i.state == "draft" for i in books.invoices)
    assert any(i.is_bill for i in books.invoices)
    totals = sorted(i.total for i in sales)
    assert totals[-1] > 10 * totals[len(totals) // 2]  # a few large, many small
    for inv in sales:
        assert Decimal(0) <= inv.balance <= inv.total
        assert all(p.paid_on <= NOW.date() for p in inv.payments)
        assert inv.issued_on <= NOW.date()


def test_qbo_books_are_single_currency_without_bills_or_drafts() -> None:
    books = generate_books(platform="qbo", seed=1, now=NOW, customers=5, invoices=50)
    assert {i.currency for i in books.invoices} == {"USD"}
    assert not any(i.is_bill or i.state == "draft" for i in books.invoices)
    assert books.tenant_id.isdigit()


def test_no_record_is_stamped_in_the_future() -> None:
    # Enough invoices that some are issued today, at a random hour that may be later than now.
    for platform in ("qbo", "xero"):
        books = generate_books(platform=platform, seed=5, now=NOW, customers=50, invoices=3000)
        assert any(inv.issued_on == NOW.date() for inv in books.invoices)
        assert all(inv.created_at <= NOW for inv in books.invoices)
        assert all(c.created_at <= NOW for c in books.customers)
