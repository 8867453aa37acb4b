"""The local state store: SQLAlchemy 2 tables, Alembic migrations, SQLite or PostgreSQL."""

from __future__ import annotations

from arsync.store.engine import open_engine
from arsync.store.locks import Busy
from arsync.store.repo import PageOutcome, Store


def open_store(url: str) -> Store:
    """The store at `url`, migrated to this arsync's schema."""
    return Store(open_engine(url))


__all__ = ["Busy", "PageOutcome", "Store", "open_store"]
