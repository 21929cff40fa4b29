"""The demo pharmacy network: four sites in two states, a week of decided fills and a live queue.

Everything goes through the server's services, as real use would, with a simulated clock while the
history is written, so the claims, decisions and the audit trail are what a week of work leaves. The
live fills carry drawn photos: pills on a tray, printed vial labels and a real GS1 DataMatrix on each
stock bottle, one pulled with the wrong strength and one from an expired lot. Every prescription behind
a fill was verified (PV1) first; one is verified and not yet filled, for a first fill from the site
client; two wait for their data-entry verification: an e-prescription whose entered strength differs
from the message, and a paper one with a photo of its original.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from demo import photos
from server.data_entry.service import VerificationInput
from server.db.models import Fill, utcnow
from server.fills.records import FillRecord
from server.fills.requests import DecisionInput, NewFill
from server.pharmacy_systems.fhir import read_message
from server.security.principal import Principal, Role
from server.security.second_factor import Proof
from server.security.step_up import StepUpRequired
from server.services import Services

PASSWORD = "rural-counter-demo"  # noqa: S105 - every demo login's password, printed on purpose
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
# Who verified the data entry of the demo's prescriptions: not rph.nd, who finds the ones left waiting.
PV1_PHARMACIST = {"ND": "rph.lind", "MN": "rph.sota"}
PRESCRIBERS = ("Dr. Sam Whitcomb, MD", "Dr. Alice Brekke, DO", "Dr. Omar Haddad, MD", "Jen Ulstad, FNP-C")
REASON_WEIGHTS = {
    "wrong_quantity": 5,
    "label_error": 3,
    "image_unclear": 4,
    "barcode_mismatch": 2,
    "wrong_strength": 1,
    "expired_or_damaged_stock": 1,
}
PHONE_PHOTO = (1600, 1200)


@dataclass(frozen=True)
class DemoRx:
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
    # What the technician actually pulled: the prescribed NDC unless the demo shows a mismatch.
    bottle_ndc: str | None = None
    expired: bool = False
    counted: int | None = None
    # An approved fill of the same prescription this many days before: a refill too soon.
    filled_days_ago: float | None = None
    # The pills photo sent is the one of this earlier live fill (its place in LIVE): a reused photo.
    pills_photo_of: int | None = None


LIVE = (
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
        24,
        counted=60,
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
        6,
        counted=30,
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
        17,
        bottle_ndc="0378-2018-77",
        counted=30,
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
        12,
        counted=30,
        filled_days_ago=8,
    ),
    DemoRx(
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
        2,
        counted=90,
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
        9,
        expired=True,
        counted=90,
    ),
    DemoRx(
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
        counted=28,
        pills_photo_of=3,
    ),
)
# Entered at the counter and waiting for its first fill: the one a newcomer sends with `tp-site submit`.
UNFILLED = DemoRx(
    "ND-HET",
    "6001237",
    "Joan Whitfield",
    "1948-08-09",
    "Simvastatin",
    "20 mg",
    "tablet",
    "0093-7153-56",
    30,
    "Take 1 tablet by mouth every evening",
    "waiting",
    0,
)
UNFILLED_LOT = "L2417C"
# The week of decided fills behind the dashboard: one refill, numbered H101, H102, ...
HISTORY = DemoRx(
    "",
    "",
    "History Patient",
    "1950-01-01",
    "Metformin HCl",
    "500 mg",
    "tablet",
    "0093-1048-01",
    60,
    "Take 1 tablet by mouth twice daily",
    "routine",
    0,
)


class SimClock:
    """The domain's clock: a set instant while history is written, the real time otherwise."""

    def __init__(self) -> None:
        self.at: dt.datetime | None = None

    def __call__(self) -> dt.datetime:
        return self.at or utcnow()


