"""The dashboard's figures from the records: fills, decisions and the audit trail, on SQLite and PostgreSQL.

A pharmacist sees the sites of the states where they are licensed, and among pharmacists only
themselves (everyone else in those states as one row); an administrator sees everything.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select

from server.db.engine import Database
from server.db.models import AuditEvent, Decision, Fill, Site, User, utcnow
from server.errors import InvalidInput
from server.fills.rules import OPEN_STATES, REJECTION_REASONS
from server.reports.figures import Spell, bucket_for, depth_series, percentile, review_spells
from server.security.principal import Principal, Role

MAX_DAYS = 366
OTHERS = "Other pharmacists"
REVIEW_ACTIONS = ("fill.claimed", "fill.released", "fill.decided")


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "p50_seconds": percentile(values, 50),
        "p90_seconds": percentile(values, 90),
    }


class Dashboard:
    def __init__(self, db: Database) -> None:
        self.db = db

    def _scope(self, actor: Principal) -> list[ColumnElement[bool]]:
        if actor.role is Role.ADMIN:
            return []
        if actor.role is Role.PHARMACIST:
            return [Site.state.in_(sorted(actor.licensed_states))]
        return [Site.id == actor.site_id]

    async def figures(self, actor: Principal, *, days: int, now: dt.datetime | None = None) -> dict[str, Any]:
        """Everything the dashboard draws for the last `days` days."""
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInput(f"days must be between 1 and {MAX_DAYS}.")
        end = now or utcnow()
        start = end - dt.timedelta(days=days)
        scope = self._scope(actor)
        empty = actor.role is Role.PHARMACIST and not actor.licensed_states
        out: dict[str, Any] = {
            "from": _iso(start),
            "to": _iso(end),
            "days": days,
            "scope": "all" if actor.role is Role.ADMIN else sorted(actor.licensed_states),
        }
        if empty:
            out.update(self._empty(start, end, days))
            return out
        async with self.db.read() as s:
            decided = await self._decided(s, scope, start, end)
            depth = await self._depth(s, scope, start, end, bucket_for(days))
            open_now = (
                await s.execute(
                    select(func.count())
                    .select_from(Fill)
                    .join(Site, Site.id == Fill.site_id)
                    .where(Fill.state.in_(OPEN_STATES), *scope)
                )
            ).scalar_one()
        out.update(self._turnaround(actor, decided))
        out["rejections_by_reason"] = self._rejections(decided)
        out["queue_depth"] = depth
        out["totals"]["open_now"] = open_now
        return out

    @staticmethod
    def _empty(start: dt.datetime, end: dt.datetime, days: int) -> dict[str, Any]:
        step = bucket_for(days)
        return {
            "totals": {"decided": 0, "approved": 0, "rejected": 0, "open_now": 0, **_summary([])},
            "turnaround_by_site": [],
            "turnaround_by_pharmacist": [],
            "rejections_by_reason": [],
            "queue_depth": {
                "bucket_seconds": int(step.total_seconds()),
                "points": [
                    {"at": _iso(p.at), "open": 0, "in_review": 0, "peak_open": 0, "peak_in_review": 0}
                    for p in depth_series([], [], start, end, step)
                ],
            },
        }

    async def _decided(
        self, s: Any, scope: list[ColumnElement[bool]], start: dt.datetime, end: dt.datetime
    ) -> list[Any]:
        rows = await s.execute(
            select(
                Fill.submitted_at,
                Fill.decided_at,
                Site.id.label("site_id"),
                Site.code,
                Site.name,
                Site.state,
                Decision.outcome,
                Decision.reason_codes,
                Decision.pharmacist_id,
                User.display_name,
            )
            .join(Site, Site.id == Fill.site_id)
            .join(Decision, Decision.fill_id == Fill.id)
            .join(User, User.id == Decision.pharmacist_id)
            .where(Fill.decided_at >= start, Fill.decided_at <= end, *scope)
        )
        return list(rows.all())

    @staticmethod
    def _turnaround(actor: Principal, decided: list[Any]) -> dict[str, Any]:
        all_values: list[float] = []
        by_site: dict[int, list[float]] = defaultdict(list)
        sites: dict[int, dict[str, Any]] = {}
        by_rph: dict[int | None, list[float]] = defaultdict(list)
        names: dict[int | None, str] = {}
        outcomes: Counter[str] = Counter()
        for r in decided:
            outcomes[r.outcome] += 1
            if r.submitted_at is None or r.decided_at is None:
                continue
            seconds = max(0.0, (r.decided_at - r.submitted_at).total_seconds())
            all_values.append(seconds)
            by_site[r.site_id].append(seconds)
            sites[r.site_id] = {"site_id": r.site_id, "code": r.code, "name": r.name, "state": r.state}
            # A pharmacist sees colleagues only as one aggregate row.
            key = r.pharmacist_id if actor.role is Role.ADMIN or r.pharmacist_id == actor.user_id else None
            by_rph[key].append(seconds)
            names[key] = r.display_name if key is not None else OTHERS
        site_rows = sorted(
            ({**sites[k], **_summary(v)} for k, v in by_site.items()), key=lambda x: (x["state"], x["code"])
        )
        rph_rows = sorted(
            ({"pharmacist_id": k, "name": names[k], **_summary(v)} for k, v in by_rph.items()),
            key=lambda x: (x["pharmacist_id"] is None, x["name"]),
        )
        return {
            "totals": {
                "decided": sum(outcomes.values()),
                "approved": outcomes.get("approve", 0),
                "rejected": outcomes.get("reject", 0),
                **_summary(all_values),
            },
            "turnaround_by_site": site_rows,
            "turnaround_by_pharmacist": rph_rows,
        }

    @staticmethod
    def _rejections(decided: list[Any]) -> list[dict[str, Any]]:
        counts: Counter[str] = Counter()
        for r in decided:
            if r.outcome == "reject":
                counts.update(set(r.reason_codes or []))
        return [
            {"code": code, "label": REJECTION_REASONS.get(code, code), "count": n}
            for code, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        ]

    async def _depth(
        self,
        s: Any,
        scope: list[ColumnElement[bool]],
        start: dt.datetime,
        end: dt.datetime,
        step: dt.timedelta,
    ) -> dict[str, Any]:
        fills = (
            await s.execute(
                select(Fill.id, Fill.queued_at, Fill.decided_at)
                .join(Site, Site.id == Fill.site_id)
                .where(
                    Fill.queued_at.is_not(None),
                    Fill.queued_at <= end,
                    or_(Fill.decided_at.is_(None), Fill.decided_at >= start),
                    *scope,
                )
            )
        ).all()
        open_spells = [Spell(f.queued_at, f.decided_at) for f in fills]
        review: list[Spell] = []
        if fills:
            ids = {f.id for f in fills}
            earliest = min(f.queued_at for f in fills)
            # The audit trail has every claim, release and decision, with the domain's clock.
            rows = await s.execute(
                select(AuditEvent.entity_id, AuditEvent.at, AuditEvent.action)
                .where(
                    AuditEvent.entity_type == "fill",
                    AuditEvent.action.in_(REVIEW_ACTIONS),
                    AuditEvent.at >= earliest,
                    AuditEvent.at <= end,
                )
                .order_by(AuditEvent.id)
            )
            review = review_spells((r.entity_id, r.at, r.action) for r in rows if r.entity_id in ids)
        points = depth_series(open_spells, review, start, end, step)
        return {
            "bucket_seconds": int(step.total_seconds()),
            "points": [
                {
                    "at": _iso(p.at),
                    "open": p.open,
                    "in_review": p.in_review,
                    "peak_open": p.peak_open,
                    "peak_in_review": p.peak_in_review,
                }
                for p in points
            ],
        }
