"""The one-round-trip aiosqlite driver behaves as a DBAPI cursor should (server.db.sqlite_driver)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from server.db.engine import Database, WalSync
from server.db.sqlite_driver import one_trip_url
from server.realtime import journal


async def test_rows_counts_ids_and_errors_come_back_from_one_round_trip(tmp_path: Path) -> None:
    url = one_trip_url(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    assert url.startswith("sqlite+tp_aiosqlite:")
    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE)"))
            inserted = await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
            assert inserted.lastrowid == 1
            await conn.execute(text("INSERT INTO t (name) VALUES (:n)"), [{"n": "b"}, {"n": "c"}])
            updated = await conn.execute(text("UPDATE t SET name = name || '!' WHERE id > 1"))
            assert updated.rowcount == 2
            rows = (await conn.execute(text("SELECT id, name FROM t ORDER BY id"))).all()
            assert [tuple(r) for r in rows] == [(1, "a"), (2, "b!"), (3, "c!")]
            returned = await conn.execute(text("INSERT INTO t (name) VALUES ('d') RETURNING id"))
            assert returned.scalar_one() == 4
        with pytest.raises(IntegrityError):
            async with engine.begin() as conn:
                await conn.execute(text("INSERT INTO t (name) VALUES ('a')"))
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one() == 4
    finally:
        await engine.dispose()


def _timed_syncs(sync: WalSync, delay: float = 0.0) -> list[tuple[float, float]]:
    """Records when each of the write-ahead log's syncs starts and ends; `delay` makes the disk slow."""
    syncs: list[tuple[float, float]] = []
    real_fsync = sync._fsync

    def timed_fsync() -> None:
        start = time.monotonic()
        time.sleep(delay)
        real_fsync()
        syncs.append((start, time.monotonic()))

    sync._fsync = timed_fsync  # type: ignore[method-assign]
    return syncs


async def test_sqlite_answers_a_write_once_its_commit_is_on_disk(tmp_path: Path) -> None:
    """Group commit: each write returns only after an fsync of the write-ahead log that began after
    its transaction's work, so a power cut cannot take back what a client was told; the events of
    concurrent writes still reach the commit hooks in commit (id) order."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await db.create_schema()
    sync = db.wal_sync
    assert sync is not None and sync.wal_path == str(tmp_path / "db.sqlite-wal")
    fsyncs = _timed_syncs(sync)
    delivered: list[int] = []
    db.commit_hooks.append(lambda events: delivered.extend(ev.id for ev in events))

    async def write(i: int) -> None:
        async with db.write() as s:
            await journal.record(db, s, "test.written", site_id=None, us_state=None, payload={"i": i})
            work_done = time.monotonic()
        answered = time.monotonic()
        assert any(work_done <= start and end <= answered for start, end in fsyncs)

    try:
        await asyncio.gather(*(write(i) for i in range(20)))
        assert Path(sync.wal_path).is_file()  # what was fsynced is SQLite's log itself
        assert delivered == list(range(1, 21))
        async with db.read() as s:
            assert (await s.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
    finally:
        await db.dispose()


async def test_sqlite_shows_a_reader_a_commit_only_once_it_is_on_disk(tmp_path: Path) -> None:
    """SQLite lets readers see a commit before its sync: a read goes on only after a sync that began
    after it, so nobody is shown a change a power cut would take back. Reads with nothing unsynced
    wait for no sync."""
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    await db.create_schema()
    sync = db.wal_sync
    assert sync is not None
    # A slow disk: a reader can see the commit long before it is on disk.
    fsyncs = _timed_syncs(sync, delay=0.2)

    async def newest() -> int | None:
        async with db.read_one() as s:
            return (await s.execute(text("SELECT max(id) FROM events"))).scalar()

    async def write() -> None:
        async with db.write() as s:
            await journal.record(db, s, "test.written", site_id=None, us_state=None, payload={})

    try:
        writer = asyncio.create_task(write())
        while True:
            async with db.read() as s:
                seen = (await s.execute(text("SELECT count(*) FROM events"))).scalar_one()
                read_done = time.monotonic()
            if seen:
                break
        answered = time.monotonic()
        assert any(read_done <= start and end <= answered for start, end in fsyncs)
        await writer
        synced = len(fsyncs)
        assert await newest() == 1
        assert len(fsyncs) == synced  # nothing was waiting for a sync
    finally:
        await db.dispose()
