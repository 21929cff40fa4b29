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

import json
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    Row,
    Select,
    String,
    and_,
    bindparam,
    cast,
    exists,
    func,
    literal,
    or_,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY, BIT
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.bound import one_of
from server.db.models import Fill, Media
from server.evidence.photo_hash import (
    BANDS,
    HALF_BITS,
    NEAR_DISTANCE,
    band_neighbours,
    bands,
    distance,
    halves,
    joined,
)

# At most this many earlier photos are named per photo of the fill (closest first): the flag travels in
# events and the pharmacist needs one to compare, not a hundred.
MATCHES_PER_PHOTO = 3
DRAFT = "draft"


async def candidate_rows(
    s: AsyncSession, digests: Iterable[str], hashes: Iterable[int]
) -> Sequence[Row[int, str | None, str, int | None, int | None]]:
    """Fills' media with one of these digests, or sharing a band key with one of these hashes: a
    superset of the photos within NEAR_DISTANCE, each (id, fill_id, sha256, perceptual_hash,
    perceptual_hash_vertical)."""
    keys: list[set[int]] = [set() for _ in range(BANDS)]
    hashes = sorted(set(hashes))
    for value in hashes:
        for band, band_value in enumerate(bands(value)):
            keys[band].update(band_neighbours(band, band_value))
    dialect = (await s.connection()).dialect.name
    query = _QUERIES.get(dialect)
    if query is None:
        query = _QUERIES[dialect] = _candidates_query(dialect)
    params: dict[str, Any] = {"digests": sorted(set(digests))}
    params.update((f"band_{band}", sorted(k)) for band, k in enumerate(keys))
    if dialect == "postgresql":
        stored = [halves(value) for value in hashes]
        params.update(horizontal=[h for h, _ in stored], vertical=[v for _, v in stored])
    else:
        params = {name: json.dumps(values) for name, values in params.items()}
    return (await s.execute(query, params)).all()


_QUERIES: dict[str, Select[int, str | None, str, int | None, int | None]] = {}


def _candidates_query(dialect: str) -> Select[int, str | None, str, int | None, int | None]:
    """One statement with one bound list per column, whatever the number of keys: an IN list of 400
    parameters cost more to build and bind than the lookup itself (bench/photo_reuse.py)."""
    columns = [Media.sha256, *(getattr(Media, f"hash_band_{b}") for b in range(BANDS))]
    names = ["digests", *(f"band_{b}" for b in range(BANDS))]
    terms: list[ColumnElement[bool]] = []
    for column, name in zip(columns, names, strict=True):
        if dialect == "postgresql":
            element = String() if name == "digests" else Integer()
            terms.append(one_of(column, name, element, postgres=True))
        else:
            # SQLite: the list as a JSON array, read by json_each; each term still searches its index.
            listed = func.json_each(bindparam(name, type_=String())).table_valued("value")
            terms.append(column.in_(select(listed.c.value)))
    identical, *by_band = terms
    near: ColumnElement[bool] = or_(*by_band)
    if dialect == "postgresql":
        near = and_(near, _near_in_sql())
    return select(
        Media.id,
        Media.fill_id,
        Media.sha256,
        Media.perceptual_hash,
        Media.perceptual_hash_vertical,
    ).where(or_(identical, near))


def _near_in_sql() -> ColumnElement[bool]:
    """PostgreSQL: the candidate is within NEAR_DISTANCE of one of the bound hashes (`horizontal`,
    `vertical`: their stored halves, in pairs). With a year of photos a band key one bit away matches a
    few photos each, hundreds a fill, nearly all far: the database drops them rather than sending them
    here. The distance is still computed here for what comes back (`distance`, the one definition)."""
    mine = (
        func.unnest(
            bindparam("horizontal", type_=ARRAY(BigInteger())),
            bindparam("vertical", type_=ARRAY(BigInteger())),
        )
        .table_valued("h", "v")
        .render_derived()
    )

    def differing(stored: Any, bound: Any) -> Any:
        return func.bit_count(cast(stored.op("#")(bound), BIT(HALF_BITS)))

    return exists(
        select(literal(1))
        .select_from(mine)
        .where(
            differing(Media.perceptual_hash, mine.c.h) + differing(Media.perceptual_hash_vertical, mine.c.v)
            <= NEAR_DISTANCE
        )
    )


async def reused_photos(
    s: AsyncSession, fill_id: str, media: Sequence[Media], replaces: Collection[str] = ()
) -> list[dict[str, Any]]:
    """The fill's media found among other fills' photos, as the `reused_photo` flag's entries. The
    rejected fills it `replaces` are not others: a resubmission keeps their photos on purpose.

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
    candidates = await candidate_rows(s, {m.sha256 for m in media}, hashed.values())

    # Plain values, not ORM attributes, in the loop: a year of photos brings ~50 candidates a photo.
    mine = [(m.id, m.sha256, hashed.get(m.id)) for m in media]
    found: dict[int, list[tuple[int, int, str, int]]] = {}
    own = {fill_id, *replaces}
    for other_id, other_fill_id, other_sha256, horizontal, vertical in candidates:
        if other_fill_id is None or other_fill_id in own:
            continue
        other = joined(horizontal, vertical) if horizontal is not None and vertical is not None else None
        for media_id, sha256, value in mine:
            if other_sha256 == sha256:
                found.setdefault(media_id, []).append((0, 0, other_fill_id, other_id))
            elif value is not None and other is not None:
                d = distance(value, other)
                if d <= NEAR_DISTANCE:
                    found.setdefault(media_id, []).append((1, d, other_fill_id, other_id))
    if not found:
        return []

    # Only fills that were submitted count: a draft's photos were never shown to anyone as evidence.
    # Asked only when something matched (rarely), rather than joined to every candidate row.
    other_fills = sorted({match[2] for matches in found.values() for match in matches})
    drafts = set(
        (await s.execute(select(Fill.id).where(Fill.id.in_(other_fills), Fill.state == DRAFT))).scalars()
    )
    entries: list[dict[str, Any]] = []
    for m in media:
        matches = sorted(
            (match for match in found.get(m.id, []) if match[2] not in drafts),
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
