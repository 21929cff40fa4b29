"""Builds a year of history for bench/history.py: sites, pharmacists and technicians through the domain
services, then fills in final states spread over 365 days with their prescriptions, decisions, photos,
audit chain, event journal and access log written in bulk, and a live queue on top.

Bulk means: COPY (asyncpg's copy_records_to_table) on PostgreSQL and batched executemany on SQLite,
with each table's secondary indexes dropped during the load and built once after it. Every row is
made in Python because the audit trail is a hash chain: each row's hash covers the previous one, so
the chain is computed in order, as server/audit/chain.py computes it (a test checks that
`audit verify` passes on what this builds). Photos are media rows pointing at a few real files in the
media store: content addressed, the same digest is the same file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from server.audit.chain import EXPORT_COLUMNS

STATES = ("ND", "SD", "MT", "MN", "IA")  # states whose rules set no limit of sites per pharmacist
PASSWORD = "bench-password-1"
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
DAY_US = 86_400_000_000
CHUNK = 20_000  # fills generated and written at a time
KINDS = ("stock_bottle", "pills", "vial_label")
REASONS = ("wrong_strength", "wrong_quantity", "image_unclear", "label_error", "barcode_mismatch")
QUEUED_DETAIL = '{"flags":[],"media":3,"product_check":"match","state":"queued","version":2}'
# The prescriptions' patients, each on one product. A network's dispensing is spread over thousands
# of products, a few of them common and most rare: product n is taken with weight 1/n, so the most
# common is an eighth of the fills and half the products have fewer than 300 fills in 2,000,000. A
# fill's reference photo (the product's last approval) is then looked up as in production: through the
# product's index for a rare one, backwards by decision time for a common one.
PATIENTS = 50_000
PRODUCTS = 2_000
HASH_POOL = 65_536  # distinct perceptual hashes dealt to the year's photos
TABLES = (
    "prescriptions",
    "fills",
    "decisions",
    "media",
    "media_files",
    "audit_events",
    "events",
    "access_log",
)


@dataclass
class Roster:
    """Who the history is about: ids made through the domain services before the bulk load."""

    sites: list[tuple[int, str, str]]  # (id, code, state)
    technicians: list[int]  # one per site, same order
    pharmacists: list[tuple[int, str]]  # (id, username)
    admin: str


@dataclass
class History:
    """What was built: where, how much, and how long it took."""

    url: str
    data_dir: Path
    fills: int
    queued: int
    roster: Roster
    rows: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    now_us: int = 0


def _us(t: dt.datetime) -> int:
    return (t - EPOCH) // dt.timedelta(microseconds=1)


def _at(us: int) -> dt.datetime:
    return EPOCH + dt.timedelta(microseconds=us)


async def seed_roster(url: str, data_dir: Path, sites: int, pharmacists: int) -> Roster:
    """Sites, a technician each, pharmacists licensed in every state, an administrator."""
    from server.config import Config
    from server.db.engine import Database
    from server.db.migrate import upgrade
    from server.directory import Directory
    from server.security.passwords import Passwords

    config = Config(data_dir=data_dir, password_time_cost=1, database_url=url)
    db = Database(config.effective_database_url)
    try:
        await upgrade(db)
        d = Directory(db, Passwords(1))
        expiry = dt.date.today() + dt.timedelta(days=365)
        await d.create_user(None, "hadmin", "History Admin", "admin", PASSWORD)
        rphs = []
        for j in range(pharmacists):
            user = await d.create_user(None, f"hrph{j}", f"Pharmacist {j}", "pharmacist", PASSWORD)
            for state in STATES:
                await d.add_license(None, f"hrph{j}", state, f"{state}-{j}", expiry)
            rphs.append((user.id, f"hrph{j}"))
        site_rows, techs = [], []
        for i in range(sites):
            state = STATES[i % len(STATES)]
            site = await d.create_site(None, f"H{i:03d}", f"History site {i}", state, requires_pv1=False)
            tech = await d.create_user(
                None, f"htech{i}", f"Technician {i}", "technician", PASSWORD, site_code=f"H{i:03d}"
            )
            site_rows.append((site.id, site.code, state))
            techs.append(tech.id)
    finally:
        await db.dispose()
    return Roster(site_rows, techs, rphs, "hadmin")


@dataclass(frozen=True)
class StoredPhoto:
    kind: str
    sha256: str
    bytes: int
    width: int
    height: int
    variants: str  # the media row's variants, as JSON
    files: tuple[str, ...]  # the SHA-256 of each stored file, as media_files lists them for retention


def store_photos(media_dir: Path, per_kind: int = 2) -> list[StoredPhoto]:
    """A few real photos and thumbnails in the media store, for every history photo to point at."""
    from PIL import Image

    from demo import photos

    def put(im: Image.Image) -> tuple[str, int]:
        buf = io.BytesIO()
        im.save(buf, "JPEG", quality=85)
        data = buf.getvalue()
        sha = hashlib.sha256(data).hexdigest()
        # The local store's layout (server/media/store.py, path_for): content addressed.
        path = media_dir / sha[:2] / sha[2:4] / sha
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return sha, len(data)

    size = (1024, 768)
    out = []
    for n in range(per_kind):
        scenes = {
            "stock_bottle": photos.stock_bottle_photo(
                "0093-1048-01", "Metformin HCl", "500 mg", "L1", dt.date(2028, 1, 31), size=size, seed=n
            ),
            "pills": photos.pills_photo(30, seed=n, size=size),
            "vial_label": photos.vial_label_photo(
                "600123",
                "Pat History",
                "Metformin HCl",
                "500 mg",
                "Take 1 twice daily",
                60,
                seed=n,
                size=size,
            ),
        }
        for kind, im in scenes.items():
            sha, nbytes = put(im)
            thumb = im.copy()
            thumb.thumbnail((320, 320))
            tsha, _ = put(thumb)
            variants = {
                "2048": {"sha256": sha, "content_type": "image/jpeg", "width": size[0], "height": size[1]},
                "320": {
                    "sha256": tsha,
                    "content_type": "image/jpeg",
                    "width": thumb.width,
                    "height": thumb.height,
                },
            }
            files = tuple(sorted({sha, tsha}))
            out.append(StoredPhoto(kind, sha, nbytes, size[0], size[1], json.dumps(variants), files))
    return out


def _hash_pool(rng: random.Random) -> list[tuple[int, int, tuple[int, ...]]]:
    from server.evidence.photo_hash import bands, joined

    def signed(v: int) -> int:
        return v - (1 << 64) if v >= 1 << 63 else v

    pool = []
    for _ in range(HASH_POOL):
        h, v = rng.getrandbits(64), rng.getrandbits(64)
        pool.append((signed(h), signed(v), bands(joined(h, v))))
    return pool


class Columns:
    """Each table's columns, in the order the generator makes its rows."""

    prescriptions = (
        "id", "site_id", "rx_number", "patient_name", "patient_dob", "prescriber", "drug", "strength",
        "dosage_form", "expected_ndc", "quantity", "days_supply", "directions", "fill_type", "source_kind",
        "refills_authorized", "reference_check", "created_at", "verification_state", "version",
    )  # fmt: skip
    fills = (
        "id", "prescription_id", "site_id", "technician_id", "priority", "state", "version", "barcodes",
        "counted_quantity", "product_check", "product_check_detail", "overridden_checks", "flags",
        "request_digest", "created_at", "submitted_at", "queued_at", "decided_at", "approved_ndc",
    )  # fmt: skip
    media_files = ("media_id", "sha256")
    decisions = (
        "id", "fill_id", "pharmacist_id", "outcome", "reason_codes", "note", "acknowledgements", "views_seen",
        "license_state", "license_number", "decided_at",
    )  # fmt: skip
    media = (
        "id", "fill_id", "kind", "sha256", "content_type", "filename", "bytes", "width", "height", "variants",
        "quality", "perceptual_hash", "perceptual_hash_vertical", "hash_band_0", "hash_band_1", "hash_band_2",
        "hash_band_3", "hash_band_4", "hash_band_5", "created_at",
    )  # fmt: skip
    audit_events = tuple(EXPORT_COLUMNS)
    events = ("id", "at", "type", "site_id", "us_state", "payload")
    access_log = ("id", "at", "user_id", "entity_type", "entity_id")


