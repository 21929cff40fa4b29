"""tus 1.0 endpoint (server.media.tus): protocol behaviour, persistence, and interop with tuspy."""

from __future__ import annotations

import asyncio
import base64
import fcntl
import hashlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tusclient.client import TusClient
from tusclient.uploader.uploader import Uploader

from server.media.tus.endpoint import TusEndpoint
from server.media.tus.protocol import MetadataError, encode_metadata, parse_metadata
from server.media.tus.uploads import TusUpload
from server.media.workfiles import EARLIER_JOB_DIR_PREFIX, WORK_PREFIX, WorkFiles

BASE = "/api/v1/uploads"
TUS = {"Tus-Resumable": "1.0.0"}
PATCH = {**TUS, "Content-Type": "application/offset+octet-stream"}

AiohttpClient = Callable[[web.Application], Awaitable[TestClient[Any, Any]]]
AiohttpServer = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class Recorder:
    """Stub callbacks: owner from a header, a refusable authorize, and a completion log."""

    completed: list[tuple[str, bytes, dict[str, str]]] = field(default_factory=list)
    fail_with: Exception | None = None

    async def authorize(self, request: web.Request, metadata: dict[str, str], length: int) -> None:
        if metadata.get("kind") == "forbidden":
            raise web.HTTPForbidden(text="not for you")

    def owner_of(self, request: web.Request) -> str:
        return request.headers.get("X-Owner", "alice")

    async def on_complete(self, request: web.Request, upload: TusUpload) -> dict[str, str]:
        assert upload.offset == upload.length
        data = await asyncio.to_thread(upload.data_path.read_bytes)
        self.completed.append((upload.id, data, upload.metadata))
        if self.fail_with is not None:
            raise self.fail_with
        return {"X-Media-Sha256": hashlib.sha256(data).hexdigest()}


def make_app(upload_dir: Path, recorder: Recorder, **kw: Any) -> tuple[web.Application, TusEndpoint]:
    endpoint = TusEndpoint(
        upload_dir,
        max_size=kw.pop("max_size", 10 * 1024 * 1024),
        base_path=BASE,
        authorize=recorder.authorize,
        owner_of=recorder.owner_of,
        on_complete=recorder.on_complete,
        **kw,
    )
    app = web.Application()
    endpoint.add_routes(app.router)
    return app, endpoint


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
async def client(
    tmp_path: Path, recorder: Recorder, aiohttp_client: AiohttpClient
) -> AsyncIterator[TestClient[Any, Any]]:
    app, _ = make_app(tmp_path / "uploads", recorder, lock_timeout=0.5)
    yield await aiohttp_client(app)


async def create(
    client: TestClient[Any, Any], length: int, metadata: dict[str, str] | None = None, **headers: str
) -> str:
    hdrs = {**TUS, "Upload-Length": str(length), **headers}
    if metadata:
        hdrs["Upload-Metadata"] = encode_metadata(metadata)
    resp = await client.post(BASE, headers=hdrs)
    assert resp.status == 201, await resp.text()
    location: str = resp.headers["Location"]
    assert location.startswith(BASE + "/")
    return location


def sha256_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --- metadata helpers ------------------------------------------------------------------------------


def test_metadata_round_trip() -> None:
    meta = {"filename": "Jane Roe \u00e9 pills.jpg", "kind": "pills", "flag": ""}
    header = encode_metadata(meta)
    assert "flag" in header.split(",")
    assert parse_metadata(header) == meta
    assert parse_metadata("") == {}


@pytest.mark.parametrize("bad", ["key not-base64!", "a b c", "k v,k v", " ,x", "k\u00e9 dg==", "k\tx dg=="])
def test_metadata_rejects_malformed_headers(bad: str) -> None:
    with pytest.raises(MetadataError):
        parse_metadata(bad)


# --- protocol --------------------------------------------------------------------------------------


async def test_options_advertises_capabilities(client: TestClient[Any, Any]) -> None:
    resp = await client.options(BASE)
    assert resp.status == 204
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert resp.headers["Tus-Version"] == "1.0.0"
    assert set(resp.headers["Tus-Extension"].split(",")) == {
        "creation",
        "creation-with-upload",
        "termination",
        "checksum",
    }
    assert resp.headers["Tus-Max-Size"] == str(10 * 1024 * 1024)
    assert resp.headers["Tus-Checksum-Algorithm"] == "sha256"


