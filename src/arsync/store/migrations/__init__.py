"""Alembic migrations of the store (applied by arsync at start)."""
