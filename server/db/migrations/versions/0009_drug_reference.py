"""drug reference data (the FDA NDC Directory's products and packages) and a prescription's refills
authorised and its check against the reference

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drug_reference_loads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("product_file", sa.String(length=255), nullable=False),
        sa.Column("package_file", sa.String(length=255), nullable=False),
        sa.Column("product_sha256", sa.String(length=64), nullable=False),
        sa.Column("package_sha256", sa.String(length=64), nullable=False),
        sa.Column("products", sa.Integer(), nullable=False),
        sa.Column("packages", sa.Integer(), nullable=False),
        sa.Column("skipped", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "drug_products",
        sa.Column("product_id", sa.String(length=80), nullable=False),
        sa.Column("product_ndc", sa.String(length=10), nullable=False),
        sa.Column("product_type", sa.String(length=80), nullable=False),
        sa.Column("proprietary_name", sa.Text(), nullable=True),
        sa.Column("proprietary_name_suffix", sa.Text(), nullable=True),
        sa.Column("nonproprietary_name", sa.Text(), nullable=True),
        sa.Column("dosage_form", sa.String(length=120), nullable=True),
        sa.Column("route", sa.Text(), nullable=True),
        sa.Column("start_marketing_date", sa.Date(), nullable=True),
        sa.Column("end_marketing_date", sa.Date(), nullable=True),
        sa.Column("marketing_category", sa.String(length=80), nullable=True),
        sa.Column("application_number", sa.String(length=40), nullable=True),
        sa.Column("labeler", sa.Text(), nullable=True),
        sa.Column("substance_name", sa.Text(), nullable=True),
        sa.Column("strength_numerator", sa.Text(), nullable=True),
        sa.Column("strength_unit", sa.Text(), nullable=True),
        sa.Column("pharm_classes", sa.Text(), nullable=True),
        sa.Column("dea_schedule", sa.String(length=8), nullable=True),
        sa.Column("exclude_flag", sa.String(length=2), nullable=True),
        sa.Column("certified_through", sa.Date(), nullable=True),
        sa.PrimaryKeyConstraint("product_id"),
    )
    op.create_table(
        "drug_packages",
        sa.Column("ndc11", sa.String(length=11), nullable=False),
        sa.Column("product_id", sa.String(length=80), nullable=False),
        sa.Column("package_code", sa.String(length=14), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("start_marketing_date", sa.Date(), nullable=True),
        sa.Column("end_marketing_date", sa.Date(), nullable=True),
        sa.Column("exclude_flag", sa.String(length=2), nullable=True),
        sa.Column("sample", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(["product_id"], ["drug_products.product_id"]),
        sa.PrimaryKeyConstraint("ndc11"),
    )
    with op.batch_alter_table("drug_packages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drug_packages_product_id"), ["product_id"], unique=False)
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("refills_authorized", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("reference_check", sa.JSON(), server_default="{}", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("prescriptions", schema=None) as batch_op:
        batch_op.drop_column("reference_check")
        batch_op.drop_column("refills_authorized")
    with op.batch_alter_table("drug_packages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drug_packages_product_id"))
    op.drop_table("drug_packages")
    op.drop_table("drug_products")
    op.drop_table("drug_reference_loads")
