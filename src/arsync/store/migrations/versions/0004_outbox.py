"""the outbox of actions and the channels parked for a while

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 13:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import arsync.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# The states as they were when this revision was written: a later enum must not rewrite history.
_STATES = (
    "planned",
    "awaiting_approval",
    "ready",
    "claimed",
    "done",
    "skipped",
    "retrying",
    "unknown",
    "needs_person",
    "dead",
)


def _fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["connector_id"],
        ["connectors.id"],
        name=op.f(f"fk_{table}_connector_id_connectors"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    moment = arsync.store.types.UtcDateTime(timezone=True)
    op.create_table(
        "outbox",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("subject", sa.String(length=100), nullable=False),
        sa.Column("customer_id", sa.String(length=64), nullable=False),
        sa.Column("invoice_id", sa.String(length=64), nullable=True),
        sa.Column("stage", sa.String(length=40), nullable=False),
        sa.Column("stage_title", sa.String(length=100), nullable=False),
        sa.Column("tone", sa.String(length=10), nullable=False),
        sa.Column("amount", arsync.store.types.Amount(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=True),
        sa.Column("at", moment, nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("approval", sa.Text(), nullable=True),
        sa.Column("decided_by", sa.String(length=200), nullable=True),
        sa.Column("decided_at", moment, nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", moment, nullable=True),
        sa.Column("lease_owner", sa.String(length=100), nullable=True),
        sa.Column("lease_until", moment, nullable=True),
        sa.Column("sent_at", moment, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reason_code", sa.String(length=30), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("created_at", moment, nullable=False),
        sa.Column("updated_at", moment, nullable=False),
        sa.Column("done_at", moment, nullable=True),
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in _STATES) + ")",
            name=op.f("ck_outbox_state"),
        ),
        sa.CheckConstraint("attempts >= 0", name=op.f("ck_outbox_attempts")),
        _fk("outbox"),
        sa.PrimaryKeyConstraint("connector_id", "id", name=op.f("pk_outbox")),
    )
    op.create_index("ix_outbox_state", "outbox", ["connector_id", "state", "next_at"])
    op.create_index("ix_outbox_subject", "outbox", ["connector_id", "subject"])
    op.create_index("ix_outbox_customer", "outbox", ["connector_id", "customer_id"])
    op.create_table(
        "channel_parks",
        sa.Column("connector_id", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("until", moment, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("set_at", moment, nullable=False),
        _fk("channel_parks"),
        sa.PrimaryKeyConstraint("connector_id", "channel", name=op.f("pk_channel_parks")),
    )


def downgrade() -> None:
    op.drop_table("channel_parks")
    op.drop_index("ix_outbox_customer", table_name="outbox")
    op.drop_index("ix_outbox_subject", table_name="outbox")
    op.drop_index("ix_outbox_state", table_name="outbox")
    op.drop_table("outbox")
