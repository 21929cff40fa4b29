"""state rules: the pharmacist's own consent to a recording (all-party states); a pharmacist's recent
decisions by time, for the sites they supervise

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 05:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("consultations") as batch:
        batch.add_column(sa.Column("pharmacist_consent_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_decisions_pharmacist_decided", "decisions", ["pharmacist_id", "decided_at"])


def downgrade() -> None:
    op.drop_index("ix_decisions_pharmacist_decided", table_name="decisions")
    with op.batch_alter_table("consultations") as batch:
        batch.drop_column("pharmacist_consent_at")
