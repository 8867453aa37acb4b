"""sync runs: indexes for the daemon's bookkeeping at millions of runs

Revision ID: 0006_sync_runs_indexes
Revises: 0005_digests
Create Date: 2026-12-02 16:20:00

A thousand connectors at a 15-minute interval write 96,000 runs a day. Marking a killed run
(`begin`) looks a connector's runs up by outcome; the schedule reads each connector's last good
full pass; housekeeping deletes by age. Without these each was a scan of the whole table.
"""

from __future__ import annotations

from alembic import op

revision = "0006_sync_runs_indexes"
down_revision = "0005_digests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_sync_runs_outcome", "sync_runs", ["connector_id", "outcome"])
    op.create_index(
        "ix_sync_runs_full", "sync_runs", ["connector_id", "full", "outcome", "started_at"]
    )
    op.create_index("ix_sync_runs_finished", "sync_runs", ["finished_at"])


def downgrade() -> None:
    op.drop_index("ix_sync_runs_finished", table_name="sync_runs")
    op.drop_index("ix_sync_runs_full", table_name="sync_runs")
    op.drop_index("ix_sync_runs_outcome", table_name="sync_runs")
