"""Read side of fills: the pharmacist's queue, a site's fills, one fill in full. Visibility applied here."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeAlias

from sqlalchemy import ColumnElement, Integer, Select, String, bindparam, func, select

from server.compliance.checks import Compliance
from server.compliance.controlled import schedules_of
from server.config import Config
from server.db.bound import one_of
from server.db.engine import Database
from server.db.models import Decision, Fill, Media, Prescription, Site
from server.errors import NotFound
from server.fills.lifecycle import PRIORITY_RANK
from server.fills.live import IS_OPEN
from server.fills.records import FillRecord, load_record, with_step_up
from server.fills.rules import PRIORITIES, VIDEO_KINDS, Counselling, FillState
from server.keyset import Keyset, Page
from server.security.principal import Principal, Role

# The queue's order: priority, then the time of submission; the id makes the key unique.
QUEUE_ORDER = Keyset("queue", [(PRIORITY_RANK, int), (Fill.submitted_at, dt.datetime), (Fill.id, str)])
# A site's fills, newest first.
SITE_FILLS_ORDER = Keyset("fills", [(Fill.created_at, dt.datetime), (Fill.id, str)], descending=True)


def _rank(priority: str) -> int:
    """A priority's place in the queue, as PRIORITY_RANK computes it in SQL."""
    return PRIORITIES.index(priority) if priority in PRIORITIES else len(PRIORITIES)


class QueueFill(NamedTuple):
    """What a row of a list of fills shows of a fill (a Fill has each of these too), as the queue
    reads it: its columns only, not a Fill entity, whose JSON columns and ORM state cost more than the
    rest of a page of hundreds of rows. A named tuple: a field of one reads in a seventh of the time
    a result row's does, and a page reads twenty of each row."""

    id: str
    state: str
    version: int
    priority: str
    product_check: str
    claimed_by: int | None
    lease_expires_at: dt.datetime | None
    created_at: dt.datetime
    submitted_at: dt.datetime | None
    queued_at: dt.datetime | None
    decided_at: dt.datetime | None
    previous_fill_id: str | None
    flags: list[Any]
    counselling: str | None
    handed_out_at: dt.datetime | None
    prescription_id: int


class QueueSite(NamedTuple):
    """What a row of a list of fills shows of its site."""

    id: int
    code: str
    name: str
    state: str


SummaryFill: TypeAlias = "Fill | QueueFill"
SummarySite: TypeAlias = "Site | QueueSite"

# A queue row's columns, flat: the fill's, then its site's, then the rest (read as plain rows, without the
# ORM, which costs a fifth of the page's reading). Where each part of a row is.
_QUEUE_FILL = [getattr(Fill, name) for name in QueueFill._fields]
_QUEUE_SITE = [getattr(Site, name) for name in QueueSite._fields]
_AT_FILL = slice(0, len(_QUEUE_FILL))
_AT_SITE = slice(_AT_FILL.stop, _AT_FILL.stop + len(_QUEUE_SITE))
_AFTER = _AT_SITE.stop


# A row's photos and videos, counted in the row's own statement: a second read of the page's media cost
# a round trip and a tenth of the page. PostgreSQL counts both in one pass over the fill's media (a
# lateral join): two subqueries read them twice, 2.3 against 3.2 thousand pages for 200 rows. SQLite
# has no lateral join, and its two subqueries read the unique index on the fill, kind and content.
_VIDEOS = sorted(VIDEO_KINDS)
_IS_VIDEO = Media.kind.in_(_VIDEOS)
_MEDIA_COUNTS = (
    select(func.count().filter(~_IS_VIDEO).label("images"), func.count().filter(_IS_VIDEO).label("videos"))
    .where(Media.fill_id == Fill.id)
    .lateral("media_counts")
)
_COUNTS = {
    True: (_MEDIA_COUNTS.c.images, _MEDIA_COUNTS.c.videos),
    False: (
        select(func.count()).where(Media.fill_id == Fill.id, ~_IS_VIDEO).scalar_subquery(),
        select(func.count()).where(Media.fill_id == Fill.id, _IS_VIDEO).scalar_subquery(),
    ),
}


@functools.cache
def _queue_statements(
    postgres: bool, *, pharmacist: bool, by_site: bool, by_priority: bool, paged: bool
) -> tuple[Select[*tuple[Any, ...]], Select[str, int, dt.datetime | None]]:
    """A queue page's statements for one combination of filters, built once with every value bound
    (`states`, `site_id`, `priority`, `limit`, and the position of `after`): the rows of the page,
    and the open fills by state with the oldest of each. Built on each request they cost a tenth of it."""
    where: list[ColumnElement[bool]] = [IS_OPEN]
    if pharmacist:
        where.append(one_of(Site.state, "states", String(), postgres=postgres))
    if by_site:
        where.append(Fill.site_id == bindparam("site_id"))
    if by_priority:
        where.append(Fill.priority == bindparam("priority"))
    rows = (
        select(
            *_QUEUE_FILL,
            *_QUEUE_SITE,
            Prescription.rx_number,
            Prescription.drug,
            Prescription.strength,
            Prescription.patient_name,
            Prescription.dea_schedule,
            Prescription.expected_ndc,
            *_COUNTS[postgres],
        )
        .join(Site, Site.id == Fill.site_id)
        .join(Prescription, Prescription.id == Fill.prescription_id)
        .where(*where, *([QUEUE_ORDER.after_bound()] if paged else []))
        .order_by(*QUEUE_ORDER.order_by())
        .limit(bindparam("limit", type_=Integer()))
    )
    counts = (
        select(Fill.state, func.count(), func.min(Fill.submitted_at))
        .join(Site, Site.id == Fill.site_id)
        .where(*where)
        .group_by(Fill.state)
    )
    return rows, counts


