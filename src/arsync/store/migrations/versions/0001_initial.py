"""initial schema: connectors, tokens, records, cursors, sync runs, events, quarantine

Revision ID: 0001
Revises: (none)
Create Date: 2026-11-23 10:44:47.981588
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import arsync.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "connectors",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("platform", sa.String(length=10), nullable=False),
        sa.Column("tenant_id", sa.String(length=64), nullable=True),
        sa.Column("company_name", sa.String(length=255), nullable=True),
        sa.Column("base_currency", sa.String(length=3), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("status_reason", sa.Text(), nullable=True),
        sa.Column("parked_until", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("parked_reason", sa.Text(), nullable=True),
        sa.Column("created_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("last_sync_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_sync_ok_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_connectors")),
        sa.UniqueConstraint("name", name=op.f("uq_connectors_name")),
    )
    op.create_table(
        "credits",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=100), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", arsync.store.types.Amount(), nullable=False),
        sa.Column("remaining", arsync.store.types.Amount(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("allocations", sa.JSON(), nullable=False),
        sa.Column("updated_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("seen_pass", sa.String(length=40), nullable=True),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_credits_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connector_id", "external_id", name=op.f("pk_credits")),
    )
    op.create_table(
        "cursors",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("updated_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_cursors_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connector_id", name=op.f("pk_cursors")),
    )
    op.create_table(
        "customers",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("email", sa.String(length=500), nullable=True),
        sa.Column("phone", sa.String(length=100), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("seen_pass", sa.String(length=40), nullable=True),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_customers_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connector_id", "external_id", name=op.f("pk_customers")),
    )
    op.create_table(
        "events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.Column("at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=30), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_events_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.create_index(
            "ix_events_record", ["connector_id", "entity", "external_id"], unique=False
        )

    op.create_table(
        "invoices",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=100), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("issue_date", sa.Date(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("total", arsync.store.types.Amount(), nullable=False),
        sa.Column("balance", arsync.store.types.Amount(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("sent", sa.Boolean(), nullable=False),
        sa.Column("updated_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("seen_pass", sa.String(length=40), nullable=True),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_invoices_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connector_id", "external_id", name=op.f("pk_invoices")),
    )
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.create_index(
            "ix_invoices_open", ["connector_id", "status", "deleted"], unique=False
        )

    op.create_table(
        "payments",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("date", sa.Date(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("amount", arsync.store.types.Amount(), nullable=False),
        sa.Column("unapplied", arsync.store.types.Amount(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("allocations", sa.JSON(), nullable=False),
        sa.Column("updated_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("deleted_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("seen_pass", sa.String(length=40), nullable=True),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_payments_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connector_id", "external_id", name=op.f("pk_payments")),
    )
    op.create_table(
        "quarantine",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("sync_id", sa.Integer(), nullable=True),
        sa.Column("at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("entity", sa.String(length=20), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("resolved", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_quarantine_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_quarantine")),
    )
    op.create_table(
        "sync_runs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("started_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("finished_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("full", sa.Boolean(), nullable=False),
        sa.Column("pages", sa.Integer(), nullable=False),
        sa.Column("changed", sa.Integer(), nullable=False),
        sa.Column("api_calls", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_sync_runs_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sync_runs")),
    )
    op.create_table(
        "tokens",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("access_token", sa.LargeBinary(), nullable=False),
        sa.Column("refresh_token", sa.LargeBinary(), nullable=False),
        sa.Column(
            "access_expires_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.Column(
            "refresh_expires_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("refreshed_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("connected_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("scope", sa.Text(), nullable=True),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_tokens_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connector_id", name=op.f("pk_tokens")),
    )


def downgrade() -> None:
    op.drop_table("tokens")
    op.drop_table("sync_runs")
    op.drop_table("quarantine")
    op.drop_table("payments")
    with op.batch_alter_table("invoices", schema=None) as batch_op:
        batch_op.drop_index("ix_invoices_open")

    op.drop_table("invoices")
    with op.batch_alter_table("events", schema=None) as batch_op:
        batch_op.drop_index("ix_events_record")

    op.drop_table("events")
    op.drop_table("customers")
    op.drop_table("cursors")
    op.drop_table("credits")
    op.drop_table("connectors")