@dataclass
class Counters:
    """The next id of each table, and the audit chain's last (id, hash)."""

    rx: int
    media: int
    decision: int
    event: int
    access: int
    audit: tuple[int, str]


class Generator:
    """Makes the rows of a year of fills, in time order, a chunk at a time.

    `stamp` turns microseconds since 1970 into what the database driver takes for a timestamp, and the
    other converters do the same for dates, numbers and JSON: PostgreSQL's COPY takes Python objects,
    SQLite strings as SQLAlchemy stores them.
    """

    def __init__(
        self,
        roster: Roster,
        photos: Sequence[StoredPhoto],
        counters: Counters,
        *,
        sqlite: bool,
        seed: int,
    ) -> None:
        self.roster = roster
        self.counters = counters
        self.sqlite = sqlite
        self.rng = random.Random(seed)
        self.hashes = _hash_pool(self.rng)
        self.photos = {k: [p for p in photos if p.kind == k] for k in KINDS}
        self.dob = "1950-01-01" if sqlite else dt.date(1950, 1, 1)
        # Drawn apart from the rows' own randomness, which stays as it was.
        products = random.Random(seed + 1).choices(
            range(PRODUCTS), [1 / (n + 1) for n in range(PRODUCTS)], k=PATIENTS
        )
        self.product_of_patient = [(f"Drug {n + 1}", f"{n + 1:09d}01") for n in products]
        self.quantity: Any = 60 if sqlite else Decimal(60)
        self.rph_labels = {rid: json.dumps(f"pharmacist:{name}") for rid, name in roster.pharmacists}
        self.tech_labels = {
            tid: json.dumps(f"technician:htech{i}") for i, tid in enumerate(roster.technicians)
        }

    def stamp(self, us: int) -> Any:
        t = EPOCH + dt.timedelta(microseconds=us)
        if self.sqlite:
            return t.replace(tzinfo=None).isoformat(" ", "microseconds")
        return t

    def _audit(
        self, out: list[tuple[Any, ...]], us: int, actor_id: int | None, label: str, action: str,
        fill_id: str, detail: str,
    ) -> None:  # fmt: skip
        """One audit row whose hash is the one server/audit/chain.py's row_hash computes: its canonical
        JSON written out by hand (keys sorted, no spaces), `detail` already canonical."""
        last_id, prev = self.counters.audit
        n = last_id + 1
        at = (EPOCH + dt.timedelta(microseconds=us)).isoformat(timespec="microseconds")
        canonical = (
            f'{{"action":"{action}","actor":{label},"actor_id":{"null" if actor_id is None else actor_id},'
            f'"at":"{at}","detail":{detail},"entity_id":"{fill_id}","entity_type":"fill","id":{n},'
            f'"prev_hash":"{prev}"}}'
        )
        digest = hashlib.sha256(canonical.encode()).hexdigest()
        out.append(
            (n, self.stamp(us), actor_id, json.loads(label), action, "fill", fill_id, detail, prev, digest)
        )
        self.counters.audit = (n, digest)

    def chunk(
        self, first: int, count: int, times: Callable[[int], int], *, live: bool
    ) -> dict[str, list[tuple[Any, ...]]]:
        """Rows of fills first..first+count-1; fill n was created at times(n). Live fills are queued and
        wait for a pharmacist; the others were decided a few minutes after they were queued."""
        rows: dict[str, list[tuple[Any, ...]]] = {t: [] for t in TABLES}
        rng, c, roster = self.rng, self.counters, self.roster
        nsites = len(roster.sites)
        for n in range(first, first + count):
            created = times(n)
            k = rng.randrange(nsites)
            site_id, _, state = roster.sites[k]
            tech = roster.technicians[k]
            # Two fills a prescription (a new fill and a refill): the prescription comes with the first.
            if n % 2 == 0 or live:
                c.rx += 1
                drug, ndc = self.product_of_patient[c.rx % PATIENTS]
                rows["prescriptions"].append((
                    c.rx, site_id, f"R{c.rx}", f"Patient {c.rx % PATIENTS}", self.dob, "Dr. History",
                    drug, "500 mg", "tablet", ndc, self.quantity, 30,
                    "Take 1 tablet twice daily", "new", "entered", 1, "{}", self.stamp(created - 60_000_000),
                    "not_required", 1,
                ))  # fmt: skip
            rx = c.rx
            _, ndc = self.product_of_patient[rx % PATIENTS]
            fill_id = f"00000000-0000-4000-8000-{n:012d}"
            submitted = created + rng.randrange(30, 120) * 1_000_000
            queued = submitted + 200_000
            priority = ("waiting", "routine", "routine", "delivery")[n % 4]
            tech_label = self.tech_labels[tech]
            self._audit(rows["audit_events"], created, tech, tech_label, "fill.created", fill_id,
                        '{"state":"draft","version":1}')  # fmt: skip
            self._audit(rows["audit_events"], queued, tech, tech_label, "fill.queued", fill_id, QUEUED_DETAIL)
            c.event += 1
            rows["events"].append((
                c.event, self.stamp(queued), "fill.queued", site_id, state,
                f'{{"fill_id":"{fill_id}","site_id":{site_id},"state":"queued","version":2,'
                f'"priority":"{priority}","product_check":"match","claimed_by":null,"flags":[]}}',
            ))  # fmt: skip
            media_ids = []
            for kind in KINDS:
                photo = rng.choice(self.photos[kind])
                h, v, b = self.hashes[rng.randrange(HASH_POOL)]
                c.media += 1
                media_ids.append((c.media, kind))
                rows["media"].append((
                    c.media, fill_id, kind, photo.sha256, "image/jpeg", f"{kind}.jpg", photo.bytes,
                    photo.width, photo.height, photo.variants, "{}", h, v, *b, self.stamp(submitted),
                ))  # fmt: skip
                rows["media_files"].extend((c.media, sha) for sha in photo.files)
            decided = None
            if live:
                state_now, version = "queued", 2
            else:
                rph_id, _ = roster.pharmacists[n % len(roster.pharmacists)]
                rph_label = self.rph_labels[rph_id]
                claimed = queued + rng.randrange(20, 900) * 1_000_000
                decided = claimed + rng.randrange(30, 240) * 1_000_000
                reject = rng.random() < 0.04
                state_now, version = ("rejected" if reject else "approved"), 4
                outcome = "reject" if reject else "approve"
                reasons = [rng.choice(REASONS)] if reject else []
                self._audit(rows["audit_events"], claimed, rph_id, rph_label, "fill.claimed", fill_id,
                            '{"state":"in_review","version":3}')  # fmt: skip
                c.event += 1
                rows["events"].append((
                    c.event, self.stamp(claimed), "fill.claimed", site_id, state,
                    f'{{"fill_id":"{fill_id}","site_id":{site_id},"state":"in_review","version":3,'
                    f'"priority":"{priority}","product_check":"match","claimed_by":{rph_id},"flags":[]}}',
                ))  # fmt: skip
                c.access += 1
                rows["access_log"].append((c.access, self.stamp(claimed), rph_id, "fill", fill_id))
                c.decision += 1
                views = json.dumps(
                    [{"media_id": m, "kind": kind, "seconds": 4.5, "max_zoom": 1.5} for m, kind in media_ids]
                )
                rows["decisions"].append((
                    c.decision, fill_id, rph_id, outcome, json.dumps(reasons), None, "[]", views, state,
                    f"{state}-{n % len(roster.pharmacists)}", self.stamp(decided),
                ))  # fmt: skip
                detail = json.dumps(
                    {
                        "acknowledgements": [],
                        "decision_id": c.decision,
                        "has_note": False,
                        "license": {"number": f"{state}-{n % len(roster.pharmacists)}", "state": state},
                        "outcome": outcome,
                        "pharmacist": f"Pharmacist {n % len(roster.pharmacists)}",
                        "pharmacist_id": rph_id,
                        "reason_codes": reasons,
                        "state": state_now,
                        "step_up": [],
                        "version": version,
                        "views_seen": json.loads(views),
                    },
                    sort_keys=True,
                    separators=(",", ":"),
                )
                self._audit(rows["audit_events"], decided, rph_id, rph_label, "fill.decided", fill_id, detail)
                c.event += 1
                rows["events"].append((
                    c.event, self.stamp(decided), "fill.decided", site_id, state,
                    f'{{"fill_id":"{fill_id}","site_id":{site_id},"state":"{state_now}","version":4,'
                    f'"priority":"{priority}","product_check":"match","claimed_by":null,"flags":[],'
                    f'"outcome":"{outcome}","reason_codes":{json.dumps(reasons)}}}',
                ))  # fmt: skip
            rows["fills"].append((
                fill_id, rx, site_id, tech, priority, state_now, version, "[]", self.quantity, "match",
                "{}", "[]", "[]", hashlib.md5(fill_id.encode()).hexdigest() * 2, self.stamp(created),
                self.stamp(submitted), self.stamp(queued), None if decided is None else self.stamp(decided),
                ndc if state_now == "approved" else None,
            ))  # fmt: skip
        return rows


