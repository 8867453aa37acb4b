"""Xero's `where` filter expressions: a pure parser and a compiler to Python predicates.

The subset Xero documents and integrations use:

    Type=="ACCREC" AND Status=="AUTHORISED" && AmountDue>0
    Contact.ContactID==guid("…") OR Date>=DateTime(2026,01,01)
    Name.Contains("Ltd") || NOT (IsCustomer==true)

Comparisons `== = != <> > >= < <=` between a field path and a literal (string, number, true, false,
null, guid("…"), DateTime(y,m,d[,h,mi,s])); string methods Contains / StartsWith / EndsWith;
AND / && , OR / || (AND binds tighter), NOT / !, and parentheses. Field names are
case-insensitive, as on Xero; string comparisons too (Xero filters run in its database).

Expressions nest at most MAX_DEPTH deep (parentheses and NOT) and hold at most MAX_TERMS
comparisons, so a hostile filter is a WhereError (Xero's 400), never a stack overflow.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]

#: deepest nesting of parentheses and NOT the parser accepts
MAX_DEPTH = 64
#: most comparisons one expression may hold
MAX_TERMS = 500


class WhereError(ValueError):
    """The expression cannot be parsed or names an unknown field (Xero: QueryParseException)."""


# -- syntax tree ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Compare:
    path: str
    op: str  # == != > >= < <=
    value: Any


@dataclass(frozen=True)
class Method:
    path: str
    name: str  # contains | startswith | endswith
    value: str


@dataclass(frozen=True)
class And:
    left: Node
    right: Node


@dataclass(frozen=True)
class Or:
    left: Node
    right: Node


@dataclass(frozen=True)
class Not:
    inner: Node


Node = Compare | Method | And | Or | Not

# -- tokens ---------------------------------------------------------------------------------------
_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*")
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op>==|!=|<>|>=|<=|&&|\|\||>|<|!|=)
  | (?P<punct>[().,])
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class _Tok:
    kind: str
    text: str
    pos: int


def tokenize(text: str) -> list[_Tok]:
    tokens: list[_Tok] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise WhereError(f"unexpected character {text[pos]!r} at position {pos}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Tok(kind, match.group(), pos))
        pos = match.end()
    return tokens


# -- parser ---------------------------------------------------------------------------------------
_METHODS = {"contains", "startswith", "endswith"}


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize(text)
        self.i = 0
        self.depth = 0
        self.terms = 0

    def peek(self) -> _Tok | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> _Tok:
        tok = self.peek()
        if tok is None:
            raise WhereError("unexpected end of the expression")
        self.i += 1
        return tok

    def expect(self, text: str) -> None:
        tok = self.take()
        if tok.text != text:
            raise WhereError(f"expected {text!r} at position {tok.pos}, found {tok.text!r}")

    def at_word(self, *words: str) -> bool:
        tok = self.peek()
        return tok is not None and (tok.text in words or tok.text.upper() in words)

    def parse(self) -> Node:
        if not self.tokens:
            raise WhereError("the expression is empty")
        node = self.parse_or()
        tok = self.peek()
        if tok is not None:
            raise WhereError(f"unexpected {tok.text!r} at position {tok.pos}")
        return node

    def parse_or(self) -> Node:
        node = self.parse_and()
        while self.at_word("OR", "||"):
            self.take()
            node = Or(node, self.parse_and())
        return node

    def parse_and(self) -> Node:
        node = self.parse_unary()
        while self.at_word("AND", "&&"):
            self.take()
            node = And(node, self.parse_unary())
        return node

    def parse_unary(self) -> Node:
        tok = self.peek()
        if self.at_word("NOT", "!") or (tok is not None and tok.text == "("):
            self.depth += 1
            if self.depth > MAX_DEPTH:
                raise WhereError(f"the expression nests deeper than {MAX_DEPTH} levels")
            try:
                if self.take().text == "(":
                    node = self.parse_or()
                    self.expect(")")
                    return node
                return Not(self.parse_unary())
            finally:
                self.depth -= 1
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise WhereError(f"the expression has more than {MAX_TERMS} conditions")
        return self.parse_comparison()

    def parse_path(self) -> tuple[list[str], str | None]:
        """A dotted field path; a trailing string method is split off and returned."""
        tok = self.take()
        if tok.kind != "ident":
            raise WhereError(f"expected a field name at position {tok.pos}, found {tok.text!r}")
        parts = [tok.text]
        while (nxt := self.peek()) is not None and nxt.text == ".":
            self.take()
            name = self.take()
            if name.kind != "ident":
                raise WhereError(f"expected a name after '.' at position {name.pos}")
            after = self.peek()
            if name.text.lower() in _METHODS and after is not None and after.text == "(":
                return parts, name.text.lower()
            parts.append(name.text)
        return parts, None

    def parse_comparison(self) -> Node:
        parts, method = self.parse_path()
        path = ".".join(parts)
        if method is not None:
            self.expect("(")
            value = self.parse_value()
            self.expect(")")
            if not isinstance(value, str):
                raise WhereError(f"{method} takes a string")
            return Method(path, method, value)
        tok = self.take()
        if tok.kind != "op" or tok.text in ("&&", "||", "!"):
            raise WhereError(f"expected a comparison after {path} at position {tok.pos}")
        op = {"=": "==", "<>": "!="}.get(tok.text, tok.text)
        return Compare(path, op, self.parse_value())

    def parse_value(self) -> Any:
        tok = self.take()
        if tok.kind == "string":
            return _unquote(tok.text)
        if tok.kind == "number":
            return Decimal(tok.text)
        if tok.kind != "ident":
            raise WhereError(f"expected a value at position {tok.pos}, found {tok.text!r}")
        word = tok.text.lower()
        if word in ("true", "false"):
            return word == "true"
        if word == "null":
            return None
        if word == "guid":
            self.expect("(")
            raw = self.take()
            self.expect(")")
            if raw.kind != "string":
                raise WhereError("guid() takes a quoted GUID")
            try:
                return uuid.UUID(_unquote(raw.text))
            except ValueError as err:
                raise WhereError(f"not a GUID: {raw.text}") from err
        if word == "datetime":
            self.expect("(")
            numbers: list[int] = []
            while True:
                part = self.take()
                if part.kind != "number" or "." in part.text:
                    raise WhereError(f"DateTime() takes whole numbers, found {part.text!r}")
                numbers.append(int(part.text))
                sep = self.take()
                if sep.text == ")":
                    break
                if sep.text != ",":
                    raise WhereError(f"expected ',' or ')' at position {sep.pos}")
            if not 3 <= len(numbers) <= 6:
                raise WhereError("DateTime() takes year, month, day[, hour, minute, second]")
            year, month, day, hour, minute, second = [*numbers, 0, 0, 0][:6]
            try:
                return datetime(year, month, day, hour, minute, second, tzinfo=UTC)
            except (ValueError, OverflowError) as err:
                raise WhereError(f"not a date: {err}") from err
        raise WhereError(f"unknown value {tok.text!r} at position {tok.pos}")


def _unquote(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text[1:-1])


def parse(text: str) -> Node:
    """Parse a where expression into a tree; WhereError on bad syntax."""
    return _Parser(text).parse()


# -- evaluation -----------------------------------------------------------------------------------
def _normalise(value: Any) -> Any:
    """One comparable form per type: dates become UTC datetimes, GUIDs and text lower-case."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, int | float):
        return Decimal(str(value))
    if isinstance(value, str):
        return value.lower()
    return value


