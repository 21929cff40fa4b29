"""Earlier fills of a prescription and of the same patient and drug: what the pharmacist compares a fill
with, and what says a refill comes too soon.

The same patient is the same name and date of birth on a prescription; the same drug is the same drug
name, whatever the strength (a new strength is still the same therapy, and a dose change is a reason the
pharmacist gives when acknowledging an early refill). Names and drugs are compared without case.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, bindparam, func, literal, literal_column, select, union_all
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.db.bound import at_most
from server.db.models import Decision, Fill, Media, Prescription, Site, User, drug_key, patient_key
from server.evidence.kinds import MediaKind
from server.fills.live import state_among
from server.fills.rules import APPROVED_STATES, OPEN_STATES, FillState
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
class Reference:
    """The last approved fill of the same product (NDC) the caller may see, and its pills photo."""

    fill_id: str
    decided_at: dt.datetime | None
    media: Media


@dataclass(frozen=True)
class FillHistory:
    same_prescription: Sequence[EarlierFill]
    same_patient_drug: Sequence[EarlierFill]
    last_approved_pills: Reference | None


# The same patient's same drug: the values bound from the prescription by _patient_drug(), compared
# as ix_prescriptions_patient_drug holds them (without case).
_SAME_PATIENT_AND_DRUG = and_(
    patient_key == func.lower(bindparam("patient_name")),
    Prescription.patient_dob == bindparam("patient_dob"),
    drug_key == func.lower(bindparam("drug")),
)


def _patient_drug(rx: Prescription) -> dict[str, Any]:
    return {"patient_name": rx.patient_name, "patient_dob": rx.patient_dob, "drug": rx.drug}


# Built once, with the values bound per call: every fill a pharmacist opens runs these three, and
# building a statement costs more than the database takes to answer it. Columns, not entities: a row
# object per earlier fill costs more than its figures.
_PHARMACIST = aliased(User, name="pharmacist")
_EARLIER = (
    select(
        Fill.id,
        Prescription.rx_number,
        Fill.submitted_at,
        Fill.decided_at,
        Fill.counted_quantity,
        Prescription.quantity,
        Prescription.days_supply,
        Fill.state,
        Decision.outcome,
        Decision.pharmacist_id,
        _PHARMACIST.display_name,
    )
    .join(Prescription, Prescription.id == Fill.prescription_id)
    .outerjoin(Decision, Decision.fill_id == Fill.id)
    .outerjoin(_PHARMACIST, _PHARMACIST.id == Decision.pharmacist_id)
    .where(Fill.id != bindparam("fill_id"), Fill.state != FillState.DRAFT)
    .order_by(Fill.created_at.desc(), Fill.id)
    .limit(at_most(HISTORY_ROWS))
)
_SAME_PRESCRIPTION = _EARLIER.where(Fill.prescription_id == bindparam("rx_id"))
_SAME_PATIENT_DRUG = _EARLIER.where(_SAME_PATIENT_AND_DRUG, Prescription.id != bindparam("rx_id"))
# Both lists in one statement (each its own index and limit), tagged by `list` (0: this prescription's)
# and in their order: one round trip fewer for every fill a pharmacist opens.
_LISTS = [
    select(q.add_columns(literal(n).label("list"), Fill.created_at.label("created_at")).subquery())
    for n, q in enumerate((_SAME_PRESCRIPTION, _SAME_PATIENT_DRUG))
]
_BOTH_LISTS = union_all(*_LISTS).order_by(
    literal_column("list"), literal_column("created_at").desc(), literal_column("id")
)
_REFERENCE = (
    select(Fill.id, Fill.decided_at, Media)
    .join(Site, Site.id == Fill.site_id)
    .join(Media, and_(Media.fill_id == Fill.id, Media.kind == MediaKind.PILLS))
    .where(
        Fill.approved_ndc == bindparam("ndc"),
        # The product's approvals come newest first from ix_fills_approved_ndc; for a product most fills
        # are of, PostgreSQL reads ix_fills_decided_at backwards instead, which starts with the open
        # fills (no decision yet: nulls sort last). Named here, the nulls are passed over in the index
        # rather than read and filtered one by one: 1.4 ms against 0.06 with 1,450 fills open.
        Fill.decided_at.is_not(None),
        state_among(*APPROVED_STATES),
        Fill.id != bindparam("fill_id"),
    )
    .order_by(Fill.decided_at.desc())
    .limit(at_most(1))
)
# Kept to the sites the actor may see (Principal.may_see_site in SQL).
_REFERENCE_FOR = {
    Role.ADMIN: _REFERENCE,
    Role.TECHNICIAN: _REFERENCE.where(Site.id == bindparam("site_id")),
    Role.PHARMACIST: _REFERENCE.where(Site.state.in_(bindparam("states", expanding=True))),
}


async def history_of(s: AsyncSession, actor: Principal, fill: Fill, rx: Prescription) -> FillHistory:
    """The fill's earlier fills (this prescription's, then the same patient's of the same drug on other
    prescriptions) and the reference photo of the same product."""
    lists: tuple[list[EarlierFill], list[EarlierFill]] = ([], [])
    for *row, n, _ in await s.execute(_BOTH_LISTS, {"fill_id": fill.id, "rx_id": rx.id, **_patient_drug(rx)}):
        lists[n].append(EarlierFill(*row))
    same_rx, same_drug = lists
    reference = (
        await s.execute(
            _REFERENCE_FOR.get(actor.role, _REFERENCE_FOR[Role.PHARMACIST]),
            {
                "ndc": rx.expected_ndc,
                "fill_id": fill.id,
                "site_id": actor.site_id,
                "states": sorted(actor.licensed_states),
            },
        )
    ).first()
    pills = Reference(reference.id, reference.decided_at, reference.Media) if reference else None
    return FillHistory(same_rx, same_drug, pills)


@dataclass(frozen=True)
class LastApproved:
    fill_id: str
    decided_at: dt.datetime
    days_supply: int


# Found through the patient's prescriptions (ix_prescriptions_patient_drug), not the approved fills.
_LAST_APPROVED = (
    select(Fill.id, Fill.decided_at, Prescription.days_supply)
    .join(Prescription, Prescription.id == Fill.prescription_id)
    .where(_SAME_PATIENT_AND_DRUG, state_among(*APPROVED_STATES), Fill.id != bindparam("fill_id"))
    .order_by(Fill.decided_at.desc())
    .limit(at_most(1))
)


async def last_approved(s: AsyncSession, fill: Fill, rx: Prescription) -> LastApproved | None:
    """The patient's most recent approved fill of this drug (this prescription's or another's), at any
    site: a refill's timing depends on what the patient has, wherever it was dispensed."""
    row = (await s.execute(_LAST_APPROVED, {"fill_id": fill.id, **_patient_drug(rx)})).first()
    if row is None or row.decided_at is None:
        return None
    return LastApproved(row.id, row.decided_at, row.days_supply)


