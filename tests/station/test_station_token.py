"""A device token the server refuses (revoked, or the site enrolled again elsewhere) is said as such on
the page, not as a lost connection: the technician reads what to do, keeps working, enrols the station
again from the page with a new token, and what waited goes."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.site_client.test_token_refused import admin, revoke_the_sites_token
from tests.site_client.world import TECH, ServerProcess
from tests.station.test_station_decisions import queued
from tests.station.test_station_refused import saved
from tests.station.world import StationProcess, create_prescription, open_station

REFUSED = (
    "The server refused this computer's device token (revoked, or from another server): enrol it again "
    "here, with a new device token from the administrator (Enrol again)."
)


async def test_a_revoked_token_is_said_as_such_and_the_station_is_enrolled_again_from_the_page(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "700001")
    sp = await open_station(browser, station)
    page = sp.page
    await page.locator("#rx-list .rx-item").first.wait_for()  # known here before the token is revoked
    await revoke_the_sites_token(server)

    # The server was stopped to revoke the token: the station's next try may be half a minute away.
    await expect(page.locator("#token-text")).to_have_text(REFUSED, timeout=60000)
    await expect(page.locator("#uplink-text")).to_have_text("Token refused")
    await expect(page.locator("#offline-banner")).to_be_hidden()
    # The technician keeps working: the fill is saved here and waits for the station's next enrolment.
    fill_id = await saved(page, "700001", photo_dir)
    await expect(page.locator("#token-waiting")).to_have_text(
        "1 saved fill waits here and will be sent once this station is enrolled again. You can keep working."
    )
    await page.click("#nav-worklist")
    await expect(page.locator("#worklist-offline")).to_contain_text("refuses this station's device token")
    await page.locator(f'#worklist li[data-id="{fill_id}"] button').click()
    await expect(page.locator("#waiting-to-send")).to_have_text(
        "Waiting to send: it goes once this station is enrolled again."
    )
    assert "cannot be reached" not in await page.locator("body").inner_text()

    await page.click("#enrol-again")
    await expect(page.locator("#enrol-view")).to_be_visible()
    await expect(page.locator("#enrol-server")).to_have_value(server.url)
    await page.fill("#enrol-token", token)  # the revoked one, pasted again
    await page.click("#enrol-submit")
    error = page.locator("#enrol-error")
    await expect(error).to_contain_text(
        "refused this device token (revoked, or from another server): ask the administrator for a new one."
    )
    assert "cannot be reached" not in await error.inner_text()

    new_token = admin(server.data_dir, "token", "--username", TECH, "--label", "ND-1 counter 2")
    await page.fill("#enrol-token", new_token)
    await page.click("#enrol-submit")
    await expect(page.locator("#capture-view")).to_be_visible()
    await expect(page.locator("#uplink")).to_have_attribute("data-state", "up", timeout=15000)
    await expect(page.locator("#token-banner")).to_be_hidden()
    await queued(server, new_token.split()[-1], fill_id)
    assert not [line for line in sp.logs if line.startswith("pageerror")], sp.logs
