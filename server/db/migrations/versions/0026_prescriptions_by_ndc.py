"""prescriptions by NDC: a fill's reference photo (the last approved fill of the same product) reads
the product's fills instead of every approved fill

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 11:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_prescriptions_expected_ndc", "prescriptions", ["expected_ndc"])


def downgrade() -> None:
    op.drop_index("ix_prescriptions_expected_ndc", table_name="prescriptions")
