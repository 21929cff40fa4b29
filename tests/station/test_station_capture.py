"""Guided capture in the technician's page: each view checked as it is taken, saved into the outbox, sent,
and the pharmacist's decision shown as it lands."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.browser.conftest import look_at_every_photo, sign_in
from tests.site_client.world import PASSWORD, PHARMACIST, ServerProcess, site_api
from tests.station.world import (
    StationProcess,
    camera_photo,
    create_prescription,
    file_photo,
    open_station,
    pick,
    record_count_video,
    save_fill,
)


async def test_three_views_saved_reach_the_pharmacist_and_the_approval_comes_back(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    rx = await create_prescription(server.url, token, "100234")
    sp = await open_station(browser, station)
    page = sp.page
    await pick(page, "100234")
    await camera_photo(page, "stock_bottle")
    await expect(page.locator("#check-result")).to_contain_text("The barcode matches the prescription")
    await file_photo(page, "pills", photo_dir / "pills.jpg")
    await file_photo(page, "vial_label", photo_dir / "vial_label.jpg")
    await record_count_video(page, seconds=1.5)
    await page.fill("#count", "60")
    fill_id = await save_fill(page)

    status, fill = await site_api(server.url, token, "GET", f"/api/v1/fills/{fill_id}")
    for _ in range(200):
        status, fill = await site_api(server.url, token, "GET", f"/api/v1/fills/{fill_id}")
        if status == 200 and fill["state"] == "queued":
            break
        await page.wait_for_timeout(100)
    assert fill["state"] == "queued", fill
    assert fill["prescription"]["id"] == rx["id"]
    assert sorted(m["kind"] for m in fill["media"]) == ["count_video", "pills", "stock_bottle", "vial_label"]
    video = next(m for m in fill["media"] if m["kind"] == "count_video")
    assert video["duration_seconds"] > 0.5
    assert fill["counted_quantity"] == 60
    assert fill["product_check"] == "match"

    await page.click("#nav-worklist")
    row = page.locator(f'#worklist li[data-id="{fill_id}"]')
    await expect(row).to_have_attribute("data-state", "queued")
    await expect(row).to_contain_text("Rx 100234")
    await expect(row).to_contain_text("Metformin HCl 500 mg")
    await expect(row).to_contain_text("Jane Q. Patient")

    rph = await sign_in(browser, server.url, PHARMACIST, password=PASSWORD)
    await expect(rph.page.locator("#queue-body tr")).to_contain_text("100234")
    await rph.page.keyboard.press("n")
    await expect(rph.page.locator("#v-rx")).to_contain_text("100234")
    await look_at_every_photo(rph.page)
    await rph.page.keyboard.press("a")
    await expect(row).to_have_attribute("data-state", "approved", timeout=15000)
    # North Dakota's pharmacist counsels every new prescription: approved, but not to be handed out yet.
    await expect(row).to_contain_text("Approved, counselling due")
    await row.locator("button").click()
    await expect(page.locator("#decision")).to_contain_text("Approved: ready to bag")
    await expect(page.locator("#counselling")).to_contain_text("Counselling due")
    await expect(page.locator("#hand-out-btn")).to_have_count(0)
    assert not [line for line in sp.logs if line.startswith(("error", "pageerror"))], sp.logs


async def test_a_blurred_photo_is_refused_with_what_to_do_and_retaken_with_one_key(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "100235")
    page = (await open_station(browser, station)).page
    await pick(page, "100235")
    result = await file_photo(page, "stock_bottle", photo_dir / "blurred_stock_bottle.jpg", ok=False)
    await expect(result.locator('li[data-code="blurred"]')).to_contain_text("hold the camera still")
    step = page.locator('#view-steps [data-kind="stock_bottle"]')
    await expect(step).to_have_attribute("data-state", "problem")
    await page.locator("body").press("r")
    await expect(page.locator("#check-result")).to_be_hidden()
    await expect(page.locator("#capture-btn")).to_be_visible()
    await camera_photo(page, "stock_bottle")


async def test_a_missing_view_blocks_saving_and_is_named(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "100236")
    page = (await open_station(browser, station)).page
    await pick(page, "100236")
    await camera_photo(page, "stock_bottle")
    await file_photo(page, "pills", photo_dir / "pills.jpg")
    await page.click("#save-btn")
    await expect(page.locator("#missing-views")).to_have_text("Not saved: take the vial label photo first.")
    selected = page.locator('#view-steps [aria-selected="true"]')
    await expect(selected).to_have_attribute("data-kind", "vial_label")
    status, body = await site_api(server.url, token, "GET", "/api/v1/fills")
    assert status == 200 and body["fills"] == []


async def test_a_wrong_bottle_names_the_ndc_on_it(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "100237")
    page = (await open_station(browser, station)).page
    await pick(page, "100237")
    result = await file_photo(page, "stock_bottle", photo_dir / "wrong_stock_bottle.jpg", ok=False)
    problem = result.locator('li[data-code="wrong_ndc"]')
    await expect(problem).to_contain_text("Wrong product: the bottle is NDC 0093-7214-01")


async def test_a_liquid_asks_for_its_own_views(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess
) -> None:
    await create_prescription(
        server.url,
        token,
        "100240",
        drug="Amoxicillin",
        strength="250 mg/5 mL",
        dosage_form="oral suspension",
        quantity=150,
        directions="Take 5 mL by mouth three times daily",
    )
    page = (await open_station(browser, station)).page
    await pick(page, "100240")
    steps = page.locator("#view-steps [data-kind]")
    await expect(steps.first).to_have_attribute("data-kind", "stock_bottle")
    kinds = await steps.evaluate_all("(els) => els.map((e) => e.dataset.kind)")
    assert kinds[:3] == ["stock_bottle", "measured_volume", "bottle_label"] and "pills" not in kinds


async def test_a_prescription_waiting_for_pv1_cannot_be_filled_yet(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess
) -> None:
    db = sqlite3.connect(server.data_dir / "telepharmacy.sqlite3")
    with db:
        db.execute("UPDATE sites SET requires_pv1 = 1")  # as a new site has it
    db.close()
    await create_prescription(server.url, token, "100241")
    page = (await open_station(browser, station)).page
    await page.fill("#rx-search", "100241")
    item = page.locator(".rx-item", has_text="Rx 100241")
    await expect(item.locator(".rx-waits")).to_have_text("waits for the pharmacist's data-entry check")
    await item.click()
    await expect(page.locator("#toasts")).to_contain_text(
        "It can be filled once the pharmacist has verified it."
    )
    await expect(page.locator("#capture-steps")).to_be_hidden()


async def test_a_file_chosen_after_a_good_photo_goes_to_the_next_view_missing(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "100242")
    page = (await open_station(browser, station)).page
    await pick(page, "100242")
    result = await file_photo(page, "stock_bottle", photo_dir / "stock_bottle.jpg")
    await expect(result.locator("button")).to_have_text("Next: pills photo →")
    steps = page.locator("#view-steps")

    # Next not pressed: the pills photo goes to the pills, the stock bottle photo stays as it was.
    await page.set_input_files("#file-input", str(photo_dir / "pills.jpg"))
    await expect(page.locator("#stage")).to_have_attribute("data-kind", "pills")
    await expect(result).to_have_attribute("data-state", "ok", timeout=20000)
    await expect(steps.locator('[data-kind="stock_bottle"]')).to_have_attribute("data-state", "ok")
    await expect(steps.locator('[data-kind="pills"]')).to_have_attribute("data-state", "ok")
    await page.set_input_files("#file-input", str(photo_dir / "vial_label.jpg"))
    await expect(page.locator("#stage")).to_have_attribute("data-kind", "vial_label")
    await expect(steps.locator('[data-kind="vial_label"]')).to_have_attribute(
        "data-state", "ok", timeout=20000
    )

    # With no view missing, a good photo is not replaced by a file: Retake first.
    await page.set_input_files("#file-input", str(photo_dir / "pills.jpg"))
    await expect(page.locator("#toasts")).to_contain_text(
        "The vial label photo is already taken and no view is missing: press Retake to replace it."
    )
    await expect(page.locator("#stage")).to_have_attribute("data-kind", "vial_label")
    await expect(result).to_have_attribute("data-state", "ok")
    await expect(steps.locator("[data-state=ok]")).to_have_count(3)


async def test_a_label_scanned_for_a_prescription_older_than_the_list_picks_it(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess
) -> None:
    """A refill's label: its prescription was entered weeks ago, past the newest the page lists."""
    await create_prescription(server.url, token, "100234")
    gate = asyncio.Semaphore(8)

    async def newer(n: int) -> None:
        async with gate:
            await create_prescription(server.url, token, f"2{n:05d}")

    await asyncio.gather(*(newer(n) for n in range(201)))
    page = (await open_station(browser, station)).page
    await pick(page, "100234")
    await expect(page.locator("#rx-number")).to_have_text("100234")
    await expect(page.locator("#capture-steps")).to_be_visible()
