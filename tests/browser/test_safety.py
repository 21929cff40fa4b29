"""Pharmacist safety in the console (issue 24): nothing approved unseen, every flag acknowledged, history,
undo, and a console that works on a 1024 x 768 screen."""

from __future__ import annotations

import asyncio
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Request, expect
from sqlalchemy import select, update

from demo import photos
from server.db.models import AuditEvent, ConsoleSession, Consultation, Decision, Fill, User
from tests.api.world import PASSWORD, World, approval, new_fill_id, photo, queued_fill, rx_body, upload
from tests.browser.conftest import (
    MATCHING_SCAN,
    Console,
    SiteSocket,
    WorldFactory,
    decided_at_site,
    look_at_every_photo,
    reported,
    sign_in,
    submit,
    submit_clean,
    until,
)

pytestmark = pytest.mark.browser

# A bottle of another product (NDC 0093-1048-01): the product check says mismatch.
OTHER_PRODUCT = f"(01){photos.gtin_for_ndc10('0093-1048-01')}(17)301231(10)LOT9"
DAY = 86400
UNSEEN = re.compile(r"\bis-unseen\b")
IPAD = {"width": 1024, "height": 768}
CONTRAST = (Path(__file__).parent / "contrast.js").read_text()


async def shot(page: Page, name: str) -> None:
    """A picture of the page to look at, when TP_SHOTS_DIR names a folder for them."""
    folder = os.environ.get("TP_SHOTS_DIR")
    if folder:
        await page.screenshot(path=str(Path(folder) / f"{name}.png"))


def decisions_sent(page: Page) -> list[dict[str, Any]]:
    """Every decision the page sends, as the JSON body it sent."""
    sent: list[dict[str, Any]] = []

    def seen(r: Request) -> None:
        if r.url.endswith("/decision") and r.method == "POST":
            sent.append(json.loads(r.post_data or "{}"))

    page.on("request", seen)
    return sent


async def fill_in_order(
    world: World,
    tech: str,
    rx_number: str,
    kinds: list[str],
    *,
    video: Path | None = None,
    photos_of: dict[str, bytes] | None = None,
    **rx: Any,
) -> str:
    """A fill whose photos are uploaded in the given order (the server lists them as they came): each
    its own, or the one `photos_of` gives for its kind."""
    user = await world.device(tech)
    made = await user.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, **rx))
    fill_id = new_fill_id()
    body = {"id": fill_id, "prescription_id": made["id"], "barcodes": [MATCHING_SCAN], "counted_quantity": 60}
    await user.json("POST", "/api/v1/fills", 201, json=body)
    if video is not None:
        resp = await upload(user, fill_id, "count_video", video.read_bytes(), filename=video.name)
        assert resp.status == 204, await resp.text()
    for i, kind in enumerate(kinds):
        data = (photos_of or {}).get(kind) or photo(kind, 70 + i)
        assert (await upload(user, fill_id, kind, data)).status == 204
    await user.json("POST", f"/api/v1/fills/{fill_id}/submit")
    return fill_id


async def claim_of(world: World, fill_id: str) -> tuple[str, str | None, int]:
    """The fill's state, who holds its claim, and how many decisions it has."""
    async with world.services.db.read() as s:
        fill = (await s.execute(select(Fill).where(Fill.id == fill_id))).scalar_one()
        holder = (
            (await s.execute(select(User.username).where(User.id == fill.claimed_by))).scalar_one_or_none()
            if fill.claimed_by
            else None
        )
        count = len((await s.execute(select(Decision.id).where(Decision.fill_id == fill_id))).all())
    return fill.state, holder, count


async def decided(world: World, fill_id: str) -> dict[str, Any]:
    """The fill once its decision is recorded: a held decision is sent when its window closes, and its
    answer may still be on its way when the page shows it sent."""
    async with asyncio.timeout(10):
        while (await claim_of(world, fill_id))[2] == 0:
            await asyncio.sleep(0.1)
    return dict(await (await world.login("nd_rph")).json("GET", f"/api/v1/fills/{fill_id}"))


async def open_fill(c: Console, fill_id: str) -> None:
    await c.row(fill_id).click()
    await expect(c.page.locator("#v-lease")).to_contain_text("Claimed by you")
    await expect(c.page.locator("body")).to_have_attribute("data-shown-fill", fill_id)


