"""consultation recordings: when consent was recorded, and the delivered recording's digest and size

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 19:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("recording_consent_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("recording_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("recording_bytes", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_column("recording_bytes")
        batch_op.drop_column("recording_sha256")
        batch_op.drop_column("recording_consent_at")
