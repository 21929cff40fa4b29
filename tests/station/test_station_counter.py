"""The counter on the station's page: an approved North Dakota fill shows "Approved, counselling due",
offers no Hand out, and no "Patient declined…" either (it says why: no rule read lets the patient
decline); once the pharmacist counselled the patient by video it shows counselling done and is handed
out."""

from __future__ import annotations

from pathlib import Path

from playwright.async_api import Browser, expect

from tests.site_client.world import Pharmacist, ServerProcess, site_api
from tests.station.test_station_decisions import capture_and_save, queued
from tests.station.world import StationProcess, create_prescription, open_station


async def test_an_approved_fill_is_handed_out_from_the_page_once_counselled(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "300777")
    sp = await open_station(browser, station)
    page = sp.page
    fill_id = await capture_and_save(page, "300777", photo_dir)
    await queued(server, token, fill_id)
    async with Pharmacist(server.url) as rph:
        await rph.decide(fill_id, "approve")

        await page.click("#nav-worklist")
        row = page.locator(f'#worklist li[data-id="{fill_id}"]')
        await expect(row).to_have_attribute("data-counselling", "due")
        await expect(row.locator(".work-state")).to_have_text("Approved, counselling due")
        await row.locator("button").click()
        await expect(page.locator("#counselling")).to_contain_text("Counselling due")
        await expect(page.locator("#hand-out-btn")).to_have_count(0)
        # No rule read lets a North Dakota patient decline: no such button, and the page says why.
        await expect(page.locator("#declined-btn")).to_have_count(0)
        why = page.locator("#decline-why")
        await expect(why).to_contain_text("North Dakota requires counselling")
        await expect(why).to_contain_text("61-02-08-03(5)")

        # The pharmacist counsels the patient in a call from the fill.
        c = await rph.call(
            "POST", "/api/v1/consultations/invite", {"fill_id": fill_id, "kind": "counsel"}, 201
        )
        for step in ("answer", "connected"):
            status, _ = await site_api(server.url, token, "POST", f"/api/v1/consultations/{c['id']}/{step}")
            assert status == 200
        await rph.call("POST", f"/api/v1/consultations/{c['id']}/end", {"reason": "hangup"})

    # The page hears it and shows the fill again: counselling done, Hand out offered.
    await expect(page.locator("#counselling")).to_contain_text("Counselling done", timeout=15000)
    await page.click("#hand-out-btn")
    await expect(page.locator("#decision")).to_contain_text("Handed out")
    await expect(page.locator("#decision")).to_contain_text("counselling done")
    status, fill = await site_api(server.url, token, "GET", f"/api/v1/fills/{fill_id}")
    assert status == 200 and fill["state"] == "handed_out" and fill["counselling"] == "counselled_video"
