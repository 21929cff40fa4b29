"""PostgreSQL: the tables that grow by time are partitioned by month, made ahead of time, dropped a
month at a time by retention, and a database in use is converted without losing a row or an id."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

from sqlalchemy import func, select, text

from server.audit import chain
from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import AccessLogEntry, AuditEvent, Event
from server.db.partitions import (
    MONTHS_AHEAD,
    TABLES,
    drop_partitions_before,
    ensure_partitions,
    month_start,
    next_month,
    partition_name,
)
from tests.api.world import approved_fill, build_world, queued_fill, rx_body


def _months_from(start: dt.datetime, n: int) -> list[dt.datetime]:
    months = [start]
    while len(months) < n:
        months.append(next_month(months[-1]))
    return months


def _months_back(now: dt.datetime, n: int) -> list[dt.datetime]:
    """The n months before now's, oldest first."""
    months = [month_start(now)]
    for _ in range(n):
        months.insert(0, month_start(months[0] - dt.timedelta(days=1)))
    return months[:-1]


async def _partitions(db: Database, table: str) -> list[str]:
    async with db.read() as s:
        rows = await s.execute(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                " WHERE i.inhparent = to_regclass(:t) ORDER BY c.relname"
            ),
            {"t": table},
        )
        return list(rows.scalars())


async def _where_rows_are(db: Database, table: str) -> dict[str, int]:
    async with db.read() as s:
        rows = await s.execute(text(f"SELECT tableoid::regclass::text, count(*) FROM {table} GROUP BY 1"))
        return {name: n for name, n in rows.all()}


async def test_the_coming_months_are_made_ahead_and_rows_land_in_their_month(
    tmp_path: Path, postgres_url: str
) -> None:
    world = await build_world(tmp_path, postgres_url)
    try:
        db = world.services.db
        now = dt.datetime.now(dt.UTC)
        coming = _months_from(month_start(now), MONTHS_AHEAD + 1)
        for table in TABLES:
            assert await _partitions(db, table) == sorted(
                [partition_name(table, m) for m in coming] + [f"{table}_default"]
            )
        await approved_fill(world)
        this_month = partition_name("audit_events", month_start(now))
        assert set(await _where_rows_are(db, "audit_events")) == {this_month}
        assert set(await _where_rows_are(db, "events")) == {partition_name("events", month_start(now))}

        # Reads a month ahead go to that month; a month not made yet to the DEFAULT partition.
        beyond = next_month(coming[-1])
        async with db.write() as s:
            for at in (coming[1] + dt.timedelta(hours=3), beyond + dt.timedelta(days=2)):
                s.add(AccessLogEntry(at=at, user_id=1, entity_type="fill", entity_id="f"))
        placed = await _where_rows_are(db, "access_log")
        assert placed[partition_name("access_log", coming[1])] == 1 and placed["access_log_default"] == 1

        # The daily run a few months on makes the new months and takes their rows out of DEFAULT.
        made = await ensure_partitions(db, beyond)
        assert partition_name("access_log", beyond) in made
        placed = await _where_rows_are(db, "access_log")
        assert placed[partition_name("access_log", beyond)] == 1 and "access_log_default" not in placed
        assert await ensure_partitions(db, beyond) == []  # made once
    finally:
        await world.close()


