"""Consultation setup benchmark: milliseconds from the pharmacist's accept to connected and to the first
video frame, at the site and in the browser, over 20 calls through the real server on loopback, with
headless Chromium's fake camera as the pharmacist and the aiortc site client as the patient (the helpers
of tests/browser and tests/api, as the end-to-end test uses them). Target: median at most 500 ms.

Then one longer 640x480 call with the site client as its own process (`tp-site consult --camera test`):
its CPU seconds over the call's middle, scaled to one minute (target at most 25 s, under half a core).

Prints JSON.

    .venv/bin/python -m bench.consult_setup [--calls 20] [--cpu-seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.async_api import Browser, Page, async_playwright, expect

from bench.harness import ROOT, emit, process_cpu_seconds
from remote_site_client import config as site_config
from remote_site_client.api import SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.consult import Consultation, TestPattern
from tests.api.world import World, build_world
from tests.browser.conftest import CHROMIUM, FLAGS, base_url, sign_in, until


def summary(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"median": None, "p90": None, "max": None}
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {
        "median": round(statistics.median(ordered), 1),
        "p90": round(p90, 1),
        "max": round(ordered[-1], 1),
    }


async def panel_ms(page: Page, name: str) -> float:
    return float(await page.evaluate(f"Number(document.getElementById('consult-panel').dataset.{name})"))


async def accept_next(page: Page) -> None:
    request = page.locator(".consult-request .consult-accept")
    await expect(request).to_be_visible(timeout=10000)
    await request.first.click()


async def one_call(page: Page, world: World, origin: str, data_dir: Path) -> dict[str, float]:
    api = SiteApi(SiteConfig(server_url=origin, token=world.tokens["tech_nd1"], data_dir=data_dir))
    call = Consultation(api, video=TestPattern(fps=20), max_seconds=30)
    task = asyncio.create_task(call.run())
    try:
        await accept_next(page)
        await until(page, "document.getElementById('consult-panel').dataset.firstFrameAt !== undefined", 15)
        async with asyncio.timeout(15):
            while call.result.first_frame_wall is None:  # noqa: ASYNC110 (a field of the call, not an event)
                await asyncio.sleep(0.01)
        accepted = await panel_ms(page, "acceptedAt")
        sample = {
            "browser_connected_ms": await panel_ms(page, "connectedAt") - accepted,
            "browser_first_frame_ms": await panel_ms(page, "firstFrameAt") - accepted,
            "site_connected_ms": (call.result.connected_wall or 0) * 1000 - accepted,
            "site_first_frame_ms": call.result.first_frame_wall * 1000 - accepted,
        }
        await page.click("#consult-hangup")
        await asyncio.wait_for(task, 10)
        await until(page, "document.getElementById('consult-panel').dataset.state === 'ended'", 5)
        return sample
    finally:
        if not task.done():
            call.hang_up()
            await asyncio.wait_for(task, 10)
        await api.close()


async def cpu_call(page: Page, world: World, origin: str, folder: Path, seconds: float) -> dict[str, Any]:
    """The site client in its own process; CPU measured from the first frame for `seconds`."""
    path = folder / "site-config.json"
    site_config.save(
        SiteConfig(server_url=origin, token=world.tokens["tech_nd1"], data_dir=folder / "cpu-site"), path
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remote_site_client", "--config", str(path), "consult", "--camera", "test",
        "--max-seconds", str(seconds + 15),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=ROOT,
    )  # fmt: skip
    try:
        await accept_next(page)
        await until(page, "document.getElementById('consult-panel').dataset.firstFrameAt !== undefined", 15)
        await asyncio.sleep(2)  # past the start (key frames, bandwidth estimation)
        cpu0, t0 = process_cpu_seconds(proc.pid), time.monotonic()
        await asyncio.sleep(seconds)
        cpu1, t1 = process_cpu_seconds(proc.pid), time.monotonic()
        frames_in = int(
            await page.evaluate("Number(document.getElementById('consult-panel').dataset.framesIn)")
        )
        await page.click("#consult-hangup")
        out, _ = await asyncio.wait_for(proc.communicate(), 15)
        return {
            "measured_seconds": round(t1 - t0, 1),
            "cpu_seconds": round(cpu1 - cpu0, 2),
            "cpu_seconds_per_minute": round((cpu1 - cpu0) * 60 / (t1 - t0), 1),
            "browser_frames_decoded": frames_in,
            "site_said": out.decode().strip().splitlines()[-1:],
            "exit_status": proc.returncode,
        }
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def bench(calls: int, seconds: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="consult-bench-") as tmp:
        folder = Path(tmp)
        world = await build_world(folder, f"sqlite+aiosqlite:///{folder / 'bench.sqlite3'}")
        origin = base_url(world).rstrip("/")
        try:
            async with async_playwright() as pw:
                browser: Browser = await pw.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=FLAGS
                )
                try:
                    console = await sign_in(browser, world, "nd_rph")
                    samples = [
                        await one_call(console.page, world, origin, folder / f"site-{i}")
                        for i in range(calls)
                    ]
                    cpu = await cpu_call(console.page, world, origin, folder, seconds)
                    await console.context.close()
                finally:
                    await browser.close()
        finally:
            await world.close()
    keys = ("site_connected_ms", "site_first_frame_ms", "browser_connected_ms", "browser_first_frame_ms")
    result: dict[str, Any] = {"calls": calls}
    for key in keys:
        result[key] = summary([s[key] for s in samples])
    worst_median = max(result[k]["median"] for k in keys)
    result["target_median_ms"] = 500
    result["median_within_target"] = worst_median <= 500
    result["site_client_cpu"] = {**cpu, "resolution": "640x480", "target_per_minute": 25}
    result["cpu_within_target"] = cpu["cpu_seconds_per_minute"] <= 25
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--cpu-seconds", type=float, default=20.0)
    args = parser.parse_args()
    emit(asyncio.run(bench(args.calls, args.cpu_seconds)))


if __name__ == "__main__":
    main()
