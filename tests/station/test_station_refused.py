"""A fill the server refused for good stops retrying and waits in the page with why: fixed in place (the
view it lacks taken) and sent, or discarded with a reason kept in the station's audit. A refusal no change
to the fill cures offers no fix, and one cured by waiting says for what.

The refusal is recorded in the outbox as the sender records one (tests/site_client/test_refused_fills.py
proves the sender's side against a real server); here the page's side is proven.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from remote_site_client.outbox import FAILED, Outbox
from remote_site_client.refusals import CURED_BY_WAITING, NOT_CURED_BY_A_CHANGE
from tests.site_client.world import ServerProcess, Site, site_api
from tests.station.test_station_decisions import queued
from tests.station.world import (
    StationProcess,
    camera_photo,
    create_prescription,
    file_photo,
    open_station,
    pick,
    save_fill,
)

LACKS_FINAL_PACKAGE = "The server needs the final package photo, which this fill does not have."
NOT_VERIFIED = (
    "This prescription waits for the pharmacist's data-entry verification (PV1); it can be filled once "
    "verified."
)


async def saved(page: Page, rx_number: str, photo_dir: Path) -> str:
    await page.click("#nav-capture")
    await pick(page, rx_number)
    await camera_photo(page, "stock_bottle")
    await file_photo(page, "pills", photo_dir / "pills.jpg")
    await file_photo(page, "vial_label", photo_dir / "vial_label.jpg")
    await page.fill("#count", "60")
    return await save_fill(page)


async def test_a_refused_fill_is_fixed_in_place_and_another_discarded_with_a_reason(
    browser: Browser,
    server: ServerProcess,
    token: str,
    site: Site,
    station: StationProcess,
    photo_dir: Path,
) -> None:
    await create_prescription(server.url, token, "400001")
    await create_prescription(server.url, token, "400002")
    page = (await open_station(browser, station)).page
    await page.locator("#rx-list .rx-item").first.wait_for()
    await server.kill()
    await expect(page.locator("#offline-banner")).to_be_visible(timeout=15000)
    fix_id = await saved(page, "400001", photo_dir)
    drop_id = await saved(page, "400002", photo_dir)
    with Outbox(site.config.data_dir) as outbox:
        for fill_id in (fix_id, drop_id):
            outbox.mark_failed(
                fill_id, LACKS_FINAL_PACKAGE, code="media_missing", detail={"missing": ["final_package"]}
            )

    await page.click("#nav-worklist")
    row = page.locator(f'#worklist li[data-id="{fix_id}"]')
    await expect(row).to_have_attribute("data-state", "refused")
    await expect(row).to_contain_text("Needs your attention")
    await row.locator("button").click()
    refusal = page.locator("#refusal")
    await expect(refusal).to_contain_text("it is not sent again until you fix it")
    await expect(refusal).to_contain_text(LACKS_FINAL_PACKAGE)
    await page.click("#fix-btn")
    await expect(page.locator("#mode-banner")).to_contain_text(LACKS_FINAL_PACKAGE)
    await expect(page.locator('#view-steps [data-kind="final_package"]')).to_have_attribute(
        "data-state", "retake"
    )
    await file_photo(page, "final_package", photo_dir / "vial_label.jpg")
    async with page.expect_response(lambda r: r.url.endswith("/fix")) as info:
        await page.click("#save-btn")
    assert (await info.value).status == 200

    await page.click("#nav-worklist")
    dropped = page.locator(f'#worklist li[data-id="{drop_id}"]')
    await dropped.locator("button").click()
    await page.click("#discard-btn")
    await page.fill("#discard-reason", "Patient took the paper script elsewhere")
    await page.locator("#discard-form button").click()
    await expect(page.locator("#worklist-view")).to_be_visible()
    await page.click('#state-filter [data-filter="all"]')
    await expect(dropped).to_have_attribute("data-state", "discarded")

    await server.start()
    async with asyncio.timeout(30):
        while True:
            status, fill = await site_api(server.url, token, "GET", f"/api/v1/fills/{fix_id}")
            if status == 200 and fill["state"] == "queued":
                break
            await asyncio.sleep(0.1)
    kinds = sorted(m["kind"] for m in fill["media"])
    assert kinds == ["final_package", "pills", "stock_bottle", "vial_label"]
    with Outbox(site.config.data_dir) as outbox:
        entry = outbox.get(drop_id)
        assert entry is not None and entry.state != FAILED
        audit = outbox.audit_log()
    assert [(r.fill_id, r.action) for r in audit] == [(fix_id, "fixed"), (drop_id, "discarded")]
    assert audit[1].actor == "Terry Tech (station)"
    assert audit[1].reason == "Patient took the paper script elsewhere"
    status, body = await site_api(server.url, token, "GET", "/api/v1/fills")
    assert drop_id not in {f["id"] for f in body["fills"] if f["state"] != "draft"}


async def test_a_refusal_no_change_cures_offers_no_fix_and_one_cured_by_waiting_says_for_what(
    browser: Browser,
    server: ServerProcess,
    token: str,
    site: Site,
    station: StationProcess,
    photo_dir: Path,
) -> None:
    await create_prescription(server.url, token, "400010")  # no refill: one fill
    await create_prescription(server.url, token, "400011")
    page = (await open_station(browser, station)).page
    first_id = await saved(page, "400010", photo_dir)
    await queued(server, token, first_id)
    again_id = await saved(page, "400010", photo_dir)  # the same prescription, a second time

    await page.click("#nav-worklist")
    row = page.locator(f'#worklist li[data-id="{again_id}"]')
    await expect(row).to_have_attribute("data-state", "refused", timeout=30000)
    await row.locator("button").click()
    refusal = page.locator("#refusal")
    await expect(refusal).to_contain_text("no change to it sends it")
    await expect(refusal).to_contain_text("This prescription allows 1 fill (0 refills authorized)")
    await expect(page.locator("#refusal-advice")).to_have_text(
        f"No change sends it: {NOT_CURED_BY_A_CHANGE['refills_exhausted']}. Discard it, saying why."
    )
    await expect(page.locator("#fix-btn")).to_have_count(0)
    await expect(page.locator("#retry-btn")).to_have_count(0)
    await expect(page.locator("#discard-btn")).to_be_visible()

    # Refused while its prescription waits for the pharmacist's data-entry check: sent again as it is.
    await server.kill()
    await expect(page.locator("#offline-banner")).to_be_visible(timeout=15000)
    waiting_id = await saved(page, "400011", photo_dir)
    with Outbox(site.config.data_dir) as outbox:
        outbox.mark_failed(
            waiting_id,
            NOT_VERIFIED,
            code="prescription_not_verified",
            detail={"verification_state": "awaiting_verification"},
        )
    await page.click("#nav-worklist")
    await page.locator(f'#worklist li[data-id="{waiting_id}"] button').click()
    await expect(refusal).to_contain_text(NOT_VERIFIED)
    await expect(page.locator("#refusal-advice")).to_have_text(
        f"It waits for {CURED_BY_WAITING['prescription_not_verified']}; then send it again as it is."
    )
    await expect(page.locator("#fix-btn")).to_have_count(0)
    await expect(page.locator("#retry-btn")).to_be_visible()
