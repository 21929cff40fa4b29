"""Calls from the technician's station: the page asks for counselling through the station, the
pharmacist's console answers, and each side decodes the other's video; a pharmacist's live look is
answered by the station's camera without a click. A real server process, a real `tp-site station`
process, and Chromium whose camera plays a drawn stock bottle."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Request, expect

from tests.browser.conftest import sign_in, until
from tests.site_client.test_end_to_end import photos
from tests.site_client.world import PASSWORD, PHARMACIST, Pharmacist, ServerProcess, Site
from tests.station.world import StationProcess, create_prescription, open_station

CONNECTED = 15000  # ms: the media connection (the fake camera's first frames included)


def frames(panel: str, key: str, at_least: int = 30) -> str:
    """A page predicate: the panel's counter of decoded (framesIn) or sent (framesOut) video frames."""
    return f"Number(document.getElementById('{panel}').dataset.{key} || 0) >= {at_least}"


def both_ways(panel: str) -> str:
    """A page predicate: the panel decoded 30 frames of the other side's video and sent 30 of its own."""
    return f"{frames(panel, 'framesIn')} && {frames(panel, 'framesOut')}"


def never_carries(token: str, seen: list[Request]) -> None:
    """No request the page made carried the device token, in its URL or its headers."""
    for req in seen:
        assert token not in req.url
        assert all(token not in value for value in req.headers.values())


async def pick(page: Page, rx_number: str) -> None:
    """Picks the prescription as a scanner would (its Rx number typed, then Enter), once the page has
    loaded the site's prescriptions."""
    await page.fill("#rx-search", rx_number)
    await expect(page.locator("#rx-list .rx-number", has_text=f"Rx {rx_number}")).to_be_visible()
    await page.press("#rx-search", "Enter")
    await expect(page.locator("#rx-number")).to_have_text(rx_number)


async def record(server: ServerProcess, cid: int) -> dict[str, Any]:
    async with Pharmacist(server.url) as rph:
        body: dict[str, Any] = await rph.call("GET", f"/api/v1/consultations/{cid}")
        return body


async def delivered(server: ServerProcess, cid: int, seconds: float = 30) -> dict[str, Any]:
    """The consultation's record once its recording has reached the server."""
    async with asyncio.timeout(seconds):
        while (c := await record(server, cid))["recording"] is None:
            await asyncio.sleep(0.25)
    return c


async def test_counselling_asked_from_the_station_page_connects_to_the_console(
    browser: Browser, server: ServerProcess, station: StationProcess, token: str
) -> None:
    rx = await create_prescription(server.url, token, "810001")
    console = await sign_in(browser, server.url + "/", PHARMACIST, password=PASSWORD)
    sp = await open_station(browser, station)
    page = sp.page
    requests: list[Request] = []
    page.on("request", lambda req: requests.append(req))
    try:
        await pick(page, "810001")
        await page.click("#call-ask")
        panel = page.locator("#call-panel")
        await expect(panel).to_have_attribute("data-state", "waiting")

        request = console.page.locator(".consult-request")
        await expect(request).to_be_visible()
        cid = int(await request.get_attribute("data-id") or "0")
        assert await panel.get_attribute("data-id") == str(cid)
        await request.locator(".consult-accept").click()

        console_panel = console.page.locator("#consult-panel")
        await expect(console_panel).to_have_attribute("data-state", "connected", timeout=CONNECTED)
        await expect(panel).to_have_attribute("data-state", "connected", timeout=CONNECTED)
        # Each side decodes the other's video, and sends its own.
        await until(console.page, both_ways("consult-panel"), 20)
        await until(page, both_ways("call-panel"), 20)

        # Nothing is recorded until the patient agrees; then the consent is on record before recording.
        assert (await record(server, cid))["recording_consent_at"] is None
        recording_began = time.monotonic()
        await page.check("#call-record")
        await expect(panel).to_have_attribute("data-recording", "on")
        consented = (await record(server, cid))["recording_consent_at"]
        assert consented is not None
        # Two seconds of recording. The recording holds what the browser's recorder encoded, which on a
        # loaded CI machine was as little as 0.45 s and 0.61 s of the two, even with 45 frames of the
        # pharmacist's picture decoded meanwhile. So the station is held to a recording that is not empty
        # and not longer than the time since the box was ticked (with half a second for the recorder's
        # first frame, which can predate its start). The station's re-encoding keeps a page recording's
        # length exactly (tests/unit/test_call_recordings.py).
        await asyncio.sleep(2)

        # The technician hangs up: the pharmacist's side ends too.
        await page.click("#call-hangup")
        recorded = time.monotonic() - recording_began
        await expect(panel).to_have_attribute("data-state", "ended")
        await expect(console_panel).to_have_attribute("data-state", "ended", timeout=5000)
        # The recording is kept at the station, then delivered as the call's mp4.
        await expect(panel).to_have_attribute("data-recording", "kept", timeout=20000)
        c = await delivered(server, cid)
        assert c["recording"]["content_type"] == "video/mp4" and c["recording_consent_at"] == consented
        assert 0 < c["recording"]["duration_seconds"] <= recorded + 0.5

        assert c["kind"] == "counsel" and c["prescription_id"] == rx["id"]
        assert c["state"] == "ended" and c["end_reason"] == "hangup"
        assert c["answered_at"] and c["connected_at"] and c["duration_seconds"] > 0
        never_carries(token, requests)
        assert not [line for line in sp.logs if line.startswith("pageerror")], sp.logs
    finally:
        await sp.context.close()
        await console.context.close()


