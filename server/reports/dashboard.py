"""The dashboard's figures from the records: fills, decisions and the audit trail, on SQLite and PostgreSQL.

A pharmacist sees the sites of the states where they are licensed, and among pharmacists only
themselves (everyone else in those states as one row); an administrator sees everything.

A year of records must not make the dashboard slower than its first day. Each closed hour is
summarised once, by the same scan that reads the records, into dashboard_hours: its decisions
(site, pharmacist, outcome, turnaround, reasons) and, per scope of sites, its queue depth in quarter
hours. A period then reads the summaries of its closed hours and scans only its open edges (the part
of the first hour inside the period, and the last hour or so). Turnaround percentiles need every
value, so the decisions are kept value by value, in columns (a day's turnarounds packed and sorted,
which a month reads back at a fraction of a JSON list's cost); depth summaries merge because the depth
points fall on round boundaries of their step (docs/decisions/0022-history-indexes-and-rollup.md).
"""

from __future__ import annotations

import base64
import datetime as dt
import sys
from array import array
from collections import Counter, defaultdict
from typing import Any

from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.exc import IntegrityError

from server.db.engine import Database
from server.db.models import AuditEvent, DashboardHour, Decision, Fill, Site, User, utcnow
from server.errors import InvalidInput
from server.fills.live import IS_OPEN
from server.fills.rules import REJECTION_REASONS
from server.reports.figures import (
    DepthPoint,
    Spell,
    bucket_for,
    depth_series,
    percentile_of_sorted,
    review_spells,
)
from server.security.principal import Principal, Role

MAX_DAYS = 366
OTHERS = "Other pharmacists"
REVIEW_ACTIONS = ("fill.claimed", "fill.released", "fill.decided")
HOUR = dt.timedelta(hours=1)
DAY = dt.timedelta(days=1)
# The finest depth step (a one-day period's); every coarser step is a whole number of these.
SLOT = bucket_for(1)
# An hour is summarised once it ended this long ago: a decision stamped before its end has committed.
SETTLE = dt.timedelta(minutes=5)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _floor(t: dt.datetime, step: dt.timedelta) -> dt.datetime:
    return t - (t - EPOCH) % step


def _ceil(t: dt.datetime, step: dt.timedelta) -> dt.datetime:
    down = _floor(t, step)
    return down if down == t else down + step


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).isoformat()


def _summary(values: list[float]) -> dict[str, Any]:
    # Sorted once, in place: a day's values come sorted from its summary, and sorting runs that are
    # sorted already costs a merge.
    values.sort()
    return {
        "count": len(values),
        "p50_seconds": percentile_of_sorted(values, 50),
        "p90_seconds": percentile_of_sorted(values, 90),
    }


def _pack(values: list[float]) -> str:
    """Turnaround values for a day's summary: sorted, as little-endian doubles in base64. A month of
    them is read back at a few bytes' cost each, where a JSON list of numbers is parsed digit by digit;
    the values come back exactly."""
    data = array("d", sorted(values))
    if sys.byteorder == "big":
        data.byteswap()
    return base64.b64encode(data.tobytes()).decode("ascii")


def _unpack(text: str) -> list[float]:
    data = array("d")
    data.frombytes(base64.b64decode(text))
    if sys.byteorder == "big":
        data.byteswap()
    return data.tolist()


# Decisions in columns: the dashboard reads a month of them, and a row object each costs more than
# the figures. "reasons" maps a decision's index (as text, a JSON key) to its reason codes.
Columns = dict[str, Any]


def _columns() -> Columns:
    return {"site": [], "pharmacist": [], "outcome": [], "seconds": [], "reasons": {}}


# A decided fill's row as _append() takes it.
_DECIDED = (
    Fill.submitted_at,
    Fill.decided_at,
    Fill.site_id,
    Decision.outcome,
    Decision.reason_codes,
    Decision.pharmacist_id,
)


def _append(c: Columns, r: Any) -> None:
    """Adds a row of _DECIDED's columns."""
    if r.reason_codes:
        c["reasons"][str(len(c["site"]))] = list(r.reason_codes)
    c["site"].append(r.site_id)
    c["pharmacist"].append(r.pharmacist_id)
    c["outcome"].append(r.outcome)
    c["seconds"].append(
        None
        if r.submitted_at is None or r.decided_at is None
        else max(0.0, (r.decided_at - r.submitted_at).total_seconds())
    )


