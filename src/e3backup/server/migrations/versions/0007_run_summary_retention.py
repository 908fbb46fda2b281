"""runs.summary (the engine's counters), runs.snapshot_removed_at (retention forgot it),
jobs.deleted_at (a deleted job is hidden but keeps its destination: its snapshots stay restorable),
repository_maintenance (the prune/check schedule per repository)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 16:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import e3backup.server.db.types

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("summary", sa.JSON(), nullable=True, comment="the engine's counters (new, changed...)")
        )
        batch_op.add_column(sa.Column("snapshot_removed_at", e3backup.server.db.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_at", e3backup.server.db.types.UTCDateTime(), nullable=True))
    op.create_table(
        "repository_maintenance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Integer(), nullable=False),
        sa.Column("repo_key", sa.String(length=64), nullable=False),
        sa.Column("where", sa.Text(), nullable=False),
        sa.Column("next_prune_at", e3backup.server.db.types.UTCDateTime(), nullable=False),
        sa.Column("next_check_at", e3backup.server.db.types.UTCDateTime(), nullable=False),
        sa.Column("last_prune_at", e3backup.server.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_check_at", e3backup.server.db.types.UTCDateTime(), nullable=True),
        sa.Column("last_run_id", sa.Integer(), nullable=True),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["last_run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenants.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("repo_key"),
    )
    op.create_index("ix_repository_maintenance_tenant_id", "repository_maintenance", ["tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_repository_maintenance_tenant_id", table_name="repository_maintenance")
    op.drop_table("repository_maintenance")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_column("snapshot_removed_at")
        batch_op.drop_column("summary")
