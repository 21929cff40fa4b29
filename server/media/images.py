"""Photo validation and metadata-free variants (Pillow), tuned to cost one reduced JPEG decode per photo."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageFilter, ImageStat, UnidentifiedImageError

from server.evidence.media import MAX_PHOTO_PIXELS
from server.evidence.orientation import EXIF_ORIENTATION, ORIENTATION_TRANSPOSE
from server.evidence.photo_hash import perceptual_hash
from server.evidence.photo_quality import decode_product_barcodes
from server.media.errors import MediaRejected
from server.media.workfiles import WorkFiles

ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP")
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
_EXTENSIONS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp"}

FULL = "full"
LARGE = "2048"
THUMB = "320"
LARGE_EDGE = 2048
THUMB_EDGE = 320
JPEG_QUALITY = 90
WEBP_QUALITY = 90
THUMB_QUALITY = 85
PNG_COMPRESS_LEVEL = 6
# Photos at least this long are searched for barcodes at half scale first.
BARCODE_HALF_SCALE_EDGE = 1600

_LAPLACIAN = ImageFilter.Kernel((3, 3), (0, 1, 0, 1, -4, 1, 0, 1, 0), scale=2, offset=128)


@dataclass(frozen=True)
class VariantFile:
    """One produced file: where it is (a work file) and what it holds."""

    path: Path
    content_type: str
    width: int
    height: int
    # The SHA-256 of the bytes written, when they were hashed on the way (so the store need not read them).
    sha256: str | None = None
    # The upload's own file, in no need of stripping: not a work file, so stored by link or copy
    # and never moved away.
    source: bool = False


@dataclass(frozen=True)
class ProcessedImage:
    """A validated photo: size after orientation, source format, variants and simple quality measures."""

    width: int
    height: int
    format: str
    content_type: str
    variants: dict[str, VariantFile]
    quality: dict[str, float] = field(default_factory=dict)
    # Barcodes read from the full-resolution pixels, when asked for (the stock bottle's).
    barcodes: list[str] = field(default_factory=list)
    # The 128-bit perceptual hash of the upright photo (server.evidence.photo_hash), to find it reused.
    perceptual_hash: int | None = None


def sniff_image_format(head: bytes) -> str | None:
    """The allowed format named by a file's first bytes (JPEG, PNG, WEBP), or None."""
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _other_image_kind(head: bytes) -> str | None:
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return "HEIC"
        if brand in (b"avif", b"avis"):
            return "AVIF"
    if head[:4] == b"%PDF":
        return "PDF"
    return None


def _refuse_unrecognised(head: bytes) -> MediaRejected:
    kind = _other_image_kind(head)
    if kind == "HEIC":
        return MediaRejected(
            "unsupported_format",
            "HEIC photos are not accepted. Set the camera to JPEG ('Most Compatible') "
            "and take the photo again.",
        )
    if kind is not None:
        return MediaRejected(
            "unsupported_format", f"{kind} files are not accepted. Upload the photo as JPEG, PNG or WebP."
        )
    return MediaRejected("not_an_image", "This file is not a photo. Upload a JPEG, PNG or WebP image.")


def _corrupt() -> MediaRejected:
    return MediaRejected("corrupt", "The photo file is damaged and cannot be read. Take the photo again.")


def _truncated() -> MediaRejected:
    return MediaRejected("truncated", "The photo is incomplete (the file was cut short). Upload it again.")


def _bomb() -> MediaRejected:
    return MediaRejected(
        "decompression_bomb", "The image declares an implausibly large size and was refused."
    )


