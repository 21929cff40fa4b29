"""Turn a finished upload into stored evidence: verify its hash, validate it, store metadata-free variants."""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import hashlib
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

from server.evidence.kinds import CONSULTATION_RECORDING, PHOTO_KINDS, VIDEO_KINDS
from server.evidence.media import sniff_video_container
from server.media.errors import MediaRejected
from server.media.images import ProcessedImage, VariantFile, process_image, sniff_image_format
from server.media.originals import process_original
from server.media.store import Handover, MediaStore, file_sha256, is_sha256
from server.media.video import ProcessedVideo, probe_video
from server.media.workfiles import WorkFiles

# A consultation's recording is taken in as a video, like a fill's count video.
_VIDEO_KINDS = VIDEO_KINDS | {CONSULTATION_RECORDING}


class StoredVariant(TypedDict):
    """A variant as stored: its own SHA-256 in the media store, type and pixel size."""

    sha256: str
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class OriginalFile:
    """The file a prescription's original came in: its SHA-256, format and how many pages it has."""

    sha256: str
    format: str
    pages: int


@dataclass(frozen=True)
class IngestedMedia:
    """What a fill records about one verified media file."""

    sha256: str
    content_type: str
    bytes: int
    width: int
    height: int
    duration_seconds: float | None
    variants: dict[str, StoredVariant]
    quality: dict[str, float] = field(default_factory=dict)
    barcodes: list[str] = field(default_factory=list)
    # A photo's 128-bit perceptual hash (server.evidence.photo_hash); None for a video.
    perceptual_hash: int | None = None
    # A page of a prescription's original: its number from 1, and the file it came in.
    page: int | None = None
    original: OriginalFile | None = None


async def ingest_media(
    upload_path: Path,
    *,
    claimed_sha256: str,
    kind: str,
    filename: str,
    store: MediaStore,
    executor: concurrent.futures.Executor,
    max_image_pixels: int,
    max_video_seconds: float,
    work_dir: Path | None = None,
    keep_audio: bool = False,
    read_barcodes: bool = False,
) -> IngestedMedia:
    """Verify, validate and store an uploaded photo or video; raise MediaRejected when it cannot be evidence.

    `filename` is the technician's name for the file: it is never used to decide the type and never logged.
    The original upload is not stored (it carries GPS and other metadata); the "full" variant is the evidence.
    Work files go to `work_dir` (default: the upload's directory), under names of their own.
    Video audio is dropped unless `keep_audio` (a consented consultation recording, say).

    Every step that touches the file's bytes (hash, decode, variants, storing) runs as one job in
    `executor`, a media worker process: the event loop's process never reads the upload. A job whose
    worker died runs once more (another job may have killed it); a file that kills it twice is refused.
    """
    del filename  # Deliberately unused: detection is by content only.
    if kind not in PHOTO_KINDS and kind not in _VIDEO_KINDS:
        raise MediaRejected("unknown_kind", "This kind of media is not known to the server.")
    claimed = claimed_sha256.strip().lower()
    if not is_sha256(claimed):
        raise MediaRejected("bad_sha256", "The upload's SHA-256 is not 64 hexadecimal digits.")
    job = functools.partial(
        ingest_file,
        upload_path,
        claimed_sha256=claimed,
        kind=kind,
        store=store,
        max_image_pixels=max_image_pixels,
        max_video_seconds=max_video_seconds,
        work_dir=work_dir,
        keep_audio=keep_audio,
        read_barcodes=read_barcodes,
    )
    loop = asyncio.get_running_loop()
    try:
        return await loop.run_in_executor(executor, job)
    except BrokenProcessPool:
        # A worker died under this job or beside it: on new workers it runs once more.
        pass
    try:
        return await loop.run_in_executor(executor, job)
    except BrokenProcessPool:
        # Twice: this file is what kills the decoder. Refused, like any file that cannot be evidence.
        raise MediaRejected(
            "unprocessable", "The server could not safely read this file. Capture it again."
        ) from None


async def ingest_original(
    upload_path: Path,
    *,
    claimed_sha256: str,
    store: MediaStore,
    executor: concurrent.futures.Executor,
    max_image_pixels: int,
    max_pages: int,
) -> list[IngestedMedia]:
    """Verify a prescription's original (JPEG, PNG, TIFF or PDF) and store each of its pages as a
    metadata-free image; MediaRejected when it cannot be one. In a media worker, as ingest_media."""
    claimed = claimed_sha256.strip().lower()
    if not is_sha256(claimed):
        raise MediaRejected("bad_sha256", "The upload's SHA-256 is not 64 hexadecimal digits.")
    job = functools.partial(
        ingest_original_file,
        upload_path,
        claimed_sha256=claimed,
        store=store,
        max_image_pixels=max_image_pixels,
        max_pages=max_pages,
    )
    loop = asyncio.get_running_loop()
    for attempt in range(2):
        try:
            return await loop.run_in_executor(executor, job)
        except BrokenProcessPool:
            if attempt:
                raise MediaRejected(
                    "unprocessable", "The server could not safely read this file. Scan it again."
                ) from None
    raise AssertionError("unreachable")


