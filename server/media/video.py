"""Count-video validation with PyAV: container, codec and duration checks, a clean remux and a poster."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from PIL import Image

from server.evidence.media import (
    VIDEO_CODEC_NAMES,
    VIDEO_CODECS,
    VIDEO_DEMUXERS,
    VIDEO_DURATION_SLACK,
    sniff_video_container,
    video_codec,
)
from server.media.errors import MediaRejected
from server.media.images import THUMB_EDGE, VariantFile, quality_measures
from server.media.workfiles import WorkFiles

# Audio is dropped unless asked for: a count video needs none, and voices can carry patient names.
AUDIO_CODECS = {"mp4": frozenset({"aac", "mp3", "opus"}), "webm": frozenset({"opus", "vorbis"})}
POSTER_EDGE = 2048
POSTER_QUALITY = 85

FULL = "full"
POSTER = "poster"


@dataclass(frozen=True)
class ProcessedVideo:
    """A validated video: display size, duration, codec, the remuxed copy and its poster frame."""

    width: int
    height: int
    duration_seconds: float
    codec: str
    container: str
    content_type: str
    variants: dict[str, VariantFile]
    quality: dict[str, float] = field(default_factory=dict)


def _source_content_type(container: str, head: bytes) -> str:
    if container == "mp4":
        return "video/quicktime" if head[8:12] == b"qt  " else "video/mp4"
    return "video/webm" if b"webm" in head[:64] else "video/x-matroska"


def video_content_type(path: Path) -> str | None:
    """The container's type by the file's first bytes (video/mp4, video/quicktime, video/webm,
    video/x-matroska), or None when it is not a video; reads 64 bytes, so a media worker can answer
    before any decoding."""
    with path.open("rb") as f:
        head = f.read(64)
    container = sniff_video_container(head)
    return None if container is None else _source_content_type(container, head)


def _broken() -> MediaRejected:
    return MediaRejected("corrupt", "The video file is damaged or incomplete. Record or upload it again.")


def probe_video(
    src: Path, work: WorkFiles, *, max_seconds: float, keep_audio: bool = False
) -> ProcessedVideo:
    """Validate a video; write a metadata-free copy ("full") and a JPEG poster ("poster") as work files."""
    size = src.stat().st_size
    if size == 0:
        raise MediaRejected("empty", "The file is empty. Record the video again.")
    with src.open("rb") as f:
        head = f.read(64)
    container = sniff_video_container(head)
    if container is None:
        raise MediaRejected("not_a_video", "This file is not a video. Upload an MP4 or WebM recording.")
    try:
        with av.open(str(src), format=VIDEO_DEMUXERS[container]) as inp:
            return _remux_and_probe(inp, size, work, container, head, max_seconds, keep_audio)
    except av.FFmpegError:
        raise _broken() from None


def _remux_and_probe(
    inp: Any,
    size: int,
    work: WorkFiles,
    container: str,
    head: bytes,
    max_seconds: float,
    keep_audio: bool,
) -> ProcessedVideo:
    if not inp.streams.video:
        raise MediaRejected("not_a_video", "The file holds no video track. Upload an MP4 or WebM recording.")
    vin = inp.streams.video[0]
    codec = video_codec(vin)
    if codec not in VIDEO_CODECS:
        names = list(VIDEO_CODEC_NAMES.values())
        raise MediaRejected(
            "unsupported_codec",
            f"Videos encoded as {codec} are not accepted; record with the camera's default "
            f"({', '.join(names[:-1])} or {names[-1]}).",
        )
    declared = inp.duration / 1_000_000 if inp.duration else None
    if declared is not None and declared > max_seconds + VIDEO_DURATION_SLACK:
        raise _too_long(declared, max_seconds)
    if container == "mp4" and _index_beyond_file(vin, size):
        raise _broken()

    out_family = "webm" if codec in ("vp8", "vp9") or (codec == "av1" and container == "matroska") else "mp4"
    ain = _audio_stream(inp, out_family) if keep_audio else None
    full_path = work.path(f"{FULL}.{out_family}")
    span = _Span(vin.time_base or Fraction(1, 1000), max_seconds)
    # Keep the sample-entry tag on MP4 to MP4 copies: Safari plays HEVC only as 'hvc1', FFmpeg writes 'hev1'.
    tag = vin.codec_context.codec_tag if container == "mp4" and out_family == "mp4" else None
    poster_frame = _remux(inp, vin, ain, full_path, out_family, span, tag)
    if poster_frame is None or span.count == 0:
        raise MediaRejected("corrupt", "The video has no frame that can be shown. Record it again.")
    measured = span.seconds
    if declared is not None and container == "matroska" and measured < declared * 0.9 - 0.5:
        # WebM has no sample index; a file cut short demuxes cleanly but runs out of frames early.
        raise _broken()
    duration = measured if measured > 0 else (declared or 0.0)

    poster = _oriented_image(poster_frame)
    if max(poster.size) > POSTER_EDGE:
        poster.thumbnail((POSTER_EDGE, POSTER_EDGE), Image.Resampling.BILINEAR)
    poster.info = {}
    poster_path = work.path(f"{POSTER}.jpg")
    poster.save(poster_path, "JPEG", quality=POSTER_QUALITY)
    small = poster.copy()
    small.thumbnail((THUMB_EDGE, THUMB_EDGE), Image.Resampling.BILINEAR)

    width, height = _display_size(vin.width, vin.height, poster_frame)
    variants = {
        FULL: VariantFile(full_path, f"video/{out_family}", width, height),
        POSTER: VariantFile(poster_path, "image/jpeg", poster.width, poster.height),
    }
    return ProcessedVideo(
        width=width,
        height=height,
        duration_seconds=round(duration, 3),
        codec=codec,
        container=out_family,
        content_type=_source_content_type(container, head),
        variants=variants,
        quality=quality_measures(small),
    )


class _Span:
    """The presentation span of the video packets seen so far, checked against the limit as it grows."""

    def __init__(self, time_base: Fraction, max_seconds: float) -> None:
        self.time_base = time_base
        self.max_seconds = max_seconds
        self.count = 0
        self.first: int | None = None
        self.last_pts: int | None = None
        self.last_duration = 0

    def add(self, pts: int | None, duration: int | None) -> None:
        self.count += 1
        if pts is None:
            return
        self.first = pts if self.first is None else min(self.first, pts)
        if self.last_pts is None or pts >= self.last_pts:
            self.last_pts, self.last_duration = pts, duration or 0
        # Headers can understate the length; stop as soon as the packets themselves run over.
        if self.seconds > self.max_seconds + VIDEO_DURATION_SLACK:
            raise _too_long(self.seconds, self.max_seconds)

    @property
    def seconds(self) -> float:
        if self.first is None or self.last_pts is None:
            return 0.0
        last = self.last_duration
        if not last and self.count > 1:
            # WebM written without block durations: assume the last frame lasts an average frame.
            last = round((self.last_pts - self.first) / (self.count - 1))
        return float((self.last_pts + last - self.first) * self.time_base)


def _remux(inp: Any, vin: Any, ain: Any, path: Path, out_family: str, span: _Span, tag: str | None) -> Any:
    """Stream-copy the video (and chosen audio) into a fresh container; return the first decodable frame."""
    poster_frame = None
    options = {"movflags": "+faststart"} if out_family == "mp4" else {}
    with av.open(str(path), "w", format=out_family, options=options) as out:
        # A fresh output carries no container or stream metadata (title, location, creation time).
        # opaque: reuse the decoder's codec object, since no encoder need exist for a stream copy.
        vout = out.add_stream_from_template(vin, opaque=True)
        if tag and tag.strip("\x00"):
            vout.codec_context.codec_tag = tag
        aout = out.add_stream_from_template(ain, opaque=True) if ain is not None else None
        for packet in inp.demux([vin] if ain is None else [vin, ain]):
            if packet.size == 0:
                continue
            if packet.stream is vin:
                span.add(packet.pts, packet.duration)
                if poster_frame is None:
                    poster_frame = next(_decode(vin, packet), None)
                packet.stream = vout
            else:
                packet.stream = aout
            out.mux(packet)
        if poster_frame is None:
            poster_frame = next(_decode(vin, None), None)
    return poster_frame


def _too_long(seconds: float, max_seconds: float) -> MediaRejected:
    return MediaRejected(
        "too_long",
        f"The video is {seconds:.1f} seconds long; the limit is {max_seconds:g} seconds. "
        "Record a shorter one.",
    )


def _index_beyond_file(stream: Any, size: int) -> bool:
    """True when an MP4 sample table points past the end of the file (the upload was cut short)."""
    entries = stream.index_entries
    return any(e.pos + e.size > size for e in entries)


def _audio_stream(inp: Any, out_family: str) -> Any:
    for stream in inp.streams.audio:
        if stream.codec_context.codec.canonical_name in AUDIO_CODECS[out_family]:
            return stream
    return None


def _decode(stream: Any, packet: Any) -> Iterator[Any]:
    try:
        yield from stream.codec_context.decode(packet)
    except av.FFmpegError:
        # One undecodable leading packet (an open GOP) is normal; the next keyframe will do.
        return


def _rotation(frame: Any) -> int:
    """Clockwise degrees (0, 90, 180, 270) to turn a decoded frame for display."""
    try:
        degrees = -round(float(frame.rotation))
    except (AttributeError, TypeError, ValueError):
        return 0
    return (degrees % 360) // 90 * 90


def _oriented_image(frame: Any) -> Image.Image:
    image: Image.Image = frame.to_image()
    turn = _rotation(frame)
    if turn == 90:
        return image.transpose(Image.Transpose.ROTATE_270)
    if turn == 180:
        return image.transpose(Image.Transpose.ROTATE_180)
    if turn == 270:
        return image.transpose(Image.Transpose.ROTATE_90)
    return image


def _display_size(width: int, height: int, frame: Any) -> tuple[int, int]:
    return (height, width) if _rotation(frame) in (90, 270) else (width, height)