# The patient's other fills of the drug still waiting for a pharmacist, at any site, with their sites.
_OPEN_OF_PATIENT_DRUG = (
    select(Fill, Site)
    .join(Prescription, Prescription.id == Fill.prescription_id)
    .join(Site, Site.id == Fill.site_id)
    .where(_SAME_PATIENT_AND_DRUG, state_among(*OPEN_STATES), Fill.id != bindparam("fill_id"))
    .order_by(Fill.id)
)


_LOCK_PATIENT_DRUG = (
    select(Prescription.id).where(_SAME_PATIENT_AND_DRUG).order_by(Prescription.id).with_for_update()
)


async def lock_patient_drug(s: AsyncSession, rx: Prescription) -> None:
    """Locks the patient's prescriptions of this drug (PostgreSQL), in one order for every caller."""
    await s.execute(_LOCK_PATIENT_DRUG, _patient_drug(rx))


async def open_of_patient_drug(s: AsyncSession, fill: Fill, rx: Prescription) -> list[tuple[Fill, Site]]:
    """The patient's other open fills of this drug (queued or in review), this prescription's or
    another's, at any site, each with its site."""
    rows = await s.execute(_OPEN_OF_PATIENT_DRUG, {"fill_id": fill.id, **_patient_drug(rx)})
    return [(row.Fill, row.Site) for row in rows]


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
