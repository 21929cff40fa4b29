"""The compliance view of one site for an admin: the rules in force with their sources, and figures from
the system's own records that show whether they are followed."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select

from server.compliance.checks import Compliance
from server.db.engine import Database
from server.db.models import (
    AuditEvent,
    CounsellingRecord,
    Decision,
    Fill,
    License,
    Prescription,
    Site,
    User,
)
from server.errors import Forbidden, NotFound
from server.fills.rules import Counselling, CounsellingKind, FillState
from server.fills.supervision import supervised_sites
from server.security.principal import Principal, Role

# Controlled-substance fills are counted over this window.
CONTROLLED_DAYS = 30


async def site_compliance(
    db: Database, compliance: Compliance, actor: Principal, site_id: int, now: dt.datetime
) -> dict[str, Any]:
    """The site's rules in force (its own or its state's, each with its source) and its figures now."""
    if actor.role is not Role.ADMIN:
        raise Forbidden("Only an administrator sees a site's compliance.")
    async with db.read() as s:
        site = await s.get(Site, site_id)
        if site is None:
            raise NotFound("No such site.")
        # Each pharmacist licensed in the site's state who supervises it now, with all they supervise.
        pharmacists = (
            await s.execute(
                select(User.id, User.display_name)
                .join(License, License.user_id == User.id)
                .where(License.state == site.state, User.role == Role.PHARMACIST, User.active.is_(True))
                .order_by(User.display_name)
            )
        ).all()
        supervising = []
        for user_id, name in pharmacists:
            sites = await supervised_sites(s, user_id, now, compliance.window)
            if any(x.id == site.id for x in sites):
                limit = compliance.limit_of(sites)
                supervising.append(
                    {
                        "pharmacist": name,
                        "sites_now": [x.code for x in sites],
                        "limit": limit.sites if limit else None,
                    }
                )
        since = now - dt.timedelta(days=CONTROLLED_DAYS)
        controlled = (
            await s.execute(
                select(Prescription.dea_schedule, func.count())
                .join(Fill, Fill.prescription_id == Prescription.id)
                .where(
                    Fill.site_id == site.id,
                    Fill.created_at >= since,
                    Prescription.dea_schedule.is_not(None),
                )
                .group_by(Prescription.dea_schedule)
            )
        ).all()
        # Counselling: approved fills waiting for it now, and the declines since the month began (UTC).
        due = (
            await s.execute(
                select(func.count()).where(
                    Fill.site_id == site.id,
                    Fill.state == FillState.APPROVED,
                    Fill.counselling == Counselling.DUE,
                )
            )
        ).scalar_one()
        month = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        declined = (
            await s.execute(
                select(func.count()).where(
                    CounsellingRecord.site_id == site.id,
                    CounsellingRecord.kind == CounsellingKind.DECLINED,
                    CounsellingRecord.recorded_at >= month,
                )
            )
        ).scalar_one()
        oldest_fill = (
            await s.execute(select(func.min(Fill.created_at)).where(Fill.site_id == site.id))
        ).scalar_one()
        oldest_decision = (
            await s.execute(
                select(func.min(Decision.decided_at))
                .join(Fill, Fill.id == Decision.fill_id)
                .where(Fill.site_id == site.id)
            )
        ).scalar_one()
        oldest_audit = (await s.execute(select(func.min(AuditEvent.at)))).scalar_one()
    rules = compliance.rules_for(site)
    return {
        "site": {"id": site.id, "code": site.code, "name": site.name, "state": site.state},
        "rules": rules.shown() if rules else None,
        "site_rules": rules is not None and compliance.book.sites.get(site.code) is rules,
        "supervision_minutes": compliance.window.total_seconds() / 60,
        "figures": {
            "supervising_now": supervising,
            "counselling": {"fills_due": due, "declined_this_month": declined},
            "controlled_fills": {
                "days": CONTROLLED_DAYS,
                "by_schedule": {schedule: n for schedule, n in sorted(controlled)},
            },
            "oldest_record": {
                "fill": _iso(oldest_fill),
                "decision": _iso(oldest_decision),
                "audit_event": _iso(oldest_audit),
            },
        },
    }


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t else None
