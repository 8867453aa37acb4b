"""arsync: collect what small firms are owed, from QuickBooks Online and Xero."""

from pathlib import Path

__version__ = "0.1.0"


def alembic_dir() -> Path:
    """Where the store's migrations live inside the installed package."""
    return Path(__file__).parent / "store" / "migrations"
