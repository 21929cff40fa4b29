"""Recording a call where the site's state needs every party's consent (Illinois): the patient's, recorded
by the site, is not enough; the pharmacist records their own, and only then is the recording taken."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from playwright.async_api import Browser, expect

from tests.api.world import PASSWORD, World
from tests.browser.conftest import WorldFactory, sign_in
from tests.consult.samples import recording_mp4
from tests.consult.test_consult_record import upload_recording
from tests.consult.wire import audit_of


async def test_an_all_party_state_needs_the_pharmacist_s_consent_too(world: World, tmp_path: Path) -> None:
    svc = world.services
    await svc.directory.create_site(None, "IL-1", "Cairo Drug", "IL", requires_pv1=False)
    await svc.directory.create_user(None, "tech_il1", "tech_il1", "technician", PASSWORD, site_code="IL-1")
    world.tokens["tech_il1"] = await svc.auth.issue_device_token(None, "tech_il1", "IL-1 counter")
    await svc.directory.add_license(None, "nd_rph", "IL", "IL-051", dt.date.today() + dt.timedelta(days=90))
    site, rph = await world.device("tech_il1"), await world.login("nd_rph")
    c = await site.json("POST", "/api/v1/consultations", 201, json={"recording_consent": True})
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await site.json("POST", f"/api/v1/consultations/{c['id']}/consent")
    data = recording_mp4(tmp_path / "call.mp4").read_bytes()

    refused = await upload_recording(site, c["id"], data)
    body = await refused.json()
    assert refused.status == 409 and body["error"] == "no_consent", body
    assert "every party's consent" in body["message"] and "720 ILCS 5/14-2" in body["message"]
    assert body["detail"]["missing"] == "pharmacist"

    mine = await rph.json("POST", f"/api/v1/consultations/{c['id']}/consent")
    assert mine["pharmacist_consent_at"] is not None and mine["recording_consent_at"] is not None
    done = await upload_recording(site, c["id"], data)
    assert done.status == 204, await done.text()
    consents = [d for action, d in await audit_of(world, c["id"]) if action.endswith("recording_consent")]
    assert [d["party"] for d in consents] == ["patient", "pharmacist"]


async def test_a_one_party_state_takes_the_patient_s_consent_alone(world: World, tmp_path: Path) -> None:
    site, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    c = await site.json("POST", "/api/v1/consultations", 201, json={"recording_consent": True})
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await site.json("POST", f"/api/v1/consultations/{c['id']}/consent")
    done = await upload_recording(site, c["id"], recording_mp4(tmp_path / "call.mp4").read_bytes())
    assert done.status == 204, await done.text()


async def test_the_pharmacist_gives_their_consent_from_the_call_panel(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    site = await world.device("tech_nd1")
    c = await site.json("POST", "/api/v1/consultations", 201, json={"recording_consent": True})

    await page.locator(f'.consult-request[data-id="{c["id"]}"] .consult-accept').click()
    button = page.locator("#consult-consent")
    await expect(button).to_be_visible()
    await button.click()
    await expect(button).to_have_text("Consent given")
    await expect(button).to_be_disabled()
    record = await site.json("GET", f"/api/v1/consultations/{c['id']}")
    assert record["pharmacist_consent_at"] is not None and record["recording_consent_at"] is None
    await page.click("#consult-hangup")
    await expect(page.locator("#consult-panel")).to_have_attribute("data-state", "ended")