class Dashboard:
    def __init__(self, db: Database, *, rollup: bool = True) -> None:
        self.db = db
        # Without the rollup every figure is scanned from the records (the summaries are checked
        # against that).
        self.rollup = rollup

    def _scope(self, actor: Principal) -> list[ColumnElement[bool]]:
        if actor.role is Role.ADMIN:
            return []
        if actor.role is Role.PHARMACIST:
            states = sorted(actor.licensed_states)
            # On SQLite an expression, so that the period's time drives each scan: given the sites'
            # index on the state, SQLite (which has no statistics) read every fill of those states.
            # PostgreSQL plans from statistics, and misjudges the expression (a month took 4 times as long).
            state = Site.state.concat("") if self.db.is_sqlite else Site.state
            return [state.in_(states)]
        return [Site.id == actor.site_id]

    @staticmethod
    def _scope_key(actor: Principal) -> str:
        if actor.role is Role.ADMIN:
            return "all"
        if actor.role is Role.PHARMACIST:
            return "states:" + ",".join(sorted(actor.licensed_states))
        return f"site:{actor.site_id}"

    async def figures(self, actor: Principal, *, days: int, now: dt.datetime | None = None) -> dict[str, Any]:
        """Everything the dashboard draws for the last `days` days."""
        if not 1 <= days <= MAX_DAYS:
            raise InvalidInput(f"days must be between 1 and {MAX_DAYS}.")
        end = now or utcnow()
        start = end - dt.timedelta(days=days)
        step = bucket_for(days)
        # Depth points fall on round boundaries of the step, the last one at or after `end`.
        depth_end = _ceil(end, step)
        depth_start = depth_end - dt.timedelta(days=days)
        scope = self._scope(actor)
        empty = actor.role is Role.PHARMACIST and not actor.licensed_states
        out: dict[str, Any] = {
            "from": _iso(start),
            "to": _iso(end),
            "days": days,
            "scope": "all" if actor.role is Role.ADMIN else sorted(actor.licensed_states),
        }
        if empty:
            out.update(self._empty(depth_start, depth_end, step))
            return out
        # Hours that ended a while ago come from their summaries, which group pharmacists by state:
        # a scope of one site is scanned.
        by_states = actor.role in (Role.ADMIN, Role.PHARMACIST)
        closed = _floor(end - SETTLE, HOUR) if self.rollup and by_states else EPOCH
        async with self.db.read() as s:
            sites = {
                r.id: {"site_id": r.id, "code": r.code, "name": r.name, "state": r.state}
                for r in await s.execute(select(Site.id, Site.code, Site.name, Site.state).where(*scope))
            }
            decided = await self._decided_period(s, scope, start, end, closed)
            slots = await self._slots_period(s, scope, self._scope_key(actor), depth_start, depth_end, closed)
            open_now = (
                await s.execute(
                    select(func.count())
                    .select_from(Fill)
                    .join(Site, Site.id == Fill.site_id)
                    .where(IS_OPEN, *scope)
                )
            ).scalar_one()
            tally = _Tally(actor, set(sites))
            columns, grouped = decided
            for part in columns:
                tally.add(part)
            for day in grouped:
                tally.add_grouped(day)
            names = dict(
                (
                    await s.execute(
                        select(User.id, User.display_name).where(
                            User.id.in_([k for k in tally.by_pharmacist if k is not None])
                        )
                    )
                ).all()
            )
        out.update(tally.turnaround(sites, names))
        out["rejections_by_reason"] = tally.rejections()
        out["queue_depth"] = self._depth_view(_fold(slots, step), step)
        out["totals"]["open_now"] = open_now
        return out

    @staticmethod
    def _empty(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> dict[str, Any]:
        return {
            "totals": {"decided": 0, "approved": 0, "rejected": 0, "open_now": 0, **_summary([])},
            "turnaround_by_site": [],
            "turnaround_by_pharmacist": [],
            "rejections_by_reason": [],
            "queue_depth": Dashboard._depth_view(depth_series([], [], start, end, step), step),
        }

    # -- decisions -------------------------------------------------------------------------------

    async def _decided_period(
        self,
        s: Any,
        scope: list[ColumnElement[bool]],
        start: dt.datetime,
        end: dt.datetime,
        closed: dt.datetime,
    ) -> tuple[list[Columns], list[dict[str, Any]]]:
        """Decisions from start to end: closed whole days and hours from their summaries (days grouped
        by site, hours in columns), the edges scanned."""
        first, last = _ceil(start, HOUR), min(_floor(end, HOUR), closed)
        if first >= last:
            return [await self._decided(s, scope, start, end)], []
        day_first, day_last = _ceil(first, DAY), _floor(last, DAY)
        if day_first >= day_last:
            day_first = day_last = last
        hourly = [
            *(await self._summaries(s, "decided", first, day_first, HOUR, self._summarise_decided)),
            *(await self._summaries(s, "decided", day_last, last, HOUR, self._summarise_decided)),
        ]
        daily = await self._summaries(s, "decided-day", day_first, day_last, DAY, self._summarise_days)
        return [
            await self._decided(s, scope, start, first, upto_included=False),
            *(figures for _, figures in hourly),
            await self._decided(s, scope, last, end),
        ], [figures for _, figures in daily]

    async def _decided(
        self,
        s: Any,
        scope: list[ColumnElement[bool]],
        start: dt.datetime,
        end: dt.datetime,
        *,
        upto_included: bool = True,
    ) -> Columns:
        rows = await s.execute(
            select(*_DECIDED)
            .join(Site, Site.id == Fill.site_id)
            .join(Decision, Decision.fill_id == Fill.id)
            .where(
                Fill.decided_at >= start,
                Fill.decided_at <= end if upto_included else Fill.decided_at < end,
                *scope,
            )
        )
        out = _columns()
        for r in rows:
            _append(out, r)
        return out

    async def _summarise_decided(
        self, s: Any, start: dt.datetime, end: dt.datetime
    ) -> dict[dt.datetime, dict[str, Any]]:
        """Every site's decisions of each hour from start to end, in columns."""
        hours = {h: _columns() for h in _steps(start, end, HOUR)}
        rows = await s.execute(
            select(*_DECIDED)
            .join(Decision, Decision.fill_id == Fill.id)
            .where(Fill.decided_at >= start, Fill.decided_at < end)
        )
        for r in rows:
            _append(hours[_floor(r.decided_at, HOUR)], r)
        return hours

    async def _summarise_days(
        self, s: Any, start: dt.datetime, end: dt.datetime
    ) -> dict[dt.datetime, dict[str, Any]]:
        """Each day's decisions from start to end grouped by site, and their turnarounds by state and
        pharmacist: a month of days then merges list by list, not decision by decision."""
        days: dict[dt.datetime, dict[str, Any]] = {
            d: {"sites": {}, "pharmacists": {}} for d in _steps(start, end, DAY)
        }
        rows = await s.execute(
            select(*_DECIDED, Site.state)
            .join(Site, Site.id == Fill.site_id)
            .join(Decision, Decision.fill_id == Fill.id)
            .where(Fill.decided_at >= start, Fill.decided_at < end)
        )
        for r in rows:
            day = days[_floor(r.decided_at, DAY)]
            site = day["sites"].setdefault(str(r.site_id), {"seconds": [], "outcomes": {}, "reasons": {}})
            site["outcomes"][r.outcome] = site["outcomes"].get(r.outcome, 0) + 1
            if r.outcome == "reject":
                for code in set(r.reason_codes or ()):
                    site["reasons"][code] = site["reasons"].get(code, 0) + 1
            if r.submitted_at is None:
                continue
            seconds = max(0.0, (r.decided_at - r.submitted_at).total_seconds())
            site["seconds"].append(seconds)
            by_rph = day["pharmacists"].setdefault(r.state, {})
            by_rph.setdefault(str(r.pharmacist_id), []).append(seconds)
        for day in days.values():
            for site in day["sites"].values():
                site["seconds"] = _pack(site["seconds"])
            for by_rph in day["pharmacists"].values():
                for key, values in by_rph.items():
                    by_rph[key] = _pack(values)
        return days

    # -- summaries -------------------------------------------------------------------------------

    async def _summaries(
        self,
        s: Any,
        kind: str,
        start: dt.datetime,
        end: dt.datetime,
        step: dt.timedelta,
        summarise: Any,
        scope: str = "",
    ) -> list[tuple[dt.datetime, dict[str, Any]]]:
        """The summaries of the hours (or days) from start to end, in order; the missing ones are made
        from the records (one scan for them all) and kept."""
        if end <= start:
            return []
        stored = {
            r.hour: r.figures
            for r in (
                await s.execute(
                    select(DashboardHour.hour, DashboardHour.figures).where(
                        DashboardHour.kind == kind,
                        DashboardHour.scope == scope,
                        DashboardHour.hour >= start,
                        DashboardHour.hour < end,
                    )
                )
            )
        }
        missing = [h for h in _steps(start, end, step) if h not in stored]
        if missing:
            made = await summarise(s, missing[0], missing[-1] + step)
            fresh = {h: made[h] for h in missing}
            stored.update(fresh)
            await self._keep(kind, scope, fresh)
        return sorted(stored.items())

    async def _keep(self, kind: str, scope: str, hours: dict[dt.datetime, dict[str, Any]]) -> None:
        """Stores new summaries; one another request stored meanwhile is the same and stays."""
        try:
            async with self.db.write() as w:
                have = set(
                    (
                        await w.execute(
                            select(DashboardHour.hour).where(
                                DashboardHour.kind == kind,
                                DashboardHour.scope == scope,
                                DashboardHour.hour.in_(list(hours)),
                            )
                        )
                    ).scalars()
                )
                w.add_all(
                    DashboardHour(kind=kind, scope=scope, hour=h, figures=f)
                    for h, f in hours.items()
                    if h not in have
                )
        except IntegrityError:
            pass

    # -- figures ---------------------------------------------------------------------------------

    # -- queue depth -----------------------------------------------------------------------------

    async def _slots_period(
        self,
        s: Any,
        scope: list[ColumnElement[bool]],
        key: str,
        start: dt.datetime,
        end: dt.datetime,
        closed: dt.datetime,
    ) -> list[DepthPoint]:
        """The depth in quarter hours from start to end: closed whole days and hours from their
        summaries, the edges scanned."""
        first, last = _ceil(start, HOUR), min(_floor(end, HOUR), closed)
        if first >= last:
            return await self._depth(s, scope, start, end, SLOT)
        day_first, day_last = _ceil(first, DAY), _floor(last, DAY)
        if day_first >= day_last:
            day_first = day_last = last

        def summarise(step: dt.timedelta) -> Any:
            async def made(s: Any, a: dt.datetime, b: dt.datetime) -> dict[dt.datetime, dict[str, Any]]:
                points = await self._depth(s, scope, a, b, SLOT)
                per = int(step / SLOT)
                return {
                    t: {
                        "slots": [
                            [p.open, p.in_review, p.peak_open, p.peak_in_review]
                            for p in points[n * per : (n + 1) * per]
                        ]
                    }
                    for n, t in enumerate(_steps(a, b, step))
                }

            return made

        out = await self._depth(s, scope, start, first, SLOT)
        for a, b, step, kind in (
            (first, day_first, HOUR, "depth"),
            (day_first, day_last, DAY, "depth-day"),
            (day_last, last, HOUR, "depth"),
        ):
            for t, figures in await self._summaries(s, kind, a, b, step, summarise(step), key):
                out.extend(DepthPoint(t + SLOT * (n + 1), *slot) for n, slot in enumerate(figures["slots"]))
        out.extend(await self._depth(s, scope, last, end, SLOT))
        return out

    async def _depth(
        self,
        s: Any,
        scope: list[ColumnElement[bool]],
        start: dt.datetime,
        end: dt.datetime,
        step: dt.timedelta,
    ) -> list[DepthPoint]:
        if end <= start:
            return []
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
        return depth_series(open_spells, review, start, end, step)

    @staticmethod
    def _depth_view(points: list[DepthPoint], step: dt.timedelta) -> dict[str, Any]:
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


class _Tally:
    """Turnaround values by site, by pharmacist and in all, outcomes and rejection reasons, of the
    decisions at the sites in scope."""

    def __init__(self, actor: Principal, sites: set[int]) -> None:
        self.actor = actor
        self.sites = sites
        self.every_pharmacist = actor.role is Role.ADMIN
        self.all: list[float] = []
        self.by_site: dict[int, list[float]] = defaultdict(list)
        self.by_pharmacist: dict[int | None, list[float]] = defaultdict(list)
        self.outcomes: Counter[str] = Counter()
        self.reasons: Counter[str] = Counter()

    def add(self, c: Columns) -> None:
        sites, me, everyone = self.sites, self.actor.user_id, self.every_pharmacist
        by_site, by_rph, values = self.by_site, self.by_pharmacist, self.all
        outcomes: list[str] = []
        for site, rph, outcome, seconds in zip(
            c["site"], c["pharmacist"], c["outcome"], c["seconds"], strict=True
        ):
            if site not in sites:
                continue
            outcomes.append(outcome)
            if seconds is None:
                continue
            values.append(seconds)
            by_site[site].append(seconds)
            # A pharmacist sees colleagues only as one aggregate row.
            by_rph[rph if everyone or rph == me else None].append(seconds)
        self.outcomes.update(outcomes)
        for index, codes in c["reasons"].items():
            i = int(index)
            if c["outcome"][i] == "reject" and c["site"][i] in sites:
                self.reasons.update(set(codes))

    def add_grouped(self, day: dict[str, Any]) -> None:
        """Adds a day's summary: its decisions grouped by site, turnarounds by state and pharmacist."""
        sites = self.sites
        for key, site in day["sites"].items():
            if int(key) not in sites:
                continue
            seconds = _unpack(site["seconds"])
            self.by_site[int(key)].extend(seconds)
            self.all.extend(seconds)
            for outcome, n in site["outcomes"].items():
                self.outcomes[outcome] += n
            for code, n in site["reasons"].items():
                self.reasons[code] += n
        me, everyone, states = self.actor.user_id, self.every_pharmacist, self.actor.licensed_states
        for state, by_rph in day["pharmacists"].items():
            if not everyone and state not in states:
                continue
            for key, values in by_rph.items():
                rph = int(key)
                self.by_pharmacist[rph if everyone or rph == me else None].extend(_unpack(values))

    def turnaround(self, sites: dict[int, dict[str, Any]], names: dict[int, str]) -> dict[str, Any]:
        site_rows = sorted(
            ({**sites[k], **_summary(v)} for k, v in self.by_site.items()),
            key=lambda x: (x["state"], x["code"]),
        )
        rph_rows = sorted(
            (
                {"pharmacist_id": k, "name": names.get(k, "") if k is not None else OTHERS, **_summary(v)}
                for k, v in self.by_pharmacist.items()
            ),
            key=lambda x: (x["pharmacist_id"] is None, x["name"]),
        )
        return {
            "totals": {
                "decided": sum(self.outcomes.values()),
                "approved": self.outcomes.get("approve", 0),
                "rejected": self.outcomes.get("reject", 0),
                **_summary(self.all),
            },
            "turnaround_by_site": site_rows,
            "turnaround_by_pharmacist": rph_rows,
        }

    def rejections(self) -> list[dict[str, Any]]:
        return [
            {"code": code, "label": REJECTION_REASONS.get(code, code), "count": n}
            for code, n in sorted(self.reasons.items(), key=lambda kv: (-kv[1], kv[0]))
        ]


def _steps(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> list[dt.datetime]:
    out, t = [], start
    while t < end:
        out.append(t)
        t += step
    return out


def _fold(slots: list[DepthPoint], step: dt.timedelta) -> list[DepthPoint]:
    """Quarter-hour points as points of a coarser step: the counts at its end, the highest inside."""
    per = int(step / SLOT)
    out = []
    for i in range(0, len(slots), per):
        part = slots[i : i + per]
        out.append(
            DepthPoint(
                part[-1].at,
                part[-1].open,
                part[-1].in_review,
                max(p.peak_open for p in part),
                max(p.peak_in_review for p in part),
            )
        )
    return out