async def test_creation_and_head(client: TestClient[Any, Any], tmp_path: Path) -> None:
    location = await create(client, 100, {"kind": "pills", "filename": "a.jpg"})
    upload_id = location.rsplit("/", 1)[1]
    assert len(upload_id) == 32 and int(upload_id, 16) >= 0
    assert (tmp_path / "uploads" / f"{upload_id}.info").exists()

    resp = await client.head(location, headers=TUS)
    assert resp.status == 200
    assert resp.headers["Upload-Offset"] == "0"
    assert resp.headers["Upload-Length"] == "100"
    assert parse_metadata(resp.headers["Upload-Metadata"]) == {"kind": "pills", "filename": "a.jpg"}
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["Tus-Resumable"] == "1.0.0"


async def test_wrong_or_missing_version_is_412(client: TestClient[Any, Any]) -> None:
    for headers in ({}, {"Tus-Resumable": "0.2.2"}):
        resp = await client.post(BASE, headers={**headers, "Upload-Length": "5"})
        assert resp.status == 412
        assert resp.headers["Tus-Version"] == "1.0.0"
        assert resp.headers["Tus-Resumable"] == "1.0.0"


async def test_creation_refusals(client: TestClient[Any, Any]) -> None:
    resp = await client.post(BASE, headers={**TUS, "Upload-Length": str(10 * 1024 * 1024 + 1)})
    assert resp.status == 413
    resp = await client.post(BASE, headers={**TUS, "Upload-Length": "-1"})
    assert resp.status == 400
    resp = await client.post(BASE, headers=TUS)
    assert resp.status == 400
    resp = await client.post(BASE, headers={**TUS, "Upload-Length": "5", "Upload-Metadata": "k %%%"})
    assert resp.status == 400
    resp = await client.post(
        BASE, headers={**TUS, "Upload-Length": "5", "Upload-Metadata": encode_metadata({"kind": "forbidden"})}
    )
    assert resp.status == 403
    assert resp.headers["Tus-Resumable"] == "1.0.0"


async def test_upload_in_chunks_completes_exactly_once(
    client: TestClient[Any, Any], recorder: Recorder, tmp_path: Path
) -> None:
    data = os.urandom(5000)
    location = await create(client, len(data), {"kind": "pills"})

    resp = await client.patch(location, data=data[:2000], headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 204
    assert resp.headers["Upload-Offset"] == "2000"
    assert recorder.completed == []

    resp = await client.patch(location, data=data[2000:], headers={**PATCH, "Upload-Offset": "2000"})
    assert resp.status == 204
    assert resp.headers["Upload-Offset"] == "5000"
    assert resp.headers["X-Media-Sha256"] == hashlib.sha256(data).hexdigest()
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert len(recorder.completed) == 1
    assert recorder.completed[0][1] == data
    assert recorder.completed[0][2] == {"kind": "pills"}

    # The upload is handed over and removed.
    assert (await client.head(location, headers=TUS)).status == 404
    resp = await client.patch(location, data=b"", headers={**PATCH, "Upload-Offset": "5000"})
    assert resp.status == 404
    assert len(recorder.completed) == 1
    assert list((tmp_path / "uploads").iterdir()) == []


async def test_offset_mismatch_is_409(client: TestClient[Any, Any]) -> None:
    location = await create(client, 10)
    resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "3"})
    assert resp.status == 409
    assert resp.headers["Upload-Offset"] == "0"
    resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 204
    resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 409


async def test_patch_needs_the_tus_content_type(client: TestClient[Any, Any]) -> None:
    location = await create(client, 10)
    resp = await client.patch(
        location, data=b"abc", headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/json"}
    )
    assert resp.status == 415
    resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "x"})
    assert resp.status == 400


