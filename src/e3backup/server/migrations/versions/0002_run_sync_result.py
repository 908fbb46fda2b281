"""runs.sync_result: what a sync run did (it has no snapshot)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 13:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("sync_result", sa.JSON(), nullable=True,
                                   comment="what a sync run did (api.SyncRunResult)"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("sync_result")