def process_image(
    src: Path,
    work: WorkFiles,
    *,
    max_pixels: int,
    read_barcodes: bool = False,
    data: bytes | None = None,
    data_sha256: str | None = None,
) -> ProcessedImage:
    """Validate a photo and write its metadata-free variants (full, 2048, 320) as `work`'s files.

    With read_barcodes, the barcodes are read from the same decode (at half scale for a large photo,
    at full resolution when that finds none). `data` is the file's bytes when the caller has read them,
    and `data_sha256` their SHA-256 when it has computed that too; then a photo with nothing to strip
    gets no copy: its full variant is `src` itself (marked `source`).
    """
    # One read serves sniffing, decoding and the byte-level strip (uploads are capped well below RAM).
    if data is None:
        data = src.read_bytes()
        data_sha256 = None  # a digest of bytes this function was not given
    if not data:
        raise MediaRejected("empty", "The file is empty. Take the photo again.")
    fmt = sniff_image_format(data[:32])
    if fmt is None:
        raise _refuse_unrecognised(data[:32])
    try:
        # Only the plugin the magic bytes named may parse the file: less attack surface, no guessing.
        im = Image.open(io.BytesIO(data), formats=[fmt])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        # The warning arrives as an exception when warnings are errors; otherwise the size check below.
        raise _bomb() from None
    except UnidentifiedImageError:
        raise _corrupt() from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as exc:
        raise _truncated() if "truncated" in str(exc) else _corrupt() from None
    with im:
        return _process_open(im, fmt, src, data, work, max_pixels, read_barcodes, data_sha256)


