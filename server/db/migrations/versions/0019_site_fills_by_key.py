"""a site's fills newest first, read by key: an index on (site_id, created_at, id)

Revision ID: 0019
Revises: 0016
Create Date: 2026-12-06 08:10:00
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_fills_site_created", "fills", ["site_id", "created_at", "id"])


def downgrade() -> None:
    op.drop_index("ix_fills_site_created", table_name="fills")
