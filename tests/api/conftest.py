from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.api.world import World, build_world


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    w = await build_world(tmp_path, database_url)
    try:
        yield w
    finally:
        await w.close()