async def test_drop_partitions_before_drops_exactly_the_months_before_the_cutoff(postgres_url: str) -> None:
    db = Database(postgres_url)
    try:
        await upgrade(db)
        now = dt.datetime.now(dt.UTC)
        past = _months_back(now, 4)
        await ensure_partitions(db, now, since=past[0])
        async with db.write() as s:
            for i, month in enumerate(past):
                for day in range(i + 1):  # 1, 2, 3, 4 rows in the four months
                    s.add(
                        AccessLogEntry(
                            at=month + dt.timedelta(days=day),
                            user_id=7,
                            entity_type="fill",
                            entity_id=str(day),
                        )
                    )
            s.add(AccessLogEntry(at=now, user_id=7, entity_type="fill", entity_id="now"))
        # The cutoff falls inside the third month: the two months before it go, the third stays whole.
        cutoff = past[2] + dt.timedelta(days=10)
        dropped = await drop_partitions_before(db, "access_log", cutoff)
        assert [(d.name, d.start, d.end, d.rows) for d in dropped] == [
            (partition_name("access_log", past[0]), past[0], past[1], 1),
            (partition_name("access_log", past[1]), past[1], past[2], 2),
        ]
        async with db.read() as s:
            left = (await s.execute(select(func.count()).select_from(AccessLogEntry))).scalar_one()
            oldest = (await s.execute(select(func.min(AccessLogEntry.at)))).scalar_one()
        assert left == 3 + 4 + 1 and oldest == past[2]
        assert await drop_partitions_before(db, "access_log", cutoff) == []
        # The other tables are untouched.
        assert partition_name("events", month_start(now)) in await _partitions(db, "events")
    finally:
        await db.dispose()


def _chain_rows(start_id: int, times: list[dt.datetime], prev: str) -> list[AuditEvent]:
    rows = []
    for offset, at in enumerate(times):
        row = AuditEvent(
            id=start_id + offset,
            at=at,
            actor_id=None,
            actor="system",
            action="site.created",
            entity_type="site",
            entity_id=str(offset),
            detail={"n": offset, "name": "Ünïcode \u2713"},
            prev_hash=prev,
            hash="",
        )
        row.hash = chain.row_hash(row)
        prev = row.hash
        rows.append(row)
    return rows


async def test_migration_converts_a_database_in_use_keeping_ids_and_the_chain(
    tmp_path: Path, postgres_url: str
) -> None:
    db = Database(postgres_url)
    now = dt.datetime.now(dt.UTC)
    months = [*_months_back(now, 3), month_start(now)]
    times = [m + dt.timedelta(days=1, hours=h) for m in months for h in range(5)]
    try:
        await upgrade(db, "0014")
        async with db.write() as s:
            s.add_all(_chain_rows(1, times, chain.GENESIS))
            s.add_all(
                Event(id=i + 1, at=at, type="fill.queued", payload={"n": i}) for i, at in enumerate(times)
            )
            s.add_all(AccessLogEntry(at=at, user_id=1, entity_type="fill", entity_id="x") for at in times)
        await upgrade(db)
        for table in TABLES:
            names = await _partitions(db, table)
            assert {partition_name(table, m) for m in months} <= set(names)
            async with db.read() as s:
                ids = list((await s.execute(text(f"SELECT id FROM {table} ORDER BY id"))).scalars())
            assert ids == list(range(1, len(times) + 1))
        assert (await chain.verify(db)).ok
        # The access log's id sequence goes on from where it was.
        async with db.write() as s:
            s.add(AccessLogEntry(at=now, user_id=1, entity_type="fill", entity_id="y"))
        async with db.read() as s:
            assert (await s.execute(select(func.max(AccessLogEntry.id)))).scalar_one() == len(times) + 1
    finally:
        await db.dispose()

    # The server on the converted database: the chain goes on, a console catches up by cursor.
    world = await build_world(tmp_path, postgres_url)
    try:
        tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
        headers = {"Origin": str(rph.client.make_url("/")).rstrip("/")}
        ws = await rph.client.ws_connect(f"/api/v1/ws?cursor={len(times)}", headers=headers)
        assert (await ws.receive_json())["type"] == "hello"
        rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX-MIGRATED"))
        fill = await queued_fill(world, tech, rx["id"])
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(5):
            while not got or got[-1]["type"] != "fill.queued":
                got.append(json.loads((await ws.receive()).data))
        assert got[-1]["fill_id"] == fill["id"] and all(e["id"] > len(times) for e in got)
        await ws.close()
        await approved_fill(world)
        report = await chain.verify(world.services.db)
        assert report.ok and report.rows > len(times)
    finally:
        await world.close()
