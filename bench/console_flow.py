"""Console flow benchmark: from the approve key to the next fill's photos decoded in the page.

Seeds a queue of fills with three 2048 x 1536 photos each (the size the console shows), starts the
real server in its own process (SQLite), signs a pharmacist in with Debian's Chromium (headless,
Playwright) and approves fills one after another with the A key, each once the console has fetched
the next fill ahead and every photo of the fill was shown (a pharmacist spends seconds on a fill;
the prefetch needs far less). Approve waits for every view, and the decision is then held for the
undo window while the next fill opens: the figure is the time to the next fill, not to the send.
Every fill is clean (the right bottle, the prescribed count, its own photos), so nothing is flagged
and A alone approves.

The page measures itself with the Performance API: from the keydown event's timestamp to the moment
the next fill is drawn with every photo it shows (the large one and all thumbnails) decoded. Also
reported: the same to the first painted frame after that, and to the next fill's claim being
confirmed (when A works again). Prints JSON.

    .venv/bin/python -m bench.console_flow [--fills 50] [--viewport 1920x1080]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import hashlib
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from PIL import Image

from bench.harness import emit, free_port, serve_command, start_server, stop_server
from tests.browser.conftest import CHROMIUM, FLAGS  # the tests' own browser settings

PASSWORD = "bench-password-1"
PHOTO_SIZE = (2048, 1536)
POOL = 8  # drawn photos per kind; each fill gets its own by turning and mirroring them (POOL x 8)
# The eight ways to turn and mirror a photo: a photo of another fill is never the same nor near it.
TURNS = (
    None,
    Image.Transpose.FLIP_LEFT_RIGHT,
    Image.Transpose.FLIP_TOP_BOTTOM,
    Image.Transpose.ROTATE_180,
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)
NDC = "0093-1048-01"


def photo_pool() -> dict[str, list[Image.Image]]:
    """Phone-like scenes per kind with texture (about 0.3-0.6 MB each as JPEG)."""
    from demo import photos

    expiry = dt.date.today() + dt.timedelta(days=400)
    pool: dict[str, list[Image.Image]] = {"stock_bottle": [], "pills": [], "vial_label": []}
    for i in range(POOL):
        pool["stock_bottle"].append(
            photos.stock_bottle_photo(
                NDC, "Metformin HCl", "500 mg", "L2400A", expiry, size=PHOTO_SIZE, seed=i
            )
        )
        pool["pills"].append(photos.pills_photo(40, seed=i, size=PHOTO_SIZE))
        pool["vial_label"].append(
            photos.vial_label_photo(
                f"60{i:05d}",
                "Bench Patient",
                "Metformin HCl",
                "500 mg",
                "Take 1 tablet by mouth twice daily",
                60,
                seed=i,
                size=PHOTO_SIZE,
            )
        )
    return pool


def fill_photo(pool: dict[str, list[Image.Image]], kind: str, i: int) -> bytes:
    """The i-th fill's own photo of a kind: a drawn scene turned or mirrored, so no two fills share one
    (a shared photo is flagged as reused, and a flagged fill is not approved by A alone)."""
    from demo import photos

    scenes = pool[kind]
    image = scenes[i % len(scenes)]
    turn = TURNS[(i // len(scenes)) % len(TURNS)]
    return photos.to_jpeg_bytes(image if turn is None else image.transpose(turn), 88)


async def seed(data_dir: Path, count: int) -> None:
    """One site, one pharmacist, `count` queued fills, through the domain services."""
    from decimal import Decimal

    from aiohttp import web

    from demo.photos import gtin_for_ndc10
    from server.app import create_app
    from server.config import Config
    from server.fills.requests import NewFill
    from server.security.principal import Principal, Role
    from server.services import SERVICES

    config = Config(data_dir=data_dir, password_time_cost=1, media_workers=0)
    app = create_app(config)
    runner = web.AppRunner(app)
    await runner.setup()
    try:
        svc = app[SERVICES]
        d = svc.directory
        # The fill's verification is measured here: its prescription needs no data-entry verification.
        await d.create_site(None, "ND-HET", "Hettinger Drug", "ND", requires_pv1=False)
        await d.create_user(None, "rph.bench", "Dr. Bench, PharmD", "pharmacist", PASSWORD)
        await d.add_license(None, "rph.bench", "ND", "ND-1", dt.date.today() + dt.timedelta(days=365))
        user = await d.create_user(
            None, "tech.bench", "Tech Bench", "technician", PASSWORD, site_code="ND-HET"
        )
        tech = Principal(
            user.id, user.username, user.display_name, Role.TECHNICIAN, user.site_id, frozenset(), "device"
        )
        if count > POOL * len(TURNS):
            raise SystemExit(f"at most {POOL * len(TURNS) - 1} fills: each needs photos of its own")
        pool = photo_pool()
        expiry = dt.date.today() + dt.timedelta(days=400)
        scan = f"(01){gtin_for_ndc10(NDC)}(17){expiry:%y%m%d}(10)L2400A"
        uploads = data_dir / "bench-uploads"
        uploads.mkdir(exist_ok=True)
        for i in range(count):
            rx = await svc.prescriptions.create(
                tech,
                {
                    "rx_number": f"B{i:05d}",
                    "patient_name": f"Bench Patient {i}",
                    "patient_dob": "1950-01-01",
                    "prescriber": "Dr. Prescriber",
                    "drug": "Metformin HCl",
                    "strength": "500 mg",
                    "dosage_form": "tablet",
                    "ndc": NDC,
                    "quantity": 60,
                    "days_supply": 30,
                    "directions": "Take 1 tablet by mouth twice daily",
                    "fill_type": "refill",
                },
            )
            record, _ = await svc.fills.create(
                tech,
                NewFill(
                    id=str(uuid.uuid4()),
                    prescription_id=rx.id,
                    barcodes=(scan,),
                    counted_quantity=Decimal(60),
                ),
            )
            fill = record.fill

            async def take(kind: str, data: bytes, fill_id: str = fill.id) -> None:
                path = uploads / f"{uuid.uuid4().hex}.jpg"
                path.write_bytes(data)
                await svc.intake.take(
                    tech,
                    fill_id,
                    path,
                    sha256=hashlib.sha256(data).hexdigest(),
                    kind=kind,
                    filename=f"{kind}.jpg",
                )

            await asyncio.gather(*(take(kind, fill_photo(pool, kind, i)) for kind in pool))
            await svc.fills.submit(tech, fill.id)
    finally:
        await runner.cleanup()


def stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[max(0, round(0.9 * len(ordered)) - 1)]
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(p90, 1),
        "min": round(ordered[0], 1),
        "max": round(ordered[-1], 1),
    }


def drive(url: str, fills: int, viewport: tuple[int, int]) -> dict[str, Any]:
    """Approves `fills` fills by keyboard and returns the page's own measurements."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
        page.goto(url)
        page.fill("#login-username", "rph.bench")
        page.fill("#login-password", PASSWORD)
        page.click("#login-submit")
        # Waits use selectors, not page-side functions: the console's CSP forbids eval, rightly.
        page.wait_for_selector(f"#queue-body tr:nth-child({fills + 1})", state="attached")
        page.keyboard.press("n")
        page.wait_for_selector("body[data-shown-fill]", state="attached")
        outside: list[float] = []
        for _ in range(fills):
            current = page.evaluate("document.body.dataset.shownFill")
            # Ready as a pharmacist would find it after looking at the fill: next fetched, A enabled.
            page.wait_for_selector(
                f'body[data-prefetched]:not([data-prefetched="{current}"])', state="attached"
            )
            # Every photo on screen once: A is enabled only then.
            for k in (2, 3):
                page.keyboard.press("ArrowRight")
                page.wait_for_selector(f"#v-strip .thumb:nth-child({k}):not(.is-unseen)", state="attached")
            page.wait_for_selector("#v-approve:enabled", state="attached")
            nxt = page.evaluate("document.body.dataset.prefetched")
            t0 = time.perf_counter()
            page.keyboard.press("a")
            page.wait_for_selector(f'body[data-shown-fill="{nxt}"]', state="attached")
            outside.append((time.perf_counter() - t0) * 1000)
        page.wait_for_selector("#v-strip .thumb", state="attached")
        measures = page.evaluate(
            "['tp:approve-to-shown', 'tp:approve-to-painted', 'tp:approve-to-claimed']"
            ".map((n) => performance.getEntriesByName(n).map((e) => e.duration))"
        )
        browser_version = browser.version
        browser.close()
    shown, painted, claimed = measures
    if len(shown) != fills:
        raise RuntimeError(f"expected {fills} measurements, got {len(shown)}")
    return {
        "approve_to_shown_ms": stats(shown),
        "approve_to_painted_ms": stats(painted),
        "approve_to_next_claimed_ms": stats(claimed),
        "outside_the_page_ms": stats(outside),
        "chromium": browser_version,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fills", type=int, default=50)
    ap.add_argument("--viewport", default="1920x1080")
    ap.add_argument("--keep", action="store_true", help="keep the data folder")
    args = ap.parse_args()
    width, height = (int(v) for v in args.viewport.split("x"))
    tmp = Path(tempfile.mkdtemp(prefix="tp-console-bench-"))
    data_dir = tmp / "data"
    started = time.monotonic()
    asyncio.run(seed(data_dir, args.fills + 1))
    seeded = time.monotonic() - started
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    try:
        proc = start_server(serve_command(data_dir, port), port, tmp / "server.log")
        try:
            result = drive(url, args.fills, (width, height))
        finally:
            stop_server(proc)
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    shown = result["approve_to_shown_ms"]
    emit(
        {
            "benchmark": "console approve -> next fill's photos decoded in the page",
            "fills": args.fills,
            "median_ms": shown["median"],
            "p90_ms": shown["p90"],
            "target_median_ms": 150,
            "met": shown["median"] <= 150,
            **result,
            "photos": f"3 per fill, {PHOTO_SIZE[0]} x {PHOTO_SIZE[1]} JPEG",
            "viewport": args.viewport,
            "server": "separate process, SQLite, loopback",
            "seed_seconds": round(seeded, 1),
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
