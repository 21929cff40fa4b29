"""Taking a finished upload in as a prescription's original: verify it, store its pages, record them."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

from server.config import Config
from server.data_entry.service import RX_IMAGE, DataEntryService
from server.db.models import Media
from server.media.ingest import ingest_original
from server.media.rows import media_row
from server.media.store import MediaStore
from server.security.principal import Principal


class OriginalIntake:
    def __init__(
        self,
        data_entry: DataEntryService,
        store: MediaStore,
        executor: concurrent.futures.Executor,
        config: Config,
    ) -> None:
        self.data_entry = data_entry
        self.store = store
        self.executor = executor
        self.config = config

    async def take(
        self, actor: Principal, rx_id: int, path: Path, *, sha256: str, filename: str
    ) -> list[Media]:
        """Stores each page of a prescription's original; MediaRejected for a file that cannot be one."""
        pages = await ingest_original(
            path,
            claimed_sha256=sha256,
            store=self.store,
            executor=self.executor,
            max_image_pixels=self.config.max_image_pixels,
            max_pages=self.config.max_original_pages,
        )
        rows = []
        for page in pages:
            row = media_row(page, kind=RX_IMAGE, filename=filename)
            row.page = page.page
            if page.original is not None:
                row.quality = {
                    **row.quality,
                    "original_sha256": page.original.sha256,
                    "original_format": page.original.format,
                    "pages": page.original.pages,
                }
            rows.append(row)
        return await self.data_entry.attach_original(actor, rx_id, rows)
