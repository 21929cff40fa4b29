"""consultation recordings as media: a media row belongs to a fill or to a consultation (exactly one),
and the consultation points at its recording's media row

Recordings delivered before this revision were kept outside the media store
(<data_dir>/consultations/<id>.mp4); those files are left where they are and their digest and size stay
in the audit trail ("consultation.recording"), but the record no longer points at them.

On SQLite the consultations table is changed in place (ADD/DROP COLUMN), not copied and recreated:
with foreign keys enforced, dropping a table that consultation signals still refer to fails.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 09:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

OWNER_CHECK = "(fill_id IS NULL) <> (consultation_id IS NULL)"


def _sqlite() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def upgrade() -> None:
    # Nothing refers to media yet, so on SQLite the copy-and-recreate of batch mode is safe here.
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.alter_column("fill_id", existing_type=sa.String(length=36), nullable=True)
        batch_op.add_column(sa.Column("consultation_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_media_consultation_id", "consultations", ["consultation_id"], ["id"])
        batch_op.create_unique_constraint("uq_media_consultation_kind", ["consultation_id", "kind"])
        batch_op.create_check_constraint("ck_media_one_owner", OWNER_CHECK)
    if _sqlite():
        op.execute(
            "ALTER TABLE consultations ADD COLUMN recording_media_id INTEGER"
            " CONSTRAINT fk_consultations_recording_media_id REFERENCES media (id)"
        )
    else:
        op.add_column("consultations", sa.Column("recording_media_id", sa.Integer(), nullable=True))
        op.create_foreign_key(
            "fk_consultations_recording_media_id", "consultations", "media", ["recording_media_id"], ["id"]
        )
    op.drop_column("consultations", "recording_bytes")
    op.drop_column("consultations", "recording_sha256")


def downgrade() -> None:
    op.execute("UPDATE consultations SET recording_media_id = NULL")
    op.execute("DELETE FROM media WHERE consultation_id IS NOT NULL")
    if _sqlite():
        # SQLite cannot drop a column with a foreign key in place, and recreating the table fails while
        # signals refer to it; they are transient (seconds), so they go.
        op.execute("DELETE FROM consultation_signals")
    else:
        op.drop_constraint("fk_consultations_recording_media_id", "consultations", type_="foreignkey")
    with op.batch_alter_table("consultations", schema=None) as batch_op:
        batch_op.drop_column("recording_media_id")
        batch_op.add_column(sa.Column("recording_sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("recording_bytes", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.drop_constraint("ck_media_one_owner", type_="check")
        batch_op.drop_constraint("uq_media_consultation_kind", type_="unique")
        batch_op.drop_constraint("fk_media_consultation_id", type_="foreignkey")
        batch_op.drop_column("consultation_id")
        batch_op.alter_column("fill_id", existing_type=sa.String(length=36), nullable=False)
