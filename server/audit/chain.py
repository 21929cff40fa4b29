"""Appending to, verifying and exporting the hash-chained audit trail."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import io
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

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


_LAST_ROW = select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1)


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
        # single writer holds it.
        await db.lock_journal(session)
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
    ok: bool
    rows: int
    first_broken_id: int | None = None
    problem: str | None = None


async def _rows(db: Database, batch: int = 2000) -> AsyncIterator[AuditEvent]:
    after = 0
    while True:
        async with db.read() as s:
            rows = (
                (
                    await s.execute(
                        select(AuditEvent).where(AuditEvent.id > after).order_by(AuditEvent.id).limit(batch)
                    )
                )
                .scalars()
                .all()
            )
        if not rows:
            return
        for r in rows:
            yield r
        after = rows[-1].id


async def verify(db: Database) -> ChainReport:
    """Walks the chain from the start; names the first row that was edited, removed or reordered."""
    prev_hash, expected_id, count = GENESIS, 1, 0
    async for row in _rows(db):
        count += 1
        if row.id != expected_id:
            return ChainReport(False, count, row.id, f"row {expected_id} is missing (deleted)")
        if row.prev_hash != prev_hash:
            return ChainReport(False, count, row.id, "link to the previous row is broken")
        if row_hash(row) != row.hash:
            return ChainReport(False, count, row.id, "row content does not match its hash (edited)")
        prev_hash, expected_id = row.hash, row.id + 1
    return ChainReport(True, count)


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


async def export_csv(db: Database, start: dt.date, end: dt.date, out: io.TextIOBase | Any) -> int:
    """Writes events from start to end (inclusive, UTC days) as CSV; returns the row count."""
    lo = dt.datetime.combine(start, dt.time(), dt.UTC)
    hi = dt.datetime.combine(end + dt.timedelta(days=1), dt.time(), dt.UTC)
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
