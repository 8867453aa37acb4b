"""the ledger's labels, billing country and notes on customers, Expected Date on invoices,
what holds and plans count payments from, per-customer settings

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02 10:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import arsync.store.types

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("country", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("region", sa.String(length=100), nullable=True))
        # existing customers have no labels until their next sync says otherwise
        batch.add_column(sa.Column("tags", sa.JSON(), nullable=False, server_default="[]"))
        batch.add_column(sa.Column("notes", sa.Text(), nullable=True))
    with op.batch_alter_table("customers") as batch:
        batch.alter_column("tags", server_default=None)
    with op.batch_alter_table("invoices") as batch:
        batch.add_column(sa.Column("expected_date", sa.Date(), nullable=True))
    with op.batch_alter_table("holds") as batch:
        batch.add_column(sa.Column("basis", arsync.store.types.Amount(), nullable=True))
    with op.batch_alter_table("payment_plans") as batch:
        batch.add_column(sa.Column("basis", arsync.store.types.Amount(), nullable=True))
    op.create_table(
        "customer_settings",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_customer_settings_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "connector_id", "customer_id", "key", name=op.f("pk_customer_settings")
        ),
    )


def downgrade() -> None:
    op.drop_table("customer_settings")
    with op.batch_alter_table("payment_plans") as batch:
        batch.drop_column("basis")
    with op.batch_alter_table("holds") as batch:
        batch.drop_column("basis")
    with op.batch_alter_table("invoices") as batch:
        batch.drop_column("expected_date")
    with op.batch_alter_table("customers") as batch:
        for column in ("notes", "tags", "region", "country"):
            batch.drop_column(column)
