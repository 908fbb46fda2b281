"""storage destinations defined once per tenant, quotas, measured repository usage

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from e3backup.server.db.types import UTCDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "storage_destinations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("type", sa.String(16), nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("secrets_sealed", sa.Text(), nullable=False),
        sa.Column("quota_bytes", sa.BigInteger(), nullable=True),
        sa.Column("quota_warn_percent", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_storage_destinations_tenant_name"),
    )
    op.create_index("ix_storage_destinations_tenant_id", "storage_destinations", ["tenant_id"])
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("destination_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_jobs_destination_id", "storage_destinations", ["destination_id"], ["id"],
                                    ondelete="RESTRICT")
        batch_op.create_index("ix_jobs_destination_id", ["destination_id"])
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("quota_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("repository_maintenance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("stored_bytes", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("measured_at", UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("measure_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("measure_needed", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("repository_maintenance", schema=None) as batch_op:
        batch_op.alter_column("measure_needed", server_default=None)


def downgrade() -> None:
    with op.batch_alter_table("repository_maintenance", schema=None) as batch_op:
        batch_op.drop_column("measure_needed")
        batch_op.drop_column("measure_error")
        batch_op.drop_column("measured_at")
        batch_op.drop_column("stored_bytes")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("quota_bytes")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_destination_id")
        batch_op.drop_constraint("fk_jobs_destination_id", type_="foreignkey")
        batch_op.drop_column("destination_id")
    op.drop_index("ix_storage_destinations_tenant_id", "storage_destinations")
    op.drop_table("storage_destinations")
