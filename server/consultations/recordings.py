"""A consultation's recording arrives as media: the same tus uploads, verification and store as a fill's.

Only the consultation's site side delivers it, only with the patient's consent recorded, only as an
mp4, and once: the same file again is the same media. The upload is refused before any byte is sent
when it could never be stored, and the content is checked again when it is complete.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path

from server.config import Config
from server.consultations.service import RECORDING_KIND, ConsultationService
from server.db.models import Media
from server.errors import InvalidInput
from server.media.errors import MediaRejected
from server.media.ingest import ingest_media
from server.media.rows import media_row
from server.media.store import MediaStore
from server.media.video import video_content_type
from server.security.principal import Principal

MP4 = "video/mp4"


def _not_mp4() -> MediaRejected:
    return MediaRejected(
        "not_mp4", "A consultation's recording must be an MP4 file (H.264 video with AAC audio)."
    )


class RecordingIntake:
    """Takes finished uploads in as consultations' recordings (the counterpart of a fill's MediaIntake)."""

    def __init__(
        self,
        consultations: ConsultationService,
        store: MediaStore,
        executor: concurrent.futures.Executor,
        config: Config,
    ) -> None:
        self.consultations = consultations
        self.store = store
        self.executor = executor
        self.config = config

    async def authorize(
        self, actor: Principal, consultation_id: int, *, kind: str, sha256: str, filename: str, length: int
    ) -> None:
        """A new upload of a recording: refused now when it could never be stored (MediaRejected or a
        domain error). The name only screens out what is plainly not an mp4; the content decides later."""
        if kind != RECORDING_KIND:
            raise InvalidInput(f"A consultation's upload is of kind {RECORDING_KIND!r}.")
        if not filename.lower().endswith(".mp4"):
            raise _not_mp4()
        limit = self.config.max_recording_bytes
        if length > limit:
            raise MediaRejected("too_large", f"A recording may be at most {limit // (1024 * 1024)} MB.")
        await self.consultations.authorize_recording(actor, consultation_id, sha256)

    async def take(
        self, actor: Principal, consultation_id: int, path: Path, *, sha256: str, filename: str
    ) -> Media:
        """Verifies and stores a complete upload as the consultation's recording; MediaRejected when the
        file is not a sound mp4 recording, a domain error when it may not be stored."""
        # The rules again: another recording may have been stored since this upload began, or this one.
        stored = await self.consultations.authorize_recording(actor, consultation_id, sha256)
        if stored is not None:
            return stored
        loop = asyncio.get_running_loop()
        if await loop.run_in_executor(self.executor, video_content_type, path) != MP4:
            raise _not_mp4()
        ingested = await ingest_media(
            path,
            claimed_sha256=sha256,
            kind=RECORDING_KIND,
            filename=filename,
            store=self.store,
            executor=self.executor,
            max_image_pixels=self.config.max_image_pixels,
            max_video_seconds=self.config.max_recording_seconds,
            # The patient consented to the recording of the conversation: its audio is the point.
            keep_audio=True,
        )
        if ingested.variants["full"]["content_type"] != MP4:
            # An mp4 box holding VP8/VP9 would be copied to WebM: not what a recording is.
            raise _not_mp4()
        media = media_row(ingested, kind=RECORDING_KIND, filename=filename)
        return await self.consultations.attach_recording(actor, consultation_id, media)
