"""Checks before anything leaves the site, so a technician learns in seconds that a photo needs retaking.

The rules are the server's own (server.evidence): photo quality (decodes, resolution, blur, exposure,
glare) from `photo_quality`, the barcode and the product check from `barcodes`. This module only picks
which rules apply to which photo and says the result in words a technician acts on.
"""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from server.evidence import photo_quality
from server.evidence.barcodes import ProductCheck, check_product, format_ndc11, normalize_ndc, parse_barcode
from server.evidence.kinds import KIND_NAMES, PHOTO_KINDS
from server.evidence.media import MAX_PHOTO_PIXELS, MAX_VIDEO_BYTES, sniff_video_container

# Barcodes are read at a power-of-two scale of the photo no smaller than this (the server reads ~2048).
BARCODE_EDGE = 1800


@dataclass(frozen=True)
class Problem:
    """One reason not to send: which file, a stable code, and what to do about it."""

    kind: str
    code: str
    message: str


@dataclass(frozen=True)
class CheckReport:
    problems: tuple[Problem, ...]
    # What goes in the fill's `barcodes`: the scans given, else what the stock bottle photo showed.
    barcodes: tuple[str, ...]
    product: ProductCheck | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return not self.problems


def _unopenable(kind: str) -> Problem:
    return Problem(
        kind,
        "unreadable",
        f"The {KIND_NAMES.get(kind, 'photo')} cannot be opened (it is not a photo, or it is damaged): "
        "retake it.",
    )


def _too_many_pixels(kind: str, pixels: int) -> Problem:
    size, limit = f"{pixels / 1e6:.0f}", f"{MAX_PHOTO_PIXELS / 1e6:.0f}"
    if size == limit:
        size, limit = f"{pixels / 1e6:.1f}", f"{MAX_PHOTO_PIXELS / 1e6:.1f}"
    return Problem(
        kind,
        "too_many_pixels",
        f"The {KIND_NAMES.get(kind, 'photo')} is {size} megapixels, more than the {limit} this accepts: "
        "lower the camera's resolution and retake it.",
    )


def video_refusal(path: Path, given: str) -> str | None:
    """Why the server would refuse a count video, read from its size and first bytes before it is kept
    (it may be hundreds of MB); None when it may go. `given` is the option as typed (--video FILE)."""
    size = path.stat().st_size
    if size == 0:
        return f"{given}: the file is empty. Record the count again."
    if size > MAX_VIDEO_BYTES:
        return (
            f"{given}: the count video is {size / 2**20:.0f} MB, more than the {MAX_VIDEO_BYTES // 2**20} "
            "MB the server takes. Record a shorter count, or at a lower resolution."
        )
    with path.open("rb") as f:
        if sniff_video_container(f.read(64)) is None:
            return f"{given}: this is not a video the server takes (MP4 or WebM). Record the count again."
    return None


