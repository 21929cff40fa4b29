"""where a prescription came from: entered at the counter, or a pharmacy system's message kept verbatim

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source_kind", sa.String(length=16), server_default="entered", nullable=False)
        )
        batch_op.add_column(sa.Column("source_id", sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column("source_body", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("source_digest", sa.String(length=64), nullable=True))
        batch_op.create_unique_constraint("uq_prescriptions_source", ["site_id", "source_kind", "source_id"])


def downgrade() -> None:
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.drop_constraint("uq_prescriptions_source", type_="unique")
        batch_op.drop_column("source_digest")
        batch_op.drop_column("source_body")
        batch_op.drop_column("source_id")
        batch_op.drop_column("source_kind")
