"""What every MediaStore promises, proved on the local folder and on an S3 bucket (moto's server, in its
own process); then what only the bucket adds: encryption requested, keys under the prefix, a bad bucket
named at start, settings from the environment."""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import pickle
from collections.abc import AsyncIterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import pytest

from server.config import Config, ObjectStorage
from server.media.errors import MediaNotFound, ObjectStorageError
from server.media.s3 import S3MediaStore
from server.media.store import Handover, LocalMediaStore, MediaStore
from tests.object_storage import blocking_client


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture(params=["local", "s3"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MediaStore]:
    made: MediaStore
    if request.param == "local":
        made = LocalMediaStore(tmp_path / "media")
    else:
        made = S3MediaStore(request.getfixturevalue("object_storage"))
    await made.open()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def bucket_store(object_storage: ObjectStorage) -> AsyncIterator[S3MediaStore]:
    made = S3MediaStore(object_storage)
    await made.open()
    try:
        yield made
    finally:
        await made.close()


def put_in_worker(store: MediaStore, src: Path, sha256: str) -> str:
    """Runs in a worker process: the store arrived pickled, as a media worker gets it."""
    return store.put_file_blocking(src, sha256=sha256, handover=Handover.GIVES)


# --- the contract ----------------------------------------------------------------------------------


def test_each_store_implements_the_protocol(store: MediaStore) -> None:
    assert isinstance(store, MediaStore)


async def test_bytes_are_stored_under_their_sha256_once(store: MediaStore) -> None:
    data = b"evidence bytes"
    digest = await store.put_bytes(data)
    assert digest == sha(data)
    assert await store.exists(digest)
    assert await store.read(digest) == data
    assert await store.put_bytes(data) == digest  # idempotent
    assert await store.size(digest) == len(data)


async def test_a_file_is_stored_whichever_way_it_is_handed_over(store: MediaStore, tmp_path: Path) -> None:
    for i, handover in enumerate(Handover):
        src = tmp_path / f"variant-{i}.jpg"
        data = f"variant {handover.name}".encode() * 1000
        src.write_bytes(data)
        given = sha(data) if handover is not Handover.KEEPS else None
        digest = await asyncio.to_thread(store.put_file_blocking, src, sha256=given, handover=handover)
        assert digest == sha(data)
        assert await store.read(digest) == data
    kept = tmp_path / "kept.bin"
    kept.write_bytes(b"kept by its caller")
    assert await store.put_file(kept) == sha(b"kept by its caller")
    assert kept.read_bytes() == b"kept by its caller"


async def test_a_worker_process_stores_through_a_pickled_store(store: MediaStore, tmp_path: Path) -> None:
    data = b"made by a media worker" * 500
    src = tmp_path / "work-file.jpg"
    src.write_bytes(data)
    copy = pickle.loads(pickle.dumps(store))
    assert type(copy) is type(store)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("forkserver")) as pool:
        digest = await loop.run_in_executor(pool, put_in_worker, store, src, sha(data))
    assert digest == sha(data)
    assert await store.read(digest) == data


async def test_byte_ranges_for_seeking(store: MediaStore) -> None:
    data = bytes(range(256)) * 40
    digest = await store.put_bytes(data)
    assert await store.read(digest, 100, 50) == data[100:150]
    assert await store.read(digest, 0, 1) == data[:1]
    assert await store.read(digest, 5000) == data[5000:]
    assert await store.read(digest, len(data) - 10, 50) == data[-10:]  # fewer past its end
    assert await store.read(digest, len(data) + 5, 10) == b""  # none from past its end
    assert await store.read(digest, 10, 0) == b""


async def test_a_missing_object_is_absent_and_unreadable(store: MediaStore) -> None:
    missing = sha(b"never stored")
    assert not await store.exists(missing)
    with pytest.raises(MediaNotFound):
        await store.size(missing)
    with pytest.raises(MediaNotFound):
        await store.read(missing)
    with pytest.raises(MediaNotFound):
        await store.read(missing, 10, 5)
    with pytest.raises(MediaNotFound):
        await store.read(missing, 0, 0)


async def test_an_object_is_deleted_once_and_a_second_deletion_says_it_was_absent(
    store: MediaStore,
) -> None:
    digest = await store.put_bytes(b"to be deleted")
    assert await store.delete(digest) is True
    assert not await store.exists(digest)
    assert await store.delete(digest) is False, "nothing was there: nothing is counted as removed"
    with pytest.raises(MediaNotFound):
        await store.read(digest)


async def test_a_store_that_never_held_an_object_says_so_when_asked_to_delete_it(store: MediaStore) -> None:
    assert await store.delete(sha(b"stored elsewhere")) is False