@dataclass
class DemoWorld:
    """The people and fills of the demo, for whoever drives it next (a test, the demo's printout)."""

    services: Services
    clock: SimClock
    work_dir: Path
    techs: dict[str, Principal] = field(default_factory=dict)
    rphs: dict[str, Principal] = field(default_factory=dict)
    # The live queue's fills, oldest submission first in LIVE's order.
    live: list[str] = field(default_factory=list)
    # Each live fill's photos as sent, by its place in LIVE and kind.
    live_photos: dict[int, dict[str, bytes]] = field(default_factory=dict)
    rx_seq: int = 100

    async def take(
        self, tech: Principal, fill_id: str, kind: str, data: bytes, filename: str = "photo.jpg"
    ) -> None:
        path = self.work_dir / f"{uuid.uuid4().hex}-{filename}"
        path.write_bytes(data)
        await self.services.intake.take(
            tech, fill_id, path, sha256=hashlib.sha256(data).hexdigest(), kind=kind, filename=filename
        )

    async def new_fill(
        self,
        site: str,
        prescription_id: int,
        *,
        priority: str = "routine",
        barcodes: tuple[str, ...] = (),
        counted: int | None = None,
        previous: str | None = None,
    ) -> str:
        record, _ = await self.services.fills.create(
            self.techs[site],
            NewFill(
                id=str(uuid.uuid4()),
                prescription_id=prescription_id,
                priority=priority,
                barcodes=barcodes,
                counted_quantity=None if counted is None else Decimal(counted),
                previous_fill_id=previous,
            ),
        )
        return record.fill.id

    async def prescription(self, demo: DemoRx, fill_type: str) -> int:
        """A prescription entered at the site and verified (PV1) by a pharmacist of its state."""
        rx = await self.services.prescriptions.create(self.techs[demo.site], rx_body(demo, fill_type))
        await self.verify(rx.id, demo.site)
        return rx.id

    async def verify(self, rx_id: int, site: str) -> None:
        """A pharmacist of the site's state verifies the prescription's data entry (PV1)."""
        rph = self.rphs[PV1_PHARMACIST[next(s for c, _, s, _, _ in SITES if c == site)]]
        claimed = await self.services.data_entry.claim(rph, rx_id)
        await self.services.data_entry.decide(
            rph, rx_id, VerificationInput(claimed.version, "verify", (), None)
        )


def rx_body(demo: DemoRx, fill_type: str, *, prescriber: str = PRESCRIBERS[0]) -> dict[str, Any]:
    return {
        "rx_number": demo.rx,
        "patient_name": demo.patient,
        "patient_dob": demo.dob,
        "prescriber": prescriber,
        "drug": demo.drug,
        "strength": demo.strength,
        "dosage_form": demo.form,
        "ndc": demo.ndc,
        "quantity": demo.qty,
        "days_supply": 30 if demo.qty <= 60 else 90,
        "directions": demo.directions,
        "fill_type": fill_type,
        # Maintenance medicines, refilled monthly: a year's refills.
        "refills_authorized": 11,
    }


def scan_text(ndc10: str, lot: str, expiry: dt.date) -> str:
    """What a scanner reads from a stock bottle's GS1 DataMatrix: product, expiry and lot."""
    return f"(01){photos.gtin_for_ndc10(ndc10)}(17){expiry:%y%m%d}(10){lot}"


def evidence_photos(
    demo: DemoRx, seed: int, lot: str, expiry: dt.date, size: tuple[int, int]
) -> dict[str, Image.Image]:
    """The three photos a technician takes of a fill: stock bottle, counted pills, labelled vial."""
    return {
        "stock_bottle": photos.stock_bottle_photo(
            demo.bottle_ndc or demo.ndc, demo.drug, demo.strength, lot, expiry, size=size, seed=seed
        ),
        "pills": photos.pills_photo(
            min(demo.qty, 40), seed=seed, size=size, shape="capsule" if demo.form == "capsule" else "round"
        ),
        "vial_label": photos.vial_label_photo(
            demo.rx, demo.patient, demo.drug, demo.strength, demo.directions, demo.qty, seed=seed, size=size
        ),
    }


