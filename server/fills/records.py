"""One fill with everything its detailed view shows, as one transaction saw it.

The read side loads a record for a fill in full; creating and submitting a fill build theirs from the
rows their own transaction holds already, so the answer to either costs no second transaction.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.compliance.checks import CounsellingOptions, schedule_of
from server.db.models import CounsellingRecord, Decision, Fill, Media, Prescription, Site, User
from server.fills.history import FillHistory, history_of
from server.fills.rules import COUNSELLING_RECORDED, OPEN_STATES
from server.security.principal import Principal, Role
from server.security.step_up import Outlook, outlook

# Built once: submitting a fill runs the first two, and so does every read of a fill in full.
# The fill, its site, prescription and technician's name (names only: a User entity would load its
# licenses too).
FILL_SITE_PRESCRIPTION_TECHNICIAN = (
    select(Fill, Site, Prescription, User.display_name)
    .join(Site, Site.id == Fill.site_id)
    .join(Prescription, Prescription.id == Fill.prescription_id)
    .outerjoin(User, User.id == Fill.technician_id)
    .where(Fill.id == bindparam("fill_id"))
)
_COUNSELLING_OF_FILL = select(CounsellingRecord).where(CounsellingRecord.fill_id == bindparam("fill_id"))
MEDIA_OF_FILL = select(Media).where(Media.fill_id == bindparam("fill_id")).order_by(Media.id)
# The decisions on a prescription's fills: a fill's own, and the earlier attempts that were rejected.
_DECISIONS_OF_PRESCRIPTION = (
    select(Fill.id, Fill.state, Decision, User.display_name)
    .join(Decision, Decision.fill_id == Fill.id)
    .outerjoin(User, User.id == Decision.pharmacist_id)
    .where(Fill.prescription_id == bindparam("prescription_id"))
    .order_by(Fill.created_at)
)


@dataclass(frozen=True)
class FillRecord:
    fill: Fill
    site: Site
    prescription: Prescription
    technician_name: str | None
    media: Sequence[Media]
    # (fill id, fill state, Decision, the pharmacist's name) for each decided fill of the prescription.
    decisions: Sequence[Any]
    # Earlier fills of the patient's drug: loaded for pharmacists and admins, who verify.
    history: FillHistory | None = None
    # The DEA schedule (the stricter of the prescription's and the drug reference's), or None.
    schedule: str | None = None
    # How the patient was counselled (or declined), once it is recorded.
    counselling: CounsellingRecord | None = None
    # On an approved fill whose counselling is due: what the rules in force let be recorded besides a
    # video call (the patient's decline, a telephone call), and why not.
    counselling_options: CounsellingOptions | None = None
    # For a pharmacist who may decide the fill: what a decision on it would ask them to prove.
    step_up: Outlook | None = None


async def decisions_of(s: AsyncSession, prescription_id: int) -> Sequence[Any]:
    return (await s.execute(_DECISIONS_OF_PRESCRIPTION, {"prescription_id": prescription_id})).all()


async def load_record(s: AsyncSession, actor: Principal, fill_id: str) -> FillRecord | None:
    """The fill's record, or None when there is no such fill or the actor may not see it."""
    row = (await s.execute(FILL_SITE_PRESCRIPTION_TECHNICIAN, {"fill_id": fill_id})).first()
    if row is None or not actor.may_see_site(row.Site.id, row.Site.state):
        return None
    fill: Fill = row.Fill
    media = (await s.execute(MEDIA_OF_FILL, {"fill_id": fill.id})).scalars().all()
    decisions = await decisions_of(s, fill.prescription_id)
    history = None if actor.role is Role.TECHNICIAN else await history_of(s, actor, fill, row.Prescription)
    counselling = (
        (await s.execute(_COUNSELLING_OF_FILL, {"fill_id": fill.id})).scalar()
        if fill.counselling in COUNSELLING_RECORDED
        else None
    )
    schedule = await schedule_of(s, row.Prescription)
    return FillRecord(
        fill, row.Site, row.Prescription, row.display_name, media, decisions, history, schedule, counselling
    )


async def with_step_up(
    s: AsyncSession, actor: Principal, record: FillRecord, after_seconds: float
) -> FillRecord:
    """The record with what approving or rejecting the open fill would ask the pharmacist to prove
    (server/security/step_up.py), read in the record's transaction and using up nothing."""
    if actor.role is not Role.PHARMACIST or record.fill.state not in OPEN_STATES:
        return record
    read = await outlook(
        s,
        actor,
        flag_codes=[f.get("code") for f in record.fill.flags or []],
        # The stricter of the prescription's schedule and the drug reference's: Schedule II if either
        # is, as the decision reads it.
        schedules=[record.schedule],
        site_requires_factor=record.site.require_second_factor,
        after_seconds=after_seconds,
    )
    return dataclasses.replace(record, step_up=read)