def _process_open(
    im: Image.Image,
    fmt: str,
    src: Path,
    data: bytes,
    work: WorkFiles,
    max_pixels: int,
    read_barcodes: bool = False,
    data_sha256: str | None = None,
) -> ProcessedImage:
    width, height = im.size
    pixels = width * height
    if pixels > MAX_PHOTO_PIXELS:
        raise _bomb()
    if pixels > max_pixels:
        raise MediaRejected(
            "too_many_pixels",
            f"The photo is {pixels / 1e6:.1f} megapixels; the limit is {max_pixels / 1e6:.1f}. "
            "Lower the camera resolution and take it again.",
        )
    # An MPO (phone JPEG with a depth or preview image) reports several frames; only the first is kept.
    if fmt != "JPEG" and getattr(im, "n_frames", 1) > 1:
        raise MediaRejected("unsupported_format", "Animated images are not accepted. Upload a still photo.")
    orientation = _orientation(im)
    if orientation in (5, 6, 7, 8):
        width, height = height, width
    fits = max(width, height) <= LARGE_EDGE
    large_size = _large_size((width, height))
    strippable = orientation == 1 and (fmt != "JPEG" or im.mode in ("RGB", "L"))

    reduced = False
    if fmt == "JPEG" and strippable:
        # Decode only as much as the variants need from pixels: DCT scaling still reads (and so
        # validates) every byte of entropy-coded data, and a 1/2 scale is itself a good downscale.
        if read_barcodes and max(width, height) >= BARCODE_HALF_SCALE_EDGE:
            # Half scale keeps 4+ px per module of a package DataMatrix and costs a quarter of the
            # full-resolution read; the full resolution is the fallback when nothing is found.
            im.draft(im.mode, (width // 2, height // 2))
        elif not read_barcodes:
            k = max(1, round(width / large_size[0]))
            im.draft(im.mode, (THUMB_EDGE, THUMB_EDGE) if fits else (width // k, height // k))
        reduced = im.size != (width, height)
    decoded = _decode(im)
    oriented = _upright(decoded, orientation)
    barcodes = decode_product_barcodes(oriented) if read_barcodes else []
    if read_barcodes and not barcodes and reduced:
        with Image.open(io.BytesIO(data), formats=[fmt]) as whole:
            barcodes = decode_product_barcodes(_upright(_decode(whole), orientation))

    variants: dict[str, VariantFile] = {}
    ctype = CONTENT_TYPES[fmt]
    full_path = work.path(f"{FULL}{_EXTENSIONS[fmt]}")
    if strippable:
        stripped = strip_metadata(data, fmt)
        if data_sha256 is not None and stripped == data:
            # Nothing to strip (as the site client sends photos): the upload itself is the evidence,
            # named by its own digest, which the caller has checked. No copy is written.
            variants[FULL] = VariantFile(src, ctype, width, height, data_sha256, source=True)
        else:
            full_path.write_bytes(stripped)
            variants[FULL] = VariantFile(
                full_path, ctype, width, height, hashlib.sha256(stripped).hexdigest()
            )
    else:
        _save_family(oriented, full_path, fmt)
        variants[FULL] = VariantFile(full_path, ctype, width, height)

    base = oriented
    if fits:
        variants[LARGE] = variants[FULL]
    else:
        base = _shrink(_resizable(oriented), large_size)
        large_path = work.path(f"{LARGE}{_EXTENSIONS[fmt]}")
        _save_family(base, large_path, fmt)
        variants[LARGE] = VariantFile(large_path, ctype, base.width, base.height)

    small = _resizable(base)
    # A box reduce by the ratio's integer part, then area averaging for the rest: the cheapest decent
    # thumbnail (a bilinear last step cost 1.5 times as much for no visible gain at 320 px).
    small = small.resize(_fit_size(small.size, THUMB_EDGE), Image.Resampling.BOX, reducing_gap=1.0)
    thumb = _flatten(small)
    thumb_path = work.path(f"{THUMB}.jpg")
    _clear_info(thumb)
    thumb.save(thumb_path, "JPEG", quality=THUMB_QUALITY)
    variants[THUMB] = VariantFile(thumb_path, "image/jpeg", thumb.width, thumb.height)

    # One greyscale thumbnail serves both measures and the perceptual hash.
    gray = thumb if thumb.mode == "L" else thumb.convert("L")
    return ProcessedImage(
        width, height, fmt, ctype, variants, quality_measures(gray), barcodes, perceptual_hash(gray)
    )


def _upright(im: Image.Image, orientation: int) -> Image.Image:
    transpose = ORIENTATION_TRANSPOSE.get(orientation)
    return im if transpose is None else im.transpose(transpose)


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(EXIF_ORIENTATION, 1)
    except Exception:
        # Malformed EXIF is common from cheap cameras; it only costs us the orientation hint.
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def _decode(im: Image.Image) -> Image.Image:
    try:
        im.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _bomb() from None
    except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError) as exc:
        raise _truncated() if "truncated" in str(exc) else _corrupt() from None
    return im


def _fit_size(size: tuple[int, int], edge: int) -> tuple[int, int]:
    w, h = size
    long_edge = max(w, h)
    if long_edge <= edge:
        return w, h
    scale = edge / long_edge
    return max(1, round(w * scale)), max(1, round(h * scale))


def _large_size(size: tuple[int, int]) -> tuple[int, int]:
    """The "2048" variant's size: an integer reduction when it keeps at least 3/4 of 2048 px, else exact."""
    w, h = size
    long_edge = max(w, h)
    k = -(-long_edge // LARGE_EDGE)
    if k > 1 and long_edge / k >= LARGE_EDGE * 3 / 4:
        # Integer factors are cheap (DCT scaling or box reduce); a fractional Lanczos on 12 MP costs 250 ms.
        return -(-w // k), -(-h // k)
    return _fit_size(size, LARGE_EDGE)


def _shrink(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    if im.size == size:
        return im
    k = im.width // size[0]
    if k >= 2 and im.height // size[1] == k and (-(-im.width // k), -(-im.height // k)) == size:
        return im.reduce(k)
    if max(im.width / size[0], im.height / size[1]) < 2:
        # A mild reduction (2304 -> 2048, say): Lanczos costs 2.4x bilinear here for no visible gain.
        return im.resize(size, Image.Resampling.BILINEAR)
    return im.resize(size, Image.Resampling.LANCZOS, reducing_gap=2.0)


def _has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info


def _resizable(im: Image.Image) -> Image.Image:
    """The image in a mode Pillow resizes well (L, LA, RGB, RGBA)."""
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        # 16-bit and float greyscale: map to 8 bits instead of clipping at 255.
        return im.convert("I").point(lambda v: v * (1 / 256)).convert("L")
    if im.mode == "1":
        return im.convert("L")
    return im.convert("RGBA" if _has_alpha(im) else "RGB")


def _flatten(im: Image.Image) -> Image.Image:
    """RGB or L pixels for a JPEG thumbnail; transparency composited onto white."""
    if not _has_alpha(im):
        return im if im.mode in ("RGB", "L") else im.convert("RGB")
    rgba = im.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _clear_info(im: Image.Image) -> None:
    # Savers read metadata (comment, ICC profile) from `info`; only PNG transparency is pixel data.
    keep = im.info.get("transparency")
    im.info = {} if keep is None else {"transparency": keep}


def _save_family(im: Image.Image, path: Path, fmt: str) -> None:
    """Encode in the source's format family, with no metadata."""
    if fmt == "JPEG":
        out = im if im.mode in ("RGB", "L") else _flatten(_resizable(im))
        _clear_info(out)
        out.save(path, "JPEG", quality=JPEG_QUALITY)
    elif fmt == "PNG":
        _clear_info(im)
        im.save(path, "PNG", compress_level=PNG_COMPRESS_LEVEL)
    else:
        out = im if im.mode in ("RGB", "RGBA") else im.convert("RGBA" if _has_alpha(im) else "RGB")
        _clear_info(out)
        out.save(path, "WEBP", quality=WEBP_QUALITY)


def quality_measures(thumb: Image.Image) -> dict[str, float]:
    """Cheap exposure and sharpness figures computed on a thumbnail."""
    gray = thumb if thumb.mode == "L" else thumb.convert("L")
    hist = gray.histogram()
    total = max(1, sum(hist))
    mean = sum(i * c for i, c in enumerate(hist)) / total
    dark = sum(hist[:5]) / total
    bright = sum(hist[251:]) / total
    # Halving the kernel output keeps most Laplacian values inside 0..255; scale the variance back.
    laplacian = gray.filter(_LAPLACIAN)
    if laplacian.width > 2 and laplacian.height > 2:
        # Pillow copies border pixels unfiltered; they are intensities, not Laplacian values.
        laplacian = laplacian.crop((1, 1, laplacian.width - 1, laplacian.height - 1))
    sharpness = ImageStat.Stat(laplacian).var[0] * 4
    return {
        "mean_luminance": round(mean, 3),
        "clipped_dark_fraction": round(dark, 5),
        "clipped_bright_fraction": round(bright, 5),
        "clipped_fraction": round(dark + bright, 5),
        "sharpness_laplacian_var": round(sharpness, 3),
    }


def strip_metadata(data: bytes, fmt: str) -> bytes:
    """The same encoded image with every metadata container removed (no re-encode)."""
    if fmt == "JPEG":
        return strip_jpeg(data)
    if fmt == "PNG":
        return strip_png(data)
    if fmt == "WEBP":
        return strip_webp(data)
    raise ValueError(f"no metadata stripper for {fmt}")


# Markers whose segments describe pixels: SOFn (not the reserved C8), DHT, DAC, DQT, DNL, DRI, DHP, EXP.
_JPEG_KEEP = frozenset(
    [*range(0xC0, 0xC8), *range(0xC9, 0xD0), 0xDB, 0xDC, 0xDD, 0xDE, 0xDF],
)
_JPEG_SOS = 0xDA
_JPEG_EOI = 0xD9
# Inside entropy-coded data 0xFF is followed by 00 (stuffing), D0-D7 (restart) or FF (fill);
# anything else is the next marker.
_JPEG_MARKER_IN_SCAN = re.compile(rb"\xff[\x01-\xcf\xd8-\xfe]")


def strip_jpeg(data: bytes) -> bytes:
    """Keep a JPEG's tables, frame and scans; drop APPn segments (bar a bare JFIF/Adobe one) and COM."""
    if not data.startswith(b"\xff\xd8"):
        raise _corrupt()
    out = [b"\xff\xd8"]
    pos = 2
    while True:
        marker, pos = _next_jpeg_marker(data, pos)
        if marker == _JPEG_EOI:
            # Whatever follows EOI (MPO secondary images, vendor trailers) is not this image.
            out.append(b"\xff\xd9")
            return b"".join(out)
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            continue
        if pos + 2 > len(data):
            raise _truncated()
        (length,) = struct.unpack_from(">H", data, pos)
        end = pos + length
        if length < 2 or end > len(data):
            raise _truncated()
        kept = _kept_jpeg_segment(marker, data[pos + 2 : end])
        if kept is not None:
            out.append(kept)
        pos = end
        if marker == _JPEG_SOS:
            found = _JPEG_MARKER_IN_SCAN.search(data, pos)
            if found is None:
                raise _truncated()
            out.append(data[pos : found.start()])
            pos = found.start()


def _next_jpeg_marker(data: bytes, pos: int) -> tuple[int, int]:
    # Like libjpeg, skip stray bytes before a marker and any number of 0xFF fill bytes.
    pos = data.find(b"\xff", pos)
    if pos < 0:
        raise _truncated()
    n = len(data)
    while pos < n and data[pos] == 0xFF:
        pos += 1
    if pos >= n:
        raise _truncated()
    return data[pos], pos + 1


def _kept_jpeg_segment(marker: int, payload: bytes) -> bytes | None:
    if marker == 0xE0 and payload.startswith(b"JFIF\x00") and len(payload) >= 14:
        return _segment(0xE0, _bare_jfif(payload))
    if marker == 0xEE and payload.startswith(b"Adobe") and len(payload) >= 12:
        # Adobe's transform flag says whether three channels are RGB or YCbCr: colour, not metadata.
        return _segment(0xEE, payload[:12])
    if marker in _JPEG_KEEP or marker == _JPEG_SOS:
        return _segment(marker, payload)
    return None


def _segment(marker: int, payload: bytes) -> bytes:
    return bytes((0xFF, marker)) + struct.pack(">H", len(payload) + 2) + payload


def _bare_jfif(payload: bytes) -> bytes:
    units = payload[7] if payload[7] <= 2 else 0
    # The version (1.02 when it is not a 1.x), the original density, and no embedded thumbnail: a file
    # with nothing to strip (as the site client sends photos) comes out byte for byte the same.
    version = payload[5:7] if payload[5] == 1 and payload[6] <= 2 else b"\x01\x02"
    return b"JFIF\x00" + version + bytes((units,)) + payload[8:12] + b"\x00\x00"


# Chunks that carry pixels or how to show them; text, eXIf, iCCP, tIME and private chunks go.
_PNG_KEEP = frozenset(
    [b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND", b"gAMA", b"cHRM", b"sRGB", b"sBIT", b"pHYs"]
)
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strip_png(data: bytes) -> bytes:
    """A PNG with only pixel-describing chunks, ending at IEND."""
    if not data.startswith(_PNG_SIGNATURE):
        raise _corrupt()
    out = [_PNG_SIGNATURE]
    pos = len(_PNG_SIGNATURE)
    n = len(data)
    while True:
        if pos + 8 > n:
            raise _truncated()
        length, ctype = struct.unpack_from(">I4s", data, pos)
        end = pos + 12 + length
        if end > n:
            raise _truncated()
        if ctype in _PNG_KEEP:
            chunk = data[pos:end]
            if zlib.crc32(chunk[4:-4]) != struct.unpack_from(">I", chunk, len(chunk) - 4)[0]:
                raise _corrupt()
            out.append(chunk)
        pos = end
        if ctype == b"IEND":
            return b"".join(out)


_WEBP_KEEP = frozenset([b"VP8X", b"VP8 ", b"VP8L", b"ALPH"])
_VP8X_METADATA_FLAGS = 0x20 | 0x08 | 0x04  # ICC, EXIF, XMP
_VP8X_ANIMATION_FLAG = 0x02


def strip_webp(data: bytes) -> bytes:
    """A WebP without ICCP, EXIF and XMP chunks, with the VP8X flags and RIFF size fixed."""
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WEBP":
        raise _corrupt()
    (riff_size,) = struct.unpack_from("<I", data, 4)
    end_of_riff = 8 + riff_size
    if end_of_riff > len(data):
        raise _truncated()
    chunks: list[bytes] = []
    pos = 12
    while pos < end_of_riff:
        if pos + 8 > end_of_riff:
            raise _truncated()
        fourcc, size = struct.unpack_from("<4sI", data, pos)
        end = pos + 8 + size + (size & 1)
        if pos + 8 + size > end_of_riff:
            raise _truncated()
        if fourcc in _WEBP_KEEP:
            chunk = bytearray(data[pos : pos + 8 + size])
            if size & 1:
                chunk.append(0)
            if fourcc == b"VP8X" and size >= 1:
                if chunk[8] & _VP8X_ANIMATION_FLAG:
                    raise MediaRejected(
                        "unsupported_format", "Animated images are not accepted. Upload a still photo."
                    )
                chunk[8] &= ~_VP8X_METADATA_FLAGS & 0xFF
            chunks.append(bytes(chunk))
        pos = end
    body = b"WEBP" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body