def _small_photo(kind: str, seed: int | str) -> bytes:
    """A plain stand-in photo, its own per fill (seed): the same one twice would be flagged as reused."""
    rng = random.Random(f"small:{kind}:{seed}")
    base = {"stock_bottle": (200, 196, 186), "pills": (150, 180, 210)}.get(kind, (190, 170, 150))
    # A coarse pattern of lighter and darker patches tells two fills' photos apart (perceptual hash).
    patches = Image.new("L", (12, 9))
    patches.putdata([rng.randrange(-40, 41) + 128 for _ in range(12 * 9)])
    patches = patches.resize((480, 360), Image.Resampling.BILINEAR)
    im = Image.merge("RGB", [patches.point(lambda v, c=c: max(0, min(255, c + v - 128))) for c in base])
    ImageDraw.Draw(im).rectangle((160, 80, 320, 280), fill=(235, 235, 230))
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=80)
    return buf.getvalue()


async def _people(world: DemoWorld) -> None:
    d = world.services.directory
    today = dt.date.today()
    for code, name, state, _, _ in SITES:
        await d.create_site(None, code, name, state)
    await d.create_user(None, "admin", "Avery Admin", "admin", PASSWORD)
    for username, display, states in PHARMACISTS:
        user = await d.create_user(None, username, display, "pharmacist", PASSWORD)
        for st in states:
            await d.add_license(None, username, st, f"{st}-{user.id:05d}", today + dt.timedelta(days=700))
        # Signed in as at the console: decisions are made in a person's session.
        world.rphs[username] = (await world.services.auth.login(username, PASSWORD, "demo")).principal
    for code, _, _, username, display in SITES:
        user = await d.create_user(None, username, display, "technician", PASSWORD, site_code=code)
        world.techs[code] = Principal(
            user.id, username, display, Role.TECHNICIAN, user.site_id, frozenset(), "device"
        )


async def _decide(world: DemoWorld, rph: Principal, fill_id: str, decision: DecisionInput) -> None:
    """Decides as the console does: asked to confirm who they are (a product-check flag overridden),
    the pharmacist gives the password (no second factor is enrolled in the demo) and decides again."""
    try:
        await world.services.fills.decide(rph, fill_id, decision)
    except StepUpRequired:
        await world.services.auth.identity.prove(rph, Proof(password=PASSWORD), None, "demo")
        await world.services.fills.decide(rph, fill_id, decision)


async def _history(world: DemoWorld, now: dt.datetime, rng: random.Random, count: int) -> None:
    """A week of decided fills: turnaround of a few minutes to half an hour, some rejections."""
    fills = world.services.fills
    by_state = {"ND": ["rph.nd", "rph.lind"], "MN": ["rph.nd", "rph.sota"]}
    for _ in range(count):
        code, _, state, _, _ = SITES[rng.choice((0, 0, 1, 1, 2, 3, 3))]
        day = rng.randint(0, 6)
        submitted = now - dt.timedelta(days=day, hours=rng.uniform(0.5, 9.5))
        wait = dt.timedelta(minutes=rng.lognormvariate(1.6, 0.7))
        review = dt.timedelta(seconds=rng.uniform(35, 110))
        world.clock.at = submitted
        world.rx_seq += 1
        rx = await world.services.prescriptions.create(
            world.techs[code],
            rx_body(replace(HISTORY, rx=f"H{world.rx_seq}"), "refill", prescriber=rng.choice(PRESCRIBERS)),
        )
        await world.verify(rx.id, code)
        # The right bottle scanned and the prescribed count: a week of routine work, nothing flagged.
        fill_id = await world.new_fill(
            code,
            rx.id,
            priority=rng.choice(("waiting", "routine", "routine", "delivery")),
            barcodes=(scan_text(HISTORY.ndc, f"H{world.rx_seq}", now.date() + dt.timedelta(days=400)),),
            counted=HISTORY.qty,
        )
        for kind in ("stock_bottle", "pills", "vial_label"):
            await world.take(world.techs[code], fill_id, kind, _small_photo(kind, fill_id))
        record = await fills.submit(world.techs[code], fill_id)
        rph = world.rphs[rng.choice(by_state[state])]
        world.clock.at = submitted + wait
        claimed = (await fills.claim(rph, fill_id)).fill
        world.clock.at = submitted + wait + review
        if rng.random() < 0.14:
            reasons = rng.sample(
                list(REASON_WEIGHTS), k=rng.choice((1, 1, 2)), counts=list(REASON_WEIGHTS.values())
            )
            decision = DecisionInput(
                claimed.version, "reject", tuple(dict.fromkeys(reasons)), "Please retake."
            )
        else:
            decision = _approval(claimed, record, rng)
        await _decide(world, rph, fill_id, decision)
    world.clock.at = None


