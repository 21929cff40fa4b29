"""Stored media for the people allowed to see them; HTTP ranges so videos seek.

Who may read a medium is not storage's rule: the application hands MediaAccess a policy, asked with the
medium, the site it belongs to and, for a recording, its consultation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

from sqlalchemy import func, select

from server.db.engine import Database
from server.db.models import Consultation, Fill, Media, Prescription, Site
from server.errors import NotFound

Reader = TypeVar("Reader")
ReadPolicy = Callable[[Reader, Media, Site, Consultation | None], bool]


class MediaAccess(Generic[Reader]):
    def __init__(self, db: Database, may_read: ReadPolicy[Reader]) -> None:
        self.db = db
        self.may_read = may_read

    async def find_variant(self, reader: Reader, media_id: int, variant: str | None) -> tuple[str, str]:
        """(sha256, content type) of one variant of one medium, if the policy lets the reader see it.

        Without a variant: the 2048 px image, or the full video. The upload itself is never kept (it may
        carry GPS and other metadata); "full" is the cleaned evidence at full resolution.
        """
        async with self.db.read() as s:
            row = (
                await s.execute(
                    select(Media, Site, Consultation)
                    .outerjoin(Fill, Fill.id == Media.fill_id)
                    .outerjoin(Consultation, Consultation.id == Media.consultation_id)
                    .outerjoin(Prescription, Prescription.id == Media.prescription_id)
                    .join(
                        Site,
                        Site.id == func.coalesce(Fill.site_id, Consultation.site_id, Prescription.site_id),
                    )
                    .where(Media.id == media_id)
                )
            ).first()
        if row is None or not self.may_read(reader, row.Media, row.Site, row.Consultation):
            raise NotFound("No such media.")
        media: Media = row.Media
        if media.removed_at is not None:
            raise NotFound(
                f"This medium was removed under the retention rules on {media.removed_at.date()}; its "
                "record (kind, size, SHA-256) remains.",
                code="removed_under_retention",
            )
        variant = variant or ("2048" if "2048" in media.variants else "full")
        found = media.variants.get(variant)
        if not found:
            raise NotFound(
                f"This media has no {variant!r} variant; it has {', '.join(sorted(media.variants))}."
            )
        return str(found["sha256"]), str(found["content_type"])
