"""consultation signals between server instances; a consultation's count of media reconnections

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 10:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consultation_signals",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("consultation_id", sa.Integer(), nullable=False),
        sa.Column("party", sa.String(length=16), nullable=False),
        sa.Column("message", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("consultation_signals", schema=None) as batch_op:
        batch_op.create_index("ix_consultation_signals_to", ["consultation_id", "party"], unique=False)
        batch_op.create_index(batch_op.f("ix_consultation_signals_created_at"), ["created_at"], unique=False)
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reconnections", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_column("reconnections")
    with op.batch_alter_table("consultation_signals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_consultation_signals_created_at"))
        batch_op.drop_index("ix_consultation_signals_to")
    op.drop_table("consultation_signals")
