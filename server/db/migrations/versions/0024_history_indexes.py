"""a year of history: the live queue from a partial index on open fills, and the PV1 queue likewise;
decided fills by time; the dashboard's summaries of closed hours

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

# server.fills.rules.OPEN_STATES when this migration was written.
OPEN = sa.text("state IN ('queued', 'in_review')")
# server.data_entry.rules.OPEN_STATES.
OPEN_PRESCRIPTION = sa.text("verification_state IN ('awaiting_verification', 'in_review')")


def upgrade() -> None:
    op.create_index(
        "ix_fills_open",
        "fills",
        # The state first: without statistics (the server never runs ANALYZE) SQLite then prefers
        # this index to the site's for every statement of the queue.
        ["state", "priority", "submitted_at", "id"],
        postgresql_where=OPEN,
        sqlite_where=OPEN,
    )
    op.create_index("ix_fills_decided_at", "fills", ["decided_at"])
    op.create_index(
        "ix_prescriptions_open",
        "prescriptions",
        ["awaiting_since", "id"],
        postgresql_where=OPEN_PRESCRIPTION,
        sqlite_where=OPEN_PRESCRIPTION,
    )
    op.create_table(
        "dashboard_hours",
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("scope", sa.String(length=200), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("figures", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "scope", "hour"),
    )


def downgrade() -> None:
    op.drop_table("dashboard_hours")
    op.drop_index("ix_prescriptions_open", table_name="prescriptions")
    op.drop_index("ix_fills_decided_at", table_name="fills")
    op.drop_index("ix_fills_open", table_name="fills")
