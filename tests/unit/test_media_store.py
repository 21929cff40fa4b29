"""Content-addressed store (server.media.store) and upload ingestion (server.media.ingest)."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import io
import multiprocessing
import os
import signal
import struct
import zlib
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, TypeVar

import av
import pytest
from PIL import ExifTags, Image

from server.media.errors import MediaNotFound, MediaRejected
from server.media.ingest import IngestedMedia, ingest_media
from server.media.store import Handover, LocalMediaStore, MediaStore
from server.media.workers import WORKER_NICENESS, make_executor
from server.media.workfiles import WORK_PREFIX

T = TypeVar("T")

# PyAV leaves from_image unannotated; one typed alias keeps strict mypy quiet.
frame_from_image: Any = av.VideoFrame.from_image

# --- store -----------------------------------------------------------------------------------------


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stored_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


async def test_put_bytes_is_content_addressed_and_idempotent(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    data = b"evidence bytes"
    digest = await store.put_bytes(data)

    assert digest == sha(data)
    expected = tmp_path / "media" / digest[:2] / digest[2:4] / digest
    assert store.path_for(digest) == expected
    assert expected.read_bytes() == data
    assert await store.exists(digest)
    assert await store.read(digest) == data

    assert await store.put_bytes(data) == digest
    assert stored_files(tmp_path / "media") == [expected]


async def test_put_file_copies_and_leaves_no_temporary_files(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    src = tmp_path / "variant.jpg"
    src.write_bytes(b"x" * 3_000_000)
    digest = await store.put_file(src)
    assert digest == sha(src.read_bytes())
    assert src.exists()  # a copy, not a move
    assert await store.put_file(src) == digest
    files = stored_files(tmp_path / "media")
    assert [f.name for f in files] == [digest]


def test_a_file_given_to_the_store_is_taken_over(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    work = tmp_path / "work"
    work.mkdir()
    first, second = work / "a.jpg", work / "b.jpg"
    first.write_bytes(b"y" * 100_000)
    second.write_bytes(b"y" * 100_000)
    digest = store.put_file_blocking(first, handover=Handover.GIVES)
    assert digest == sha(b"y" * 100_000)
    assert not first.exists()  # renamed into the store, not copied
    assert (
        store.put_file_blocking(second, handover=Handover.GIVES) == digest
    )  # already stored: nothing changes
    assert second.exists()
    files = stored_files(tmp_path / "media")
    assert [f.name for f in files] == [digest]
    assert files[0].read_bytes() == b"y" * 100_000


def test_a_file_kept_unchanged_is_stored_under_a_second_name(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    src = tmp_path / "upload.data"
    src.write_bytes(b"z" * 100_000)
    digest = store.put_file_blocking(src, sha256=sha(b"z" * 100_000), handover=Handover.KEEPS_UNCHANGED)
    stored = store.path_for(digest)
    assert stored.read_bytes() == b"z" * 100_000
    assert src.read_bytes() == b"z" * 100_000  # left where it was
    assert stored.stat().st_ino == src.stat().st_ino  # no copy was written
    src.unlink()  # as its upload is removed afterwards: the stored object stays
    assert stored.read_bytes() == b"z" * 100_000


def test_a_file_kept_unchanged_is_copied_across_filesystems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def other_device(src: Any, dst: Any) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", other_device)
    store = LocalMediaStore(tmp_path / "media")
    src = tmp_path / "upload.data"
    src.write_bytes(b"w" * 50_000)
    digest = store.put_file_blocking(src, handover=Handover.KEEPS_UNCHANGED)
    stored = store.path_for(digest)
    assert digest == sha(b"w" * 50_000)
    assert stored.read_bytes() == b"w" * 50_000
    assert stored.stat().st_ino != src.stat().st_ino
    assert [f.name for f in stored_files(tmp_path / "media")] == [digest]


async def test_a_stored_object_is_readable_by_the_server_s_user_alone(tmp_path: Path) -> None:
    """Photos of patients' medicine: however an object comes in (written, copied, given, linked), no
    other user of the computer may read it."""
    store = LocalMediaStore(tmp_path / "media")
    given, linked, copied = tmp_path / "given", tmp_path / "linked", tmp_path / "copied"
    for n, path in enumerate((given, linked, copied)):
        path.write_bytes(bytes([n]) * 10_000)
        path.chmod(0o644)
    digests = [
        await store.put_bytes(b"written"),
        store.put_file_blocking(given, handover=Handover.GIVES),
        store.put_file_blocking(linked, handover=Handover.KEEPS_UNCHANGED),
        await store.put_file(copied),
    ]
    assert [oct(store.path_for(d).stat().st_mode & 0o777) for d in digests] == [oct(0o600)] * 4


async def test_ingest_runs_in_a_media_worker_process(tmp_path: Path, worker_pool: Executor) -> None:
    """The production path: the whole job (hash, decode, variants, store) in a forkserver worker."""
    data = tagged_photo_bytes()
    result, store = await ingest(tmp_path, data, executor=worker_pool)
    with pytest.raises(MediaRejected) as refused:
        await ingest(tmp_path, b"<html>not a photo</html>", executor=worker_pool)
    assert refused.value.code == "not_an_image"
    assert result.sha256 == sha(data)
    for variant in result.variants.values():
        stored = store.path_for(variant["sha256"])
        assert sha(stored.read_bytes()) == variant["sha256"]
    assert not list((tmp_path / "uploads").glob(f"{WORK_PREFIX}*"))  # the worker's work files are gone


async def test_media_workers_are_replaced_when_one_dies(tmp_path: Path, worker_pool: Executor) -> None:
    """A worker killed mid-job (a decoder crash, the out-of-memory killer) fails only the jobs it was
    running: the next photo runs on a new worker instead of every later upload failing."""
    loop = asyncio.get_running_loop()
    first = await loop.run_in_executor(worker_pool, os.getpid)
    with pytest.raises(BrokenProcessPool):
        await loop.run_in_executor(worker_pool, os.kill, first, signal.SIGKILL)
    result, _ = await ingest(tmp_path, tagged_photo_bytes(), executor=worker_pool)
    assert result.width == 640
    assert await loop.run_in_executor(worker_pool, os.getpid) != first


class DyingWorkers(ThreadPoolExecutor):
    """Runs jobs in a thread, but the first `deaths` of them fail as a job whose worker died does."""

    def __init__(self, deaths: int) -> None:
        super().__init__(max_workers=1)
        self.deaths = deaths
        self.jobs = 0

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        self.jobs += 1
        if self.jobs > self.deaths:
            return super().submit(fn, *args, **kwargs)
        dead: Future[T] = Future()
        dead.set_exception(BrokenProcessPool("A child process terminated abruptly"))
        return dead


async def test_a_photo_whose_worker_died_once_is_stored_one_that_kills_it_twice_is_refused(
    tmp_path: Path,
) -> None:
    """Another job may have killed the worker: a photo caught in that runs once more. A file that
    kills it again is what kills it, and is refused with a clear message; nothing is stored."""
    with DyingWorkers(deaths=1) as once:
        result, _ = await ingest(tmp_path / "once", tagged_photo_bytes(), executor=once)
    assert once.jobs == 2 and result.width == 640
    with DyingWorkers(deaths=2) as twice, pytest.raises(MediaRejected) as refused:
        await ingest(tmp_path / "twice", tagged_photo_bytes(), executor=twice)
    assert refused.value.code == "unprocessable" and "Capture it again" in refused.value.message
    assert stored_files(tmp_path / "twice" / "media") == []


async def test_media_workers_yield_the_cores_to_the_server(worker_pool: Executor) -> None:
    """Decoding takes the CPU the server's own process leaves: a worker runs at a lower priority."""
    worker = await asyncio.get_running_loop().run_in_executor(worker_pool, os.nice, 0)
    assert worker == min(19, os.nice(0) + WORKER_NICENESS)
    assert worker > os.nice(0) or os.nice(0) == 19


