"""What showing each queue row's DEA schedule costs a read of the queue: the drug reference's schedule
of 200 rows' NDCs (the queue's page) read in one statement, from a reference of 120,000 packages, on
SQLite.

    .venv/bin/python -m bench.queue_schedules [--packages 120000] [--rows 200]

Prints JSON: the median and p90 milliseconds of one read.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert

from bench.harness import emit
from server.compliance.controlled import schedules_of
from server.db.engine import Database
from server.db.models import DrugPackage, DrugProduct, DrugReferenceLoad

RUNS = 200
BATCH = 5000


async def seed(db: Database, packages: int) -> None:
    """One product per package; one product in 50 of Schedule II."""
    async with db.write() as s:
        await s.execute(
            insert(DrugReferenceLoad),
            [
                {
                    "id": 1,
                    "loaded_at": dt.datetime.now(dt.UTC),
                    "product_file": "product.txt",
                    "package_file": "package.txt",
                    "product_sha256": "0" * 64,
                    "package_sha256": "0" * 64,
                    "products": packages,
                    "packages": packages,
                    "skipped": {},
                }
            ],
        )
        for start in range(0, packages, BATCH):
            ids = range(start, min(packages, start + BATCH))
            await s.execute(
                insert(DrugProduct),
                [
                    {
                        "product_id": f"P{i}",
                        "product_ndc": f"{i:09d}",
                        "product_type": "HUMAN PRESCRIPTION DRUG",
                        "dea_schedule": "CII" if i % 50 == 0 else None,
                    }
                    for i in ids
                ],
            )
            await s.execute(
                insert(DrugPackage),
                [{"ndc11": f"{i:011d}", "product_id": f"P{i}", "package_code": "-"} for i in ids],
            )


async def run(packages: int, rows: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        db = Database(f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            await db.create_schema()
            await seed(db, packages)
            # Spread over the reference, one row in 50 of a Schedule II product.
            step = max(1, packages // rows)
            queue = [(k, None, f"{(k * step + k) % packages:011d}") for k in range(rows)]
            times = []
            found: dict[int, str] = {}
            for _ in range(RUNS):
                async with db.read() as s:
                    started = time.perf_counter()
                    found = await schedules_of(s, queue)
                    times.append((time.perf_counter() - started) * 1000)
        finally:
            await db.dispose()
    times = sorted(times[RUNS // 10 :])
    return {
        "packages": packages,
        "rows": rows,
        "controlled_rows": len(found),
        "median_ms": round(statistics.median(times), 2),
        "p90_ms": round(times[int(len(times) * 0.9)], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--packages", type=int, default=120_000)
    ap.add_argument("--rows", type=int, default=200)
    args = ap.parse_args()
    emit(asyncio.run(run(args.packages, args.rows)))


if __name__ == "__main__":
    main()
