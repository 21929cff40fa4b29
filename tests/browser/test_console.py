"""The pharmacist console in Chromium: live queue, claims, keyboard decisions, conflicts, licensing."""

from __future__ import annotations

import asyncio
import io
import re
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageDraw
from playwright.async_api import Browser, Request, Route, WebSocketRoute, expect
from sqlalchemy import delete, func, select

from demo import photos
from server.db.models import Decision, Event, Fill, User
from tests.api.world import REQUIRED, World, approval, new_fill_id, photo, rx_body, upload
from tests.browser.conftest import (
    Console,
    SiteSocket,
    WorldFactory,
    look_at_every_photo,
    reported,
    sign_in,
    submit,
    submit_clean,
    until,
)

pytestmark = pytest.mark.browser


async def _decision_of(world: World, fill_id: str) -> tuple[str, str, list[Any]] | None:
    async with world.services.db.read() as s:
        row = (
            await s.execute(
                select(Fill.state, User.username, Decision.reason_codes)
                .join(Decision, Decision.fill_id == Fill.id)
                .join(User, User.id == Decision.pharmacist_id)
                .where(Fill.id == fill_id)
            )
        ).first()
    return (row.state, row.username, row.reason_codes) if row else None


async def test_two_pharmacists_see_a_fill_arrive_live_and_one_claim_it(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    a = await sign_in(browser, world, "nd_rph")
    b = await sign_in(browser, world, "both_rph")
    fill = await submit(world, "tech_nd1", "RX1")

    for console in (a, b):
        await expect(console.row(fill["id"])).to_contain_text("Waiting")
        await expect(console.row(fill["id"])).to_contain_text("ND-1")
        await expect(console.row(fill["id"])).to_contain_text("3 photos")
        await expect(console.page.locator("#count-queued")).to_have_text("1")
        await expect(console.page.locator("#oldest")).to_have_text(re.compile(r"^\d+s$"))

    await a.row(fill["id"]).click()
    await expect(a.page.locator("#v-lease")).to_contain_text("Claimed by you")
    await expect(b.row(fill["id"])).to_contain_text("In review · another pharmacist")
    await expect(b.page.locator("#count-in-review")).to_have_text("1")
    await expect(b.page.locator("#count-queued")).to_have_text("0")

    # The second pharmacist opens it anyway: told plainly, and the claim stays where it was.
    await b.row(fill["id"]).click()
    await expect(b.page.locator(".toast")).to_contain_text("Another pharmacist took that fill first")
    await expect(b.page.locator("#queue-view")).to_be_visible()
    async with world.services.db.read() as s:
        holder = (
            await s.execute(
                select(User.username).join(Fill, Fill.claimed_by == User.id).where(Fill.id == fill["id"])
            )
        ).scalar_one()
    assert holder == "nd_rph"

    # Esc releases: the other console sees it waiting again.
    await a.page.keyboard.press("Escape")
    await expect(a.page.locator("#queue-view")).to_be_visible()
    await expect(b.row(fill["id"])).to_contain_text("Waiting")
    # The queue was loaded once per page; everything after came over the websocket.
    for console in (a, b):
        assert sum("/api/v1/queue" in u for u in console.urls) == 1, console.urls
    # Closing the tab with a fill open gives the fill back at once.
    await a.row(fill["id"]).click()
    await expect(a.page.locator("#v-lease")).to_contain_text("Claimed by you")
    await expect(b.row(fill["id"])).to_contain_text("In review · another pharmacist")
    await a.page.close(run_before_unload=True)
    await expect(b.row(fill["id"])).to_contain_text("Waiting")
    await expect(b.page.locator("#pressure")).to_contain_text("1 waiting")


async def test_approve_by_keyboard_reaches_the_site_and_the_next_fill_opens(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.5)
    site = await SiteSocket.open(world, "tech_nd1")
    first = await submit_clean(world, "tech_nd1", "RX1", priority="waiting")
    second = await submit_clean(world, "tech_nd1", "RX2", rx={"patient_name": "Second Q. Person"})
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    await expect(page.locator("#queue-body tr")).to_have_count(2)

    await page.keyboard.press("n")  # the next fill in queue order: the patient waiting first
    await expect(page.locator("#v-rx")).to_contain_text("Jane Q. Patient")
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
    await look_at_every_photo(page)
    await expect(page.locator("#v-approve")).to_be_enabled()
    await expect(page.locator("body")).to_have_attribute("data-prefetched", second["id"])

    await page.keyboard.press("a")
    decided = await site.wait_for(
        lambda m: m.get("type") == "fill.decided" and m.get("fill_id") == first["id"]
    )
    assert (decided["outcome"], decided["state"]) == ("approve", "approved")
    assert await _decision_of(world, first["id"]) == ("approved", "nd_rph", [])

    await expect(page.locator("body")).to_have_attribute("data-shown-fill", second["id"])
    await expect(page.locator("#v-rx")).to_contain_text("Second Q. Person")
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
    measured = await page.evaluate("performance.getEntriesByName('tp:approve-to-shown').length")
    assert measured == 1
    # Photos are served no-store: each is fetched once, decoded ahead, and that copy is what is shown.
    media = [u for u in c.urls if "/api/v1/media/" in u]
    assert media and len(media) == len(set(media)), media

    # Patient data never reaches the browser console or any URL.
    for text in c.logs + c.urls:
        assert "Jane" not in text and "Second" not in text and "1948" not in text, text


async def test_a_rejection_without_a_reason_cannot_be_sent(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    site = await SiteSocket.open(world, "tech_nd1")
    fill = await submit(world, "tech_nd1", "RX1")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.url.endswith("/decision") else None)
    await c.row(fill["id"]).click()
    await expect(page.locator("#v-reject")).to_be_enabled()

    await page.keyboard.press("r")
    picker = page.locator("#v-reasons")
    confirm = page.locator("#v-reason-confirm")
    await expect(picker).to_be_visible()
    await expect(confirm).to_be_disabled()
    await page.keyboard.press("Enter")
    await expect(page.locator("#v-reason-error")).to_contain_text("at least one reason")
    await expect(picker).to_be_visible()

    await page.keyboard.press("1")
    await page.keyboard.press("3")
    await page.keyboard.press("1")  # toggles wrong_drug off again
    await expect(picker.locator('input[value="wrong_quantity"]')).to_be_checked()
    await expect(picker.locator('input[value="wrong_drug"]')).not_to_be_checked()
    await page.keyboard.press("9")  # "other" needs a note
    await expect(confirm).to_be_disabled()
    await expect(page.locator("#v-reason-error")).to_contain_text("needs a note")
    await page.keyboard.press("Escape")  # closing the picker sends nothing and clears it
    await expect(picker).to_be_hidden()
    await page.keyboard.press("r")
    await expect(picker.locator("input:checked")).to_have_count(0)
    await page.keyboard.press("3")
    await page.keyboard.press("9")
    await page.fill("#v-note", "Counted 58; the label says 60.")
    await page.press("#v-note", "Control+Enter")

    decided = await site.wait_for(
        lambda m: m.get("type") == "fill.decided" and m.get("fill_id") == fill["id"]
    )
    assert decided["outcome"] == "reject" and decided["reason_codes"] == ["wrong_quantity", "other"]
    await reported(sent)
    assert len(sent) == 1
    assert await _decision_of(world, fill["id"]) == ("rejected", "nd_rph", ["wrong_quantity", "other"])
    await expect(page.locator("#queue-view")).to_be_visible()  # nothing else waiting


async def test_a_lost_lease_is_shown_and_blocks_the_decision(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    fill = await submit(world, "tech_nd1", "RX1")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    # The network drops every heartbeat: the lease runs out and the server's sweeper puts the fill back.
    await page.route("**/heartbeat", lambda route: route.abort())
    await c.row(fill["id"]).click()
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
    world.clock.advance(world.services.config.lease_seconds + 1)
    banner = page.locator("#v-banner")
    await expect(banner).to_contain_text("Your claim on this fill has lapsed")
    await expect(page.locator("#v-approve")).to_be_disabled()
    await expect(page.locator("#v-lease")).to_have_text("Claim lapsed")

    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith("/decision") else None)
    await page.keyboard.press("a")
    await page.keyboard.press("r")
    await expect(page.locator("#v-reasons")).to_be_hidden()
    assert sent == []

    # Claim again (C) works once nobody else has it.
    await page.unroute("**/heartbeat")
    await page.keyboard.press("c")
    await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
    await expect(banner).to_be_hidden()


async def test_a_decision_on_a_fill_someone_else_decided_is_refused_and_shown(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world(decision_undo_seconds=0.5)
    fill = await submit_clean(world, "tech_nd1", "RX1")
    c = await sign_in(browser, world, "nd_rph")
    page = c.page
    # This console hears nothing about the fill after opening it, and its heartbeats hang:
    # it still believes it holds the claim when another pharmacist takes and approves the fill.
    hang = asyncio.Event()

    async def stall(route: Route) -> None:
        await hang.wait()
        await route.abort()

    await page.route("**/heartbeat", stall)

    def deaf(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        server.on_message(lambda m: None if fill["id"] in str(m) else ws.send(m))

    await page.route_web_socket(re.compile(r"/api/v1/ws"), deaf)
    await page.reload()
    await expect(c.row(fill["id"])).to_be_visible()
    await c.row(fill["id"]).click()
    await look_at_every_photo(page)
    await expect(page.locator("#v-approve")).to_be_enabled()

    other = await world.login("both_rph")
    world.clock.advance(world.services.config.lease_seconds + 1)  # the lease runs out; the other may claim
    claimed = (await other.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await other.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json=approval(claimed),
    )

    # The approval waits out its undo window, then the server refuses it: said plainly, who decided.
    await page.keyboard.press("a")
    await expect(page.locator("#queue-view")).to_be_visible()
    refused = page.locator(".toast-error")
    await expect(refused).to_contain_text("Approved Rx RX1 was not recorded")
    await expect(refused).to_contain_text("Approved by Both Rph")
    assert await _decision_of(world, fill["id"]) == ("approved", "both_rph", [])
    hang.set()


async def _held_reconnections(c: Console) -> tuple[list[WebSocketRoute], asyncio.Event]:
    """Routes the console's live connection, reloaded and live again: the first socket reaches the
    server at once, a reconnection only once the returned event is set (after the test's next fills)."""
    sockets: list[WebSocketRoute] = []
    gate = asyncio.Event()

    async def relay(ws: WebSocketRoute) -> None:
        sockets.append(ws)
        if len(sockets) > 1:
            await gate.wait()
        ws.connect_to_server()

    await c.page.route_web_socket(re.compile(r"/api/v1/ws"), relay)
    await c.page.reload()
    await expect(c.page.locator("#live")).to_have_attribute("data-state", "live")
    return sockets, gate


async def test_the_queue_catches_up_by_cursor_after_the_live_connection_drops(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    c = await sign_in(browser, world, "nd_rph")
    sockets, gate = await _held_reconnections(c)
    first = await submit(world, "tech_nd1", "RX1")
    await expect(c.row(first["id"])).to_be_visible()
    loads = sum("/api/v1/queue" in u for u in c.urls)

    await sockets[0].close(code=1011, reason="network went away")
    await expect(c.page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    await expect(c.page.locator("#live")).to_contain_text("Reconnecting")
    second = await submit(world, "tech_nd1", "RX2")
    gate.set()
    await expect(c.row(second["id"])).to_be_visible()
    await expect(c.page.locator("#live")).to_have_attribute("data-state", "live")
    assert len(sockets) == 2 and re.search(r"cursor=\d+", sockets[1].url), [w.url for w in sockets]
    assert sum("/api/v1/queue" in u for u in c.urls) == loads  # caught up from the cursor, not reloaded


async def test_a_console_back_from_behind_the_event_window_reloads_its_queue(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    c = await sign_in(browser, world, "nd_rph")
    sockets, gate = await _held_reconnections(c)
    first = await submit(world, "tech_nd1", "RX1")
    await expect(c.row(first["id"])).to_be_visible()
    loads = sum("/api/v1/queue?" in u for u in c.urls)

    await sockets[0].close(code=1011, reason="network went away")
    await expect(c.page.locator("#live")).to_have_attribute("data-state", "reconnecting")
    second = await submit(world, "tech_nd1", "RX2")
    third = await submit(world, "tech_nd1", "RX3")
    async with world.services.db.write() as s:  # the events it missed are no longer kept but the newest
        newest = (await s.execute(select(func.max(Event.id)))).scalar_one()
        await s.execute(delete(Event).where(Event.id < newest))
    gate.set()
    await expect(c.row(second["id"])).to_be_visible()
    await expect(c.row(third["id"])).to_be_visible()
    await expect(c.row(first["id"])).to_be_visible()
    await expect(c.page.locator("#count-queued")).to_have_text("3")
    assert sum("/api/v1/queue?" in u for u in c.urls) > loads  # read afresh, not replayed


async def test_the_console_shows_a_queue_longer_than_a_page(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    fills = [await submit(world, "tech_nd1", f"RX{i}") for i in range(3)]
    c = await sign_in(browser, world, "nd_rph")

    async def one_row_a_page(route: Route, request: Request) -> None:
        await route.continue_(url=request.url.replace("limit=500", "limit=1"))

    await c.page.route(re.compile(r"/api/v1/queue\?"), one_row_a_page)
    await c.page.reload()
    await expect(c.page.locator("#queue-body tr")).to_have_count(3)
    ids = await c.page.locator("#queue-body tr").evaluate_all("(rows) => rows.map((r) => r.dataset.id)")
    assert ids == [f["id"] for f in fills]
    assert sum("after=" in u for u in c.urls) == 2


async def test_a_pharmacist_licensed_in_one_state_never_sees_the_other(
    browser: Browser, make_world: WorldFactory
) -> None:
    world = await make_world()
    c = await sign_in(browser, world, "mn_rph")
    frames: list[str] = []
    c.page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(str(payload))))
    await c.page.reload()
    await expect(c.page.locator("#live")).to_have_attribute("data-state", "live")
    nd = [await submit(world, "tech_nd1", f"ND{i}") for i in range(2)]
    mn = await submit(world, "tech_mn1", "MN1")

    await expect(c.row(mn["id"])).to_be_visible()
    await expect(c.page.locator("#queue-body tr")).to_have_count(1)
    await expect(c.page.locator("#count-queued")).to_have_text("1")
    options = await c.page.locator("#filter-site option").all_text_contents()
    assert options == ["All sites", "MN-1 · Lake Bronson Rx (MN)"]
    assert any(mn["id"] in f for f in frames)
    assert not any(f["id"] in text for f in nd for text in frames + c.urls)
    status = await c.page.evaluate("async (id) => (await fetch('/api/v1/fills/' + id)).status", nd[0]["id"])
    assert status == 404

    await c.page.reload()
    await expect(c.row(mn["id"])).to_be_visible()
    await expect(c.page.locator("#queue-body tr")).to_have_count(1)


async def test_filters_and_the_viewer_zoom_pan_full_resolution_and_video(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    await submit(world, "tech_mn1", "MN1")
    fill = await submit(world, "tech_nd1", "RX1", priority="delivery")
    c = await sign_in(browser, world, "both_rph")
    page = c.page
    await expect(page.locator("#queue-body tr")).to_have_count(2)
    await page.select_option("#filter-site", label="ND-1 · Hettinger Drug (ND)")
    await expect(page.locator("#queue-body tr")).to_have_count(1)
    await page.select_option("#filter-priority", "routine")
    await expect(page.locator("#queue-body tr")).to_have_count(0)
    await expect(page.locator("#queue-empty")).to_be_visible()
    await page.select_option("#filter-priority", "")

    # A fill with a count video arrives while the site filter is on; one from MN does not show.
    video_fill = await _fill_with_video(world, photos.count_video(tmp_path / "count.webm", container="webm"))
    await submit(world, "tech_mn1", "MN2")
    await expect(c.row(video_fill)).to_contain_text("1 video")
    await expect(page.locator("#queue-body tr")).to_have_count(2)
    await c.row(video_fill).click()
    await expect(page.locator("#v-strip .thumb")).to_have_count(4)
    await expect(page.locator("#v-stage-info")).to_contain_text("Stock bottle")
    await expect(page.locator("#v-stage-info")).to_contain_text("Preview 2048 px")

    async with page.expect_request(re.compile(r"variant=full")):
        await page.keyboard.press("f")
    await expect(page.locator("#v-stage-info")).to_contain_text("Full resolution")
    img = page.locator("#v-stage .stage-img")
    before = await img.evaluate("el => el.style.transform")
    await page.keyboard.press("+")
    await expect(page.locator("#v-zoom")).not_to_contain_text("Fit")
    box = await page.locator("#v-stage").bounding_box()
    assert box is not None
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    await page.mouse.move(cx, cy)
    await page.mouse.wheel(0, -300)
    zoomed = await img.evaluate("el => el.style.transform")
    await page.mouse.down()
    await page.mouse.move(cx - 80, cy - 50, steps=4)
    await page.mouse.up()
    panned = await img.evaluate("el => el.style.transform")
    await page.keyboard.press("Shift+ArrowLeft")
    assert len({before, zoomed, panned, await img.evaluate("el => el.style.transform")}) == 4
    await page.keyboard.press("0")
    await expect(page.locator("#v-zoom")).to_contain_text("Fit")

    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#v-stage-info")).to_contain_text("Counted pills")
    await expect(page.locator("#v-strip .thumb").nth(1)).to_have_attribute("aria-selected", "true")
    await page.keyboard.press("ArrowRight")
    await page.keyboard.press("ArrowRight")
    video = page.locator("#v-stage video")
    await expect(video).to_be_visible()
    await expect(video).to_have_attribute("src", re.compile(r"variant=full"))
    await until(page, "() => document.querySelector('#v-stage video').readyState >= 1")
    await page.keyboard.press("]")
    await until(page, "() => document.querySelector('#v-stage video').currentTime > 0.5")
    # Served no-store, each photo and poster is fetched once and reused; the video streams by ranges.
    src = str(world.server.make_url(await video.get_attribute("src") or ""))
    images = [u for u in c.urls if "/api/v1/media/" in u and u != src]
    assert images and len(images) == len(set(images)), images
    await page.keyboard.press("Escape")
    await expect(c.row(fill["id"])).to_contain_text("Waiting")
    await expect(c.row(video_fill)).to_contain_text("Waiting")


async def _fill_with_video(world: World, video: Path) -> str:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RXV"))
    fill_id = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx["id"]})
    for i, kind in enumerate(REQUIRED):
        # The stock bottle is larger than the 2048 px preview, so full resolution is a separate file.
        data = _big_photo() if kind == "stock_bottle" else photo(kind, 50 + i)
        assert (await upload(tech, fill_id, kind, data)).status == 204
    resp = await upload(tech, fill_id, "count_video", video.read_bytes(), filename="count.webm")
    assert resp.status == 204, await resp.text()
    await tech.json("POST", f"/api/v1/fills/{fill_id}/submit")
    return fill_id


def _big_photo() -> bytes:
    im = Image.new("RGB", (2600, 1950), (190, 186, 176))
    draw = ImageDraw.Draw(im)
    for x in range(0, 2600, 50):
        draw.line([(x, 0), (2600 - x, 1950)], fill=(40, 70, 110), width=4)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=85)
    return buf.getvalue()
