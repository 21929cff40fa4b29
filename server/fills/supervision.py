"""The sites a pharmacist supervises now, read for a claim against the state rules' limit of sites.

What supervising means is server.compliance.checks' rule; this module reads it from the fills: the
sites of the fills the pharmacist holds in review under a live lease, and of the fills they decided
within the window. On PostgreSQL the pharmacist's user row is locked first, so two claims of one
pharmacist at once count each other (SQLite has one writer).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, and_, bindparam, select, union
from sqlalchemy.ext.asyncio import AsyncSession

from server.compliance.checks import Compliance, SupervisedSite
from server.db.bound import one_of
from server.db.models import Decision, Fill, Site, User
from server.fills.live import IS_OPEN, state_is
from server.fills.rules import FillState
from server.security.principal import Principal

# Built once, run with the pharmacist (`user_id`), the time (`now`) and the start of the window (`since`).
_HOLDING = (
    select(Site.id, Site.code, Site.state)
    .join(Fill, Fill.site_id == Site.id)
    .where(
        # Both: SQLite reads the partial index of open fills only where its own states are named.
        IS_OPEN,
        state_is(FillState.IN_REVIEW),
        Fill.claimed_by == bindparam("user_id"),
        Fill.lease_expires_at > bindparam("now", type_=Fill.lease_expires_at.type),
    )
)
_DECIDED = (
    select(Site.id, Site.code, Site.state)
    .join(Fill, Fill.site_id == Site.id)
    .join(Decision, and_(Decision.fill_id == Fill.id, Decision.pharmacist_id == bindparam("user_id")))
    .where(Decision.decided_at > bindparam("since", type_=Decision.decided_at.type))
)
_SUPERVISED = union(_HOLDING, _DECIDED)
_LOCK_USER = select(User.id).where(User.id == bindparam("user_id")).with_for_update()
_SITES_OF_STATES = {
    postgres: select(Site.id, Site.code, Site.state).where(
        one_of(Site.state, "states", String(), postgres=postgres)
    )
    for postgres in (False, True)
}


async def supervised_sites(
    s: AsyncSession, pharmacist_id: int, now: dt.datetime, window: dt.timedelta
) -> list[SupervisedSite]:
    """The sites the pharmacist supervises now, by code."""
    params = {"user_id": pharmacist_id, "now": now, "since": now - window}
    rows = (await s.execute(_SUPERVISED, params)).all()
    return sorted({SupervisedSite(r[0], r[1], r[2]) for r in rows}, key=lambda x: x.code)


async def _supervised_now(
    s: AsyncSession, compliance: Compliance, actor: Principal, now: dt.datetime, postgres: bool
) -> list[SupervisedSite]:
    if postgres:
        await s.execute(_LOCK_USER, {"user_id": actor.user_id})
    return await supervised_sites(s, actor.user_id, now, compliance.window)


async def check_claim(
    s: AsyncSession, compliance: Compliance, actor: Principal, site: Site, now: dt.datetime, *, postgres: bool
) -> None:
    """Conflict when claiming a fill of `site` would put the pharmacist over a state's limit of sites."""
    if compliance.limits:
        supervised = await _supervised_now(s, compliance, actor, now, postgres)
        compliance.check_claim(supervised, SupervisedSite(site.id, site.code, site.state))


async def claimable_sites(
    s: AsyncSession, compliance: Compliance, actor: Principal, now: dt.datetime, *, postgres: bool
) -> list[int] | None:
    """The sites of the pharmacist's states whose fills they may claim without going over a limit;
    None when every one of them may be claimed."""
    if not compliance.limits:
        return None
    supervised = await _supervised_now(s, compliance, actor, now, postgres)
    if compliance.all_claimable(supervised, actor.licensed_states):
        return None
    rows = (await s.execute(_SITES_OF_STATES[postgres], {"states": sorted(actor.licensed_states)})).all()
    return compliance.claimable(supervised, [SupervisedSite(r[0], r[1], r[2]) for r in rows])
