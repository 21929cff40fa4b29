"""Photo checks a technician can act on in seconds: too small, blurred, too dark, too bright, glare.

Every measure runs on reduced copies of the photo, so a 12-megapixel image costs a few tens of
milliseconds, and the same rules give the same answer on the site (before upload) and on the server.

How the measures work, and why:

* ``sharpness`` compares fine detail with coarse detail: the variance of the Laplacian divided by the
  variance of the Laplacian four times coarser, times 100. Blur removes fine detail first, so the ratio
  falls; it does not depend on the photo's contrast, and it does not depend on its pixel count because
  the photo is first reduced by a power of two to 1448-2895 px on the long edge (smaller photos are
  measured as they are). Only the central half of the frame is used: that is where the subject is, and
  it keeps the measure cheap.
* ``brightness``, ``dark_fraction`` and ``clipped_fraction`` are read from an evenly spaced sample of the
  whole frame (every 8th pixel of a 12 MP photo; 256-512 samples on the long edge). Sampling instead of
  averaging costs under a millisecond where averaging a 12 MP frame costs 15 ms, and counts are unbiased.
  A 3x3 erosion of the near-white mask keeps only spots at least three samples wide, so
  ``clipped_fraction`` counts glare blobs, not specular specks on a pill.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zxingcpp
from PIL import Image, ImageFile, ImageFilter, ImageStat, JpegImagePlugin, PngImagePlugin, WebPImagePlugin

_LAPLACIAN = ImageFilter.Kernel((3, 3), (0, 1, 0, 1, -4, 1, 0, 1, 0), scale=1, offset=128)
# The Laplacian of an 8-bit image has a variance of about 1 from rounding alone; without subtracting it a
# featureless, badly blurred photo would score like a sharp one (both fine and coarse detail near zero).
_QUANTISATION_FLOOR = 1.5
# Long edge of the frame at which sharpness is measured, within a factor of two (reduce by powers of two,
# which JPEG draft decoding does for free).
_DETAIL_EDGE = 1448
_OVERVIEW_EDGE = 256
DARK_LEVEL = 40
CLIPPED_LEVEL = 250

_KIND_LABELS = {
    "stock_bottle": "stock bottle",
    "pills": "pill tray",
    "vial_label": "vial label",
    "final_package": "final package",
    "other": "extra",
}


@dataclass(frozen=True)
class QualityThresholds:
    """Limits for assess_photo; the defaults were tuned on the drawn photos of the demo (demo/photos.py)."""

    min_long_edge: int = 1024
    min_short_edge: int = 768
    min_sharpness: float = 8.0
    min_brightness: float = 65.0
    max_dark_fraction: float = 0.5
    max_brightness: float = 215.0
    # More than this share of the frame blown out is over-exposure, not a glare spot.
    max_bright_clipped_fraction: float = 0.03
    max_glare_fraction: float = 0.0025


DEFAULT = QualityThresholds()


@dataclass(frozen=True)
class PhotoProblem:
    """One reason to retake a photo: a stable code and a message for the technician."""

    code: str
    message: str


@dataclass(frozen=True)
class PhotoAssessment:
    """Measures of one photo and the problems they show (an empty list means the photo is usable)."""

    kind: str
    width: int
    height: int
    sharpness: float
    brightness: float
    dark_fraction: float
    clipped_fraction: float
    problems: list[PhotoProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing calls for a retake."""
        return not self.problems

    @property
    def codes(self) -> list[str]:
        """The problem codes, in the order they were found."""
        return [p.code for p in self.problems]

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON form, for storing with the media record and sending to the site."""
        return {
            "kind": self.kind,
            "width": self.width,
            "height": self.height,
            "sharpness": round(self.sharpness, 2),
            "brightness": round(self.brightness, 2),
            "dark_fraction": round(self.dark_fraction, 4),
            "clipped_fraction": round(self.clipped_fraction, 4),
            "problems": [{"code": p.code, "message": p.message} for p in self.problems],
        }


def kind_label(kind: str) -> str:
    """How a photo kind is named to a technician, e.g. "stock bottle"."""
    return _KIND_LABELS.get(kind, kind.replace("_", " "))


def _power_of_two_factor(long_edge: int, target: int) -> int:
    factor = 1
    while long_edge // (factor * 2) >= target:
        factor *= 2
    return factor


def _laplacian_variance(gray: Image.Image) -> float:
    lap = gray.filter(_LAPLACIAN)
    # Pillow copies the outermost pixels unfiltered; they would count as huge edges.
    inner = lap.crop((1, 1, lap.width - 1, lap.height - 1))
    return float(ImageStat.Stat(inner).var[0])


def _sharpness(detail: Image.Image) -> float:
    fine = _laplacian_variance(detail)
    coarse_img = detail.reduce(4) if min(detail.size) >= 32 else detail
    coarse = _laplacian_variance(coarse_img)
    if coarse <= _QUANTISATION_FLOOR:
        return 0.0
    return 100.0 * max(0.0, fine - _QUANTISATION_FLOOR) / coarse


def _exposure(overview: Image.Image) -> tuple[float, float, float]:
    hist = overview.histogram()
    total = max(1, sum(hist))
    brightness = sum(i * n for i, n in enumerate(hist)) / total
    dark = sum(hist[:DARK_LEVEL]) / total
    clipped = overview.point(lambda v: 255 if v >= CLIPPED_LEVEL else 0).filter(ImageFilter.MinFilter(3))
    clipped_fraction = clipped.histogram()[255] / total
    return brightness, dark, clipped_fraction


def _gray(image: Image.Image) -> Image.Image:
    return image if image.mode == "L" else image.convert("L")


def _problems(
    label: str, width: int, height: int, m: tuple[float, float, float, float], t: QualityThresholds
) -> list[PhotoProblem]:
    sharpness, brightness, dark, clipped = m
    out: list[PhotoProblem] = []
    if max(width, height) < t.min_long_edge or min(width, height) < t.min_short_edge:
        out.append(
            PhotoProblem(
                "too_small",
                f"The {label} photo is too small ({width}x{height}): set the camera to full resolution "
                f"(at least {t.min_long_edge}x{t.min_short_edge}) and retake it.",
            )
        )
    too_dark = brightness < t.min_brightness or dark > t.max_dark_fraction
    # Detail drowns in a very dark photo (JPEG keeps little of it), so sharpness is judged only on a lit one.
    if sharpness < t.min_sharpness and not too_dark:
        out.append(
            PhotoProblem("blurred", f"The {label} photo is blurred: hold the camera still and retake it.")
        )
    if too_dark:
        out.append(
            PhotoProblem(
                "too_dark",
                f"The {label} photo is too dark: turn on more light or move somewhere brighter, "
                "and retake it.",
            )
        )
    too_bright = brightness > t.max_brightness or clipped > t.max_bright_clipped_fraction
    if too_bright:
        out.append(
            PhotoProblem(
                "too_bright", f"The {label} photo is too bright: move out of direct light and retake it."
            )
        )
    elif clipped > t.max_glare_fraction:
        out.append(
            PhotoProblem(
                "glare",
                f"The {label} photo has glare on it: tilt the camera or move the light until the bright "
                "spot is gone, and retake it.",
            )
        )
    return out


def _assess(
    detail: Image.Image,
    overview: Image.Image,
    size: tuple[int, int],
    kind: str,
    thresholds: QualityThresholds,
) -> PhotoAssessment:
    sharpness = _sharpness(_gray(detail))
    brightness, dark, clipped = _exposure(_gray(overview))
    width, height = size
    return PhotoAssessment(
        kind=kind,
        width=width,
        height=height,
        sharpness=sharpness,
        brightness=brightness,
        dark_fraction=dark,
        clipped_fraction=clipped,
        problems=_problems(
            kind_label(kind), width, height, (sharpness, brightness, dark, clipped), thresholds
        ),
    )


def _overview(image: Image.Image) -> Image.Image:
    factor = _power_of_two_factor(max(image.size), _OVERVIEW_EDGE)
    if factor == 1:
        return image
    return image.resize((image.width // factor, image.height // factor), Image.Resampling.NEAREST)


def _centre(image: Image.Image) -> Image.Image:
    w, h = image.size
    return image.crop((w // 4, h // 4, w - w // 4, h - h // 4))


def assess_photo(
    image: Image.Image, *, kind: str, thresholds: QualityThresholds = DEFAULT
) -> PhotoAssessment:
    """Measure a photo and list what a technician must fix before it can be used."""
    if image.mode not in ("L", "RGB"):
        image = image.convert("RGB")
    long_edge = max(image.size)
    detail_factor = _power_of_two_factor(long_edge, _DETAIL_EDGE)
    detail = _centre(image)
    if detail_factor > 1:
        detail = detail.reduce(detail_factor)
    return _assess(detail, _overview(image), image.size, kind, thresholds)


# The formats the server takes, by their first bytes, and Pillow's reader of each one's header.
_HEADER_READERS: tuple[tuple[bytes, type[ImageFile.ImageFile]], ...] = (
    (b"\xff\xd8\xff", JpegImagePlugin.JpegImageFile),
    (b"\x89PNG\r\n\x1a\n", PngImagePlugin.PngImageFile),
    (b"RIFF", WebPImagePlugin.WebPImageFile),
)


def photo_pixels(path: Path) -> int | None:
    """The pixels a photo's header declares (JPEG, PNG or WebP), read without decoding the photo; None
    when it is none of these or its header cannot be read. The format's reader is used directly:
    Pillow's `Image.open` refuses a photo over twice its limit before saying how large it is."""
    with path.open("rb") as f:
        head = f.read(16)
        reader = next((r for magic, r in _HEADER_READERS if head.startswith(magic)), None)
        if reader is None:
            return None
        f.seek(0)
        try:
            with reader(f) as im:
                return int(im.width * im.height)
        except (OSError, SyntaxError, ValueError, struct.error, EOFError, IndexError):
            return None


