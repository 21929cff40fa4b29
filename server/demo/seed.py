"""Seeds a small pharmacy network with live work, through the same domain and media paths as real use.

Three sites in two states, two pharmacists licensed differently, technicians with device tokens,
prescriptions, and fills whose photos are generated: drawn pills, printed labels and a real GS1
DataMatrix on each stock bottle, some matching the prescription and some not.
"""

from __future__ import annotations

import concurrent.futures
import datetime as dt
import hashlib
import os
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from sqlalchemy import func, select

from server.config import Config
from server.db.engine import Database
from server.db.models import User
from server.demo import photos
from server.directory import Directory
from server.fills.intake import MediaIntake
from server.fills.lifecycle import FillService
from server.fills.requests import NewFill
from server.media.store import LocalMediaStore
from server.prescriptions import Prescriptions
from server.security.auth import Auth, principal_for
from server.security.passwords import Passwords
from server.security.principal import Principal

DEMO_PASSWORD = "demo-password"  # noqa: S105 - printed for the demo on purpose
PHOTO_SIZE = (1600, 1200)

SITES = (
    ("ND-HET", "Hettinger Drug", "ND"),
    ("ND-MOT", "Mott Community Pharmacy", "ND"),
    ("MN-LKB", "Lake Bronson Rx", "MN"),
)
TECHNICIANS = (
    ("tech.het", "Tara Hettinger-Tech", "ND-HET"),
    ("tech.mot", "Mo Otis", "ND-MOT"),
    ("tech.lkb", "Lars Bronson", "MN-LKB"),
)
PHARMACISTS = (("rph.nd", "Dr. Nora Dakota, PharmD", ("ND",)), ("rph.mn", "Dr. Mina Sota, PharmD", ("MN",)))


@dataclass(frozen=True)
class DemoRx:
    site: str
    rx_number: str
    patient: str
    dob: str
    drug: str
    strength: str
    form: str
    ndc: str
    quantity: int
    directions: str
    priority: str
    # What the technician actually pulled: the prescribed NDC unless the demo shows a mismatch.
    bottle_ndc: str | None = None
    expired_lot: bool = False
    scan: bool = True


PRESCRIPTIONS = (
    DemoRx(
        "ND-HET",
        "6001234",
        "Evelyn Hart",
        "1941-03-12",
        "Metformin HCl",
        "500 mg",
        "tablet",
        "0093-1048-01",
        60,
        "Take 1 tablet by mouth twice daily with meals",
        "waiting",
    ),
    DemoRx(
        "ND-HET",
        "6001235",
        "Walter Brandt",
        "1952-11-02",
        "Lisinopril",
        "10 mg",
        "tablet",
        "68180-513-01",
        30,
        "Take 1 tablet by mouth once daily",
        "routine",
    ),
    DemoRx(
        "ND-MOT",
        "7100456",
        "Grace Olson",
        "1960-07-21",
        "Atorvastatin Calcium",
        "20 mg",
        "tablet",
        "0378-2016-77",
        30,
        "Take 1 tablet by mouth at bedtime",
        "routine",
        bottle_ndc="0378-2018-77",
    ),
    DemoRx(
        "ND-MOT",
        "7100457",
        "Henry Lindqvist",
        "1938-01-30",
        "Amlodipine Besylate",
        "5 mg",
        "tablet",
        "0093-7167-56",
        90,
        "Take 1 tablet by mouth daily",
        "delivery",
        expired_lot=True,
    ),
    DemoRx(
        "MN-LKB",
        "8200310",
        "Ingrid Nygaard",
        "1975-05-05",
        "Sertraline HCl",
        "50 mg",
        "tablet",
        "16714-612-01",
        30,
        "Take 1 tablet by mouth every morning",
        "waiting",
    ),
    DemoRx(
        "MN-LKB",
        "8200311",
        "Arne Solberg",
        "1949-09-14",
        "Levothyroxine Sodium",
        "75 mcg",
        "tablet",
        "0378-1805-01",
        90,
        "Take 1 tablet by mouth every morning on an empty stomach",
        "routine",
        scan=False,
    ),
    DemoRx(
        "ND-HET",
        "6001236",
        "Ruth Engel",
        "1966-12-24",
        "Omeprazole DR",
        "20 mg",
        "capsule",
        "62175-136-37",
        30,
        "Take 1 capsule by mouth daily before breakfast",
        "routine",
    ),
)


async def _is_seeded(db: Database) -> bool:
    async with db.read() as s:
        return bool((await s.execute(select(func.count()).select_from(User))).scalar())


