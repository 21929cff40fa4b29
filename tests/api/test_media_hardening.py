"""Uploads are validated before anything trusts them: each bad file is a clear 4xx, nothing is stored."""

from __future__ import annotations

import asyncio
import hashlib
import io
import os
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import func, select
from tusclient.client import TusClient
from tusclient.uploader import Uploader

from demo import photos
from server.db.models import Media
from tests.api.world import (
    REQUIRED,
    User,
    World,
    build_world,
    new_fill_id,
    photo,
    rx_body,
    tus_metadata,
    upload,
)


def _png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims a huge size: a decompression bomb."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def _media_files(world: World) -> list[Path]:
    root = world.services.config.media_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def _draft(world: World) -> tuple[User, str]:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill_id = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx["id"]})
    return tech, fill_id


GOOD = photo("pills", 1)
BAD_FILES = {
    "decompression_bomb": (_png_declaring(30000, 30000), None, 413),
    "truncated_jpeg": (GOOD[: len(GOOD) // 2], None, 422),
    "html_named_jpg": (b"<html><script>alert(1)</script></html>" * 20, None, 415),
    "wrong_sha256": (GOOD, hashlib.sha256(b"something else").hexdigest(), 422),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
async def test_bad_upload_is_refused_and_nothing_is_stored_or_queued(world: World, case: str) -> None:
    tech, fill_id = await _draft(world)
    data, claimed, status = BAD_FILES[case]
    resp = await upload(tech, fill_id, "pills", data, "pills.jpg", claimed_sha256=claimed)
    body = await resp.json()
    assert resp.status == status, (resp.status, body)
    assert body["message"]  # a sentence a technician can act on
    assert _media_files(world) == []
    async with world.services.db.read() as s:
        assert (await s.execute(select(func.count()).select_from(Media))).scalar() == 0
    refused = await tech.json("POST", f"/api/v1/fills/{fill_id}/submit", 409)
    assert refused["error"] == "media_missing"


async def test_empty_and_oversize_uploads_are_refused_at_creation(world: World) -> None:
    tech, fill_id = await _draft(world)
    empty = await upload(tech, fill_id, "pills", b"", "pills.jpg")
    assert empty.status == 400 and (await empty.json())["error"] == "empty"
    config = world.services.config
    # Said in the technician's words: the view's name and what to do, not the upload's internal kind.
    for kind, limit, says in (
        (
            "pills",
            config.max_image_bytes,
            "The pills photo may be at most 30 MB; take it again at a lower resolution.",
        ),
        (
            "count_video",
            config.max_video_bytes,
            "The count video may be at most 200 MB; record a shorter one.",
        ),
    ):
        resp = await tech.post(
            "/api/v1/uploads",
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Length": str(limit + 1),
                "Upload-Metadata": tus_metadata(fill_id=fill_id, kind=kind, filename="x", sha256="0" * 64),
            },
        )
        assert resp.status == 413
        assert (await resp.json())["message"] == says
    assert _media_files(world) == []


async def test_stored_variants_carry_no_exif_gps_or_comment(world: World) -> None:
    tech, fill_id = await _draft(world)
    image = photos.vial_label_photo(
        "RX1", "Jane Q. Patient", "Metformin", "500 mg", "Take 1 daily", 60, size=(1600, 1200)
    )
    data = photos.to_jpeg_bytes(image, 90, exif_gps=True, comment="Patient Jane Q. Patient", orientation=6)
    with Image.open(io.BytesIO(data)) as sent:
        assert sent.getexif().get_ifd(0x8825)  # the phone's GPS position is in what was sent
    assert b"Jane" in data
    resp = await upload(tech, fill_id, "vial_label", data, "IMG_0001.jpg")
    assert resp.status == 204, await resp.text()
    files = _media_files(world)
    assert len(files) >= 2
    for path in files:
        raw = path.read_bytes()
        assert b"Jane" not in raw and b"Exif" not in raw
        with Image.open(io.BytesIO(raw)) as im:
            assert not im.getexif()
            assert "comment" not in im.info
            assert im.height > im.width  # orientation 6 was applied: the portrait stands upright


async def test_interrupted_upload_is_resumed_by_a_tus_client(world: World, tmp_path: Path) -> None:
    tech, fill_id = await _draft(world)
    data = photos.to_jpeg_bytes(photos.pills_photo(20, size=(2000, 1500)), 92)
    sha = hashlib.sha256(data).hexdigest()
    base = str(world.server.make_url("/api/v1/uploads"))
    headers = {"Authorization": f"Bearer {world.tokens['tech_nd1']}"}

    class Sha256Uploader(Uploader):
        CHECKSUM_ALGORITHM_PAIR = ("sha256", hashlib.sha256)

    meta = {"fill_id": fill_id, "kind": "pills", "filename": "pills.jpg", "sha256": sha}
    with io.BytesIO(data) as stream:
        first = Sha256Uploader(
            file_stream=stream,
            client=TusClient(base, headers=headers),
            metadata=meta,
            chunk_size=len(data) // 3,
            upload_checksum=True,
        )
        await asyncio.to_thread(first.upload_chunk)  # one chunk, then the link "drops"
        url = first.url
    assert url is not None
    from yarl import URL

    head = await tech.request("HEAD", URL(url).path, headers={"Tus-Resumable": "1.0.0"})
    offset = int(head.headers["Upload-Offset"])
    assert 0 < offset < len(data)
    with io.BytesIO(data) as stream:
        resumed = await asyncio.to_thread(
            Sha256Uploader,
            file_stream=stream,
            client=TusClient(base, headers=headers),
            url=url,
            chunk_size=256 * 1024,
            upload_checksum=True,
        )
        assert resumed.offset == offset  # continues from the server's offset, not from zero
        await asyncio.to_thread(resumed.upload)
    fill = await tech.json("GET", f"/api/v1/fills/{fill_id}")
    assert [m["kind"] for m in fill["media"]] == ["pills"]
    assert fill["media"][0]["sha256"] == sha
    for kind in REQUIRED[:1] + REQUIRED[2:]:
        assert (await upload(tech, fill_id, kind, photo(kind))).status == 204
    assert (await tech.json("POST", f"/api/v1/fills/{fill_id}/submit"))["state"] == "queued"


async def test_another_user_cannot_touch_an_upload(world: World) -> None:
    tech, fill_id = await _draft(world)
    from tests.api.world import sha256, tus_metadata

    created = await tech.post(
        "/api/v1/uploads",
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Length": str(len(GOOD)),
            "Upload-Metadata": tus_metadata(
                fill_id=fill_id, kind="pills", filename="p.jpg", sha256=sha256(GOOD)
            ),
        },
    )
    location = created.headers["Location"]
    other = await world.device("tech_nd2")
    resp = await other.request(
        "PATCH",
        location,
        data=GOOD,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert resp.status == 404
    # Nor can another site add media to this site's fill.
    meta = tus_metadata(fill_id=fill_id, kind="pills", filename="p.jpg", sha256=sha256(GOOD))
    refused = await other.post(
        "/api/v1/uploads",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(GOOD)), "Upload-Metadata": meta},
    )
    assert refused.status == 404


