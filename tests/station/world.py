"""A real server process, a real `tp-site station` process, and the technician's page in Chromium.

Prescriptions are made through `create_prescription` alone: when a prescription needs a pharmacist's
data-entry verification before it can be filled, that helper is where the test world does it.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Browser, BrowserContext, Locator, Page, Response, expect

from tests.browser.conftest import FLAGS
from tests.site_client.world import ROOT, Site, rx_body, site_api

TABLET = {"width": 1024, "height": 768}


async def create_prescription(server_url: str, token: str, rx_number: str, **over: Any) -> dict[str, Any]:
    """A prescription of the technician's site, ready to be filled."""
    body = {**rx_body(rx_number), **over}
    status, body = await site_api(server_url, token, "POST", "/api/v1/prescriptions", body)
    assert status == 201, body
    return dict(body)


class StationProcess:
    """`tp-site station --port P` for a site's config: started, stopped, its terminal output kept."""

    def __init__(self, site: Site, port: int, log_path: Path, *extra: str) -> None:
        self.site = site
        self.port = port
        self.log_path = log_path
        self.extra = extra
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    async def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "remote_site_client", "station", "--port", str(self.port), *self.extra,
            cwd=ROOT, env=self.site.env(), stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
        log.close()
        async with aiohttp.ClientSession() as http:
            for _ in range(300):
                if self.proc.returncode is not None:
                    raise RuntimeError(f"station exited: {self.output()[-2000:]}")
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with http.get(self.url) as resp:
                        if resp.status == 200:
                            return
                await asyncio.sleep(0.05)
        raise RuntimeError(f"station did not start: {self.output()[-2000:]}")

    async def stop(self) -> None:
        if self.proc is None or self.proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.proc.wait(), 10)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            # As a technician's Ctrl-C or the service manager's stop: open pages must not hold it up.
            raise AssertionError("the station did not stop within 10 s of SIGTERM") from None


@dataclass
class StationPage:
    """The technician's page, and what it wrote to its console."""

    context: BrowserContext
    page: Page
    logs: list[str] = field(default_factory=list)


def camera_flags(camera_file: Path) -> list[str]:
    return [*FLAGS, f"--use-file-for-fake-video-capture={camera_file}"]


# Records each desktop notification the page shows (it still shows it): window.__notifications.
NOTIFICATION_SPY = """
  window.__notifications = [];
  const Shown = window.Notification;
  class Recorded extends Shown {
    constructor(title, options) { super(title, options); window.__notifications.push(title); }
  }
  window.Notification = Recorded;
"""


async def open_station(
    browser: Browser,
    station: StationProcess,
    *,
    viewport: dict[str, int] | None = None,
    notifications: bool = False,
) -> StationPage:
    """Opens the station's page and waits until it is connected to the server; with `notifications`,
    the page may show desktop notifications and records their titles."""
    context = await browser.new_context(viewport=viewport or TABLET)
    if notifications:
        await context.grant_permissions(["notifications"])
        await context.add_init_script(NOTIFICATION_SPY)
    page = await context.new_page()
    sp = StationPage(context, page)
    page.on("console", lambda msg: sp.logs.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: sp.logs.append(f"pageerror: {err}"))
    await page.goto(station.url)
    try:
        await expect(page.locator("#capture-view")).to_be_visible()
        await expect(page.locator("#uplink")).to_have_attribute("data-state", "up")
    except AssertionError as exc:
        said = f"page said: {sp.logs}\nstation said: {station.output()[-3000:]}"
        raise AssertionError(f"{exc}\n{said}") from None
    return sp


async def pick(page: Page, rx_number: str) -> None:
    """Picks a prescription as a USB scanner does: the label's barcode typed, wherever the focus is,
    then Enter."""
    await page.locator("#rx-search").blur()
    await page.keyboard.type(rx_number)
    await page.keyboard.press("Enter")
    await expect(page.locator("#rx-number")).to_have_text(rx_number)


async def _checked(page: Page, kind: str, ok: bool) -> Locator:
    result = page.locator("#check-result")
    await expect(page.locator("#stage")).to_have_attribute("data-kind", kind)
    await expect(result).to_have_attribute("data-state", "ok" if ok else "problem", timeout=20000)
    return result


async def show_view(page: Page, kind: str) -> None:
    await page.click(f'#view-steps [data-kind="{kind}"]')
    await expect(page.locator("#stage")).to_have_attribute("data-kind", kind)


async def camera_photo(page: Page, kind: str, *, ok: bool = True) -> Locator:
    """Takes the view with the camera (the stock bottle the fake camera shows) and waits for its checks."""
    await show_view(page, kind)
    await page.wait_for_function("() => document.querySelector('#preview').videoWidth > 0", timeout=10000)
    await page.click("#capture-btn")
    return await _checked(page, kind, ok)


async def file_photo(page: Page, kind: str, path: Path, *, ok: bool = True) -> Locator:
    """Gives the view as a picked file and waits for its checks."""
    await show_view(page, kind)
    await page.set_input_files("#file-input", str(path))
    return await _checked(page, kind, ok)


def is_save(r: Response) -> bool:
    return r.url.endswith("/api/fills") and r.request.method == "POST"


async def save_fill(page: Page, *, count_differs: bool = False) -> str:
    """Presses Save and returns the saved fill's id once the page says it is saved; with
    `count_differs`, the count is not the prescription's and the technician confirms it."""
    if count_differs:
        await page.click("#save-btn")
        await expect(page.locator("#count-confirm")).to_be_visible()
    async with page.expect_response(is_save) as info:
        await page.click("#count-confirm-save" if count_differs else "#save-btn")
    resp = await info.value
    body = await resp.json()
    assert resp.status == 201, body
    await expect(page.locator("#save-status")).to_contain_text(f"Saved as fill {body['short_id']}")
    return str(body["fill_id"])


async def record_count_video(page: Page, *, seconds: float) -> Locator:
    """Records the count video in the page (MediaRecorder) for `seconds`, and waits for its checks."""
    await show_view(page, "count_video")
    await page.wait_for_function("() => document.querySelector('#preview').videoWidth > 0", timeout=10000)
    await page.keyboard.press("v")
    await expect(page.locator("#record-btn")).to_have_class(re.compile(r"\brecording\b"))
    await page.wait_for_timeout(seconds * 1000)
    await page.click("#record-btn")
    result = await _checked(page, "count_video", True)
    await expect(result).to_contain_text("The count video plays")
    return result
