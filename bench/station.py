"""Station benchmark: from the capture click to the checks shown, and from Save to durable.

Starts a real server and a real `tp-site station` in processes of their own, and the technician's
page in Debian's Chromium (headless) whose fake camera plays a 2048 x 1536 (3.1 megapixel) drawn stock
bottle carrying a GS1 DataMatrix. The page measures itself (Performance API):

- capture: from the click on "Take photo" to the checks drawn on the photo (the frame grabbed and
  encoded as JPEG in the page, sent to the station, checked there: blur, exposure, resolution, the
  barcode read, the NDC against the prescription), the retake key between rounds; the station's own
  share (receive and check) is reported beside it;
- save: from the click on Save to the page saying saved, the station having copied the fill's three
  photos into the outbox and fsynced them and the entry.

    .venv/bin/python -m bench.station [--captures 30] [--saves 15]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.harness import ROOT, emit, free_port, serve_command, start_server, stop_server
from tests.browser.conftest import CHROMIUM, FLAGS  # the tests' own browser settings

SIZE = (2048, 1536)
NDC = "0378-1805-01"

WATCH = """() => {
  window.__bench = {capture: [], save: []};
  const result = document.querySelector('#check-result');
  const at = (sel, key) => document.querySelector(sel).addEventListener('click', (e) => {
    window[key] = e.timeStamp;
  }, true);
  at('#capture-btn', '__clickAt');
  at('#save-btn', '__saveAt');
  new MutationObserver(() => {
    const state = result.dataset.state;
    if ((state === 'ok' || state === 'problem') && window.__clickAt !== null) {
      const at = window.__clickAt;
      window.__clickAt = null;
      requestAnimationFrame(() => window.__bench.capture.push(performance.now() - at));
    }
  }).observe(result, {attributes: true, attributeFilter: ['data-state']});
  new MutationObserver(() => {
    const saved = document.querySelector('#save-status').textContent.startsWith('Saved as');
    if (window.__saveAt !== null && saved) {
      const at = window.__saveAt;
      window.__saveAt = null;
      requestAnimationFrame(() => window.__bench.save.push(performance.now() - at));
    }
  }).observe(document.querySelector('#save-status'), {childList: true, characterData: true, subtree: true});
}"""


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def _summary(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "median_ms": round(statistics.median(values), 1),
        "p90_ms": _pct(values, 0.9),
        "max_ms": round(max(values), 1),
    }


async def _drive(
    station_url: str, camera: Path, photos: dict[str, Path], captures: int, saves: int
) -> dict[str, Any]:
    from playwright.async_api import async_playwright, expect

    args = [*FLAGS, f"--use-file-for-fake-video-capture={camera}"]
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = await (await browser.new_context(viewport={"width": 1366, "height": 768})).new_page()
        await page.goto(station_url)
        await expect(page.locator("#uplink")).to_have_attribute("data-state", "up", timeout=20000)
        await page.locator("#rx-search").fill("900001")
        await page.locator("#rx-search").press("Enter")
        await expect(page.locator("#rx-number")).to_have_text("900001")
        await page.wait_for_function("() => document.querySelector('#preview').videoWidth > 0", timeout=20000)
        width = await page.evaluate("() => document.querySelector('#preview').videoWidth")
        await page.evaluate(WATCH)
        station_ms: list[float] = []
        for _ in range(captures):
            async with page.expect_response(lambda r: "/api/captures?" in r.url) as info:
                await page.click("#capture-btn")
            body = await (await info.value).json()
            station_ms.append(float(body["checked_ms"]))
            await expect(page.locator("#check-result")).to_have_attribute("data-state", "ok")
            await page.locator("body").press("r")
            await expect(page.locator("#capture-btn")).to_be_visible()
        for _ in range(saves):
            await page.click('#view-steps [data-kind="stock_bottle"]')
            if await page.locator("#capture-btn").is_visible():
                await page.click("#capture-btn")
            await expect(page.locator("#check-result")).to_have_attribute("data-state", "ok", timeout=20000)
            for kind in ("pills", "vial_label"):
                await page.click(f'#view-steps [data-kind="{kind}"]')
                await page.set_input_files("#file-input", str(photos[kind]))
                await expect(page.locator("#check-result")).to_have_attribute(
                    "data-state", "ok", timeout=20000
                )
            await page.click("#save-btn")
            await expect(page.locator("#save-status")).to_contain_text("Saved as fill")
            await page.locator("#rx-search").fill("900001")
            await page.locator("#rx-search").press("Enter")
            await expect(page.locator("#rx-number")).to_have_text("900001")
            await page.wait_for_function("() => document.querySelector('#preview').videoWidth > 0")
        await page.wait_for_timeout(300)
        marks = await page.evaluate("() => window.__bench")
        await browser.close()
    return {"frame_width": width, "capture": marks["capture"], "save": marks["save"], "station": station_ms}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--captures", type=int, default=30)
    ap.add_argument("--saves", type=int, default=15)
    args = ap.parse_args()

    from demo.photos import pills_photo, stock_bottle_photo, to_jpeg_bytes, vial_label_photo
    from remote_site_client import config as site_config
    from remote_site_client.config import SiteConfig
    from tests.site_client.world import rx_body, seed, site_api
    from tests.station.camera import write_y4m

    with tempfile.TemporaryDirectory(prefix="bench-station-") as tmp_name:
        tmp = Path(tmp_name)
        expiry = dt.date.today() + dt.timedelta(days=400)
        camera = write_y4m(
            stock_bottle_photo(NDC, "Metformin HCl", "500 mg", "L1", expiry, size=SIZE), tmp / "c.y4m"
        )
        photos = {"pills": tmp / "pills.jpg", "vial_label": tmp / "vial.jpg"}
        photos["pills"].write_bytes(to_jpeg_bytes(pills_photo(60, seed=3, size=SIZE), 90))
        photos["vial_label"].write_bytes(
            to_jpeg_bytes(vial_label_photo("900001", "Bench Patient", "Metformin HCl", "500 mg",
                                           "Take 1 tablet twice daily", 60, seed=4, size=SIZE), 90)
        )  # fmt: skip
        token = asyncio.run(seed(tmp / "server"))
        port = free_port()
        server = start_server(serve_command(tmp / "server", port), port, tmp / "server.log")
        station_port = free_port()
        cfg = SiteConfig(server_url=f"http://127.0.0.1:{port}", token=token, data_dir=tmp / "site")
        site_config.save(cfg, tmp / "site.json")
        env = {**os.environ, "TP_SITE_CONFIG": str(tmp / "site.json")}
        with (tmp / "station.log").open("wb") as log:
            station = subprocess.Popen(
                [sys.executable, "-m", "remote_site_client", "station", "--port", str(station_port)],
                cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        try:
            status, _ = asyncio.run(
                site_api(cfg.server_url, token, "POST", "/api/v1/prescriptions", rx_body("900001"))
            )
            assert status == 201
            time.sleep(1.0)
            marks = asyncio.run(
                _drive(f"http://127.0.0.1:{station_port}/", camera, photos, args.captures, args.saves)
            )
        finally:
            station.terminate()
            station.wait(15)
            stop_server(server)
    emit(
        {
            "bench": "station",
            "frame": f"{marks['frame_width']}x{marks['frame_width'] * 3 // 4}",
            "capture_to_checks_shown": _summary(marks["capture"]),
            "capture_station_share": _summary(marks["station"]),
            "save_to_durable": _summary(marks["save"]),
            "targets_ms": {"capture_to_checks_shown_median": 300, "save_to_durable_median": 100},
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
    )


if __name__ == "__main__":
    main()
