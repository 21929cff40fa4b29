"""Read side of fills: the pharmacist's queue, a site's fills, one fill in full. Visibility applied here."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, func, select

from server.db.engine import Database
from server.db.models import Decision, Fill, Media, Prescription, Site
from server.errors import NotFound
from server.fills.lifecycle import PRIORITY_RANK
from server.fills.live import IS_OPEN
from server.fills.records import FillRecord, load_record
from server.fills.rules import VIDEO_KINDS
from server.security.principal import Principal, Role


@dataclass(frozen=True)
class QueueRow:
    fill: Fill
    site: Site
    # What the row says the fill is: (rx number, drug, strength, patient name).
    rx: tuple[str, str, str, str]
    images: int
    videos: int


@dataclass(frozen=True)
class FillQueue:
    rows: list[QueueRow]
    # Open fills by state (all of them, not only the rows listed).
    counts: dict[str, int]
    oldest_queued_at: dt.datetime | None


@dataclass(frozen=True)
class SiteFill:
    fill: Fill
    site: Site
    decision: Decision | None


class FillQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def queue(
        self, actor: Principal, *, site_id: int | None = None, priority: str | None = None, limit: int = 200
    ) -> FillQueue:
        """Open fills the actor may verify, in queue order, with counts and the oldest waiting time."""
        if actor.role is Role.PHARMACIST and not actor.licensed_states:
            return FillQueue([], {}, None)
        where: list[ColumnElement[bool]] = [IS_OPEN]
        if actor.role is Role.PHARMACIST:
            where.append(Site.state.in_(actor.licensed_states))
        if site_id is not None:
            where.append(Fill.site_id == site_id)
        if priority is not None:
            where.append(Fill.priority == priority)
        async with self.db.read() as s:
            rows = (
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
                    .where(*where)
                    .order_by(PRIORITY_RANK, Fill.submitted_at, Fill.id)
                    .limit(limit)
                )
            ).all()
            ids = [r.Fill.id for r in rows]
            counts_by_fill = await self._media_counts(s, ids)
            by_state = dict(
                (
                    await s.execute(
                        select(Fill.state, func.count())
                        .join(Site, Site.id == Fill.site_id)
                        .where(*where)
                        .group_by(Fill.state)
                    )
                ).all()
            )
            oldest = (
                await s.execute(
                    select(func.min(Fill.submitted_at)).join(Site, Site.id == Fill.site_id).where(*where)
                )
            ).scalar()
        return FillQueue(
            [
                QueueRow(
                    r.Fill,
                    r.Site,
                    (r.rx_number, r.drug, r.strength, r.patient_name),
                    *counts_by_fill.get(r.Fill.id, (0, 0)),
                )
                for r in rows
            ],
            by_state,
            oldest,
        )

    @staticmethod
    async def _media_counts(s: Any, ids: list[str]) -> dict[str, tuple[int, int]]:
        if not ids:
            return {}
        out: dict[str, list[int]] = {}
        for fill_id, kind, n in await s.execute(
            select(Media.fill_id, Media.kind, func.count())
            .where(Media.fill_id.in_(ids))
            .group_by(Media.fill_id, Media.kind)
        ):
            counts = out.setdefault(fill_id, [0, 0])
            counts[1 if kind in VIDEO_KINDS else 0] += n
        return {k: (v[0], v[1]) for k, v in out.items()}

    async def site_fills(
        self, actor: Principal, *, state: str | None = None, limit: int = 100
    ) -> list[SiteFill]:
        """A technician's view of their site's recent fills."""
        where: list[ColumnElement[bool]] = []
        if actor.role is Role.TECHNICIAN:
            where.append(Fill.site_id == actor.site_id)
        if state:
            where.append(Fill.state == state)
        async with self.db.read() as s:
            rows = (
                await s.execute(
                    select(Fill, Site)
                    .join(Site, Site.id == Fill.site_id)
                    .where(*where)
                    .order_by(Fill.created_at.desc())
                    .limit(limit)
                )
            ).all()
            decisions = {
                d.fill_id: d
                for d in (
                    await s.execute(select(Decision).where(Decision.fill_id.in_([r.Fill.id for r in rows])))
                ).scalars()
            }
        return [SiteFill(r.Fill, r.Site, decisions.get(r.Fill.id)) for r in rows]

    async def detail(self, actor: Principal, fill_id: str) -> FillRecord:
        """One fill with its prescription, evidence, decision and earlier attempts."""
        async with self.db.read() as s:
            record = await load_record(s, actor, fill_id)
        if record is None:
            raise NotFound("No such fill.")
        return record
