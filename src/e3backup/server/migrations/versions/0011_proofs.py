"""proofs: proof of restore per backup run (verdict, checks, screenshot)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03 19:45:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from e3backup.server.db.types import UTCDateTime

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "proofs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="SET NULL"), nullable=True),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id", ondelete="SET NULL"), nullable=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
        sa.Column("snapshot_id", sa.String(128), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("checks", sa.JSON(), nullable=False),
        sa.Column("started_at", UTCDateTime(), nullable=False),
        sa.Column("finished_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("screenshot", sa.LargeBinary(), nullable=True),
    )
    op.create_index("ix_proofs_tenant_id", "proofs", ["tenant_id"])
    op.create_index("ix_proofs_run_id", "proofs", ["run_id"])
    op.create_index("ix_proofs_snapshot_id", "proofs", ["snapshot_id"])
    op.create_index("ix_proofs_job_finished", "proofs", ["job_id", "finished_at"])


def downgrade() -> None:
    op.drop_table("proofs")
