"""the same patient's prescriptions of a drug found without regard to case: the index over the patient's
name and the drug is rebuilt over their lower-case forms

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-07 15:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0029"
down_revision = "0028"
branch_labels = None
depends_on = None

# server.db.models.PATIENT_KEY and DRUG_KEY when this migration was written.
PATIENT_KEY = "lower(patient_name)"
DRUG_KEY = "lower(drug)"


def upgrade() -> None:
    op.drop_index("ix_prescriptions_patient_drug", table_name="prescriptions")
    op.create_index(
        "ix_prescriptions_patient_drug",
        "prescriptions",
        [sa.text(PATIENT_KEY), "patient_dob", sa.text(DRUG_KEY)],
    )


def downgrade() -> None:
    op.drop_index("ix_prescriptions_patient_drug", table_name="prescriptions")
    op.create_index("ix_prescriptions_patient_drug", "prescriptions", ["patient_name", "patient_dob", "drug"])
