"""The tus client resumes from the server's offset after a cut link, a restart of itself, or chunk damage."""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from remote_site_client.api import ApiError, SiteApi, Unreachable
from remote_site_client.config import SiteConfig
from remote_site_client.tus import CREATION_BEGUN, TusClient
from server.media.tus.endpoint import TusEndpoint
from server.media.tus.uploads import TusUpload
from tests.site_client.proxy import LinkProxy

SIZE = 3 * 1024 * 1024


class Received:
    def __init__(self) -> None:
        self.completed: list[tuple[dict[str, str], str]] = []


async def allow(request: web.Request, metadata: dict[str, str], length: int) -> None:
    return None


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """The app on a free loopback port: its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@pytest.fixture
async def tus_server(tmp_path: Path) -> AsyncIterator[tuple[str, Received]]:
    received = Received()

    async def authorize(request: web.Request, metadata: dict[str, str], length: int) -> None:
        if metadata.get("kind") == "bogus":
            raise web.HTTPUnprocessableEntity(
                text='{"error": "not_an_image", "message": "This file is not a photo."}',
                content_type="application/json",
            )

    async def complete(request: web.Request, upload: TusUpload) -> dict[str, str]:
        digest = hashlib.sha256(upload.data_path.read_bytes()).hexdigest()
        received.completed.append((upload.metadata, digest))
        return {"Tp-Media-Id": str(len(received.completed))}

    endpoint = TusEndpoint(
        tmp_path / "uploads", 100 * 1024 * 1024, base_path="/api/v1/uploads",
        authorize=authorize, owner_of=lambda r: "site", on_complete=complete,
        same_file=lambda metadata: metadata.get("sha256"),
    )  # fmt: skip
    app = web.Application()
    endpoint.add_routes(app.router)
    async with serving(app) as url:
        yield url, received


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    p = tmp_path / "photo.jpg"
    p.write_bytes(os.urandom(SIZE))
    return p


async def test_cut_link_resumes_from_the_servers_offset_not_from_zero(
    tus_server: tuple[str, Received], big_file: Path, tmp_path: Path
) -> None:
    url, received = tus_server
    proxy = LinkProxy("127.0.0.1", int(url.rsplit(":", 1)[1]), up_rate=8 * 1024 * 1024)
    await proxy.start()
    cfg = SiteConfig(server_url=proxy.url, token="t", data_dir=tmp_path)
    remembered: list[str | None] = []
    meta = {
        "fill_id": "f",
        "kind": "pills",
        "filename": "p.jpg",
        "sha256": hashlib.sha256(big_file.read_bytes()).hexdigest(),
    }
    try:
        async with SiteApi(cfg) as api:
            proxy.cut_after_up = SIZE // 2
            with pytest.raises(Unreachable):
                await TusClient(api).upload(
                    big_file, size=SIZE, metadata=meta, url=None, remember_url=remembered.append
                )
        assert remembered and remembered[0]
        before = proxy.stats.up_bytes
        # A new process (new session) picks the upload up from the URL kept in the outbox.
        async with SiteApi(cfg) as api:
            result = await TusClient(api).upload(
                big_file, size=SIZE, metadata=meta, url=remembered[0], remember_url=remembered.append
            )
        resent = proxy.stats.up_bytes - before
    finally:
        await proxy.stop()
    assert result.media_id == 1
    assert result.resumed_from > SIZE // 4
    assert result.sent_bytes == SIZE - result.resumed_from
    assert resent < SIZE * 0.75
    assert len(remembered) == 1  # no second upload was created
    assert received.completed == [(meta, meta["sha256"])]


async def test_a_photo_goes_with_its_creation_and_a_cut_one_resumes_where_it_stopped(
    tus_server: tuple[str, Received], tmp_path: Path
) -> None:
    url, received = tus_server
    size = 1536 * 1024
    photo = tmp_path / "stock.jpg"
    photo.write_bytes(os.urandom(size))
    meta = {"kind": "stock_bottle", "sha256": hashlib.sha256(photo.read_bytes()).hexdigest()}
    proxy = LinkProxy("127.0.0.1", int(url.rsplit(":", 1)[1]), up_rate=8 * 1024 * 1024)
    await proxy.start()
    cfg = SiteConfig(server_url=proxy.url, token="t", data_dir=tmp_path)
    remembered: list[str | None] = []
    try:
        async with SiteApi(cfg) as api:
            proxy.cut_after_up = size // 2
            with pytest.raises(Unreachable):
                await TusClient(api).upload(
                    photo, size=size, metadata=meta, url=None, remember_url=remembered.append
                )
        # The Location never arrived: the outbox knows only that the creation began.
        assert remembered == [CREATION_BEGUN]
        before = proxy.stats.up_bytes
        async with SiteApi(cfg) as api:
            result = await TusClient(api).upload(
                photo, size=size, metadata=meta, url=remembered[-1], remember_url=remembered.append
            )
        resent = proxy.stats.up_bytes - before
    finally:
        await proxy.stop()
    assert result.media_id == 1 and received.completed == [(meta, meta["sha256"])]
    assert result.resumed_from > size // 4 and result.sent_bytes == size - result.resumed_from
    assert resent < size * 0.75  # the rest, not the whole photo again
    assert remembered[-1] is not None and remembered[-1].startswith(proxy.url)

    # A photo on a sound link: stored by the creation request itself.
    other = tmp_path / "pills.jpg"
    other.write_bytes(os.urandom(size))
    meta2 = {"kind": "pills", "sha256": hashlib.sha256(other.read_bytes()).hexdigest()}
    kept: list[str | None] = []
    async with SiteApi(SiteConfig(server_url=url, token="t", data_dir=tmp_path)) as api:
        done = await TusClient(api).upload(
            other, size=size, metadata=meta2, url=None, remember_url=kept.append
        )
    assert done.media_id == 2 and done.sent_bytes == size and done.resumed_from == 0
    assert kept[0] == CREATION_BEGUN and len(kept) == 2  # no PATCH needed a URL


async def test_chunked_upload_with_checksums(
    tus_server: tuple[str, Received], big_file: Path, tmp_path: Path
) -> None:
    url, received = tus_server
    cfg = SiteConfig(server_url=url, token="t", data_dir=tmp_path)
    sha = hashlib.sha256(big_file.read_bytes()).hexdigest()
    seen: list[int] = []
    async with SiteApi(cfg) as api:
        result = await TusClient(api, chunk_bytes=1024 * 1024).upload(
            big_file, size=SIZE, metadata={"kind": "pills", "sha256": sha}, url=None,
            remember_url=lambda u: None, progress=seen.append,
        )  # fmt: skip
    assert result.media_id == 1 and result.sent_bytes == SIZE
    assert seen[-1] == SIZE and seen == sorted(seen)
    assert received.completed[0][1] == sha


async def test_refusal_is_permanent_with_the_servers_message(
    tus_server: tuple[str, Received], big_file: Path, tmp_path: Path
) -> None:
    url, _ = tus_server
    cfg = SiteConfig(server_url=url, token="t", data_dir=tmp_path)
    async with SiteApi(cfg) as api:
        with pytest.raises(ApiError) as info:
            await TusClient(api).upload(
                big_file, size=SIZE, metadata={"kind": "bogus"}, url=None, remember_url=lambda u: None
            )
    assert not info.value.transient
    assert info.value.status == 422 and "not a photo" in info.value.message


async def test_forgotten_upload_starts_again(
    tus_server: tuple[str, Received], big_file: Path, tmp_path: Path
) -> None:
    url, _ = tus_server
    cfg = SiteConfig(server_url=url, token="t", data_dir=tmp_path)
    urls: list[str | None] = []
    async with SiteApi(cfg) as api:
        result = await TusClient(api).upload(
            big_file, size=SIZE, metadata={"kind": "pills"}, url=url + "/api/v1/uploads/" + "0" * 32,
            remember_url=urls.append,
        )  # fmt: skip
    assert result.resumed_from == 0 and len(urls) == 1 and result.media_id == 1


async def test_a_server_without_creation_with_upload_gets_the_photo_by_patch(tmp_path: Path) -> None:
    """A creation answered without Upload-Offset (the body was ignored): the photo follows by PATCH."""
    completed: list[bytes] = []

    async def complete(request: web.Request, upload: TusUpload) -> dict[str, str]:
        completed.append(upload.data_path.read_bytes())
        return {"Tp-Media-Id": "7"}

    endpoint = TusEndpoint(
        tmp_path / "uploads", 10 * 1024 * 1024, base_path="/api/v1/uploads",
        authorize=allow, owner_of=lambda r: "site", on_complete=complete,
    )  # fmt: skip

    async def plain_creation(request: web.Request) -> web.StreamResponse:
        # An older server: it creates the upload as if no body came, and drops the body.
        answer = await endpoint.create(request.clone(headers={**request.headers, "Content-Length": "0"}))
        await request.read()
        del answer.headers["Upload-Offset"]
        return answer

    app = web.Application()
    app.router.add_post("/api/v1/uploads", plain_creation)
    app.router.add_patch("/api/v1/uploads/{upload_id}", endpoint.patch)
    photo = tmp_path / "pills.jpg"
    photo.write_bytes(os.urandom(300_000))
    async with serving(app) as url, SiteApi(SiteConfig(server_url=url, token="t", data_dir=tmp_path)) as api:
        result = await TusClient(api).upload(
            photo, size=300_000, metadata={"kind": "pills"}, url=None, remember_url=lambda u: None
        )
    assert result.media_id == 7 and completed == [photo.read_bytes()]


async def test_an_upload_whose_bytes_all_arrived_is_completed_by_one_request(tmp_path: Path) -> None:
    """The server kept every byte but could not store the photo then: the next try's creation request
    completes it and names the media, and the client asks nothing more."""
    requests: list[str] = []
    failures = [OSError("the media store was not reachable")]  # not a refusal: the upload is kept

    @web.middleware
    async def count(request: web.Request, handler: web.RequestHandler) -> web.StreamResponse:
        requests.append(request.method)
        return await handler(request)

    async def complete(request: web.Request, upload: TusUpload) -> dict[str, str]:
        if failures:
            raise failures.pop()
        return {"Tp-Media-Id": "9"}

    endpoint = TusEndpoint(
        tmp_path / "uploads", 10 * 1024 * 1024, base_path="/api/v1/uploads",
        authorize=allow, owner_of=lambda r: "site", on_complete=complete,
        same_file=lambda metadata: metadata.get("sha256"),
    )  # fmt: skip
    app = web.Application(middlewares=[count])
    endpoint.add_routes(app.router)
    photo = tmp_path / "vial.jpg"
    photo.write_bytes(os.urandom(200_000))
    meta = {"kind": "vial_label", "sha256": hashlib.sha256(photo.read_bytes()).hexdigest()}
    remembered: list[str | None] = [None]
    async with serving(app) as url, SiteApi(SiteConfig(server_url=url, token="t", data_dir=tmp_path)) as api:
        with pytest.raises(ApiError):
            await TusClient(api).upload(
                photo, size=200_000, metadata=meta, url=None, remember_url=remembered.append
            )
        assert remembered[-1] == CREATION_BEGUN
        requests.clear()
        done = await TusClient(api).upload(
            photo, size=200_000, metadata=meta, url=remembered[-1], remember_url=remembered.append
        )
    assert requests == ["POST"]
    assert done.media_id == 9 and done.sent_bytes == 0
