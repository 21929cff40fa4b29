"""what the pharmacist must see and acknowledge: a fill's flags and overridden checks, a decision's
acknowledgements, views seen and licence, a photo's perceptual hash, and the patient-and-drug history
index

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06 03:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.add_column(sa.Column("overridden_checks", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("flags", sa.JSON(), server_default="[]", nullable=False))
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acknowledgements", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("views_seen", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("license_state", sa.String(length=2), nullable=True))
        batch_op.add_column(sa.Column("license_number", sa.String(length=64), nullable=True))
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("perceptual_hash", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_prescriptions_patient_drug", ["patient_name", "patient_dob", "drug"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_prescriptions_patient_drug")
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_column("perceptual_hash")
    with op.batch_alter_table("decisions", schema=None) as batch_op:
        batch_op.drop_column("license_number")
        batch_op.drop_column("license_state")
        batch_op.drop_column("views_seen")
        batch_op.drop_column("acknowledgements")
    with op.batch_alter_table("fills", schema=None) as batch_op:
        batch_op.drop_column("flags")
        batch_op.drop_column("overridden_checks")
