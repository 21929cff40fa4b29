"""A realistic pharmacy network for the README's screenshots: real-looking photos, a week of history.

Everything goes through the domain services with a simulated clock, so the history (claims,
decisions, the audit trail) is what a week of real use would have written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import random
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp.test_utils import TestServer
from PIL import Image, ImageDraw

from server.app import create_app
from server.config import Config
from server.db.models import utcnow
from server.demo import photos
from server.fills.requests import DecisionInput, NewFill
from server.security.principal import Principal, Role
from server.services import SERVICES, Services

PASSWORD = "showcase-password"
SITES = (
    ("ND-HET", "Hettinger Drug", "ND", "tech.het", "Tara Heit, CPhT"),
    ("ND-MOT", "Mott Community Pharmacy", "ND", "tech.mot", "Mo Otis, CPhT"),
    ("ND-BOW", "Bowman Family Pharmacy", "ND", "tech.bow", "Bea Bowman, CPhT"),
    ("MN-LKB", "Lake Bronson Rx", "MN", "tech.lkb", "Lars Bronson, CPhT"),
)
PHARMACISTS = (
    ("rph.nd", "Dr. Nora Dakota, PharmD", ("ND", "MN")),
    ("rph.lind", "Dr. Sam Lind, PharmD", ("ND",)),
    ("rph.sota", "Dr. Mina Sota, PharmD", ("MN",)),
)
PRESCRIBERS = ("Dr. Sam Whitcomb, MD", "Dr. Alice Brekke, DO", "Dr. Omar Haddad, MD", "Jen Ulstad, FNP-C")
REASON_WEIGHTS = {
    "wrong_quantity": 5,
    "label_error": 3,
    "image_unclear": 4,
    "barcode_mismatch": 2,
    "wrong_strength": 1,
    "expired_or_damaged_stock": 1,
}


@dataclass(frozen=True)
class LiveRx:
    site: str
    rx: str
    patient: str
    dob: str
    drug: str
    strength: str
    form: str
    ndc: str
    qty: int
    directions: str
    priority: str
    minutes_ago: float
    bottle_ndc: str | None = None
    expired: bool = False
    counted: int | None = None


LIVE = (
    LiveRx(
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
        24,
        counted=60,
    ),
    LiveRx(
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
        6,
        counted=30,
    ),
    LiveRx(
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
        17,
        bottle_ndc="0378-2018-77",
    ),
    LiveRx(
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
        12,
    ),
    LiveRx(
        "ND-BOW",
        "5500871",
        "Ruth Engel",
        "1966-12-24",
        "Omeprazole DR",
        "20 mg",
        "capsule",
        "62175-136-37",
        30,
        "Take 1 capsule by mouth daily before breakfast",
        "routine",
        4,
        counted=30,
    ),
    LiveRx(
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
        2,
    ),
    LiveRx(
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
        9,
        expired=True,
    ),
    LiveRx(
        "ND-BOW",
        "5500872",
        "Dale Fischer",
        "1958-04-18",
        "Losartan Potassium",
        "50 mg",
        "tablet",
        "0093-7365-56",
        30,
        "Take 1 tablet by mouth once daily",
        "delivery",
        0.7,
    ),
)


class SimClock:
    """The domain's clock: a set instant while history is written, the real time otherwise."""

    def __init__(self) -> None:
        self.at: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.at or utcnow()


@dataclass
class Showcase:
    server: TestServer
    services: Services
    clock: SimClock
    tmp: Path
    techs: dict[str, Principal] = field(default_factory=dict)
    rphs: dict[str, Principal] = field(default_factory=dict)
    live: list[str] = field(default_factory=list)
    rx_seq: int = 100

    @property
    def url(self) -> str:
        return str(self.server.make_url("/"))

    async def take(
        self, tech: Principal, fill_id: str, kind: str, data: bytes, filename: str = "photo.jpg"
    ) -> None:
        path = self.tmp / f"{uuid.uuid4().hex}-{filename}"
        path.write_bytes(data)
        await self.services.intake.take(
            tech, fill_id, path, sha256=hashlib.sha256(data).hexdigest(), kind=kind, filename=filename
        )

    async def new_fill(
        self,
        site: str,
        rx_body: dict[str, Any],
        *,
        priority: str = "routine",
        barcodes: tuple[str, ...] = (),
        counted: int | None = None,
        previous: str | None = None,
    ) -> str:
        tech = self.techs[site]
        rx_id = rx_body.pop("_rx_id", None)
        if rx_id is None:
            rx_id = (await self.services.prescriptions.create(tech, rx_body)).id
        from decimal import Decimal

        record, _ = await self.services.fills.create(
            tech,
            NewFill(
                id=str(uuid.uuid4()),
                prescription_id=rx_id,
                priority=priority,
                barcodes=barcodes,
                counted_quantity=None if counted is None else Decimal(counted),
                previous_fill_id=previous,
            ),
        )
        fill = record.fill
        return fill.id


