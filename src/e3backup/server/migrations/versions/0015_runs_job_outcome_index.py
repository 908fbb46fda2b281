"""runs: an index on (job_id, kind, status, finished_at) for each job's last run and outcomes

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03 20:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_job_outcome", "runs", ["job_id", "kind", "status", "finished_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_job_outcome", "runs")