@pytest.mark.parametrize("bad", ["../../etc/passwd", "A" * 64, "a" * 63, "", "a" * 64 + "/"])
async def test_a_malformed_sha256_is_refused_before_any_lookup(store: MediaStore, bad: str) -> None:
    with pytest.raises(ValueError):
        await store.exists(bad)
    with pytest.raises(ValueError):
        await store.read(bad)
    with pytest.raises(ValueError):
        await store.delete(bad)


async def test_concurrent_puts_of_the_same_content_store_it_once(store: MediaStore) -> None:
    digests = await asyncio.gather(*(store.put_bytes(b"same") for _ in range(8)))
    assert set(digests) == {sha(b"same")}
    assert await store.read(sha(b"same")) == b"same"


# --- what the bucket adds --------------------------------------------------------------------------


async def test_bytes_that_are_not_their_sha256_are_refused_and_nothing_stored(
    bucket_store: S3MediaStore, tmp_path: Path
) -> None:
    src = tmp_path / "changed.jpg"
    src.write_bytes(b"the bytes as they are now")
    claimed = sha(b"the bytes as they were hashed")
    for handover in Handover:
        with pytest.raises(OSError, match="not those of the SHA-256"):
            await asyncio.to_thread(bucket_store.put_file_blocking, src, sha256=claimed, handover=handover)
    assert not await bucket_store.exists(claimed)
    assert not await bucket_store.exists(sha(src.read_bytes()))


async def test_objects_are_encrypted_at_rest_and_named_under_the_prefix(
    bucket_store: S3MediaStore, object_storage: ObjectStorage
) -> None:
    digest = await bucket_store.put_bytes(b"a vial label")
    client = blocking_client(str(object_storage.endpoint_url))
    listed = client.list_objects_v2(Bucket=object_storage.bucket)["Contents"]
    assert [o["Key"] for o in listed] == [f"media/{digest[:2]}/{digest[2:4]}/{digest}"]
    head = client.head_object(Bucket=object_storage.bucket, Key=listed[0]["Key"])
    assert head["ServerSideEncryption"] == "AES256"


async def test_a_kms_key_is_asked_for_when_configured(object_storage: ObjectStorage, tmp_path: Path) -> None:
    store = S3MediaStore(replace(object_storage, encryption="aws:kms", kms_key_id="alias/telepharmacy"))
    src = tmp_path / "recording.mp4"
    src.write_bytes(b"consented recording")
    digest = await asyncio.to_thread(store.put_file_blocking, src)
    head = blocking_client(str(object_storage.endpoint_url)).head_object(
        Bucket=object_storage.bucket, Key=store.key_for(digest)
    )
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"].endswith("alias/telepharmacy")


def test_each_store_names_where_its_objects_are_for_an_operator(
    object_storage: ObjectStorage, tmp_path: Path
) -> None:
    assert LocalMediaStore(tmp_path / "media").where() == f"the media folder {tmp_path / 'media'}"
    named = S3MediaStore(object_storage).where()
    assert named == f"the bucket {object_storage.bucket!r} under 'media/'"
    assert "test-secret-key" not in named
    assert S3MediaStore(replace(object_storage, prefix="")).where() == f"the bucket {object_storage.bucket!r}"


async def test_a_missing_bucket_stops_the_store_from_opening(object_storage: ObjectStorage) -> None:
    store = S3MediaStore(replace(object_storage, bucket="no-such-bucket"))
    with pytest.raises(ObjectStorageError, match="no-such-bucket"):
        await store.open()
    await store.close()


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Config.from_env(tmp_path).object_storage is None
    monkeypatch.setenv("TP_S3_BUCKET", "pharmacy-media")
    monkeypatch.setenv("TP_S3_PREFIX", "prod")
    monkeypatch.setenv("TP_S3_ENDPOINT_URL", "http://minio:9000")
    monkeypatch.setenv("TP_S3_KMS_KEY_ID", "key-1")
    settings = Config.from_env(tmp_path).object_storage
    assert settings is not None
    assert (settings.bucket, settings.key_prefix, settings.endpoint_url) == (
        "pharmacy-media",
        "prod/",
        "http://minio:9000",
    )
    assert (settings.encryption, settings.kms_key_id, settings.access_key_id) == ("aws:kms", "key-1", None)
    assert "secret" not in repr(ObjectStorage("b", access_key_id="k", secret_access_key="secret"))


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"encryption": "none"}, "TP_S3_SSE"),
        ({"kms_key_id": "key-1"}, "TP_S3_SSE must be aws:kms"),
        ({"access_key_id": "only-half"}, "go together"),
        ({"prefix": "/abs"}, "TP_S3_PREFIX"),
        ({"bucket": " "}, "TP_S3_BUCKET"),
    ],
)
def test_bad_settings_stop_the_server_naming_the_setting(changes: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        ObjectStorage(**{"bucket": "b", **changes})