def _small_photo(kind: str) -> bytes:
    im = Image.new(
        "RGB",
        (480, 360),
        {"stock_bottle": (200, 196, 186), "pills": (150, 180, 210)}.get(kind, (190, 170, 150)),
    )
    ImageDraw.Draw(im).rectangle((160, 80, 320, 280), fill=(235, 235, 230))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


def _rx(live: LiveRx, fill_type: str) -> dict[str, Any]:
    return {
        "rx_number": live.rx,
        "patient_name": live.patient,
        "patient_dob": live.dob,
        "prescriber": PRESCRIBERS[0],
        "drug": live.drug,
        "strength": live.strength,
        "dosage_form": live.form,
        "ndc": live.ndc,
        "quantity": live.qty,
        "days_supply": 30 if live.qty <= 60 else 90,
        "directions": live.directions,
        "fill_type": fill_type,
    }


async def _people(show: Showcase) -> None:
    d = show.services.directory
    today = dt.date.today()
    for code, name, state, _, _ in SITES:
        await d.create_site(None, code, name, state)
    await d.create_user(None, "admin", "Avery Admin", "admin", PASSWORD)
    for username, display, states in PHARMACISTS:
        user = await d.create_user(None, username, display, "pharmacist", PASSWORD)
        for st in states:
            await d.add_license(None, username, st, f"{st}-{user.id:05d}", today + dt.timedelta(days=700))
        show.rphs[username] = Principal(
            user.id, username, display, Role.PHARMACIST, None, frozenset(states), "session"
        )
    for code, _, _, username, display in SITES:
        user = await d.create_user(None, username, display, "technician", PASSWORD, site_code=code)
        show.techs[code] = Principal(
            user.id, username, display, Role.TECHNICIAN, user.site_id, frozenset(), "device"
        )


async def _history(show: Showcase, now: dt.datetime, rng: random.Random, count: int) -> None:
    """A week of decided fills: turnaround of a few minutes to half an hour, some rejections."""
    fills = show.services.fills
    small = {"stock_bottle": _small_photo("stock_bottle")}
    by_state = {"ND": ["rph.nd", "rph.lind"], "MN": ["rph.nd", "rph.sota"]}
    for _ in range(count):
        code, _, state, _, _ = SITES[rng.choice((0, 0, 1, 1, 2, 3, 3))]
        day = rng.randint(0, 6)
        submitted = now - dt.timedelta(days=day, hours=rng.uniform(0.5, 9.5))
        wait = dt.timedelta(minutes=rng.lognormvariate(1.6, 0.7))
        review = dt.timedelta(seconds=rng.uniform(35, 110))
        show.clock.at = submitted
        show.rx_seq += 1
        body = {
            "rx_number": f"H{show.rx_seq}",
            "patient_name": "History Patient",
            "patient_dob": "1950-01-01",
            "prescriber": rng.choice(PRESCRIBERS),
            "drug": "Metformin HCl",
            "strength": "500 mg",
            "dosage_form": "tablet",
            "ndc": "0093-1048-01",
            "quantity": 60,
            "days_supply": 30,
            "directions": "Take 1 tablet by mouth twice daily",
            "fill_type": "refill",
        }
        fill_id = await show.new_fill(
            code, body, priority=rng.choice(("waiting", "routine", "routine", "delivery"))
        )
        for kind, data in small.items():
            await show.take(show.techs[code], fill_id, kind, data)
        await fills.submit(show.techs[code], fill_id)
        rph = show.rphs[rng.choice(by_state[state])]
        show.clock.at = submitted + wait
        claimed = await fills.claim(rph, fill_id)
        show.clock.at = submitted + wait + review
        if rng.random() < 0.14:
            reasons = rng.sample(
                list(REASON_WEIGHTS), k=rng.choice((1, 1, 2)), counts=list(REASON_WEIGHTS.values())
            )
            decision = DecisionInput(
                claimed.version, "reject", tuple(dict.fromkeys(reasons)), "Please retake."
            )
        else:
            decision = DecisionInput(claimed.version, "approve", (), None)
        await fills.decide(rph, fill_id, decision)
    show.clock.at = None


