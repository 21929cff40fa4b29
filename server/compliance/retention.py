"""Retention: removing what the rules let go, keeping what they, or their silence, keep.

Each kind of record is kept for the longest period of the rules in force at its site (its own rules,
or its state's) that apply to it: a fill's photos and videos are verification records and part of the
prescription record, a prescription's original is the prescription record (and what its data entry
was verified against), a call recording is a recording. A period runs from the record's last use: for
a fill's media and a prescription's original, the latest decision about the prescription (any of its
fills, its data-entry verification), none being still to come; for a recording, the end of the call.
Where one of the periods that apply is `unknown`, the record is kept, and the report says so: a
guessed period could destroy a record a board requires.

A removed medium keeps its row, its SHA-256, kind, size and hashes (decisions name it, and a photo
reused from an old fill is still found); its stored files are deleted, and `removed_at` says when. A
stored file that a medium still kept has too (content addressing stores a file once: a photo sent
again, a poster like another video's) stays; `media_files` says which media have a file.

A file is counted removed only when the store had it. A store that has none of the files due is not
this deployment's (a folder or bucket named wrongly, a shared volume not mounted): the run is refused
before anything is marked (`check_store`), or the media would be recorded gone while their files stay
forever where the run did not look. Some files missing is what a run stopped between deleting and
marking leaves: they are gone, their media are marked removed, and the report says how many. The event
journal is a delivery record, not a compliance record: it is trimmed to TP_EVENT_JOURNAL_DAYS. Audit
rows and decisions are never removed here (see docs/decisions/0021).

Each kind is removed by one function (`remove_fill_media`, `remove_originals`, `remove_recordings`,
`trim_event_journal`), the one place a kind's deletion can change (a partition dropped, say). An
applied run that removed anything appends one `retention.applied` audit row with counts and id and date
ranges per kind and site, never content; a dry run writes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row, Select, and_, delete, exists, func, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from server.audit.chain import append as audit_append
from server.compliance.rules import RuleBook, StateRules
from server.db.engine import Database
from server.db.models import (
    Consultation,
    Event,
    Fill,
    Media,
    MediaFile,
    Prescription,
    PrescriptionVerification,
    Site,
)
from server.db.partitions import drop_partitions_before
from server.media.store import MediaStore

FILL_MEDIA = "fill_media"
ORIGINALS = "prescription_originals"
RECORDINGS = "call_recordings"
EVENT_JOURNAL = "event_journal"
MEDIA_KINDS = (FILL_MEDIA, ORIGINALS, RECORDINGS)
# The rules whose periods apply to each kind of media: the longest of them is kept.
PERIOD_FIELDS: dict[str, tuple[str, ...]] = {
    FILL_MEDIA: ("retention_verification_days", "retention_prescription_days"),
    ORIGINALS: ("retention_prescription_days", "retention_verification_days"),
    RECORDINGS: ("retention_recording_days",),
}
JOURNAL_SETTING = "TP_EVENT_JOURNAL_DAYS"
# Media removed per transaction: their files are deleted first, then their rows marked.
BATCH = 200
# Events deleted per transaction.
JOURNAL_BATCH = 10_000
# Files deleted at once (threads syncing directories, or requests to the bucket).
DELETING_AT_ONCE = 8
# PostgreSQL: one applied run at a time across server instances.
RETENTION_LOCK_KEY = 0x7470_7265_7465_6E74


@dataclass(frozen=True)
class Period:
    """How long a kind of record is kept at a site: the longest period of the rules that apply, or
    None when one of them is unknown (then `unknown` names them and `read` says what was read)."""

    days: int | None
    rule: str | None = None
    source: str | None = None
    site_rule: str | None = None
    unknown: tuple[str, ...] = ()
    read: tuple[str, ...] = ()

    @property
    def known(self) -> bool:
        return self.days is not None


def period(rules: StateRules | None, fields: Iterable[str]) -> Period:
    """The period a record is kept under these rules: the longest of `fields`; unknown when any of
    them is (the longest could be the unknown one), or when there are no rules for the state."""
    fields = tuple(fields)
    if rules is None:
        return Period(None, unknown=fields, read=("no rules for this state in the state rules file",))
    unknown = tuple(f for f in fields if not rules[f].known)
    if unknown:
        return Period(None, unknown=unknown, read=tuple(rules[f].read or "" for f in unknown))
    longest = max(fields, key=lambda f: (rules[f].value, -fields.index(f)))
    rule = rules[longest]
    assert isinstance(rule.value, int)  # every field is known here
    # A site's own period where its state's is unknown has no rule number: the site rules file is it.
    source = rule.source or ("the site's own rule (TP_SITE_RULES)" if rule.site else None)
    return Period(rule.value, longest, source, rule.site)


@dataclass
class Line:
    """One kind of record at one site (or the whole journal): its period, what is due, what was
    removed, what is kept and why."""

    kind: str
    site: str | None
    state: str | None
    period: Period
    cutoff: dt.datetime | None = None
    due: int = 0
    removed: int = 0
    first_id: int | None = None
    last_id: int | None = None
    oldest: dt.datetime | None = None
    newest: dt.datetime | None = None
    kept_unknown: int = 0
    files_removed: int = 0
    files_shared: int = 0
    # Files due that the store no longer had when they were to be deleted.
    files_missing: int = 0

    def start_removing(self) -> None:
        """From now on the ranges are those of the records removed, no longer of those due."""
        self.first_id = self.last_id = self.oldest = self.newest = None

    def took(self, rows: Sequence[Row[int, dt.datetime]]) -> None:
        """Counts records removed (id, date), widening the ranges to take them in."""
        for record_id, stored in rows:
            at = _aware(stored)
            self.removed += 1
            self.first_id = record_id if self.first_id is None else min(self.first_id, record_id)
            self.last_id = record_id if self.last_id is None else max(self.last_id, record_id)
            if at is not None:
                self.oldest = at if self.oldest is None else min(self.oldest, at)
                self.newest = at if self.newest is None else max(self.newest, at)

    def took_range(
        self, rows: int, ids: tuple[int | None, int | None], dates: tuple[dt.datetime, dt.datetime]
    ) -> None:
        """Counts records removed a whole range at a time (a month's partition dropped)."""
        self.removed += rows
        first, last = ids
        if first is not None and last is not None:
            self.first_id = first if self.first_id is None else min(self.first_id, first)
            self.last_id = last if self.last_id is None else max(self.last_id, last)
        self.oldest = dates[0] if self.oldest is None else min(self.oldest, dates[0])
        self.newest = dates[1] if self.newest is None else max(self.newest, dates[1])

    def shown(self) -> dict[str, Any]:
        p = self.period
        out: dict[str, Any] = {
            "kind": self.kind,
            "site": self.site,
            "state": self.state,
            "days": p.days,
            "rule": p.rule,
            "source": p.source,
            "cutoff": _iso(self.cutoff),
            "due": self.due,
            "removed": self.removed,
            "ids": [self.first_id, self.last_id] if self.first_id is not None else None,
            "dates": [_iso(self.oldest), _iso(self.newest)] if self.oldest is not None else None,
        }
        if p.site_rule:
            out["site_rule"] = p.site_rule
        if not p.known:
            out["kept_because_unknown"] = self.kept_unknown
            out["unknown"] = list(p.unknown)
            out["read"] = list(p.read)
        if self.files_removed or self.files_shared:
            out["files_removed"] = self.files_removed
            out["files_kept_shared"] = self.files_shared
        if self.files_missing:
            out["files_missing"] = self.files_missing
        return out


@dataclass
class Report:
    """What a run found due (and, applied, removed), per kind and site, and what it keeps whole."""

    now: dt.datetime
    applied: bool
    store: str
    lines: list[Line] = field(default_factory=list)
    kept: list[dict[str, Any]] = field(default_factory=list)
    audit_row: int | None = None
    skipped: str | None = None

    @property
    def removed(self) -> int:
        return sum(line.removed for line in self.lines)

    def shown(self) -> dict[str, Any]:
        return {
            "at": _iso(self.now),
            "applied": self.applied,
            "media_store": self.store,
            "skipped": self.skipped,
            "lines": [line.shown() for line in self.lines],
            "kept": self.kept,
            "audit_row": self.audit_row,
        }


class WrongMediaStore(Exception):
    """The media store holds none of the files due: not this deployment's store. Nothing was marked."""

    def __init__(self, where: str, files: int) -> None:
        super().__init__(
            f"{where} holds none of the {files} files due for removal, so it is not this deployment's "
            "media store: name the data folder with --data-dir (or TP_DATA_DIR), or the bucket with "
            "TP_S3_BUCKET; nothing was removed"
        )
        self.where, self.files = where, files


def _iso(at: dt.datetime | None) -> str | None:
    return at.isoformat(timespec="seconds") if at is not None else None


# -- which media are due -------------------------------------------------------------------------------

Due = Select[int, int, dt.datetime]
# (media id, site id, stored at) of a kind's media not removed yet at these sites; with a cutoff, only
# those whose period ran out before it.
Selector = Callable[[list[int], dt.datetime | None], Due]


def _fill_media(site_ids: list[int], cutoff: dt.datetime | None) -> Due:
    q = (
        select(Media.id, Fill.site_id, Media.created_at)
        .join(Fill, Fill.id == Media.fill_id)
        .join(Prescription, Prescription.id == Fill.prescription_id)
        .where(Media.removed_at.is_(None), Fill.site_id.in_(site_ids))
    )
    # Part of the prescription record too: due once the whole prescription is (so a refill decided
    # since, or a fill not decided yet, keeps the photos of its earlier fills).
    return q if cutoff is None else q.where(*_prescription_done(cutoff))


def _originals(site_ids: list[int], cutoff: dt.datetime | None) -> Due:
    q = (
        select(Media.id, Prescription.site_id, Media.created_at)
        .join(Prescription, Prescription.id == Media.prescription_id)
        .where(Media.removed_at.is_(None), Prescription.site_id.in_(site_ids))
    )
    return q if cutoff is None else q.where(*_prescription_done(cutoff))


def _prescription_done(cutoff: dt.datetime) -> list[ColumnElement[bool]]:
    """A prescription whose period ran out before the cutoff: counted from its latest decision (a fill
    or a data-entry verification), with none still to come (an undecided fill, a verification under
    way)."""
    fill = aliased(Fill)  # not the fill whose media are asked about: any fill of the prescription
    undecided_or_since = exists().where(
        fill.prescription_id == Prescription.id, or_(fill.decided_at.is_(None), fill.decided_at >= cutoff)
    )
    verified_since = exists().where(
        PrescriptionVerification.prescription_id == Prescription.id,
        PrescriptionVerification.decided_at >= cutoff,
    )
    return [
        Prescription.created_at < cutoff,
        Prescription.verification_state.notin_(("awaiting_verification", "in_review")),
        ~undecided_or_since,
        ~verified_since,
    ]


def _recordings(site_ids: list[int], cutoff: dt.datetime | None) -> Due:
    q = (
        select(Media.id, Consultation.site_id, Media.created_at)
        .join(Consultation, Consultation.id == Media.consultation_id)
        .where(Media.removed_at.is_(None), Consultation.site_id.in_(site_ids))
    )
    return q if cutoff is None else q.where(Consultation.ended_at < cutoff)


SELECTORS: dict[str, Selector] = {FILL_MEDIA: _fill_media, ORIGINALS: _originals, RECORDINGS: _recordings}


# -- the run -------------------------------------------------------------------------------------------


async def run(
    db: Database,
    store: MediaStore,
    book: RuleBook,
    *,
    now: dt.datetime,
    journal_days: int,
    apply: bool = False,
) -> Report:
    """What is due under the rules in force at `now`; with `apply`, removes it and records that in
    the audit trail. A dry run changes nothing. WrongMediaStore when `store` has none of the files due."""
    report = Report(now, apply, store.where())
    async with _one_run(db, apply) as running:
        if not running:
            report.skipped = "another retention run is under way"
            return report
        sites = await _sites(db)
        report.kept = _kept_whole(book, sites)
        for kind in MEDIA_KINDS:
            report.lines.extend(await _plan_media(db, book, sites, kind, now))
        report.lines.append(await _plan_journal(db, now, journal_days))
        await check_store(db, store, report.lines)
        if apply:
            await _apply(db, store, report)
    return report


async def _apply(db: Database, store: MediaStore, report: Report) -> None:
    """Removes what each line has due; what was removed is recorded even when a removal fails (the
    bucket out of reach): the row then says the run did not complete."""
    complete = False
    try:
        for line in report.lines:
            if line.due and line.kind == EVENT_JOURNAL:
                await trim_event_journal(db, line)
            elif line.due:
                await REMOVERS[line.kind](db, store, line, report.now)
        complete = True
    finally:
        if report.removed:
            report.audit_row = await _record(db, report, complete=complete)


@contextlib.asynccontextmanager
async def _one_run(db: Database, apply: bool) -> AsyncIterator[bool]:
    """True while this is the only applied run (PostgreSQL: an advisory lock held for the run, so two
    server instances' daily runs do not both work); a dry run and SQLite's single server always run."""
    if not apply or db.is_sqlite:
        yield True
        return
    async with db.write_engine.connect() as conn:
        got = bool(
            (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": RETENTION_LOCK_KEY})).scalar()
        )
        await conn.commit()
        try:
            yield got
        finally:
            if got:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": RETENTION_LOCK_KEY})
                await conn.commit()


async def _sites(db: Database) -> list[Site]:
    async with db.read() as s:
        return list((await s.execute(select(Site).order_by(Site.code))).scalars())


async def _plan_media(
    db: Database, book: RuleBook, sites: list[Site], kind: str, now: dt.datetime
) -> list[Line]:
    """A line per site: what is due (or, where the period is unknown, what is kept because of it)."""
    lines = {}
    by_cutoff: dict[dt.datetime | None, list[int]] = {}
    for site in sites:
        p = period(book.for_site(site.code, site.state), PERIOD_FIELDS[kind])
        cutoff = now - dt.timedelta(days=p.days) if p.days is not None else None
        lines[site.id] = Line(kind, site.code, site.state, p, cutoff)
        by_cutoff.setdefault(cutoff, []).append(site.id)
    select_due = SELECTORS[kind]
    async with db.read() as s:
        for cutoff, site_ids in by_cutoff.items():
            due = select_due(site_ids, cutoff).subquery()
            counted = await s.execute(
                select(
                    due.c.site_id,
                    func.count(),
                    func.min(due.c.id),
                    func.max(due.c.id),
                    func.min(due.c.created_at),
                    func.max(due.c.created_at),
                ).group_by(due.c.site_id)
            )
            for site_id, n, first, last, oldest, newest in counted:
                line = lines[site_id]
                if cutoff is None:
                    line.kept_unknown = n
                else:
                    line.due, line.first_id, line.last_id = n, first, last
                    line.oldest, line.newest = _aware(oldest), _aware(newest)
    return [lines[site.id] for site in sites]


def _aware(at: dt.datetime | None) -> dt.datetime | None:
    """Aggregates bypass the column type: SQLite answers a naive datetime (or text)."""
    if at is None:
        return None
    if isinstance(at, str):
        at = dt.datetime.fromisoformat(at)
    return at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)


async def _plan_journal(db: Database, now: dt.datetime, days: int) -> Line:
    cutoff = now - dt.timedelta(days=days)
    line = Line(EVENT_JOURNAL, None, None, Period(days, JOURNAL_SETTING), cutoff)
    async with db.read() as s:
        n, first, last, oldest, newest = (
            await s.execute(
                select(
                    func.count(),
                    func.min(Event.id),
                    func.max(Event.id),
                    func.min(Event.at),
                    func.max(Event.at),
                ).where(_journal_due(cutoff))
            )
        ).one()
    line.due, line.first_id, line.last_id = n, first, last
    line.oldest, line.newest = _aware(oldest), _aware(newest)
    return line


def _journal_due(cutoff: dt.datetime) -> ColumnElement[bool]:
    # The newest event stays whatever its age: new ids continue from it, so a cursor never goes back.
    newest = select(func.max(Event.id)).scalar_subquery()
    return and_(Event.at < cutoff, Event.id < newest)


def _kept_whole(book: RuleBook, sites: list[Site]) -> list[dict[str, Any]]:
    """The records a run never removes, with the periods that apply to them."""
    audit = []
    for site in sites:
        p = period(book.for_site(site.code, site.state), ("retention_audit_days",))
        audit.append({"site": site.code, "state": site.state, "days": p.days, "source": p.source})
    return [
        {
            "kind": "audit_trail",
            "why": "one hash chain for every site: its rows are kept, so `tp-server audit verify` proves "
            "it whole from its first row",
            "periods": audit,
        },
        {
            "kind": "decisions",
            "why": "decisions, fills, prescriptions and consultations are kept as rows; only the "
            "stored files of media are removed",
        },
        {"kind": "surveillance_video", "why": "not held by the server"},
    ]


# -- removing ------------------------------------------------------------------------------------------


async def remove_fill_media(db: Database, store: MediaStore, line: Line, now: dt.datetime) -> None:
    """Removes the stored files of a site's fill photos and videos past their period."""
    await _remove_media(db, store, line, now, _fill_media)


async def remove_originals(db: Database, store: MediaStore, line: Line, now: dt.datetime) -> None:
    """Removes the stored pages of a site's prescription originals past their period."""
    await _remove_media(db, store, line, now, _originals)


async def remove_recordings(db: Database, store: MediaStore, line: Line, now: dt.datetime) -> None:
    """Removes a site's call recordings past their period."""
    await _remove_media(db, store, line, now, _recordings)


REMOVERS = {FILL_MEDIA: remove_fill_media, ORIGINALS: remove_originals, RECORDINGS: remove_recordings}


async def _site_id(db: Database, code: str | None) -> int:
    async with db.read() as s:
        return int((await s.execute(select(Site.id).where(Site.code == code))).scalar_one())


@dataclass(frozen=True)
class _Batch:
    """Media due, a batch of them: their ids, the files to delete (no medium kept has them) and how
    many of their files a kept medium has too."""

    ids: list[int]
    files: list[str]
    shared: int


async def _due_batches(db: Database, line: Line, due: Selector) -> AsyncGenerator[_Batch, None]:
    """A line's media due, a batch at a time, each read after the batch before is done with (removed,
    when removing)."""
    site_id = await _site_id(db, line.site)
    after = 0
    while True:
        async with db.read() as s:
            # By key: each batch starts after the last, never reading the media of the batches before.
            page = due([site_id], line.cutoff).where(Media.id > after).order_by(Media.id).limit(BATCH)
            rows = (await s.execute(page.add_columns(Media.variants))).all()
            if not rows:
                return
            ids = [media_id for media_id, *_ in rows]
            after = ids[-1]
            files = {str(v["sha256"]) for *_, variants in rows for v in variants.values()}
            kept_files = await _files_of_kept_media(s, ids, files)
        yield _Batch(ids, sorted(files - kept_files), len(files & kept_files))


async def check_store(db: Database, store: MediaStore, lines: list[Line]) -> None:
    """Raises WrongMediaStore when `store` has none of the files due (and some are): a run removing
    them would find nothing, yet mark their media removed. Stops at the first batch with a file found,
    so a run with the right store asks about a few hundred files at most, a dry run as an applied one
    (the applied run counts the files already missing as it deletes)."""
    missing = 0
    for line in lines:
        if line.kind not in MEDIA_KINDS or not line.due:
            continue
        async with contextlib.aclosing(_due_batches(db, line, SELECTORS[line.kind])) as batches:
            async for batch in batches:
                if await _count_files(store.exists, batch.files):
                    return
                missing += len(batch.files)
    if missing:
        raise WrongMediaStore(store.where(), missing)


async def _remove_media(db: Database, store: MediaStore, line: Line, now: dt.datetime, due: Selector) -> None:
    """Batch by batch: the files first, then the rows marked, so a run stopped between the two (the
    bucket out of reach, say) finds the same media due next time and completes them. A file the store
    no longer has (deleted by such a run) is counted missing, not removed; its medium is marked."""
    line.start_removing()
    async with contextlib.aclosing(_due_batches(db, line, due)) as batches:
        async for batch in batches:
            removed = await _count_files(store.delete, batch.files)
            line.files_removed += removed
            line.files_missing += len(batch.files) - removed
            line.files_shared += batch.shared
            async with db.write() as s:
                marked = await s.execute(
                    update(Media)
                    .where(Media.id.in_(batch.ids), Media.removed_at.is_(None))
                    .values(removed_at=now)
                    .returning(Media.id, Media.created_at)
                )
                line.took(marked.all())


async def _count_files(ask: Callable[[str], Awaitable[bool]], files: list[str]) -> int:
    """How many of `files` `ask` (the store's exists or delete) answers True for, asked a few at a
    time: each waits for its own answer (a directory synced, a bucket's reply), and those waits
    overlap."""
    pending = iter(files)
    count = 0

    async def worker() -> None:
        nonlocal count
        for sha in pending:
            answer = await ask(sha)
            count += answer  # not `count += await ...`: that reads count before waiting

    await asyncio.gather(*(worker() for _ in range(min(DELETING_AT_ONCE, len(files)))))
    return count


async def _files_of_kept_media(s: AsyncSession, batch: list[int], files: set[str]) -> set[str]:
    """Of these files, those a medium outside the batch and not removed has too: they stay."""
    kept = await s.execute(
        select(MediaFile.sha256)
        .join(Media, Media.id == MediaFile.media_id)
        .where(
            MediaFile.sha256.in_(sorted(files)),
            Media.removed_at.is_(None),
            Media.id.notin_(batch),
        )
        .distinct()
    )
    return set(kept.scalars())


async def trim_event_journal(db: Database, line: Line) -> None:
    """Deletes realtime events older than the journal's window, except the newest event, a batch per
    transaction: writers appending events never wait long for it. No journal lock is needed: the
    newest row is never deleted, and appending reads only the newest."""
    assert line.cutoff is not None
    line.start_removing()
    if not db.is_sqlite:
        await _drop_journal_months(db, line, line.cutoff)
    while True:
        oldest = select(Event.id).where(_journal_due(line.cutoff)).order_by(Event.id).limit(JOURNAL_BATCH)
        async with db.write() as s:
            removed = (
                await s.execute(
                    delete(Event).where(Event.id.in_(oldest.scalar_subquery())).returning(Event.id, Event.at)
                )
            ).all()
        line.took(removed)
        if len(removed) < JOURNAL_BATCH:
            return


async def _drop_journal_months(db: Database, line: Line, cutoff: dt.datetime) -> None:
    """On PostgreSQL the journal's whole months past the window go a partition at a time instead of row
    by row (server.db.partitions); the rest of a month, and rows in the DEFAULT partition, are deleted
    by the caller. The newest event's month is never dropped: new ids continue from it."""
    async with db.read() as s:
        newest = (await s.execute(select(Event.at).order_by(Event.id.desc()).limit(1))).scalar()
    if newest is None:
        return
    cutoff = min(cutoff, _aware(newest) or cutoff)
    month = cutoff.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    async with db.read() as s:
        first, last = (
            await s.execute(select(func.min(Event.id), func.max(Event.id)).where(Event.at < month))
        ).one()
    dropped = await drop_partitions_before(db, "events", cutoff)
    if dropped:
        rows = sum(p.rows for p in dropped)
        line.took_range(rows, (first, last), (dropped[0].start, dropped[-1].end))


async def _record(db: Database, report: Report, *, complete: bool) -> int:
    """One audit row of what an applied run removed: counts and ranges, never content."""
    removed: dict[str, Any] = {}
    for line in report.lines:
        if not line.removed:
            continue
        entry = {
            "removed": line.removed,
            "ids": [line.first_id, line.last_id],
            "dates": [_iso(line.oldest), _iso(line.newest)],
            "rule": line.period.rule,
            "days": line.period.days,
        }
        if line.kind == EVENT_JOURNAL:
            removed[line.kind] = entry
        else:
            entry["files_removed"] = line.files_removed
            entry["files_missing"] = line.files_missing
            removed.setdefault(line.kind, {})[line.site or ""] = entry
    kept = {
        line.kind + ":" + (line.site or ""): {
            "kept_because_unknown": line.kept_unknown,
            "unknown": list(line.period.unknown),
        }
        for line in report.lines
        if not line.period.known and line.kept_unknown
    }
    async with db.write() as s:
        row = await audit_append(
            db,
            s,
            None,
            "retention.applied",
            "retention",
            report.now.date().isoformat(),
            {
                "at": _iso(report.now),
                "complete": complete,
                "media_store": report.store,
                "removed": removed,
                "kept": kept,
            },
        )
    return row.id
