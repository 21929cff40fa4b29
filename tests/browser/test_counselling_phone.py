"""Counselling by telephone from the console: the pharmacist's list of fills due counselling offers the
record where the state lets a call count (Iowa) and says why not where it counsels by video (North
Dakota); the record saved there releases the fill at the site."""

from __future__ import annotations

import datetime as dt

import pytest
from playwright.async_api import Browser, expect
from sqlalchemy import select

from server.db.models import CounsellingRecord, User
from tests.api.world import PASSWORD, World, approval, approved_fill, queued_fill, rx_body
from tests.browser.conftest import WorldFactory, sign_in

pytestmark = pytest.mark.browser

NOTE = "Called the patient: take with meals, what to do about a missed dose; questions answered."


async def _approve(world: World, tech_name: str, rx_number: str) -> str:
    """A fill of a new prescription at the technician's site, approved by nd_rph; returns its id."""
    tech = await world.device(tech_name)
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number))
    fill = await queued_fill(world, tech, rx["id"])
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(claimed))
    return str(fill["id"])


async def _iowa_fill(world: World) -> str:
    """An Iowa site (new prescriptions need counselling; the medium is not settled) with a fill of a new
    prescription approved by nd_rph, licensed in Iowa too; returns the fill's id."""
    d, svc = world.services.directory, world.services
    world.sites["IA-1"] = (await d.create_site(None, "IA-1", "Sac City Drug", "IA", requires_pv1=False)).id
    await d.create_user(None, "tech_ia1", "tech_ia1", "technician", PASSWORD, site_code="IA-1")
    world.tokens["tech_ia1"] = await svc.auth.issue_device_token(None, "tech_ia1", "IA-1 counter")
    await d.add_license(None, "nd_rph", "IA", "IA-nd_rph", dt.date.today() + dt.timedelta(days=365))
    return await _approve(world, "tech_ia1", "RX-IA1")


async def test_a_pharmacist_records_telephone_counselling_from_the_list_where_video_is_not_required(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    nd_fill = await approved_fill(world)  # North Dakota: counselling by audio and video
    ia_fill = await _iowa_fill(world)
    tech = await world.device("tech_ia1")
    assert (await tech.json("GET", f"/api/v1/fills/{ia_fill}"))["counselling"] == "due"
    assert (await tech.post(f"/api/v1/fills/{ia_fill}/hand-out")).status == 409

    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    try:
        await page.click("#nav-counselling")
        await expect(page.locator("#counselling-view")).to_be_visible()
        nd_row = page.locator(f'#counsel-list li[data-id="{nd_fill}"]')
        ia_row = page.locator(f'#counsel-list li[data-id="{ia_fill}"]')
        await expect(page.locator("#counsel-list li")).to_have_count(2)
        await expect(page.locator("#counselling-count")).to_have_text("2")

        # North Dakota: no telephone record, and the row says why, naming the rule.
        await expect(nd_row.locator('[data-action="phone"]')).to_have_count(0)
        await expect(nd_row.locator(".counsel-why")).to_contain_text("audio and video")
        await expect(nd_row.locator(".counsel-why")).to_contain_text("61-02-08-03(5)")
        await expect(nd_row.locator('[data-action="video"]')).to_be_visible()

        # Iowa: the form says whom to call; a note is required; the record releases the fill.
        await expect(ia_row).to_contain_text("RX-IA1")
        await expect(ia_row).to_contain_text("J. P.")
        await ia_row.locator('[data-action="phone"]').click()
        form = page.locator("#counsel-form")
        await expect(form.locator(".counsel-patient")).to_contain_text("Jane Q. Patient")
        await page.fill("#counsel-minutes", "4")
        await page.click("#counsel-save")
        await expect(page.locator("#counsel-error")).to_contain_text("note")
        await page.fill("#counsel-note", NOTE)
        await page.click("#counsel-save")
        toast = page.locator(".toast").last
        await expect(toast).to_contain_text("Telephone counselling recorded for Rx RX-IA1")
        await expect(ia_row).to_have_count(0)
        await expect(page.locator("#counsel-list li")).to_have_count(1)

        seen = await tech.json("GET", f"/api/v1/fills/{ia_fill}")
        assert seen["counselling"] == "counselled_phone"
        assert seen["counselling_record"]["kind"] == "phone" and seen["counselling_record"]["has_note"]
        async with world.services.db.read() as s:
            record, pharmacist = (
                await s.execute(
                    select(CounsellingRecord, User.username)
                    .join(User, User.id == CounsellingRecord.pharmacist_id)
                    .where(CounsellingRecord.fill_id == ia_fill)
                )
            ).one()
        assert (record.note, record.duration_seconds, pharmacist) == (NOTE, 240, "nd_rph")
        assert (await tech.post(f"/api/v1/fills/{ia_fill}/hand-out")).status == 200

        # A fill approved meanwhile joins the list as it happens.
        later = await _approve(world, "tech_nd2", "RX-ND2")
        await expect(page.locator(f'#counsel-list li[data-id="{later}"]')).to_be_visible()
        await expect(page.locator("#counselling-count")).to_have_text("2")
        # Its reason is the first row's: said in a few words, not in full again.
        why = page.locator(f'#counsel-list li[data-id="{later}"] .counsel-why')
        await expect(why).to_have_text("By video only, for the reason given above.")
        await expect(nd_row.locator(".counsel-why")).to_contain_text("61-02-08-03(5)")
        assert not [line for line in console.logs if "pageerror" in line]
    finally:
        await console.context.close()
