"""The perceptual hash finds a photo used again, re-encoded or slightly cropped, and not a new photo."""

from __future__ import annotations

import io
import random
from datetime import date
from pathlib import Path

import pytest
from PIL import Image

from demo import photos
from server.evidence.photo_hash import (
    BAND_RADIUS,
    BANDS,
    HASH_BITS,
    NEAR_DISTANCE,
    band_neighbours,
    bands,
    distance,
    halves,
    joined,
)
from server.media.images import process_image
from server.media.workfiles import WorkFiles

SIZE = (1600, 1200)  # the demo's phone photos


def stored_hash(data: bytes, tmp_path: Path) -> int:
    """The hash the server computes when it takes these bytes in."""
    src = tmp_path / "upload.jpg"
    src.write_bytes(data)
    work = WorkFiles(tmp_path)
    try:
        processed = process_image(src, work, max_pixels=50_000_000, data=data)
    finally:
        work.remove()
    assert processed.perceptual_hash is not None
    return processed.perceptual_hash


def vial(seed: int, patient: str = "Joan Whitfield") -> Image.Image:
    return photos.vial_label_photo(
        "6001237", patient, "Simvastatin", "20 mg", "Take one tablet at bedtime", 30, seed=seed, size=SIZE
    )


def jpeg(image: Image.Image, quality: int) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def cropped(image: Image.Image, fraction: float) -> Image.Image:
    """`fraction` of the width and height cut away, half on each side."""
    w, h = image.size
    dx, dy = round(w * fraction / 2), round(h * fraction / 2)
    return image.crop((dx, dy, w - dx, h - dy))


@pytest.fixture(scope="module")
def original() -> Image.Image:
    return vial(11)


def test_a_reencoded_and_cropped_copy_of_a_photo_stays_near_it(original: Image.Image, tmp_path: Path) -> None:
    first = stored_hash(photos.to_jpeg_bytes(original, 88), tmp_path)
    assert stored_hash(photos.to_jpeg_bytes(original, 88), tmp_path) == first
    for copy in (
        jpeg(original, 60),
        jpeg(original, 95),
        jpeg(cropped(original, 0.02), 75),
        jpeg(cropped(original, 0.02).resize((1024, 768), Image.Resampling.LANCZOS), 70),
    ):
        assert distance(first, stored_hash(copy, tmp_path)) <= NEAR_DISTANCE


def test_another_photo_of_the_same_prescription_is_not_near(original: Image.Image, tmp_path: Path) -> None:
    first = stored_hash(photos.to_jpeg_bytes(original, 88), tmp_path)
    for seed in (12, 13, 14):
        # The same vial label drawn again: another day, another spot on the counter.
        other = stored_hash(photos.to_jpeg_bytes(vial(seed), 88), tmp_path)
        assert distance(first, other) > NEAR_DISTANCE
    pills = photos.pills_photo(30, seed=11, size=SIZE)
    assert distance(first, stored_hash(photos.to_jpeg_bytes(pills, 88), tmp_path)) > NEAR_DISTANCE


def test_the_stock_bottle_photographed_again_on_another_day_is_not_near(tmp_path: Path) -> None:
    def bottle(seed: int) -> bytes:
        image = photos.stock_bottle_photo(
            "0093-7153-01", "Simvastatin", "20 mg", "L2417C", date(2027, 12, 31), seed=seed, size=SIZE
        )
        return photos.to_jpeg_bytes(image, 88)

    hashes = [stored_hash(bottle(seed), tmp_path) for seed in (11, 100, 101, 102)]
    for i, a in enumerate(hashes):
        for b in hashes[i + 1 :]:
            assert distance(a, b) > NEAR_DISTANCE


def test_a_hash_is_stored_as_two_signed_64_bit_halves_and_read_back() -> None:
    rng = random.Random(7)
    for value in [
        0,
        (1 << HASH_BITS) - 1,
        1 << 127,
        1 << 63,
        *(rng.getrandbits(HASH_BITS) for _ in range(200)),
    ]:
        horizontal, vertical = halves(value)
        assert -(1 << 63) <= horizontal < 1 << 63 and -(1 << 63) <= vertical < 1 << 63
        assert joined(horizontal, vertical) == value


def test_every_hash_within_the_distance_shares_a_band_key() -> None:
    """Multi-index hashing finds all near hashes: some band of a near hash is among the looked-up keys."""
    rng = random.Random(11)
    for _ in range(2000):
        value = rng.getrandbits(HASH_BITS)
        near = value
        for bit in rng.sample(range(HASH_BITS), rng.randint(0, NEAR_DISTANCE)):
            near ^= 1 << bit
        keys = [set(band_neighbours(band, v)) for band, v in enumerate(bands(value))]
        assert any(v in keys[band] for band, v in enumerate(bands(near)))
    assert BANDS * (BAND_RADIUS + 1) > NEAR_DISTANCE
    assert sum(len(band_neighbours(band, 0)) for band in range(BANDS)) == BANDS + HASH_BITS


def test_distance_counts_the_differing_bits() -> None:
    assert distance(0b1011, 0b0010) == 2
    assert distance((1 << HASH_BITS) - 1, 0) == HASH_BITS
