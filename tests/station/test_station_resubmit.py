"""Resubmitting a rejected fill the station cannot prepare says why and what to do: offline, a fill
another computer sent (this station holds no copy of its photos) waits for the link; a fill resubmitted
already names the fill that replaces it. Nothing the technician has taken meanwhile is lost."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, Page, expect

from tests.site_client.test_refused_fills import refused_id, rejected
from tests.site_client.world import ServerProcess
from tests.station.world import (
    StationProcess,
    camera_photo,
    create_prescription,
    open_station,
    pick,
)


async def open_rejected(page: Page, fill_id: str) -> None:
    await page.click("#nav-worklist")
    row = page.locator(f'#worklist li[data-id="{fill_id}"]')
    await expect(row).to_have_attribute("data-state", "rejected")
    await row.locator("button").click()
    await expect(page.locator("#resubmit-btn")).to_be_visible()


async def test_offline_a_rejected_fill_sent_from_another_computer_waits_for_the_link(
    browser: Browser,
    server: ServerProcess,
    token: str,
    station: StationProcess,
    photo_dir: Path,
    tmp_path: Path,
) -> None:
    _, first = await rejected(server, token, photo_dir, tmp_path / "back-office")
    await create_prescription(server.url, token, "310001")
    sp = await open_station(browser, station)
    page = sp.page
    # A fill under way at the counter when the technician turns to the rejected one.
    await pick(page, "310001")
    await camera_photo(page, "stock_bottle")
    await open_rejected(page, first)

    await server.kill()
    await expect(page.locator("#offline-banner")).to_be_visible(timeout=15000)
    await page.click("#resubmit-btn")
    said = page.locator("#toasts .toast-error")
    await expect(said).to_contain_text(
        f"The server cannot be reached, and this station holds no copy of rejected fill {first[:8]}"
    )
    await expect(said).to_contain_text("Resubmit it once the station shows Connected again")
    await expect(page.locator("#resubmit-btn")).to_be_visible()  # still on the fill, to try again
    await page.click("#nav-capture")
    await expect(page.locator("#rx-number")).to_have_text("310001")
    await expect(page.locator('#view-steps [data-kind="stock_bottle"]')).to_have_attribute("data-state", "ok")

    await server.start()
    await expect(page.locator("#uplink")).to_have_attribute("data-state", "up", timeout=30000)
    await open_rejected(page, first)
    await page.click("#resubmit-btn")
    await expect(page.locator("#mode-banner")).to_contain_text("Resubmitting rejected fill")
    await expect(page.locator('#view-steps [data-kind="pills"]')).to_have_attribute("data-state", "retake")
    assert not [line for line in sp.logs if line.startswith("pageerror")], sp.logs


async def test_a_rejected_fill_resubmitted_already_names_the_fill_that_replaces_it(
    browser: Browser,
    server: ServerProcess,
    token: str,
    station: StationProcess,
    photo_dir: Path,
    tmp_path: Path,
) -> None:
    other, first = await rejected(server, token, photo_dir, tmp_path / "back-office")
    retake = ["--resubmit-of", first[:8], "--pills", str(photo_dir / "pills.jpg"), "--count", "60"]
    code, out, err = await other.run("submit", *retake)
    assert code == 0, out + err
    second = refused_id(out)
    assert second != first
    page = (await open_station(browser, station)).page
    await open_rejected(page, first)

    await page.click("#resubmit-btn")
    await expect(page.locator("#toasts .toast-error")).to_contain_text(
        f"The rejected fill {first[:8]} was resubmitted already: fill {second[:8]} replaces it"
    )
    await expect(page.locator("#resubmit-btn")).to_be_visible()
    await page.click("#nav-capture")
    await expect(page.locator("#mode-banner")).to_be_hidden()
