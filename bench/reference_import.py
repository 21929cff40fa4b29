"""Drug reference import benchmark: the FDA NDC Directory's files with 150,000 packages, generated in
the FDA's exact layout (Windows-1252, CRLF, tab-separated, blank fields), loaded as
`tp-server reference import-ndc` loads them, then loaded again over the first load.

Prints JSON: the files' sizes, the seconds to parse and to write (the write transaction is how long the
database's writer is held: on SQLite every other write waits that long), the total against the 60 s
target, the process's peak memory, and the product check's lookup (one statement by primary key) in
microseconds at p50 and p99 over 2,000 lookups.

    .venv/bin/python -m bench.reference_import [--packages 150000] [--database-url postgresql+asyncpg://...]

With --database-url the database must be empty (its schema is created by the migrations).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import random
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import emit, high_water_mark
from server.reference.ndc_files import PACKAGE_COLUMNS, PRODUCT_COLUMNS

PACKAGES_PER_PRODUCT = 3
FORMS = (
    "TABLET",
    "TABLET, FILM COATED",
    "CAPSULE",
    "TABLET, EXTENDED RELEASE",
    "SOLUTION",
    "INJECTION, SOLUTION",
)
SUBSTANCES = (
    "METFORMIN HYDROCHLORIDE",
    "LISINOPRIL",
    "ATORVASTATIN CALCIUM",
    "AMLODIPINE BESYLATE",
    "LEVOTHYROXINE SODIUM",
    "HYDROCODONE BITARTRATE; ACETAMINOPHEN",
    "SERTRALINE HYDROCHLORIDE",
)


def ndc10(labeler: int, product: int, package: int, layout: int) -> str:
    """A hyphenated NDC10 in one of the three layouts (4-4-2, 5-3-2, 5-4-1); the 5-digit layouts take
    labelers from separate ranges, as 5-3-2 and 5-4-1 codes of one labeler can meet in the billing form."""
    if layout == 0:
        return f"{labeler:04d}-{product:04d}-{package:02d}"
    if layout == 1:
        return f"{10000 + labeler:05d}-{product:03d}-{package:02d}"
    return f"{50000 + labeler:05d}-{product:04d}-{package:01d}"


def generate(folder: Path, packages: int, seed: int = 7) -> tuple[Path, Path, int]:
    """product.txt and package.txt with `packages` packages (three per product); returns the product count."""
    rng = random.Random(seed)
    products = (packages + PACKAGES_PER_PRODUCT - 1) // PACKAGES_PER_PRODUCT
    product_lines = ["\t".join(PRODUCT_COLUMNS)]
    package_lines = ["\t".join(PACKAGE_COLUMNS)]
    made = 0
    for i in range(products):
        # Labeler and product codes unique per product: labeler i // 1000, product i % 1000.
        layout = i % 3
        labeler, code = i // 900 + 1, i % 900 + 1
        product_ndc = ndc10(labeler, code, 0, layout).rsplit("-", 1)[0]
        product_id = f"{product_ndc}_{rng.getrandbits(128):032x}"
        substance = SUBSTANCES[i % len(SUBSTANCES)]
        strengths = "; ".join(str(rng.choice((5, 10, 20, 40, 500))) for _ in substance.split(";"))
        units = "; ".join("mg/1" for _ in substance.split(";"))
        ended = "20200131" if i % 40 == 0 else ""
        product_lines.append(
            "\t".join(
                (
                    product_id, product_ndc, "HUMAN PRESCRIPTION DRUG",
                    f"Brand\u00ae {i}" if i % 10 == 0 else substance.title(), "",
                    substance.title(), FORMS[i % len(FORMS)], "ORAL", "20100101", ended, "ANDA",
                    f"ANDA{i:06d}", f"Labeler {labeler} Pharmaceuticals, Inc.", substance, strengths, units,
                    "Biguanide [EPC]", "CII" if "HYDROCODONE" in substance else "", "N", "20271231",
                )
            )
        )  # fmt: skip
        for p in range(PACKAGES_PER_PRODUCT):
            if made == packages:
                break
            code_text = ndc10(labeler, code, p + 1, layout)
            description = f'{30 * (p + 1)} TABLET in 1 BOTTLE ({code_text}) > "unit dose"'
            package_lines.append(
                "\t".join((product_id, product_ndc, code_text, description, "20100101", ended, "N", "N"))
            )
            made += 1
    product_file, package_file = folder / "product.txt", folder / "package.txt"
    product_file.write_bytes(("\r\n".join(product_lines) + "\r\n").encode("cp1252"))
    package_file.write_bytes(("\r\n".join(package_lines) + "\r\n").encode("cp1252"))
    return product_file, package_file, products


async def measure(
    database_url: str, product_file: Path, package_file: Path, codes: list[str]
) -> dict[str, Any]:
    from server.db.engine import Database
    from server.db.migrate import upgrade
    from server.reference import store

    db = Database(database_url)
    try:
        await upgrade(db)
        runs = []
        for label in ("first", "replace"):
            started = time.perf_counter()
            report = await store.import_ndc(db, product_file, package_file)
            runs.append(
                {
                    "run": label,
                    "products": report.products,
                    "packages": report.packages,
                    "skipped": report.skipped,
                    "parse_seconds": round(report.parse_seconds, 2),
                    "write_seconds": round(report.write_seconds, 2),
                    "total_seconds": round(time.perf_counter() - started, 2),
                }
            )
        lookups = await time_lookups(db, codes)
    finally:
        await db.dispose()
    return {"runs": runs, "lookup_us": lookups}


async def time_lookups(db: Any, codes: list[str], count: int = 2000) -> dict[str, float]:
    """The product check's read: the prescribed NDC and a scanned NDC10's three candidates, by key."""
    from server.evidence.barcodes import ndc11_candidates, normalize_ndc
    from server.reference import store

    rng = random.Random(3)
    times = []
    async with db.read() as s:
        for _ in range(count):
            expected = normalize_ndc(rng.choice(codes))
            scanned = rng.choice(codes).replace("-", "")
            started = time.perf_counter()
            found = await store.lookup(s, [expected, *ndc11_candidates(scanned)])
            times.append((time.perf_counter() - started) * 1e6)
            assert found.loaded and expected in found.packages
    times.sort()
    return {"p50": round(statistics.median(times), 1), "p99": round(times[int(len(times) * 0.99)], 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--packages", type=int, default=150_000)
    ap.add_argument("--database-url", default="", help="PostgreSQL (an empty database) instead of SQLite")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tp-bench-reference-") as tmp:
        folder = Path(tmp)
        started = time.perf_counter()
        product_file, package_file, products = generate(folder, args.packages)
        generated = time.perf_counter() - started
        url = args.database_url or f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}"
        codes = [line.split("\t")[2] for line in package_file.read_text("cp1252").splitlines()[1:]]
        sizes = {"product_file_mb": round(product_file.stat().st_size / 1e6, 1),
                 "package_file_mb": round(package_file.stat().st_size / 1e6, 1)}  # fmt: skip
        result = asyncio.run(measure(url, product_file, package_file, codes))
    worst = max(run["total_seconds"] for run in result["runs"])
    emit(
        {
            "bench": "reference_import",
            "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "database": "postgresql" if args.database_url else "sqlite",
            "packages_generated": args.packages,
            "products_generated": products,
            **sizes,
            "generate_seconds": round(generated, 2),
            **result,
            "target_seconds": 60,
            "within_target": worst <= 60,
            "peak_rss_mb": round(high_water_mark() / 1e6, 1),
        }
    )


if __name__ == "__main__":
    main()
