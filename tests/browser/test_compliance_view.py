"""The administrator's compliance view in the console: a site's rules with their sources and its figures."""

from __future__ import annotations

import datetime as dt

from playwright.async_api import Browser, expect

from tests.api.world import PASSWORD
from tests.browser.conftest import WorldFactory, sign_in, submit


async def test_an_admin_sees_a_site_s_rules_with_sources_and_who_supervises_it(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    svc = world.services
    tx = await svc.directory.create_site(None, "TX-1", "Marfa Drug", "TX", requires_pv1=False)
    await svc.directory.create_user(None, "tech_tx1", "tech_tx1", "technician", PASSWORD, site_code="TX-1")
    world.tokens["tech_tx1"] = await svc.auth.issue_device_token(None, "tech_tx1", "TX-1 counter")
    await svc.directory.add_license(None, "both_rph", "TX", "TX-9", dt.date.today() + dt.timedelta(days=30))
    fill = await submit(world, "tech_tx1", "TX100")
    rph = await world.login("both_rph")
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim")

    pharmacist = await sign_in(browser, world, "nd_rph")
    await expect(pharmacist.page.locator("#nav-compliance")).to_be_hidden()

    admin = await sign_in(browser, world, "admin")
    page = admin.page
    await page.click("#nav-compliance")
    await expect(page.locator("#compliance-view")).to_be_visible()
    await page.select_option("#comp-site", str(tx.id))
    limit = page.locator(".rules-table tr", has_text="Sites one pharmacist supervises at once")
    await expect(limit).to_contain_text("2")
    await expect(limit).to_contain_text("22 Tex. Admin. Code 291.121(c)(4)(B)")
    unknown = page.locator(".rules-table tr", has_text="DEA schedules at a remote site")
    await expect(unknown).to_contain_text("Not settled. Read:")
    await expect(page.locator("#comp-body")).to_contain_text("Both Rph: 1 site now (TX-1), limit 2")
    # North Dakota's views a fill needs, named as an inspector reads them, not as the code stores them.
    await page.select_option("#comp-site", str((await svc.directory.site_by_code("ND-1")).id))
    views = page.locator(".rules-table tr", has_text="Views per dosage form")
    await expect(views).to_contain_text("tablet / capsule: Stock bottle, Counted pills, Labelled vial")
    await expect(views).not_to_contain_text("stock_bottle")
    assert not [line for line in admin.logs if "pageerror" in line], admin.logs
