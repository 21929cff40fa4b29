"""retention: when a medium's stored files were removed under the retention rules, and each
medium's stored files by digest (a file is removed only when no medium still kept has it)

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None
# Every variant's file of the media stored so far ("2048" is often the very file "full" is).
FILES = (
    "INSERT INTO media_files (media_id, sha256) SELECT DISTINCT media.id, {digest}"
    " FROM media, json_each(media.variants) v"
)


def upgrade() -> None:
    with op.batch_alter_table("media") as batch:
        batch.add_column(sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "media_files",
        sa.Column("media_id", sa.Integer(), sa.ForeignKey("media.id"), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
    )
    op.create_index("ix_media_files_sha256", "media_files", ["sha256"])
    digest = (
        "json_extract(v.value, '$.sha256')"
        if op.get_bind().dialect.name == "sqlite"
        else "v.value->>'sha256'"
    )
    op.execute(FILES.format(digest=digest))


def downgrade() -> None:
    op.drop_index("ix_media_files_sha256", table_name="media_files")
    op.drop_table("media_files")
    with op.batch_alter_table("media") as batch:
        batch.drop_column("removed_at")
