"""What a fill's photo or video may be, the same on the site (before it is kept) and on the server.

The pixel limit is Pillow's own guard against decompression bombs, which the server decodes under: a
photo above it is refused there whatever else it is, so the site says so before it keeps the photo,
with the number, rather than calling it damaged. A 108-megapixel phone camera's full resolution is
above it; its default (12 megapixels, pixels binned) is far below.

The byte limits and the count video's length are the server's defaults (`max_image_bytes`,
`max_video_bytes`, `max_video_seconds`), which the site checks before it keeps a file; the containers
and codecs are those the server takes a count video in.
"""

from __future__ import annotations

from typing import Any

from server.evidence.kinds import KIND_NAMES, VIDEO_KINDS

MAX_PHOTO_BYTES = 30 * 1024 * 1024
MAX_VIDEO_BYTES = 200 * 1024 * 1024
MAX_VIDEO_SECONDS = 60.0
# Container durations are rounded: a frame or two over the limit is within it.
VIDEO_DURATION_SLACK = 0.1

# The count video's codecs, by FFmpeg's canonical name, with the name a technician's camera app shows.
VIDEO_CODEC_NAMES = {"h264": "H.264", "hevc": "HEVC", "vp8": "VP8", "vp9": "VP9", "av1": "AV1"}
VIDEO_CODECS = frozenset(VIDEO_CODEC_NAMES)
# The demuxer each container is read with, forced from the magic bytes so FFmpeg never guesses
# (playlists, image sequences).
VIDEO_DEMUXERS = {"mp4": "mov,mp4,m4a,3gp,3g2,mj2", "matroska": "matroska,webm"}

# Pillow's Image.MAX_IMAGE_PIXELS (1 GiB of 24-bit pixels / 4): opening a larger photo warns of a
# decompression bomb, and twice as large is refused outright.
MAX_PHOTO_PIXELS = 89_478_485


def too_large(kind: str, limit: int) -> str:
    """Why a photo or video of `kind` larger than `limit` bytes is refused, as the technician reads it."""
    retake = "record a shorter one" if kind in VIDEO_KINDS else "take it again at a lower resolution"
    return f"The {KIND_NAMES.get(kind, kind)} may be at most {limit // (1024 * 1024)} MB; {retake}."


_MP4_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip")
# ISO BMFF brands of still images (HEIC, AVIF): same box structure as MP4, but photos.
_STILL_IMAGE_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"})


def sniff_video_container(head: bytes) -> str | None:
    """'mp4' (ISO BMFF / QuickTime) or 'matroska' (WebM, MKV) from a file's first bytes, else None."""
    if head[4:8] == b"ftyp" and head[8:12] in _STILL_IMAGE_BRANDS:
        return None
    if head[4:8] in _MP4_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    return None


def video_codec(stream: Any) -> str:
    """A PyAV video stream's codec by its canonical name: the format, not the decoder reading it (AV1 is
    "av1" whether libdav1d or libaom decodes it)."""
    return str(stream.codec_context.codec.canonical_name)
