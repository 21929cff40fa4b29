"""fills keep the product they were approved as (approved_ndc), indexed with the decision time: a fill's
reference photo (the last approved fill of the same product) reads that product's newest approvals
instead of every approved fill

Revision ID: 0026
Revises: 0025
Create Date: 2026-12-06 11:10:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0026"
down_revision = "0025"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fills", sa.Column("approved_ndc", sa.String(11), nullable=True))
    # A fill approved before this migration was approved as its prescription's NDC of now: a
    # prescription's NDC changes only through data-entry verification, which no approved fill waits for.
    op.execute(
        sa.text(
            # The states: server.fills.rules.APPROVED_STATES when this migration was written.
            "UPDATE fills SET approved_ndc = (SELECT expected_ndc FROM prescriptions"
            " WHERE prescriptions.id = fills.prescription_id) WHERE state IN ('approved', 'handed_out')"
        )
    )
    op.create_index("ix_fills_approved_ndc", "fills", ["approved_ndc", "decided_at"])


def downgrade() -> None:
    op.drop_index("ix_fills_approved_ndc", table_name="fills")
    with op.batch_alter_table("fills") as batch:
        batch.drop_column("approved_ndc")
