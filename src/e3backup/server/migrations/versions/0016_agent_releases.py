"""agent self-update: agent_releases, tenants.agent_version_wanted, agents.update_event

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from e3backup.server.db.types import UTCDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "agent_releases",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("version", sa.String(length=64), nullable=False),
        sa.Column("build_platform", sa.String(length=64), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("version", "build_platform"),
    )
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("agent_version_wanted", sa.String(length=64), nullable=True))
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("update_event", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("update_event")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("agent_version_wanted")
    op.drop_table("agent_releases")
