"""counselling records: a fill's counselling (required or not, and where it stands), its hand-out to the
patient, and one counselling record per fill (by video, by phone, or declined)

Fills from before this revision keep counselling_required NULL: they were approved before the rule was
kept, so nothing holds them back from being handed out.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06 08:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("fills", sa.Column("counselling_required", sa.Boolean(), nullable=True))
    op.add_column("fills", sa.Column("counselling", sa.String(length=24), nullable=True))
    op.add_column("fills", sa.Column("handed_out_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "sqlite":
        # Other tables refer to fills: the column and its reference are added in place, not by a copy.
        op.execute(
            "ALTER TABLE fills ADD COLUMN handed_out_by INTEGER"
            " CONSTRAINT fk_fills_handed_out_by_users REFERENCES users (id)"
        )
    else:
        op.add_column("fills", sa.Column("handed_out_by", sa.Integer(), nullable=True))
        op.create_foreign_key("fk_fills_handed_out_by_users", "fills", "users", ["handed_out_by"], ["id"])
    # The counselling report reads a site's fills handed out in a date range.
    op.create_index("ix_fills_site_handed_out", "fills", ["site_id", "handed_out_at"])
    op.create_table(
        "counselling_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("fill_id", sa.String(length=36), nullable=False),
        sa.Column("site_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("consultation_id", sa.Integer(), nullable=True),
        sa.Column("pharmacist_id", sa.Integer(), nullable=True),
        sa.Column("duration_seconds", sa.Double(), nullable=True),
        sa.Column("declined_by", sa.String(length=16), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_by", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["consultation_id"], ["consultations.id"]),
        sa.ForeignKeyConstraint(["fill_id"], ["fills.id"]),
        sa.ForeignKeyConstraint(["pharmacist_id"], ["users.id"]),
        sa.ForeignKeyConstraint(["recorded_by"], ["users.id"]),
        sa.ForeignKeyConstraint(["site_id"], ["sites.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("fill_id"),
    )
    op.create_index("ix_counselling_records_site_recorded", "counselling_records", ["site_id", "recorded_at"])


def downgrade() -> None:
    op.drop_index("ix_counselling_records_site_recorded", table_name="counselling_records")
    op.drop_table("counselling_records")
    op.drop_index("ix_fills_site_handed_out", table_name="fills")
    with op.batch_alter_table("fills") as batch:
        if op.get_bind().dialect.name != "sqlite":
            batch.drop_constraint("fk_fills_handed_out_by_users", type_="foreignkey")
        batch.drop_column("handed_out_by")
        batch.drop_column("handed_out_at")
        batch.drop_column("counselling")
        batch.drop_column("counselling_required")
