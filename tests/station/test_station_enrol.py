"""Enrolment in the page: the administrator's token-file line pasted once; the token stays in the station."""

from __future__ import annotations

import contextlib
import stat
from pathlib import Path

from playwright.async_api import Browser, Error, Response, expect

from remote_site_client import config as site_config
from remote_site_client.config import SiteConfig
from tests.site_client.world import ServerProcess, Site, free_port
from tests.station.world import StationProcess, create_prescription, pick


async def test_a_new_station_is_enrolled_from_the_page_with_the_token_files_line(
    browser: Browser, server: ServerProcess, token: str, tmp_path: Path
) -> None:
    config_path = tmp_path / "site-config" / "config.json"
    site = Site(config_path, SiteConfig(server_url=server.url, token="", data_dir=tmp_path / "site-data"))
    data_dir = str(site.config.data_dir)
    station = StationProcess(site, free_port(), tmp_path / "station.log", "--data-dir", data_dir)
    await station.start()
    try:
        await create_prescription(server.url, token, "600001")
        page = await (await browser.new_context(viewport={"width": 1024, "height": 768})).new_page()
        bodies: list[str] = []

        async def keep(resp: Response) -> None:
            with contextlib.suppress(Error):  # a websocket upgrade has no body
                bodies.append(await resp.text())

        page.on("response", keep)
        await page.goto(station.url)
        await expect(page.locator("#enrol-view")).to_be_visible()
        # Not yet connecting anywhere: it says so rather than "Connecting…".
        await expect(page.locator("#uplink")).to_have_attribute("data-state", "not_enrolled")
        await expect(page.locator("#uplink-text")).to_have_text("Not connected")
        await page.fill("#enrol-server", server.url)
        await page.fill("#enrol-token", "wrong")
        await page.click("#enrol-submit")
        await expect(page.locator("#enrol-error")).to_be_visible()
        await page.fill("#enrol-token", f"# from tp-server admin token\n7 tech_nd1 {token}\n")
        await page.click("#enrol-submit")
        await expect(page.locator("#capture-view")).to_be_visible()
        await expect(page.locator("#uplink")).to_have_attribute("data-state", "up")
        await pick(page, "600001")

        saved = site_config.load(config_path)
        assert saved.token == token and saved.server_url == server.url
        assert stat.S_IMODE(config_path.stat().st_mode) == 0o600
        await page.wait_for_timeout(300)
        assert not [b for b in bodies if token in b], "the device token reached the page"
    finally:
        await station.stop()