def _approval(claimed: Fill, record: FillRecord, rng: random.Random) -> DecisionInput:
    """An approval as the console sends it: every photo looked at, each flag acknowledged."""
    return DecisionInput(
        claimed.version,
        "approve",
        (),
        None,
        tuple({"flag": f["code"], "reason": "verified_visually", "note": None} for f in claimed.flags),
        tuple(
            {"media_id": m.id, "seconds": round(rng.uniform(1.5, 9.0), 2), "max_zoom": 1.0}
            for m in record.media
        ),
    )


async def _earlier_fill(
    world: DemoWorld,
    demo: DemoRx,
    prescription_id: int,
    scan: str,
    at: dt.datetime,
    counted: int,
    decide: Callable[[Fill, FillRecord], DecisionInput],
) -> str:
    """An earlier fill of the prescription, submitted at `at` and decided by rph.lind five minutes on."""
    tech = world.techs[demo.site]
    world.clock.at = at
    first = await world.new_fill(
        demo.site, prescription_id, priority=demo.priority, barcodes=(scan,), counted=counted
    )
    for kind in ("stock_bottle", "pills", "vial_label"):
        await world.take(tech, first, kind, _small_photo(kind, first))
    record = await world.services.fills.submit(tech, first)
    world.clock.at = at + dt.timedelta(minutes=5)
    claimed = (await world.services.fills.claim(world.rphs["rph.lind"], first)).fill
    world.clock.at = at + dt.timedelta(minutes=6)
    await _decide(world, world.rphs["rph.lind"], first, decide(claimed, record))
    return first


async def _rejected_first_attempt(
    world: DemoWorld, demo: DemoRx, prescription_id: int, scan: str, submitted: dt.datetime
) -> str:
    """An earlier attempt at a fill, rejected for its count: the console shows it beside the retake."""
    return await _earlier_fill(
        world,
        demo,
        prescription_id,
        scan,
        submitted - dt.timedelta(minutes=14),
        58,
        lambda claimed, _: DecisionInput(
            claimed.version,
            "reject",
            ("wrong_quantity",),
            "Counted 58; please recount to 60 and retake the tray photo.",
        ),
    )


