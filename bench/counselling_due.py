"""What a pharmacist's list of fills due counselling costs against the approved fills kept: `--fills`
fills of one North Dakota site, all approved (as fills approved before hand-outs were recorded stay),
of which `--due` wait for counselling; the first page as the server reads it (server.counselling).
With `--no-index`, the index the list reads (ix_fills_counselling_due) is dropped first, to weigh it.

    .venv/bin/python -m bench.counselling_due [--fills 200000] [--no-index] [--database-url postgresql+asyncpg://...]

Prints JSON: the median and the slowest milliseconds of one page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update

from bench.paging import _fill_database
from server.compliance.checks import Compliance
from server.compliance.rules import load_rules
from server.counselling.service import CounsellingService
from server.db.engine import Database
from server.db.models import Fill
from server.security.principal import Principal, Role


async def measure(args: argparse.Namespace, url: str) -> dict[str, Any]:
    db = Database(url)
    await db.create_schema()
    await _fill_database(db, args.fills, 0, 0)
    async with db.write() as s:
        newest = select(Fill.id).order_by(Fill.decided_at.desc()).limit(args.due)
        await s.execute(
            update(Fill).where(Fill.id.in_(newest)).values(counselling="due", counselling_required=True)
        )
        if args.no_index:
            await s.execute(text("DROP INDEX ix_fills_counselling_due"))
    if not db.is_sqlite:
        async with db.read_one() as s:  # the planner's statistics, as autovacuum would keep them
            await s.execute(text("ANALYZE"))
    service = CounsellingService(db, Compliance(load_rules()))
    rph = Principal(1, "rph", "rph", Role.PHARMACIST, None, frozenset({"ND"}), "session")
    await service.due(rph, after=None, limit=100)
    times = []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        page = await service.due(rph, after=None, limit=100)
        times.append((time.perf_counter() - t0) * 1000)
    assert len(page.rows) == min(args.due, 100)
    await db.dispose()
    return {
        "database": "sqlite" if db.is_sqlite else "postgresql",
        "approved_fills": args.fills,
        "due": args.due,
        "index": not args.no_index,
        "p50_ms": round(statistics.median(times), 2),
        "max_ms": round(max(times), 2),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--fills", type=int, default=200_000)
    p.add_argument("--due", type=int, default=50)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--no-index", action="store_true", help="drop ix_fills_counselling_due first")
    p.add_argument("--database-url", help="an empty database (default: a SQLite file in a temporary folder)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = args.database_url or f"sqlite+aiosqlite:///{Path(tmp) / 'due.sqlite3'}"
        print(json.dumps(asyncio.run(measure(args, url)), indent=2))


if __name__ == "__main__":
    main()