def _coerce_literal(literal: Any, sample_is_date: bool) -> Any:
    """A string literal compared with a date field is read as an ISO date, as Xero does."""
    if sample_is_date and isinstance(literal, str):
        try:
            return _normalise(datetime.fromisoformat(literal))
        except ValueError as err:
            raise WhereError(f"not a date: {literal!r}") from err
    return _normalise(literal)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": lambda a, b: bool(a == b),
    "!=": lambda a, b: bool(a != b),
    ">": lambda a, b: bool(a > b),
    ">=": lambda a, b: bool(a >= b),
    "<": lambda a, b: bool(a < b),
    "<=": lambda a, b: bool(a <= b),
}


def compile_where(
    node: Node, fields: Mapping[str, Getter], date_fields: frozenset[str] = frozenset()
) -> Predicate:
    """A predicate over records, reading fields through `fields` (lower-case dotted paths)."""

    def getter(path: str) -> Getter:
        try:
            return fields[path.lower()]
        except KeyError:
            raise WhereError(f"unknown field {path!r}") from None

    if isinstance(node, And | Or):
        # A chain `a AND b AND c …` is one flat list, so neither compiling nor evaluating it
        # recurses once per condition.
        parts = [compile_where(n, fields, date_fields) for n in _chain(node, type(node))]
        if isinstance(node, And):
            return lambda rec: all(p(rec) for p in parts)
        return lambda rec: any(p(rec) for p in parts)
    if isinstance(node, Not):
        inner = compile_where(node.inner, fields, date_fields)
        return lambda rec: not inner(rec)
    if isinstance(node, Method):
        get = getter(node.path)
        needle = node.value.lower()
        test: Callable[[str], bool] = {
            "contains": lambda s: needle in s,
            "startswith": lambda s: s.startswith(needle),
            "endswith": lambda s: s.endswith(needle),
        }[node.name]

        def method(rec: Any) -> bool:
            value = get(rec)
            return isinstance(value, str) and test(value.lower())

        return method
    get = getter(node.path)
    literal = _coerce_literal(node.value, node.path.lower() in date_fields)
    compare = _OPS[node.op]
    op = node.op

    def comparison(rec: Any) -> bool:
        value = _normalise(get(rec))
        if value is None or literal is None:
            # null only equals null; an ordering against null matches nothing
            return compare(value, literal) if op in ("==", "!=") else False
        try:
            return compare(value, literal)
        except TypeError:
            # comparing unlike types (e.g. a number with text) matches nothing
            return op == "!="

    return comparison


def _chain(node: Node, kind: type[And] | type[Or]) -> list[Node]:
    """The operands of a run of one connective, left to right, without recursion."""
    out: list[Node] = []
    stack: list[Node] = [node]
    while stack:
        current = stack.pop()
        if isinstance(current, kind):
            stack.append(current.right)
            stack.append(current.left)
        else:
            out.append(current)
    return out


def where_predicate(
    text: str, fields: Mapping[str, Getter], date_fields: frozenset[str] = frozenset()
) -> Predicate:
    """Parse and compile in one step."""
    return compile_where(parse(text), fields, date_fields)


def fields_of(node: Node) -> set[str]:
    """Every field path the expression reads (lower-case)."""
    if isinstance(node, And | Or):
        return set().union(*(fields_of(n) for n in _chain(node, type(node))))
    if isinstance(node, Not):
        return fields_of(node.inner)
    return {node.path.lower()}


__all__ = [
    "And",
    "Compare",
    "Method",
    "Node",
    "Not",
    "Or",
    "WhereError",
    "compile_where",
    "fields_of",
    "parse",
    "tokenize",
    "where_predicate",
]
