"""The QBO query language subset real clients use: a pure parser and evaluator."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_MAX_RESULTS = 100

_KEYWORDS = {
    "SELECT",
    "FROM",
    "WHERE",
    "AND",
    "OR",
    "NOT",
    "IN",
    "LIKE",
    "ORDERBY",
    "ORDER",
    "BY",
    "ASC",
    "DESC",
    "STARTPOSITION",
    "MAXRESULTS",
    "COUNT",
}
_OPERATORS = ("<=", ">=", "!=", "=", "<", ">")

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>'(?:\\.|''|[^'\\])*')
  | (?P<number>-?\d+(?:\.\d+)?(?![\w.]))
  | (?P<op><=|>=|!=|=|<|>)
  | (?P<punct>[(),*])
  | (?P<word>[A-Za-z_][\w.]*)
    """,
    re.VERBOSE,
)


class QueryError(Exception):
    """A query QBO refuses: code 4000 (parser) or 4001 (validation), with Intuit's wording."""

    def __init__(self, code: str, message: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.message = message
        self.detail = detail


def _parse_error(detail: str) -> QueryError:
    return QueryError("4000", "Error parsing query", f"QueryParserError: {detail}")


def _validation_error(detail: str) -> QueryError:
    return QueryError("4001", "Invalid query", f"QueryValidationError: {detail}")


@dataclass(frozen=True)
class Token:
    kind: str  # "string" | "number" | "op" | "punct" | "word" | "keyword" | "end"
    text: str
    column: int

    @property
    def upper(self) -> str:
        return self.text.upper()


@dataclass(frozen=True)
class Condition:
    field: str
    op: str  # "=", "!=", "<", ">", "<=", ">=", "IN", "LIKE"
    values: tuple[str, ...]  # literals as written (strings unquoted)


@dataclass(frozen=True)
class Query:
    entity: str  # as written; resolve case-insensitively
    count: bool = False
    fields: tuple[str, ...] = ()  # empty: SELECT *
    where: tuple[Condition, ...] = ()
    order: tuple[tuple[str, bool], ...] = ()  # (field, descending)
    start_position: int = 1
    max_results: int = DEFAULT_MAX_RESULTS
    explicit_max: bool = field(default=False, compare=False)

    def mentions(self, field_name: str) -> bool:
        return any(c.field.lower() == field_name.lower() for c in self.where)


def tokenize(text: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise _parse_error(
                f'Encountered " "{text[pos]}" "{text[pos]} "" at line 1, column {pos + 1}.'
            )
        kind = match.lastgroup or ""
        value = match.group()
        if kind == "string":
            value = value[1:-1].replace("\\'", "'").replace("''", "'")
        elif kind == "word" and value.upper() in _KEYWORDS:
            kind = "keyword"
        if kind != "ws":
            tokens.append(Token(kind, value, pos + 1))
        pos = match.end()
    tokens.append(Token("end", "<EOF>", len(text) + 1))
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.tokens = tokenize(text)
        self.i = 0

    def peek(self) -> Token:
        return self.tokens[self.i]

    def next(self) -> Token:
        token = self.tokens[self.i]
        if token.kind != "end":
            self.i += 1
        return token

    def unexpected(self, token: Token, expecting: str) -> QueryError:
        shown = f"<{token.upper}>" if token.kind == "keyword" else f"<{token.kind.upper()}>"
        return _parse_error(
            f'Encountered " {shown} "{token.text} "" at line 1, column {token.column}.\n'
            f"Was expecting:\n    {expecting} ..."
        )

    def keyword(self, *words: str) -> Token:
        token = self.next()
        if token.kind != "keyword" or token.upper not in words:
            raise self.unexpected(token, " | ".join(f'"{w}"' for w in words))
        return token

    def is_keyword(self, *words: str) -> bool:
        token = self.peek()
        return token.kind == "keyword" and token.upper in words

    def name(self) -> str:
        token = self.next()
        if token.kind != "word":
            raise self.unexpected(token, "<ID>")
        return token.text

    def integer(self) -> int:
        token = self.next()
        digits = token.text.lstrip("-") if token.kind == "number" else token.text
        ok = token.kind in ("string", "number") and digits.isascii() and digits.isdigit()
        if not ok or (token.kind == "string" and token.text.startswith("-")):
            raise self.unexpected(token, "<INTEGER>")
        if len(digits) > 18:
            # Java's long is what Intuit's parser reads; anything longer cannot be a position.
            raise _validation_error(f"value {token.text} is out of range")
        return int(token.text)

    def literal(self) -> str:
        token = self.next()
        if token.kind in ("string", "number"):
            return token.text
        if token.kind == "word" and token.text.lower() in ("true", "false"):
            return token.text.lower()
        raise self.unexpected(token, "<STRING> | <NUMBER>")

    def parse(self) -> Query:
        self.keyword("SELECT")
        count = False
        fields: list[str] = []
        if self.is_keyword("COUNT"):
            self.next()
            for expected in ("(", "*", ")"):
                token = self.next()
                if token.text != expected:
                    raise self.unexpected(token, f'"{expected}"')
            count = True
        elif self.peek().text == "*":
            self.next()
        else:
            fields.append(self.name())
            while self.peek().text == ",":
                self.next()
                fields.append(self.name())
        self.keyword("FROM")
        entity = self.name()
        where: list[Condition] = []
        if self.is_keyword("WHERE"):
            self.next()
            where.append(self.condition())
            while self.is_keyword("AND", "OR"):
                token = self.next()
                if token.upper == "OR":
                    raise self.unexpected(token, '"AND"')
                where.append(self.condition())
        order: list[tuple[str, bool]] = []
        if self.is_keyword("ORDERBY", "ORDER"):
            if self.next().upper == "ORDER":
                self.keyword("BY")
            while True:
                name = self.name()
                descending = False
                if self.is_keyword("ASC", "DESC"):
                    descending = self.next().upper == "DESC"
                order.append((name, descending))
                if self.peek().text != ",":
                    break
                self.next()
        start, max_results, explicit_max = 1, DEFAULT_MAX_RESULTS, False
        while self.is_keyword("STARTPOSITION", "MAXRESULTS"):
            if self.next().upper == "STARTPOSITION":
                start = self.integer()
            else:
                max_results, explicit_max = self.integer(), True
        end = self.next()
        if end.kind != "end":
            raise self.unexpected(end, '"STARTPOSITION" | "MAXRESULTS" | <EOF>')
        return Query(
            entity=entity,
            count=count,
            fields=tuple(fields),
            where=tuple(where),
            order=tuple(order),
            start_position=max(1, start),
            max_results=max_results,
            explicit_max=explicit_max,
        )

    def condition(self) -> Condition:
        if self.is_keyword("NOT"):
            raise self.unexpected(self.next(), "<ID>")
        name = self.name()
        token = self.next()
        if token.kind == "op":
            return Condition(name, token.text, (self.literal(),))
        if token.kind == "keyword" and token.upper == "LIKE":
            return Condition(name, "LIKE", (self.literal(),))
        if token.kind == "keyword" and token.upper == "IN":
            opening = self.next()
            if opening.text != "(":
                raise self.unexpected(opening, '"("')
            values = [self.literal()]
            while self.peek().text == ",":
                self.next()
                values.append(self.literal())
            closing = self.next()
            if closing.text != ")":
                raise self.unexpected(closing, '")"')
            return Condition(name, "IN", tuple(values))
        raise self.unexpected(token, '"=" | "<" | ">" | "<=" | ">=" | "IN" | "LIKE"')


def parse_query(text: str, *, max_allowed: int = 1000) -> Query:
    """Parse one query; raise QueryError (4000 syntax, 4001 validation) as QBO would."""
    if not text or not text.strip():
        raise _parse_error('Encountered "<EOF>" at line 1, column 1.')
    query = _Parser(text.strip()).parse()
    if query.max_results > max_allowed:
        raise _validation_error(
            f"value {query.max_results} is too large. Max allowed value is {max_allowed}"
        )
    if query.max_results < 1:
        raise _validation_error(f"value {query.max_results} is too small. Min allowed value is 1")
    return query


# -- evaluation --------------------------------------------------------------------------------

#: Reads a (dotted) field of a row; raises KeyError for a field the entity does not have.
Getter = Callable[[T, str], Any]


def _parse_datetime(text: str, tz: tzinfo) -> datetime:
    raw = text.strip().replace("Z", "+00:00")
    try:
        if len(raw) == 10:
            moment = datetime.combine(date.fromisoformat(raw), datetime.min.time())
        else:
            moment = datetime.fromisoformat(raw)
        if moment.tzinfo is None:
            # QBO reads a time without an offset in the company's own time zone.
            moment = moment.replace(tzinfo=tz)
        return moment.astimezone(UTC)
    except (ValueError, OverflowError) as err:
        raise _validation_error(f"invalid date time value '{text}'") from err


def coerce(literal: str, sample: Any, tz: tzinfo) -> Any:
    """The literal as the type of the field it is compared with."""
    try:
        if isinstance(sample, bool):
            if literal.lower() not in ("true", "false"):
                raise ValueError(literal)
            return literal.lower() == "true"
        if isinstance(sample, Decimal):
            return Decimal(literal)
        if isinstance(sample, int):
            return int(literal)
        if isinstance(sample, datetime):
            return _parse_datetime(literal, tz)
        if isinstance(sample, date):
            return date.fromisoformat(literal[:10])
    except (ValueError, InvalidOperation) as err:
        raise _validation_error(f"invalid value '{literal}' for comparison") from err
    return literal


def _like(pattern: str) -> re.Pattern[str]:
    parts = [re.escape(p) for p in pattern.split("%")]
    return re.compile(".*".join(parts), re.IGNORECASE | re.DOTALL)


class _Compiled:
    """One condition with its literals coerced lazily to the field's type."""

    def __init__(self, cond: Condition, tz: tzinfo) -> None:
        self.cond = cond
        self.tz = tz
        self._cache: dict[type, list[Any]] = {}
        self.pattern = _like(cond.values[0]) if cond.op == "LIKE" else None

    def values_for(self, sample: Any) -> list[Any]:
        kind = type(sample)
        got = self._cache.get(kind)
        if got is None:
            got = [coerce(v, sample, self.tz) for v in self.cond.values]
            self._cache[kind] = got
        return got

    def test_one(self, value: Any) -> bool:
        if value is None:
            return False
        op = self.cond.op
        if op == "LIKE":
            assert self.pattern is not None
            return isinstance(value, str) and self.pattern.fullmatch(value) is not None
        wanted = self.values_for(value)
        if isinstance(value, str) and not isinstance(wanted[0], str):
            return False
        if op == "IN":
            if isinstance(value, str):
                return value.lower() in {str(w).lower() for w in wanted}
            return value in wanted
        other = wanted[0]
        if isinstance(value, str):
            # QBO compares strings without regard to case (e.g. EntityRef.Type = 'invoice').
            value, other = value.lower(), str(other).lower()
        try:
            if op == "=":
                return bool(value == other)
            if op == "!=":
                return bool(value != other)
            if op == "<":
                return bool(value < other)
            if op == ">":
                return bool(value > other)
            if op == "<=":
                return bool(value <= other)
            return bool(value >= other)
        except TypeError:
            return False

    def test(self, value: Any) -> bool:
        if isinstance(value, list):  # a field with several values (AttachableRef): any matches
            return any(self.test_one(v) for v in value)
        return self.test_one(value)


def _check_fields(names: Iterable[str], probe: Callable[[str], None]) -> None:
    for name in names:
        try:
            probe(name)
        except KeyError as err:
            raise _validation_error(f"property '{name}' is not queryable") from err


def select(
    query: Query,
    rows: Sequence[T],
    getter: Getter[T],
    tz: tzinfo = UTC,
    *,
    probe: Callable[[str], None] | None = None,
) -> list[T]:
    """All rows that satisfy the WHERE clause, in ORDERBY order (or the given order)."""
    if probe is not None:
        _check_fields([c.field for c in query.where] + [f for f, _ in query.order], probe)
    compiled = [_Compiled(c, tz) for c in query.where]
    result: list[T] = []
    for row in rows:
        for comp in compiled:
            try:
                value = getter(row, comp.cond.field)
            except KeyError as err:
                raise _validation_error(f"property '{comp.cond.field}' is not queryable") from err
            if not comp.test(value):
                break
        else:
            result.append(row)
    for name, descending in reversed(query.order):
        # Stable sorts applied from the last key to the first give a multi-key order.
        result.sort(key=_key_for(getter, name), reverse=descending)
    return result


def _key_for(getter: Getter[T], name: str) -> Callable[[T], tuple[int, Any]]:
    def key(row: T) -> tuple[int, Any]:
        return _sort_key(getter(row, name))

    return key


def _sort_key(value: Any) -> tuple[int, Any]:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, str):
        return (1, value.lower())
    return (0, 0) if value is None else (1, value)


def page(query: Query, rows: Sequence[T]) -> Sequence[T]:
    start = query.start_position - 1
    return rows[start : start + query.max_results]
