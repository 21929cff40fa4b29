"""`audit verify` benchmark: a valid audit chain of many rows, generated quickly, then verified whole
(`--full`) and as a daily run resumes it, from a checkpoint a day before the head.

Prints JSON: rows generated and how long that took, then for the full walk and the daily run the rows
walked, the seconds and rows/s, and the target (200,000 rows/s on PostgreSQL).

    .venv/bin/python -m bench.audit_verify [--rows 1000000] [--days 365] [--postgres | --database-url URL]
                                           [--convert]

--postgres makes a new database on the local PostgreSQL (TP_TEST_PG_DSN, as the tests) and drops it
after; --database-url names an empty one (its schema is made by the migrations). Without either, a
SQLite file in a temporary folder. Rows spread evenly over the last --days days, so on PostgreSQL they
fill a year of monthly partitions. --convert (PostgreSQL) also times the migration that partitions a
table of that many rows.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import json
import os
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import select

from bench.harness import emit
from server.audit import chain
from server.audit.anchors import AnchorFile
from server.audit.chain import EXPORT_COLUMNS
from server.audit.verification import verify_trail
from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import AuditEvent
from server.db.partitions import ensure_partitions

TARGET_ROWS_PER_S = 200_000
ACTIONS = ("fill.created", "media.stored", "fill.submitted", "fill.queued", "fill.claimed", "fill.decided")
# An audit row's every column, in the order the export writes them.
COLUMNS = tuple(EXPORT_COLUMNS)


def chain_rows(n: int, start: dt.datetime, end: dt.datetime) -> Iterator[tuple[Any, ...]]:
    """n valid chain rows, times evenly from start to end: (columns..., detail as JSON text)."""
    step = (end - start) / max(n, 1)
    prev = chain.GENESIS
    encode, detail_text = json.encoder.encode_basestring_ascii, chain._encode_detail
    for i in range(1, n + 1):
        at = start + step * i
        at_text = at.isoformat(timespec="microseconds")
        actor_id = 2 + i % 40 if i % 7 else None
        actor = f"pharmacist:rph{i % 40}" if actor_id else "system"
        action = ACTIONS[i % len(ACTIONS)]
        fill = str(uuid.UUID(int=i // 8))
        detail = {"site": i % 300, "version": i % 5, "state": action.split(".")[1], "reason_codes": []}
        body = (
            f'{{"action":{encode(action)},"actor":{encode(actor)},'
            f'"actor_id":{"null" if actor_id is None else actor_id},"at":"{at_text}",'
            f'"detail":{detail_text(detail)},"entity_id":{encode(fill)},"entity_type":"fill","id":{i},'
            f'"prev_hash":"{prev}"}}'
        )
        digest = hashlib.sha256(body.encode()).hexdigest()
        yield i, at, actor_id, actor, action, "fill", fill, detail_text(detail), prev, digest
        prev = digest


async def load_postgres(db: Database, rows: Iterator[tuple[Any, ...]], batch: int = 50_000) -> None:
    async with db.write_engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        page: list[tuple[Any, ...]] = []
        for row in rows:
            page.append(row)
            if len(page) == batch:
                await raw.copy_records_to_table("audit_events", records=page, columns=COLUMNS)
                page = []
        if page:
            await raw.copy_records_to_table("audit_events", records=page, columns=COLUMNS)
    await vacuum(db)


async def vacuum(db: Database) -> None:
    """As autovacuum leaves a table in use: a first read of rows just copied in would set their hint
    bits, writing every page, which is not what a daily run pays."""
    async with db.write_engine.connect() as conn:
        raw = (await conn.get_raw_connection()).driver_connection
        assert raw is not None
        await raw.execute("VACUUM (ANALYZE) audit_events")


def load_sqlite(path: str, rows: Iterator[tuple[Any, ...]]) -> None:
    con = sqlite3.connect(path)
    with con:
        con.executemany(
            f"INSERT INTO audit_events ({', '.join(COLUMNS)}) VALUES ({', '.join('?' * len(COLUMNS))})",
            (
                (r[0], r[1].strftime("%Y-%m-%d %H:%M:%S.%f"), *r[2:])  # as the models store a time on SQLite
                for r in rows
            ),
        )
    con.close()


async def timed_verify(db: Database, anchors: AnchorFile, *, full: bool) -> dict[str, Any]:
    began, cpu = time.perf_counter(), time.process_time()
    report = await verify_trail(db, anchors, full=full)
    seconds, cpu = time.perf_counter() - began, time.process_time() - cpu
    walked = report.chain
    return {
        "ok": report.ok,
        "rows": walked.rows,
        "from_id": walked.first_id,
        "to_id": walked.last_id,
        "seconds": round(seconds, 3),
        "rows_per_s": round(walked.rows / seconds) if seconds else None,
        # This process's CPU alone (the database works in its own): what the walk costs here, and
        # what it would reach with a core to itself and the database keeping up.
        "cpu_seconds": round(cpu, 3),
        "rows_per_cpu_s": round(walked.rows / cpu) if cpu else None,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }


async def run(
    url: str, sqlite_path: str | None, n: int, days: int, folder: Path, *, convert: bool = False
) -> dict[str, Any]:
    db = Database(url)
    converted: float | None = None
    try:
        # --convert: the rows go into the plain table of the revision before partitions, and the
        # migration that partitions it is timed.
        await upgrade(db, "0014" if convert else "head")
        end = dt.datetime.now(dt.UTC).replace(microsecond=0)
        start = end - dt.timedelta(days=days)
        await ensure_partitions(db, end, since=start)
        began = time.perf_counter()
        if sqlite_path:
            await asyncio.to_thread(load_sqlite, sqlite_path, chain_rows(n, start, end))
        else:
            await load_postgres(db, chain_rows(n, start, end))
        generated = time.perf_counter() - began
        if convert:
            began = time.perf_counter()
            await upgrade(db)
            converted = time.perf_counter() - began
            await vacuum(db)
        anchors = AnchorFile(folder)
        full = await timed_verify(db, anchors, full=True)
        # Again, with the table in the database's and the system's caches as a server's daily reads keep it.
        full_again = await timed_verify(db, anchors, full=True)
        # The daily run: the last checkpoint is the anchor a day before the head.
        day_before = max(0, n - max(1, n // days))
        async with db.read() as s:
            row = (await s.execute(select(AuditEvent).where(AuditEvent.id == day_before))).scalar_one()
        anchors.path.unlink(missing_ok=True)
        anchors.mark_verified(anchors.write(row.id, row.hash, row.at), end)
        daily = await timed_verify(db, anchors, full=False)
        return {
            "database": "sqlite" if sqlite_path else "postgresql",
            "rows": n,
            "days": days,
            "generate_seconds": round(generated, 1),
            "convert_seconds": round(converted, 1) if converted is not None else None,
            "full": full,
            "full_again": full_again,
            "daily": daily,
            "target_rows_per_s": TARGET_ROWS_PER_S,
        }
    finally:
        await db.dispose()


async def _admin(dsn: str, sql: str) -> None:
    import asyncpg  # type: ignore[import-untyped]

    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument(
        "--convert",
        action="store_true",
        help="PostgreSQL: load into the plain table and time the migration to monthly partitions",
    )
    where = ap.add_mutually_exclusive_group()
    where.add_argument("--postgres", action="store_true", help="a new database on the local PostgreSQL")
    where.add_argument("--database-url", help="an empty database, e.g. postgresql+asyncpg://user@host/db")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if args.postgres:
            dsn = os.environ.get("TP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
            name = f"tp_bench_{uuid.uuid4().hex[:12]}"
            asyncio.run(_admin(dsn, f'CREATE DATABASE "{name}"'))
            base = dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
            try:
                result = asyncio.run(
                    run(f"{base}/{name}", None, args.rows, args.days, folder, convert=args.convert)
                )
            finally:
                asyncio.run(_admin(dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        elif args.database_url:
            result = asyncio.run(
                run(args.database_url, None, args.rows, args.days, folder, convert=args.convert)
            )
        else:
            path = str(folder / "audit.sqlite3")
            result = asyncio.run(run(f"sqlite+aiosqlite:///{path}", path, args.rows, args.days, folder))
    emit(result)


if __name__ == "__main__":
    main()
