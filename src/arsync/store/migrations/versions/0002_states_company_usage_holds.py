"""states CHECKed, the company's own facts, API usage per minute, holds and payment plans

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02 09:00:00
"""

from __future__ import annotations

from enum import StrEnum

import sqlalchemy as sa
from alembic import op

import arsync.store.types
from arsync.domain import DocStatus, InvoiceStatus
from arsync.store.states import (
    ConnectorState,
    Entity,
    HoldKind,
    HoldSource,
    HoldState,
    PlanState,
    RunOutcome,
)

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _in(column: str, states: type[StrEnum]) -> str:
    return f"{column} IN ({', '.join(repr(s.value) for s in states)})"


def upgrade() -> None:
    # SQLite cannot add a CHECK to a table in place: batch mode copies each table into a new
    # one with the constraint (existing rows are checked on the way; the old code only ever
    # wrote these values).
    with op.batch_alter_table("connectors") as batch:
        batch.add_column(sa.Column("country", sa.String(length=2), nullable=True))
        batch.add_column(sa.Column("region", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("platform_timezone", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("edition", sa.String(length=40), nullable=True))
        batch.create_check_constraint(op.f("ck_connectors_status"), _in("status", ConnectorState))
    for table, states in (
        ("invoices", InvoiceStatus),
        ("payments", DocStatus),
        ("credits", DocStatus),
    ):
        with op.batch_alter_table(table) as batch:
            batch.create_check_constraint(op.f(f"ck_{table}_status"), _in("status", states))
    with op.batch_alter_table("sync_runs") as batch:
        batch.create_check_constraint(op.f("ck_sync_runs_outcome"), _in("outcome", RunOutcome))
        batch.create_index("ix_sync_runs_connector", ["connector_id", "id"], unique=False)
    with op.batch_alter_table("events") as batch:
        batch.create_check_constraint(op.f("ck_events_entity"), _in("entity", Entity))

    op.create_table(
        "api_usage",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("minute", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_api_usage_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("connector_id", "minute", name=op.f("pk_api_usage")),
    )
    op.create_table(
        "holds",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("until", sa.Date(), nullable=True),
        sa.Column("amount", arsync.store.types.Amount(), nullable=True),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.Column("ended_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("kind", HoldKind), name=op.f("ck_holds_kind")),
        sa.CheckConstraint(_in("state", HoldState), name=op.f("ck_holds_state")),
        sa.CheckConstraint(_in("source", HoldSource), name=op.f("ck_holds_source")),
        sa.CheckConstraint(
            "customer_id IS NOT NULL OR invoice_id IS NOT NULL", name=op.f("ck_holds_target")
        ),
        sa.CheckConstraint(
            "amount IS NULL OR currency IS NOT NULL", name=op.f("ck_holds_currency")
        ),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_holds_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holds")),
    )
    op.create_index("ix_holds_active", "holds", ["connector_id", "state"], unique=False)
    op.create_table(
        "payment_plans",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_ids", sa.JSON(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("missed_allowed", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("set_at", arsync.store.types.UtcDateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.Column("ended_at", arsync.store.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column("end_reason", sa.Text(), nullable=True),
        sa.CheckConstraint(_in("state", PlanState), name=op.f("ck_payment_plans_state")),
        sa.CheckConstraint(_in("source", HoldSource), name=op.f("ck_payment_plans_source")),
        sa.CheckConstraint("missed_allowed >= 0", name=op.f("ck_payment_plans_missed_allowed")),
        sa.ForeignKeyConstraint(
            ["connector_id"],
            ["connectors.id"],
            name=op.f("fk_payment_plans_connector_id_connectors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_plans")),
    )
    op.create_index(
        "ix_payment_plans_active", "payment_plans", ["connector_id", "state"], unique=False
    )
    op.create_table(
        "plan_instalments",
        sa.Column("plan_id", sa.Integer(), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("due", sa.Date(), nullable=False),
        sa.Column("amount", arsync.store.types.Amount(), nullable=False),
        sa.CheckConstraint("amount > 0", name=op.f("ck_plan_instalments_amount")),
        sa.ForeignKeyConstraint(
            ["plan_id"],
            ["payment_plans.id"],
            name=op.f("fk_plan_instalments_plan_id_payment_plans"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("plan_id", "seq", name=op.f("pk_plan_instalments")),
    )


def downgrade() -> None:
    op.drop_table("plan_instalments")
    op.drop_index("ix_payment_plans_active", table_name="payment_plans")
    op.drop_table("payment_plans")
    op.drop_index("ix_holds_active", table_name="holds")
    op.drop_table("holds")
    op.drop_table("api_usage")
    with op.batch_alter_table("events") as batch:
        batch.drop_constraint(op.f("ck_events_entity"), type_="check")
    with op.batch_alter_table("sync_runs") as batch:
        batch.drop_index("ix_sync_runs_connector")
        batch.drop_constraint(op.f("ck_sync_runs_outcome"), type_="check")
    for table in ("credits", "payments", "invoices"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_status"), type_="check")
    with op.batch_alter_table("connectors") as batch:
        batch.drop_constraint(op.f("ck_connectors_status"), type_="check")
        for column in ("edition", "platform_timezone", "region", "country"):
            batch.drop_column(column)
