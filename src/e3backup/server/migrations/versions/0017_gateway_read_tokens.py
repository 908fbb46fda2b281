"""gateway_read_tokens: the server's own read-only gateway tokens for dashboard downloads (#30)

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 22:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import e3backup.server.db.types

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gateway_read_tokens",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("created_at", e3backup.server.db.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", e3backup.server.db.types.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("token_hash"),
    )
    with op.batch_alter_table("gateway_read_tokens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_gateway_read_tokens_job_id"), ["job_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_gateway_read_tokens_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    op.drop_table("gateway_read_tokens")
