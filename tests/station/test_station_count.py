"""The counted quantity on the station's page: a fill is saved only with a count, what was typed is read
as `tp-site submit --count` reads it, and a count other than the prescription's is saved only once the
technician confirms it (the pharmacist is told by the server's quantity_mismatch flag)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, Request, Route, expect

from remote_site_client.outbox import Outbox
from tests.site_client.world import ServerProcess, Site, site_api
from tests.station.test_station_decisions import queued
from tests.station.world import (
    StationProcess,
    camera_photo,
    create_prescription,
    file_photo,
    is_save,
    open_station,
    pick,
    save_fill,
)


async def three_views(page: Page, rx_number: str, photo_dir: Path) -> None:
    await pick(page, rx_number)
    await camera_photo(page, "stock_bottle")
    await file_photo(page, "pills", photo_dir / "pills.jpg")
    await file_photo(page, "vial_label", photo_dir / "vial_label.jpg")


def saved_here(site: Site) -> list[Any]:
    with Outbox(site.config.data_dir) as outbox:
        return list(outbox.entries())


async def test_a_count_left_empty_or_mistyped_is_refused_by_the_field_and_nothing_is_saved(
    browser: Browser,
    server: ServerProcess,
    token: str,
    site: Site,
    station: StationProcess,
    photo_dir: Path,
    tmp_path: Path,
) -> None:
    await create_prescription(server.url, token, "600001")
    page = (await open_station(browser, station)).page
    asked: list[Any] = []  # each Save the page asked of the station

    def on_request(r: Request) -> None:
        if r.method == "POST" and r.url.endswith("/api/fills"):
            asked.append(r.post_data_json)

    page.on("request", on_request)
    await three_views(page, "600001", photo_dir)
    field, problem = page.locator("#count"), page.locator("#count-problem")

    await page.click("#save-btn")
    await expect(problem).to_have_text("Not saved: type the counted quantity first.")
    await expect(field).to_be_focused()
    await expect(field).to_have_attribute("aria-invalid", "true")
    assert asked == []

    for typed in ("abc", "3O"):  # the second with a letter O for the zero of 30
        await field.fill("")
        await field.press_sequentially(typed)
        await expect(problem).to_be_hidden()  # typing again clears what was said
        await page.keyboard.press("Control+s")
        await expect(problem).to_have_text(
            f"Not saved: The counted quantity must be a number, e.g. 60, not '{typed}'."
        )
        await expect(field).to_have_value(typed)  # the field shows what was typed, as it was typed
        await expect(field).to_be_focused()
    await page.screenshot(path=tmp_path / "count-refused.png", animations="disabled", caret="hide")

    # The page sent what was typed; the station read it and refused it.
    assert [a["counted_quantity"] for a in asked] == ["abc", "3O"]
    assert saved_here(site) == []
    assert await page.locator("#save-status").text_content() == ""
    status, body = await site_api(server.url, token, "GET", "/api/v1/fills")
    assert status == 200 and body["fills"] == []


async def test_the_station_refuses_a_fill_without_a_count_whatever_the_page_sends(
    browser: Browser,
    server: ServerProcess,
    token: str,
    site: Site,
    station: StationProcess,
    photo_dir: Path,
) -> None:
    await create_prescription(server.url, token, "600002")
    page = (await open_station(browser, station)).page
    await three_views(page, "600002", photo_dir)
    await page.fill("#count", "60")

    async def without_the_count(route: Route) -> None:
        body = route.request.post_data_json
        del body["counted_quantity"]
        await route.continue_(post_data=json.dumps(body))

    await page.route("**/api/fills", without_the_count)
    async with page.expect_response(is_save) as info:
        await page.click("#save-btn")
    answer = await info.value
    assert answer.status == 400 and (await answer.json())["error"] == "no_count"
    await expect(page.locator("#count-problem")).to_have_text(
        "Not saved: Type the counted quantity before saving."
    )
    assert saved_here(site) == []


async def test_a_count_other_than_the_prescription_is_saved_once_the_technician_confirms_it(
    browser: Browser,
    server: ServerProcess,
    token: str,
    site: Site,
    station: StationProcess,
    photo_dir: Path,
) -> None:
    await create_prescription(server.url, token, "600003")  # for 60 tablets
    page = (await open_station(browser, station)).page
    await three_views(page, "600003", photo_dir)
    field, confirm = page.locator("#count"), page.locator("#count-confirm")

    await page.fill("#count", "600")
    await page.click("#save-btn")
    await expect(confirm).to_contain_text("Counted 600, the prescription is for 60: save anyway?")
    await expect(page.locator("#count-confirm-change")).to_be_focused()
    await expect(page.locator("#count-problem")).to_be_hidden()
    assert saved_here(site) == []

    # Save waits for the answer; Ctrl+S asks again: only "Save anyway" saves a count that differs.
    await expect(page.locator("#save-btn")).to_be_hidden()
    async with page.expect_response(is_save) as info:
        await page.keyboard.press("Control+s")
    asked = await info.value
    assert asked.status == 200 and (await asked.json())["question"] == "count_differs"
    await expect(confirm).to_contain_text("Counted 600, the prescription is for 60: save anyway?")
    assert saved_here(site) == []

    await page.click("#count-confirm-change")
    await expect(confirm).to_be_hidden()
    await expect(page.locator("#save-btn")).to_be_visible()
    await expect(field).to_be_focused()
    await field.press_sequentially("58")  # the text was selected: typing replaces it
    await expect(field).to_have_value("58")
    fill_id = await save_fill(page, count_differs=True)
    await expect(confirm).to_be_hidden()

    [entry] = saved_here(site)
    assert entry.fill_id == fill_id and entry.body["counted_quantity"] == 58
    assert "count_confirmed" not in entry.body
    fill = await queued(server, token, fill_id)
    assert fill["counted_quantity"] == 58
    # The pharmacist is told by the server's flag, as for any count that differs.
    mismatch = [f for f in fill["flags"] if f["code"] == "quantity_mismatch"]
    assert mismatch == [{"code": "quantity_mismatch", "counted": 58.0, "prescribed": 60.0}]
