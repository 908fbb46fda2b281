"""agents.display_name (rename), agents.paused (no new runs), agents.deleted_at (hidden)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03 17:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import e3backup.server.db.types

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("display_name", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column("deleted_at", e3backup.server.db.types.UTCDateTime(), nullable=True))
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.alter_column("paused", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("agents", schema=None) as batch_op:
        batch_op.drop_column("deleted_at")
        batch_op.drop_column("paused")
        batch_op.drop_column("display_name")
