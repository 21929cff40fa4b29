"""Rows a migration test puts in a database at an earlier revision, in plain SQL (the models describe
the newest schema, not the one being migrated)."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession


async def site_and_technician(s: AsyncSession) -> None:
    """Site 1 (ND-1) and user 1, its technician."""
    await s.execute(
        text(
            "INSERT INTO sites (id, code, name, state, status, created_at)"
            " VALUES (1, 'ND-1', 'Hettinger Drug', 'ND', 'active', CURRENT_TIMESTAMP)"
        )
    )
    await s.execute(
        text(
            "INSERT INTO users (id, username, display_name, role, active, created_at)"
            " VALUES (1, 'tech', 'Tech', 'technician', true, CURRENT_TIMESTAMP)"
        )
    )


async def prescription(s: AsyncSession, ndc: str = "00000000000") -> None:
    """Prescription 1 of site 1, for the product `ndc`."""
    await s.execute(
        text(
            "INSERT INTO prescriptions (id, site_id, rx_number, patient_name, patient_dob,"
            " prescriber, drug, strength, dosage_form, expected_ndc, quantity, days_supply,"
            " directions, fill_type, created_at)"
            " VALUES (1, 1, 'RX1', 'P', '1950-01-01', 'Dr', 'D', '1 mg', 'tablet', :ndc,"
            " 1, 1, 'd', 'new', CURRENT_TIMESTAMP)"
        ),
        {"ndc": ndc},
    )