class QueueRow(NamedTuple):
    fill: QueueFill
    site: QueueSite
    # What the row says the fill is: (rx number, drug, strength, patient name).
    rx: tuple[str, str, str, str]
    images: int
    videos: int
    # The DEA schedule of a controlled substance, or None.
    schedule: str | None = None


@dataclass(frozen=True)
class FillQueue:
    rows: list[QueueRow]
    # Open fills by state (all of them, not only the rows listed).
    counts: dict[str, int]
    oldest_queued_at: dt.datetime | None
    # The cursor of the next page of rows (None: these are the last).
    next: str | None = None


@dataclass(frozen=True)
class SiteFill:
    fill: Fill
    site: Site
    decision: Decision | None


class FillQueries:
    def __init__(
        self,
        db: Database,
        compliance: Compliance,
        *,
        step_up_after_seconds: float = Config.step_up_after_seconds,
    ) -> None:
        self.db = db
        self.compliance = compliance
        # TP_STEP_UP_AFTER_MINUTES: a fill's record says when a decision on it asks for a proof again.
        self.step_up_after_seconds = step_up_after_seconds

    async def queue(
        self,
        actor: Principal,
        *,
        site_id: int | None = None,
        priority: str | None = None,
        after: tuple[Any, ...] | None = None,
        limit: int = 200,
    ) -> FillQueue:
        """A page of the open fills the actor may verify, in queue order (after the position `after`),
        with the counts and the oldest waiting time of them all."""
        if actor.role is Role.PHARMACIST and not actor.licensed_states:
            return FillQueue([], {}, None)
        postgres = not self.db.is_sqlite
        listed, counted = _queue_statements(
            postgres,
            pharmacist=actor.role is Role.PHARMACIST,
            by_site=site_id is not None,
            by_priority=priority is not None,
            paged=after is not None,
        )
        params: dict[str, Any] = {
            "states": sorted(actor.licensed_states),
            "site_id": site_id,
            "priority": priority,
            "limit": limit + 1,
            **(QUEUE_ORDER.bound(after) if after is not None else {}),
        }
        async with self.db.read() as s:
            # (the fill, its site, what the row says the fill is, the prescription's schedule and NDC,
            # its photos and videos)
            found = [
                (
                    QueueFill._make(row[_AT_FILL]),
                    QueueSite._make(row[_AT_SITE]),
                    row[_AFTER : _AFTER + 4],
                    row[_AFTER + 4],
                    row[_AFTER + 5],
                    row[_AFTER + 6],
                    row[_AFTER + 7],
                )
                for row in (await (await s.connection()).execute(listed, params)).all()
            ]
            page = QUEUE_ORDER.page(
                found, limit, lambda r: (_rank(r[0].priority), r[0].submitted_at, r[0].id)
            )
            schedules = await schedules_of(
                s, [(fill.prescription_id, dea, ndc) for fill, _, _, dea, ndc, _, _ in page.rows]
            )
            by_state: dict[str, int] = {}
            oldest: dt.datetime | None = None
            for state, n, first in await s.execute(counted, params):
                by_state[state] = n
                if first is not None and (oldest is None or first < oldest):
                    oldest = first
        return FillQueue(
            [
                QueueRow(fill, site, shown, images, videos, schedules.get(fill.prescription_id))
                for fill, site, shown, _, _, images, videos in page.rows
            ],
            by_state,
            oldest,
            page.next,
        )

    async def site_fills(
        self,
        actor: Principal,
        *,
        state: str | None = None,
        after: tuple[Any, ...] | None = None,
        limit: int = 100,
    ) -> Page[SiteFill]:
        """A page of a technician's view of their site's fills, newest first."""
        where: list[ColumnElement[bool]] = []
        if after is not None:
            where.append(SITE_FILLS_ORDER.after(after))
        if actor.role is Role.TECHNICIAN:
            where.append(Fill.site_id == actor.site_id)
        if state:
            where.append(Fill.state == state)
        async with self.db.read() as s:
            found = (
                await s.execute(
                    select(Fill, Site)
                    .join(Site, Site.id == Fill.site_id)
                    .where(*where)
                    .order_by(*SITE_FILLS_ORDER.order_by())
                    .limit(limit + 1)
                )
            ).all()
            page = SITE_FILLS_ORDER.page(found, limit, lambda r: (r.Fill.created_at, r.Fill.id))
            decisions = {
                d.fill_id: d
                for d in (
                    await s.execute(
                        select(Decision).where(Decision.fill_id.in_([r.Fill.id for r in page.rows]))
                    )
                ).scalars()
            }
        return Page([SiteFill(r.Fill, r.Site, decisions.get(r.Fill.id)) for r in page.rows], page.next)

    async def detail(self, actor: Principal, fill_id: str) -> FillRecord:
        """One fill with its prescription, evidence, decision and earlier attempts."""
        async with self.db.read() as s:
            record = await load_record(s, actor, fill_id)
            if record is not None:
                record = await with_step_up(s, actor, record, self.step_up_after_seconds)
        if record is None:
            raise NotFound("No such fill.")
        if record.fill.state == FillState.APPROVED and record.fill.counselling == Counselling.DUE:
            options = self.compliance.counselling_options(record.site)
            record = dataclasses.replace(record, counselling_options=options)
        return record
