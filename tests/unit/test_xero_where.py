"""Xero's where-filter expressions: parsing and evaluation (pure)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from arsync.sandbox.xero.where import (
    And,
    Compare,
    Method,
    Not,
    Or,
    WhereError,
    fields_of,
    parse,
    where_predicate,
)

GUID = "5f67303b-e960-4bba-8456-6194ea1792e2"


@dataclass
class Rec:
    type: str = "ACCREC"
    status: str = "AUTHORISED"
    amount_due: Decimal = Decimal("12.50")
    contact_id: str = GUID
    name: str = "Alder Bakery Ltd"
    day: date = date(2026, 2, 1)
    sent: bool = False
    reference: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


FIELDS = {
    "type": lambda r: r.type,
    "status": lambda r: r.status,
    "amountdue": lambda r: r.amount_due,
    "contact.contactid": lambda r: r.contact_id,
    "contact.name": lambda r: r.name,
    "date": lambda r: r.day,
    "senttocontact": lambda r: r.sent,
    "reference": lambda r: r.reference,
}
DATES = frozenset({"date"})


def matches(expr: str, rec: Rec) -> bool:
    return where_predicate(expr, FIELDS, DATES)(rec)


def test_parses_comparisons_with_precedence_of_and_over_or() -> None:
    tree = parse('Type=="ACCREC" OR Status=="PAID" AND AmountDue>0')
    assert tree == Or(
        Compare("Type", "==", "ACCREC"),
        And(Compare("Status", "==", "PAID"), Compare("AmountDue", ">", Decimal(0))),
    )
    assert parse('Type=="A" && Status!="B" || NOT AmountDue<=1') == Or(
        And(Compare("Type", "==", "A"), Compare("Status", "!=", "B")),
        Not(Compare("AmountDue", "<=", Decimal(1))),
    )


def test_parses_guid_datetime_and_methods() -> None:
    tree = parse(f'Contact.ContactID==guid("{GUID}") AND Date>=DateTime(2026,01,01)')
    assert isinstance(tree, And)
    assert isinstance(tree.left, Compare) and str(tree.left.value) == GUID
    assert tree.right == Compare("Date", ">=", datetime(2026, 1, 1, tzinfo=UTC))
    assert parse('Contact.Name.Contains("Ltd")') == Method("Contact.Name", "contains", "Ltd")
    assert fields_of(tree) == {"contact.contactid", "date"}


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ('Type=="ACCREC"', True),
        ('Type=="accrec"', True),  # Xero's filters compare text case-insensitively
        ('Type=="ACCPAY"', False),
        ('Status=="AUTHORISED" AND AmountDue>0', True),
        ("AmountDue>12.50", False),
        ("AmountDue>=12.5", True),
        ('Type=="ACCPAY" OR Status=="AUTHORISED"', True),
        ('Type=="ACCPAY" OR (Status=="PAID" AND AmountDue>0)', False),
        (f'Contact.ContactID==guid("{GUID.upper()}")', True),
        ('Contact.ContactID==guid("00000000-0000-0000-0000-000000000000")', False),
        ("Date>=DateTime(2026,01,01)", True),
        ("Date>=DateTime(2026,02,01,00,00,01)", False),
        ('Date<"2026-03-01"', True),
        ("SentToContact==false", True),
        ("NOT SentToContact==false", False),
        ("!(SentToContact==true)", True),
        ('Contact.Name.Contains("bakery")', True),
        ('Contact.Name.StartsWith("Alder")', True),
        ('Contact.Name.EndsWith("Inc")', False),
        ("Reference==null", True),
        ("Reference!=null", False),
        ('Reference>"a"', False),  # an ordering against null matches nothing
        ('AmountDue=="x"', False),  # unlike types never match
    ],
)
def test_evaluates(expr: str, expected: bool) -> None:
    assert matches(expr, Rec()) is expected


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "Status==",
        'Status="PAID" AND',
        '(Status=="PAID"',
        'Status=="PAID")',
        "Status ~ 1",
        'guid("x")==Status',
        'Contact.ContactID==guid("not-a-guid")',
        "Date>DateTime(2026,13,01)",
        "Date>DateTime(2026)",
        "Contact.Name.Contains(3)",
        'Status=="PAID" Type=="ACCREC"',
    ],
)
def test_rejects_bad_syntax(expr: str) -> None:
    with pytest.raises(WhereError):
        where_predicate(expr, FIELDS, DATES)


def test_rejects_unknown_fields() -> None:
    with pytest.raises(WhereError, match="unknown field 'Colour'"):
        where_predicate('Colour=="red"', FIELDS)


def test_a_single_equals_sign_reads_as_equality() -> None:
    assert matches('Status="AUTHORISED"', Rec())


def test_angle_brackets_read_as_inequality() -> None:
    # Xero's filters are .NET Dynamic LINQ, where `<>` is `!=`
    assert parse('Type<>"ACCPAY"') == Compare("Type", "!=", "ACCPAY")
    assert matches('Type<>"ACCPAY"', Rec()) and not matches('Type<>"ACCREC"', Rec())


def test_long_chains_compile_and_evaluate_without_recursion() -> None:
    chain = " AND ".join(['Type=="ACCREC"'] * 400)
    assert matches(chain, Rec())
    either = " OR ".join(['Type=="ACCPAY"'] * 399 + ['Status=="AUTHORISED"'])
    assert matches(either, Rec())
    assert fields_of(parse(either)) == {"type", "status"}


@pytest.mark.parametrize(
    ("expr", "reason"),
    [
        ("(" * 100 + 'Type=="ACCREC"' + ")" * 100, "nests deeper"),
        ("NOT " * 100 + 'Type=="ACCREC"', "nests deeper"),
        (" AND ".join(['Type=="ACCREC"'] * 600), "more than 500 conditions"),
        ("Date>DateTime(2026,1,1,99999999999999999999,0,0)", "not a date"),
    ],
)
def test_hostile_expressions_are_parse_errors(expr: str, reason: str) -> None:
    with pytest.raises(WhereError, match=reason):
        where_predicate(expr, FIELDS, DATES)
