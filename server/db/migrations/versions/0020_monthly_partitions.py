"""PostgreSQL: events, audit_events and access_log partitioned by month on their time column (rows,
ids and sequences kept); nothing on SQLite

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import datetime as dt

from alembic import op

from server.db import partitions

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    partitions.partition_all(conn, dt.datetime.now(dt.UTC))


def downgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    for table in partitions.TABLES:
        partitions.unpartition_table(conn, table)
