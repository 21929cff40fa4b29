"""Fixtures for the site client: generated evidence photos, a seeded server data folder, processes."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from demo.photos import degrade, pills_photo, stock_bottle_photo, to_jpeg_bytes, vial_label_photo
from tests.site_client.world import EXPIRY, NDC, OTHER_NDC, ServerProcess, copy_data, free_port, seed


@pytest.fixture(scope="session")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phone-like photos of one fill, written once: good ones, and ones a check must stop."""
    d = tmp_path_factory.mktemp("photos")
    bottle = stock_bottle_photo(NDC, "Metformin HCl", "500 mg", "LOT42A", EXPIRY, seed=1)
    photos = {
        "stock_bottle.jpg": bottle,
        "pills.jpg": pills_photo(12, imprint="M 30", seed=2),
        "vial_label.jpg": vial_label_photo(
            "100234",
            "Jane Q. Patient",
            "Metformin HCl",
            "500 mg",
            "Take one tablet by mouth twice daily",
            60,
            seed=3,
        ),
        "blurred_stock_bottle.jpg": degrade(bottle, blur=6),
        "dark_stock_bottle.jpg": degrade(bottle, darkness=4),
        "wrong_stock_bottle.jpg": stock_bottle_photo(
            OTHER_NDC, "Lisinopril", "10 mg", "LOT7", EXPIRY, seed=4
        ),
        "expired_stock_bottle.jpg": stock_bottle_photo(
            NDC, "Metformin HCl", "500 mg", "OLD1", date(2024, 1, 31), seed=5
        ),
    }
    for name, image in photos.items():
        (d / name).write_bytes(to_jpeg_bytes(image, 90))
    return d


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A server data folder with the site, technician and pharmacist, made once and copied per test."""
    d = tmp_path_factory.mktemp("server-template") / "data"
    token = asyncio.run(seed(d))
    return d, token


@pytest.fixture
def server_data(tmp_path: Path, seeded_template: tuple[Path, str]) -> tuple[Path, str]:
    template, token = seeded_template
    return copy_data(template, tmp_path / "server-data"), token


@pytest.fixture
async def server(tmp_path: Path, server_data: tuple[Path, str]) -> AsyncIterator[ServerProcess]:
    proc = ServerProcess(server_data[0], free_port(), tmp_path / "server.log")
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


@pytest.fixture
def token(server_data: tuple[Path, str]) -> str:
    return server_data[1]
