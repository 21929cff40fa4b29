"""Browser fixtures: Debian's Chromium driven by Playwright (async API) against a real server on loopback.

The server and the browser share the test's event loop: Playwright talks to its driver over a pipe,
so nothing blocks and the server answers the page while the test awaits.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType
from aiohttp.client_ws import ClientWebSocketResponse
from playwright.async_api import Browser, BrowserContext, Page, async_playwright, expect

from tests.api.world import PASSWORD, World, build_world, queued_fill, rx_body

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
    "--allow-loopback-in-peer-connection",
]
LAPTOP = {"width": 1366, "height": 768}

expect.set_options(timeout=8000)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            yield b
        finally:
            await b.close()


WorldFactory = Callable[..., Awaitable[World]]


@pytest.fixture
async def make_world(tmp_path: Path, sqlite_url: str) -> AsyncIterator[WorldFactory]:
    """Builds the test world (sites in ND and MN, pharmacists, technicians) with config overrides."""
    worlds: list[World] = []

    async def make(**config: Any) -> World:
        w = await build_world(tmp_path, sqlite_url, **config)
        worlds.append(w)
        return w

    yield make
    for w in worlds:
        await w.close()


@dataclass
class Console:
    """One pharmacist's browser context, what its page wrote to the console and every URL it asked for."""

    context: BrowserContext
    page: Page
    logs: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)

    def row(self, fill_id: str) -> Any:
        return self.page.locator(f'#queue-body tr[data-id="{fill_id}"]')


def base_url(world: World) -> str:
    return str(world.server.make_url("/"))


async def sign_in(
    browser: Browser,
    target: World | str,
    username: str,
    *,
    password: str = PASSWORD,
    viewport: dict[str, int] | None = None,
    scale: float = 1,
) -> Console:
    """Signs in through the login form (of a test world or a base URL) and waits for the live queue."""
    size = viewport or LAPTOP
    context = await browser.new_context(
        viewport={"width": size["width"], "height": size["height"]}, device_scale_factor=scale
    )
    page = await context.new_page()
    console = Console(context, page)
    page.on("console", lambda msg: console.logs.append(msg.text))
    page.on("pageerror", lambda err: console.logs.append(f"pageerror: {err}"))
    page.on("request", lambda req: console.urls.append(req.url))
    page.on("websocket", lambda ws: console.urls.append(ws.url))
    await page.goto(target if isinstance(target, str) else base_url(target))
    await page.fill("#login-username", username)
    await page.fill("#login-password", password)
    await page.click("#login-submit")
    await expect(page.locator("#queue-view")).to_be_visible()
    await expect(page.locator("#live")).to_have_attribute("data-state", "live")
    return console


async def submit(world: World, tech: str, rx_number: str, **kw: Any) -> dict[str, Any]:
    """A technician enters a prescription and submits a photographed fill; returns the queued fill.

    With no barcode and no count the server flags it (no scan, count missing): see submit_clean."""
    user = await world.device(tech)
    rx_over = kw.pop("rx", {})
    rx = await user.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, **rx_over))
    return await queued_fill(world, user, rx["id"], **kw)


# The stock bottle's GS1 DataMatrix for the test prescriptions' NDC 0378-1805-01, expiring 2029-12-31.
MATCHING_SCAN = "]d2010030378180501817291231"


async def submit_clean(world: World, tech: str, rx_number: str, **kw: Any) -> dict[str, Any]:
    """A fill with nothing to flag: the prescribed bottle scanned and the prescribed 60 counted."""
    return await submit(world, tech, rx_number, barcodes=[MATCHING_SCAN], counted_quantity=60, **kw)


async def look_at_every_photo(page: Page) -> None:
    """Steps through the strip, waiting until each photo or video counts as seen (a video is scrubbed)."""
    thumbs = page.locator("#v-strip .thumb")
    await expect(thumbs.first).to_be_visible()
    for i in range(await thumbs.count()):
        if i:
            await page.keyboard.press("ArrowRight")
        if await thumbs.nth(i).get_attribute("data-kind") == "count_video":
            await until(page, "() => document.querySelector('#v-stage video')?.readyState >= 1")
            while "is-unseen" in (await thumbs.nth(i).get_attribute("class") or ""):
                await page.keyboard.press("]")
                await asyncio.sleep(0.05)
        await expect(thumbs.nth(i)).not_to_have_class(re.compile(r"\bis-unseen\b"))


class SiteSocket:
    """The site's live connection, as the site client opens it: a device token, no cookie."""

    def __init__(self, ws: ClientWebSocketResponse) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, world: World, tech: str) -> SiteSocket:
        client = await world.anonymous()
        ws = await client.ws_connect("/api/v1/ws", headers={"Authorization": f"Bearer {world.tokens[tech]}"})
        return cls(ws)

    async def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 8) -> dict[str, Any]:
        for m in self.messages:
            if pred(m):
                return m
        async with asyncio.timeout(timeout):
            while True:
                msg = await self.ws.receive()
                if msg.type != WSMsgType.TEXT:
                    raise AssertionError(f"site websocket ended: {msg.type}")
                data: dict[str, Any] = json.loads(msg.data)
                self.messages.append(data)
                if pred(data):
                    return data


async def decided_at_site(
    site: SiteSocket, console: Console, fill_id: str, *, held: float = 0
) -> dict[str, Any]:
    """Waits until the site hears a fill was decided; `held`: the seconds the console holds the decision
    first (its undo window), with room for a slow machine. If it never comes, says what the console showed."""
    try:
        return await site.wait_for(
            lambda m: m.get("type") == "fill.decided" and m.get("fill_id") == fill_id, timeout=held + 12
        )
    except TimeoutError:
        shown: Any = "nothing (the page is closed)"
        if not console.page.is_closed():
            shown = await console.page.evaluate(
                "() => [...document.querySelectorAll('#toasts .toast-text, #v-banner:not([hidden])')]"
                ".map((e) => e.textContent)"
            )
        raise AssertionError(
            f"the site never heard {fill_id} decided; the console showed {shown}, logged {console.logs[-10:]}"
        ) from None


async def until(page: Page, predicate: str, timeout: float = 8) -> None:
    """Polls a page function until it is true (wait_for_function polls with eval, which the CSP refuses)."""
    async with asyncio.timeout(timeout):
        while not await page.evaluate(predicate):
            await asyncio.sleep(0.05)


async def reported(requests: list[Any], count: int = 1, timeout: float = 5) -> None:
    """Waits until Playwright has reported `count` requests to a listener: its request events reach the
    test asynchronously, and may come after the server's own message about what the request did."""
    async with asyncio.timeout(timeout):
        while len(requests) < count:
            await asyncio.sleep(0.05)
