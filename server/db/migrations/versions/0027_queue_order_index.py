"""the open fills indexed in queue order (priority's rank, submission time, id): a page of the queue
and claim-next read the first fills in order instead of sorting every open fill

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-06 14:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0027"
down_revision = "0026"
branch_labels = None
depends_on = None

# server.db.models.QUEUE_RANK and OPEN_FILL when this migration was written.
RANK = "(CASE priority WHEN 'waiting' THEN 0 WHEN 'routine' THEN 1 WHEN 'delivery' THEN 2 ELSE 3 END)"
OPEN = "state IN ('queued', 'in_review')"


def upgrade() -> None:
    op.create_index(
        "ix_fills_open_order",
        "fills",
        [sa.text(RANK), "submitted_at", "id"],
        postgresql_where=sa.text(OPEN),
        sqlite_where=sa.text(OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_fills_open_order", table_name="fills")
