"""Stored media for the people allowed to see the fill; HTTP ranges so videos seek."""

from __future__ import annotations

from sqlalchemy import select

from server.db.engine import Database
from server.db.models import Fill, Media, Site
from server.errors import NotFound
from server.security.principal import Principal


async def find_variant(db: Database, actor: Principal, media_id: int, variant: str | None) -> tuple[str, str]:
    """(sha256, content type) of one variant of one medium, if the actor may see its fill.

    Without a variant: the 2048 px image, or the full video. The upload itself is never kept (it may
    carry GPS and other metadata); "full" is the cleaned evidence at full resolution.
    """
    async with db.read() as s:
        row = (
            await s.execute(
                select(Media, Site)
                .join(Fill, Fill.id == Media.fill_id)
                .join(Site, Site.id == Fill.site_id)
                .where(Media.id == media_id)
            )
        ).first()
    if row is None or not actor.may_see_site(row.Site.id, row.Site.state):
        raise NotFound("No such media.")
    media: Media = row.Media
    variant = variant or ("2048" if "2048" in media.variants else "full")
    found = media.variants.get(variant)
    if not found:
        raise NotFound(f"This media has no {variant!r} variant; it has {', '.join(sorted(media.variants))}.")
    return str(found["sha256"]), str(found["content_type"])
