"""Media in an S3 bucket (moto's server, in its own process): photos sent over tus land in the bucket,
every server instance on the database serves them from it, whole and by range, and the fill suite
passes with the bucket as its store."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from server.config import ObjectStorage
from server.media.s3 import S3MediaStore
from tests.api import test_fill_lifecycle as fill_suite
from tests.api import test_media_hardening as media_suite
from tests.api.world import World, build_world, new_fill_id, photo, queued_fill, rx_body, two_nodes, upload
from tests.consult import test_consult_record as recording_suite
from tests.object_storage import blocking_client


def bucket_keys(settings: ObjectStorage) -> set[str]:
    listed = blocking_client(str(settings.endpoint_url)).list_objects_v2(Bucket=settings.bucket)
    return {o["Key"] for o in listed.get("Contents", [])}


async def test_photos_sent_over_tus_are_in_the_bucket_and_every_instance_serves_them(
    tmp_path: Path, postgres_url: str, object_storage: ObjectStorage
) -> None:
    async with two_nodes(tmp_path, postgres_url, object_storage=object_storage) as nodes:
        world = nodes.world
        tech = await world.device("tech_nd1")
        rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
        fill = await queued_fill(world, tech, rx["id"])
        keys = bucket_keys(object_storage)
        names = S3MediaStore(object_storage)
        served: set[str] = set()
        for server in (world.server, nodes.b):
            rph = await nodes.login(server, "nd_rph")
            for medium in fill["media"]:
                for variant in medium["variants"]:
                    whole = await rph.get(f"{medium['url']}?variant={variant}")
                    body = await whole.read()
                    assert whole.status == 200, body
                    assert whole.headers["Cache-Control"] == "no-store"
                    digest = hashlib.sha256(body).hexdigest()
                    assert whole.headers["ETag"] == f'"{digest}"'
                    assert names.key_for(digest) in keys
                    served.add(digest)
                    part = await rph.get(
                        f"{medium['url']}?variant={variant}", headers={"Range": "bytes=100-1123"}
                    )
                    assert part.status == 206
                    assert part.headers["Content-Range"] == f"bytes 100-1123/{len(body)}"
                    assert await part.read() == body[100:1124]
                    tail = await rph.get(f"{medium['url']}?variant={variant}", headers={"Range": "bytes=-10"})
                    assert tail.status == 206 and await tail.read() == body[-10:]
        # Every object in the bucket is a variant of these photos, and neither instance kept one on disk.
        assert {names.key_for(d) for d in served} == keys
        assert len(fill["media"]) == 3
        for node in ("a", "b"):
            data = tmp_path / node / "data"
            assert not (data / "media").exists()
            assert not [p for p in (data / "uploads").rglob("*") if p.is_file()]


async def test_a_bucket_that_fails_answers_503_and_the_upload_waits_to_be_completed_again(
    tmp_path: Path, sqlite_url: str, object_storage: ObjectStorage
) -> None:
    w = await build_world(tmp_path, sqlite_url, object_storage=object_storage)
    try:
        tech = await w.device("tech_nd1")
        rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
        fill_id = new_fill_id()
        await tech.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx["id"]})
        operator = blocking_client(str(object_storage.endpoint_url))
        operator.delete_bucket(Bucket=object_storage.bucket)  # gone, as in an outage or a revoked key

        data = photo("pills", 7)
        refused = await upload(tech, fill_id, "pills", data)
        assert refused.status == 503
        assert (await refused.json())["error"] == "storage_unavailable"

        operator.create_bucket(Bucket=object_storage.bucket)
        location = refused.request_info.url.path
        retried = await tech.request(
            "PATCH",
            location,
            headers={
                "Tus-Resumable": "1.0.0",
                "Upload-Offset": str(len(data)),
                "Content-Type": "application/offset+octet-stream",
            },
        )
        assert retried.status == 204, await retried.text()
        fill = await tech.json("GET", f"/api/v1/fills/{fill_id}")
        assert [m["kind"] for m in fill["media"]] == ["pills"]
        assert bucket_keys(object_storage)
    finally:
        await w.close()


async def test_health_counts_no_media_folder_when_media_are_in_a_bucket(world: World) -> None:
    client = await world.anonymous()
    health = await (await client.get("/healthz")).json()
    assert set(health["free_bytes"]) == {"uploads", "database"}
    assert world.services.storage.media is None


@pytest.fixture
async def world(tmp_path: Path, sqlite_url: str, object_storage: ObjectStorage) -> AsyncIterator[World]:
    """The fill suite's world with its media in a bucket (on SQLite: the store is what changes)."""
    w = await build_world(tmp_path, sqlite_url, object_storage=object_storage)
    try:
        yield w
    finally:
        await w.close()


# The fill suite once more, the count video's probe, poster and ranged read, and a consultation's
# recording, collected here so that they run on this module's world.
globals().update({name: test for name, test in vars(fill_suite).items() if name.startswith("test_")})
test_video_evidence_is_probed_and_gets_a_poster = media_suite.test_video_evidence_is_probed_and_gets_a_poster
test_a_recording_is_media_of_its_consultation_for_the_two_parties_and_admins = (
    recording_suite.test_a_recording_is_media_of_its_consultation_for_the_two_parties_and_admins
)
