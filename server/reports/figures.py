"""Pure computations behind the dashboard: percentiles and the queue-depth sweep. No I/O."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0..100), interpolated as PostgreSQL's percentile_cont does; None if empty."""
    return percentile_of_sorted(sorted(values), q)


def percentile_of_sorted(data: Sequence[float], q: float) -> float | None:
    """percentile() of values already in ascending order, without sorting them again."""
    if not data:
        return None
    if len(data) == 1:
        return float(data[0])
    rank = (len(data) - 1) * q / 100.0
    lo = math.floor(rank)
    hi = math.ceil(rank)
    return float(data[lo] + (data[hi] - data[lo]) * (rank - lo))


@dataclass(frozen=True)
class Spell:
    """A time a fill spent in some condition: from start until end (None: still in it)."""

    start: dt.datetime
    end: dt.datetime | None


@dataclass(frozen=True)
class DepthPoint:
    """Counts at the end of a step, and the highest counts reached during it."""

    at: dt.datetime
    open: int
    in_review: int
    peak_open: int
    peak_in_review: int


def bucket_for(days: int) -> dt.timedelta:
    """Sampling step for a period: about a hundred points, on round boundaries."""
    if days <= 1:
        return dt.timedelta(minutes=15)
    if days <= 7:
        return dt.timedelta(hours=1)
    if days <= 31:
        return dt.timedelta(hours=6)
    return dt.timedelta(days=1)


def _deltas(spells: Iterable[Spell], lo: dt.datetime) -> tuple[int, list[tuple[dt.datetime, int]]]:
    """Spells as (count already in at lo, later +1/-1 changes)."""
    base = 0
    changes: list[tuple[dt.datetime, int]] = []
    for sp in spells:
        if sp.end is not None and sp.end <= lo:
            continue
        if sp.start <= lo:
            base += 1
        else:
            changes.append((sp.start, +1))
        if sp.end is not None:
            changes.append((sp.end, -1))
    # At one instant, leaving before arriving keeps the peak honest.
    changes.sort(key=lambda c: (c[0], c[1]))
    return base, changes


def depth_series(
    open_spells: Sequence[Spell],
    review_spells: Sequence[Spell],
    start: dt.datetime,
    end: dt.datetime,
    step: dt.timedelta,
) -> list[DepthPoint]:
    """Open fills and fills in review at the end of each step from start to end, with the peaks in it."""
    if end <= start or step <= dt.timedelta(0):
        return []
    open_now, open_changes = _deltas(open_spells, start)
    review_now, review_changes = _deltas(review_spells, start)
    points: list[DepthPoint] = []
    i = j = 0
    t = start
    while t < end:
        upto = min(t + step, end)
        peak, review_peak = open_now, review_now
        while i < len(open_changes) and open_changes[i][0] <= upto:
            open_now += open_changes[i][1]
            peak = max(peak, open_now)
            i += 1
        while j < len(review_changes) and review_changes[j][0] <= upto:
            review_now += review_changes[j][1]
            review_peak = max(review_peak, review_now)
            j += 1
        points.append(DepthPoint(upto, open_now, review_now, peak, review_peak))
        t = upto
    return points


def review_spells(events: Iterable[tuple[str, dt.datetime, str]]) -> list[Spell]:
    """Spells in review from (fill id, at, action) audit rows in time order: a claim opens one,
    a release or a decision closes it; a claim while in review (an expired lease retaken) continues it."""
    open_since: dict[str, dt.datetime] = {}
    spells: list[Spell] = []
    for fill_id, at, action in events:
        if action == "fill.claimed":
            open_since.setdefault(fill_id, at)
        elif action in ("fill.released", "fill.decided"):
            began = open_since.pop(fill_id, None)
            if began is not None:
                spells.append(Spell(began, at))
    spells.extend(Spell(began, None) for began in open_since.values())
    return spells