async def test_a_live_look_is_answered_by_the_station_camera_without_a_click(
    browser: Browser,
    server: ServerProcess,
    station: StationProcess,
    site: Site,
    token: str,
    photo_dir: Path,
) -> None:
    await create_prescription(server.url, token, "810002")
    code, out, err = await site.run("submit", "--rx", "810002", *photos(photo_dir), "--count", "60")
    assert code == 0, out + err
    sp = await open_station(browser, station)
    page = sp.page
    console = await sign_in(browser, server.url + "/", PHARMACIST, password=PASSWORD)
    try:
        row = console.page.locator("#queue-body tr").first
        fill_id = await row.get_attribute("data-id")
        await row.click()
        await expect(console.page.locator("#verify-view")).to_be_visible()
        await console.page.click("#v-look")

        # Nobody touches the station's page: it answers with its camera.
        panel = page.locator("#call-panel")
        await expect(panel).to_have_attribute("data-kind", "live_look")
        await expect(panel).to_have_attribute("data-state", "connected", timeout=CONNECTED)
        console_panel = console.page.locator("#consult-panel")
        await expect(console_panel).to_have_attribute("data-state", "connected", timeout=CONNECTED)
        await until(console.page, frames("consult-panel", "framesIn"), 20)
        await until(page, frames("call-panel", "framesOut"), 20)
        # One way: the station receives no video and asked for no microphone.
        assert await page.evaluate("document.getElementById('call-panel').dataset.framesIn") in (None, "0")
        cid = int(await panel.get_attribute("data-id") or "0")

        # The pharmacist hangs up: the station's page ends the call too.
        await console.page.click("#consult-hangup")
        await expect(panel).to_have_attribute("data-state", "ended", timeout=5000)
        c = await record(server, cid)
        assert c["kind"] == "live_look" and c["fill_id"] == fill_id
        assert c["state"] == "ended" and c["end_reason"] == "hangup" and c["answered_at"]
        assert not [line for line in sp.logs if line.startswith("pageerror")], sp.logs
    finally:
        await sp.context.close()
        await console.context.close()


# Records the titles of the desktop notifications the page shows (the browser's own Notification still
# shows each one).
WATCH_NOTIFICATIONS = """() => {
  const Real = window.Notification;
  window.shownNotifications = [];
  window.Notification = class extends Real {
    constructor(title, options) { super(title, options); window.shownNotifications.push(title); }
  };
}"""