async def test_chunk_past_upload_length_is_413_and_discarded(client: TestClient[Any, Any]) -> None:
    location = await create(client, 4)
    resp = await client.patch(location, data=b"too long", headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 413

    async def chunked() -> AsyncIterator[bytes]:
        yield b"to"
        yield b"o long"

    resp = await client.patch(location, data=chunked(), headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 413
    resp = await client.head(location, headers=TUS)
    assert resp.headers["Upload-Offset"] == "0"


async def test_checksum(client: TestClient[Any, Any], recorder: Recorder) -> None:
    location = await create(client, 8)
    good, bad = b"abcd", b"abcX"
    resp = await client.patch(
        location,
        data=bad,
        headers={**PATCH, "Upload-Offset": "0", "Upload-Checksum": f"sha256 {sha256_b64(good)}"},
    )
    assert resp.status == 460
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert (await client.head(location, headers=TUS)).headers["Upload-Offset"] == "0"

    resp = await client.patch(
        location,
        data=good,
        headers={**PATCH, "Upload-Offset": "0", "Upload-Checksum": f"sha256 {sha256_b64(good)}"},
    )
    assert resp.status == 204
    assert resp.headers["Upload-Offset"] == "4"

    sha1 = base64.b64encode(hashlib.sha1(b"efgh").digest()).decode()
    resp = await client.patch(
        location, data=b"efgh", headers={**PATCH, "Upload-Offset": "4", "Upload-Checksum": f"sha1 {sha1}"}
    )
    assert resp.status == 400
    assert recorder.completed == []


async def test_termination(client: TestClient[Any, Any], tmp_path: Path) -> None:
    location = await create(client, 10)
    await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
    resp = await client.delete(location, headers=TUS)
    assert resp.status == 204
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert (await client.head(location, headers=TUS)).status == 404
    assert (await client.delete(location, headers=TUS)).status == 404
    assert list((tmp_path / "uploads").iterdir()) == []


async def test_another_owner_gets_404(client: TestClient[Any, Any]) -> None:
    location = await create(client, 10)
    mallory = {"X-Owner": "mallory"}
    assert (await client.head(location, headers={**TUS, **mallory})).status == 404
    resp = await client.patch(location, data=b"abc", headers={**PATCH, **mallory, "Upload-Offset": "0"})
    assert resp.status == 404
    assert (await client.delete(location, headers={**TUS, **mallory})).status == 404
    resp = await client.head(location, headers=TUS)
    assert resp.status == 200 and resp.headers["Upload-Offset"] == "0"


async def test_unknown_and_malformed_ids_are_404(client: TestClient[Any, Any]) -> None:
    for upload_id in ("0" * 32, "..%2F..%2Fetc", "ZZ" * 16):
        assert (await client.head(f"{BASE}/{upload_id}", headers=TUS)).status == 404


async def test_completion_refused_by_callback_discards_the_upload(
    client: TestClient[Any, Any], recorder: Recorder
) -> None:
    recorder.fail_with = web.HTTPUnprocessableEntity(text="sha256_mismatch")
    location = await create(client, 3)
    resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 422
    assert await resp.text() == "sha256_mismatch"
    assert resp.headers["Tus-Resumable"] == "1.0.0"
    assert (await client.head(location, headers=TUS)).status == 404
    assert len(recorder.completed) == 1


async def test_completion_crash_keeps_the_upload_for_a_retry(
    client: TestClient[Any, Any], recorder: Recorder
) -> None:
    recorder.fail_with = RuntimeError("database down")
    location = await create(client, 3)
    resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 500
    resp = await client.head(location, headers=TUS)
    assert resp.headers["Upload-Offset"] == "3"

    recorder.fail_with = None
    resp = await client.patch(location, data=b"", headers={**PATCH, "Upload-Offset": "3"})
    assert resp.status == 204
    assert "X-Media-Sha256" in resp.headers
    assert len(recorder.completed) == 2
    assert (await client.head(location, headers=TUS)).status == 404


async def test_empty_upload_completes_at_creation(client: TestClient[Any, Any], recorder: Recorder) -> None:
    resp = await client.post(BASE, headers={**TUS, "Upload-Length": "0"})
    assert resp.status == 201
    assert "X-Media-Sha256" in resp.headers
    assert [c[1] for c in recorder.completed] == [b""]


async def test_concurrent_patches_are_serialized(
    client: TestClient[Any, Any], recorder: Recorder, tmp_path: Path
) -> None:
    location = await create(client, 9)
    first_started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"abc"
        first_started.set()
        await asyncio.sleep(0.3)
        yield b"def"

    upload_id = location.rsplit("/", 1)[1]

    async def second() -> int:
        await first_started.wait()
        await until_held(tmp_path / "uploads", location)  # the first request's handler streams under it
        resp = await client.patch(location, data=b"xyz", headers={**PATCH, "Upload-Offset": "0"})
        return resp.status

    first = client.patch(location, data=slow(), headers={**PATCH, "Upload-Offset": "0"})
    r1, status2 = await asyncio.gather(first, second())
    assert (r1.status, status2) == (204, 409)  # the second waited for the lock, then saw the offset move
    assert (await client.head(location, headers=TUS)).headers["Upload-Offset"] == "6"
    assert (tmp_path / "uploads" / f"{upload_id}.data").read_bytes() == b"abcdef"
    assert recorder.completed == []


async def test_a_lock_held_by_another_process_gives_423(client: TestClient[Any, Any], tmp_path: Path) -> None:
    location = await create(client, 6)
    upload_id = location.rsplit("/", 1)[1]
    fd = os.open(tmp_path / "uploads" / f"{upload_id}.data", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another open file description behaves like another process
        resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
        assert resp.status == 423
    finally:
        os.close(fd)
    resp = await client.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
    assert resp.status == 204


async def test_state_survives_a_restart(
    tmp_path: Path, recorder: Recorder, aiohttp_client: AiohttpClient
) -> None:
    app1, _ = make_app(tmp_path / "uploads", recorder)
    c1 = await aiohttp_client(app1)
    location = await create(c1, 6, {"kind": "pills"})
    await c1.patch(location, data=b"abc", headers={**PATCH, "Upload-Offset": "0"})
    await c1.close()

    app2, _ = make_app(tmp_path / "uploads", recorder)  # a new process, or another instance
    c2 = await aiohttp_client(app2)
    resp = await c2.head(location, headers=TUS)
    assert resp.headers["Upload-Offset"] == "3"
    resp = await c2.patch(location, data=b"def", headers={**PATCH, "Upload-Offset": "3"})
    assert resp.status == 204
    assert recorder.completed[0][1:] == (b"abcdef", {"kind": "pills"})


async def test_purge_stale(tmp_path: Path, recorder: Recorder, aiohttp_client: AiohttpClient) -> None:
    app, endpoint = make_app(tmp_path / "uploads", recorder)
    c = await aiohttp_client(app)
    location = await create(c, 6)
    # The data of a creation whose request died with its process, and a lock file of an earlier
    # version: never published, they go once they are as old.
    orphan = tmp_path / "uploads" / f"{'a' * 32}.data"
    orphan.write_bytes(b"half a photo")
    legacy_lock = tmp_path / "uploads" / f"{'b' * 32}.lock"
    legacy_lock.touch()
    # Work files of a process that died between writing and renaming them.
    half_written = [tmp_path / "uploads" / f"{'c' * 32}.{suffix}.tmp" for suffix in ("info", "same")]
    for path in half_written:
        path.write_text("{}")
    # What a media job left when its worker died: its work files, or an earlier version's job directory.
    job_files = WorkFiles(tmp_path / "uploads")
    for name in ("full.jpg", "320.jpg"):
        job_files.path(name).write_bytes(b"pixels")
    job_dir = tmp_path / "uploads" / f"{EARLIER_JOB_DIR_PREFIX}k3j2"
    job_dir.mkdir()
    (job_dir / "320.jpg").write_bytes(b"pixels")
    leftovers = [*half_written, *(tmp_path / "uploads").glob(f"{WORK_PREFIX}*"), job_dir]
    assert len(leftovers) == 5
    assert await endpoint.purge_stale(3600) == 0
    assert orphan.exists() and legacy_lock.exists() and all(p.exists() for p in leftovers)
    assert await endpoint.purge_stale(0) == 1
    assert (await c.head(location, headers=TUS)).status == 404
    assert sorted((tmp_path / "uploads").iterdir()) == []


# --- a dropped connection, then the real tuspy client resumes ---------------------------------------


def held_by_server(upload_dir: Path, location: str) -> bool:
    """Whether a request holds the upload's lock: the server is streaming into it."""
    lock_path = upload_dir / f"{location.rsplit('/', 1)[1]}.data"
    if not lock_path.exists():
        return False
    fd = os.open(lock_path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


async def until_held(upload_dir: Path, location: str) -> None:
    async with asyncio.timeout(5):
        while not held_by_server(upload_dir, location):
            await asyncio.sleep(0.01)


async def send_partial_patch(
    host: str, port: int, path: str, total: int, body: bytes, hold: float = 0.1
) -> None:
    """Announce `total` bytes, send only `body`, wait `hold` seconds, then drop the connection."""
    _, writer = await asyncio.open_connection(host, port)
    head = (
        f"PATCH {path} HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Offset: 0\r\n"
        f"Content-Length: {total}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    await asyncio.sleep(hold)
    writer.close()
    await writer.wait_closed()


async def head_offset(client_url: str, location: str) -> int:
    async with aiohttp.ClientSession() as session, session.head(client_url + location, headers=TUS) as resp:
        return int(resp.headers["Upload-Offset"])


async def test_dropped_connection_keeps_bytes_and_tuspy_resumes(
    tmp_path: Path, recorder: Recorder, aiohttp_server: AiohttpServer
) -> None:
    app, _ = make_app(tmp_path / "uploads", recorder, write_buffer=64 * 1024)
    server = await aiohttp_server(app)
    root = f"http://{server.host}:{server.port}"
    data = os.urandom(300_000)
    src = tmp_path / "pills.jpg"
    src.write_bytes(data)

    stream = src.open("rb")  # tuspy leaves files it opens itself unclosed
    client = TusClient(root + BASE, headers={"X-Owner": "alice"})
    uploader = client.uploader(file_stream=stream, metadata={"kind": "pills"}, chunk_size=len(data))
    location_url = await asyncio.to_thread(uploader.create_url)
    location = location_url[len(root) :]

    assert server.port is not None
    await send_partial_patch(server.host, server.port, location, len(data), data[:120_000])
    offset = 0
    for _ in range(50):
        offset = await head_offset(root, location)
        if offset == 120_000:
            break
        await asyncio.sleep(0.05)
    assert offset == 120_000  # every byte that arrived before the drop was kept
    assert recorder.completed == []

    # A fresh client (as after a restart of the site) resumes from the server's offset.
    with stream:
        resumed = await asyncio.to_thread(
            TusClient(root + BASE, headers={"X-Owner": "alice"}).uploader,
            file_stream=stream,
            url=location_url,
            chunk_size=100_000,
            retries=0,
        )
        assert resumed.offset == offset
        await asyncio.to_thread(resumed.upload)

    assert len(recorder.completed) == 1
    assert recorder.completed[0][1] == data
    assert recorder.completed[0][2] == {"kind": "pills"}


async def test_head_during_a_broken_patch_reports_the_bytes_it_is_still_holding(
    tmp_path: Path, recorder: Recorder, aiohttp_server: AiohttpServer
) -> None:
    """A client whose link was cut asks for the offset before the server has noticed the cut: the
    answer waits for the broken request, so no byte it kept is sent twice."""
    app, _ = make_app(tmp_path / "uploads", recorder, write_buffer=1024 * 1024)
    server = await aiohttp_server(app)
    assert server.port is not None
    root = f"http://{server.host}:{server.port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(root + BASE, headers={**TUS, "Upload-Length": "300000"}) as resp:
            location = resp.headers["Location"]
        # 200,000 of 300,000 bytes, held in the server's write buffer until the connection drops.
        broken = asyncio.create_task(
            send_partial_patch(server.host, server.port, location, 300_000, os.urandom(200_000), hold=0.5)
        )
        await until_held(tmp_path / "uploads", location)
        async with session.head(root + location, headers=TUS) as resp:
            assert resp.status == 200
            assert resp.headers["Upload-Offset"] == "200000"
        await broken


async def test_a_stalled_client_releases_the_upload_after_the_idle_timeout(
    tmp_path: Path, recorder: Recorder, aiohttp_server: AiohttpServer
) -> None:
    app, _ = make_app(tmp_path / "uploads", recorder, idle_timeout=0.2, lock_timeout=5)
    server = await aiohttp_server(app)
    assert server.port is not None
    root = f"http://{server.host}:{server.port}"
    async with aiohttp.ClientSession() as session:
        async with session.post(root + BASE, headers={**TUS, "Upload-Length": "10"}) as resp:
            location = resp.headers["Location"]
        # The stalled request holds the upload; the next PATCH waits for the idle timeout, not forever.
        stalled = asyncio.create_task(
            send_partial_patch(server.host, server.port, location, 10, b"abcd", 1.0)
        )
        await until_held(tmp_path / "uploads", location)
        headers = {**PATCH, "Upload-Offset": "4"}
        async with session.patch(root + location, data=b"efghij", headers=headers) as resp:
            assert resp.status == 204
            assert resp.headers["Upload-Offset"] == "10"
        await stalled
    assert [c[1] for c in recorder.completed] == [b"abcdefghij"]


class Sha256Uploader(Uploader):
    """tuspy sends sha1 checksums by default; the server accepts sha256 only."""

    CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)


async def test_tuspy_upload_with_sha256_checksums(
    tmp_path: Path, recorder: Recorder, aiohttp_server: AiohttpServer
) -> None:
    app, _ = make_app(tmp_path / "uploads", recorder)
    server = await aiohttp_server(app)
    data = os.urandom(250_000)
    src = tmp_path / "video.mp4"
    src.write_bytes(data)
    client = TusClient(f"http://{server.host}:{server.port}{BASE}")
    with src.open("rb") as stream:
        uploader = Sha256Uploader(
            file_stream=stream,
            client=client,
            chunk_size=64 * 1024,
            metadata={"kind": "count_video", "filename": "Jane Roe.mp4"},
            upload_checksum=True,
        )
        await asyncio.to_thread(uploader.upload)
    assert [(c[1], c[2]["filename"]) for c in recorder.completed] == [(data, "Jane Roe.mp4")]


# --- the intended wiring: on_complete ingests the file, a refusal discards the upload -----------------


async def test_on_complete_ingests_and_a_refusal_discards(
    tmp_path: Path, aiohttp_client: AiohttpClient
) -> None:
    import io
    import json
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from server.media.errors import MediaRejected
    from server.media.ingest import ingest_media
    from server.media.store import LocalMediaStore

    store = LocalMediaStore(tmp_path / "media")
    executor = ThreadPoolExecutor(max_workers=1)

    async def authorize(request: web.Request, metadata: dict[str, str], length: int) -> None:
        if "sha256" not in metadata or "kind" not in metadata:
            raise web.HTTPBadRequest(text="sha256 and kind metadata are required")

    async def on_complete(request: web.Request, upload: TusUpload) -> dict[str, str]:
        try:
            media = await ingest_media(
                upload.data_path,
                claimed_sha256=upload.metadata["sha256"],
                kind=upload.metadata["kind"],
                filename=upload.metadata.get("filename", ""),
                store=store,
                executor=executor,
                max_image_pixels=50_000_000,
                max_video_seconds=60,
            )
        except MediaRejected as exc:
            body = json.dumps({"code": exc.code, "message": exc.message})
            raise web.HTTPUnprocessableEntity(text=body, content_type="application/json") from None
        return {"X-Media-Sha256": media.variants["full"]["sha256"]}

    endpoint = TusEndpoint(
        tmp_path / "uploads",
        max_size=1024 * 1024,
        base_path=BASE,
        authorize=authorize,
        owner_of=lambda request: "site-1",
        on_complete=on_complete,
    )
    app = web.Application()
    endpoint.add_routes(app.router)
    client = await aiohttp_client(app)

    async def upload(data: bytes, claimed: str) -> Any:
        location = await create(client, len(data), {"kind": "pills", "sha256": claimed, "filename": "x.jpg"})
        return await client.patch(location, data=data, headers={**PATCH, "Upload-Offset": "0"})

    try:
        buf = io.BytesIO()
        Image.new("RGB", (64, 48), "white").save(buf, "JPEG", comment=b"PATIENT")
        photo = buf.getvalue()
        resp = await upload(photo, hashlib.sha256(photo).hexdigest())
        assert resp.status == 204
        assert await store.exists(resp.headers["X-Media-Sha256"])

        resp = await upload(photo, hashlib.sha256(b"other").hexdigest())
        assert resp.status == 422
        assert (await resp.json())["code"] == "sha256_mismatch"
        assert sorted(p.name for p in (tmp_path / "uploads").iterdir()) == []
    finally:
        executor.shutdown()


# --- creation-with-upload ----------------------------------------------------------------------------


def same_file(metadata: Any) -> str | None:
    """As the server names a fill's photo: which file of which fill."""
    name = metadata.get("name")
    return str(name) if name else None


async def test_creation_with_upload_sends_a_file_in_one_request(
    client: TestClient[Any, Any], recorder: Recorder
) -> None:
    data = os.urandom(200_000)
    headers = {
        **PATCH,
        "Upload-Length": str(len(data)),
        "Upload-Metadata": encode_metadata({"kind": "pills"}),
        "Upload-Checksum": "sha256 " + sha256_b64(data),
    }
    resp = await client.post(BASE, data=data, headers=headers)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Upload-Offset"] == str(len(data))
    assert resp.headers["X-Media-Sha256"] == hashlib.sha256(data).hexdigest()
    assert [(c[1], c[2]) for c in recorder.completed] == [(data, {"kind": "pills"})]

    # A part of a file: created, the rest follows by PATCH at the offset the creation reported.
    resp = await client.post(BASE, data=data[:50_000], headers={**headers, "Upload-Checksum": ""})
    assert resp.status == 400  # an empty checksum is malformed, and nothing was created for it
    del headers["Upload-Checksum"]
    resp = await client.post(BASE, data=data[:50_000], headers=headers)
    assert resp.status == 201 and resp.headers["Upload-Offset"] == "50000"
    rest = await client.patch(
        resp.headers["Location"], data=data[50_000:], headers={**PATCH, "Upload-Offset": "50000"}
    )
    assert rest.status == 204
    assert len(recorder.completed) == 2 and recorder.completed[1][1] == data


async def test_creation_with_upload_refuses_a_body_of_another_type_or_a_bad_checksum(
    client: TestClient[Any, Any], recorder: Recorder, tmp_path: Path
) -> None:
    data = os.urandom(10_000)
    base = {**TUS, "Upload-Length": str(len(data))}
    resp = await client.post(BASE, data=data, headers={**base, "Content-Type": "image/jpeg"})
    assert resp.status == 415
    assert not list((tmp_path / "uploads").glob("*.info"))  # refused before anything was created

    resp = await client.post(
        BASE, data=data, headers={**base, **PATCH, "Upload-Checksum": "sha256 " + sha256_b64(b"other")}
    )
    assert resp.status == 460
    # The upload exists, empty: the client can send the bytes again where the answer says.
    head = await client.head(resp.headers["Location"], headers=TUS)
    assert head.headers["Upload-Offset"] == "0"
    assert recorder.completed == []


async def send_partial_creation(
    host: str, port: int, total: int, metadata: dict[str, str], body: bytes
) -> None:
    """A creation-with-upload that announces `total` bytes and breaks off after `body`."""
    _, writer = await asyncio.open_connection(host, port)
    head = (
        f"POST {BASE} HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
        f"Content-Type: application/offset+octet-stream\r\nUpload-Length: {total}\r\n"
        f"Upload-Metadata: {encode_metadata(metadata)}\r\nContent-Length: {total}\r\n\r\n"
    ).encode()
    writer.write(head + body)
    await writer.drain()
    await asyncio.sleep(0.1)
    writer.close()
    await writer.wait_closed()


async def test_a_broken_off_creation_is_found_again_and_resumed_not_resent(
    tmp_path: Path, recorder: Recorder, aiohttp_server: AiohttpServer
) -> None:
    """The client never learnt the Location; creating the same file again finds the upload."""
    app, _ = make_app(tmp_path / "uploads", recorder, write_buffer=64 * 1024, same_file=same_file)
    server = await aiohttp_server(app)
    assert server.port is not None
    root = f"http://{server.host}:{server.port}"
    data = os.urandom(300_000)
    meta = {"kind": "pills", "name": "fill-1/pills/" + hashlib.sha256(data).hexdigest()}
    await send_partial_creation(server.host, server.port, len(data), meta, data[:120_000])

    plain = {**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": encode_metadata(meta)}
    async with aiohttp.ClientSession() as session:
        location = ""
        for _ in range(50):  # the server may still be taking the broken request's bytes
            async with session.post(root + BASE, headers=plain) as resp:
                assert resp.status == 201
                location = resp.headers["Location"]
                if resp.headers["Upload-Offset"] == "120000":
                    break
            await asyncio.sleep(0.05)
        assert resp.headers["Upload-Offset"] == "120000"
        # Another owner, or another file, gets an upload of its own.
        async with session.post(root + BASE, headers={**plain, "X-Owner": "bob"}) as other:
            assert other.headers["Location"] != location and other.headers["Upload-Offset"] == "0"
        async with session.patch(
            root + location, data=data[120_000:], headers={**PATCH, "Upload-Offset": "120000"}
        ) as done:
            assert done.status == 204
    assert [c[1] for c in recorder.completed] == [data]
    # Finished: the same file again is a new upload (the hint went with the finished one).
    async with aiohttp.ClientSession() as session, session.post(root + BASE, headers=plain) as resp:
        assert resp.headers["Location"] != location and resp.headers["Upload-Offset"] == "0"


async def test_a_repeated_creation_with_upload_skips_the_bytes_already_held(
    tmp_path: Path, recorder: Recorder, aiohttp_client: AiohttpClient
) -> None:
    app, _ = make_app(tmp_path / "uploads", recorder, same_file=same_file)
    client = await aiohttp_client(app)
    data = os.urandom(100_000)
    meta = encode_metadata({"kind": "pills", "name": "fill-2/pills"})
    first = await client.post(
        BASE, data=data[:40_000], headers={**PATCH, "Upload-Length": str(len(data)), "Upload-Metadata": meta}
    )
    assert first.status == 201 and first.headers["Upload-Offset"] == "40000"
    again = await client.post(
        BASE,
        data=data,
        headers={
            **PATCH,
            "Upload-Length": str(len(data)),
            "Upload-Metadata": meta,
            "Upload-Checksum": "sha256 " + sha256_b64(data),
        },
    )
    assert again.status == 201, await again.text()
    assert again.headers["Location"] == first.headers["Location"]
    assert again.headers["Upload-Offset"] == str(len(data))
    assert [c[1] for c in recorder.completed] == [data]


async def test_a_same_file_hint_from_an_earlier_version_is_still_followed(
    tmp_path: Path, recorder: Recorder, aiohttp_client: AiohttpClient
) -> None:
    """Earlier versions wrote the hint as a file holding the bare upload id; now it is a second name
    of the upload's info file. An upload broken off before an upgrade resumes after it."""
    uploads = tmp_path / "uploads"
    app, _ = make_app(uploads, recorder, same_file=same_file)
    client = await aiohttp_client(app)
    data = os.urandom(100_000)
    headers = {
        **PATCH,
        "Upload-Length": str(len(data)),
        "Upload-Metadata": encode_metadata({"kind": "pills", "name": "fill-3/pills"}),
    }
    first = await client.post(BASE, data=data[:30_000], headers=headers)
    assert first.status == 201 and first.headers["Upload-Offset"] == "30000"
    upload_id = first.headers["Location"].rsplit("/", 1)[1]
    [hint] = uploads.glob("*.same")
    assert hint.stat().st_ino == (uploads / f"{upload_id}.info").stat().st_ino
    hint.unlink()
    hint.write_text(upload_id, "ascii")

    again = await client.post(BASE, data=data, headers=headers)
    assert again.status == 201, await again.text()
    assert again.headers["Location"] == first.headers["Location"]
    assert [c[1] for c in recorder.completed] == [data]
    assert not list(uploads.glob("*.same"))  # the hint went with the finished upload
