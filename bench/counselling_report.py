"""What the counselling report costs an inspector's request: a site with a year of fills handed out
(each with its counselling record, some declined), the report for one month of that site, on SQLite and
on PostgreSQL.

    .venv/bin/python -m bench.counselling_report [--fills 20000] [--days 365] [--postgres postgresql://...]

With --postgres it makes a database of its own on that server (and drops it afterwards).

Prints JSON: the median and p99 milliseconds of one report (the month's fills and declines) per database.
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
from server.counselling.service import CounsellingService
from server.db.engine import Database
from server.db.models import CounsellingRecord, Fill, Prescription, Site, User, utcnow
from server.security.principal import Principal, Role

SITES = 4
RUNS = 100
# One fill in this many is declined (Ohio lets the patient decline); the rest are counselled by video.
DECLINED_EVERY = 20


async def seed(db: Database, fills: int, days: int, now: dt.datetime) -> None:
    async with db.write() as s:
        await s.execute(
            insert(Site),
            [{"id": i, "code": f"OH-{i}", "name": f"Site {i}", "state": "OH"} for i in range(1, SITES + 1)],
        )
        await s.execute(
            insert(User),
            [
                {"id": 1, "username": "rph", "display_name": "Rph", "role": "pharmacist"},
                *(
                    {
                        "id": 1 + i,
                        "username": f"tech{i}",
                        "display_name": "Tech",
                        "role": "technician",
                        "site_id": i,
                    }
                    for i in range(1, SITES + 1)
                ),
            ],
        )
        await s.execute(
            insert(Prescription),
            [prescription_row(i, i, f"RX{i}") for i in range(1, SITES + 1)],
        )
        rows, records = [], []
        for n in range(fills):
            site = n % SITES + 1
            # Spread evenly over the last `days` days.
            at = now - dt.timedelta(minutes=n * days * 24 * 60 // fills)
            fid = str(uuid.uuid4())
            declined = n % DECLINED_EVERY == 0
            rows.append(
                {
                    "id": fid,
                    "prescription_id": site,
                    "site_id": site,
                    "technician_id": 1 + site,
                    "priority": "routine",
                    "state": "handed_out",
                    "version": 5,
                    "request_digest": "x",
                    "created_at": at,
                    "decided_at": at,
                    "counselling_required": True,
                    "counselling": "declined" if declined else "counselled_video",
                    "handed_out_at": at,
                    "handed_out_by": 1 + site,
                }
            )
            records.append(
                {
                    "fill_id": fid,
                    "site_id": site,
                    "kind": "declined" if declined else "video",
                    "pharmacist_id": None if declined else 1,
                    "declined_by": "patient" if declined else None,
                    "recorded_at": at,
                    "recorded_by": 1 + site,
                }
            )
        for start in range(0, fills, 5000):
            await s.execute(insert(Fill), rows[start : start + 5000])
            await s.execute(insert(CounsellingRecord), records[start : start + 5000])


async def measure(url: str, fills: int, days: int) -> dict[str, Any]:
    db = Database(url)
    try:
        await db.create_schema()
        now = utcnow()
        await seed(db, fills, days, now)
        service = CounsellingService(db, Compliance(load_rules()))
        admin = Principal(99, "admin", "Admin", Role.ADMIN, None, frozenset(), "session")
        start, end = now - dt.timedelta(days=30), now + dt.timedelta(minutes=1)
        times = []
        for _ in range(RUNS):
            t = time.perf_counter()
            report = await service.report(admin, 1, start, end)
            times.append((time.perf_counter() - t) * 1000)
        times.sort()
        return {
            "handed_out_in_month": report.handed_out,
            "declined_in_month": len(report.declined),
            "median_ms": round(statistics.median(times), 3),
            "p99_ms": round(times[int(len(times) * 0.99) - 1], 3),
        }
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fills", type=int, default=20000)
    ap.add_argument("--days", type=int, default=365, help="the history the fills are spread over")
    ap.add_argument("--postgres", default="")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out: dict[str, Any] = {"fills": args.fills, "days": args.days, "sites": SITES, "runs": RUNS}
        sqlite = f"sqlite+aiosqlite:///{Path(tmp) / 'bench.sqlite3'}"
        out["sqlite"] = await measure(sqlite, args.fills, args.days)
        if args.postgres:
            async with scratch_database(args.postgres, "bench_counselling") as url:
                out["postgresql"] = await measure(url, args.fills, args.days)
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
