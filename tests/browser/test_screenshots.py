"""The README's screenshots from a realistic network, and the console's fit from a laptop to a 4K screen."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from playwright.async_api import Browser, Page, expect

from demo import world
from server.app import create_app
from server.config import Config
from server.services import SERVICES
from tests.browser.conftest import WorldFactory, sign_in, submit

pytestmark = pytest.mark.browser

README_SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
CONTRAST = (Path(__file__).parent / "contrast.js").read_text()
DESKTOP = {"width": 1440, "height": 900}


@asynccontextmanager
async def demo_network(tmp: Path) -> AsyncIterator[tuple[str, world.DemoWorld]]:
    """The demo's network on a loopback port; yields the console's URL and the world."""
    clock = world.SimClock()
    config = Config(
        data_dir=tmp / "data",
        database_url=f"sqlite+aiosqlite:///{tmp / 'demo.sqlite3'}",
        password_time_cost=1,
        media_workers=0,
    )
    server = TestServer(create_app(config, schema="create", clock=clock))
    await server.start_server()
    try:
        yield str(server.make_url("/")), await world.build(server.app[SERVICES], clock, tmp)
    finally:
        await server.close()


async def _low_contrast(page: Page) -> list[str]:
    result: list[str] = await page.evaluate(CONTRAST)
    return result


async def _fits(page: Page) -> dict[str, Any]:
    result: dict[str, Any] = await page.evaluate(
        """() => {
          const box = (sel) => {
            const r = document.querySelector(sel).getBoundingClientRect();
            const {left, top, right, bottom, width, height} = r;
            return {left, top, right, bottom, width, height};
          };
          const doc = document.documentElement;
          return {
            scrollWidth: doc.scrollWidth, scrollHeight: doc.scrollHeight,
            width: innerWidth, height: innerHeight,
            approve: box('#v-approve'), reject: box('#v-reject'), stage: box('#v-stage'), rx: box('#v-rx'),
            font: parseFloat(getComputedStyle(document.body).fontSize),
          };
        }"""
    )
    return result


async def test_screenshots_of_the_queue_and_the_verification_view(browser: Browser, tmp_path: Path) -> None:
    # The README's pictures are remade on purpose (TP_UPDATE_SCREENSHOTS=1), not by every test run.
    shots = README_SHOTS if os.environ.get("TP_UPDATE_SCREENSHOTS") == "1" else tmp_path
    shots.mkdir(parents=True, exist_ok=True)
    async with demo_network(tmp_path) as (url, show):
        c = await sign_in(browser, url, "rph.nd", password=world.PASSWORD, viewport=DESKTOP)
        page = c.page
        await expect(page.locator("#queue-body tr")).to_have_count(len(show.live))
        await expect(page.locator("#count-in-review")).to_have_text("1")
        await expect(page.locator("#oldest-box")).to_have_attribute("data-level", "warn")
        assert await _low_contrast(page) == []
        hint = await page.locator("#queue-view .hint").bounding_box()
        assert hint is not None
        height = min(DESKTOP["height"], round(hint["y"] + hint["height"] + 16))
        await page.screenshot(
            path=shots / "queue.png",
            animations="disabled",
            caret="hide",
            clip={"x": 0, "y": 0, "width": DESKTOP["width"], "height": height},
        )

        first = show.live[0]
        await c.row(first).click()
        await expect(page.locator("body")).to_have_attribute("data-shown-fill", first)
        await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
        await expect(page.locator("#v-rx")).to_contain_text("Evelyn Hart")
        await expect(page.locator("#v-rx")).to_contain_text("Earlier attempt rejected")
        await expect(page.locator("#v-rx")).to_contain_text("Wrong quantity")
        await expect(page.locator("#v-strip .thumb")).to_have_count(4)
        await expect(page.locator("#v-strip img")).to_have_count(4)
        assert await _low_contrast(page) == []
        await page.mouse.move(0, DESKTOP["height"] - 1)  # no hover highlight in the picture
        await page.screenshot(path=shots / "verification.png", animations="disabled", caret="hide")

        await page.keyboard.press("r")
        await page.keyboard.press("3")
        await page.fill("#v-note", "Counted 58 on the tray; please recount to 60.")
        await page.locator("#reasons-title").click()
        assert await _low_contrast(page) == []
        await page.screenshot(path=shots / "reject.png", animations="disabled", caret="hide")
        await page.keyboard.press("Escape")
        await page.keyboard.press("Escape")
        await expect(page.locator("#queue-view")).to_be_visible()

        await page.keyboard.press("d")
        await expect(page.locator("#dash-grid .card")).to_have_count(5)
        await expect(page.locator("#dash-grid svg rect.bar-p50").first).to_be_visible()
        assert await _low_contrast(page) == []
        await page.screenshot(path=shots / "dashboard.png", animations="disabled", caret="hide")
    for name in ("queue", "verification", "reject", "dashboard"):
        assert (shots / f"{name}.png").stat().st_size > 30_000


# A window as wide as an iPad in landscape, an odd width between the layouts, and a laptop's.
NARROW_WINDOWS = (1024, 1300, 1366)
_HEADER_FITS = """() => {
  const W = document.documentElement.clientWidth;
  const off = [...document.querySelectorAll('.topbar button, .topbar a, .topbar .pressure, .topbar .live')]
    .filter((el) => el.offsetParent !== null)
    .filter((el) => { const r = el.getBoundingClientRect(); return r.left < 0 || r.right > W; })
    .map((el) => el.id || el.textContent.trim());
  return {scrollWidth: document.documentElement.scrollWidth, width: W, off};
}"""


async def test_the_demo_console_fits_narrow_windows_without_scrolling_sideways(
    browser: Browser, tmp_path: Path
) -> None:
    """The header as a pharmacist of the demo sees it (PV1, counselling and security beside the queue):
    at each width the queue and the verification view stay within the window, every header button on
    screen, the name cut short first (its whole in the tooltip)."""
    async with demo_network(tmp_path) as (url, show):
        for width in NARROW_WINDOWS:
            c = await sign_in(
                browser, url, "rph.nd", password=world.PASSWORD, viewport={"width": width, "height": 768}
            )
            page = c.page
            await expect(page.locator("#queue-body tr")).to_have_count(len(show.live))
            assert await page.evaluate(_HEADER_FITS) == {"scrollWidth": width, "width": width, "off": []}
            await c.row(show.live[0]).click()
            await expect(page.locator("#v-lease")).to_contain_text("Claimed by you")
            assert await page.evaluate(_HEADER_FITS) == {"scrollWidth": width, "width": width, "off": []}
            assert await page.locator(".me-name").get_attribute("title") == "Dr. Nora Dakota, PharmD"
            await page.keyboard.press("Escape")  # released: the next width's pharmacist finds it waiting
            await expect(page.locator("#queue-view")).to_be_visible()
            await c.context.close()


@pytest.mark.parametrize(
    ("viewport", "min_font", "min_stage"),
    [({"width": 1366, "height": 768}, 14, (800, 400)), ({"width": 3840, "height": 2160}, 22, (2800, 1500))],
    ids=["1366x768", "4k"],
)
async def test_the_verification_view_fits_a_laptop_and_a_4k_screen(
    browser: Browser,
    make_world: WorldFactory,
    viewport: dict[str, int],
    min_font: float,
    min_stage: tuple[int, int],
) -> None:
    world = await make_world()
    fill = await submit(
        world, "tech_nd1", "RX1", rx={"directions": "Take one tablet by mouth twice daily " * 6}
    )
    c = await sign_in(browser, world, "nd_rph", viewport=viewport)
    await c.row(fill["id"]).click()
    await expect(c.page.locator("#v-reject")).to_be_enabled()
    m = await _fits(c.page)
    assert m["scrollWidth"] <= m["width"] and m["scrollHeight"] <= m["height"], m
    for button in ("approve", "reject"):
        b = m[button]
        assert b["left"] >= 0 and b["top"] >= 0 and b["right"] <= m["width"] and b["bottom"] <= m["height"], m
    assert m["stage"]["width"] >= min_stage[0] and m["stage"]["height"] >= min_stage[1], m
    assert m["rx"]["width"] >= 300, m
    assert m["font"] >= min_font, m
    await c.page.keyboard.press("r")
    picker = await c.page.locator("#v-reasons").bounding_box()
    assert picker is not None and picker["y"] >= 0 and picker["y"] + picker["height"] <= viewport["height"]
    assert await _low_contrast(c.page) == []
