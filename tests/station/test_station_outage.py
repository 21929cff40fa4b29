"""Saved means durable: with the server gone mid-upload the page says it is offline and how many fills
wait, and the fill goes, exactly once, when the server returns."""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.site_client.proxy import LinkProxy
from tests.site_client.world import ServerProcess, free_port, make_site, site_api
from tests.station.world import (
    StationProcess,
    camera_photo,
    create_prescription,
    file_photo,
    open_station,
    pick,
    save_fill,
)


async def test_server_stopped_mid_upload_the_fill_waits_and_goes_once_when_it_returns(
    browser: Browser, server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await create_prescription(server.url, token, "200001")
    # A slow uplink (150 KB/s), so the server can be stopped while the photos are on their way.
    link = LinkProxy("127.0.0.1", server.port, up_rate=150_000)
    await link.start()
    station = StationProcess(make_site(tmp_path, link.url, token), free_port(), tmp_path / "station.log")
    await station.start()
    try:
        page = (await open_station(browser, station)).page
        await pick(page, "200001")
        await camera_photo(page, "stock_bottle")
        await file_photo(page, "pills", photo_dir / "pills.jpg")
        await file_photo(page, "vial_label", photo_dir / "vial_label.jpg")
        await page.fill("#count", "60")
        link.reset_counts()
        fill_id = await save_fill(page)

        async with asyncio.timeout(30):
            while link.stats.up_bytes < 200_000:  # well into the photos' upload
                await asyncio.sleep(0.05)
        await expect(page.locator("#save-status")).to_contain_text("Sending:")
        await server.kill()

        banner = page.locator("#offline-banner")
        await expect(banner).to_be_visible(timeout=15000)
        await expect(banner).to_contain_text("1 saved fill waits here")
        await expect(page.locator("#uplink")).to_have_attribute("data-state", "down")
        # The page keeps working offline: the work list is what this station knows.
        await page.click("#nav-worklist")
        row = page.locator(f'#worklist li[data-id="{fill_id}"]')
        await expect(row).to_have_attribute("data-state", "waiting_to_send")
        await expect(page.locator("#worklist-offline")).to_be_visible()

        await server.start()
        await expect(banner).to_be_hidden(timeout=30000)
        await expect(row).to_have_attribute("data-state", "queued", timeout=30000)
        status, body = await site_api(server.url, token, "GET", "/api/v1/fills")
        assert status == 200
        assert [f["id"] for f in body["fills"] if f["state"] != "draft"] == [fill_id]
        status, fill = await site_api(server.url, token, "GET", f"/api/v1/fills/{fill_id}")
        assert fill["state"] == "queued"
        assert sorted(m["kind"] for m in fill["media"]) == ["pills", "stock_bottle", "vial_label"]
    finally:
        await station.stop()
        await link.stop()
