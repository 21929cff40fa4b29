"""On PostgreSQL a long walk of the audit chain is cut into stretches walked side by side: it finds
what the walk from end to end finds, including where two stretches meet."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from server.audit import chain
from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import AuditEvent

ROWS = 120
# With three cores and stretches of at least 40 rows: rows 1-40, 41-80 and 81-120.
CORES, STRETCH = 3, 40


async def _both_ways(db: Database, monkeypatch: pytest.MonkeyPatch) -> tuple[Any, Any]:
    """The report of one walk from end to end, and of the same walk in stretches."""
    whole = await chain.verify(db)
    monkeypatch.setattr(chain, "STRETCH_ROWS", STRETCH)
    monkeypatch.setattr(chain.os, "cpu_count", lambda: CORES)
    assert chain._stretches(1, ROWS) == [(1, 40), (41, 80), (81, 120)]
    return whole, await chain.verify(db, side_by_side=True)


@pytest.mark.postgres
async def test_a_walk_in_stretches_finds_what_the_whole_walk_finds(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database(postgres_url)
    try:
        await upgrade(db)
        for batch in range(ROWS // 20):
            async with db.write() as s:
                for i in range(20):
                    await chain.append(db, s, None, "test.row", "test", batch * 20 + i, {"n": i})

        whole, stretched = await _both_ways(db, monkeypatch)
        assert whole.ok and whole.rows == ROWS and (whole.first_id, whole.last_id) == (1, ROWS)
        assert stretched == whole

        async with db.read() as s:
            saved = {
                r["id"]: dict(r) for r in (await s.execute(select(AuditEvent.__table__))).mappings().all()
            }

        async def put_back(*ids: int) -> None:
            async with db.write() as s:
                await s.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids)))
                await s.execute(insert(AuditEvent.__table__), [saved[i] for i in ids])

        cases: list[tuple[str, Any, int, str]] = [
            # An edited row inside the third stretch.
            (
                "edited",
                update(AuditEvent).where(AuditEvent.id == 97).values(entity_id="forged"),
                97,
                "edited",
            ),
            # The first row of the second stretch deleted: the next row names it.
            (
                "first of a stretch gone",
                delete(AuditEvent).where(AuditEvent.id == 41),
                42,
                "row 41 is missing",
            ),
            # The last row of the first stretch deleted: the second stretch's first row names it.
            (
                "last of a stretch gone",
                delete(AuditEvent).where(AuditEvent.id == 40),
                41,
                "row 40 is missing",
            ),
            # A whole stretch gone.
            (
                "a stretch gone",
                delete(AuditEvent).where(AuditEvent.id.between(41, 80)),
                81,
                "row 41 is missing",
            ),
            # Where two stretches meet, the later one's first row names another previous row.
            ("link", update(AuditEvent).where(AuditEvent.id == 81).values(prev_hash="0" * 64), 81, "link"),
        ]
        for name, statement, broken_at, problem in cases:
            async with db.write() as s:
                await s.execute(statement)
            whole, stretched = await _both_ways(db, monkeypatch)
            assert stretched == whole, name
            assert not whole.ok and whole.first_broken_id == broken_at and problem in (whole.problem or ""), (
                name
            )
            await put_back(*(range(41, 81) if name == "a stretch gone" else (broken_at, broken_at - 1)))
        assert (await chain.verify(db)).ok
    finally:
        await db.dispose()