async def _live_fill(world: DemoWorld, i: int, demo: DemoRx, now: dt.datetime, video: Path | None) -> str:
    lot = f"L{2400 + i}A"
    expiry = now.date() + dt.timedelta(days=-40 if demo.expired else 420)
    scan = scan_text(demo.bottle_ndc or demo.ndc, lot, expiry)
    # Only the first fills, the ones a visitor opens first, get phone-sized photos; smaller ones keep
    # the start quick.
    shots = evidence_photos(demo, i, lot, expiry, PHONE_PHOTO if i < 2 else (800, 600))
    submitted = now - dt.timedelta(minutes=demo.minutes_ago)
    prescription_id = await world.prescription(demo, "new" if i % 3 else "refill")
    previous = None
    if i == 0:
        previous = await _rejected_first_attempt(world, demo, prescription_id, scan, submitted)
    if demo.filled_days_ago is not None:
        # Filled and approved a few days ago, and here again: the console flags a refill too soon.
        rng = random.Random(i)
        at = submitted - dt.timedelta(days=demo.filled_days_ago)
        await _earlier_fill(
            world, demo, prescription_id, scan, at, demo.qty, lambda c, r: _approval(c, r, rng)
        )
    world.clock.at = submitted
    fill_id = await world.new_fill(
        demo.site,
        prescription_id,
        priority=demo.priority,
        barcodes=(scan,),
        counted=demo.counted,
        previous=previous,
    )
    tech = world.techs[demo.site]
    taken = world.live_photos.setdefault(i, {})
    for kind, image in shots.items():
        data = photos.to_jpeg_bytes(image, 88)
        if demo.pills_photo_of is not None and kind == "pills":
            # The technician sent an earlier fill's tray photo again: the console flags it as reused.
            data = world.live_photos[demo.pills_photo_of]["pills"]
        taken[kind] = data
        await world.take(tech, fill_id, kind, data, f"{kind}.jpg")
    if video is not None:
        await world.take(tech, fill_id, "count_video", video.read_bytes(), "count.webm")
    await world.services.fills.submit(tech, fill_id)
    world.clock.at = None
    return fill_id


async def build(services: Services, clock: SimClock, work_dir: Path, *, history: int = 70) -> DemoWorld:
    """Writes the demo network into an empty database; `work_dir` holds the photos on their way in."""
    world = DemoWorld(services, clock, work_dir)
    await _people(world)
    now = utcnow()
    await _history(world, now, random.Random(7), history)
    video = photos.count_video(
        work_dir / "count.webm", seconds=3, fps=10, size=(960, 720), container="webm", count=40, seed=3
    )
    for i, demo in enumerate(LIVE):
        world.live.append(await _live_fill(world, i, demo, now, video if i == 0 else None))
    # Another pharmacist has one of them open as the demo starts; nothing renews the claim, so it lapses.
    await services.fills.claim(world.rphs["rph.lind"], world.live[3])
    await world.prescription(UNFILLED, "new")
    await _waiting_for_pv1(world)
    return world


# Waiting for data-entry verification (PV1): an e-prescription whose strength was typed over at the site,
# and a paper one with a photo of its original.
E_PRESCRIPTION = DemoRx(
    "ND-MOT", "E77120", "Ruth Engen", "1951-11-02", "Lisinopril", "10 mg", "tablet", "68180-0514-01", 30,
    "Take 1 tablet by mouth once daily", "routine", 0,
)  # fmt: skip
PAPER = DemoRx(
    "ND-HET", "6001240", "Harold Voss", "1944-05-17", "Amoxicillin", "500 mg", "capsule", "65862-0015-01",
    21, "Take 1 capsule by mouth three times daily for 7 days", "waiting", 0,
)  # fmt: skip


async def _waiting_for_pv1(world: DemoWorld) -> None:
    services = world.services
    site = next(s for s in await services.directory.sites() if s.code == E_PRESCRIPTION.site)
    await services.auth.issue_integration_token(None, site.code, "pharmacy system")
    user = next(
        u for u in await services.directory.users() if u.username == f"integration.{site.code.lower()}"
    )
    system = Principal(
        user.id, user.username, user.display_name, Role.INTEGRATION, site.id, frozenset(), "device"
    )
    message = fhir_message(E_PRESCRIPTION, PRESCRIBERS[1])
    _, items = read_message(message, "MedicationRequest")
    [stored] = await services.prescriptions.receive(system, "fhir", items, json.dumps(message))
    # The technician typed over the strength the prescriber sent: PV1 shows the difference.
    await services.prescriptions.correct(
        world.techs[E_PRESCRIPTION.site], stored.prescription.id, {"version": 1, "strength": "20 mg"}
    )
    tech = world.techs[PAPER.site]
    rx = await services.prescriptions.create(
        tech, {**rx_body(PAPER, "new", prescriber=PRESCRIBERS[2]), "refills_authorized": 0}
    )
    original = photos.to_jpeg_bytes(paper_prescription(PAPER, PRESCRIBERS[2]), 88)
    path = world.work_dir / "original.jpg"
    path.write_bytes(original)
    await services.originals.take(
        tech, rx.id, path, sha256=hashlib.sha256(original).hexdigest(), filename="original.jpg"
    )


