"""Counselling records: made by a counselling call's end, by a pharmacist's telephone call, or by the site
when the patient declines; and the report an inspector reads.

One record per fill. A fill's `counselling` column says where it stands (not_required, due, or the kind
of its record) and changes in the transaction that writes the record, so a list of fills shows it
without reading the records. The rules in force decide whether a telephone call counts (not where
counselling is by video) and whether the patient may decline (only where a rule says so); the checks
are server.compliance.checks. Audit events name ids and codes only; the note stays in the record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.audit import chain as audit
from server.compliance.checks import Compliance, CounsellingOptions
from server.db.conditional import update_if
from server.db.engine import Database
from server.db.models import Consultation, CounsellingRecord, Fill, Prescription, Site, User, utcnow
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.fills.lifecycle import event_payload
from server.fills.rules import (
    COUNSELLING_OF,
    COUNSELLING_RECORDED,
    DECLINED_BY,
    OPEN_STATES,
    Counselling,
    CounsellingKind,
    FillState,
)
from server.keyset import Keyset, Page
from server.realtime import journal
from server.security.principal import Principal, Role

MAX_NOTE = 2000
# The consultation kind that counsels the patient (the other is a live look at the tray).
COUNSELLING_CALL = "counsel"
# A counselling call counts for the fill it names, or else for its prescription's newest fill that is
# in the queue, in review or approved (not yet handed out).
_COUNSELLED_STATES = (*OPEN_STATES, FillState.APPROVED)
# The fills due counselling, the longest waiting first (approved earliest); the id makes the key unique.
DUE_ORDER = Keyset("counselling_due", [(Fill.decided_at, dt.datetime), (Fill.id, str)])


@dataclass(frozen=True)
class NewRecord:
    """What a pharmacist or a technician records by hand: a telephone call, or a declined counselling."""

    kind: CounsellingKind
    note: str | None = None
    duration_seconds: float | None = None
    declined_by: str | None = None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> NewRecord:
        kind = body.get("kind")
        if kind not in (CounsellingKind.PHONE, CounsellingKind.DECLINED):
            raise InvalidInput(
                "kind must be phone (a pharmacist's telephone call) or declined (the patient declined, "
                "recorded at the site); a video call's record is made when the call ends.",
                field="kind",
            )
        note = body.get("note")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise InvalidInput(f"The note must be text of at most {MAX_NOTE} characters.", field="note")
        declined_by = body.get("declined_by")
        if kind == CounsellingKind.DECLINED:
            if declined_by not in DECLINED_BY:
                raise InvalidInput(
                    "declined_by must say who declined: patient or agent (the patient's agent).",
                    field="declined_by",
                )
        else:
            declined_by = None  # a telephone call: nobody declined
        duration = body.get("duration_seconds")
        if duration is not None and (
            isinstance(duration, bool) or not isinstance(duration, int | float) or not 0 <= duration < 86400
        ):
            raise InvalidInput("duration_seconds must be a number of seconds.", field="duration_seconds")
        return cls(
            CounsellingKind(kind),
            note.strip() or None if isinstance(note, str) else None,
            float(duration) if duration is not None else None,
            declined_by,
        )


@dataclass(frozen=True)
class ReportRow:
    fill_id: str
    site_code: str
    rx_number: str
    at: dt.datetime | None
    # Who declined (patient or agent), on a declined counselling.
    declined_by: str | None
    # The technician who handed the fill out, or who recorded the decline.
    technician: str | None


@dataclass(frozen=True)
class Report:
    """Per site and date range: fills handed out, how many needed counselling, those handed out without
    a record (none, when the server did its work), and every declined counselling."""

    handed_out: int
    handed_out_required: int
    without_record: list[ReportRow]
    declined: list[ReportRow]


@dataclass(frozen=True)
class DueFill:
    """An approved fill waiting for its counselling, and what may be recorded on it besides a call."""

    fill: Fill
    site: Site
    rx_number: str
    drug: str
    strength: str
    patient_name: str
    options: CounsellingOptions


def _words(code: str) -> str:
    return code.replace("_", " ")


class CounsellingService:
    def __init__(
        self, db: Database, compliance: Compliance, *, clock: Callable[[], dt.datetime] = utcnow
    ) -> None:
        self.db = db
        self.compliance = compliance
        self.clock = clock

    async def _write(
        self,
        s: AsyncSession,
        actor: Principal | None,
        fill: Fill,
        site: Site,
        record: CounsellingRecord,
    ) -> CounsellingRecord | None:
        """Adds the record and moves the fill's status to it, audited and announced (ids only); None, and
        nothing written, when the fill got its record meanwhile."""
        status = COUNSELLING_OF[CounsellingKind(record.kind)]
        unrecorded = or_(Fill.counselling.is_(None), Fill.counselling.not_in(COUNSELLING_RECORDED))
        if not await update_if(s, fill, [unrecorded], {"counselling": status}):
            return None
        s.add(record)
        await s.flush()
        detail: dict[str, Any] = {
            "record_id": record.id,
            "kind": record.kind,
            "counselling": status,
            "has_note": record.note is not None,
        }
        for name in ("consultation_id", "pharmacist_id", "declined_by", "duration_seconds"):
            if getattr(record, name) is not None:
                detail[name] = getattr(record, name)
        await audit.append(
            self.db, s, actor, "counselling.recorded", "fill", fill.id, detail, at=self.clock()
        )
        await journal.record(
            self.db,
            s,
            "fill.counselling",
            site_id=site.id,
            us_state=site.state,
            payload=event_payload(fill, counselling=status),
        )
        return record

    async def record(self, actor: Principal, fill_id: str, new: NewRecord) -> tuple[Fill, CounsellingRecord]:
        """A pharmacist records a telephone counselling, or the site's technician that the patient (or
        their agent) declined it, on an approved fill whose counselling is due."""
        if new.kind == CounsellingKind.PHONE and actor.role is not Role.PHARMACIST:
            raise Forbidden("Only a pharmacist records counselling by telephone.")
        if new.kind == CounsellingKind.DECLINED and actor.role is not Role.TECHNICIAN:
            raise Forbidden("Only the site's technician records that the patient declined counselling.")
        async with self.db.write() as s:
            row = (
                await s.execute(
                    select(Fill, Site).join(Site, Site.id == Fill.site_id).where(Fill.id == fill_id)
                )
            ).first()
            if row is None or not actor.may_see_site(row.Site.id, row.Site.state):
                raise NotFound("No such fill.")
            fill, site = row.Fill, row.Site
            if new.kind == CounsellingKind.PHONE and site.state not in actor.licensed_states:
                raise Forbidden("You are not licensed in this site's state.", code="not_licensed")
            if fill.counselling in COUNSELLING_RECORDED:
                raise Conflict("This fill's counselling was recorded already.", code="counselling_recorded")
            if fill.state != FillState.APPROVED or fill.counselling != Counselling.DUE:
                now = _words(fill.counselling or Counselling.NOT_REQUIRED)
                raise Conflict(
                    "Counselling is recorded on an approved fill whose counselling is due; this fill is "
                    f"{fill.state} and its counselling {now}.",
                    code="counselling_not_due",
                )
            if new.kind == CounsellingKind.DECLINED:
                self.compliance.check_decline(site)
            else:
                self.compliance.check_by_phone(site)
            record = CounsellingRecord(
                fill_id=fill.id,
                site_id=site.id,
                kind=new.kind,
                pharmacist_id=actor.user_id if new.kind == CounsellingKind.PHONE else None,
                duration_seconds=new.duration_seconds,
                declined_by=new.declined_by,
                note=new.note,
                recorded_at=self.clock(),
                recorded_by=actor.user_id,
            )
            made = await self._write(s, actor, fill, site, record)
            if made is None:
                raise Conflict("This fill's counselling was recorded already.", code="counselling_recorded")
            return fill, made

    # -- a counselling call, in the consultation's own transaction (ConsultationService.outcomes) --

    async def call_ended(self, s: AsyncSession, actor: Principal | None, c: Consultation, site: Site) -> None:
        """A counselling call that connected with a pharmacist counts as the fill's video counselling:
        the fill it names, else its prescription's newest fill not yet handed out. A fill counselled
        already keeps its first record."""
        if c.kind != COUNSELLING_CALL or c.connected_at is None or c.pharmacist_id is None:
            return
        fill = await self._fill_of_call(s, c)
        if fill is None or fill.counselling in COUNSELLING_RECORDED or fill.state not in _COUNSELLED_STATES:
            return
        record = CounsellingRecord(
            fill_id=fill.id,
            site_id=site.id,
            kind=CounsellingKind.VIDEO,
            consultation_id=c.id,
            pharmacist_id=c.pharmacist_id,
            duration_seconds=c.duration_seconds,
            note=c.outcome_note,
            recorded_at=self.clock(),
            recorded_by=actor.user_id if actor is not None else None,
        )
        # A fill recorded meanwhile keeps its record; the call still ends.
        await self._write(s, actor, fill, site, record)

    async def _fill_of_call(self, s: AsyncSession, c: Consultation) -> Fill | None:
        if c.fill_id is not None:
            return await s.get(Fill, c.fill_id)
        if c.prescription_id is None:
            return None
        return (
            await s.execute(
                select(Fill)
                .where(Fill.prescription_id == c.prescription_id, Fill.state.in_(_COUNSELLED_STATES))
                .order_by(Fill.created_at.desc())
                .limit(1)
            )
        ).scalar()

    async def note_added(self, s: AsyncSession, actor: Principal, c: Consultation, site: Site) -> None:
        """The pharmacist's note, written after the call ended, becomes its counselling record's note."""
        record = (
            await s.execute(select(CounsellingRecord).where(CounsellingRecord.consultation_id == c.id))
        ).scalar()
        if record is None or record.note is not None or not c.outcome_note:
            return
        await update_if(s, record, [CounsellingRecord.note.is_(None)], {"note": c.outcome_note})
        await audit.append(
            self.db,
            s,
            actor,
            "counselling.note",
            "fill",
            record.fill_id,
            {"record_id": record.id, "consultation_id": c.id},
            at=self.clock(),
        )

    # -- reading ------------------------------------------------------------------------------------

    async def due(self, actor: Principal, *, after: tuple[Any, ...] | None, limit: int) -> Page[DueFill]:
        """A page of the approved fills waiting for counselling at the sites of the states where the
        pharmacist is licensed, the longest waiting first."""
        if actor.role is not Role.PHARMACIST:
            raise Forbidden("Only a pharmacist counsels patients.")
        if not actor.licensed_states:
            return Page([], None)
        async with self.db.read() as s:
            found = (
                await s.execute(
                    select(
                        Fill,
                        Site,
                        Prescription.rx_number,
                        Prescription.drug,
                        Prescription.strength,
                        Prescription.patient_name,
                    )
                    .join(Site, Site.id == Fill.site_id)
                    .join(Prescription, Prescription.id == Fill.prescription_id)
                    .where(
                        Fill.state == FillState.APPROVED,
                        Fill.counselling == Counselling.DUE,
                        Site.state.in_(actor.licensed_states),
                        *([DUE_ORDER.after(after)] if after is not None else []),
                    )
                    .order_by(*DUE_ORDER.order_by())
                    .limit(limit + 1)
                )
            ).all()
        page = DUE_ORDER.page(found, limit, lambda r: (r.Fill.decided_at, r.Fill.id))
        return Page(
            [
                DueFill(
                    r.Fill,
                    r.Site,
                    r.rx_number,
                    r.drug,
                    r.strength,
                    r.patient_name,
                    self.compliance.counselling_options(r.Site),
                )
                for r in page.rows
            ],
            page.next,
        )

    async def of_fill(self, actor: Principal, fill_id: str) -> CounsellingRecord | None:
        """The fill's record, for those who may see the fill."""
        async with self.db.read() as s:
            row = (
                await s.execute(
                    select(Site.id, Site.state, CounsellingRecord)
                    .select_from(Fill)
                    .join(Site, Site.id == Fill.site_id)
                    .outerjoin(CounsellingRecord, CounsellingRecord.fill_id == Fill.id)
                    .where(Fill.id == fill_id)
                )
            ).first()
        if row is None or not actor.may_see_site(row[0], row[1]):
            raise NotFound("No such fill.")
        record: CounsellingRecord | None = row[2]
        return record

    async def report(
        self, actor: Principal, site_id: int | None, start: dt.datetime, end: dt.datetime
    ) -> Report:
        """Fills handed out in [start, end) (with those that needed counselling and had no record) and
        the counselling declined in that time, at one site or all."""
        if actor.role is not Role.ADMIN:
            raise Forbidden("Only an administrator reads the counselling report.")
        technician = aliased(User)
        async with self.db.read() as s:
            if site_id is not None and await s.get(Site, site_id) is None:
                raise NotFound("No such site.")
            handed = [
                Fill.state == FillState.HANDED_OUT,
                Fill.handed_out_at >= start,
                Fill.handed_out_at < end,
                *([Fill.site_id == site_id] if site_id is not None else []),
            ]
            rows = (
                await s.execute(
                    select(
                        Fill.id,
                        Site.code,
                        Prescription.rx_number,
                        Fill.handed_out_at,
                        Fill.counselling_required,
                        CounsellingRecord.id,
                        technician.display_name,
                    )
                    .join(Site, Site.id == Fill.site_id)
                    .join(Prescription, Prescription.id == Fill.prescription_id)
                    .outerjoin(CounsellingRecord, CounsellingRecord.fill_id == Fill.id)
                    .outerjoin(technician, technician.id == Fill.handed_out_by)
                    .where(*handed)
                    .order_by(Fill.handed_out_at)
                )
            ).all()
            declined = (
                await s.execute(
                    select(CounsellingRecord, Site.code, Prescription.rx_number, technician.display_name)
                    .join(Fill, Fill.id == CounsellingRecord.fill_id)
                    .join(Site, Site.id == CounsellingRecord.site_id)
                    .join(Prescription, Prescription.id == Fill.prescription_id)
                    .outerjoin(technician, technician.id == CounsellingRecord.recorded_by)
                    .where(
                        CounsellingRecord.kind == CounsellingKind.DECLINED,
                        CounsellingRecord.recorded_at >= start,
                        CounsellingRecord.recorded_at < end,
                        *([CounsellingRecord.site_id == site_id] if site_id is not None else []),
                    )
                    .order_by(CounsellingRecord.recorded_at)
                )
            ).all()
        required = [r for r in rows if r.counselling_required]
        return Report(
            handed_out=len(rows),
            handed_out_required=len(required),
            without_record=[
                ReportRow(r[0], r.code, r.rx_number, r.handed_out_at, None, r.display_name)
                for r in required
                if r[5] is None
            ],
            declined=[
                ReportRow(
                    d.CounsellingRecord.fill_id,
                    d.code,
                    d.rx_number,
                    d.CounsellingRecord.recorded_at,
                    d.CounsellingRecord.declined_by,
                    d.display_name,
                )
                for d in declined
            ],
        )
