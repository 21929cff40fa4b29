"""second factors (TOTP, WebAuthn), recovery codes, step-up and idle lock of console sessions, and a
site's policy to require a second factor

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06 05:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "second_factors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("credential_id", sa.String(length=1400), nullable=True),
        sa.Column("public_key", sa.Text(), nullable=True),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("credential_id"),
    )
    op.create_index("ix_second_factors_user_id", "second_factors", ["user_id"])
    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_recovery_codes_user_id", "recovery_codes", ["user_id"])
    # Plain ADD COLUMN: on SQLite a table that others refer to (sites) cannot be recreated.
    op.add_column(
        "console_sessions", sa.Column("stage", sa.String(length=16), server_default="ready", nullable=False)
    )
    for column in ("proved_at", "factor_at", "stepped_up_at", "active_at"):
        op.add_column("console_sessions", sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    op.add_column("console_sessions", sa.Column("challenge", sa.Text(), nullable=True))
    op.add_column(
        "sites", sa.Column("require_second_factor", sa.Boolean(), server_default=sa.false(), nullable=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("sites") as batch:
        batch.drop_column("require_second_factor")
    with op.batch_alter_table("console_sessions") as batch:
        for column in ("challenge", "active_at", "stepped_up_at", "factor_at", "proved_at", "stage"):
            batch.drop_column(column)
    op.drop_index("ix_recovery_codes_user_id", table_name="recovery_codes")
    op.drop_table("recovery_codes")
    op.drop_index("ix_second_factors_user_id", table_name="second_factors")
    op.drop_table("second_factors")