async def test_approve_is_refused_until_every_photo_and_the_video_were_shown(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world(decision_undo_seconds=0.5)
    video = photos.count_video(tmp_path / "count.webm", container="webm")
    # Listed by the server in upload order: video first, then the photos backwards.
    fill_id = await fill_in_order(
        world, "tech_nd1", "RX1", ["vial_label", "pills", "stock_bottle"], video=video
    )
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, fill_id)

    # The strip has the same order for every fill: stock bottle, pills, vial, then the video.
    labels = await page.locator("#v-strip .thumb .thumb-label").all_text_contents()
    assert labels == ["Stock bottle", "Counted pills", "Labelled vial", "Count video"]
    approve = page.locator("#v-approve")
    await expect(approve).to_be_disabled()
    await expect(page.locator("#v-status")).to_contain_text(
        "Not yet seen: Counted pills, Labelled vial, Count video"
    )
    await page.keyboard.press("a")
    await expect(page.locator("#v-banner")).to_contain_text("Not every view was shown yet")

    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#v-status")).to_contain_text("Not yet seen: Labelled vial, Count video")
    await expect(page.locator("#v-strip .thumb").nth(1)).not_to_have_class(UNSEEN)
    await page.keyboard.press("+")  # zoom into the pills: recorded with the view
    await page.keyboard.press("+")
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#v-status")).to_contain_text("Not yet seen: Count video (0 % played)")
    await page.keyboard.press("ArrowRight")
    await expect(approve).to_be_disabled()
    # Scrubbing through the 2 s video a second at a time counts as seeing it.
    await until(page, "() => document.querySelector('#v-stage video').readyState >= 1")
    await page.keyboard.press("]")
    await until(page, "() => document.querySelector('#v-stage video').currentTime >= 0.99")
    await expect(approve).to_be_disabled()
    await page.keyboard.press("]")
    await expect(approve).to_be_enabled()
    await expect(page.locator("#v-status")).not_to_contain_text("Not yet seen")
    assert sent == []

    await page.keyboard.press("a")
    await expect(
        page.locator("#queue-view")
    ).to_be_visible()  # nothing else waiting: at once, not after the send
    await until(page, "() => document.querySelector('#q-undo').hidden", timeout=10)
    await reported(sent)
    assert len(sent) == 1 and sent[0]["outcome"] == "approve"
    detail = await (await world.login("nd_rph")).json("GET", f"/api/v1/fills/{fill_id}")
    ids = {m["kind"]: m["id"] for m in detail["media"]}
    seen = {v["media_id"]: v for v in sent[0]["views_seen"]}
    assert set(seen) == set(ids.values())
    assert all(v["seconds"] > 0 for v in seen.values())
    assert seen[ids["pills"]]["max_zoom"] > 1.4 and seen[ids["stock_bottle"]]["max_zoom"] == 1
    assert seen[ids["count_video"]]["played_fraction"] >= 0.9
    assert (await decided(world, fill_id))["state"] == "approved"


async def test_undo_within_the_window_sends_nothing_and_the_fill_stays_claimed(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()  # the default window: 4 s
    first = await submit_clean(world, "tech_nd1", "RX1", priority="waiting")
    second = await submit_clean(world, "tech_nd1", "RX2")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, first["id"])
    await look_at_every_photo(page)
    await page.keyboard.press("a")

    # The next fill opens at once; the decision waits in the undo window, the first fill still ours.
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", second["id"])
    undo = page.locator("#v-undo")
    await expect(undo).to_be_visible()
    await expect(undo).to_contain_text("Approved Rx RX1")
    assert await claim_of(world, first["id"]) == ("in_review", "nd_rph", 0)
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
    assert await claim_of(world, second["id"]) == ("in_review", "nd_rph", 0)

    await page.keyboard.press("u")
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", first["id"])
    await expect(undo).to_be_hidden()
    await expect(page.locator("#v-approve")).to_be_enabled()  # what was seen stays seen
    await expect(c.row(second["id"])).to_contain_text("Waiting")  # the fill opened next went back
    # Well past the window: nothing was sent, and the fill is still claimed by this pharmacist.
    await page.wait_for_timeout(4500)
    assert sent == []
    assert await claim_of(world, first["id"]) == ("in_review", "nd_rph", 0)
    assert (await claim_of(world, second["id"]))[:2] == ("queued", None)

    # Ctrl+Z undoes too; then the decision is let through and sent once.
    await page.keyboard.press("a")
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", second["id"])
    await page.keyboard.press("Control+z")
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", first["id"])
    site = await SiteSocket.open(world, "tech_nd1")
    beats: list[str] = []
    page.on("request", lambda r: beats.append(r.url) if r.url.endswith(f"{first['id']}/heartbeat") else None)
    await page.keyboard.press("a")
    await decided_at_site(site, c, first["id"], held=4)
    assert beats, "the claim of a held decision is kept alive"
    await reported(sent)
    assert len(sent) == 1
    assert await claim_of(world, first["id"]) == ("approved", None, 1)


async def test_a_held_decision_is_sent_when_the_tab_closes_or_the_pharmacist_signs_out(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    first = await submit_clean(world, "tech_nd1", "RX1")
    second = await submit_clean(world, "tech_nd1", "RX2")
    site = await SiteSocket.open(world, "tech_nd1")
    c = await sign_in(browser, world, "nd_rph")
    await open_fill(c, first["id"])
    await look_at_every_photo(c.page)
    await c.page.keyboard.press("a")
    await expect(c.page.locator("#v-undo")).to_be_visible()
    await c.page.close(run_before_unload=True)
    await decided_at_site(site, c, first["id"])
    assert (await claim_of(world, first["id"]))[0] == "approved"

    c = await sign_in(browser, world, "nd_rph")
    await open_fill(c, second["id"])
    await c.page.keyboard.press("r")
    await c.page.keyboard.press("3")
    await c.page.keyboard.press("Control+Enter")
    # Nothing else waits: the queue shows, with Undo there too, which reopens the fill.
    await expect(c.page.locator("#q-undo")).to_be_visible()
    await c.page.keyboard.press("u")
    await expect(c.page.locator("#verify-view")).to_be_visible()
    await expect(c.page.locator("body")).to_have_attribute("data-shown-fill", second["id"])
    assert await claim_of(world, second["id"]) == ("in_review", "nd_rph", 0)
    await c.page.keyboard.press("r")
    await c.page.keyboard.press("3")
    await c.page.keyboard.press("Control+Enter")
    await expect(c.page.locator("#q-undo")).to_be_visible()
    await c.page.click("#sign-out")
    await expect(c.page.locator("#login-view")).to_be_visible()
    assert (await claim_of(world, second["id"]))[:3] == ("rejected", None, 1)


async def test_enter_in_the_rejection_note_is_a_new_line_and_ctrl_enter_sends(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.5)
    fill = await submit(world, "tech_nd1", "RX1")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, fill["id"])
    await page.keyboard.press("r")
    confirm = page.locator("#v-reason-confirm")
    await expect(confirm).to_contain_text("Ctrl+Enter")
    await page.keyboard.press("9")  # "other": the note gets the focus
    await expect(page.locator("#v-note")).to_be_focused()
    await page.keyboard.type("Counted 58.")
    await page.keyboard.press("Enter")
    await page.keyboard.type("The label says 60.")
    await expect(page.locator("#v-note")).to_have_value("Counted 58.\nThe label says 60.")
    await expect(page.locator("#v-reasons")).to_be_visible()
    await page.keyboard.press("Control+Enter")
    await expect(page.locator("#queue-view")).to_be_visible()
    await until(page, "() => document.querySelector('#q-undo').hidden", timeout=10)
    await reported(sent)
    assert len(sent) == 1
    assert sent[0]["note"] == "Counted 58.\nThe label says 60." and sent[0]["reason_codes"] == ["other"]


