"""The database row recording an ingested file.

Apart from ingest.py on purpose: the media workers import ingest.py, and a worker that imported the
database models would carry SQLAlchemy (about 25 MB each) for nothing.
"""

from __future__ import annotations

from typing import Any

from server.db.models import Media, MediaFile
from server.evidence.photo_hash import BANDS, bands, halves
from server.media.ingest import IngestedMedia


def media_row(
    ingested: IngestedMedia, *, kind: str, filename: str, quality: dict[str, Any] | None = None
) -> Media:
    """The media row recording this file; its owner (fill or consultation) is set by the caller."""
    found = ingested.perceptual_hash
    horizontal, vertical = halves(found) if found is not None else (None, None)
    band_values = bands(found) if found is not None else (None,) * BANDS
    return Media(
        kind=kind,
        sha256=ingested.sha256,
        content_type=ingested.content_type,
        filename=filename[:255],
        bytes=ingested.bytes,
        width=ingested.width,
        height=ingested.height,
        duration_seconds=ingested.duration_seconds,
        variants=ingested.variants,
        quality=dict(ingested.quality) if quality is None else quality,
        perceptual_hash=horizontal,
        perceptual_hash_vertical=vertical,
        **{f"hash_band_{band}": value for band, value in enumerate(band_values)},
        files=[MediaFile(sha256=sha) for sha in sorted({v["sha256"] for v in ingested.variants.values()})],
    )
