"""The reused-photo lookup with a year of photos: a database filled with 1,000,000 stored photo hashes,
then `reused_photos` (server/media/reuse.py) for fills of three photos, as FillService.submit calls it.

Prints JSON: the time to fill the database, and the lookup's p50/p90/p99/max per fill, how many
candidate rows the band index handed back, and how many of the planted reuses were found (all must be).

    .venv/bin/python -m bench.photo_reuse                      # SQLite, in a temporary folder
    .venv/bin/python -m bench.photo_reuse --postgres           # a new database on the local PostgreSQL
    .venv/bin/python -m bench.photo_reuse --photos 200000 --lookups 300 --hashes uniform

The stored hashes are `clustered` by default: photos come in scenes of 30 (one counter, one product),
each 15-40 bits from its scene's first (the distance measured between distinct photos of one product,
docs/decisions/0013-photo-reuse-hash.md), which gives the band index far more near-misses to sift than
`uniform` random hashes do. Each looked-up fill carries one photo reused from a stored one (a few bits
changed, as re-encoding does) and two new photos of stored scenes.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import random
import sqlite3
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import make_url, text

from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import Media
from server.evidence.photo_hash import BANDS, HASH_BITS, NEAR_DISTANCE, bands, halves, joined
from server.media.reuse import candidate_rows, reused_photos

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
PHOTOS_PER_FILL = 3
SCENE_SIZE = 30
CHUNK = 20_000
WARM_UP = 20


def flip(rng: random.Random, value: int, bits: int) -> int:
    for bit in rng.sample(range(HASH_BITS), bits):
        value ^= 1 << bit
    return value


def stored_hashes(rng: random.Random, count: int, mode: str) -> list[int]:
    if mode == "uniform":
        return [rng.getrandbits(HASH_BITS) for _ in range(count)]
    out: list[int] = []
    while len(out) < count:
        scene = rng.getrandbits(HASH_BITS)
        out.append(scene)
        out.extend(flip(rng, scene, rng.randint(15, 40)) for _ in range(SCENE_SIZE - 1))
    return out[:count]


MEDIA_COLUMNS = [
    "id", "fill_id", "kind", "sha256", "content_type", "filename", "bytes", "width", "height",
    "variants", "quality", "created_at", "perceptual_hash", "perceptual_hash_vertical",
    *(f"hash_band_{band}" for band in range(BANDS)),
]  # fmt: skip
KINDS = ("stock_bottle", "pills", "vial_label")


def media_rows(hashes: list[int], fill_ids: list[str], start: int) -> list[tuple[Any, ...]]:
    rows = []
    for i, value in enumerate(hashes):
        n = start + i
        horizontal, vertical = halves(value)
        rows.append(
            (
                n + 1, fill_ids[n // PHOTOS_PER_FILL], KINDS[n % PHOTOS_PER_FILL], f"{n:064x}",
                "image/jpeg", "photo.jpg", 1_000_000, 2048, 1536, "{}", "{}", "2026-01-01 00:00:00+00:00",
                horizontal, vertical, *bands(value),
            )
        )  # fmt: skip
    return rows


async def fill_database(db: Database, hashes: list[int]) -> list[str]:
    """One site, technician and prescription; a submitted fill per three photos; returns the fill ids."""
    fill_ids = [str(uuid.UUID(int=i + 1)) for i in range(-(-len(hashes) // PHOTOS_PER_FILL))]
    async with db.write() as s:
        for sql in (
            "INSERT INTO sites (id, code, name, state, status, created_at)"
            " VALUES (1, 'ND-1', 'Bench Drug', 'ND', 'active', CURRENT_TIMESTAMP)",
            "INSERT INTO users (id, username, display_name, role, active, created_at)"
            " VALUES (1, 'tech', 'Tech', 'technician', true, CURRENT_TIMESTAMP)",
            "INSERT INTO prescriptions (id, site_id, rx_number, patient_name, patient_dob, prescriber,"
            " drug, strength, dosage_form, expected_ndc, quantity, days_supply, directions, fill_type,"
            " created_at) VALUES (1, 1, 'RX1', 'Bench Patient', '1950-01-01', 'Dr. Bench', 'Metformin',"
            " '500 mg', 'tablet', '00378180501', 60, 30, 'as directed', 'new', CURRENT_TIMESTAMP)",
        ):
            await s.execute(text(sql))
    fill_cols = [
        "id", "prescription_id", "site_id", "technician_id", "priority", "state", "version", "barcodes",
        "product_check", "product_check_detail", "overridden_checks", "flags", "request_digest",
        "created_at",
    ]  # fmt: skip
    fill_rows = [
        (fid, 1, 1, 1, "routine", "approved", 4, "[]", "match", "{}", "[]", "[]", "0" * 64, "2026-01-01")
        for fid in fill_ids
    ]
    media = [media_rows(hashes[i : i + CHUNK], fill_ids, i) for i in range(0, len(hashes), CHUNK)]
    if db.is_sqlite:
        # The stdlib driver on the file: a bulk load needs no event loop round trips.
        con = sqlite3.connect(make_url(db.url).database or "")
        try:
            _sqlite_copy(con, "fills", fill_cols, fill_rows)
            for chunk in media:
                _sqlite_copy(con, "media", MEDIA_COLUMNS, chunk)
            con.commit()
            con.execute("ANALYZE")
            con.commit()
            # A year-old database has long been checkpointed: reads should not go through a 700 MB log.
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
    else:
        when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        conn = await asyncpg.connect(make_url(db.url).set(drivername="postgresql").render_as_string(False))
        try:
            await conn.copy_records_to_table(
                "fills", records=[(*r[:-1], when) for r in fill_rows], columns=fill_cols
            )
            for chunk in media:
                records = [(*r[:11], when, *r[12:]) for r in chunk]
                await conn.copy_records_to_table("media", records=records, columns=MEDIA_COLUMNS)
            await conn.execute("ANALYZE fills; ANALYZE media")
        finally:
            await conn.close()
    return fill_ids


def _sqlite_copy(
    con: sqlite3.Connection, table: str, columns: list[str], rows: list[tuple[Any, ...]]
) -> None:
    marks = ", ".join("?" for _ in columns)
    con.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


def probe(rng: random.Random, hashes: list[int], n: int) -> tuple[list[Media], int]:
    """A fill's three photos: one reused (a stored photo, re-encoded: a few bits off), two new photos of
    stored scenes; and the id of the reused photo's row."""
    reused_row = rng.randrange(len(hashes))
    values = [flip(rng, hashes[reused_row], rng.randint(0, 4))]
    values += [flip(rng, hashes[rng.randrange(len(hashes))], rng.randint(15, 40)) for _ in range(2)]
    media = []
    for i, value in enumerate(values):
        horizontal, vertical = halves(value)
        media.append(
            Media(
                id=-(n * PHOTOS_PER_FILL + i + 1),
                kind=KINDS[i],
                sha256=uuid.uuid4().hex * 2,
                perceptual_hash=horizontal,
                perceptual_hash_vertical=vertical,
            )
        )
    return media, reused_row + 1


