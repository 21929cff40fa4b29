"""Data-entry verification (PV1) in Chromium: an e-prescription whose entered strength differs from the
message is shown with the difference highlighted and returned; a paper one is verified beside the
image of its original, zoomed; a decision that needs a proof of identity asks for it first."""

from __future__ import annotations

import datetime as dt
import io
import json
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Browser, Page, Request, expect
from sqlalchemy import select, update

from server.db.models import ConsoleSession, Prescription, PrescriptionVerification, User
from tests.api.test_fhir_intake import _integration, _send, contained_request
from tests.api.test_prescription_originals import fax_tiff, upload_original
from tests.api.world import PASSWORD, World, rx_body
from tests.browser.conftest import SiteSocket, WorldFactory, sign_in, until
from tests.browser.test_safety import shot

pytestmark = pytest.mark.browser


def paper_original() -> bytes:
    """A phone photo of a handwritten prescription, as a JPEG."""
    im = Image.new("RGB", (1200, 1600), (250, 248, 240))
    draw = ImageDraw.Draw(im)
    draw.rectangle((60, 60, 1140, 1540), outline=(40, 40, 90), width=6)
    for i, line in enumerate(
        ["Dr. Ruth Prescriber", "Jane Q. Patient 02/29/1948", "Metformin HCl 500 mg", "#60", "1 tab PO BID"]
    ):
        draw.text((120, 160 + 120 * i), line, fill=(20, 20, 60))
    out = io.BytesIO()
    im.save(out, "JPEG", quality=88)
    return out.getvalue()


