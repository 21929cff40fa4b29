"""The console's identity in Chromium: a second factor enrolled and used to sign in (an authenticator
app whose codes pyotp computes, and a security key played by Chromium's virtual authenticator), the
prompt before a decision that needs a step-up, the idle lock, and the administrator's accounts page."""

from __future__ import annotations

import asyncio
from typing import Any

import pyotp
from playwright.async_api import Browser, Page, expect

from tests.api.test_second_factor import next_code
from tests.api.world import PASSWORD, World
from tests.browser.conftest import (
    LAPTOP,
    WorldFactory,
    base_url,
    look_at_every_photo,
    sign_in,
    submit,
    submit_clean,
)


async def _password_step(browser: Browser, url: str, username: str) -> Page:
    """Opens the console at `url` and gives the password; the page waits at whatever comes next."""
    context = await browser.new_context(viewport=LAPTOP)
    page = await context.new_page()
    await page.goto(url)
    await page.fill("#login-username", username)
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    return page


async def _save_recovery_codes(page: Page) -> list[str]:
    codes = page.locator("#recovery-codes li")
    await expect(codes).to_have_count(10)
    shown = [text.strip() for text in await codes.all_inner_texts()]
    await page.click("#recovery-saved")
    await expect(page.locator(".identity-enrol")).to_have_count(0)
    return shown


async def _sign_out(page: Page) -> None:
    await page.click("#sign-out")
    await expect(page.locator("#login-view")).to_be_visible()


async def _fill_state(world: World, fill_id: str) -> str:
    return str((await (await world.login("admin")).json("GET", f"/api/v1/fills/{fill_id}"))["state"])