async def test_a_login_lockout_says_when_to_try_again(browser: Browser, make_world: WorldFactory) -> None:
    world = await make_world(login_attempts=1)
    context = await browser.new_context(viewport=IPAD)
    page = await context.new_page()
    await page.goto(str(world.server.make_url("/")))
    error = page.locator("#login-error")
    for _ in range(4):
        await page.fill("#login-username", "nd_rph")
        await page.fill("#login-password", "wrong password")
        await page.click("#login-submit")
        await expect(error).to_be_visible()
        if "Try again in" in (await error.text_content() or ""):
            break
    await expect(error).to_contain_text("Too many sign-in attempts. Try again in")
    await expect(error).to_contain_text("(at ")


async def test_the_keyboard_help_lists_every_key(browser: Browser, make_world: WorldFactory) -> None:
    world = await make_world()
    c = await sign_in(browser, world, "nd_rph", viewport=IPAD)
    await c.page.keyboard.press("?")
    await expect(c.page.locator("#help")).to_be_visible()
    keys = set(await c.page.locator("#help kbd").all_text_contents())
    every = {
        "A",
        "R",
        "1",
        "9",
        "Ctrl",
        "Enter",
        "U",
        "Z",
        "H",
        "N",
        "Esc",
        "C",
        "L",
        "V",
        "T",
        "?",
        "←",
        "→",
        "↑",
        "↓",
    }
    every |= {"+", "\N{MINUS SIGN}", "0", "F", "Space", ",", ".", "[", "]", "J", "K", "Q", "D", "Shift"}
    assert every <= keys, every - keys
    text = await c.page.locator("#help").inner_text()
    for words in (
        "Undo the decision",
        "pills beside the last approved",
        "acknowledgement",
        "Send the rejection",
    ):
        assert words in text, words


async def _boxes_outside(page: Page, root: str) -> list[str]:
    """Visible elements under `root` whose box leaves the viewport, except content of scrolled panels."""
    result: list[str] = await page.evaluate(
        """(root) => {
          const W = window.innerWidth, H = window.innerHeight, out = [];
          for (const el of document.querySelectorAll(root + ' *')) {
            const r = el.getBoundingClientRect();
            if (!r.width || !r.height || el.closest('[hidden]')) continue;
            let p = el.parentElement, scrolled = false;
            for (; p && p !== document.body; p = p.parentElement) {
              const o = getComputedStyle(p);
              const scrolls = (v) => v === 'auto' || v === 'scroll';
              if (scrolls(o.overflowY) || scrolls(o.overflowX)) scrolled = true;
              if (p.classList.contains('stage')) scrolled = true;
            }
            if (scrolled) continue;
            if (r.left < -0.5 || r.top < -0.5 || r.right > W + 0.5 || r.bottom > H + 0.5) {
              const at = [r.left, r.top, r.right, r.bottom].map(Math.round).join(',');
              out.push(`${el.tagName}#${el.id}.${el.className} ${at}`);
            }
          }
          return out;
        }""",
        root,
    )
    return result


async def _buttons_reachable(page: Page, root: str) -> list[str]:
    """Visible buttons under `root` that are off screen or covered at their centre."""
    result: list[str] = await page.evaluate(
        """(root) => {
          const out = [];
          for (const b of document.querySelectorAll(root + ' button')) {
            const r = b.getBoundingClientRect();
            if (!r.width || b.closest('[hidden]')) continue;
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            const hit = document.elementFromPoint(x, y);
            if (!hit || !(hit === b || b.contains(hit))) {
              out.push(`${b.id || b.textContent.trim()} at ${Math.round(x)},${Math.round(y)}`);
            }
          }
          return out;
        }""",
        root,
    )
    return result


