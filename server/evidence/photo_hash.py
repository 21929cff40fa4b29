"""A photo's perceptual hash: bits that change little when the photo is re-encoded or slightly cropped.

The hash is a difference hash (dHash, as Neal Krawetz described it and as the `imagehash` package's
`dhash` computes it) taken both ways: the photo in greyscale, reduced by area averaging to 9 x 8 pixels,
one bit per pair of horizontal neighbours (set when the right one is brighter); and the same on 8 x 9
pixels for vertical neighbours (set when the lower one is brighter). 64 + 64 bits: the horizontal half
is what `Media.perceptual_hash` stores, the vertical half `Media.perceptual_hash_vertical` (each as a
signed 64-bit integer, as databases have no unsigned one). Two photos are as far apart as the number of
the 128 bits in which they differ (the Hamming distance).

Why both halves, why not `imagehash`, and how near is "near" (NEAR_DISTANCE): measured in
docs/decisions/0013-photo-reuse-hash.md.
"""

from __future__ import annotations

from typing import cast

from PIL import Image

HALF_BITS = 64
HASH_BITS = 2 * HALF_BITS
_HALF_MASK = (1 << HALF_BITS) - 1
_GRID = 8

# Two photos at most this far apart (of 128 bits) are the same photo: re-encoded, scaled, 2 % cropped.
NEAR_DISTANCE = 11

# Multi-index hashing: the 128 bits are dealt into BANDS groups (bit i into band i % BANDS, so each
# group samples the whole frame both ways). Two hashes at most NEAR_DISTANCE apart differ, in at least
# one group, in at most BAND_RADIUS bits (pigeonhole: BANDS * (BAND_RADIUS + 1) > NEAR_DISTANCE), so
# looking up each group's value and its one-bit neighbours finds every near hash, and only a few others.
BANDS = 6
BAND_RADIUS = 1
assert BANDS * (BAND_RADIUS + 1) > NEAR_DISTANCE


def _dhash(gray: Image.Image) -> int:
    # Pixel access, not tobytes(): its 64 KB encoder buffer made a media worker's heap take fresh pages
    # for the next photo's decode (tests/unit/test_media_store.py counts them).
    px = cast(tuple[int, ...], gray.resize((_GRID + 1, _GRID), Image.Resampling.BOX).get_flattened_data())
    value = 0
    for y in range(_GRID):
        at = y * (_GRID + 1)
        for x in range(at, at + _GRID):
            value = (value << 1) | (px[x + 1] > px[x])
    return value


def perceptual_hash(image: Image.Image) -> int:
    """The 128-bit hash of a photo of any size and mode: horizontal dHash << 64 | vertical dHash."""
    gray = image if image.mode == "L" else image.convert("L")
    # Area averaging over the whole frame: about the same hash from a thumbnail as from the full photo.
    return (_dhash(gray) << HALF_BITS) | _dhash(gray.transpose(Image.Transpose.TRANSPOSE))


def halves(value: int) -> tuple[int, int]:
    """The stored form of a hash: (horizontal, vertical), each a signed 64-bit integer."""
    return _signed(value >> HALF_BITS), _signed(value & _HALF_MASK)


def joined(horizontal: int, vertical: int) -> int:
    """The 128-bit hash from its stored halves (signed or unsigned)."""
    return ((horizontal & _HALF_MASK) << HALF_BITS) | (vertical & _HALF_MASK)


def _signed(half: int) -> int:
    return half - (1 << HALF_BITS) if half >= 1 << (HALF_BITS - 1) else half


def distance(a: int, b: int) -> int:
    """The number of bits in which two 128-bit hashes differ."""
    return (a ^ b).bit_count()


def bands(value: int) -> tuple[int, ...]:
    """The hash's BANDS band values (bit i of the hash is bit i // BANDS of band i % BANDS)."""
    out = [0] * BANDS
    for i in range(HASH_BITS):
        if (value >> i) & 1:
            out[i % BANDS] |= 1 << (i // BANDS)
    return tuple(out)


def band_bits(band: int) -> int:
    """How many bits band number `band` holds (22 or 21)."""
    return len(range(band, HASH_BITS, BANDS))


def band_neighbours(band: int, value: int) -> list[int]:
    """A band's value and every value one bit away from it: the keys to look up for NEAR_DISTANCE."""
    return [value, *(value ^ (1 << j) for j in range(band_bits(band)))]
