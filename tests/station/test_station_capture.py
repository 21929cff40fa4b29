"""Guided capture in the technician's page: the camera's photo checked at once, files picked, save."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.site_client.world import ServerProcess
from tests.station.world import StationProcess, create_prescription, open_station


async def pick(page: Page, rx_number: str) -> None:
    await page.fill("#rx-search", rx_number)
    await page.press("#rx-search", "Enter")
    await expect(page.locator("#rx-number")).to_have_text(rx_number)


async def test_camera_photo_of_the_prescribed_bottle_passes_its_checks(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "100234")
    sp = await open_station(browser, station)
    page = sp.page
    await pick(page, "100234")
    await until_camera(page)
    await page.click("#capture-btn")
    result = page.locator("#check-result")
    await expect(result).to_have_attribute("data-state", "ok", timeout=15000)
    await expect(result).to_contain_text("matches the prescription")
    assert not [line for line in sp.logs if "error" in line.lower()], sp.logs


async def until_camera(page: Page) -> None:
    await page.wait_for_function("() => document.querySelector('#preview').videoWidth > 0", timeout=10000)
