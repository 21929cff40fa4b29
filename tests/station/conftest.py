"""Station fixtures: a real server, a real `tp-site station`, Chromium whose camera plays a drawn
stock bottle carrying a real GS1 DataMatrix."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from demo.photos import stock_bottle_photo
from tests.browser.conftest import CHROMIUM
from tests.site_client.conftest import photo_dir, seeded_template, server_data, token
from tests.site_client.world import EXPIRY, NDC, ServerProcess, Site, free_port, make_site
from tests.station.camera import write_y4m
from tests.station.world import StationProcess, camera_flags

__all__ = ["photo_dir", "seeded_template", "server_data", "token"]


@pytest.fixture
async def server(tmp_path: Path, server_data: tuple[Path, str]) -> AsyncIterator[ServerProcess]:
    """The server, its console holding a decision half a second for Undo (the default is seconds)."""
    env = {"TP_DECISION_UNDO_SECONDS": "0.5"}
    proc = ServerProcess(server_data[0], free_port(), tmp_path / "server.log", env)
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture(scope="session")
def camera_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The prescribed stock bottle (NDC 0378-1805-01) at 2048x1536, as the fake camera's picture."""
    bottle = stock_bottle_photo(NDC, "Metformin HCl", "500 mg", "LOT42A", EXPIRY, seed=11)
    return write_y4m(bottle, tmp_path_factory.mktemp("camera") / "bottle.y4m")


@pytest.fixture
async def browser(camera_file: Path) -> AsyncIterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make system-deps` installs Debian's chromium")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=camera_flags(camera_file))
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def site(tmp_path: Path, server: ServerProcess, token: str) -> Site:
    return make_site(tmp_path, server.url, token)


@pytest.fixture
async def station(tmp_path: Path, site: Site) -> AsyncIterator[StationProcess]:
    proc = StationProcess(site, free_port(), tmp_path / "station.log")
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()
