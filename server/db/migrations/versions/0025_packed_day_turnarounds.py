"""the dashboard's day summaries keep their turnaround values packed (sorted doubles in base64) instead
of as JSON lists of numbers: the summaries made before are dropped, and the next request of a period
makes them again from the records

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-06 11:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0025"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(sa.text("DELETE FROM dashboard_hours WHERE kind = 'decided-day'"))


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM dashboard_hours WHERE kind = 'decided-day'"))