async def test_at_1024_by_768_nothing_is_clipped_and_every_button_is_reachable(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    fills = [
        await submit(
            world,
            "tech_nd1",
            f"RX{i}",
            priority="waiting" if i == 0 else "routine",
            barcodes=[OTHER_PRODUCT],
            counted_quantity=58,
            override_reason="Phone camera",
            overridden_checks=[{"kind": "pills", "check": "blurred"}],
        )
        for i in range(3)
    ]
    c = await sign_in(browser, world, "nd_rph", viewport=IPAD)
    page = c.page
    await expect(page.locator("#queue-body tr")).to_have_count(3)
    await expect(page.locator("#queue-table thead")).to_contain_text("US state")
    await expect(page.locator("#queue-table thead")).not_to_contain_text("StateAge")
    assert await _boxes_outside(page, ".topbar") == []
    assert await _boxes_outside(page, "#queue-view") == []
    assert await _buttons_reachable(page, "#queue-view") == []
    await shot(page, "tp-queue-1024")

    await open_fill(c, fills[0]["id"])
    assert await _boxes_outside(page, "#verify-view") == []
    assert await _buttons_reachable(page, "#verify-view") == []
    await page.keyboard.press("r")
    await expect(page.locator("#v-reasons")).to_be_visible()
    assert await _boxes_outside(page, "#verify-view") == []
    assert await _buttons_reachable(page, "#v-reasons") == []
    await page.keyboard.press("Escape")
    await look_at_every_photo(page)
    await page.keyboard.press("a")
    await expect(page.locator("#v-acks")).to_be_visible()
    assert await _boxes_outside(page, "#verify-view") == []
    assert await _buttons_reachable(page, "#v-acks") == []
    await shot(page, "tp-acks-1024")
    await page.keyboard.press("Escape")

    # The call panel, when shown, leaves the decision buttons free; Hang up keeps its contrast on hover.
    await page.evaluate("document.getElementById('consult-panel').hidden = false")
    assert await _buttons_reachable(page, ".decision-bar") == []
    assert await _buttons_reachable(page, "#consult-panel") == []
    await page.hover("#consult-hangup")
    low: list[str] = await page.evaluate(CONTRAST)
    assert not [f for f in low if "Hang up" in f], low
    await shot(page, "tp-verify-1024")


async def test_a_counselling_request_names_the_rx_number_and_can_be_declined_with_a_reason(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    fill = await submit(world, "tech_nd1", "RX-4411")
    c = await sign_in(browser, world, "nd_rph", viewport=IPAD)
    tech = await world.device("tech_nd1")
    made = await tech.json(
        "POST", "/api/v1/consultations", 201, json={"kind": "counsel", "fill_id": fill["id"]}
    )
    request = c.page.locator(f'.consult-request[data-id="{made["id"]}"]')
    await expect(request).to_contain_text("Hettinger Drug asks for patient counselling on Rx RX-4411")
    assert f"Rx {made['prescription_id']}" not in (await request.text_content() or "").replace("RX-4411", "")

    await request.locator(".consult-decline").click()
    await request.locator(".consult-decline-reason").select_option("other")
    await request.locator(".consult-decline-send").click()  # "other" without words: not sent
    await expect(request.locator(".consult-decline-note")).to_be_focused()
    await request.locator(".consult-decline-note").fill("On a call with another site for ten minutes.")
    await request.locator(".consult-decline-send").click()
    await expect(request).to_have_count(0)
    async with world.services.db.read() as s:
        ended = (await s.execute(select(Consultation).where(Consultation.id == made["id"]))).scalar_one()
    assert (ended.state, ended.end_reason, ended.outcome_note) == (
        "ended",
        "declined",
        "On a call with another site for ten minutes.",
    )


async def test_each_flag_demands_its_acknowledgement_and_the_a_key_alone_never_approves(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.5)
    rph = await world.login("nd_rph")
    earlier = await submit_clean(world, "tech_nd1", "RX1", rx={"refills_authorized": 2})
    claimed = (await rph.json("POST", f"/api/v1/fills/{earlier['id']}/claim"))["fill"]
    await rph.json("POST", f"/api/v1/fills/{earlier['id']}/decision", json=approval(claimed))
    world.clock.advance(3 * DAY)
    # The same prescription again three days later, another product's bottle, 58 counted of 60, and the
    # technician sent the blurry pills photo past the site's check.
    tech = await world.device("tech_nd1")
    rx_id = (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"][0]["id"]
    fill_id = new_fill_id()
    await tech.json(
        "POST",
        "/api/v1/fills",
        201,
        json={
            "id": fill_id,
            "prescription_id": rx_id,
            "barcodes": [OTHER_PRODUCT],
            "counted_quantity": 58,
            "override_reason": "Phone camera",
            "overridden_checks": [{"kind": "pills", "check": "blurred"}],
        },
    )
    for i, kind in enumerate(("stock_bottle", "pills", "vial_label")):
        assert (await upload(tech, fill_id, kind, photo(kind, 90 + i))).status == 204
    queued = await tech.json("POST", f"/api/v1/fills/{fill_id}/submit")
    codes = [f["code"] for f in queued["flags"]]
    assert codes == ["product_check", "quantity_mismatch", "override", "refill_too_soon"]

    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    row = c.row(fill_id)
    await expect(row.locator(".flags-cell .badge")).to_have_text(["Count 58/60", "Override", "Too soon"])
    await expect(row).to_contain_text("Mismatch")
    await open_fill(c, fill_id)
    flags = page.locator("#v-flags .flag-row")
    await expect(flags).to_have_count(4)
    await expect(flags.nth(1)).to_contain_text("Counted 58, prescribed 60")
    await expect(flags.nth(2)).to_contain_text("blurred on Counted pills")
    await expect(flags.nth(3)).to_contain_text("3.0 of 30 days")
    await expect(page.locator("#v-rx .override-checks")).to_have_text("Overridden: blurred on Counted pills")
    await look_at_every_photo(page)
    await shot(page, "tp-flags")

    # A opens the acknowledgement step; pressing it again there approves nothing.
    await page.keyboard.press("a")
    acks = page.locator("#v-acks")
    await expect(acks).to_be_visible()
    await page.keyboard.press("a")
    await page.keyboard.press("Enter")
    await expect(acks).to_be_visible()
    await expect(page.locator("#v-ack-confirm")).to_be_disabled()
    await expect(page.locator("#v-ack-error")).to_contain_text("Choose a reason for every flag (4 left)")
    rows = acks.locator(".ack-row")
    await page.keyboard.press("1")  # product check: verified visually; on to the count
    await page.keyboard.press("2")  # count: partial fill documented
    await page.keyboard.press("1")  # override: verified visually
    await expect(rows.nth(3)).to_have_class(re.compile(r"\bis-active\b"))
    await page.keyboard.press("6")  # refill too soon: other, which needs a note
    await expect(rows.nth(3).locator(".ack-note")).to_be_focused()
    await expect(page.locator("#v-ack-confirm")).to_be_disabled()
    await expect(page.locator("#v-ack-error")).to_contain_text("needs a note")
    await shot(page, "tp-acks")
    await page.keyboard.type("Patient moving away; prescriber called.")
    assert sent == []
    await page.keyboard.press("Enter")
    # Overriding the product check asks who decides first; with the password given, it is held.
    step_up = page.locator(".identity-step-up")
    await expect(step_up).to_contain_text(
        "Approve Rx RX1 for J. P. at ND-1 — confirm it is you: you override a product-check flag."
    )
    await step_up.locator("#proof-password").fill(PASSWORD)
    await step_up.locator("#proof-submit").click()
    await expect(step_up).to_have_count(0)
    await expect(page.locator("#queue-view")).to_be_visible()
    await until(page, "() => document.querySelector('#q-undo').hidden", timeout=10)
    await reported(sent)
    assert len(sent) == 1
    assert sent[0]["acknowledgements"] == [
        {"flag": "product_check", "reason": "verified_visually", "note": None},
        {"flag": "quantity_mismatch", "reason": "partial_fill_documented", "note": None},
        {"flag": "override", "reason": "verified_visually", "note": None},
        {"flag": "refill_too_soon", "reason": "other", "note": "Patient moving away; prescriber called."},
    ]
    detail = await decided(world, fill_id)
    assert detail["state"] == "approved"
    assert [a["flag"] for a in detail["decision"]["acknowledgements"]] == codes


async def prompt_before_holding(c: Console, fill_id: str, sent: list[dict[str, Any]]) -> Any:
    """Approves the open fill over its product-check flag; returns the prompt that asks who decides,
    checked to come before the decision is held: nothing sent, no Undo bar, the fill still on screen."""
    page = c.page
    await page.keyboard.press("a")
    await expect(page.locator("#v-acks .ack-row")).to_have_count(1)
    await page.keyboard.press("1")  # verified visually
    await page.keyboard.press("Enter")
    prompt = page.locator(".identity-step-up")
    await expect(prompt).to_be_visible()
    await expect(prompt.locator(".identity-intro")).to_have_text(
        "Approve Rx RX1 for J. P. at ND-1 — confirm it is you: you override a product-check flag."
    )
    for undo in ("#v-undo", "#q-undo"):
        await expect(page.locator(undo)).to_be_hidden()
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", fill_id)
    assert sent == []
    return prompt


async def test_a_decision_that_needs_a_proof_asks_for_it_naming_the_fill_before_it_is_held(
    browser: Browser, make_world: WorldFactory
) -> None:
    """The proof is asked for when the pharmacist decides, over the fill decided, not after the Undo
    window over the next one; the decision held is then one the server takes, even sent as the page
    goes away."""
    world = await make_world(decision_undo_seconds=30)
    flagged = await submit(world, "tech_nd1", "RX1", counted_quantity=60, priority="waiting")  # no scan
    clean = await submit_clean(world, "tech_nd1", "RX2")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, flagged["id"])
    await look_at_every_photo(page)
    prompt = await prompt_before_holding(c, flagged["id"], sent)
    await shot(page, "tp-step-up-before-hold")
    await prompt.locator("#proof-password").fill(PASSWORD)
    await prompt.locator("#proof-submit").click()
    await expect(prompt).to_have_count(0)

    # Proved: held for Undo as any decision, while the next fill (its product check a match) opens.
    await expect(page.locator("#v-undo")).to_be_visible()
    await expect(page.locator("#v-undo")).to_contain_text("Approved Rx RX1")
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", clean["id"])
    assert sent == [] and await claim_of(world, flagged["id"]) == ("in_review", "nd_rph", 0)

    # Undone, the fill is open and undecided again; deciding it again is a new decision, proved anew.
    await page.keyboard.press("u")
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", flagged["id"])
    await expect(page.locator("#v-undo")).to_be_hidden()
    await expect(c.row(clean["id"])).to_contain_text("Waiting")
    prompt = await prompt_before_holding(c, flagged["id"], sent)
    await prompt.locator("#proof-password").fill(PASSWORD)
    await prompt.locator("#proof-submit").click()
    await expect(prompt).to_have_count(0)
    await expect(page.locator("#v-undo")).to_be_visible()
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", clean["id"])
    assert sent == [] and await claim_of(world, flagged["id"]) == ("in_review", "nd_rph", 0)
    # The page is reloaded well within the window: the decision sent as it goes is recorded.
    await page.reload()
    detail = await decided(world, flagged["id"])
    assert detail["state"] == "approved" and detail["decision"]["pharmacist"]["name"] == "Nd Rph"
    assert await claim_of(world, flagged["id"]) == ("approved", None, 1)
    async with world.services.db.read() as s:
        trail = await s.scalar(
            select(AuditEvent.detail).where(
                AuditEvent.entity_id == flagged["id"], AuditEvent.action == "fill.decided"
            )
        )
    assert trail is not None and trail["step_up"] == ["product_check"]
    await expect(page.locator("#queue-view")).to_be_visible()
    await expect(page.locator(".identity-step-up")).to_have_count(0)
    assert not any(line.startswith("pageerror") for line in c.logs), c.logs


async def test_cancelling_the_proof_leaves_the_fill_open_undecided_and_claimed(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.5)
    flagged = await submit(world, "tech_nd1", "RX1", counted_quantity=60, priority="waiting")  # no scan
    await submit_clean(world, "tech_nd1", "RX2")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, flagged["id"])
    await look_at_every_photo(page)
    prompt = await prompt_before_holding(c, flagged["id"], sent)
    await prompt.locator("button", has_text="Cancel").click()
    await expect(prompt).to_have_count(0)

    # Nothing held or sent: the fill is still on screen and the pharmacist's, its acknowledgement kept.
    await expect(page.locator("#v-banner")).to_contain_text("Approve Rx RX1 for J. P. at ND-1: not sent.")
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
    await expect(page.locator("#v-acks")).to_be_visible()
    await page.wait_for_timeout(1500)  # past the Undo window
    assert sent == []
    assert await claim_of(world, flagged["id"]) == ("in_review", "nd_rph", 0)
    for undo in ("#v-undo", "#q-undo"):
        await expect(page.locator(undo)).to_be_hidden()
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", flagged["id"])

    # Esc closes the prompt as Cancel does; then, proved, the same decision is held and sent.
    await page.keyboard.press("Enter")
    await expect(prompt).to_be_visible()
    await page.keyboard.press("Escape")
    await expect(prompt).to_have_count(0)
    await expect(page.locator("#v-ack-confirm")).to_be_enabled()
    await page.keyboard.press("Enter")
    await prompt.locator("#proof-password").fill(PASSWORD)
    await prompt.locator("#proof-submit").click()
    assert (await decided(world, flagged["id"]))["state"] == "approved"
    await reported(sent)
    assert len(sent) == 1


async def test_a_proof_gone_by_the_time_the_held_decision_is_sent_is_asked_for_naming_the_fill(
    browser: Browser, make_world: WorldFactory
) -> None:
    """Should the server still want a proof when the held decision reaches it, the prompt, over the next
    fill, names the fill it is for; cancelled, that fill goes back to the queue at once."""
    world = await make_world(decision_undo_seconds=1)
    flagged = await submit(world, "tech_nd1", "RX1", counted_quantity=60, priority="waiting")  # no scan
    clean = await submit_clean(world, "tech_nd1", "RX2")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, flagged["id"])
    await look_at_every_photo(page)
    prompt = await prompt_before_holding(c, flagged["id"], sent)
    await prompt.locator("#proof-password").fill(PASSWORD)
    await prompt.locator("#proof-submit").click()
    await expect(page.locator("#v-undo")).to_be_visible()
    # The proof is gone before the window ends (in the console, another tab's decision used it).
    async with world.services.db.write() as s:
        await s.execute(update(ConsoleSession).values(stepped_up_at=None))

    await expect(page.locator("body")).to_have_attribute("data-shown-fill", clean["id"])
    await expect(prompt.locator(".identity-intro")).to_have_text(
        "Approve Rx RX1 for J. P. at ND-1 — confirm it is you: you override a product-check flag."
    )
    await prompt.locator("button", has_text="Cancel").click()
    await expect(page.locator(".toast-error")).to_contain_text(
        "Approved Rx RX1 was not recorded: you did not confirm it is you. The fill is back in the queue."
    )
    await expect(c.row(flagged["id"])).to_contain_text("Waiting")
    assert await claim_of(world, flagged["id"]) == ("queued", None, 0)
    assert len(sent) == 1  # refused, not recorded
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")  # the next fill is still open


