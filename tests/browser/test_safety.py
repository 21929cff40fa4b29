"""Pharmacist safety in the console (issue 24): nothing approved unseen, every flag acknowledged, history,
undo, and a console that works on a 1024 x 768 screen."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Browser, Page, Request, expect
from sqlalchemy import select

from demo import photos
from server.db.models import Decision, Fill, User
from tests.api.world import World, new_fill_id, photo, rx_body, upload
from tests.browser.conftest import Console, SiteSocket, WorldFactory, sign_in, submit, until

pytestmark = pytest.mark.browser

UNSEEN = re.compile(r"\bis-unseen\b")
IPAD = {"width": 1024, "height": 768}
CONTRAST = (Path(__file__).parent / "contrast.js").read_text()


def decisions_sent(page: Page) -> list[dict[str, Any]]:
    """Every decision the page sends, as the JSON body it sent."""
    sent: list[dict[str, Any]] = []

    def seen(r: Request) -> None:
        if r.url.endswith("/decision") and r.method == "POST":
            sent.append(json.loads(r.post_data or "{}"))

    page.on("request", seen)
    return sent


async def fill_in_order(
    world: World, tech: str, rx_number: str, kinds: list[str], *, video: Path | None = None, **rx: Any
) -> str:
    """A fill whose photos are uploaded in the given order (the server lists them as they came)."""
    user = await world.device(tech)
    made = await user.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, **rx))
    fill_id = new_fill_id()
    await user.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": made["id"]})
    if video is not None:
        resp = await upload(user, fill_id, "count_video", video.read_bytes(), filename=video.name)
        assert resp.status == 204, await resp.text()
    for i, kind in enumerate(kinds):
        assert (await upload(user, fill_id, kind, photo(kind, 70 + i))).status == 204
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


async def open_fill(c: Console, fill_id: str) -> None:
    await c.row(fill_id).click()
    await expect(c.page.locator("#v-lease")).to_contain_text("Claimed by you")
    await expect(c.page.locator("body")).to_have_attribute("data-shown-fill", fill_id)


async def look_at_every_photo(page: Page) -> None:
    count = await page.locator("#v-strip .thumb").count()
    for i in range(1, count):
        await page.keyboard.press("ArrowRight")
        await expect(page.locator("#v-strip .thumb").nth(i)).not_to_have_class(UNSEEN)


async def test_approve_is_refused_until_every_photo_and_the_video_were_shown(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    video = photos.count_video(tmp_path / "count.webm", container="webm")
    # Listed by the server in upload order: video first, then the photos backwards.
    fill_id = await fill_in_order(world, "tech_nd1", "RX1", ["vial_label", "pills", "stock_bottle"], video=video)
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent = decisions_sent(page)
    await open_fill(c, fill_id)

    # The strip has the same order for every fill: stock bottle, pills, vial, then the video.
    labels = await page.locator("#v-strip .thumb .thumb-label").all_text_contents()
    assert labels == ["Stock bottle", "Counted pills", "Labelled vial", "Count video"]
    approve = page.locator("#v-approve")
    await expect(approve).to_be_disabled()
    await expect(page.locator("#v-status")).to_contain_text("Not yet seen: Counted pills, Labelled vial, Count video")
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
    await expect(page.locator("#queue-view")).to_be_visible()  # nothing else waiting: at once, not after the send
    await until(page, "() => document.querySelector('#q-undo').hidden", timeout=10)
    assert len(sent) == 1 and sent[0]["outcome"] == "approve"
    detail = await (await world.login("nd_rph")).json("GET", f"/api/v1/fills/{fill_id}")
    ids = {m["kind"]: m["id"] for m in detail["media"]}
    seen = {v["media_id"]: v for v in sent[0]["views_seen"]}
    assert set(seen) == set(ids.values())
    assert all(v["seconds"] > 0 for v in seen.values())
    assert seen[ids["pills"]]["max_zoom"] > 1.4 and seen[ids["stock_bottle"]]["max_zoom"] == 1
    assert seen[ids["count_video"]]["played_fraction"] >= 0.9
    assert (await claim_of(world, fill_id))[0] == "approved"


async def test_undo_within_the_window_sends_nothing_and_the_fill_stays_claimed(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    first = await submit(world, "tech_nd1", "RX1", priority="waiting")
    second = await submit(world, "tech_nd1", "RX2")
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
    await page.keyboard.press("a")
    await site.wait_for(lambda m: m.get("type") == "fill.decided" and m.get("fill_id") == first["id"])
    assert len(sent) == 1
    assert await claim_of(world, first["id"]) == ("approved", None, 1)


async def test_a_held_decision_is_sent_when_the_tab_closes_or_the_pharmacist_signs_out(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    first = await submit(world, "tech_nd1", "RX1")
    second = await submit(world, "tech_nd1", "RX2")
    site = await SiteSocket.open(world, "tech_nd1")
    c = await sign_in(browser, world, "nd_rph")
    await open_fill(c, first["id"])
    await look_at_every_photo(c.page)
    await c.page.keyboard.press("a")
    await expect(c.page.locator("#v-undo")).to_be_visible()
    await c.page.close(run_before_unload=True)
    await site.wait_for(lambda m: m.get("type") == "fill.decided" and m.get("fill_id") == first["id"])
    assert (await claim_of(world, first["id"]))[0] == "approved"

    c = await sign_in(browser, world, "nd_rph")
    await open_fill(c, second["id"])
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
    world = await make_world()
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
    every = {"A", "R", "1", "9", "Ctrl", "Enter", "U", "Z", "H", "N", "Esc", "C", "L", "V", "T", "?", "←", "→", "↑", "↓"}
    every |= {"+", "−", "0", "F", "Space", ",", ".", "[", "]", "J", "K", "Q", "D", "Shift"}
    assert every <= keys, every - keys
    text = await c.page.locator("#help").inner_text()
    for words in ("Undo the decision", "pills beside the last approved", "acknowledgement", "Send the rejection"):
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
              if (['auto', 'scroll'].includes(o.overflowY) || ['auto', 'scroll'].includes(o.overflowX)) scrolled = true;
              if (p.classList.contains('stage')) scrolled = true;
            }
            if (scrolled) continue;
            if (r.left < -0.5 || r.top < -0.5 || r.right > W + 0.5 || r.bottom > H + 0.5) {
              out.push(`${el.tagName}#${el.id}.${el.className} ${Math.round(r.left)},${Math.round(r.top)},${Math.round(r.right)},${Math.round(r.bottom)}`);
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
            if (!hit || !(hit === b || b.contains(hit))) out.push(`${b.id || b.textContent.trim()} at ${Math.round(x)},${Math.round(y)}`);
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
    fills = [await submit(world, "tech_nd1", f"RX{i}", priority="waiting" if i == 0 else "routine") for i in range(3)]
    c = await sign_in(browser, world, "nd_rph", viewport=IPAD)
    page = c.page
    await expect(page.locator("#queue-body tr")).to_have_count(3)
    await expect(page.locator("#queue-table thead")).to_contain_text("US state")
    await expect(page.locator("#queue-table thead")).not_to_contain_text("StateAge")
    assert await _boxes_outside(page, ".topbar") == []
    assert await _boxes_outside(page, "#queue-view") == []
    assert await _buttons_reachable(page, "#queue-view") == []

    await open_fill(c, fills[0]["id"])
    assert await _boxes_outside(page, "#verify-view") == []
    assert await _buttons_reachable(page, "#verify-view") == []
    await page.keyboard.press("r")
    await expect(page.locator("#v-reasons")).to_be_visible()
    assert await _boxes_outside(page, "#verify-view") == []
    assert await _buttons_reachable(page, "#v-reasons") == []
    await page.keyboard.press("Escape")

    # The call panel, when shown, leaves the decision buttons free; Hang up keeps its contrast on hover.
    await page.evaluate("document.getElementById('consult-panel').hidden = false")
    assert await _buttons_reachable(page, ".decision-bar") == []
    assert await _buttons_reachable(page, "#consult-panel") == []
    await page.hover("#consult-hangup")
    low: list[str] = await page.evaluate(CONTRAST)
    assert not [f for f in low if "Hang up" in f], low
    await page.screenshot(path=str(Path("/tmp") / "tp-verify-1024.png"))


async def test_a_counselling_request_names_the_rx_number(browser: Browser, make_world: WorldFactory) -> None:
    world = await make_world()
    fill = await submit(world, "tech_nd1", "RX-4411")
    c = await sign_in(browser, world, "nd_rph", viewport=IPAD)
    tech = await world.device("tech_nd1")
    made = await tech.json("POST", "/api/v1/consultations", 201, json={"kind": "counsel", "fill_id": fill["id"]})
    request = c.page.locator(f'.consult-request[data-id="{made["id"]}"]')
    await expect(request).to_contain_text("on Rx RX-4411")
    await expect(request).not_to_contain_text(f"Rx {made['prescription_id']})")
    await request.locator(".consult-dismiss").click()
    await expect(request).to_have_count(0)
