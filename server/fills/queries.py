"""Read side of fills: the pharmacist's queue, a site's fills, one fill in full. Visibility applied here."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import ColumnElement, func, select

from server.db.engine import Database
from server.db.models import Decision, Fill, Media, Prescription, Site
from server.errors import NotFound
from server.fills.lifecycle import PRIORITY_RANK
from server.fills.records import FillRecord, load_record
from server.fills.rules import OPEN_STATES, VIDEO_KINDS, FillState
from server.security.principal import Principal, Role


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None


def _num(v: Any) -> float | None:
    return None if v is None else float(v)


def fill_summary(fill: Fill, site: Site) -> dict[str, Any]:
    """A queue row: enough to choose and route, nothing about the patient."""
    return {
        "id": fill.id,
        "state": fill.state,
        "version": fill.version,
        "priority": fill.priority,
        "site": {"id": site.id, "code": site.code, "name": site.name, "state": site.state},
        "product_check": fill.product_check,
        "claimed_by": fill.claimed_by,
        "lease_expires_at": _iso(fill.lease_expires_at),
        "created_at": _iso(fill.created_at),
        "submitted_at": _iso(fill.submitted_at),
        "queued_at": _iso(fill.queued_at),
        "decided_at": _iso(fill.decided_at),
        "previous_fill_id": fill.previous_fill_id,
    }


def media_view(m: Media) -> dict[str, Any]:
    return {
        "id": m.id,
        "kind": m.kind,
        "sha256": m.sha256,
        "content_type": m.content_type,
        "bytes": m.bytes,
        "width": m.width,
        "height": m.height,
        "duration_seconds": m.duration_seconds,
        "variants": sorted(m.variants),
        "url": f"/api/v1/media/{m.id}",
        "quality": {k: v for k, v in m.quality.items() if k != "barcodes"},
    }


def prescription_view(rx: Prescription) -> dict[str, Any]:
    """The prescription in full: patient data, shown only to callers allowed to see the fill."""
    return {
        "id": rx.id,
        "site_id": rx.site_id,
        "rx_number": rx.rx_number,
        "patient_name": rx.patient_name,
        "patient_dob": rx.patient_dob.isoformat(),
        "prescriber": rx.prescriber,
        "drug": rx.drug,
        "strength": rx.strength,
        "dosage_form": rx.dosage_form,
        "expected_ndc": rx.expected_ndc,
        "quantity": _num(rx.quantity),
        "days_supply": rx.days_supply,
        "directions": rx.directions,
        "dea_schedule": rx.dea_schedule,
        "fill_type": rx.fill_type,
        "created_at": _iso(rx.created_at),
    }


def decision_view(d: Decision, pharmacist_name: str | None) -> dict[str, Any]:
    return {
        "outcome": d.outcome,
        "reason_codes": d.reason_codes,
        "note": d.note,
        "decided_at": _iso(d.decided_at),
        "pharmacist": {"id": d.pharmacist_id, "name": pharmacist_name},
    }


class FillQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def queue(
        self, actor: Principal, *, site_id: int | None = None, priority: str | None = None, limit: int = 200
    ) -> dict[str, Any]:
        """Open fills the actor may verify, in queue order, with counts and the oldest waiting time."""
        if actor.role is Role.PHARMACIST and not actor.licensed_states:
            return {"fills": [], "counts": {}, "oldest_queued_at": None}
        where: list[ColumnElement[bool]] = [Fill.state.in_(OPEN_STATES)]
        if actor.role is Role.PHARMACIST:
            where.append(Site.state.in_(actor.licensed_states))
        if site_id is not None:
            where.append(Fill.site_id == site_id)
        if priority is not None:
            where.append(Fill.priority == priority)
        async with self.db.read() as s:
            rows = (
                await s.execute(
                    select(Fill, Site)
                    .join(Site, Site.id == Fill.site_id)
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
        fills = []
        for r in rows:
            item = fill_summary(r.Fill, r.Site)
            item["images"], item["videos"] = counts_by_fill.get(r.Fill.id, (0, 0))
            fills.append(item)
        return {"fills": fills, "counts": by_state, "oldest_queued_at": _iso(oldest)}

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
    ) -> list[dict[str, Any]]:
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
        out = []
        for r in rows:
            item = fill_summary(r.Fill, r.Site)
            d = decisions.get(r.Fill.id)
            item["decision"] = decision_view(d, None) if d else None
            out.append(item)
        return out

    async def detail(self, actor: Principal, fill_id: str) -> dict[str, Any]:
        """One fill with its prescription, evidence, decision and earlier attempts."""
        async with self.db.read() as s:
            record = await load_record(s, actor, fill_id)
        if record is None:
            raise NotFound("No such fill.")
        return detail_view(record)


def detail_view(record: FillRecord) -> dict[str, Any]:
    """A fill in full: its prescription, evidence, decision and earlier attempts."""
    fill = record.fill
    decided = next((d for d in record.decisions if d.id == fill.id), None)
    earlier = [d for d in record.decisions if d.id != fill.id and d.state == FillState.REJECTED]
    out = fill_summary(fill, record.site)
    out.update(
        prescription=prescription_view(record.prescription),
        technician={"id": fill.technician_id, "name": record.technician_name},
        barcodes=fill.barcodes,
        counted_quantity=_num(fill.counted_quantity),
        product_check_detail=fill.product_check_detail,
        override_reason=fill.override_reason,
        media=[media_view(m) for m in record.media],
        decision=decision_view(decided.Decision, decided.display_name) if decided else None,
        earlier_rejections=[
            {
                "fill_id": e.id,
                "decided_at": _iso(e.Decision.decided_at),
                "reason_codes": e.Decision.reason_codes,
                "note": e.Decision.note,
            }
            for e in earlier
        ],
    )
    return out
