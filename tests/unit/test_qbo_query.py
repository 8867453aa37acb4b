"""The QBO query language: parsing, validation and evaluation, without HTTP."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from arsync.sandbox.qbo.model import money
from arsync.sandbox.qbo.query import Condition, QueryError, page, parse_query, select

PACIFIC = timezone(timedelta(hours=-8))


@dataclass
class Row:
    id: int
    balance: Decimal
    due: date
    updated: datetime
    customer: str
    name: str
    active: bool = True
    refs: list[str] = field(default_factory=list)


FIELDS = {
    "id": lambda r: r.id,
    "balance": lambda r: r.balance,
    "duedate": lambda r: r.due,
    "metadata.lastupdatedtime": lambda r: r.updated,
    "customerref": lambda r: r.customer,
    "displayname": lambda r: r.name,
    "active": lambda r: r.active,
    "attachableref.entityref.value": lambda r: r.refs,
}


def get(row: Row, name: str) -> Any:
    return FIELDS[name.lower()](row)


def probe(name: str) -> None:
    if name.lower() not in FIELDS:
        raise KeyError(name)


def _at(day: int, hour: int) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=UTC)


ROWS = [
    Row(1, Decimal("0.00"), date(2026, 10, 1), _at(1, 12), "7", "Alder Bakery"),
    Row(2, Decimal("150.00"), date(2026, 11, 5), _at(20, 12), "7", "Birch Cafe", refs=["95"]),
    Row(3, Decimal("12.50"), date(2026, 9, 30), _at(21, 9), "9", "Cedar Clinic", active=False),
    Row(4, Decimal("99.99"), date(2026, 12, 1), _at(22, 8), "12", "birch garage", refs=["4", "95"]),
]


def run(text: str) -> list[int]:
    query = parse_query(text)
    return [r.id for r in page(query, select(query, ROWS, get, PACIFIC, probe=probe))]


def test_parses_the_full_form() -> None:
    q = parse_query(
        "select * from invoice where Balance > '0' and CustomerRef IN ('7', '9') "
        "ORDERBY DueDate DESC STARTPOSITION 11 MAXRESULTS 1000"
    )
    assert q.entity == "invoice"
    assert not q.count
    assert q.where == (
        Condition("Balance", ">", ("0",)),
        Condition("CustomerRef", "IN", ("7", "9")),
    )
    assert q.order == (("DueDate", True),)
    assert (q.start_position, q.max_results) == (11, 1000)


def test_defaults_and_count() -> None:
    q = parse_query("SELECT COUNT(*) FROM Customer")
    assert q.count and q.entity == "Customer"
    assert (q.start_position, q.max_results) == (1, 100)
    assert parse_query("SELECT * FROM Invoice ORDER BY Id").order == (("Id", False),)


def test_escaped_quote_in_a_string() -> None:
    q = parse_query(r"SELECT * FROM Customer WHERE DisplayName = 'O\'Brien Ltd'")
    assert q.where[0].values == ("O'Brien Ltd",)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM Invoice WHERE Balance > '0' OR Balance < '5'",
        "SELECT * FORM Invoice",
        "SELECT * FROM Invoice WHERE",
        "SELECT * FROM Invoice WHERE Balance >",
        "SELECT * FROM Invoice MAXRESULTS ten",
        "DELETE FROM Invoice",
        "SELECT * FROM Invoice WHERE Id IN ('1', '2'",
        "",
    ],
)
def test_syntax_errors_are_4000(text: str) -> None:
    with pytest.raises(QueryError) as err:
        parse_query(text)
    assert err.value.code == "4000"
    assert err.value.detail.startswith("QueryParserError")


def test_or_is_refused_where_it_stands() -> None:
    with pytest.raises(QueryError) as err:
        parse_query("SELECT * FROM Invoice WHERE Id = '1' OR Id = '2'")
    assert "<OR>" in err.value.detail
    assert "column 38" in err.value.detail


def test_max_results_above_1000_is_a_validation_error() -> None:
    with pytest.raises(QueryError) as err:
        parse_query("SELECT * FROM Invoice MAXRESULTS 1001")
    assert err.value.code == "4001"
    assert err.value.detail == (
        "QueryValidationError: value 1001 is too large. Max allowed value is 1000"
    )
    assert parse_query("SELECT * FROM Invoice MAXRESULTS 1000").max_results == 1000


def test_comparisons_follow_the_field_type() -> None:
    assert run("SELECT * FROM Invoice WHERE Balance > '0'") == [2, 3, 4]
    assert run("SELECT * FROM Invoice WHERE Balance >= '99.99'") == [2, 4]
    assert run("SELECT * FROM Invoice WHERE Balance = 12.5") == [3]
    assert run("SELECT * FROM Invoice WHERE DueDate < '2026-10-02'") == [1, 3]
    assert run("SELECT * FROM Invoice WHERE Id <= '2'") == [1, 2]
    assert run("SELECT * FROM Customer WHERE Active = false") == [3]


def test_datetimes_without_offset_are_company_time() -> None:
    # 2026-11-21T00:00 in UTC-8 is 08:00 UTC: row 3 (09:00 UTC) is after it, row 2 is not.
    text = "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > '2026-11-21T00:00:00'"
    assert run(text) == [3, 4]
    with_offset = "SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > '2026-11-21T10:00:00Z'"
    assert run(with_offset) == [4]


def test_in_like_and_multi_valued_fields() -> None:
    assert run("SELECT * FROM Invoice WHERE CustomerRef IN ('9', '12')") == [3, 4]
    assert run("SELECT * FROM Customer WHERE DisplayName LIKE '%birch%'") == [2, 4]
    assert run("SELECT * FROM Customer WHERE DisplayName LIKE 'Birch%'") == [2, 4]
    assert run("SELECT * FROM Customer WHERE DisplayName LIKE '%Cafe'") == [2]
    text = "SELECT * FROM Attachable WHERE AttachableRef.EntityRef.value = '95'"
    assert run(text) == [2, 4]


def test_order_paging_and_conjunction() -> None:
    assert run("SELECT * FROM Invoice ORDERBY Balance DESC") == [2, 4, 3, 1]
    assert run("SELECT * FROM Invoice ORDERBY CustomerRef, Balance DESC") == [4, 2, 1, 3]
    assert run("SELECT * FROM Invoice ORDERBY DueDate STARTPOSITION 2 MAXRESULTS 2") == [1, 2]
    assert run("SELECT * FROM Invoice STARTPOSITION 5") == []
    both = "SELECT * FROM Invoice WHERE Balance > '0' AND CustomerRef = '7'"
    assert run(both) == [2]


def test_unknown_field_and_bad_literal_are_validation_errors() -> None:
    with pytest.raises(QueryError) as err:
        run("SELECT * FROM Invoice WHERE Colour = 'red'")
    assert err.value.code == "4001"
    assert "Colour" in err.value.detail
    with pytest.raises(QueryError) as err:
        run("SELECT * FROM Invoice WHERE Balance > 'lots'")
    assert err.value.code == "4001"


def test_positions_must_be_whole_numbers_a_long_can_hold() -> None:
    assert (
        parse_query("SELECT * FROM Invoice STARTPOSITION '11' MAXRESULTS '5'").start_position == 11
    )
    with pytest.raises(QueryError) as err:
        parse_query("SELECT * FROM Invoice STARTPOSITION " + "9" * 5000)
    assert err.value.code == "4001"
    for text in ("STARTPOSITION '-3'", "STARTPOSITION '½'", "MAXRESULTS 1.5"):
        with pytest.raises(QueryError) as err:
            parse_query(f"SELECT * FROM Invoice {text}")
        assert err.value.code == "4000"


def test_a_datetime_beyond_the_calendar_is_a_validation_error() -> None:
    for moment in ("0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-14:00"):
        with pytest.raises(QueryError) as err:
            run(f"SELECT * FROM Invoice WHERE MetaData.LastUpdatedTime > '{moment}'")
        assert err.value.code == "4001"


def test_money_is_exact_finite_and_bounded() -> None:
    assert money("0.1") + money("0.2") == Decimal("0.30")
    assert str(money("2.675")) == "2.68"  # half up on the exact decimal, not a binary float
    for bad in ("NaN", "sNaN", "Infinity", "-Infinity", "1e30", "lots"):
        with pytest.raises(ValueError):
            money(bad)
