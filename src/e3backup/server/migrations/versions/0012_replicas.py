"""Replicas on one database: a run per job and fire time at most once; rate limits in the database

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03 19:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import e3backup.server.db.types

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

UTC = e3backup.server.db.types.UTCDateTime


def upgrade() -> None:
    # a duplicate left by an older server keeps its run but no longer claims the fire time
    op.execute(
        "UPDATE runs SET scheduled_for = NULL WHERE scheduled_for IS NOT NULL AND id NOT IN "
        "(SELECT keep FROM (SELECT MIN(id) AS keep FROM runs WHERE scheduled_for IS NOT NULL "
        "GROUP BY job_id, scheduled_for) AS firsts)"
    )
    op.create_index("uq_runs_job_scheduled_for", "runs", ["job_id", "scheduled_for"], unique=True)
    op.create_table(
        "rate_limit_attempts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("started_at", UTC(), nullable=False),
        sa.Column("failed_at", UTC(), nullable=True),
    )
    op.create_index("ix_rate_limit_attempts_key", "rate_limit_attempts", ["key", "failed_at"])


def downgrade() -> None:
    op.drop_index("ix_rate_limit_attempts_key", table_name="rate_limit_attempts")
    op.drop_table("rate_limit_attempts")
    op.drop_index("uq_runs_job_scheduled_for", table_name="runs")