def minor_faults(pid: int) -> int:
    """Page faults a process has taken that the kernel served without disk I/O (Linux)."""
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


async def test_a_media_worker_reuses_its_memory_from_photo_to_photo(
    tmp_path: Path, worker_pool: Executor
) -> None:
    """A worker's decoded pixels go back to its heap for the next photo, not to the kernel: otherwise
    each photo taken sideways (turned upright, so decoded whole) costs about 6000 page faults, 24 MB
    of fresh zeroed pages, on top of its decode."""
    pid = await asyncio.get_running_loop().run_in_executor(worker_pool, os.getpid)
    photos = [tagged_photo_bytes((2000, 1500), orientation=o) for o in (6, 3, 6, 8)]
    await ingest(tmp_path, photos[0], executor=worker_pool)  # the worker's first photo sizes its heap
    before = minor_faults(pid)
    for data in photos[1:]:
        await ingest(tmp_path, data, executor=worker_pool)
    per_photo = (minor_faults(pid) - before) / len(photos[1:])
    assert per_photo < 150, per_photo


async def test_concurrent_puts_of_the_same_content(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    digests = await asyncio.gather(*(store.put_bytes(b"same") for _ in range(10)))
    assert set(digests) == {sha(b"same")}
    assert len(stored_files(tmp_path / "media")) == 1


@pytest.mark.parametrize(
    "bad",
    ["../../etc/passwd", "A" * 64, "a" * 63, "g" * 64, "", "a" * 64 + "/", "/" + "a" * 63],
)
async def test_malformed_sha_is_refused_before_touching_paths(tmp_path: Path, bad: str) -> None:
    store = LocalMediaStore(tmp_path / "media")
    with pytest.raises(ValueError):
        await store.exists(bad)
    with pytest.raises(ValueError):
        store.path_for(bad)
    with pytest.raises(ValueError):
        await store.read(bad)


async def test_missing_object(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    missing = sha(b"never stored")
    assert not await store.exists(missing)
    assert not store.path_for(missing).exists()
    with pytest.raises(MediaNotFound):
        await store.read(missing)


async def test_an_object_is_read_by_range_sized_and_deleted(tmp_path: Path) -> None:
    store = LocalMediaStore(tmp_path / "media")
    data = bytes(range(256)) * 40
    digest = await store.put_bytes(data)
    assert await store.size(digest) == len(data)
    assert await store.read(digest) == data
    assert await store.read(digest, 100, 50) == data[100:150]
    assert await store.read(digest, len(data) - 10, 50) == data[-10:]  # fewer past its end
    assert await store.delete(digest) is True
    assert not await store.exists(digest)
    assert await store.delete(digest) is False  # absent: nothing happens
    with pytest.raises(MediaNotFound):
        await store.size(digest)
    assert stored_files(tmp_path / "media") == []


def test_local_store_implements_the_protocol(tmp_path: Path) -> None:
    assert isinstance(LocalMediaStore(tmp_path), MediaStore)


# --- ingest ----------------------------------------------------------------------------------------


@pytest.fixture
def executor() -> Iterator[Executor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


@pytest.fixture
def worker_pool() -> Iterator[Executor]:
    """One media worker process, as the server starts them."""
    pool = make_executor(1)
    try:
        yield pool
    finally:
        pool.shutdown()


def tagged_photo_bytes(size: tuple[int, int] = (640, 480), orientation: int = 1) -> bytes:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 21.0)}
    buf = io.BytesIO()
    im = Image.linear_gradient("L").resize(size).convert("RGB")
    im.save(buf, "JPEG", quality=90, exif=exif, comment=b"PATIENT JOHN DOE")
    return buf.getvalue()


def small_video_bytes(tmp_path: Path, seconds: float = 1.0) -> bytes:
    path = tmp_path / "gen.mp4"
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height = 160, 120
        stream.pix_fmt = "yuv420p"
        for i in range(int(seconds * 10)):
            out.mux(stream.encode(frame_from_image(Image.new("RGB", (160, 120), (i * 20, 80, 80)))))
        out.mux(stream.encode(None))
    return path.read_bytes()


async def ingest(
    tmp_path: Path,
    data: bytes,
    *,
    kind: str = "pills",
    claimed: str | None = None,
    executor: Executor,
    max_image_pixels: int = 50_000_000,
    max_video_seconds: float = 60.0,
) -> tuple[IngestedMedia, LocalMediaStore]:
    uploads = tmp_path / "uploads"
    uploads.mkdir(parents=True, exist_ok=True)
    upload = uploads / "0123456789abcdef0123456789abcdef.data"
    upload.write_bytes(data)
    store = LocalMediaStore(tmp_path / "media")
    result = await ingest_media(
        upload,
        claimed_sha256=claimed if claimed is not None else sha(data),
        kind=kind,
        filename="Jane Roe pills.jpg",
        store=store,
        executor=executor,
        max_image_pixels=max_image_pixels,
        max_video_seconds=max_video_seconds,
    )
    return result, store


async def test_ingest_photo_stores_metadata_free_variants_not_the_original(
    tmp_path: Path, executor: Executor
) -> None:
    data = tagged_photo_bytes(orientation=6)
    result, store = await ingest(tmp_path, data, executor=executor)

    assert result.sha256 == sha(data)
    assert result.content_type == "image/jpeg"
    assert result.bytes == len(data)
    assert (result.width, result.height) == (480, 640)
    assert result.duration_seconds is None
    assert set(result.variants) == {"full", "2048", "320"}
    assert result.variants["2048"] == result.variants["full"]
    assert not await store.exists(result.sha256)  # the original carries GPS; it is not kept
    for variant in result.variants.values():
        stored = await store.read(variant["sha256"])
        assert sha(stored) == variant["sha256"]
        assert b"PATIENT" not in stored and b"Exif" not in stored
        with Image.open(io.BytesIO(stored)) as im:
            assert im.size == (variant["width"], variant["height"])
    assert result.quality["mean_luminance"] > 0
    assert not list((tmp_path / "uploads").glob(f"{WORK_PREFIX}*"))  # work files removed


async def test_a_photo_stored_already_leaves_no_work_files(tmp_path: Path, executor: Executor) -> None:
    # The second time, the store holds every variant already and takes none of the new work files.
    data = tagged_photo_bytes((900, 700), orientation=6)
    first, _ = await ingest(tmp_path, data, executor=executor)
    again, _ = await ingest(tmp_path, data, executor=executor)
    assert again.variants == first.variants
    assert [p.name for p in (tmp_path / "uploads").iterdir()] == ["0123456789abcdef0123456789abcdef.data"]
    assert len(stored_files(tmp_path / "media")) == 2  # the stripped photo and its thumbnail


async def test_ingest_keeps_a_clean_photo_as_the_upload_itself(tmp_path: Path, executor: Executor) -> None:
    # As the site client sends photos: a plain JFIF header and nothing to strip. The stored evidence is
    # the uploaded file (a second name for it), not a copy written again.
    buf = io.BytesIO()
    Image.linear_gradient("L").resize((640, 480)).convert("RGB").save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    result, store = await ingest(tmp_path, data, executor=executor)
    upload = tmp_path / "uploads" / "0123456789abcdef0123456789abcdef.data"
    full = result.variants["full"]
    assert full["sha256"] == result.sha256 == sha(data)
    stored = store.path_for(full["sha256"])
    assert stored.read_bytes() == data
    assert stored.stat().st_ino == upload.stat().st_ino
    assert upload.read_bytes() == data  # the upload is its endpoint's to remove
    assert not list((tmp_path / "uploads").glob(f"{WORK_PREFIX}*"))


async def test_ingest_video(tmp_path: Path, executor: Executor) -> None:
    data = small_video_bytes(tmp_path)
    result, store = await ingest(tmp_path, data, kind="count_video", executor=executor)
    assert result.content_type == "video/mp4"
    assert result.duration_seconds == pytest.approx(1.0, abs=0.15)
    assert set(result.variants) == {"full", "poster"}
    assert result.variants["full"]["content_type"] == "video/mp4"
    assert result.variants["poster"]["content_type"] == "image/jpeg"
    for variant in result.variants.values():
        assert await store.exists(variant["sha256"])
    assert not await store.exists(result.sha256)


async def test_ingest_runs_in_a_process_pool(tmp_path: Path) -> None:
    # Everything sent to the pool must pickle: the job, its result and MediaRejected.
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        result, _ = await ingest(tmp_path / "ok", tagged_photo_bytes(), executor=pool)
        assert result.variants["320"]["width"] == 320
        with pytest.raises(MediaRejected) as info:
            await ingest(tmp_path / "bad", b"<html>not a photo</html>", executor=pool)
        assert info.value.code == "not_an_image"


def bomb_png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", 30000, 30000)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def truncated_jpeg() -> bytes:
    data = tagged_photo_bytes((800, 600))
    return data[: len(data) // 2]


REFUSALS = {
    "decompression_bomb": (bomb_png(), "pills", {}),
    "truncated": (truncated_jpeg(), "pills", {}),
    "not_an_image": (b"<!doctype html><title>photo.jpg</title>", "stock_bottle", {}),
    "empty": (b"", "vial_label", {}),
    "too_many_pixels": (tagged_photo_bytes((1200, 1000)), "pills", {"max_image_pixels": 1_000_000}),
    "sha256_mismatch": (tagged_photo_bytes(), "pills", {"claimed": sha(b"something else")}),
    "not_a_video": (tagged_photo_bytes(), "count_video", {}),
    "unknown_kind": (tagged_photo_bytes(), "selfie", {}),
}


@pytest.mark.parametrize("code", sorted(REFUSALS))
async def test_ingest_refusals_leave_nothing_behind(tmp_path: Path, executor: Executor, code: str) -> None:
    data, kind, extra = REFUSALS[code]
    with pytest.raises(MediaRejected) as info:
        await ingest(tmp_path, data, kind=kind, executor=executor, **extra)  # type: ignore[arg-type]
    assert info.value.code == code
    assert stored_files(tmp_path / "media") == []
    assert not list((tmp_path / "uploads").glob(f"{WORK_PREFIX}*"))


async def test_video_uploaded_as_a_photo_is_refused(tmp_path: Path, executor: Executor) -> None:
    with pytest.raises(MediaRejected) as info:
        await ingest(tmp_path, small_video_bytes(tmp_path), kind="pills", executor=executor)
    assert info.value.code == "wrong_kind"
    assert stored_files(tmp_path / "media") == []


async def test_too_long_video_is_refused(tmp_path: Path, executor: Executor) -> None:
    with pytest.raises(MediaRejected) as info:
        await ingest(
            tmp_path,
            small_video_bytes(tmp_path, seconds=3),
            kind="count_video",
            executor=executor,
            max_video_seconds=2,
        )
    assert info.value.code == "too_long"
    assert stored_files(tmp_path / "media") == []
    assert not list((tmp_path / "uploads").glob(f"{WORK_PREFIX}*"))
