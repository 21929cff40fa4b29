"""Decisions as they land: a rejection opens with its reasons, note and the views to retake; the
resubmission keeps every photo not asked for, and the priority the technician gave the rejected fill,
and links to it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, expect

from server.fills.rules import PRIORITIES
from tests.site_client.world import Pharmacist, ServerProcess, site_api
from tests.station.world import (
    StationProcess,
    camera_photo,
    create_prescription,
    file_photo,
    open_station,
    pick,
    save_fill,
)


async def queued(server: ServerProcess, token: str, fill_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            status, fill = await site_api(server.url, token, "GET", f"/api/v1/fills/{fill_id}")
            if status == 200 and fill["state"] == "queued":
                return dict(fill)
            await asyncio.sleep(0.1)


async def capture_and_save(page: Page, rx_number: str, photo_dir: Path, *, priority: str = "") -> str:
    """A fill taken and saved at the counter; `priority` as the page words it, else none chosen."""
    await pick(page, rx_number)
    await camera_photo(page, "stock_bottle")
    await file_photo(page, "pills", photo_dir / "pills.jpg")
    await file_photo(page, "vial_label", photo_dir / "vial_label.jpg")
    await page.fill("#count", "58")  # the prescription is for 60: the rejection below says so
    if priority:
        await page.select_option("#priority", label=priority)
    return await save_fill(page, count_differs=True)


async def test_a_rejection_is_retaken_for_one_view_and_resubmitted_with_the_others_kept(
    browser: Browser, server: ServerProcess, token: str, station: StationProcess, photo_dir: Path
) -> None:
    await create_prescription(server.url, token, "300001")
    sp = await open_station(browser, station, notifications=True)
    page = sp.page
    await page.click("#notify-button")
    await expect(page.locator("#notify-button")).to_be_hidden()
    await pick(page, "300001")
    # None chosen, the server's default holds: routine. What `tp-site submit --priority` takes is offered.
    priority = page.locator("#priority")
    await expect(priority.locator("option:checked")).to_have_text("Routine")
    offered = await priority.locator("option").evaluate_all("(options) => options.map((o) => o.value)")
    assert offered == ["", "waiting", "delivery"] and set(PRIORITIES) == {"routine", *offered[1:]}
    await page.click("#rx-change")
    first_id = await capture_and_save(page, "300001", photo_dir, priority="Patient waiting")
    first = await queued(server, token, first_id)
    assert first["priority"] == "waiting"
    async with Pharmacist(server.url) as rph:
        await rph.decide(first_id, "reject", ["wrong_quantity"], "Count again: I see 58, the Rx says 60.")

    await expect(page.locator("#decided-count")).to_have_text("1")
    shown = await page.evaluate("() => window.__notifications")
    assert shown == ["Rejected: retake needed"], shown
    await page.click("#nav-worklist")
    row = page.locator(f'#worklist li[data-id="{first_id}"]')
    await expect(row).to_have_attribute("data-state", "rejected")
    await row.locator("button").click()
    decision = page.locator("#decision")
    await expect(decision).to_contain_text("Rejected: do not hand this out.")
    await expect(decision).to_contain_text("Wrong quantity")
    await expect(decision).to_contain_text("Count again: I see 58, the Rx says 60.")
    await expect(page.locator('.media-retake[data-kind="pills"]')).to_be_visible()
    await expect(page.locator(".media-retake")).to_have_count(1)

    await page.click("#resubmit-btn")
    await expect(page.locator("#mode-banner")).to_contain_text("Resubmitting rejected fill")
    steps = page.locator("#view-steps")
    await expect(steps.locator('[data-kind="pills"]')).to_have_attribute("data-state", "retake")
    await expect(steps.locator('[data-kind="stock_bottle"]')).to_have_attribute("data-state", "kept")
    await expect(steps.locator('[data-kind="vial_label"]')).to_have_attribute("data-state", "kept")
    await expect(page.locator("#count")).to_have_value("58")
    await expect(priority.locator("option:checked")).to_have_text("As the rejected fill")
    await page.click("#save-btn")
    await expect(page.locator("#missing-views")).to_contain_text("take the pills photo first")
    await file_photo(page, "pills", photo_dir / "pills.jpg")
    await page.fill("#count", "60")
    second_id = await save_fill(page)

    second = await queued(server, token, second_id)
    assert second["previous_fill_id"] == first_id
    assert second["priority"] == "waiting"  # the patient still waits: kept, not made routine
    assert second["counted_quantity"] == 60
    sha = {m["kind"]: m["sha256"] for m in first["media"]}
    again = {m["kind"]: m["sha256"] for m in second["media"]}
    assert sorted(again) == ["pills", "stock_bottle", "vial_label"]
    assert again["stock_bottle"] == sha["stock_bottle"]
    assert again["vial_label"] == sha["vial_label"]

    await page.click("#nav-worklist")
    new_row = page.locator(f'#worklist li[data-id="{second_id}"]')
    await expect(new_row).to_contain_text(f"replaces {first_id.replace('-', '')[:8]}")
    assert not [line for line in sp.logs if line.startswith(("error", "pageerror"))], sp.logs