async def test_a_fill_open_when_another_of_the_drug_is_approved_shows_its_new_flag(
    browser: Browser, make_world: WorldFactory
) -> None:
    """The same prescription queued twice: while one pharmacist has the second open, another approves
    the first. The open fill now carries a refill-too-soon flag, which is shown and must be acknowledged."""
    world = await make_world(decision_undo_seconds=0.2)
    first = await submit_clean(world, "tech_nd1", "RX1", rx={"refills_authorized": 2})
    tech = await world.device("tech_nd1")
    rx_id = first["prescription"]["id"]
    second = await queued_fill(world, tech, rx_id, barcodes=[MATCHING_SCAN], counted_quantity=60, seed=5)
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, second["id"])
    await look_at_every_photo(page)
    await expect(page.locator("#v-flags .flag-row")).to_have_count(0)

    both = await world.login("both_rph")
    claimed = (await both.json("POST", f"/api/v1/fills/{first['id']}/claim"))["fill"]
    await both.json("POST", f"/api/v1/fills/{first['id']}/decision", json=approval(claimed))
    await expect(page.locator("#v-banner")).to_contain_text("A flag was added while you had this fill open")
    await expect(page.locator("#v-banner")).to_contain_text("Refill too soon: another fill of this drug")
    flag = page.locator("#v-flags .flag-row")
    await expect(flag).to_have_count(1)
    await expect(flag).to_contain_text("0.0 of 30 days")
    await expect(c.row(second["id"]).locator(".flags-cell .badge")).to_have_text(["Too soon"])
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
    await shot(page, "tp-flag-added")

    # The photos seen before still count; the new flag is the one thing left to acknowledge.
    await page.keyboard.press("a")
    await expect(page.locator("#v-acks .ack-row")).to_have_count(1)
    await page.keyboard.press("4")  # early refill authorized
    await page.keyboard.press("Enter")
    detail = await decided(world, second["id"])
    assert detail["state"] == "approved"
    assert [(a["flag"], a["reason"]) for a in detail["decision"]["acknowledgements"]] == [
        ("refill_too_soon", "early_refill_authorized")
    ]
    assert len(sent) == 1 and sent[0]["version"] == detail["version"] - 1