def ingest_original_file(
    upload_path: Path, *, claimed_sha256: str, store: MediaStore, max_image_pixels: int, max_pages: int
) -> list[IngestedMedia]:
    """ingest_original's work, blocking: meant for a media worker."""
    data = upload_path.read_bytes()
    if not data:
        raise MediaRejected("empty", "The file is empty. Scan it again.")
    if hashlib.sha256(data).hexdigest() != claimed_sha256:
        raise MediaRejected(
            "sha256_mismatch",
            "The file changed or was damaged on the way (checksum mismatch). Upload it again.",
        )
    fmt, pages = process_original(
        upload_path,
        upload_path.parent,
        data=data,
        data_sha256=claimed_sha256,
        max_pixels=max_image_pixels,
        max_pages=max_pages,
    )
    out = []
    for page in pages:
        image = page.image
        try:
            variants = _store_variants(store, image.variants)
        finally:
            # A page's own image is a work file; a one-image original's is the upload (its endpoint's).
            for variant in image.variants.values():
                if not variant.source or page.page_sha256 is not None:
                    variant.path.unlink(missing_ok=True)
        out.append(
            IngestedMedia(
                sha256=page.page_sha256 or claimed_sha256,
                content_type=image.content_type,
                bytes=len(data),
                width=image.width,
                height=image.height,
                duration_seconds=None,
                variants=variants,
                quality=dict(image.quality),
                perceptual_hash=image.perceptual_hash,
                page=page.number,
                original=OriginalFile(claimed_sha256, fmt, len(pages)),
            )
        )
    return out


def ingest_file(
    upload_path: Path,
    *,
    claimed_sha256: str,
    kind: str,
    store: MediaStore,
    max_image_pixels: int,
    max_video_seconds: float,
    work_dir: Path | None,
    keep_audio: bool,
    read_barcodes: bool,
) -> IngestedMedia:
    """ingest_media's work, blocking: meant for a media worker (the store must be picklable)."""
    # A photo is read once, through the same open file as its first bytes: hashed in memory, then
    # decoded and stripped from those bytes (photo uploads are capped well below RAM). A video is
    # hashed as it streams from disk.
    with upload_path.open("rb") as f:
        head = f.read(64)
        is_video = sniff_video_container(head) is not None and sniff_image_format(head) is None
        data = None
        if kind in PHOTO_KINDS and not is_video:
            f.seek(0)
            data = f.read()
    size = len(data) if data is not None else upload_path.stat().st_size
    actual = hashlib.sha256(data).hexdigest() if data is not None else file_sha256(upload_path)
    if size == 0:
        raise MediaRejected("empty", "The file is empty. Capture it again.")
    if actual != claimed_sha256:
        raise MediaRejected(
            "sha256_mismatch",
            "The file changed or was damaged on the way (checksum mismatch). Upload it again.",
        )

    if kind in _VIDEO_KINDS and not is_video:
        raise MediaRejected("not_a_video", "A count video must be an MP4 or WebM recording.")
    if kind in PHOTO_KINDS and is_video:
        raise MediaRejected("wrong_kind", "A photo was expected here, but this file is a video.")

    work = WorkFiles(work_dir if work_dir is not None else upload_path.parent)
    try:
        processed: ProcessedImage | ProcessedVideo
        if is_video:
            processed = probe_video(upload_path, work, max_seconds=max_video_seconds, keep_audio=keep_audio)
        else:
            processed = process_image(
                upload_path,
                work,
                max_pixels=max_image_pixels,
                read_barcodes=read_barcodes,
                data=data,
                data_sha256=actual,
            )
        variants = _store_variants(store, processed.variants)
    finally:
        work.remove()

    return IngestedMedia(
        sha256=claimed_sha256,
        content_type=processed.content_type,
        bytes=size,
        width=processed.width,
        height=processed.height,
        duration_seconds=processed.duration_seconds if isinstance(processed, ProcessedVideo) else None,
        variants=variants,
        quality=dict(processed.quality),
        barcodes=processed.barcodes if isinstance(processed, ProcessedImage) else [],
        perceptual_hash=processed.perceptual_hash if isinstance(processed, ProcessedImage) else None,
    )


def _store_variants(store: MediaStore, variants: dict[str, VariantFile]) -> dict[str, StoredVariant]:
    stored: dict[str, StoredVariant] = {}
    by_path: dict[Path, str] = {}
    for name, variant in variants.items():
        # "2048" is often the very file "full" is: store it once.
        sha = by_path.get(variant.path)
        if sha is None:
            # A work file is ours alone and deleted afterwards: it is given to the store. The upload's
            # own file stays where it is (its endpoint removes it) and does not change again.
            handover = Handover.KEEPS_UNCHANGED if variant.source else Handover.GIVES
            sha = store.put_file_blocking(variant.path, sha256=variant.sha256, handover=handover)
            by_path[variant.path] = sha
        stored[name] = StoredVariant(
            sha256=sha, content_type=variant.content_type, width=variant.width, height=variant.height
        )
    return stored
