"""users.role replaces users.is_admin; enrollment tokens get an expiry and an optional use count

Existing MSP administrators become ``msp_admin``, existing tenant users ``admin`` (they could
manage everything of their tenant before). Existing enrollment tokens expire 7 days after the
upgrade, as new ones do by default.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 14:00:00
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import e3backup.server.db.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("role", sa.String(length=16), nullable=False, server_default="admin"))
    op.execute("UPDATE users SET role = 'msp_admin' WHERE is_admin")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("role", server_default=None)
        batch_op.drop_column("is_admin")
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("enrollment_token_expires_at", e3backup.server.db.types.UTCDateTime(), nullable=True)
        )
        batch_op.add_column(sa.Column("enrollment_token_uses_left", sa.Integer(), nullable=True))
    expires = (datetime.now(UTC) + timedelta(days=7)).replace(tzinfo=None)
    op.get_bind().execute(
        sa.text(
            "UPDATE tenants SET enrollment_token_expires_at = :expires WHERE enrollment_token_hash IS NOT NULL"
        ),
        {"expires": expires},
    )


def downgrade() -> None:
    with op.batch_alter_table("tenants", schema=None) as batch_op:
        batch_op.drop_column("enrollment_token_uses_left")
        batch_op.drop_column("enrollment_token_expires_at")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE users SET is_admin = (role = 'msp_admin')")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column("is_admin", server_default=None)
        batch_op.drop_column("role")
