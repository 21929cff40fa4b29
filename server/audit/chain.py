"""Appending to, verifying and exporting the hash-chained audit trail."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import multiprocessing
import os
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import String, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.bound import at_most
from server.db.engine import Database
from server.db.models import AuditEvent

GENESIS = "0" * 64


class Actor(Protocol):
    """Whoever made a change, as the trail records them: the trail needs no more of who is calling."""

    @property
    def user_id(self) -> int: ...

    @property
    def label(self) -> str: ...


def _canonical(row: AuditEvent) -> bytes:
    body = {
        "id": row.id,
        "at": row.at.astimezone(dt.UTC).isoformat(timespec="microseconds"),
        "actor_id": row.actor_id,
        "actor": row.actor,
        "action": row.action,
        "entity_type": row.entity_type,
        "entity_id": row.entity_id,
        "detail": row.detail,
        "prev_hash": row.prev_hash,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), default=str).encode()


def row_hash(row: AuditEvent) -> str:
    return hashlib.sha256(_canonical(row)).hexdigest()


_LAST_ROW = select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(at_most(1))


async def append(
    db: Database,
    session: AsyncSession,
    actor: Actor | None,
    action: str,
    entity_type: str,
    entity_id: str | int,
    detail: dict[str, Any] | None = None,
    *,
    at: dt.datetime | None = None,
) -> AuditEvent:
    """Appends one event in the caller's transaction; the journal lock orders the chain.

    The transaction holds the lock from its first append to its end, so its later appends follow the
    row it appended last without reading the chain's tail again.
    """
    tails = await db.journal_tails(session)
    last = tails.audit()
    if last is None:
        # A known end is known under the lock: this transaction's first append took it, or SQLite's
        # single writer holds it. On PostgreSQL taking the lock reads the end.
        await db.lock_journal(session)
        last = tails.audit()
    if last is None:
        tail = (await session.execute(_LAST_ROW)).first()
        last = (tail.id, tail.hash) if tail else (0, GENESIS)
    row = AuditEvent(
        id=last[0] + 1,
        at=at or dt.datetime.now(dt.UTC),
        actor_id=actor.user_id if actor else None,
        actor=actor.label if actor else "system",
        action=action,
        entity_type=entity_type,
        entity_id=str(entity_id),
        detail=detail or {},
        prev_hash=last[1],
        hash="",
    )
    # The id is part of the hash, so a deleted row leaves a visible gap in the chain.
    row.hash = row_hash(row)
    # Not flushed here: the id is ours, so the row is written with the transaction's next statement
    # or its commit, together with any other event appended meanwhile.
    session.add(row)
    tails.audit_appended((row.id, row.hash))
    return row


@dataclass(frozen=True)
class ChainReport:
    """What a walk of the chain found, and the rows it walked: first_id to last_id (None when it found
    no row to walk), after the row resumed_after when it began at a checkpoint instead of the start."""

    ok: bool
    rows: int
    first_broken_id: int | None = None
    problem: str | None = None
    first_id: int | None = None
    last_id: int | None = None
    resumed_after: int | None = None


# Rows read per statement while verifying: large reads keep the database streaming and the loop busy.
VERIFY_BATCH = 20_000
# PostgreSQL formats the time as isoformat() does, and hands over the detail's JSON text: both cost the
# database's process, beside ours, rather than this loop.
_PG_PAGE = """
SELECT id, to_char(at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"+00:00"'), actor_id, actor, action,
       entity_type, entity_id, detail::text, prev_hash, hash
FROM audit_events WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3
"""
# The chain's canonical form (see _canonical), written out: the same bytes as json.dumps of the body
# with sorted keys, without building a dict a row.
_encode = json.encoder.encode_basestring_ascii
_encode_detail = json.JSONEncoder(sort_keys=True, separators=(",", ":"), default=str).encode
Row = tuple[int, str, int | None, str, str, str, str, str, str, str]


async def _pages_postgres(db: Database, after: int, upto: int) -> AsyncGenerator[list[Row]]:
    """The rows after `after` up to `upto` in id order, a page at a time, each page asked for before
    the one before it is checked, so that the database reads it meanwhile."""
    async with db.read_engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        statement = await raw.prepare(_PG_PAGE)
        pending = asyncio.ensure_future(statement.fetch(after, upto, VERIFY_BATCH))
        try:
            while True:
                page = await pending
                if not page:
                    return
                if len(page) == VERIFY_BATCH:
                    pending = asyncio.ensure_future(statement.fetch(page[-1][0], upto, VERIFY_BATCH))
                    await asyncio.sleep(0)  # the next statement goes out before this page is checked
                yield page
                if len(page) < VERIFY_BATCH:
                    return
        finally:
            # A walk that stopped at a broken row leaves the connection with no statement under way.
            if not pending.done():
                await asyncio.wait([pending])


# The time and the detail as their stored text, as on PostgreSQL: SQLAlchemy keeps a time on SQLite as
# "YYYY-MM-DD HH:MM:SS.ffffff" (UTC here, see UTCDateTime), isoformat() less its "T" and offset.
_SQLITE_COLUMNS = [
    type_coerce(c, String) if c.name in ("at", "detail") else c for c in AuditEvent.__table__.c
]


def _sqlite_time(stored: str) -> str:
    if len(stored) == 26 and stored[10] == " ":
        return f"{stored[:10]}T{stored[11:]}+00:00"
    return dt.datetime.fromisoformat(stored).replace(tzinfo=dt.UTC).isoformat(timespec="microseconds")


async def _pages_sqlite(db: Database, after: int, upto: int) -> AsyncGenerator[list[Row]]:
    table = AuditEvent.__table__
    while True:
        async with db.read() as s:
            page = (
                await s.execute(
                    select(*_SQLITE_COLUMNS)
                    .where(table.c.id > after, table.c.id <= upto)
                    .order_by(table.c.id)
                    .limit(VERIFY_BATCH)
                )
            ).all()
        if not page:
            return
        yield [(r[0], _sqlite_time(r[1]), *r[2:]) for r in page]
        after = page[-1][0]


async def _reference_hash(db: Database, row_id: int) -> str:
    """The row's hash as append computed it, from the row read whole: the judge when the fast form
    disagrees."""
    async with db.read() as s:
        row = await s.get(AuditEvent, row_id)
    return row_hash(row) if row is not None else ""


def _hash_parsed(
    rid: int,
    at: str,
    actor_id: int | None,
    actor: str,
    action: str,
    etype: str,
    eid: str,
    detail: str,
    prev: str,
) -> str:
    """The canonical form's hash with the detail parsed and written canonically (rows written before
    ChainJSON stored details with spaces, in their keys' order)."""
    body = (
        f'{{"action":{_encode(action)},"actor":{_encode(actor)},'
        f'"actor_id":{"null" if actor_id is None else actor_id},"at":"{at}",'
        f'"detail":{_encode_detail(json.loads(detail))},"entity_id":{_encode(eid)},'
        f'"entity_type":{_encode(etype)},"id":{rid},"prev_hash":"{prev}"}}'
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass(frozen=True)
class _Stretch:
    """What a walk of the rows from one id up to another found: how many were intact, the first row's
    id and link (the hash it names as its previous row's), the last intact row's id and hash, and the
    first broken row with why."""

    rows: int
    first_id: int | None
    first_link: str | None
    last_id: int | None
    last_hash: str | None
    broken_id: int | None = None
    problem: str | None = None


async def _walk(db: Database, first: int, last: int) -> _Stretch:
    """Walks the rows `first` to `last`. The first row found is taken as it is, its id and link
    reported: where it joins what comes before is for `verify` to check."""
    pages = _pages_sqlite(db, first - 1, last) if db.is_sqlite else _pages_postgres(db, first - 1, last)
    expected: int | None = None
    prev_hash: str | None = None
    count = 0
    first_id: int | None = None
    first_link: str | None = None
    sha256 = hashlib.sha256

    def broken(row_id: int, problem: str) -> _Stretch:
        return _Stretch(count, first_id, first_link, row_id - 1, prev_hash, row_id, problem)

    async with contextlib.aclosing(pages):
        async for page in pages:
            for rid, at, actor_id, actor, action, etype, eid, detail, prev, stored in page:
                if first_id is None:
                    first_id, first_link = rid, prev
                    expected, prev_hash = rid, prev
                if rid != expected:
                    return broken(rid, f"row {expected} is missing (deleted)")
                if prev != prev_hash:
                    return broken(rid, "link to the previous row is broken")
                # The detail as stored is its canonical form (ChainJSON); a row written before it was
                # has its detail read and written again (_hash_parsed).
                body = (
                    f'{{"action":{_encode(action)},"actor":{_encode(actor)},'
                    f'"actor_id":{"null" if actor_id is None else actor_id},"at":"{at}","detail":{detail},'
                    f'"entity_id":{_encode(eid)},"entity_type":{_encode(etype)},"id":{rid},'
                    f'"prev_hash":"{prev}"}}'
                )
                if (
                    sha256(body.encode()).hexdigest() != stored
                    and _hash_parsed(rid, at, actor_id, actor, action, etype, eid, detail, prev) != stored
                    and await _reference_hash(db, rid) != stored
                ):
                    return broken(rid, "row content does not match its hash (edited)")
                count += 1
                prev_hash, expected = stored, rid + 1
    return _Stretch(count, first_id, first_link, None if expected is None else expected - 1, prev_hash)


def _walk_in_process(url: str, first: int, last: int) -> _Stretch:
    """A stretch walked in a process of its own (its own connection)."""

    async def run() -> _Stretch:
        db = Database(url, jit=True)
        try:
            return await _walk(db, first, last)
        finally:
            await db.dispose()

    return asyncio.run(run())


# A PostgreSQL walk of at least twice this many rows is cut into stretches walked side by side, one
# process each (no more than the machine's cores): reading and hashing a row is the walk's whole cost,
# and a row's hash depends on that row alone. Where two stretches meet, the link is checked here.
STRETCH_ROWS = 1_000_000


def _stretches(first: int, last: int) -> list[tuple[int, int]]:
    n = min(os.cpu_count() or 1, (last - first + 1) // STRETCH_ROWS)
    if n < 2:
        return [(first, last)]
    size = -(-(last - first + 1) // n)
    return [(a, min(a + size - 1, last)) for a in range(first, last + 1, size)]


async def verify(
    db: Database, *, after: tuple[int, str] | None = None, side_by_side: bool = False
) -> ChainReport:
    """Walks the chain from the start, or from a verified row `after` (id, hash), up to the head as it
    was when the walk began; names the first row that was edited, removed or reordered.

    `side_by_side`: a long walk on PostgreSQL takes every core (STRETCH_ROWS), as `tp-server audit
    verify` may; a server verifying on request leaves them to its requests."""
    last = await _head(db)
    start_id, prev_hash = after if after is not None else (0, GENESIS)
    resumed = after[0] if after is not None else None
    if last is None or last <= start_id:
        return ChainReport(True, 0, resumed_after=resumed)
    spans = _stretches(start_id + 1, last) if side_by_side and not db.is_sqlite else [(start_id + 1, last)]
    if len(spans) == 1:
        walked = [await _walk(db, start_id + 1, last)]
    else:
        loop = asyncio.get_running_loop()
        spawn = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(len(spans), mp_context=spawn) as pool:
            walked = list(
                await asyncio.gather(
                    *(loop.run_in_executor(pool, _walk_in_process, db.url, a, b) for a, b in spans)
                )
            )

    # The stretches in order, each joined to the one before as a row is to the row before it.
    expected, link, count = start_id + 1, prev_hash, 0

    def broken(row_id: int, problem: str, walked_before: int) -> ChainReport:
        return ChainReport(False, walked_before + 1, row_id, problem, start_id + 1, row_id, resumed)

    for stretch in walked:
        if stretch.first_id is None:
            continue  # every row of it is gone: the next row found says so
        if stretch.first_id != expected:
            return broken(stretch.first_id, f"row {expected} is missing (deleted)", count)
        if stretch.first_link != link:
            return broken(stretch.first_id, "link to the previous row is broken", count)
        if stretch.broken_id is not None:
            return broken(stretch.broken_id, stretch.problem or "broken", count + stretch.rows)
        count += stretch.rows
        assert stretch.last_id is not None and stretch.last_hash is not None
        expected, link = stretch.last_id + 1, stretch.last_hash
    return ChainReport(True, count, None, None, start_id + 1, expected - 1, resumed)


async def _head(db: Database) -> int | None:
    async with db.read() as s:
        tail = (await s.execute(_LAST_ROW)).first()
    return tail.id if tail else None


EXPORT_COLUMNS = [
    "id",
    "at",
    "actor_id",
    "actor",
    "action",
    "entity_type",
    "entity_id",
    "detail",
    "prev_hash",
    "hash",
]


async def export_csv(db: Database, lo: dt.datetime, hi: dt.datetime, out: io.TextIOBase | Any) -> int:
    """Writes the events from `lo` up to `hi` as CSV; returns the row count."""
    writer = csv.writer(out)
    writer.writerow(EXPORT_COLUMNS)
    n = 0
    async with db.read() as s:
        result = await s.stream(
            select(AuditEvent).where(AuditEvent.at >= lo, AuditEvent.at < hi).order_by(AuditEvent.id)
        )
        async for row in result.scalars():
            writer.writerow(
                [
                    row.id,
                    row.at.isoformat(),
                    row.actor_id if row.actor_id is not None else "",
                    row.actor,
                    row.action,
                    row.entity_type,
                    row.entity_id,
                    json.dumps(row.detail, sort_keys=True),
                    row.prev_hash,
                    row.hash,
                ]
            )
            n += 1
    return n
