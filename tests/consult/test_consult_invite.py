"""A pharmacist asks the site of a fill: counselling linked to the fill, or a one-way live look at the
counting tray. The site's kiosk (`tp-site consult --wait-for-request`) answers."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from remote_site_client.api import SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.consult import Consultation, TestPattern
from tests.api.world import World, queued_fill, rx_body
from tests.browser.conftest import WorldFactory, base_url, sign_in, submit, until


async def test_a_pharmacist_asks_the_site_of_a_fill_and_only_that_site_answers(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX-C1"))
    fill = await queued_fill(world, tech, rx["id"])
    nd = await world.login("nd_rph")
    body = {"fill_id": fill["id"], "kind": "counsel"}
    assert (await (await world.login("mn_rph")).post("/api/v1/consultations/invite", json=body)).status == 404
    assert (await tech.post("/api/v1/consultations/invite", json=body)).status == 403
    assert (await nd.post("/api/v1/consultations/invite", json={"kind": "counsel"})).status == 400
    c = await nd.json("POST", "/api/v1/consultations/invite", 201, json=body)
    assert c["fill_id"] == fill["id"] and c["prescription_id"] == rx["id"]
    assert c["state"] == "accepted" and c["answered_at"] is None and c["kind"] == "counsel"
    # Another site cannot see or answer it; the fill's site answers once.
    assert (
        await (await world.device("tech_nd2")).post(f"/api/v1/consultations/{c['id']}/answer")
    ).status == 404
    listed = await tech.json("GET", "/api/v1/consultations")
    assert [x["id"] for x in listed["consultations"]] == [c["id"]]
    answered = await tech.json("POST", f"/api/v1/consultations/{c['id']}/answer")
    assert answered["answered_at"] is not None and answered["fill_id"] == fill["id"]
    assert (await tech.post(f"/api/v1/consultations/{c['id']}/answer")).status == 409
    ended = await nd.json("POST", f"/api/v1/consultations/{c['id']}/end", json={"reason": "hangup"})
    assert ended["state"] == "ended" and ended["fill_id"] == fill["id"]


@pytest.mark.browser
async def test_live_look_from_the_verification_view_is_one_way(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    fill = await submit(world, "tech_nd1", "RX-LOOK")
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    api = SiteApi(
        SiteConfig(server_url=base_url(world).rstrip("/"), token=world.tokens["tech_nd1"], data_dir=tmp_path)
    )
    kiosk = Consultation(api, video=TestPattern(fps=20), wait_for_invite=True, max_seconds=60)
    site_task = asyncio.create_task(kiosk.run())
    try:
        await console.row(fill["id"]).click()
        await expect(page.locator("#verify-view")).to_be_visible()
        await page.click("#v-look")
        panel = page.locator("#consult-panel")
        await expect(panel).to_have_attribute("data-state", "connected", timeout=15000)
        await expect(panel).to_have_attribute("data-kind", "live_look")
        await until(page, "Number(document.getElementById('consult-panel').dataset.framesIn || 0) >= 30", 15)
        # The browser sends nothing: no outbound media in its stats, a receive-only answer, no camera.
        assert await page.evaluate("document.getElementById('consult-panel').dataset.bytesOut") == "0"
        assert await page.evaluate("document.getElementById('consult-local').srcObject") is None
        assert kiosk.pc is not None and kiosk.pc.remoteDescription is not None
        sdp = kiosk.pc.remoteDescription.sdp
        assert "m=audio" not in sdp and "a=recvonly" in sdp and "a=sendrecv" not in sdp
        await page.click("#consult-hangup")
        result = await asyncio.wait_for(asyncio.shield(site_task), 5)
        assert result.kind == "live_look" and result.fill_id == fill["id"]
        assert result.frames_received == 0 and result.frames_sent >= 30
        record = await (await world.login("nd_rph")).json(
            "GET", f"/api/v1/consultations/{result.consultation_id}"
        )
        assert record["kind"] == "live_look" and record["fill_id"] == fill["id"]
        assert record["state"] == "ended" and record["answered_at"] and record["duration_seconds"] > 0
    finally:
        if not site_task.done():
            kiosk.hang_up()
            await asyncio.wait_for(site_task, 10)
        await api.close()
        await console.context.close()


@pytest.mark.browser
async def test_counselling_from_a_fill_with_the_key_links_the_fill(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    fill = await submit(world, "tech_nd1", "RX-COUNSEL")
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    api = SiteApi(
        SiteConfig(server_url=base_url(world).rstrip("/"), token=world.tokens["tech_nd1"], data_dir=tmp_path)
    )
    kiosk = Consultation(api, video=TestPattern(fps=20), wait_for_invite=True, max_seconds=60)
    site_task = asyncio.create_task(kiosk.run())
    try:
        await console.row(fill["id"]).click()
        await expect(page.locator("#verify-view")).to_be_visible()
        await page.keyboard.press("v")
        panel = page.locator("#consult-panel")
        await expect(panel).to_have_attribute("data-state", "connected", timeout=15000)
        await expect(panel).to_have_attribute("data-fill", fill["id"])
        async with asyncio.timeout(10):
            while kiosk.result.frames_received < 10:
                await asyncio.sleep(0.1)
        await page.click("#consult-hangup")
        result = await asyncio.wait_for(asyncio.shield(site_task), 5)
        assert result.kind == "counsel" and result.fill_id == fill["id"]
        record = await (await world.login("nd_rph")).json(
            "GET", f"/api/v1/consultations/{result.consultation_id}"
        )
        assert record["fill_id"] == fill["id"] and record["prescription_id"] is not None
        assert record["requested_by"] == record["pharmacist_id"] and record["answered_at"]
    finally:
        if not site_task.done():
            kiosk.hang_up()
            await asyncio.wait_for(site_task, 10)
        await api.close()
        await console.context.close()
