"""Configuration problems: each with its file and dotted key, in sentences a person reads.

Pydantic's validation errors are turned into `Problem`s ("connectors/acme.toml: sync.interval:
must be at least 60 seconds, got 10"), with did-you-mean for unknown keys; secrets are never
echoed back.
"""

from __future__ import annotations

import difflib
import json
import re
import types
import typing
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails, PydanticCustomError

from arsync.errors import ConfigError

_CROSS = "arsync_cross"

#: a problem found by code rather than by a field's type: its key, what is wrong, the value given
Located = tuple[tuple[int | str, ...], str, object]

#: "no value to show" (a missing key)
NOTHING = object()


def cross(*problems: Located) -> PydanticCustomError:
    """Problems between keys, each with its own key (relative to the model) and value."""
    summary = "; ".join(f"{_key(loc)}: {message}" for loc, message, _ in problems)
    return PydanticCustomError(_CROSS, "{summary}", {"summary": summary, "problems": problems})


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the configuration."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        if self.key:
            return f"{self.file}: {self.key}: {self.message}"
        return f"{self.file}: {self.message}"


class InvalidConfig(ConfigError):
    """Every problem found in the configuration, one line each."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


# --- turning pydantic's errors into sentences ------------------------------------------------

_TYPE_MESSAGES = {
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
    "bool_type": "must be true or false",
    "bool_parsing": "must be true or false",
    "string_type": "must be text in quotes",
    "list_type": 'must be a list, like ["a", "b"]',
    "model_type": "must be a table",
    "model_attributes_type": "must be a table",
    "dict_type": "must be a table",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "missing": "is required",
}


def translate(
    err: ValidationError, file: str, model: type[BaseModel], *, cross: bool = True
) -> list[Problem]:
    problems: list[Problem] = []
    for detail in err.errors(include_url=False):
        loc = tuple(detail["loc"])
        if detail["type"] == _CROSS:
            if not cross:
                continue
            for rel, message, value in detail.get("ctx", {})["problems"]:
                problems.append(problem(file, loc + tuple(rel), message, value))
        elif detail["type"] == "extra_forbidden":
            problems.append(problem(file, loc, _unknown_key(model, loc), NOTHING))
        elif detail["type"] == "missing":
            problems.append(problem(file, loc, "is required", NOTHING))
        else:
            problems.append(problem(file, loc, _sentence(detail), detail.get("input", NOTHING)))
    return problems


def _sentence(detail: ErrorDetails) -> str:
    kind, ctx = detail["type"], detail.get("ctx") or {}
    if kind == "enum":
        return "must be " + str(ctx.get("expected", "")).replace("'", '"')
    if kind == "literal_error":
        return "must be " + str(ctx.get("expected", "")).replace("'", '"')
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        words = {
            "greater_than_equal": ("at least", "ge"),
            "less_than_equal": ("at most", "le"),
            "greater_than": ("more than", "gt"),
            "less_than": ("less than", "lt"),
        }[kind]
        return f"must be {words[0]} {ctx.get(words[1])}"
    if kind in _TYPE_MESSAGES:
        return _TYPE_MESSAGES[kind]
    message = detail["msg"]
    for noise in ("Value error, ", "Assertion failed, "):
        message = message.removeprefix(noise)
    return message[:1].lower() + message[1:]


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def problem(file: str, loc: tuple[int | str, ...], message: str, value: object) -> Problem:
    if value is not NOTHING and not _is_secret(loc):
        message = f"{message}, got {_show(value)}"
    return Problem(file, _key(loc), message)


def _is_secret(loc: tuple[int | str, ...]) -> bool:
    # Never echo what might be a pasted secret: anything called *secret*, or oauth = "…".
    return any("secret" in str(part) for part in loc) or loc == ("oauth",)


def _show(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, str):
        # A database URL may carry a password; it is not ours to print.
        shown = json.dumps(re.sub(r"://([^:/@]*):[^@/]*@", r"://\1:***@", value))
    else:
        shown = json.dumps(value, default=str)
    return shown if len(shown) <= 80 else shown[:77] + "…"


def _fields(model: type[BaseModel]) -> dict[str, Any]:
    """The keys a table takes (aliases as written in the file) and their annotations."""
    return {
        (info.alias or name): info.annotation
        for name, info in model.model_fields.items()
        if name not in getattr(model, "KEYS_NOT_IN_FILE", frozenset())
    }


def _submodel(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    origin = typing.get_origin(annotation)
    if origin is Annotated or origin is typing.Union or origin is types.UnionType:
        for arg in typing.get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def _unknown_key(model: type[BaseModel], loc: tuple[int | str, ...]) -> str:
    table: type[BaseModel] | None = model
    for part in loc[:-1]:
        table = _submodel(_fields(table).get(str(part))) if table is not None else None
    if table is None:
        return "unknown key"
    key = str(loc[-1])
    known = _fields(table)
    by_lower = {k.lower(): k for k in known}
    close = difflib.get_close_matches(key.lower(), list(by_lower), n=1, cutoff=0.6)
    if close:
        return f'unknown key (did you mean "{by_lower[close[0]]}"?)'
    # A key written outside its table, e.g. `interval = "15m"` above [sync].
    for table_key, annotation in known.items():
        sub = _submodel(annotation)
        if sub is not None and key in _fields(sub):
            return f"unknown key here (it belongs in [{_key((*loc[:-1], table_key))}])"
    # A top-level key written after a [table] header, which TOML then puts in that table.
    if len(loc) > 1 and key in _fields(model) and _submodel(_fields(model)[key]) is None:
        return (
            f"unknown key here ({key} belongs at the top of the file, before the first "
            "[table]: after a header, TOML puts a key in that table)"
        )
    return f"unknown key (known keys: {', '.join(known)})"