async def lookups(db: Database, hashes: list[int], count: int, seed: int) -> dict[str, Any]:
    times: list[float] = []
    candidates: list[int] = []
    found = 0
    fill_id = str(uuid.uuid4())
    async with db.read() as s:
        rng = random.Random(seed)
        for n in range(count + WARM_UP):
            media, reused_id = probe(rng, hashes, n)
            t0 = time.perf_counter()
            entries = await reused_photos(s, fill_id, media)
            elapsed = time.perf_counter() - t0
            if n >= WARM_UP:  # the connection, the statement cache and the index pages warm up first
                times.append(elapsed * 1000)
                found += any(e["other_media_id"] == reused_id for e in entries)
        # How many rows the band index handed back for each lookup (a second, untimed pass).
        rng = random.Random(seed)
        for n in range(count + WARM_UP):
            media, _ = probe(rng, hashes, n)
            rows = await candidate_rows(s, [m.sha256 for m in media], [joined_hash(m) for m in media])
            if n >= WARM_UP:
                candidates.append(len(rows))
    times.sort()
    return {
        "lookups": count,
        "photos_per_lookup": PHOTOS_PER_FILL,
        "ms_p50": round(statistics.median(times), 2),
        "ms_p90": round(times[int(len(times) * 0.9)], 2),
        "ms_p99": round(times[int(len(times) * 0.99)], 2),
        "ms_max": round(times[-1], 2),
        "candidate_rows_median": statistics.median(candidates),
        "candidate_rows_max": max(candidates),
        "reuses_found": found,
    }


def joined_hash(m: Media) -> int:
    assert m.perceptual_hash is not None and m.perceptual_hash_vertical is not None
    return joined(m.perceptual_hash, m.perceptual_hash_vertical)


async def _pg_exec(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run(args: argparse.Namespace) -> dict[str, Any]:
    rng = random.Random(args.seed)
    t0 = time.perf_counter()
    hashes = stored_hashes(rng, args.photos, args.hashes)
    made = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        name = None
        if args.postgres:
            name = f"tp_bench_reuse_{uuid.uuid4().hex[:8]}"
            await _pg_exec(f'CREATE DATABASE "{name}"')
            url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
        else:
            path = Path(args.sqlite_file) if args.sqlite_file else Path(tmp) / "bench.sqlite3"
            url = f"sqlite+aiosqlite:///{path}"
        db = Database(url)
        filled = 0.0
        try:
            await upgrade(db)
            if args.refill:
                t1 = time.perf_counter()
                await fill_database(db, hashes)
                filled = time.perf_counter() - t1
            result = await lookups(db, hashes, args.lookups, args.seed + 1)
        finally:
            await db.dispose()
            if name is not None:
                await _pg_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return {
        "bench": "photo_reuse",
        "database": "postgresql" if args.postgres else "sqlite",
        "stored_photos": args.photos,
        "hashes": args.hashes,
        "near_distance": NEAR_DISTANCE,
        "bands": BANDS,
        "seconds_to_make_hashes": round(made, 1),
        "seconds_to_fill_database": round(filled, 1),
        **result,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--photos", type=int, default=1_000_000, help="stored photo hashes")
    ap.add_argument("--lookups", type=int, default=500, help="fills looked up (three photos each)")
    ap.add_argument("--hashes", choices=("clustered", "uniform"), default="clustered")
    ap.add_argument("--postgres", action="store_true", help="a new database on the local PostgreSQL")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--sqlite-file", help="keep the SQLite database here; a second run measures it again")
    args = ap.parse_args()
    # A kept SQLite file, filled by an earlier run with the same arguments, is measured again as it is.
    args.refill = args.postgres or not (args.sqlite_file and Path(args.sqlite_file).exists())
    print(json.dumps(asyncio.run(run(args)), indent=1))


if __name__ == "__main__":
    main()