# -- writing ---------------------------------------------------------------------------------------


class SqliteWriter:
    """Batched executemany into the SQLite file, one transaction per chunk, durability off meanwhile."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA synchronous=OFF")
        self.conn.execute("PRAGMA foreign_keys=OFF")
        self.dropped: list[str] = []

    def counters(self) -> Counters:
        def top(table: str) -> int:
            return int(self.conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()[0])

        last = self.conn.execute("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1").fetchone()
        return Counters(
            top("prescriptions"), top("media"), top("decisions"), top("events"), top("access_log"),
            (last[0], last[1]) if last else (0, "0" * 64),
        )  # fmt: skip

    def drop_indexes(self) -> None:
        marks = ",".join("?" * len(TABLES))
        for name, sql in self.conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type='index' AND sql IS NOT NULL"
            f" AND tbl_name IN ({marks})",
            TABLES,
        ).fetchall():
            self.dropped.append(sql)
            self.conn.execute(f'DROP INDEX "{name}"')

    def write(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        self.conn.execute("BEGIN")
        for table in TABLES:
            if rows[table]:
                cols = getattr(Columns, table)
                self.conn.executemany(
                    f"INSERT INTO {table} ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                    rows[table],
                )
        self.conn.execute("COMMIT")

    def finish(self) -> None:
        for sql in self.dropped:
            self.conn.execute(sql)
        # No ANALYZE: the server never runs it, and its statistics change SQLite's plans (with them the
        # reused-photo lookup took 607 ms at 600,000 photos instead of 1.6 ms).
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        self.conn.close()


class PostgresWriter:
    """COPY into PostgreSQL with foreign-key triggers off (session_replication_role) and each table's
    secondary indexes built after the load."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.dropped: list[str] = []

    @classmethod
    async def open(cls, url: str) -> PostgresWriter:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(make_url(url).set(drivername="postgresql").render_as_string(False))
        await conn.execute("SET session_replication_role = replica")
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET maintenance_work_mem = '256MB'")
        return cls(conn)

    async def counters(self) -> Counters:
        async def top(table: str) -> int:
            return int(await self.conn.fetchval(f"SELECT coalesce(max(id), 0) FROM {table}"))

        last = await self.conn.fetchrow("SELECT id, hash FROM audit_events ORDER BY id DESC LIMIT 1")
        return Counters(
            await top("prescriptions"), await top("media"), await top("decisions"), await top("events"),
            await top("access_log"), (last["id"], last["hash"]) if last else (0, "0" * 64),
        )  # fmt: skip

    async def drop_indexes(self) -> None:
        # Indexes that back no constraint (primary and unique keys stay: COPY checks them as it goes).
        rows = await self.conn.fetch(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
               WHERE i.schemaname = 'public' AND i.tablename = ANY($1::text[])
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
            list(TABLES),
        )
        for r in rows:
            self.dropped.append(r["indexdef"])
            await self.conn.execute(f'DROP INDEX "{r["indexname"]}"')

    async def write(self, rows: dict[str, list[tuple[Any, ...]]]) -> None:
        async with self.conn.transaction():
            for table in TABLES:
                if rows[table]:
                    await self.conn.copy_records_to_table(
                        table, records=rows[table], columns=list(getattr(Columns, table))
                    )

    async def follow_sequences(self) -> None:
        """Ids the server hands out from a sequence continue after the rows written."""
        for table in ("prescriptions", "decisions", "media", "access_log"):
            await self.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )

    async def finish(self) -> None:
        for sql in self.dropped:
            await self.conn.execute(sql)
        await self.follow_sequences()
        await self.conn.execute("ANALYZE")

    async def close(self) -> None:
        await self.conn.close()
        await self.conn.close()