async def test_a_pharmacist_returns_a_changed_e_prescription_and_verifies_a_paper_one(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(pv1=True)
    system = await _integration(world)
    await _send(system, "/api/v1/fhir/MedicationRequest", contained_request("FH100"), 201)
    tech = await world.device("tech_nd1")
    [erx] = (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"]
    # The entry as the site has it: the strength typed over.
    await tech.json(
        "PATCH", f"/api/v1/prescriptions/{erx['id']}", json={"version": erx["version"], "strength": "850 mg"}
    )
    paper = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("P200"))
    assert (await upload_original(tech, paper["id"], paper_original())).status == 204
    assert (await upload_original(tech, paper["id"], fax_tiff(1), "back.tif")).status == 204
    site = await SiteSocket.open(world, "tech_nd1")

    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    await page.keyboard.press("e")
    await expect(page.locator("#pv1-view")).to_be_visible()
    await expect(page.locator("#pv1-count")).to_have_text("2")
    rows = page.locator("#pv1-body tr")
    await expect(rows).to_have_count(2)

    # The e-prescription: one difference, the strength, highlighted beside what the message says.
    await page.locator(f'#pv1-body tr[data-id="{erx["id"]}"]').click()
    await expect(page.locator(".pv1-diff-count")).to_contain_text("1 field differs from the message")
    strength = page.locator('.pv1-compare tr[data-field="strength"]')
    await expect(strength).to_have_class("pv1-diff")
    await expect(strength.locator(".pv1-entered")).to_have_text("850 mg")
    await expect(strength.locator(".pv1-said")).to_have_text("500 mg")
    await expect(page.locator(".pv1-compare tr.pv1-diff")).to_have_count(1)
    # The entered NDC in the 5-4-2 form the console reads NDCs in, not as stored (11 digits).
    ndc = page.locator('.pv1-compare tr[data-field="expected_ndc"]')
    await expect(ndc.locator(".pv1-entered")).to_have_text("00378-1805-01")
    highlighted = await strength.locator(".pv1-entered").evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    plain = await page.locator('.pv1-compare tr[data-field="drug"] .pv1-entered').evaluate(
        "el => getComputedStyle(el).backgroundColor"
    )
    assert highlighted != plain
    # A difference is not verified by reflex: A does nothing until it is ticked as checked (C).
    await expect(page.locator("#pv1-verify")).to_be_disabled()
    await expect(page.locator("#pv1-pending")).to_have_text(
        "Before verifying: confirm the difference from the message (Strength)."
    )
    await page.keyboard.press("a")
    await expect(page.locator(".pv1-banner")).to_contain_text("Not verified yet: confirm the difference")
    await page.keyboard.press("c")
    await expect(strength.locator(".pv1-confirm input")).to_be_checked()
    await expect(page.locator("#pv1-verify")).to_be_enabled()
    await expect(page.locator("#pv1-pending")).to_have_text("")

    await page.keyboard.press("r")
    await expect(page.locator("#pv1-reasons")).to_be_visible()
    await page.keyboard.press("3")  # wrong_strength
    await page.fill("#pv1-note", "The prescriber wrote 500 mg")
    await page.keyboard.press("Control+Enter")
    await expect(page.locator("#pv1-review")).to_be_hidden()
    returned = await site.wait_for(lambda m: m.get("type") == "prescription.returned")
    assert returned["prescription_id"] == erx["id"] and returned["reason_codes"] == ["wrong_strength"]

    # The paper one: its original beside the entry, zoomed in before verifying with A.
    await expect(rows).to_have_count(1)
    await page.keyboard.press("Enter")
    image = page.locator("#pv1-page")
    await expect(image).to_be_visible()
    await until(page, "() => document.querySelector('#pv1-page')?.naturalWidth > 0")
    fit_width = await image.evaluate("el => el.getBoundingClientRect().width")
    await page.keyboard.press("+")
    await page.keyboard.press("+")
    await expect(page.locator("#pv1-zoom")).to_have_text("2\N{MULTIPLICATION SIGN}")
    await until(page, "() => document.querySelector('#pv1-page')?.naturalWidth > 0")
    assert (
        await page.locator("#pv1-page").evaluate("el => el.getBoundingClientRect().width") > 1.5 * fit_width
    )
    await expect(page.locator("#pv1-review .verify-title")).to_contain_text("Rx P200")
    await expect(page.locator(".pv1-ref")).to_contain_text("No drug reference is loaded")
    # Its second page (the back, sent as a fax) is looked at before it can be verified.
    await expect(page.locator("#pv1-pending")).to_have_text(
        "Before verifying: look at page 2 of the original (PgDn)."
    )
    await page.keyboard.press("PageDown")
    await expect(page.locator(".pv1-original-tools")).to_contain_text("page 2 of 2")
    await page.keyboard.press("a")
    await expect(page.locator("#pv1-empty")).to_be_visible()
    await site.wait_for(lambda m: m.get("type") == "prescription.verified")

    async with world.services.db.read() as s:
        states = dict(
            (await s.execute(select(Prescription.rx_number, Prescription.verification_state))).all()
        )
        licences = (await s.execute(select(PrescriptionVerification.license_number))).scalars().all()
    assert states == {"FH100": "returned", "P200": "verified"}
    assert licences == ["ND-nd_rph", "ND-nd_rph"]
    assert not [line for line in console.logs if "pageerror" in line], console.logs


async def test_a_correction_made_while_the_pharmacist_has_it_open_is_reloaded_before_verifying(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(pv1=True)
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("P300"))
    assert (await upload_original(tech, rx["id"], paper_original())).status == 204
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    await page.keyboard.press("e")
    await page.locator(f'#pv1-body tr[data-id="{rx["id"]}"]').click()
    await expect(page.locator("#pv1-review .verify-title")).to_contain_text("version 1")

    await tech.json("PATCH", f"/api/v1/prescriptions/{rx['id']}", json={"version": 1, "days_supply": 7})
    banner = page.locator(".pv1-banner")
    await expect(banner).to_contain_text("The site corrected this prescription while you had it open")
    await expect(page.locator("#pv1-verify")).to_be_disabled()
    await expect(page.locator("#pv1-pending")).to_have_text(
        "Before verifying: reload the corrected prescription."
    )
    await page.keyboard.press("l")
    await expect(page.locator("#pv1-review .verify-title")).to_contain_text("version 2")
    await expect(page.locator('.pv1-compare tr[data-field="days_supply"] .pv1-entered')).to_have_text("7")
    await page.keyboard.press("a")
    await expect(page.locator("#pv1-empty")).to_be_visible()
    async with world.services.db.read() as s:
        state = (await s.execute(select(Prescription.verification_state))).scalar_one()
    assert state == "verified"


def verifications_sent(page: Page) -> list[dict[str, Any]]:
    """Every PV1 decision the page sends, as the JSON body it sent."""
    sent: list[dict[str, Any]] = []

    def seen(r: Request) -> None:
        if r.url.endswith("/verification") and r.method == "POST":
            sent.append(json.loads(r.post_data or "{}"))

    page.on("request", seen)
    return sent


async def last_proved_long_ago(world: World, username: str) -> None:
    """The user's console sessions last proved who they are longer ago than a decision allows."""
    ago = world.clock() - dt.timedelta(seconds=world.services.config.step_up_after_seconds + 60)
    async with world.services.db.write() as s:
        user_id = await s.scalar(select(User.id).where(User.username == username))
        await s.execute(update(ConsoleSession).where(ConsoleSession.user_id == user_id).values(proved_at=ago))


async def pv1_state(world: World, rx_id: int) -> tuple[str, str | None]:
    """The prescription's PV1 state and who holds it."""
    async with world.services.db.read() as s:
        row = (
            await s.execute(
                select(Prescription.verification_state, User.username)
                .outerjoin(User, User.id == Prescription.claimed_by)
                .where(Prescription.id == rx_id)
            )
        ).one()
    return row.verification_state, row.username


async def test_a_verification_that_needs_a_proof_asks_first_naming_the_prescription(
    browser: Browser, make_world: WorldFactory
) -> None:
    """Long after the session's last proof, Verify asks who verifies before anything is sent, over the
    prescription it names; cancelled, nothing is sent and the prescription stays open and the
    pharmacist's; proved, the same verification is sent and recorded."""
    world = await make_world(pv1=True, step_up_after_seconds=1800, idle_lock_seconds=3600)
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("P400"))  # entered at the counter
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    sent = verifications_sent(page)
    await last_proved_long_ago(world, "nd_rph")
    await page.keyboard.press("e")
    await page.locator(f'#pv1-body tr[data-id="{rx["id"]}"]').click()
    await expect(page.locator("#pv1-review .verify-title")).to_contain_text("Rx P400")

    await page.keyboard.press("a")
    prompt = page.locator(".identity-step-up")
    await expect(prompt.locator(".identity-intro")).to_have_text(
        "Verify Rx P400 (Metformin HCl 500 mg) for J. P. at ND-1 — confirm it is you: "
        "your last sign-in or confirmation was a while ago."
    )
    await shot(page, "tp-pv1-step-up-first")
    assert sent == []
    assert await pv1_state(world, rx["id"]) == ("in_review", "nd_rph")

    await prompt.locator("button", has_text="Cancel").click()
    await expect(prompt).to_have_count(0)
    await expect(page.locator(".pv1-banner")).to_contain_text(
        "Verify Rx P400 (Metformin HCl 500 mg) for J. P. at ND-1: not sent."
    )
    await expect(page.locator("#pv1-review")).to_be_visible()
    await expect(page.locator("#pv1-review .lease")).to_have_text("Claimed by you")
    assert sent == []
    assert await pv1_state(world, rx["id"]) == ("in_review", "nd_rph")

    await page.keyboard.press("a")
    await prompt.locator("#proof-password").fill(PASSWORD)
    await prompt.locator("#proof-submit").click()
    await expect(page.locator("#pv1-empty")).to_be_visible()
    assert len(sent) == 1 and sent[0]["outcome"] == "verify"
    assert await pv1_state(world, rx["id"]) == ("verified", None)
    assert not [line for line in console.logs if "pageerror" in line], console.logs