async def test_a_fill_opened_again_after_a_fill_of_its_prescription_was_approved_shows_it(
    browser: Browser, make_world: WorldFactory
) -> None:
    """The console keeps a fill it has shown and draws that copy at once when it is opened again; by then
    the fill of the prescription before it was approved elsewhere. The panel shows what the claim read:
    the new flag, and that fill approved in the history, not the copy from before."""
    world = await make_world()
    first = await submit_clean(world, "tech_nd1", "RX1", rx={"refills_authorized": 2})
    tech = await world.device("tech_nd1")
    second = await queued_fill(
        world, tech, first["prescription"]["id"], barcodes=[MATCHING_SCAN], counted_quantity=60, seed=5
    )
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    await open_fill(c, second["id"])
    earlier = page.locator("#v-history .history-table").first.locator("tbody tr")
    await expect(earlier).to_have_count(1)
    await expect(earlier).to_contain_text("queued")
    await page.keyboard.press("Escape")
    await expect(c.row(second["id"])).to_contain_text("Waiting")

    both = await world.login("both_rph")
    claimed = (await both.json("POST", f"/api/v1/fills/{first['id']}/claim"))["fill"]
    await both.json("POST", f"/api/v1/fills/{first['id']}/decision", json=approval(claimed))
    await expect(c.row(second["id"]).locator(".flags-cell .badge")).to_have_text(["Too soon"])

    await open_fill(c, second["id"])
    await expect(page.locator("#v-flags .flag-row")).to_have_count(1)
    await expect(earlier).to_contain_text("Approved")
    await shot(page, "tp-reopened-fill-redrawn")