async def build(
    url: str,
    data_dir: Path,
    *,
    fills: int,
    sites: int = 300,
    pharmacists: int = 20,
    queued: int = 1000,
    seed: int = 1,
    log: Callable[[str], None] = lambda _: None,
) -> History:
    """Builds the history into an empty database at `url` (SQLite file or PostgreSQL) with `data_dir`'s
    media store; returns what it built."""
    from server.config import Config

    t0 = time.perf_counter()
    data_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 (before anything runs)
    roster = await seed_roster(url, data_dir, sites, pharmacists)
    config = Config(data_dir=data_dir, database_url=url)
    photos = store_photos(config.media_dir)
    t1 = time.perf_counter()
    now_us = _us(dt.datetime.now(dt.UTC))
    # Final fills spread over the 365 days before the last two hours; the live queue in those hours.
    span = 365 * DAY_US - 2 * 3600_000_000
    start = now_us - 365 * DAY_US
    step = span / max(1, fills)

    def past(n: int) -> int:
        return start + int(n * step)

    def recent(n: int) -> int:
        return now_us - 2 * 3600_000_000 + int((n - fills) * (7000_000_000 / max(1, queued)))

    sqlite = config.is_sqlite
    history = History(url, data_dir, fills, queued, roster, now_us=now_us)
    writer: Any
    if sqlite:
        writer = SqliteWriter(Path(make_url(config.effective_database_url).database or ""))
        counters = writer.counters()
        writer.drop_indexes()
    else:
        # The months of the year behind, each its own partition (server.db.partitions), as the server
        # would have made them month by month; otherwise the year lands in the DEFAULT partitions.
        from server.db.engine import Database
        from server.db.partitions import ensure_partitions

        db = Database(url)
        await ensure_partitions(db, _at(now_us), since=_at(start))
        await db.dispose()
        writer = await PostgresWriter.open(url)
        counters = await writer.counters()
        await writer.drop_indexes()
    gen = Generator(roster, photos, counters, sqlite=sqlite, seed=seed)
    made = wrote = 0.0
    totals = dict.fromkeys(TABLES, 0)
    for first, count, live, times in (
        *((f, min(CHUNK, fills - f), False, past) for f in range(0, fills, CHUNK)),
        *((fills + f, min(CHUNK, queued - f), True, recent) for f in range(0, queued, CHUNK)),
    ):
        a = time.perf_counter()
        rows = gen.chunk(first, count, times, live=live)
        b = time.perf_counter()
        if sqlite:
            writer.write(rows)
        else:
            await writer.write(rows)
        c = time.perf_counter()
        made, wrote = made + b - a, wrote + c - b
        for table in TABLES:
            totals[table] += len(rows[table])
        if (first // CHUNK) % 10 == 0:
            log(f"history: {first + count} fills written ({c - t0:.0f} s)")
    a = time.perf_counter()
    if sqlite:
        writer.finish()
    else:
        await writer.finish()
    indexed = time.perf_counter() - a
    history.rows = totals
    history.seconds = {
        "seed_and_photos": round(t1 - t0, 1),
        "generate_rows": round(made, 1),
        "write_rows": round(wrote, 1),
        "build_indexes_and_analyze": round(indexed, 1),
        "total": round(time.perf_counter() - t0, 1),
    }
    return history


# The fills the build numbers itself: fill n is FILL_ID_PREFIX followed by n in 12 digits.
FILL_ID_PREFIX = "00000000-0000-4000-8000-"


async def top_up_queue(history: History, seed: int = 1) -> int:
    """Puts the live queue back to the `history.queued` open fills the build left, after a run's
    pharmacists claimed and approved some of them: new fills at the back of the queue, made and written
    as the build makes them (the next audit rows continue the chain), so that each `--reuse` run
    measures the same queue. Returns how many fills were added."""
    from server.config import Config

    config = Config(data_dir=history.data_dir, database_url=history.url)
    open_fills = "SELECT count(*) FROM fills WHERE state IN ('queued', 'in_review')"
    numbered = f"SELECT max(id) FROM fills WHERE id LIKE '{FILL_ID_PREFIX}%'"
    writer: Any
    if config.is_sqlite:
        writer = SqliteWriter(Path(make_url(config.effective_database_url).database or ""))
        waiting, last = (writer.conn.execute(q).fetchone()[0] for q in (open_fills, numbered))
    else:
        writer = await PostgresWriter.open(history.url)
        waiting = await writer.conn.fetchval(open_fills)
        last = await writer.conn.fetchval(numbered)
    try:
        missing = history.queued - int(waiting)
        if missing <= 0:
            return 0
        first = int(str(last).removeprefix(FILL_ID_PREFIX)) + 1
        counters = writer.counters() if config.is_sqlite else await writer.counters()
        gen = Generator(
            history.roster, store_photos(config.media_dir), counters, sqlite=config.is_sqlite, seed=seed
        )
        now_us = _us(dt.datetime.now(dt.UTC))
        # Created over the last `missing` seconds, in the order of their numbers.
        rows = gen.chunk(first, missing, lambda n: now_us - (first + missing - n) * 1_000_000, live=True)
        if config.is_sqlite:
            writer.write(rows)
        else:
            await writer.write(rows)
            await writer.follow_sequences()
        return missing
    finally:
        if config.is_sqlite:
            writer.conn.close()
        else:
            await writer.close()