async def test_a_proof_gone_stale_after_the_prescription_was_read_is_asked_for_when_the_server_refuses(
    browser: Browser, make_world: WorldFactory
) -> None:
    """The record said no proof was needed, but the server wants one when the return reaches it: the
    prompt names the prescription, and once proved the same return goes again."""
    world = await make_world(pv1=True, step_up_after_seconds=1800, idle_lock_seconds=3600)
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("P500"))
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    sent = verifications_sent(page)
    await page.keyboard.press("e")
    await page.locator(f'#pv1-body tr[data-id="{rx["id"]}"]').click()
    await expect(page.locator("#pv1-review .verify-title")).to_contain_text("Rx P500")
    await last_proved_long_ago(world, "nd_rph")

    await page.keyboard.press("r")
    await page.keyboard.press("2")  # wrong_drug
    await page.keyboard.press("Control+Enter")
    prompt = page.locator(".identity-step-up")
    await expect(prompt.locator(".identity-intro")).to_have_text(
        "Return Rx P500 (Metformin HCl 500 mg) for J. P. at ND-1 — confirm it is you: "
        "your last sign-in or confirmation was a while ago."
    )
    assert len(sent) == 1 and await pv1_state(world, rx["id"]) == ("in_review", "nd_rph")
    await prompt.locator("#proof-password").fill(PASSWORD)
    await prompt.locator("#proof-submit").click()
    await expect(page.locator("#pv1-empty")).to_be_visible()
    assert len(sent) == 2 and sent[1] == sent[0]
    assert await pv1_state(world, rx["id"]) == ("returned", None)