async def test_an_authenticator_app_is_enrolled_from_its_qr_code_and_asked_for_at_sign_in(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    await page.click("#security-button")
    await expect(page.locator(".identity-manage")).to_contain_text("No second factor yet.")
    # Recovery codes come with a factor: none to count before one.
    await expect(page.locator(".identity-manage")).not_to_contain_text("Recovery codes")
    await page.click("#factor-add")
    await page.click("#enrol-app")
    qr = page.locator(".identity-enrol img.qr")
    await expect(qr).to_be_visible()
    assert await qr.evaluate("img => img.complete && img.naturalWidth > 0")
    app = pyotp.TOTP((await page.locator("#enrol-secret").inner_text()).strip())
    await page.fill("#enrol-code", "000000")
    await page.click("#enrol-confirm")
    await expect(page.locator(".identity-enrol .form-error")).to_contain_text("does not match")
    await page.fill("#enrol-code", app.now())
    await page.click("#enrol-confirm")
    codes = await _save_recovery_codes(page)
    assert len(set(codes)) == 10
    await _sign_out(page)

    await page.fill("#login-username", "nd_rph")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    second = page.locator(".identity-sign-in")
    await expect(second).to_contain_text("Code from your authenticator app")
    await expect(page.locator("#queue-view")).to_be_hidden()
    await second.locator("#proof-totp").fill(next_code(app))
    await second.locator("#proof-submit").click()
    await expect(page.locator("#queue-view")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")

    # A recovery code is the way in without the phone, once.
    other = await _password_step(browser, base_url(world), "nd_rph")
    await other.locator("#proof-recovery_code").fill(codes[0])
    await other.locator("#proof-submit").click()
    await expect(other.locator("#queue-view")).to_be_visible()
    await other.click("#security-button")
    await expect(other.locator(".identity-manage")).to_contain_text("Recovery codes left: 9")


async def _virtual_authenticator(page: Page) -> Any:
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("WebAuthn.enable")
    await cdp.send(
        "WebAuthn.addVirtualAuthenticator",
        {
            "options": {
                "protocol": "ctap2",
                "transport": "internal",
                "hasResidentKey": True,
                "hasUserVerification": True,
                "isUserVerified": True,
            }
        },
    )
    return cdp


async def test_a_security_key_is_enrolled_and_signs_in(browser: Browser, make_world: WorldFactory) -> None:
    world = await make_world()
    # A security key is bound to the console's host name: the page is on localhost.
    url = base_url(world).replace("127.0.0.1", "localhost")
    c = await sign_in(browser, url, "both_rph")
    page = c.page
    await _virtual_authenticator(page)
    await page.click("#security-button")
    await page.click("#factor-add")
    await page.click("#enrol-key")
    await _save_recovery_codes(page)
    await page.click("#security-button")
    await expect(page.locator("#factor-list")).to_contain_text("Security key (security key)")
    await page.keyboard.press("Escape")
    await _sign_out(page)

    await page.fill("#login-username", "both_rph")
    await page.fill("#login-password", PASSWORD)
    await page.click("#login-submit")
    await page.locator(".identity-sign-in #proof-key").click()
    await expect(page.locator("#queue-view")).to_be_visible()
    session = await page.evaluate("fetch('/api/v1/session').then(r => r.json())")
    assert session["stage"] == "ready" and session["second_factors"] == ["webauthn", "recovery_code"]


async def test_approving_over_a_product_check_flag_prompts_for_the_password_first(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.3)
    fill = await submit(world, "tech_nd1", "RX1", counted_quantity=60)  # no barcode scanned
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    await c.row(fill["id"]).click()
    await look_at_every_photo(page)
    await page.keyboard.press("a")
    await expect(page.locator("#v-acks")).to_be_visible()
    await page.keyboard.press("1")
    await page.keyboard.press("Enter")
    prompt = page.locator(".identity-step-up")
    await expect(prompt).to_contain_text("you override a product-check flag")
    assert await _fill_state(world, fill["id"]) == "in_review"
    await prompt.locator("#proof-password").fill("not the password")
    await prompt.locator("#proof-submit").click()
    await expect(prompt.locator(".form-error")).to_contain_text("password was wrong")
    await prompt.locator("#proof-password").fill(PASSWORD)
    await prompt.locator("#proof-submit").click()
    await expect(prompt).to_have_count(0)
    async with asyncio.timeout(8):
        while await _fill_state(world, fill["id"]) != "approved":
            await asyncio.sleep(0.1)


async def test_the_idle_console_hides_the_fill_releases_it_and_unlocks_with_the_password(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(idle_lock_seconds=3)
    fill = await submit_clean(world, "tech_nd1", "RX1")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    await c.row(fill["id"]).click()
    await expect(page.locator("#v-rx")).to_contain_text("Jane Q. Patient")
    unlock = page.locator(".identity-unlock")
    await expect(unlock).to_contain_text("Console locked", timeout=10_000)
    await expect(page.locator("main")).to_be_hidden()
    async with asyncio.timeout(5):
        while await _fill_state(world, fill["id"]) != "queued":
            await asyncio.sleep(0.1)
    # The server refuses the idle session too, until it is unlocked.
    status = await page.evaluate("fetch('/api/v1/queue').then(r => r.status)")
    assert status == 423
    await unlock.locator("#proof-password").fill(PASSWORD)
    await unlock.locator("#proof-submit").click()
    await expect(page.locator("#queue-view")).to_be_visible()
    await expect(c.row(fill["id"])).to_be_visible()

    # Locked again and the page reloaded: it asks before it fetches anything of a patient.
    await expect(unlock).to_be_visible(timeout=10_000)
    await page.reload()
    await expect(unlock).to_be_visible()
    await expect(page.locator("#queue-view")).to_be_hidden()
    await unlock.locator("#proof-password").fill(PASSWORD)
    await unlock.locator("#proof-submit").click()
    await expect(c.row(fill["id"])).to_be_visible()


async def test_the_accounts_page_deactivates_suspends_and_revokes(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    rph = await sign_in(browser, world, "nd_rph")
    admin = await sign_in(browser, world, "admin")
    page = admin.page
    await page.click("#nav-admin")
    users = page.locator("#admin-users")
    await expect(users).to_contain_text("nd_rph")
    # Each row's buttons sit in its own cell, the cell as tall as the row (a flex cell fell out of it).
    for table in ("#admin-users", "#admin-sites"):
        row = page.locator(f"{table} tbody tr").first
        row_box, cell_box = await row.bounding_box(), await row.locator(".admin-actions").bounding_box()
        assert row_box and cell_box and abs(cell_box["height"] - row_box["height"]) < 1, (row_box, cell_box)
    await users.locator('tr[data-username="nd_rph"] [data-action="deactivate"]').click()
    await expect(users.locator('tr[data-username="nd_rph"]')).to_contain_text("deactivated")
    # The pharmacist's console loses its session at once: its live connection is closed.
    await expect(rph.page.locator("#login-view")).to_be_visible()

    await page.locator('#admin-sites tr[data-site="ND-2"] [data-action="suspend"]').click()
    await expect(page.locator('#admin-sites tr[data-site="ND-2"]')).to_contain_text("suspended")
    token = page.locator("#admin-tokens tbody tr").first
    await token.locator('[data-action="revoke"]').click()
    await expect(page.locator("#admin-tokens tbody tr").first).to_contain_text("revoked")
    listed = await (await world.login("admin")).json("GET", "/api/v1/tokens")
    assert listed["tokens"][0]["revoked_at"] is not None
    for text in await page.locator("#admin-tokens").all_inner_texts():
        assert all(secret not in text for secret in world.tokens.values())


async def test_when_policy_requires_it_the_console_enrols_before_the_queue(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(second_factor_required=True)
    page = await _password_step(browser, base_url(world), "nd_rph")
    enrol = page.locator(".identity-enrol")
    await expect(enrol).to_contain_text("requires a second factor")
    await expect(page.locator("#queue-view")).to_be_hidden()
    await page.keyboard.press("Escape")  # it cannot be put off: only signing out leaves it
    await expect(enrol).to_be_visible()
    await expect(page.locator("#enrol-later")).to_have_text("Sign out")
    await page.click("#enrol-app")
    app = pyotp.TOTP((await page.locator("#enrol-secret").inner_text()).strip())
    await page.fill("#enrol-code", app.now())
    await page.click("#enrol-confirm")
    await _save_recovery_codes(page)
    await expect(page.locator("#queue-view")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
