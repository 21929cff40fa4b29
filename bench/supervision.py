"""What the limit of sites supervised at once costs a claim: the query of the sites a pharmacist
supervises now (fills held in review, fills decided within the window) and the check, timed alone, on
SQLite and on PostgreSQL, with a pharmacist who decided many fills (all but a few outside the window).

    .venv/bin/python -m bench.supervision [--decided 20000] [--postgres postgresql://postgres@127.0.0.1/test]

With --postgres it makes a database of its own on that server (and drops it afterwards).

Prints JSON: the median and p99 milliseconds of one check per database.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.harness import emit, prescription_row, scratch_database
from server.compliance.checks import Compliance
from server.compliance.rules import load_rules
from server.db.engine import Database
from server.db.models import Decision, Fill, Prescription, Site, User, utcnow
from server.fills.supervision import check_claim
from server.security.principal import Principal, Role

SITES = 40
RUNS = 300


async def seed(db: Database, decided: int, now: dt.datetime) -> None:
    async with db.write() as s:
        await s.execute(
            insert(Site),
            [{"id": i, "code": f"TX-{i}", "name": f"Site {i}", "state": "TX"} for i in range(1, SITES + 1)],
        )
        await s.execute(
            insert(User),
            [
                {"id": 1, "username": "rph", "display_name": "Rph", "role": "pharmacist"},
                {"id": 2, "username": "tech", "display_name": "Tech", "role": "technician", "site_id": 1},
            ],
        )
        await s.execute(
            insert(Prescription),
            [prescription_row(i, i, f"RX{i}") for i in range(1, SITES + 1)],
        )
        fills, decisions = [], []
        for n in range(decided):
            site = n % SITES + 1
            # All but the last few were decided days ago, outside the window.
            at = now - dt.timedelta(minutes=5 if n >= decided - 2 else 60 + n)
            fid = str(uuid.uuid4())
            fills.append(
                {
                    "id": fid,
                    "prescription_id": site,
                    "site_id": site,
                    "technician_id": 2,
                    "priority": "routine",
                    "state": "approved",
                    "version": 4,
                    "request_digest": "x",
                    "created_at": at,
                    "decided_at": at,
                }
            )
            decisions.append({"fill_id": fid, "pharmacist_id": 1, "outcome": "approve", "decided_at": at})
        for start in range(0, decided, 5000):
            await s.execute(insert(Fill), fills[start : start + 5000])
            await s.execute(insert(Decision), decisions[start : start + 5000])


async def measure(url: str, decided: int) -> dict[str, Any]:
    db = Database(url)
    try:
        await db.create_schema()
        now = utcnow()
        await seed(db, decided, now)
        compliance = Compliance(load_rules())
        actor = Principal(1, "rph", "Rph", Role.PHARMACIST, None, frozenset({"TX"}), "session")
        site = Site(id=SITES, code=f"TX-{SITES}", name="x", state="TX")
        times = []
        for _ in range(RUNS):
            async with db.write() as s:
                t = time.perf_counter()
                await check_claim(s, compliance, actor, site, now, postgres=not db.is_sqlite)
                times.append((time.perf_counter() - t) * 1000)
        times.sort()
        return {
            "median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
        }
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--decided", type=int, default=20000)
    ap.add_argument("--postgres", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, Any] = {"decided_fills": args.decided, "sites": SITES, "runs": RUNS}
        out["sqlite"] = await measure(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}", args.decided)
        if args.postgres:
            async with scratch_database(args.postgres, "bench_supervision") as url:
                out["postgresql"] = await measure(url, args.decided)
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
