"""What a retention run costs: a dry run and an applied run over fills whose photos are half past their
period, with their files in a local media store, and an event journal half older than its window, on
SQLite and on PostgreSQL.

    .venv/bin/python -m bench.retention [--fills 10000] [--events 200000]
        [--postgres postgresql://postgres@127.0.0.1/test]

With --postgres it makes a database of its own on that server (and drops it afterwards).

Prints JSON per database: seconds of the dry run and of the applied run, media removed per second
(their files deleted and their rows marked), events trimmed per second.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bench.harness import emit, prescription_row, scratch_database
from server.compliance import retention
from server.compliance.rules import load_rules
from server.db.engine import Database
from server.db.models import Event, Fill, Media, MediaFile, Prescription, Site, User, utcnow
from server.media.store import LocalMediaStore

SITES = 20
PHOTOS = ("stock_bottle", "pills", "vial_label")
BATCH = 5000


def site_rules(folder: Path) -> Path:
    path = folder / "site_rules.toml"
    path.write_text(
        "".join(
            f'[sites.ND-{i}]\nstate = "ND"\nwhy = "bench"\n'
            "retention_prescription_days = 365\nretention_verification_days = 365\n\n"
            for i in range(1, SITES + 1)
        ),
        encoding="utf-8",
    )
    return path


def put(store: LocalMediaStore, content: str) -> str:
    """A small file in the store, written plainly: the bench measures removing files, not storing them."""
    data = content.encode()
    sha = hashlib.sha256(data).hexdigest()
    path = store.path_for(sha)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return sha


async def seed(db: Database, store: LocalMediaStore, fills: int, events: int, now: dt.datetime) -> None:
    async with db.write() as s:
        await s.execute(
            insert(Site),
            [{"id": i, "code": f"ND-{i}", "name": f"S{i}", "state": "ND"} for i in range(1, SITES + 1)],
        )
        await s.execute(insert(User), [{"id": 1, "username": "t", "display_name": "T", "role": "technician"}])
    media_id = 0
    for start in range(0, fills, BATCH):
        rxs, rows, media, files = [], [], [], []
        for n in range(start, min(fills, start + BATCH)):
            site = n % SITES + 1
            # Half were decided 400 days ago (past a year's period), half 10 days ago.
            at = now - dt.timedelta(days=400 if n % 2 == 0 else 10)
            rxs.append(prescription_row(n + 1, site, f"RX{n}", created_at=at))
            fid = str(uuid.uuid4())
            rows.append(
                {
                    "id": fid,
                    "prescription_id": n + 1,
                    "site_id": site,
                    "technician_id": 1,
                    "priority": "routine",
                    "state": "approved",
                    "request_digest": "x",
                    "created_at": at,
                    "decided_at": at,
                }
            )
            for kind in PHOTOS:
                media_id += 1
                full, thumb = put(store, f"{fid} {kind} full"), put(store, f"{fid} {kind} 320")
                variants = {
                    "full": {"sha256": full, "content_type": "image/jpeg"},
                    "2048": {"sha256": full, "content_type": "image/jpeg"},
                    "320": {"sha256": thumb, "content_type": "image/jpeg"},
                }
                media.append(
                    {
                        "id": media_id,
                        "fill_id": fid,
                        "kind": kind,
                        "sha256": hashlib.sha256(f"{fid}{kind}".encode()).hexdigest(),
                        "content_type": "image/jpeg",
                        "filename": "p.jpg",
                        "bytes": 1,
                        "variants": variants,
                        "quality": {},
                        "created_at": at,
                    }
                )
                files += [{"media_id": media_id, "sha256": full}, {"media_id": media_id, "sha256": thumb}]
        async with db.write() as s:
            await s.execute(insert(Prescription), rxs)
            await s.execute(insert(Fill), rows)
            await s.execute(insert(Media), media)
            await s.execute(insert(MediaFile), files)
    for start in range(0, events, BATCH):
        async with db.write() as s:
            await s.execute(
                insert(Event),
                [
                    {
                        "id": n + 1,
                        "at": now - dt.timedelta(days=14 if n < events // 2 else 1, seconds=events - n),
                        "type": "fill.queued",
                        "site_id": n % SITES + 1,
                        "payload": {"fill_id": "x", "state": "queued"},
                    }
                    for n in range(start, min(events, start + BATCH))
                ],
            )


async def measure(url: str, folder: Path, fills: int, events: int) -> dict[str, Any]:
    db = Database(url)
    store = LocalMediaStore(folder / "media")
    try:
        await db.create_schema()
        now = utcnow()
        await seed(db, store, fills, events, now)
        book = load_rules(site_path=site_rules(folder))
        t = time.perf_counter()
        dry = await retention.run(db, store, book, now=now, journal_days=7)
        dry_s = time.perf_counter() - t
        t = time.perf_counter()
        media_done = await retention.run(db, store, book, now=now, journal_days=10_000, apply=True)
        media_s = time.perf_counter() - t
        t = time.perf_counter()
        events_done = await retention.run(db, store, book, now=now, journal_days=7, apply=True)
        events_s = time.perf_counter() - t
        removed = sum(x.removed for x in media_done.lines if x.kind == retention.FILL_MEDIA)
        trimmed = sum(x.removed for x in events_done.lines if x.kind == retention.EVENT_JOURNAL)
        return {
            "media": fills * len(PHOTOS),
            "media_due": sum(x.due for x in dry.lines if x.kind == retention.FILL_MEDIA),
            "dry_run_s": round(dry_s, 2),
            "media_removed": removed,
            "media_apply_s": round(media_s, 2),
            "media_removed_per_s": round(removed / media_s),
            "events": events,
            "events_trimmed": trimmed,
            "events_apply_s": round(events_s, 2),
            "events_trimmed_per_s": round(trimmed / events_s),
        }
    finally:
        await db.dispose()


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--fills", type=int, default=10000)
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--postgres", default="")
    args = ap.parse_args()
    out: dict[str, Any] = {"fills": args.fills, "sites": SITES}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sqlite"
        folder.mkdir()
        out["sqlite"] = await measure(
            f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}", folder, args.fills, args.events
        )
        if args.postgres:
            async with scratch_database(args.postgres, "bench_retention") as url:
                folder = Path(tmp) / "postgresql"
                folder.mkdir()
                out["postgresql"] = await measure(url, folder, args.fills, args.events)
    emit(out)


if __name__ == "__main__":
    asyncio.run(main())
