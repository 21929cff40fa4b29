"""Earlier fills of a prescription and of the same patient and drug: what the pharmacist compares a fill
with, and what says a refill comes too soon.

The same patient is the same name and date of birth on a prescription; the same drug is the same drug
name, whatever the strength (a new strength is still the same therapy, and a dose change is a reason the
pharmacist gives when acknowledging an early refill).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.db.models import Decision, Fill, Media, Prescription, Site, User
from server.evidence.kinds import MediaKind
from server.fills.rules import APPROVED_STATES, FillState
from server.security.principal import Principal, Role

# Rows of each list the verification view shows.
HISTORY_ROWS = 20


@dataclass(frozen=True)
class EarlierFill:
    fill_id: str
    rx_number: str
    submitted_at: dt.datetime | None
    decided_at: dt.datetime | None
    counted_quantity: Decimal | None
    quantity: Decimal
    days_supply: int
    state: str
    outcome: str | None
    pharmacist_id: int | None
    pharmacist_name: str | None


@dataclass(frozen=True)
class FillHistory:
    same_prescription: Sequence[EarlierFill]
    same_patient_drug: Sequence[EarlierFill]
    # The last approved fill of the same product (NDC) the caller may see, and its pills photo.
    last_approved_pills: tuple[Fill, Media] | None


def _same_patient_drug(rx: Prescription) -> ColumnElement[bool]:
    return and_(
        Prescription.patient_name == rx.patient_name,
        Prescription.patient_dob == rx.patient_dob,
        Prescription.drug == rx.drug,
    )


def _visible(actor: Principal) -> list[ColumnElement[bool]]:
    """Conditions on Site that keep to the sites the actor may see (Principal.may_see_site in SQL)."""
    if actor.role is Role.ADMIN:
        return []
    if actor.role is Role.TECHNICIAN:
        return [Site.id == actor.site_id]
    return [Site.state.in_(actor.licensed_states)]


async def _earlier(s: AsyncSession, fill: Fill, where: ColumnElement[bool]) -> list[EarlierFill]:
    pharmacist = aliased(User)
    rows = (
        await s.execute(
            select(Fill, Prescription, Decision.outcome, Decision.pharmacist_id, pharmacist.display_name)
            .join(Prescription, Prescription.id == Fill.prescription_id)
            .outerjoin(Decision, Decision.fill_id == Fill.id)
            .outerjoin(pharmacist, pharmacist.id == Decision.pharmacist_id)
            .where(where, Fill.id != fill.id, Fill.state != FillState.DRAFT)
            .order_by(Fill.created_at.desc(), Fill.id)
            .limit(HISTORY_ROWS)
        )
    ).all()
    return [
        EarlierFill(
            fill_id=f.id,
            rx_number=rx.rx_number,
            submitted_at=f.submitted_at,
            decided_at=f.decided_at,
            counted_quantity=f.counted_quantity,
            quantity=rx.quantity,
            days_supply=rx.days_supply,
            state=f.state,
            outcome=outcome,
            pharmacist_id=pharmacist_id,
            pharmacist_name=name,
        )
        for f, rx, outcome, pharmacist_id, name in rows
    ]


async def history_of(s: AsyncSession, actor: Principal, fill: Fill, rx: Prescription) -> FillHistory:
    """The fill's earlier fills (this prescription's, then the same patient's of the same drug on other
    prescriptions) and the reference photo of the same product."""
    same_rx = await _earlier(s, fill, Fill.prescription_id == rx.id)
    same_drug = await _earlier(s, fill, and_(_same_patient_drug(rx), Prescription.id != rx.id))
    reference = (
        await s.execute(
            select(Fill, Media)
            .join(Prescription, Prescription.id == Fill.prescription_id)
            .join(Site, Site.id == Fill.site_id)
            .join(Media, and_(Media.fill_id == Fill.id, Media.kind == MediaKind.PILLS))
            .where(
                Prescription.expected_ndc == rx.expected_ndc,
                Fill.state.in_(APPROVED_STATES),
                Fill.id != fill.id,
                *_visible(actor),
            )
            .order_by(Fill.decided_at.desc())
            .limit(1)
        )
    ).first()
    return FillHistory(same_rx, same_drug, (reference.Fill, reference.Media) if reference else None)


@dataclass(frozen=True)
class LastApproved:
    fill_id: str
    decided_at: dt.datetime
    days_supply: int


async def last_approved(s: AsyncSession, fill: Fill, rx: Prescription) -> LastApproved | None:
    """The patient's most recent approved fill of this drug (this prescription's or another's), at any
    site: a refill's timing depends on what the patient has, wherever it was dispensed."""
    row = (
        await s.execute(
            select(Fill.id, Fill.decided_at, Prescription.days_supply)
            .join(Prescription, Prescription.id == Fill.prescription_id)
            .where(_same_patient_drug(rx), Fill.state.in_(APPROVED_STATES), Fill.id != fill.id)
            .order_by(Fill.decided_at.desc())
            .limit(1)
        )
    ).first()
    if row is None or row.decided_at is None:
        return None
    return LastApproved(row.id, row.decided_at, row.days_supply)


def refill_too_soon(
    previous: LastApproved | None, now: dt.datetime, threshold_percent: float
) -> dict[str, Any] | None:
    """The refill_too_soon flag when less than threshold_percent of the previous fill's days supply has
    elapsed by now; None otherwise."""
    if previous is None or previous.days_supply <= 0:
        return None
    elapsed = (now - previous.decided_at) / dt.timedelta(days=1)
    if elapsed >= previous.days_supply * threshold_percent / 100:
        return None
    return {
        "code": "refill_too_soon",
        "previous_fill_id": previous.fill_id,
        "previous_approved_at": previous.decided_at.isoformat(),
        "days_supply": previous.days_supply,
        "elapsed_days": round(max(elapsed, 0.0), 1),
        "threshold_percent": threshold_percent,
    }
