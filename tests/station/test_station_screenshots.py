"""The README's pictures of the station, and its fit on a 1024x768 tablet and a laptop: large targets,
no sideways scrolling, the capture's buttons on screen, every text readable (contrast).

The pictures are remade on purpose (TP_UPDATE_SCREENSHOTS=1), not by every test run.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from tests.browser.conftest import LAPTOP
from tests.browser.test_screenshots import CONTRAST, README_SHOTS
from tests.site_client.world import Pharmacist, ServerProcess
from tests.station.test_station_decisions import capture_and_save, queued
from tests.station.world import (
    StationProcess,
    camera_photo,
    create_prescription,
    file_photo,
    open_station,
    pick,
    save_fill,
)

SMALLEST_TARGET = 36  # pixels: the smallest button height (Apple and Google ask 44-48 for main actions)


async def _fit(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(
        """() => {
          const small = [...document.querySelectorAll('button, input, select, textarea, .file-btn')]
            .filter((el) => el.offsetParent !== null && !el.closest('.file-btn input'))
            .filter((el) => el.getBoundingClientRect().height < SMALLEST)
            .map((el) => el.id || el.className || el.tagName);
          const wide = [...document.querySelectorAll('body *')]
            .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().right > innerWidth + 1)
            .map((el) => el.id || el.className || el.tagName);
          // The capture's buttons on screen without scrolling, under the camera's picture.
          const below = [...document.querySelectorAll('.stage-controls .btn, #save-btn')]
            .filter((el) => el.offsetParent !== null && el.getBoundingClientRect().bottom > innerHeight)
            .map((el) => el.id || el.className || el.tagName);
          return {small, sideways: wide, below};
        }""".replace("SMALLEST", str(SMALLEST_TARGET))
    )
    return result


async def _checked_for_the_counter(page: Page) -> None:
    await page.evaluate("() => document.getElementById('toasts').replaceChildren()")
    assert await page.evaluate(CONTRAST) == []
    fit = await _fit(page)
    assert fit == {"small": [], "sideways": [], "below": []}, fit


async def test_screenshots_of_capture_work_list_and_offline_on_a_tablet(
    browser: Browser,
    server: ServerProcess,
    token: str,
    station: StationProcess,
    photo_dir: Path,
    tmp_path: Path,
) -> None:
    shots = README_SHOTS if os.environ.get("TP_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    await create_prescription(server.url, token, "500001")
    await create_prescription(server.url, token, "500002", patient_name="Arvid N. Olson")
    await create_prescription(server.url, token, "500003", patient_name="Mary K. Lindqvist")
    page = (await open_station(browser, station)).page
    approved = await capture_and_save(page, "500003", photo_dir)
    await queued(server, token, approved)
    async with Pharmacist(server.url) as rph:
        await rph.decide(approved, "approve")

    rejected = await capture_and_save(page, "500001", photo_dir)
    await queued(server, token, rejected)
    async with Pharmacist(server.url) as rph:
        await rph.decide(rejected, "reject", ["wrong_quantity"], "Count again: I see 58, the Rx says 60.")

    await page.click("#nav-capture")
    await pick(page, "500002")
    await file_photo(page, "stock_bottle", photo_dir / "blurred_stock_bottle.jpg", ok=False)
    await _checked_for_the_counter(page)
    await page.mouse.move(0, 767)
    await page.screenshot(path=shots / "station-capture.png", animations="disabled", caret="hide")

    await page.click("#nav-worklist")
    row = page.locator(f'#worklist li[data-id="{rejected}"]')
    await expect(row).to_have_attribute("data-state", "rejected")
    approved_row = page.locator(f'#worklist li[data-id="{approved}"]')
    await expect(approved_row).to_have_attribute("data-state", "approved")
    await _checked_for_the_counter(page)
    await page.screenshot(path=shots / "station-worklist.png", animations="disabled", caret="hide")
    await row.locator("button").click()
    await expect(page.locator("#decision")).to_contain_text("Wrong quantity")
    await _checked_for_the_counter(page)

    await server.kill()
    await expect(page.locator("#offline-banner")).to_be_visible(timeout=15000)
    await page.click("#nav-capture")
    await page.click("#retake-btn")
    await camera_photo(page, "stock_bottle")
    await file_photo(page, "pills", photo_dir / "pills.jpg")
    await file_photo(page, "vial_label", photo_dir / "vial_label.jpg")
    await page.fill("#count", "60")
    await save_fill(page)
    await expect(page.locator("#offline-banner")).to_contain_text("1 saved fill waits here")
    await page.click("#nav-worklist")
    await expect(page.locator("#worklist-offline")).to_be_visible()
    await _checked_for_the_counter(page)
    await page.screenshot(path=shots / "station-offline.png", animations="disabled", caret="hide")
    # A PC at the counter: the same pages on a laptop's screen.
    await page.set_viewport_size(LAPTOP)
    await _checked_for_the_counter(page)
    await page.click("#nav-capture")
    await _checked_for_the_counter(page)
    for name in ("station-capture", "station-worklist", "station-offline"):
        assert (shots / f"{name}.png").stat().st_size > 20_000
