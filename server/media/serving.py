"""Stored media for the people allowed to see them; HTTP ranges so videos seek.

A fill's media are for everyone who may see the fill's site; a consultation's recording only for those
ConsultationService.may_see_recording names.
"""

from __future__ import annotations

from sqlalchemy import func, select

from server.consultations.service import ConsultationService
from server.db.engine import Database
from server.db.models import Consultation, Fill, Media, Site
from server.errors import NotFound
from server.security.principal import Principal


async def find_variant(db: Database, actor: Principal, media_id: int, variant: str | None) -> tuple[str, str]:
    """(sha256, content type) of one variant of one medium, if the actor may see it.

    Without a variant: the 2048 px image, or the full video. The upload itself is never kept (it may
    carry GPS and other metadata); "full" is the cleaned evidence at full resolution.
    """
    async with db.read() as s:
        row = (
            await s.execute(
                select(Media, Site, Consultation)
                .outerjoin(Fill, Fill.id == Media.fill_id)
                .outerjoin(Consultation, Consultation.id == Media.consultation_id)
                .join(Site, Site.id == func.coalesce(Fill.site_id, Consultation.site_id))
                .where(Media.id == media_id)
            )
        ).first()
    if row is None or not actor.may_see_site(row.Site.id, row.Site.state):
        raise NotFound("No such media.")
    if row.Consultation is not None and not ConsultationService.may_see_recording(
        row.Consultation, row.Site, actor
    ):
        raise NotFound("No such media.")
    media: Media = row.Media
    variant = variant or ("2048" if "2048" in media.variants else "full")
    found = media.variants.get(variant)
    if not found:
        raise NotFound(f"This media has no {variant!r} variant; it has {', '.join(sorted(media.variants))}.")
    return str(found["sha256"]), str(found["content_type"])
