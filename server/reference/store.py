"""The drug reference in the database: the import that replaces it, and the reads that use it.

An import parses both files first, then replaces the previous load in one write transaction (delete,
insert in batches, the load's row), so readers see the old reference or the new one, never a mix.
The product check reads it by primary key (drug_packages.ndc11, drug_products.product_id) in one
statement that also says whether any reference is loaded.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.db.engine import Database
from server.db.models import DrugPackage, DrugProduct, DrugReferenceLoad, utcnow
from server.evidence.barcodes import normalize_ndc
from server.reference.compare import classify, describe, worst
from server.reference.ndc_files import ParsedDirectory, read_directory

# The one row of drug_reference_loads.
LOAD_ID = 1
# Rows per executemany on SQLite: each batch is one trip to the driver's thread.
BATCH = 5000

_LOOKUP = (
    select(DrugReferenceLoad.loaded_at, DrugPackage, DrugProduct)
    .select_from(DrugReferenceLoad)
    .outerjoin(DrugPackage, DrugPackage.ndc11.in_(bindparam("ndc11s", expanding=True)))
    .outerjoin(DrugProduct, DrugProduct.product_id == DrugPackage.product_id)
    .where(DrugReferenceLoad.id == LOAD_ID)
)


@dataclass(frozen=True)
class ImportReport:
    products: int
    packages: int
    skipped: dict[str, int]
    examples: dict[str, list[str]]
    encodings: dict[str, str]
    parse_seconds: float
    write_seconds: float


@dataclass(frozen=True)
class Found:
    """What one read of the reference found: whether one is loaded, and the packages it knows."""

    loaded_at: dt.datetime | None
    packages: dict[str, tuple[DrugPackage, DrugProduct]]

    @property
    def loaded(self) -> bool:
        return self.loaded_at is not None


async def lookup(s: AsyncSession, ndc11s: list[str]) -> Found:
    """The reference's packages among the given 11-digit NDCs, by primary key, in one statement."""
    rows = (await s.execute(_LOOKUP, {"ndc11s": sorted(set(ndc11s)) or [""]})).all()
    if not rows:
        return Found(None, {})
    packages = {
        r.DrugPackage.ndc11: (r.DrugPackage, r.DrugProduct) for r in rows if r.DrugPackage is not None
    }
    return Found(rows[0].loaded_at, packages)


async def status(db: Database) -> dict[str, Any] | None:
    """The loaded reference's summary, or None when none is loaded."""
    async with db.read_one() as s:
        load = await s.get(DrugReferenceLoad, LOAD_ID)
    if load is None:
        return None
    return {
        "loaded_at": load.loaded_at.isoformat(),
        "products": load.products,
        "packages": load.packages,
    }


def _sqlite_value(value: Any) -> Any:
    """A value as SQLAlchemy's SQLite types store it: dates as ISO text, booleans as 0 or 1."""
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return int(value)
    return value


async def describe_ndc(db: Database, ndc11: str) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the loaded reference's summary or None, what it says the package is or None)."""
    summary = await status(db)
    if summary is None:
        return None, None
    async with db.read_one() as s:
        found = await lookup(s, [ndc11])
    known = found.packages.get(ndc11)
    return summary, describe(*known, utcnow().date()) if known else None


async def _insert(db: Database, s: AsyncSession, table: Any, rows: list[dict[str, Any]]) -> None:
    """Inserts many rows the driver's fastest way, inside the session's transaction: COPY on
    PostgreSQL, executemany of plain tuples on SQLite (through the ORM, 150,000 packages took SQLite's
    writer four times as long: the time went to building and processing each row's parameters)."""
    columns = list(table.columns.keys())
    conn = await s.connection()
    if db.is_sqlite:
        names, marks = ", ".join(columns), ", ".join("?" * len(columns))
        sql = f"INSERT INTO {table.name} ({names}) VALUES ({marks})"  # noqa: S608 (the model's own names)
        for start in range(0, len(rows), BATCH):
            batch = [tuple(_sqlite_value(row[c]) for c in columns) for row in rows[start : start + BATCH]]
            await conn.exec_driver_sql(sql, batch)
        return
    raw = await conn.get_raw_connection()
    records = [tuple(row[c] for c in columns) for row in rows]
    await raw.driver_connection.copy_records_to_table(table.name, records=records, columns=columns)  # type: ignore[union-attr]


