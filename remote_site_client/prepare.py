"""Fit photos for the link: orientation applied, metadata dropped, long edge and JPEG quality as configured.

The stock bottle's barcode must survive: when the original decodes and the re-encoded copy does not, a
higher quality, then the original itself, is sent instead. Runs off the event loop (it is Pillow work),
one photo at a time so a 12-megapixel photo costs one decoded frame of memory.
"""

from __future__ import annotations

import hashlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from server.evidence.media import MAX_PHOTO_PIXELS
from server.evidence.orientation import EXIF_ORIENTATION, ORIENTATION_TRANSPOSE
from server.evidence.photo_quality import decode_barcodes

REENCODED_FORMATS = frozenset({"JPEG", "PNG", "WEBP", "MPO"})
# A second try for a barcode that did not survive the configured quality.
FALLBACK_QUALITY = 93


@dataclass(frozen=True)
class Prepared:
    """The file to upload: the re-encoded copy, or the original when re-encoding is off or not worth it."""

    path: Path
    sha256: str
    size: int
    reencoded: bool
    width: int | None = None
    height: int | None = None
    barcodes_kept: bool | None = None


def file_sha256(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _as_is(path: Path) -> Prepared:
    return Prepared(path, file_sha256(path), path.stat().st_size, reencoded=False)


def _write_durably(data: bytes, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def _encode(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def _decoded(data: bytes) -> set[str]:
    with Image.open(io.BytesIO(data)) as im:
        return set(decode_barcodes(im))


def _dct_factor(size: tuple[int, int], long_edge: int) -> int:
    """The largest power-of-two JPEG scale that still leaves at least 90% of `long_edge` (1 = none)."""
    factor = 1
    while factor < 8 and max(size) / (factor * 2) >= 0.9 * long_edge:
        factor *= 2
    return factor


def load_upright(src: Path, long_edge: int = 0) -> Image.Image | None:
    """The photo upright, in RGB, with no metadata; None when it is not a photo Pillow can read whole.

    With `long_edge`, a JPEG is decoded straight at a reduced scale (DCT scaling) when that lands within
    10% of it: a 12-megapixel photo then decodes in a third of the time, to a quarter of the memory.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            im = Image.open(src)
            if im.format not in REENCODED_FORMATS or im.width * im.height > MAX_PHOTO_PIXELS:
                im.close()
                return None
            orientation = im.getexif().get(EXIF_ORIENTATION, 1)
            factor = _dct_factor(im.size, long_edge) if long_edge and im.format in ("JPEG", "MPO") else 1
            if factor > 1:
                im.draft("RGB", (im.width // factor, im.height // factor))
            im.load()  # reads the whole file and closes it; a truncated file fails here
        except (
            UnidentifiedImageError,
            OSError,
            Image.DecompressionBombError,
            Image.DecompressionBombWarning,
        ):
            return None
    # One decoded frame at a time: each step replaces the last.
    out = im if im.mode == "RGB" else im.convert("RGB")
    if orientation in ORIENTATION_TRANSPOSE:
        out = out.transpose(ORIENTATION_TRANSPOSE[orientation])
    # Nothing of the phone's metadata travels: no EXIF (GPS), no XMP, no JPEG comment.
    out.info = {}
    return out


def prepare_file(src: Path, kind: str, dest: Path, *, long_edge: int, quality: int) -> Prepared:
    """The copy of `src` to upload, written durably to `dest` (or `src` itself when it goes as it is)."""
    if long_edge <= 0 or kind == "count_video":
        return _as_is(src)
    full = load_upright(src, long_edge)
    if full is None:
        return _as_is(src)
    image = full
    if max(full.size) > long_edge:
        scale = long_edge / max(full.size)
        size = (max(1, round(full.width * scale)), max(1, round(full.height * scale)))
        image = full.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    # What the copy must still show: the barcodes readable at the size it is sent.
    wanted = set(decode_barcodes(image)) if kind == "stock_bottle" else set()
    if kind == "stock_bottle" and not wanted and image is not full and decode_barcodes(full):
        return _as_is(src)  # the code is too fine to survive the smaller size: the original goes
    del full
    kept: bool | None = None
    data = b""
    for q in sorted({quality, max(quality, FALLBACK_QUALITY)}):
        data = _encode(image, q)
        kept = wanted <= _decoded(data) if wanted else None
        if kept is not False:
            break
    width, height = image.size
    image.close()
    if kept is False:
        # The barcode did not survive re-encoding: the original goes, whatever it costs on the link.
        return _as_is(src)
    _write_durably(data, dest)
    return Prepared(
        dest,
        hashlib.sha256(data).hexdigest(),
        len(data),
        reencoded=True,
        width=width,
        height=height,
        barcodes_kept=kept,
    )
