"""How far apart the perceptual hashes of reused and of distinct photos are: the evidence for the threshold.

Draws the demo's photos (demo/world.py's prescriptions, as `python -m demo` draws them), takes each in
through the server's own image path (`process_image`, which computes the hash from the thumbnail it
makes), and prints JSON: the distances between each photo and its reused copies (re-encoded at other
JPEG qualities, 2 % cropped, scaled down), its retakes (the same scene shifted, turned or lit
differently), and distinct photos of the same product and of the same counter.

    .venv/bin/python -m bench.photo_distances [--size 1600x1200] [--seeds 6]
"""

from __future__ import annotations

import argparse
import io
import itertools
import json
import statistics
import tempfile
from collections.abc import Iterable
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

from PIL import Image

from demo import photos
from demo.world import LIVE, UNFILLED, DemoRx, evidence_photos
from server.evidence.photo_hash import NEAR_DISTANCE, distance
from server.media.images import process_image
from server.media.workfiles import WorkFiles

KINDS = ("stock_bottle", "pills", "vial_label")


def hash_of(data: bytes, work_dir: Path) -> int:
    """The hash the server stores for these bytes."""
    src = work_dir / "upload.jpg"
    src.write_bytes(data)
    work = WorkFiles(work_dir)
    try:
        processed = process_image(src, work, max_pixels=50_000_000, data=data)
    finally:
        work.remove()
    assert processed.perceptual_hash is not None
    return processed.perceptual_hash


def jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def crop(image: Image.Image, fraction: float, *, centred: bool) -> Image.Image:
    """`fraction` of the width and height cut off: half on each side, or all on the right and bottom."""
    w, h = image.size
    dx, dy = round(w * fraction), round(h * fraction)
    if centred:
        return image.crop((dx // 2, dy // 2, w - (dx - dx // 2), h - (dy - dy // 2)))
    return image.crop((0, 0, w - dx, h - dy))


def shifted(image: Image.Image, fraction: float) -> Image.Image:
    """The camera moved right and down by `fraction` of the frame (the frame then scaled back)."""
    w, h = image.size
    dx, dy = round(w * fraction), round(h * fraction)
    return image.crop((dx, dy, w, h)).resize((w, h), Image.Resampling.BILINEAR)


def turned(image: Image.Image, degrees: float) -> Image.Image:
    w, h = image.size
    out = image.rotate(degrees, resample=Image.Resampling.BICUBIC)
    return crop(out, 0.06, centred=True).resize((w, h), Image.Resampling.BILINEAR)


def copies(image: Image.Image) -> dict[str, bytes]:
    """What a reuser would send: the same photo re-encoded, cropped, scaled."""
    w, h = image.size
    return {
        "jpeg_q60": jpeg(image, 60),
        "jpeg_q75": jpeg(image, 75),
        "jpeg_q95": jpeg(image, 95),
        "crop_2pct_centred_q75": jpeg(crop(image, 0.02, centred=True), 75),
        "crop_2pct_corner_q75": jpeg(crop(image, 0.02, centred=False), 75),
        "crop_5pct_centred_q75": jpeg(crop(image, 0.05, centred=True), 75),
        "scaled_half_q80": jpeg(image.resize((w // 2, h // 2), Image.Resampling.LANCZOS), 80),
    }


def retakes(image: Image.Image) -> dict[str, bytes]:
    """The same scene photographed again: not the same photo, though near it."""
    return {
        "shift_5pct": jpeg(shifted(image, 0.05), 88),
        "shift_10pct": jpeg(shifted(image, 0.10), 88),
        "turn_2deg": jpeg(turned(image, 2.0), 88),
        "exposure_plus_half_stop": jpeg(photos.degrade(image, overexpose=0.5), 88),
        "exposure_minus_half_stop": jpeg(photos.degrade(image, darkness=0.5), 88),
    }


def summary(values: Iterable[int]) -> dict[str, Any]:
    v = sorted(values)
    if not v:
        return {"n": 0}
    return {
        "n": len(v),
        "min": v[0],
        "median": statistics.median(v),
        "p90": v[int(len(v) * 0.9)],
        "max": v[-1],
        "within_threshold": sum(d <= NEAR_DISTANCE for d in v),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="1600x1200", help="photo size as the demo draws phone photos")
    ap.add_argument("--seeds", type=int, default=6, help="distinct photos of one product (seeds)")
    args = ap.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    assert len(size) == 2
    expiry = date(2027, 12, 31)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The demo's live fills and its unfilled prescription, each with its own seed, as the demo does.
        demos: list[tuple[DemoRx, int]] = [(d, i) for i, d in enumerate(LIVE)] + [(UNFILLED, 11)]
        originals: dict[str, dict[tuple[str, int], Image.Image]] = {k: {} for k in KINDS}
        for d, seed in demos:
            for kind, image in evidence_photos(d, seed, f"L{2400 + seed}A", expiry, size).items():
                originals[kind][(d.rx, seed)] = image
        # Distinct photos of one product: the unfilled prescription on other days (other seeds)...
        for seed in range(100, 100 + args.seeds):
            for kind, image in evidence_photos(UNFILLED, seed, "L2417C", expiry, size).items():
                originals[kind][(UNFILLED.rx, seed)] = image
        # ... and the worst case for a vial: the same vial, lying just where the last one lay, for
        # another patient (the same seed, so the same counter, angle and position; only the label text).
        other_patient = replace(UNFILLED, patient="Marvin Oakes", rx="6009911")
        same_spot = evidence_photos(other_patient, 11, "L2417C", expiry, size)["vial_label"]

        hashes = {
            kind: {key: hash_of(photos.to_jpeg_bytes(im, 88), work) for key, im in per.items()}
            for kind, per in originals.items()
        }
        reused: dict[str, list[int]] = {}
        retaken: dict[str, list[int]] = {}
        for kind, per in originals.items():
            for key, image in per.items():
                for name, data in copies(image).items():
                    reused.setdefault(name, []).append(distance(hashes[kind][key], hash_of(data, work)))
                for name, data in retakes(image).items():
                    retaken.setdefault(name, []).append(distance(hashes[kind][key], hash_of(data, work)))

        same_product: dict[str, list[int]] = {}
        other_product: dict[str, list[int]] = {}
        cross_kind: list[int] = []
        for kind, hashed in hashes.items():
            for (a_key, a), (b_key, b) in itertools.combinations(hashed.items(), 2):
                bucket = same_product if a_key[0] == b_key[0] else other_product
                bucket.setdefault(kind, []).append(distance(a, b))
        for k1, k2 in itertools.combinations(KINDS, 2):
            cross_kind.extend(distance(a, b) for a in hashes[k1].values() for b in hashes[k2].values())
        vial = hashes["vial_label"][(UNFILLED.rx, 11)]
        same_spot_distance = distance(vial, hash_of(photos.to_jpeg_bytes(same_spot, 88), work))

    print(
        json.dumps(
            {
                "threshold": NEAR_DISTANCE,
                "photo_size": list(size),
                "photos": sum(len(v) for v in hashes.values()),
                "reused_copies": {k: summary(v) for k, v in reused.items()},
                "retakes_same_scene": {k: summary(v) for k, v in retaken.items()},
                "distinct_same_product": {k: summary(v) for k, v in same_product.items()},
                "distinct_other_product": {k: summary(v) for k, v in other_product.items()},
                "distinct_other_kind": summary(cross_kind),
                "vial_same_spot_other_patient": same_spot_distance,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