async def test_a_pharmacists_counselling_call_rings_at_the_station_and_is_answered_with_one_tap(
    browser: Browser,
    server: ServerProcess,
    station: StationProcess,
    site: Site,
    token: str,
    photo_dir: Path,
) -> None:
    await create_prescription(server.url, token, "810003")
    code, out, err = await site.run("submit", "--rx", "810003", *photos(photo_dir), "--count", "60")
    assert code == 0, out + err
    sp = await open_station(browser, station)
    page = sp.page
    await sp.context.grant_permissions(["notifications"], origin=station.url.rstrip("/"))
    await page.click("#notify-button")  # the technician turns on alerts once (sound and notifications)
    await page.evaluate(WATCH_NOTIFICATIONS)
    console = await sign_in(browser, server.url + "/", PHARMACIST, password=PASSWORD)
    try:
        await console.page.locator("#queue-body tr").first.click()
        await expect(console.page.locator("#verify-view")).to_be_visible()
        await console.page.keyboard.press("v")  # counselling on this fill

        invitation = page.locator(".call-invitation")
        await expect(invitation).to_be_visible()
        await expect(invitation).to_contain_text("Rx 810003")
        assert await page.evaluate("window.shownNotifications") == ["The pharmacist is calling"]
        assert await page.locator("#call-panel").is_hidden()  # nothing starts before the tap
        await invitation.locator(".call-answer").click()

        panel = page.locator("#call-panel")
        await expect(panel).to_have_attribute("data-kind", "counsel")
        await expect(panel).to_have_attribute("data-state", "connected", timeout=CONNECTED)
        await until(console.page, both_ways("consult-panel"), 20)
        await until(page, both_ways("call-panel"), 20)
        await expect(invitation).to_have_count(0)

        await console.page.click("#consult-hangup")
        await expect(panel).to_have_attribute("data-state", "ended", timeout=5000)
        await expect(page.locator("#call-state")).to_have_text("The pharmacist ended the call.")
    finally:
        await sp.context.close()
        await console.context.close()


async def test_the_uplink_dropping_mid_call_ends_it_at_the_station_with_the_reason(
    browser: Browser, server: ServerProcess, station: StationProcess, token: str
) -> None:
    await create_prescription(server.url, token, "810004")
    console = await sign_in(browser, server.url + "/", PHARMACIST, password=PASSWORD)
    sp = await open_station(browser, station)
    page = sp.page
    try:
        await pick(page, "810004")
        await page.click("#call-ask")
        await console.page.locator(".consult-accept").click()
        panel = page.locator("#call-panel")
        await expect(panel).to_have_attribute("data-state", "connected", timeout=CONNECTED)

        await server.stop()
        await expect(panel).to_have_attribute("data-state", "ended", timeout=8000)
        await expect(page.locator("#call-state")).to_have_text(
            "The connection to the pharmacy server dropped; the call ended."
        )
        await expect(page.locator("#call-ask")).to_be_enabled()  # nothing left stuck: a new call can be asked
    finally:
        await sp.context.close()
        await console.context.close()


async def test_a_declined_request_tells_the_technician_why(
    browser: Browser, server: ServerProcess, station: StationProcess, token: str
) -> None:
    await create_prescription(server.url, token, "810005")
    console = await sign_in(browser, server.url + "/", PHARMACIST, password=PASSWORD)
    sp = await open_station(browser, station)
    page = sp.page
    try:
        await pick(page, "810005")
        await page.click("#call-ask")
        panel = page.locator("#call-panel")
        await expect(panel).to_have_attribute("data-state", "waiting")
        request = console.page.locator(".consult-request")
        await request.locator(".consult-decline").click()
        await request.locator(".consult-decline-send").click()  # the first reason: busy

        await expect(panel).to_have_attribute("data-state", "ended")
        await expect(panel).to_have_attribute("data-end-reason", "declined")
        await expect(page.locator("#call-state")).to_have_text(
            "The pharmacist could not take the call: "
            "Busy with another patient; please ask again in a few minutes."
        )
    finally:
        await sp.context.close()
        await console.context.close()
