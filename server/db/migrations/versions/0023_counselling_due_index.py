"""the fills waiting for counselling, read by key: an index on (counselling, decided_at, id)

Without it the pharmacist's list of fills due counselling scans every fill, and approved fills
accumulate for as long as records are kept.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-06 08:55:00
"""

from __future__ import annotations

from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_fills_counselling_due", "fills", ["counselling", "decided_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_fills_counselling_due", table_name="fills")
