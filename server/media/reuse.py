"""Photos of a fill that were used before, as evidence of another fill: byte-identical or perceptually near.

A photo is compared with the photos of every other fill, of any site and any kind: a vial photo sent
again as the pills photo is as much a reuse as one sent again as a vial photo, and one from another site
is worse, not better. Fills still in draft are left out: their photos were never evidence of anything.

Byte-identical copies are found by the digest (`ix_media_sha256`), any media kind, videos too.
Near copies by multi-index hashing (server.evidence.photo_hash): every photo whose hash shares one of
the BANDS band values, or is one bit away in it, is a candidate (an indexed lookup per band); the full
distance is then computed here. By pigeonhole that finds every photo within NEAR_DISTANCE.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import Fill, Media
from server.evidence.photo_hash import BANDS, NEAR_DISTANCE, band_neighbours, bands, distance, joined

# At most this many earlier photos are named per photo of the fill (closest first): the flag travels in
# events and the pharmacist needs one to compare, not a hundred.
MATCHES_PER_PHOTO = 3
DRAFT = "draft"

_BAND_COLUMNS = [getattr(Media, f"hash_band_{band}") for band in range(BANDS)]


async def reused_photos(s: AsyncSession, fill_id: str, media: Sequence[Media]) -> list[dict[str, Any]]:
    """The fill's media found among other fills' photos, as the `reused_photo` flag's entries.

    Each entry: {"media_id", "kind", "other_fill_id", "other_media_id", "match": "identical" |
    "similar", "distance"}; the closest matches first for each medium, at most MATCHES_PER_PHOTO each.
    An empty list when nothing was reused.
    """
    if not media:
        return []
    hashed = {
        m.id: joined(m.perceptual_hash, m.perceptual_hash_vertical)
        for m in media
        if m.perceptual_hash is not None and m.perceptual_hash_vertical is not None
    }
    conditions: list[Any] = [Media.sha256.in_({m.sha256 for m in media})]
    keys: list[set[int]] = [set() for _ in range(BANDS)]
    for value in hashed.values():
        for band, band_value in enumerate(bands(value)):
            keys[band].update(band_neighbours(band, band_value))
    conditions += [column.in_(sorted(k)) for column, k in zip(_BAND_COLUMNS, keys, strict=True) if k]
    candidates = (
        await s.execute(
            select(
                Media.id,
                Media.fill_id,
                Media.sha256,
                Media.perceptual_hash,
                Media.perceptual_hash_vertical,
            ).where(or_(*conditions))
        )
    ).all()

    found: dict[int, list[tuple[int, int, str, int]]] = {}
    for other in candidates:
        if other.fill_id is None or other.fill_id == fill_id:
            continue
        for m in media:
            if other.sha256 == m.sha256:
                found.setdefault(m.id, []).append((0, 0, other.fill_id, other.id))
                continue
            mine = hashed.get(m.id)
            if mine is None or other.perceptual_hash is None or other.perceptual_hash_vertical is None:
                continue
            d = distance(mine, joined(other.perceptual_hash, other.perceptual_hash_vertical))
            if d <= NEAR_DISTANCE:
                found.setdefault(m.id, []).append((1, d, other.fill_id, other.id))
    if not found:
        return []

    # Only fills that were submitted count; a draft's photos were never shown to anyone as evidence.
    other_fills = {fid for matches in found.values() for _, _, fid, _ in matches}
    drafts = set(
        (await s.execute(select(Fill.id).where(Fill.id.in_(other_fills), Fill.state == DRAFT))).scalars()
    )
    entries: list[dict[str, Any]] = []
    for m in media:
        matches = sorted(
            (x for x in found.get(m.id, []) if x[2] not in drafts),
            # Identical before similar, then the nearest, then the most recent photo.
            key=lambda x: (x[0], x[1], -x[3]),
        )
        entries.extend(
            {
                "media_id": m.id,
                "kind": m.kind,
                "other_fill_id": other_fill_id,
                "other_media_id": other_media_id,
                "match": "identical" if similar == 0 else "similar",
                "distance": d,
            }
            for similar, d, other_fill_id, other_media_id in matches[:MATCHES_PER_PHOTO]
        )
    return entries
