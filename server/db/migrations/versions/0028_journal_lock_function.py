"""tp_lock_journal(): the journal lock taken and both journals' ends read under it in one round trip,
where an append to the audit chain or the event journal took three (PostgreSQL only)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0028"
down_revision = "0027"
branch_labels = None
depends_on = None

# server.db.engine.JOURNAL_LOCK_FUNCTION when this migration was written.
FUNCTION = """
CREATE OR REPLACE FUNCTION tp_lock_journal(lock_key bigint)
RETURNS TABLE (audit_id bigint, audit_hash varchar, event_id bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT a.id, a.hash INTO audit_id, audit_hash FROM audit_events a ORDER BY a.id DESC LIMIT 1;
    SELECT coalesce(max(e.id), 0) INTO event_id FROM events e;
    RETURN NEXT;
END
$$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(FUNCTION)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS tp_lock_journal(bigint)")