def read_barcodes(path: Path) -> list[str]:
    """The barcodes a photo shows, read at about the resolution the server keeps (~2048 px)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with Image.open(path) as im:
            long_edge = max(im.size)
            factor = 1
            while long_edge // (factor * 2) >= BARCODE_EDGE:
                factor *= 2
            if im.format == "JPEG" and factor > 1:
                # DCT scaling: decoded straight to grey at a power-of-two scale, a fraction of the memory.
                im.draft("L", (im.width // factor, im.height // factor))
            reduced = max(im.size) < long_edge
            found = photo_quality.decode_barcodes(im)
        if found or not reduced:
            return found
        # Nothing at the reduced scale: a small symbol may need every pixel.
        with Image.open(path) as im:
            return photo_quality.decode_barcodes(im)


def check_photo(
    kind: str, path: Path, *, thresholds: photo_quality.QualityThresholds = photo_quality.DEFAULT
) -> tuple[list[Problem], list[str]]:
    """The quality problems of one photo, and the barcodes it shows (read only on the stock bottle)."""
    try:
        pixels = photo_quality.photo_pixels(path)
    except OSError:
        return [_unopenable(kind)], []
    if pixels is not None and pixels > MAX_PHOTO_PIXELS:
        return [_too_many_pixels(kind, pixels)], []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            assessment = photo_quality.assess_photo_file(path, kind=kind, thresholds=thresholds)
        barcodes = read_barcodes(path) if kind == "stock_bottle" else []
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning):
        return [_unopenable(kind)], []
    return [Problem(kind, p.code, p.message) for p in assessment.problems], barcodes


def _expiry_problems(scans: Sequence[str], today: dt.date) -> list[Problem]:
    out = []
    for text in scans:
        scan = parse_barcode(text)
        if scan.expiry is not None and scan.expiry < today:
            out.append(
                Problem(
                    "stock_bottle",
                    "expired",
                    f"The stock bottle expired on {scan.expiry:%Y-%m-%d}: take stock that is in date.",
                )
            )
    return out


def ndc10_as_printed(ndc10: str) -> list[str]:
    """The ways a 10-digit NDC read from a barcode is printed on its bottle (hyphenated).

    The barcode carries the ten digits without their grouping. A labeler code of four digits (4-4-2)
    always begins with 0: the 11-digit billing form pads it with another 0, so no five-digit labeler
    code can begin with one. Otherwise the labeler has five digits, and its product and package codes
    are 3-2 or 4-1, which only the labeler's listing tells: both are given then.
    """
    if ndc10.startswith("0"):
        return [f"{ndc10[:4]}-{ndc10[4:8]}-{ndc10[8:]}"]
    return [f"{ndc10[:5]}-{ndc10[5:8]}-{ndc10[8:]}", f"{ndc10[:5]}-{ndc10[5:9]}-{ndc10[9:]}"]


def ndc11_as_printed(ndc11: str) -> list[str]:
    """The hyphenated 10-digit forms an 11-digit NDC (a prescription's) can be printed in on a bottle."""
    d = normalize_ndc(ndc11)
    if d.startswith("0"):
        return [f"{d[1:5]}-{d[5:9]}-{d[9:]}"]
    forms = []
    if d[5] == "0":
        forms.append(f"{d[:5]}-{d[6:9]}-{d[9:]}")
    if d[9] == "0":
        forms.append(f"{d[:5]}-{d[5:9]}-{d[10:]}")
    return forms


def ndc_label(ndc11: str, *, billing: bool = True) -> str:
    """An 11-digit NDC as a technician finds it on the bottle, with the billing form beside it."""
    eleven = format_ndc11(ndc11)
    printed = ndc11_as_printed(ndc11)
    if not printed:
        return eleven
    return " or ".join(printed) + (f" ({eleven} in the 11-digit form)" if billing else "")


def check_barcodes(
    scans: Sequence[str], expected_ndc: str | None, today: dt.date
) -> tuple[list[Problem], list[str], ProductCheck | None]:
    """Barcode problems against the prescription's NDC (or, offline, the barcode alone)."""
    if expected_ndc is None:
        problems = []
        notes = ["The prescription's NDC is not known here (offline): the server will compare it."]
        for text in scans:
            scan = parse_barcode(text)
            if not scan.usable:
                problems.append(_unreadable(scan.error))
        return problems + _expiry_problems(scans, today), notes, None
    check = check_product(scans, expected_ndc, today)
    expected = format_ndc11(expected_ndc)
    detail = check.detail
    if check.result == "none":
        return (
            [
                Problem(
                    "stock_bottle",
                    "no_barcode",
                    "No barcode could be read on the stock bottle photo: scan the bottle's barcode, or "
                    "retake the photo with the label facing the camera and the square code sharp and "
                    "filling more of the frame.",
                )
            ],
            [],
            check,
        )
    if check.result == "mismatch":
        found = sorted(
            {
                "NDC " + " or ".join(ndc10_as_printed(b["ndc10"]))
                for b in detail["barcodes"]
                if b["gtin"] and not b["matches"] and b["ndc10"]
            }
            | {f"GTIN {b['gtin']}" for b in detail["barcodes"] if b["gtin"] and not b["ndc10"]}
        )
        return (
            [
                Problem(
                    "stock_bottle",
                    "wrong_ndc",
                    f"Wrong product: the bottle is {', '.join(found) or 'another product'}, but the "
                    f"prescription is for NDC {ndc_label(expected_ndc)}. "
                    "Check that you picked the right bottle.",
                )
            ],
            [],
            check,
        )
    if check.result == "unreadable":
        errors = [b["error"] for b in detail["barcodes"] if b["error"]]
        return [_unreadable(errors[0] if errors else None)], [], check
    if check.result == "expired":
        return (
            [
                Problem(
                    "stock_bottle",
                    "expired",
                    f"The stock bottle expired on {detail.get('expiry')}: take stock that is in date.",
                )
            ],
            [],
            check,
        )
    matched: dict[str, Any] = next((b for b in detail["barcodes"] if b["matches"]), {})
    extra = "".join(
        f", {name} {matched[key]}"
        for name, key in (("lot", "lot"), ("expires", "expiry"))
        if matched.get(key)
    )
    return [], [f"The barcode matches the prescription: NDC {expected}{extra}."], check


def _unreadable(error: str | None) -> Problem:
    why = f" ({error})" if error else ""
    return Problem(
        "stock_bottle",
        "barcode_unreadable",
        f"The barcode does not identify a drug{why}: scan the manufacturer's barcode on the stock bottle "
        "(the square GS1 DataMatrix or the UPC).",
    )


def check_submission(
    files: Sequence[tuple[str, Path]],
    *,
    scanned: Sequence[str],
    expected_ndc: str | None,
    today: dt.date,
    thresholds: photo_quality.QualityThresholds = photo_quality.DEFAULT,
) -> CheckReport:
    """Every check for one fill, said in words a technician acts on."""
    problems: list[Problem] = []
    decoded: list[str] = []
    notes: list[str] = []
    photos = [(kind, path) for kind, path in files if kind in PHOTO_KINDS]
    # Two photos at a time: Pillow and zxing-cpp release the GIL, and each photo is decoded at reduced scale.
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="check") as pool:
        results = list(pool.map(lambda item: check_photo(item[0], item[1], thresholds=thresholds), photos))
    for (kind, _), (found, barcodes) in zip(photos, results, strict=True):
        problems += found
        if kind == "stock_bottle":
            decoded += barcodes
    scans = [s for s in scanned if s.strip()] or list(dict.fromkeys(decoded))
    barcode_problems, barcode_notes, product = check_barcodes(scans, expected_ndc, today)
    if not scanned and decoded:
        notes.append("Barcode read from the stock bottle photo.")
    photo_kinds = {kind for kind, _ in files}
    clean = sorted(
        KIND_NAMES.get(k, k) for k in photo_kinds & PHOTO_KINDS if not any(p.kind == k for p in problems)
    )
    if clean:
        notes.insert(0, "Sharp, well exposed and large enough: " + ", ".join(clean) + ".")
    return CheckReport(
        problems=tuple(problems + barcode_problems),
        barcodes=tuple(scans),
        product=product,
        notes=tuple(notes + barcode_notes),
    )