async def replace(db: Database, parsed: ParsedDirectory, product_file: str, package_file: str) -> float:
    """Replaces the loaded reference with `parsed` in one transaction; returns the seconds it took."""
    started = time.perf_counter()
    async with db.write() as s:
        await s.execute(delete(DrugReferenceLoad))
        await s.execute(delete(DrugPackage))
        await s.execute(delete(DrugProduct))
        await _insert(db, s, DrugProduct.__table__, parsed.products)
        await _insert(db, s, DrugPackage.__table__, parsed.packages)
        s.add(
            DrugReferenceLoad(
                id=LOAD_ID,
                loaded_at=utcnow(),
                product_file=product_file[-255:],
                package_file=package_file[-255:],
                product_sha256=parsed.sha256["product"],
                package_sha256=parsed.sha256["package"],
                products=len(parsed.products),
                packages=len(parsed.packages),
                skipped=dict(parsed.skipped),
            )
        )
        await audit.append(
            db,
            s,
            None,
            "reference.imported",
            "drug_reference",
            LOAD_ID,
            {
                "products": len(parsed.products),
                "packages": len(parsed.packages),
                "skipped": dict(parsed.skipped),
                "sha256": parsed.sha256,
            },
        )
    return time.perf_counter() - started


async def import_ndc(db: Database, product_file: Path, package_file: Path) -> ImportReport:
    """Reads, parses and loads the NDC Directory's product and package files, replacing the last load."""
    started = time.perf_counter()
    # Seconds of parsing: off the event loop (a server may run this, not only the command line).
    parsed = await asyncio.to_thread(read_directory, product_file, package_file)
    parsing = time.perf_counter() - started
    writing = await replace(db, parsed, product_file.name, package_file.name)
    return ImportReport(
        products=len(parsed.products),
        packages=len(parsed.packages),
        skipped=dict(parsed.skipped),
        examples=parsed.examples,
        encodings=parsed.encodings,
        parse_seconds=parsing,
        write_seconds=writing,
    )


# -- the product check ----------------------------------------------------------------------------


def _digits(formatted: list[str]) -> list[str]:
    return [normalize_ndc(c) for c in formatted]


async def annotate_product_check(s: AsyncSession, detail: dict[str, Any], today: dt.date) -> dict[str, Any]:
    """The product check's detail (server.evidence.barcodes.ProductCheck) with what the reference says.

    Adds ``reference``: None when no reference is loaded, else ``loaded_at``, ``expected`` (the
    prescribed package as the reference describes it, None when unknown) and ``flags`` (``discontinued``,
    ``excluded``, ``unknown_ndc``, ``expected_unknown``, each with its NDC); ``mismatch_class``: the worst
    class of the barcodes that are not the prescribed product (server.reference.compare), None when
    none is or no reference is loaded; and per barcode ``reference`` (the package it identifies) and
    ``mismatch_class``.
    """
    expected = normalize_ndc(detail["expected_ndc11"])
    barcodes = detail.get("barcodes", [])
    wanted = [expected] + [c for b in barcodes for c in _digits(b.get("ndc11_candidates", []))]
    found = await lookup(s, wanted)
    out = {**detail, "reference": None, "mismatch_class": None}
    if not found.loaded:
        out["barcodes"] = [{**b, "reference": None, "mismatch_class": None} for b in barcodes]
        return out
    flags: list[dict[str, Any]] = []

    def noted(ndc11: str) -> dict[str, Any]:
        package, product = found.packages[ndc11]
        info = describe(package, product, today)
        if info["discontinued"] and not any(
            f.get("ndc11") == info["ndc11"] and f["code"] == "discontinued" for f in flags
        ):
            flags.append(
                {
                    "code": "discontinued",
                    "ndc11": info["ndc11"],
                    "end_marketing_date": info["end_marketing_date"],
                }
            )
        if info["exclude_flag"] and not any(
            f["code"] == "excluded" and f.get("ndc11") == info["ndc11"] for f in flags
        ):
            flags.append({"code": "excluded", "ndc11": info["ndc11"], "exclude_flag": info["exclude_flag"]})
        return info

    expected_row = found.packages.get(expected)
    expected_info = noted(expected) if expected_row else None
    if expected_row is None:
        flags.append({"code": "expected_unknown", "ndc11": detail["expected_ndc11"]})
    annotated, classes = [], []
    for b in barcodes:
        candidates = _digits(b.get("ndc11_candidates", []))
        known = [c for c in candidates if c in found.packages]
        matches = expected in candidates
        identified = expected if matches else (known[0] if known else None)
        info = noted(identified) if identified in found.packages else None
        cls: str | None = None
        if b.get("gtin") and not candidates:
            cls = "not_an_ndc"
        elif candidates and not matches:
            if not known:
                cls = "unknown_ndc"
                flags.append({"code": "unknown_ndc", "ndc10": b.get("ndc10")})
            elif expected_row is None:
                cls = "unclassified"
            else:
                # An NDC10 may stand for more than one NDC11 the reference knows: the worst one counts.
                cls = worst([classify(expected_row[1], found.packages[c][1]) for c in known])
        if cls is not None:
            classes.append(cls)
        annotated.append({**b, "reference": info, "mismatch_class": cls})
    out["barcodes"] = annotated
    out["mismatch_class"] = worst(classes)
    out["reference"] = {
        "loaded_at": found.loaded_at.isoformat() if found.loaded_at else None,
        "expected": expected_info,
        "flags": flags,
    }
    return out