def assess_photo_file(
    path: str | Path, *, kind: str, thresholds: QualityThresholds = DEFAULT
) -> PhotoAssessment:
    """assess_photo for a file; a large JPEG is decoded straight at the measuring scale (DCT scaling)."""
    with Image.open(path) as im:
        size = im.size
        detail_factor = _power_of_two_factor(max(size), _DETAIL_EDGE)
        if im.format == "JPEG" and detail_factor > 1:
            # Decode once at the detail scale; draft picks the DCT scale 1/detail_factor exactly.
            im.draft("RGB", (size[0] // detail_factor, size[1] // detail_factor))
        im.load()
        scaled = im if im.mode in ("L", "RGB") else im.convert("RGB")
        applied = max(1, round(max(size) / max(scaled.size)))
        rest = max(1, detail_factor // applied)
        detail = _centre(scaled)
        if rest > 1:
            detail = detail.reduce(rest)
        return _assess(detail, _overview(scaled), size, kind, thresholds)


# What US drug packages carry: GS1 DataMatrix (DSCSA), GS1-128, and the UPC-A/EAN-13 of the NDC.
# Looking for these alone reads a 3 MP photo in about 30 ms instead of about 85 ms for every format.
# The (Python) enum's members, made into a zxingcpp.BarcodeFormats at each read: a native object held
# by the module outlives the library at exit, which then reports it "leaked".
DRUG_PACKAGE_FORMATS = (
    zxingcpp.BarcodeFormat.DataMatrix,
    zxingcpp.BarcodeFormat.Code128,
    zxingcpp.BarcodeFormat.UPCA,
    zxingcpp.BarcodeFormat.EAN13,
)


# Symbology identifiers of the symbols that carry a product number (GTIN): GS1 DataMatrix, GS1-128, and
# UPC-A/EAN-13. A pharmacy's own Code 128 (an Rx number) is ]C0. Told apart by prefix, without parsing:
# biip's tables cost a media worker 22 MB.
PRODUCT_SYMBOLOGIES = ("]d2", "]C1", "]E0")


def decode_barcodes(image: Image.Image, *, thorough: bool = True) -> list[str]:
    """Every barcode zxing-cpp finds, as symbology identifier + raw text (GS1 separators as \\x1d).

    Thorough, the search turns the image every way and looks for light-on-dark symbols too; without,
    it reads upright dark-on-light symbols (and those tilted well short of 90 degrees) only.
    """
    found = zxingcpp.read_barcodes(
        _gray(image),
        formats=zxingcpp.BarcodeFormats(DRUG_PACKAGE_FORMATS),
        text_mode=zxingcpp.TextMode.Plain,
        try_rotate=thorough,
        try_invert=thorough,
    )
    return [f"{b.symbology_identifier}{b.text}" for b in found]


def decode_product_barcodes(image: Image.Image) -> list[str]:
    """The barcodes of a stock-bottle photo taken as evidence: the thorough search, unless a quick look
    (a third of its cost) already found a symbol that carries a product number.

    A photo whose product code is upright and dark on light, as most are, costs only the quick look;
    any other still gets the thorough search.
    """
    gray = _gray(image)
    quick = decode_barcodes(gray, thorough=False)
    if any(text.startswith(PRODUCT_SYMBOLOGIES) for text in quick):
        return quick
    return decode_barcodes(gray)