async def test_an_approval_waiting_for_undo_when_a_flag_is_added_is_refused_by_name(
    browser: Browser, make_world: WorldFactory
) -> None:
    """The patient's fill at a Minnesota site is approved while a North Dakota approval of the same drug
    waits for its undo window: that one is refused, and the toast names the flag."""
    world = await make_world(decision_undo_seconds=3)
    elsewhere = await submit_clean(world, "tech_mn1", "RX9")
    here = await submit_clean(world, "tech_nd1", "RX1")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    await open_fill(c, here["id"])
    await look_at_every_photo(page)
    await page.keyboard.press("a")
    await expect(page.locator("#q-undo")).to_be_visible()
    both = await world.login("both_rph")
    claimed = (await both.json("POST", f"/api/v1/fills/{elsewhere['id']}/claim"))["fill"]
    await both.json("POST", f"/api/v1/fills/{elsewhere['id']}/decision", json=approval(claimed))
    refused = page.locator(".toast-error")
    await expect(refused).to_contain_text(
        "Approved Rx RX1 was not recorded: a flag was added while it waited"
    )
    await expect(refused).to_contain_text("(Refill too soon). Open the fill again to acknowledge it.")
    assert (await claim_of(world, here["id"]))[2] == 0


async def test_an_approval_the_server_refuses_is_shown_plainly(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.2)
    fill = await submit(world, "tech_nd1", "RX1", barcodes=[MATCHING_SCAN], counted_quantity=58)
    c = await sign_in(browser, world, "nd_rph")
    page = c.page

    async def strip_acknowledgements(route: Any) -> None:
        body = json.loads(route.request.post_data or "{}")
        await route.continue_(post_data=json.dumps({**body, "acknowledgements": []}))

    await page.route("**/decision", strip_acknowledgements)
    await open_fill(c, fill["id"])
    await look_at_every_photo(page)
    await page.keyboard.press("a")
    await page.keyboard.press("2")
    await page.keyboard.press("Enter")
    refused = page.locator(".toast-error")
    await expect(refused).to_contain_text("Approved Rx RX1 was refused")
    await expect(refused).to_contain_text("a flag was not acknowledged (quantity_mismatch)")
    assert (await claim_of(world, fill["id"]))[0] == "in_review"


