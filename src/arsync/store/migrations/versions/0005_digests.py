"""the firm's daily digest: one row per firm time zone and local day, claimed before it is sent

Revision ID: 0005_digests
Revises: 0004
Create Date: 2026-12-03 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import arsync.store.types

revision = "0005_digests"
down_revision = "0004"
branch_labels = None
depends_on = None

# The states as they were when this revision was written: a later enum must not rewrite history.
_STATES = ("sending", "sent", "failed", "unknown")


def upgrade() -> None:
    moment = arsync.store.types.UtcDateTime(timezone=True)
    op.create_table(
        "digests",
        sa.Column("zone", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("owner", sa.String(length=100), nullable=False),
        sa.Column("claimed_at", moment, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_at", moment, nullable=True),
        sa.Column("sent_at", moment, nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("updated_at", moment, nullable=False),
        sa.CheckConstraint(
            "state IN (" + ", ".join(f"'{s}'" for s in _STATES) + ")",
            name=op.f("ck_digests_state"),
        ),
        sa.CheckConstraint("attempts >= 1", name=op.f("ck_digests_attempts")),
        sa.PrimaryKeyConstraint("zone", "day", name=op.f("pk_digests")),
    )


def downgrade() -> None:
    op.drop_table("digests")
