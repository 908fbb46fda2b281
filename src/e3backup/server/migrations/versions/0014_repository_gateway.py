"""jobs.storage_mode, agents.gateway_token_hash and gateway_locks: the repository gateway (#30)

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03 19:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import e3backup.server.db.types

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("storage_mode", sa.String(16), nullable=False, server_default="direct"))
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.alter_column("storage_mode", server_default=None)
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("gateway_token_hash", sa.String(64), nullable=True))
        batch_op.create_unique_constraint("uq_agents_gateway_token_hash", ["gateway_token_hash"])
    op.create_table(
        "gateway_locks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("agent_id", sa.Integer(), sa.ForeignKey("agents.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", e3backup.server.db.types.UTCDateTime(), nullable=False),
        sa.UniqueConstraint("job_id", "name"),
    )


def downgrade() -> None:
    op.drop_table("gateway_locks")
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_constraint("uq_agents_gateway_token_hash", type_="unique")
        batch_op.drop_column("gateway_token_hash")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("storage_mode")