async def test_the_history_lists_earlier_fills_and_h_shows_the_pills_beside_the_last_approved(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    rph = await world.login("nd_rph")
    first = await submit_clean(world, "tech_nd1", "RX1", rx={"refills_authorized": 2})
    claimed = (await rph.json("POST", f"/api/v1/fills/{first['id']}/claim"))["fill"]
    await rph.json("POST", f"/api/v1/fills/{first['id']}/decision", json=approval(claimed))
    world.clock.advance(28 * DAY)
    tech = await world.device("tech_nd1")
    rx_id = (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"][0]["id"]
    second = await queued_fill(world, tech, rx_id, barcodes=[MATCHING_SCAN], counted_quantity=60, seed=3)
    assert second["flags"] == []
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    row = c.row(second["id"])
    await expect(row.locator(".rx-number")).to_have_text("Rx RX1")
    await expect(row.locator(".rx-drug")).to_have_text("Metformin HCl 500 mg")
    await expect(row.locator(".initials")).to_have_text("J. P.")
    # A fill arriving live gets the same row, fetched by the console (events carry no patient data).
    live = await submit_clean(
        world, "tech_nd1", "RX7", rx={"patient_name": "Ola Nordmann", "drug": "Lisinopril"}
    )
    await expect(c.row(live["id"]).locator(".rx-number")).to_have_text("Rx RX7")
    await expect(c.row(live["id"]).locator(".rx-drug")).to_have_text("Lisinopril 500 mg")
    await expect(c.row(live["id"]).locator(".initials")).to_have_text("O. N.")

    await open_fill(c, second["id"])
    history = page.locator("#v-history")
    await expect(history).to_contain_text("This prescription (1)")
    earlier = history.locator(f'tr[data-fill="{first["id"]}"]').first
    await expect(earlier).to_contain_text("Approved")
    await expect(earlier).to_contain_text("Nd Rph")
    await expect(earlier.locator("td").nth(2)).to_have_text("60")
    await expect(earlier.locator("td").nth(3)).to_have_text("30")

    await page.keyboard.press("h")
    panes = page.locator("#v-stage .compare-pane")
    await expect(panes).to_have_count(2)
    await until(
        page,
        "() => [...document.querySelectorAll('#v-stage .compare img')]"
        ".filter((i) => i.naturalWidth > 0).length === 2",
    )
    await expect(panes.nth(0)).to_contain_text("This fill")
    await expect(panes.nth(1)).to_contain_text("Last approved")
    srcs = await page.locator("#v-stage .compare img").evaluate_all("(imgs) => imgs.map((i) => i.src)")
    pills = {m["kind"]: m["id"] for m in second["media"]}["pills"]
    reference = {m["kind"]: m["id"] for m in first["media"]}["pills"]
    assert f"/media/{pills}?" in srcs[0] and f"/media/{reference}?" in srcs[1], srcs
    await shot(page, "tp-compare")
    await page.keyboard.press("h")
    await expect(panes).to_have_count(0)
    await expect(page.locator("#v-stage .stage-img")).to_be_visible()


async def test_a_photo_like_several_of_one_other_fill_is_said_once_with_their_number(
    browser: Browser, make_world: WorldFactory
) -> None:
    """The other fill had one image sent as two views: the flag lists a match for each, and the
    pharmacist read the same line twice."""
    world = await make_world()
    bottle = photo("stock_bottle", 9100)
    views = ["stock_bottle", "pills", "vial_label"]
    other = await fill_in_order(
        world, "tech_nd1", "RX1", views, photos_of={"stock_bottle": bottle, "pills": bottle}
    )
    own = {"pills": photo("pills", 9201), "vial_label": photo("vial_label", 9202)}
    fill_id = await fill_in_order(world, "tech_nd1", "RX2", views, photos_of={"stock_bottle": bottle, **own})
    fill = await (await world.login("nd_rph")).json("GET", f"/api/v1/fills/{fill_id}")
    flag = next(f for f in fill["flags"] if f["code"] == "reused_photo")
    assert sorted((p["kind"], p["other_fill_id"]) for p in flag["photos"]) == [("stock_bottle", other)] * 2
    c = await sign_in(browser, world, "nd_rph")
    await open_fill(c, fill_id)
    await expect(c.page.locator("#v-flags")).to_contain_text(
        f"Stock bottle is identical to 2 photos of fill {other[:8]}."
    )


async def test_a_reused_photo_flag_names_the_photo_and_the_other_fill(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.2)
    other = await submit_clean(world, "tech_nd1", "RX1", seed=900)
    # The same photos sent again for another prescription: the server flags them when the fill is queued.
    fill = await submit_clean(world, "tech_nd1", "RX2", seed=900)
    flag = next(f for f in fill["flags"] if f["code"] == "reused_photo")
    assert {(p["kind"], p["other_fill_id"], p["match"]) for p in flag["photos"]} == {
        (kind, other["id"], "identical") for kind in ("stock_bottle", "pills", "vial_label")
    }
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    await expect(c.row(fill["id"]).locator(".flags-cell .badge")).to_have_text(["Reused photo"])
    await open_fill(c, fill["id"])
    await expect(page.locator("#v-flags")).to_contain_text(
        f"Labelled vial is identical to a photo of fill {other['id'][:8]}"
    )
    await look_at_every_photo(page)
    await page.keyboard.press("a")
    await page.keyboard.press("5")  # photo confirmed as taken for this fill
    await page.keyboard.press("Enter")
    await expect(page.locator("body")).to_have_attribute("data-shown-fill", other["id"])
    await until(page, "() => document.querySelector('#v-undo').hidden", timeout=10)
    detail = await decided(world, fill["id"])
    assert detail["decision"]["acknowledgements"] == [
        {"flag": "reused_photo", "reason": "photo_confirmed_current", "note": None}
    ]