async def test_video_evidence_is_probed_and_gets_a_poster(world: World, tmp_path: Path) -> None:
    tech, fill_id = await _draft(world)
    video = tmp_path / "count.mp4"
    photos.count_video(video, seconds=1.5)
    resp = await upload(tech, fill_id, "count_video", video.read_bytes(), "count.mp4")
    assert resp.status == 204, await resp.text()
    fill = await tech.json("GET", f"/api/v1/fills/{fill_id}")
    media = fill["media"][0]
    assert media["kind"] == "count_video" and 1.0 <= media["duration_seconds"] <= 2.0
    assert set(media["variants"]) >= {"full", "poster"}
    poster = await tech.get(f"{media['url']}?variant=poster")
    assert poster.status == 200 and poster.content_type == "image/jpeg"
    ranged = await tech.get(media["url"], headers={"Range": "bytes=0-99"})
    assert ranged.status == 206 and len(await ranged.read()) == 100
    # A photo sent as a video, or a video sent as a photo, is refused.
    wrong = await upload(tech, fill_id, "pills", video.read_bytes(), "count.jpg")
    assert wrong.status in (415, 422)
    # Submitted with its photos, the fill's row in the queue counts them and the video apart.
    for i, kind in enumerate(REQUIRED):
        assert (await upload(tech, fill_id, kind, photo(kind, 70 + i))).status == 204
    await tech.json("POST", f"/api/v1/fills/{fill_id}/submit")
    queue = await (await world.login("nd_rph")).json("GET", "/api/v1/queue")
    assert [(f["id"], f["images"], f["videos"]) for f in queue["fills"]] == [(fill_id, len(REQUIRED), 1)]


@pytest.mark.parametrize("low_on_space", [True, False])
async def test_an_upload_abandoned_ten_minutes_is_cleared_only_while_space_is_low(
    tmp_path: Path, low_on_space: bool
) -> None:
    # Every data path counts as short of room when the floor is higher than any disk.
    floor = 2**62 if low_on_space else 0
    database = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}"
    world = await build_world(tmp_path, database, min_free_bytes=floor)
    try:
        tech, fill_id = await _draft(world)
        meta = tus_metadata(fill_id=fill_id, kind="pills", filename="pills.jpg", sha256="0" * 64)
        created = await tech.post(
            "/api/v1/uploads",
            headers={"Tus-Resumable": "1.0.0", "Upload-Length": "1000", "Upload-Metadata": meta},
        )
        assert created.status == 201
        uploads = world.services.config.upload_dir
        (data_file,) = uploads.glob("*.data")
        eleven_minutes_ago = time.time() - 11 * 60
        os.utime(data_file, (eleven_minutes_ago, eleven_minutes_ago))
        # The sweep runs every 0.2 s here: five sweeps show a kept upload is kept.
        deadline = time.monotonic() + (5 if low_on_space else 1)
        while data_file.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert data_file.exists() is not low_on_space
        assert bool(list(uploads.glob("*.info"))) is not low_on_space
    finally:
        await world.close()
