"""Captured photos and count videos, checked at once with the rules of `tp-site submit`.

A capture is a file the page sent (a camera frame, a picked or dropped photo, a recorded count video),
kept in the station's capture folder until a fill is saved with it. Each is checked when it arrives:
a photo with `remote_site_client.checks` (blur, exposure, resolution; on the stock bottle the barcode,
the NDC against the prescription and the expiry), a video with the server's own probe (container,
codec, duration). Captures live as long as the station: the durable point is Save, into the outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import av

from remote_site_client.checks import Problem, check_photo, check_submission
from server.evidence import media
from server.evidence.kinds import KIND_NAMES, MEDIA_KINDS, VIDEO_KINDS
from server.evidence.photo_quality import QualityThresholds

# Captures not saved in a fill are dropped after this long (seconds).
KEEP_UNSAVED = 12 * 3600
PHOTO_SUFFIXES = {b"\xff\xd8\xff": ".jpg", b"\x89PNG": ".png", b"RIFF": ".webp"}


class CaptureRefused(Exception):
    """A capture that cannot even be checked (unknown kind, too large); the message says why."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Capture:
    """One captured file and what the checks said of it."""

    id: str
    kind: str
    path: Path
    prescription_id: int | None
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    barcodes: list[str] = field(default_factory=list)
    kept_from: str | None = None  # the rejected fill it was kept from
    created_at: float = field(default_factory=time.time)
    checked_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "kind_name": KIND_NAMES.get(self.kind, self.kind),
            "ok": self.ok,
            "problems": [{"code": p.code, "message": p.message} for p in self.problems],
            "notes": self.notes,
            "kept_from": self.kept_from,
            "checked_ms": round(self.checked_ms, 1),
        }


def suffix_of(kind: str, head: bytes) -> str:
    if kind in VIDEO_KINDS:
        return ".mp4" if media.sniff_video_container(head) == "mp4" else ".webm"
    return next((s for magic, s in PHOTO_SUFFIXES.items() if head.startswith(magic)), ".bin")


def check_capture(
    kind: str, path: Path, *, expected_ndc: str | None, thresholds: QualityThresholds, today: dt.date
) -> tuple[list[Problem], list[str], list[str]]:
    """(problems, notes, barcodes) of one capture, by the rules `submit` applies to it."""
    if kind in VIDEO_KINDS:
        return check_video(path), ["The count video plays and is short enough."], []
    if kind == "stock_bottle":
        report = check_submission(
            [(kind, path)], scanned=[], expected_ndc=expected_ndc, today=today, thresholds=thresholds
        )
        return list(report.problems), list(report.notes), list(report.barcodes)
    problems, _ = check_photo(kind, path, thresholds=thresholds)
    notes = [] if problems else [f"Sharp, well exposed and large enough: {KIND_NAMES.get(kind, kind)}."]
    return problems, notes, []


def _video_problem(code: str, message: str) -> list[Problem]:
    return [Problem("count_video", code, f"Count video: {message}")]


def check_video(path: Path, max_seconds: float = media.MAX_VIDEO_SECONDS) -> list[Problem]:
    """The count video plays: a known container and codec, a frame that decodes, not too long. A page's
    recording may carry no duration, so the last packet's time is what counts."""
    with path.open("rb") as f:
        container = media.sniff_video_container(f.read(64))
    if container is None:
        return _video_problem("not_a_video", "this is not a video. Record it again (MP4 or WebM).")
    try:
        with av.open(str(path), format=media.VIDEO_DEMUXERS[container]) as inp:
            if not inp.streams.video:
                return _video_problem("no_video", "the file holds no picture. Record it again.")
            stream = inp.streams.video[0]
            if (codec := media.video_codec(stream)) not in media.VIDEO_CODECS:
                return _video_problem("codec", f"{codec} video cannot be checked.")
            decoded, seconds = False, 0.0
            for packet in inp.demux(stream):
                if packet.pts is not None and packet.time_base is not None:
                    seconds = max(seconds, float(packet.pts * packet.time_base))
                if not decoded and packet.size:
                    decoded = bool(list(packet.decode()))
    except (av.FFmpegError, ValueError):
        return _video_problem("corrupt", "the video is damaged or incomplete. Record it again.")
    if not decoded:
        return _video_problem("corrupt", "no picture of the video could be shown. Record it again.")
    if seconds > max_seconds + media.VIDEO_DURATION_SLACK:
        return _video_problem(
            "too_long", f"it lasts {seconds:.0f} s; at most {max_seconds:.0f} s. Record a shorter count."
        )
    return []


class Captures:
    """The capture folder and the captures in it, by id."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.items: dict[str, Capture] = {}
        self._sweep(0)

    def _sweep(self, keep_seconds: float) -> None:
        cutoff = time.time() - keep_seconds
        for path in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    path.unlink()
        for cid, c in list(self.items.items()):
            if c.created_at < cutoff:
                self.items.pop(cid, None)

    def new_path(self, kind: str, head: bytes) -> tuple[str, Path]:
        if kind not in MEDIA_KINDS:
            raise CaptureRefused(400, "unknown_kind", f"{kind!r} is not a view a fill has.")
        cid = secrets.token_hex(8)
        return cid, self.folder / f"{cid}-{kind}{suffix_of(kind, head)}"

    def limit(self, kind: str) -> int:
        """The most bytes a file of this kind may have: the server's limit, so what it refuses stops here."""
        return media.MAX_VIDEO_BYTES if kind in VIDEO_KINDS else media.MAX_PHOTO_BYTES

    async def receive(
        self,
        kind: str,
        prescription_id: int,
        content: aiohttp.StreamReader,
        *,
        expected_ndc: str | None,
        thresholds: QualityThresholds,
    ) -> Capture:
        """Writes what the page sent (up to the kind's limit) and checks it, off the event loop."""
        started = time.perf_counter()
        head = await content.read(64)
        if not head:
            raise CaptureRefused(400, "empty", "The photo is empty: take it again.")
        cid, path = self.new_path(kind, head)
        limit, size = self.limit(kind), len(head)
        try:
            with path.open("wb") as f:
                f.write(head)
                async for chunk in content.iter_chunked(256 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise CaptureRefused(
                            413,
                            "too_large",
                            f"That file is larger than the {limit // (1024 * 1024)} MB the server takes.",
                        )
                    f.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        capture = Capture(cid, kind, path, prescription_id)
        capture.problems, capture.notes, capture.barcodes = await asyncio.to_thread(
            check_capture, kind, path, expected_ndc=expected_ndc, thresholds=thresholds, today=dt.date.today()
        )
        capture.checked_ms = (time.perf_counter() - started) * 1000
        return self.add(capture)

    def add(self, capture: Capture) -> Capture:
        self._sweep(KEEP_UNSAVED)
        self.items[capture.id] = capture
        return capture

    def get(self, cid: str) -> Capture | None:
        return self.items.get(cid)

    def drop(self, cid: str) -> None:
        c = self.items.pop(cid, None)
        if c is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(c.path)
