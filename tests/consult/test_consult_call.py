"""A video consultation end to end: Chromium (fake camera) as the pharmacist, the aiortc site client as the
patient's kiosk, through the real server. Signalling reaches the two parties only."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from remote_site_client.api import SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.consult import Consultation, TestPattern
from server.db.models import AuditEvent
from tests.browser.conftest import WorldFactory, base_url, sign_in, until
from tests.consult.wire import drain

pytestmark = pytest.mark.browser


async def test_consultation_call_end_to_end(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    origin = base_url(world).rstrip("/")
    console = await sign_in(browser, world, "nd_rph")
    page = console.page

    # A third user licensed in the same state, with a live connection of their own.
    outsider = await world.login("both_rph")
    outsider_ws = await outsider.client.ws_connect("/api/v1/ws", headers={"Origin": origin})
    assert (await outsider_ws.receive_json())["type"] == "hello"

    api = SiteApi(SiteConfig(server_url=origin, token=world.tokens["tech_nd1"], data_dir=tmp_path / "site"))
    call = Consultation(api, video=TestPattern(fps=20), max_seconds=60)
    site_task = asyncio.create_task(call.run())
    try:
        request = page.locator(".consult-request")
        await expect(request).to_be_visible()
        cid = int(await request.get_attribute("data-id") or "0")
        assert cid == call.result.consultation_id

        # Not licensed in North Dakota: cannot see it, cannot accept it.
        mn = await world.login("mn_rph")
        resp = await mn.post(f"/api/v1/consultations/{cid}/accept")
        assert resp.status == 404
        lapsed = await world.login("lapsed_rph")
        assert (await lapsed.post(f"/api/v1/consultations/{cid}/accept")).status == 404

        # The outsider cannot join the room, nor signal into it.
        await outsider_ws.send_json({"type": "consult.join", "consultation_id": cid})
        await outsider_ws.send_json({"type": "consult.signal", "consultation_id": cid, "description": {}})

        t_accept = time.monotonic()
        await request.locator(".consult-accept").click()
        panel = page.locator("#consult-panel")
        await expect(panel).to_have_attribute("data-state", "connected", timeout=15000)
        connected_ms = (time.monotonic() - t_accept) * 1000
        await until(
            page,
            "Number(document.getElementById('consult-panel').dataset.framesIn || 0) >= 30"
            " && Number(document.getElementById('consult-panel').dataset.framesOut || 0) >= 30",
            timeout=15,
        )
        async with asyncio.timeout(10):
            while call.result.frames_received < 30:
                await asyncio.sleep(0.1)
        assert "round trip" in (await page.locator("#consult-quality").text_content() or "")

        # The pharmacist hangs up: both sides end within 5 s.
        t_hangup = time.monotonic()
        await page.click("#consult-hangup")
        result = await asyncio.wait_for(asyncio.shield(site_task), 5)
        site_end_s = time.monotonic() - t_hangup
        await expect(panel).to_have_attribute("data-state", "ended", timeout=5000)
        assert result.ended_by == "peer" and result.reason == "hangup"
        assert result.frames_received >= 30 and result.frames_sent >= 30

        nd = await world.login("nd_rph")
        record = await nd.json("GET", f"/api/v1/consultations/{cid}")
        assert record["state"] == "ended" and record["end_reason"] == "hangup"
        assert record["duration_seconds"] is not None and record["duration_seconds"] > 0.5
        assert record["answered_at"] and record["connected_at"] and record["ended_at"]

        async with world.services.db.read() as s:
            actions = (
                (await s.execute(select(AuditEvent.action).where(AuditEvent.entity_type == "consultation")))
                .scalars()
                .all()
            )
        assert {"consultation.requested", "consultation.accepted", "consultation.ended"} <= set(actions)

        seen = await drain(outsider_ws, 0.5)
        kinds = [m["type"] for m in seen]
        assert "consult.signal" not in kinds and "consult.ended" not in kinds
        assert kinds.count("consult.error") == 2
        for m in seen:
            assert "sdp" not in json.dumps(m) and "patient" not in json.dumps(m)
        assert "consultation.requested" in kinds  # the request itself is announced, as ids only
        print(f"accept->connected {connected_ms:.0f} ms; site ended {site_end_s * 1000:.0f} ms after hang-up")
    finally:
        if not site_task.done():
            call.hang_up()
            await asyncio.wait_for(site_task, 10)
        await outsider_ws.close()
        await api.close()
        await console.context.close()
