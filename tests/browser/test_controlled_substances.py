"""Controlled substances in the console: the schedule on the queue row and the fill, the Schedule II
count typed by the pharmacist, and a Schedule II decision sent at once, with no Undo window."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from playwright.async_api import Browser, expect

from tests.api.world import PASSWORD, approval
from tests.browser.conftest import WorldFactory, look_at_every_photo, reported, sign_in, submit_clean
from tests.browser.test_safety import claim_of, decided, decisions_sent, open_fill

pytestmark = pytest.mark.browser


async def test_a_schedule_ii_fill_shows_its_schedule_asks_for_the_count_and_is_sent_at_once(
    browser: Browser, make_world: WorldFactory
) -> None:
    # An Undo window far longer than the test waits: a decision held for it would never arrive.
    world = await make_world(decision_undo_seconds=60)
    cii = await submit_clean(world, "tech_nd1", "RX-CII", rx={"dea_schedule": "CII", "drug": "Oxycodone HCl"})
    civ = await submit_clean(world, "tech_nd1", "RX-CIV", rx={"dea_schedule": "CIV"})
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)

    await expect(c.row(cii["id"]).locator(".badge.schedule")).to_have_text("CII")
    await expect(c.row(civ["id"]).locator(".badge.schedule")).to_have_text("CIV")

    await open_fill(c, cii["id"])
    await expect(page.locator("#v-title .badge.schedule")).to_have_text("CII")
    controlled = page.locator("#v-controlled")
    await expect(controlled).to_contain_text("Schedule II controlled substance")
    await expect(controlled).to_contain_text("sent at once, with no Undo")
    await look_at_every_photo(page)

    # A asks for the count: an empty box, typed by the pharmacist.
    await page.keyboard.press("a")
    await expect(page.locator("#v-acks")).to_be_visible()
    await expect(page.locator("#acks-title")).to_have_text("Approve: confirm the count")
    count = page.locator("#v-ack-count")
    await expect(count).to_have_value("")
    await expect(count).to_be_focused()
    await expect(page.locator("#v-ack-confirm")).to_be_disabled()

    # A count other than the site's is refused at once, and asked for again in the same step.
    await page.keyboard.type("58")
    await page.keyboard.press("Enter")
    error = page.locator("#v-ack-error")
    await expect(error).to_contain_text("The count you entered (58) is not the site's count")
    await expect(count).to_have_value("")
    await expect(count).to_be_focused()
    assert [b["count_confirmation"] for b in sent] == [{"count": "58"}]
    assert (await claim_of(world, cii["id"]))[1:] == ("nd_rph", 0)

    # The right count: Schedule II asks who approves, then the decision is sent with no Undo window.
    await page.keyboard.type("60")
    await page.keyboard.press("Enter")
    step_up = page.locator(".identity-step-up")
    await expect(step_up).to_contain_text("Schedule II controlled substance")
    await step_up.locator("#proof-password").fill(PASSWORD)
    await step_up.locator("#proof-submit").click()
    await expect(page.locator(".toast").last).to_contain_text("sent at once")
    for undo in ("#v-undo", "#q-undo"):
        assert await page.locator(undo).is_hidden()
    detail = await decided(world, cii["id"])
    assert detail["state"] == "approved"
    assert detail["decision"]["confirmed_count"] == 60
    await reported(sent)
    assert sent[-1]["count_confirmation"] == {"count": "60"}

    # The next fill, of Schedule IV, opens at once: no count asked, its decision held for Undo as usual.
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", civ["id"])
    await expect(page.locator("#v-controlled")).to_have_count(0)
    await look_at_every_photo(page)
    await page.keyboard.press("a")
    await expect(page.locator("#q-undo")).to_be_visible()
    await asyncio.sleep(0.2)
    assert len([b for b in sent if "count_confirmation" not in b]) == 0
    assert not any(line.startswith("pageerror") for line in c.logs), c.logs


async def test_an_admin_downloads_a_site_s_controlled_substance_log_from_the_compliance_view(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    fill = await submit_clean(world, "tech_nd1", "RX-CIV", rx={"dea_schedule": "CIV"})
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(claimed))

    admin = await sign_in(browser, world, "admin")
    page = admin.page
    await page.click("#nav-compliance")
    await page.select_option("#comp-site", str(world.sites["ND-1"]))
    link = page.locator("#comp-log-csv")
    await expect(link).to_be_visible()
    async with page.expect_download() as waiting:
        await link.click()
    download = await waiting.value
    text = Path(await download.path()).read_text(encoding="utf-8")
    lines = text.splitlines()
    assert lines[0].startswith("decided_at,site,rx_number,drug")
    assert len(lines) == 2 and ",RX-CIV," in lines[1] and fill["id"] in lines[1]
    assert not [line for line in admin.logs if "pageerror" in line], admin.logs