async def seed_if_empty(db: Database, config: Config) -> list[str]:
    """Seeds once; returns the demo logins to print. Device tokens go to a file only the owner reads."""
    logins = [f"{u:<10} admin" for u in ("admin",)]
    logins += [f"{u:<10} pharmacist, licensed in {', '.join(st)}" for u, _, st in PHARMACISTS]
    logins += [f"{u:<10} technician at {site}" for u, _, site in TECHNICIANS]
    if await _is_seeded(db):
        return [*logins, "(existing data kept; device tokens are in demo-device-tokens.txt)"]
    await seed(db, config)
    return [*logins, f"Site device tokens: {config.data_dir / 'demo-device-tokens.txt'}"]


async def seed(db: Database, config: Config) -> None:
    passwords = Passwords(config.password_time_cost, config.password_memory_kib)
    directory = Directory(db, passwords)
    auth = Auth(db, config, passwords)
    today = dt.date.today()
    for code, name, state in SITES:
        await directory.create_site(None, code, name, state)
    await directory.create_user(None, "admin", "Avery Admin", "admin", DEMO_PASSWORD)
    for username, display, states in PHARMACISTS:
        await directory.create_user(None, username, display, "pharmacist", DEMO_PASSWORD)
        for st in states:
            await directory.add_license(
                None,
                username,
                st,
                f"{st}-{abs(hash(username)) % 90000 + 10000}",
                today.replace(year=today.year + 2),
            )
    tokens = []
    techs: dict[str, Principal] = {}
    for username, display, site in TECHNICIANS:
        user = await directory.create_user(
            None, username, display, "technician", DEMO_PASSWORD, site_code=site
        )
        tokens.append(f"{username} {site} {await auth.issue_device_token(None, username, f'{site} counter')}")
        techs[site] = principal_for(user, via="device")
    token_file = config.data_dir / "demo-device-tokens.txt"
    token_file.write_text("\n".join(tokens) + "\n")
    os.chmod(token_file, 0o600)
    await _seed_fills(db, config, techs, today)


async def _seed_fills(db: Database, config: Config, techs: dict[str, Principal], today: dt.date) -> None:
    fills = FillService(db, config)
    prescriptions = Prescriptions(db)
    store = LocalMediaStore(config.media_dir)
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool, tempfile.TemporaryDirectory() as tmp:
        intake = MediaIntake(fills, store, pool, config)
        for i, demo in enumerate(PRESCRIPTIONS):
            tech = techs[demo.site]
            rx = await prescriptions.create(
                tech,
                {
                    "rx_number": demo.rx_number,
                    "patient_name": demo.patient,
                    "patient_dob": demo.dob,
                    "prescriber": "Dr. Sam Whitcomb, MD",
                    "drug": demo.drug,
                    "strength": demo.strength,
                    "dosage_form": demo.form,
                    "ndc": demo.ndc,
                    "quantity": demo.quantity,
                    "days_supply": 30,
                    "directions": demo.directions,
                    "fill_type": "new" if i % 3 else "refill",
                },
            )
            lot = f"L{2400 + i}A"
            expiry = today - dt.timedelta(days=40) if demo.expired_lot else today + dt.timedelta(days=400)
            bottle_ndc = demo.bottle_ndc or demo.ndc
            gtin = photos.gtin_for_ndc10(bottle_ndc)
            scan = f"(01){gtin}(17){expiry:%y%m%d}(10){lot}"
            record, _ = await fills.create(
                tech,
                NewFill(
                    id=str(uuid.uuid4()),
                    prescription_id=rx.id,
                    priority=demo.priority,
                    barcodes=(scan,) if demo.scan else (),
                    counted_quantity=None,
                ),
            )
            fill = record.fill
            shots: dict[str, Image.Image] = {
                "stock_bottle": photos.stock_bottle_photo(
                    bottle_ndc, demo.drug, demo.strength, lot, expiry, size=PHOTO_SIZE, seed=i
                ),
                "pills": photos.pills_photo(
                    min(demo.quantity, 40),
                    seed=i,
                    size=PHOTO_SIZE,
                    shape="capsule" if demo.form == "capsule" else "round",
                ),
                "vial_label": photos.vial_label_photo(
                    demo.rx_number,
                    demo.patient,
                    demo.drug,
                    demo.strength,
                    demo.directions,
                    demo.quantity,
                    seed=i,
                    size=PHOTO_SIZE,
                ),
            }
            for kind, image in shots.items():
                data = photos.to_jpeg_bytes(image, 88)
                path = Path(tmp) / f"{fill.id}-{kind}.jpg"
                path.write_bytes(data)
                await intake.take(
                    tech,
                    fill.id,
                    path,
                    sha256=hashlib.sha256(data).hexdigest(),
                    kind=kind,
                    filename=f"{kind}.jpg",
                )
            await fills.submit(tech, fill.id)