def _scan(ndc10: str, lot: str, expiry: dt.date) -> str:
    return f"(01){photos.gtin_for_ndc10(ndc10)}(17){expiry:%y%m%d}(10){lot}"


async def _live_fill(show: Showcase, i: int, live: LiveRx, now: dt.datetime, video: Path | None) -> str:
    today = now.date()
    lot = f"L{2400 + i}A"
    expiry = today - dt.timedelta(days=40) if live.expired else today + dt.timedelta(days=420)
    bottle = live.bottle_ndc or live.ndc
    # Only the fills the screenshots open need phone-sized photos; smaller ones keep the setup quick.
    size = (1600, 1200) if i < 2 else (800, 600)
    shots = {
        "stock_bottle": photos.stock_bottle_photo(
            bottle, live.drug, live.strength, lot, expiry, size=size, seed=i
        ),
        "pills": photos.pills_photo(
            min(live.qty, 40), seed=i, size=size, shape="capsule" if live.form == "capsule" else "round"
        ),
        "vial_label": photos.vial_label_photo(
            live.rx, live.patient, live.drug, live.strength, live.directions, live.qty, seed=i, size=size
        ),
    }
    submitted = now - dt.timedelta(minutes=live.minutes_ago)
    previous = None
    rx_body = _rx(live, "new" if i % 3 else "refill")
    if i == 0:
        # The first attempt of this prescription was rejected: the console shows it with its reasons.
        show.clock.at = submitted - dt.timedelta(minutes=14)
        tech = show.techs[live.site]
        rx = await show.services.prescriptions.create(tech, rx_body)
        first = await show.new_fill(
            live.site,
            {"_rx_id": rx.id},
            priority=live.priority,
            barcodes=(_scan(bottle, lot, expiry),),
            counted=58,
        )
        for kind in ("stock_bottle", "pills", "vial_label"):
            await show.take(tech, first, kind, _small_photo(kind))
        await show.services.fills.submit(tech, first)
        show.clock.at = submitted - dt.timedelta(minutes=9)
        claimed = await show.services.fills.claim(show.rphs["rph.lind"], first)
        show.clock.at = submitted - dt.timedelta(minutes=8)
        await show.services.fills.decide(
            show.rphs["rph.lind"],
            first,
            DecisionInput(
                claimed.version,
                "reject",
                ("wrong_quantity",),
                "Counted 58; please recount to 60 and retake the tray photo.",
            ),
        )
        previous = first
        rx_body = {"_rx_id": rx.id}
    show.clock.at = submitted
    fill_id = await show.new_fill(
        live.site,
        rx_body,
        priority=live.priority,
        barcodes=(_scan(bottle, lot, expiry),),
        counted=live.counted,
        previous=previous,
    )
    tech = show.techs[live.site]
    for kind, image in shots.items():
        await show.take(tech, fill_id, kind, photos.to_jpeg_bytes(image, 88), f"{kind}.jpg")
    if video is not None:
        await show.take(tech, fill_id, "count_video", video.read_bytes(), "count.webm")
    await show.services.fills.submit(tech, fill_id)
    show.clock.at = None
    return fill_id


@asynccontextmanager
async def showcase(tmp: Path, *, history: int = 70) -> AsyncIterator[Showcase]:
    """Starts a server with the showcase data on a loopback port."""
    clock = SimClock()
    # The history's fills carry one photo each (they only feed the dashboard); live fills carry all three.
    config = Config(
        data_dir=tmp / "data",
        database_url=f"sqlite+aiosqlite:///{tmp / 'showcase.sqlite3'}",
        password_time_cost=1,
        media_workers=0,
        required_media_kinds=("stock_bottle",),
    )
    server = TestServer(create_app(config, schema="create", clock=clock))
    await server.start_server()
    show = Showcase(server, server.app[SERVICES], clock, tmp)
    try:
        await _people(show)
        now = utcnow()
        rng = random.Random(7)
        await _history(show, now, rng, history)
        video = photos.count_video(
            tmp / "count.webm", seconds=3, fps=10, size=(960, 720), container="webm", count=40, seed=3
        )
        for i, live in enumerate(LIVE):
            show.live.append(await _live_fill(show, i, live, now, video if i == 0 else None))
        # Another pharmacist is reviewing one of them right now.
        await show.services.fills.claim(show.rphs["rph.lind"], show.live[3])
        yield show
    finally:
        await server.close()
