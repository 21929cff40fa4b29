"""Keyset pages deep in long lists, and a reconnect's replay against a reload.

Fills the database with `--fills` fills of one site (its list, newest first) of which `--open` are open
(the pharmacist's queue), and `--events` journal events; then times, with the server's own query code
(server.fills.queries), the first page and a page `--depth` rows deep of the queue and of the site's
fills; and reading and serialising the `REPLAY_LIMIT` events a
reconnecting client is replayed at most, against reading the queue's first page (what a reload costs
the server). Prints JSON.

    .venv/bin/python -m bench.paging [--fills 100000 --open 5000] [--database-url postgresql+asyncpg://...]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import insert, select, text

from server.compliance.checks import Compliance
from server.compliance.rules import load_rules
from server.db.engine import Database
from server.db.models import Event, Fill, Prescription, Site, User
from server.fills.lifecycle import PRIORITY_RANK
from server.fills.queries import QUEUE_ORDER, SITE_FILLS_ORDER, FillQueries
from server.fills.rules import OPEN_STATES, PRIORITIES
from server.realtime.hub import REPLAY_LIMIT, event_message, visible
from server.security.principal import Principal, Role

BATCH = 5000


async def _fill_database(db: Database, fills: int, open_fills: int, events: int) -> tuple[int, int]:
    now = dt.datetime.now(dt.UTC)
    async with db.write() as s:
        site = Site(code="ND-1", name="Hettinger Drug", state="ND")
        s.add(site)
        await s.flush()
        tech = User(username="tech", display_name="tech", role="technician", site_id=site.id)
        s.add(tech)
        await s.flush()
        rx = Prescription(
            site_id=site.id, rx_number="1", patient_name="Jane Q. Patient",
            patient_dob=dt.date(1948, 2, 29), prescriber="Dr. R", drug="Metformin HCl", strength="500 mg",
            dosage_form="tablet", expected_ndc="00378180501", quantity=Decimal(60), days_supply=30,
            directions="bid", fill_type="new",
        )  # fmt: skip
        s.add(rx)
        await s.flush()
        site_id, tech_id, rx_id = site.id, tech.id, rx.id
    for start in range(0, fills, BATCH):
        rows = []
        for i in range(start, min(fills, start + BATCH)):
            at = now - dt.timedelta(seconds=fills - i)
            is_open = i >= fills - open_fills
            rows.append(
                {
                    "id": str(uuid.UUID(int=i)),
                    "prescription_id": rx_id,
                    "site_id": site_id,
                    "technician_id": tech_id,
                    "priority": PRIORITIES[i % len(PRIORITIES)],
                    "state": "queued" if is_open else "approved",
                    "version": 2,
                    "barcodes": [],
                    "product_check": "none",
                    "product_check_detail": {},
                    "overridden_checks": [],
                    "flags": [],
                    "request_digest": "0" * 64,
                    "created_at": at,
                    "submitted_at": at,
                    "queued_at": at,
                    "decided_at": None if is_open else at,
                }
            )
        async with db.write() as s:
            await s.execute(insert(Fill), rows)
    for start in range(0, events, BATCH):
        rows = [
            {
                "id": i + 1,
                "at": now,
                "type": "fill.queued",
                "site_id": site_id,
                "us_state": "ND",
                "payload": {"fill_id": str(uuid.UUID(int=i)), "state": "queued", "version": 2},
            }
            for i in range(start, min(events, start + BATCH))
        ]
        async with db.write() as s:
            await s.execute(insert(Event), rows)
    return site_id, tech_id


async def _timed(run: Callable[[], Awaitable[Any]], rounds: int) -> dict[str, float]:
    await run()
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        await run()
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "max_ms": round(times[-1], 2)}


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    db = Database(url)
    await db.create_schema()
    site_id, tech_id = await _fill_database(db, args.fills, args.open, args.events)
    if not db.is_sqlite:
        async with db.read_one() as s:  # the planner's statistics, as autovacuum would keep them
            await s.execute(text("ANALYZE"))
    queries = FillQueries(db, Compliance(load_rules()))
    rph = Principal(1, "rph", "rph", Role.PHARMACIST, None, frozenset({"ND"}), "session")
    tech = Principal(tech_id, "tech", "tech", Role.TECHNICIAN, site_id, frozenset(), "device")
    depth = min(args.depth, args.open - 200)
    # The key of the row `depth` deep in each list: where a client paging that far would be.
    async with db.read() as s:
        q_row = (
            await s.execute(
                select(PRIORITY_RANK, Fill.submitted_at, Fill.id)
                .where(Fill.state.in_(OPEN_STATES))
                .order_by(*QUEUE_ORDER.order_by())
                .offset(depth)
                .limit(1)
            )
        ).one()
        f_row = (
            await s.execute(
                select(Fill.created_at, Fill.id)
                .where(Fill.site_id == site_id)
                .order_by(*SITE_FILLS_ORDER.order_by())
                .offset(args.depth)
                .limit(1)
            )
        ).one()

    async def replay() -> None:
        after = args.events - REPLAY_LIMIT
        async with db.read() as s:
            evs = (
                (
                    await s.execute(
                        select(Event).where(Event.id > after).order_by(Event.id).limit(REPLAY_LIMIT)
                    )
                )
                .scalars()
                .all()
            )
        for ev in evs:
            if visible(rph, ev):
                json.dumps(event_message(ev))

    r = args.rounds
    out = {
        "database": "sqlite" if db.is_sqlite else "postgresql",
        "fills": args.fills,
        "open_fills": args.open,
        "events": args.events,
        "page_depth_rows": {"queue": depth, "site_fills": args.depth},
        "queue_first_page": await _timed(lambda: queries.queue(rph, limit=200), r),
        "queue_deep_page_by_key": await _timed(lambda: queries.queue(rph, after=tuple(q_row), limit=200), r),
        "site_fills_first_page": await _timed(lambda: queries.site_fills(tech, limit=100), r),
        "site_fills_deep_page_by_key": await _timed(
            lambda: queries.site_fills(tech, after=tuple(f_row), limit=100), r
        ),
        "replay_limit_events": REPLAY_LIMIT,
        "replay_read_and_serialise": await _timed(replay, r),
    }
    await db.write_engine.dispose()
    await db.read_engine.dispose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fills", type=int, default=100_000)
    p.add_argument("--open", type=int, default=5_000)
    p.add_argument("--events", type=int, default=20_000)
    p.add_argument("--depth", type=int, default=50_000, help="rows before the deep page")
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--database-url", help="an empty database (default: a SQLite file in a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'paging.sqlite3'}"
        print(json.dumps(asyncio.run(measure(args, url)), indent=2))


if __name__ == "__main__":
    main()
