"""A counselling call from the counter: the pharmacist ends it in the console, writes the counselling
note, and the fill shows counselling done at the site, which may then hand it out."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from remote_site_client.api import SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.consult import Consultation, TestPattern
from server.db.models import CounsellingRecord
from tests.api.world import approved_fill
from tests.browser.conftest import WorldFactory, base_url, sign_in

pytestmark = pytest.mark.browser

NOTE = "Take with meals; a missed dose is skipped, not doubled. Patient repeated it back."


async def test_the_pharmacists_note_after_a_counselling_call_is_the_record_the_site_sees(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    fill_id = await approved_fill(world)  # North Dakota: counselling due on every fill
    tech = await world.device("tech_nd1")
    assert (await tech.json("GET", f"/api/v1/fills/{fill_id}"))["counselling"] == "due"
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    api = SiteApi(
        SiteConfig(server_url=base_url(world).rstrip("/"), token=world.tokens["tech_nd1"], data_dir=tmp_path)
    )
    kiosk = Consultation(
        api, video=TestPattern(fps=20), max_seconds=60, request={"kind": "counsel", "fill_id": fill_id}
    )
    site_task = asyncio.create_task(kiosk.run())
    try:
        request = page.locator(".consult-request")
        await expect(request).to_be_visible()
        await request.locator(".consult-accept").click()
        panel = page.locator("#consult-panel")
        await expect(panel).to_have_attribute("data-state", "connected", timeout=15000)

        await page.click("#consult-hangup")
        await asyncio.wait_for(asyncio.shield(site_task), 5)
        # The call is over; the panel asks for the counselling note.
        await expect(page.locator("#consult-note-form")).to_be_visible()
        await page.fill("#consult-note", NOTE)
        await page.click("#consult-note-save")
        await expect(page.locator("#consult-note-form")).to_be_hidden()

        seen = await tech.json("GET", f"/api/v1/fills/{fill_id}")
        assert seen["counselling"] == "counselled_video"
        assert seen["counselling_record"]["kind"] == "video" and seen["counselling_record"]["has_note"]
        async with world.services.db.read() as s:
            record = (
                await s.execute(select(CounsellingRecord).where(CounsellingRecord.fill_id == fill_id))
            ).scalar_one()
        assert record.note == NOTE and record.duration_seconds and record.duration_seconds > 0
        assert (await tech.post(f"/api/v1/fills/{fill_id}/hand-out")).status == 200
    finally:
        if not site_task.done():
            kiosk.hang_up()
            await asyncio.wait_for(site_task, 10)
        await api.close()
        await console.context.close()
