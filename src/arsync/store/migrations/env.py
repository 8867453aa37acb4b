"""Alembic environment: arsync runs migrations itself, on the connection it hands over."""

from __future__ import annotations

from alembic import context

from arsync.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only `arsync` itself runs these migrations
    raise RuntimeError("arsync's migrations run from arsync.store.engine.migrate(), not the CLI")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
