"""finding reused photos fast: a photo's vertical hash half, its hash band values (indexed), and an
index on the photo's digest

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06 03:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

BANDS = 6  # server.evidence.photo_hash.BANDS when this migration was written


def upgrade() -> None:
    # Photos stored before this revision keep no hash (their bytes are in the media store, not here):
    # they are found again only when byte-identical, by their digest.
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.add_column(sa.Column("perceptual_hash_vertical", sa.BigInteger(), nullable=True))
        for band in range(BANDS):
            batch_op.add_column(sa.Column(f"hash_band_{band}", sa.Integer(), nullable=True))
    with op.batch_alter_table("media", schema=None) as batch_op:
        batch_op.create_index("ix_media_sha256", ["sha256"], unique=False)
        for band in range(BANDS):
            batch_op.create_index(f"ix_media_hash_band_{band}", [f"hash_band_{band}"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("media", schema=None) as batch_op:
        for band in range(BANDS):
            batch_op.drop_index(f"ix_media_hash_band_{band}")
        batch_op.drop_index("ix_media_sha256")
    with op.batch_alter_table("media", schema=None) as batch_op:
        for band in range(BANDS):
            batch_op.drop_column(f"hash_band_{band}")
        batch_op.drop_column("perceptual_hash_vertical")
