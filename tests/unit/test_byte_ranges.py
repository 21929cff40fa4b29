"""A stored object over HTTP, whole or by byte range (server.api.byte_ranges), from any MediaStore."""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient

from server.api.byte_ranges import send_stored
from server.media.store import LocalMediaStore

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]

# Longer than one piece read from the store, so a whole answer is sent in several.
VIDEO = bytes(range(256)) * (5 * 1024)


@pytest.fixture
async def client(tmp_path: Path, aiohttp_client: AiohttpClient) -> TestClient[Any, Any]:
    store = LocalMediaStore(tmp_path / "media")
    digest = await store.put_bytes(VIDEO)

    async def serve(request: web.Request) -> web.StreamResponse:
        return await send_stored(request, store, digest, {"Content-Type": "video/mp4"})

    app = web.Application()
    app.router.add_get("/video", serve)
    return await aiohttp_client(app)


async def test_the_whole_object_is_sent_with_its_digest_as_etag(client: TestClient[Any, Any]) -> None:
    resp = await client.get("/video")
    assert resp.status == 200
    assert await resp.read() == VIDEO
    assert resp.headers["ETag"] == f'"{hashlib.sha256(VIDEO).hexdigest()}"'
    assert resp.headers["Accept-Ranges"] == "bytes"
    assert resp.headers["Content-Type"] == "video/mp4"

    again = await client.get("/video", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304 and await again.read() == b""


@pytest.mark.parametrize(
    ("asked", "start", "end"),
    [
        ("bytes=0-99", 0, 100),
        ("bytes=1000-", 1000, len(VIDEO)),
        ("bytes=-500", len(VIDEO) - 500, len(VIDEO)),
        ("bytes=100-99999999", 100, len(VIDEO)),  # past the end: to the end
    ],
)
async def test_a_range_is_answered_206_so_a_video_seeks(
    client: TestClient[Any, Any], asked: str, start: int, end: int
) -> None:
    resp = await client.get("/video", headers={"Range": asked})
    assert resp.status == 206
    assert await resp.read() == VIDEO[start:end]
    assert resp.headers["Content-Range"] == f"bytes {start}-{end - 1}/{len(VIDEO)}"


@pytest.mark.parametrize("asked", [f"bytes={len(VIDEO)}-", "bytes=9-3", "chunks=0-1"])
async def test_a_range_that_cannot_be_satisfied_is_answered_416(
    client: TestClient[Any, Any], asked: str
) -> None:
    resp = await client.get("/video", headers={"Range": asked})
    assert resp.status == 416
    assert resp.headers["Content-Range"] == f"bytes */{len(VIDEO)}"