def fhir_message(demo: DemoRx, prescriber: str) -> dict[str, Any]:
    """The MedicationRequest a pharmacy system sends for the prescription, with contained resources."""
    family, given = demo.patient.split(" ")[-1], demo.patient.split(" ")[:-1]
    value, unit = demo.strength.split(" ")
    return {
        "resourceType": "MedicationRequest",
        "identifier": [{"system": "urn:oid:2.16.840.1.113883.3.9999.rx", "value": demo.rx}],
        "status": "active",
        "intent": "order",
        "contained": [
            {
                "resourceType": "Patient",
                "id": "p",
                "name": [{"family": family, "given": given}],
                "birthDate": demo.dob,
            },
            {
                "resourceType": "Practitioner",
                "id": "d",
                "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
                "name": [{"text": prescriber}],
            },
            {
                "resourceType": "Medication",
                "id": "m",
                "code": {
                    "coding": [{"system": "http://hl7.org/fhir/sid/ndc", "code": demo.ndc}],
                    "text": demo.drug,
                },
                "form": {"text": demo.form},
                "ingredient": [
                    {
                        "itemCodeableConcept": {"text": demo.drug},
                        "strength": {
                            "numerator": {"value": int(value), "unit": unit},
                            "denominator": {"value": 1, "unit": demo.form},
                        },
                    }
                ],
            },
        ],
        "subject": {"reference": "#p"},
        "requester": {"reference": "#d"},
        "medicationReference": {"reference": "#m"},
        "dosageInstruction": [{"text": demo.directions}],
        "dispenseRequest": {
            "quantity": {"value": demo.qty, "unit": demo.form},
            "expectedSupplyDuration": {
                "value": 30,
                "unit": "days",
                "system": "http://unitsofmeasure.org",
                "code": "d",
            },
            "numberOfRepeatsAllowed": 2,
        },
    }


def paper_prescription(demo: DemoRx, prescriber: str, size: tuple[int, int] = (1200, 1700)) -> Image.Image:
    """A phone photo of a prescription pad: the prescriber, the patient, the drug and the sig."""
    im = Image.new("RGB", size, (246, 244, 236))
    draw = ImageDraw.Draw(im)
    w, h = size
    draw.rectangle((50, 50, w - 50, h - 50), outline=(40, 60, 110), width=5)
    lines = [
        prescriber,
        "Bowman Clinic, Hettinger ND",
        "",
        f"Patient: {demo.patient}    DOB: {demo.dob}",
        "",
        f"Rx  {demo.drug} {demo.strength} {demo.form}",
        f"Disp: #{demo.qty}",
        f"Sig: {demo.directions}",
        "Refills: none",
    ]
    for i, line in enumerate(lines):
        draw.text((110, 130 + 95 * i), line, fill=(25, 30, 70), font_size=40)
    draw.line((110, h - 220, 600, h - 250), fill=(25, 30, 70), width=4)
    return im


def sample_photos(folder: Path, today: dt.date) -> dict[str, Path]:
    """Writes the unfilled prescription's three photos as a phone would take them, by kind."""
    folder.mkdir(parents=True, exist_ok=True)
    expiry = today + dt.timedelta(days=500)
    written = {}
    for kind, image in evidence_photos(UNFILLED, 11, UNFILLED_LOT, expiry, PHONE_PHOTO).items():
        written[kind] = path = folder / f"{kind.replace('_', '-')}.jpg"
        path.write_bytes(photos.to_jpeg_bytes(image, 88))
    return written


def temporary_work_dir(data_dir: Path) -> tempfile.TemporaryDirectory[str]:
    """A folder beside the media store, so a photo taken in is linked there rather than copied."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return tempfile.TemporaryDirectory(prefix="demo-", dir=data_dir)
