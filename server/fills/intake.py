"""Taking a finished upload into a fill: verify and decode it, store its variants, record it."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path
from typing import Any

from server.config import Config
from server.db.models import Media
from server.fills.lifecycle import FillService
from server.media.ingest import ingest_media
from server.media.rows import media_row
from server.media.store import MediaStore
from server.security.principal import Principal


class MediaIntake:
    def __init__(
        self, fills: FillService, store: MediaStore, executor: concurrent.futures.Executor, config: Config
    ) -> None:
        self.fills = fills
        self.store = store
        self.executor = executor
        self.config = config

    async def take(
        self, actor: Principal, fill_id: str, path: Path, *, sha256: str, kind: str, filename: str
    ) -> Media:
        """Stores one medium of a draft fill; raises MediaRejected for a file that is not sound evidence."""
        ingested = await ingest_media(
            path,
            claimed_sha256=sha256,
            kind=kind,
            filename=filename,
            store=self.store,
            executor=self.executor,
            max_image_pixels=self.config.max_image_pixels,
            # The server reads the stock bottle's barcode too, so a site that sent no scan is still checked.
            read_barcodes=kind == "stock_bottle",
            max_video_seconds=self.config.max_video_seconds,
        )
        quality: dict[str, Any] = dict(ingested.quality)
        if kind == "stock_bottle":
            quality["barcodes"] = ingested.barcodes
        media = media_row(ingested, kind=kind, filename=filename, quality=quality)
        return await self.fills.attach_media(actor, fill_id, media)
