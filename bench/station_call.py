"""Station call setup: milliseconds from the pharmacist's accept in the console to the station's page
connected, and to the pharmacist's first video frame decoded in that page, over `--calls` calls asked
from the page. A real server process and a real `tp-site station` on loopback, Chromium's fake camera on
both sides (the helpers of tests/site_client and tests/browser). Both pages run in one
browser, so their clocks are one. Target: as the kiosk's (bench/consult_setup.py), median at most 500 ms.

Prints JSON.

    .venv/bin/python -m bench.station_call [--calls 10]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

import aiohttp
from playwright.async_api import Browser, Page, async_playwright, expect

from bench.consult_setup import summary
from bench.harness import emit
from tests.browser.conftest import CHROMIUM, FLAGS, sign_in, until
from tests.site_client.world import (
    PASSWORD,
    PHARMACIST,
    ROOT,
    ServerProcess,
    Site,
    free_port,
    make_site,
    rx_body,
    seed,
    site_api,
)

RX = "900001"


async def mark(page: Page, panel: str, name: str) -> float:
    return float(await page.evaluate(f"Number(document.getElementById('{panel}').dataset.{name})"))


async def start_station(site: Site, port: int, log: Path) -> asyncio.subprocess.Process:
    """`tp-site station --port P` (its output to `log`), once its page answers."""
    with log.open("ab") as out:
        proc = await asyncio.create_subprocess_exec(
            *site.argv("station", "--port", str(port)), cwd=ROOT, env=site.env(), stdout=out, stderr=out
        )
    async with aiohttp.ClientSession() as http:
        for _ in range(300):
            if proc.returncode is not None:
                raise RuntimeError("the station exited")
            try:
                async with http.get(f"http://127.0.0.1:{port}/") as resp:
                    if resp.status == 200:
                        return proc
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("the station did not start")


async def station_page(browser: Browser, port: int) -> Page:
    """The station's page with the prescription picked (its Rx number typed, then Enter)."""
    page = await (await browser.new_context(viewport={"width": 1024, "height": 768})).new_page()
    await page.goto(f"http://127.0.0.1:{port}/")
    await expect(page.locator("#uplink")).to_have_attribute("data-state", "up", timeout=15000)
    await page.fill("#rx-search", RX)
    await expect(page.locator("#rx-list .rx-number", has_text=f"Rx {RX}")).to_be_visible()
    await page.press("#rx-search", "Enter")
    await expect(page.locator("#call-ask")).to_be_visible()
    return page


async def one_call(station_page: Page, console_page: Page) -> dict[str, float]:
    await station_page.click("#call-ask")
    accept = console_page.locator(".consult-request .consult-accept")
    await expect(accept).to_be_visible(timeout=10000)
    await accept.first.click()
    await until(station_page, "document.getElementById('call-panel').dataset.firstFrameAt !== undefined", 20)
    accepted = await mark(console_page, "consult-panel", "acceptedAt")
    sample = {
        "page_connected_ms": await mark(station_page, "call-panel", "connectedAt") - accepted,
        "page_first_frame_ms": await mark(station_page, "call-panel", "firstFrameAt") - accepted,
    }
    await station_page.click("#call-hangup")
    await until(console_page, "document.getElementById('consult-panel').dataset.state === 'ended'", 5)
    await until(station_page, "document.getElementById('call-panel').dataset.state === 'ended'", 5)
    return sample


async def run(calls: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        token = await seed(root / "server")
        server = ServerProcess(root / "server", free_port(), root / "server.log")
        await server.start()
        port = free_port()
        station = await start_station(make_site(root, server.url, token), port, root / "station.log")
        try:
            status, _ = await site_api(server.url, token, "POST", "/api/v1/prescriptions", rx_body(RX))
            assert status == 201
            async with async_playwright() as pw:
                browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
                try:
                    console = await sign_in(browser, server.url + "/", PHARMACIST, password=PASSWORD)
                    page = await station_page(browser, port)
                    samples = []
                    for _ in range(calls):
                        samples.append(await one_call(page, console.page))
                        await asyncio.sleep(0.5)
                finally:
                    await browser.close()
        finally:
            station.terminate()
            await station.wait()
            await server.stop()
    return {
        "benchmark": "station_call",
        "calls": calls,
        "page_connected_ms": summary([s["page_connected_ms"] for s in samples]),
        "page_first_frame_ms": summary([s["page_first_frame_ms"] for s in samples]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=10)
    args = parser.parse_args()
    emit(asyncio.run(run(args.calls)))


if __name__ == "__main__":
    main()
