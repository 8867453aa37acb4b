"""Store URLs, read without opening anything: what the configuration checks and resolves."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def url_problem(value: str) -> str | None:
    """What is wrong with a store URL, or None when arsync can use it."""
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return (
            'must be a database URL like "sqlite:///state/arsync.db" or '
            '"postgresql+psycopg://user@host/db"'
        )
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        return "must be a SQLite or PostgreSQL URL"
    if url.get_backend_name() == "postgresql" and not url.database:
        return "must name the database (…/dbname)"
    return None


def absolute_url(value: str, home: Path) -> str:
    """The URL with a relative SQLite path made absolute against `home`."""
    url = make_url(value)
    database = url.database
    if (
        url.get_backend_name() != "sqlite"
        or not database
        or database == ":memory:"
        or database.startswith("file:")
        or Path(database).is_absolute()
    ):
        return value
    return url.set(database=str(home / database)).render_as_string(hide_password=False)
