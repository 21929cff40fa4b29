"""A small tus 1.0 client on aiohttp: create, resume from the server's offset, stream the rest.

A photo-sized file (at most `whole_creation_bytes`) goes whole in the creation request
(creation-with-upload): one round trip instead of two on a high-latency link. Before it starts, the
caller keeps `CREATION_BEGUN` as the upload's URL; should the request break off (or the process be
killed), the retry creates the same file again without a body, the server answers with the upload it
kept and its offset, and only the rest follows by PATCH.

A larger file (a video) is created first and its URL handed to the caller (to keep in the outbox)
before any byte is sent, so a process killed mid-upload resumes on restart from what the server
kept, not from zero. The rest of the file goes in one PATCH (no round trip per chunk, and the server
keeps every byte of an interrupted PATCH); with `chunk_bytes` set, each chunk carries an
Upload-Checksum.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from yarl import URL

from remote_site_client.api import ApiError, SiteApi, error_from, network_error

TUS_VERSION = "1.0.0"
UPLOADS_PATH = "/api/v1/uploads"
_PIECE = 64 * 1024
# Statuses of HEAD or PATCH that mean the server no longer has the upload: start a new one.
_GONE = frozenset({403, 404, 410})
# Photos the site prepares (long edge 2048 px) are well under this; videos are not.
WHOLE_CREATION_BYTES = 2 * 1024 * 1024
# Kept as an upload's URL while its creation-with-upload runs: the Location is not known yet.
CREATION_BEGUN = "tus:creation-begun"

Progress = Callable[[int], None]


@dataclass(frozen=True)
class UploadResult:
    """A finished upload: the server's media id, and how many bytes this call sent."""

    media_id: int | None
    sent_bytes: int
    resumed_from: int


def encode_metadata(metadata: Mapping[str, str]) -> str:
    return ",".join(f"{k} {base64.b64encode(v.encode()).decode()}" for k, v in metadata.items())


def _read_range(path: Path, start: int, end: int) -> bytes:
    with path.open("rb") as f:
        f.seek(start)
        return f.read(end - start)


class UploadGone(ApiError):
    """The server no longer has this upload: it was completed by an earlier request, or expired."""

    def __init__(self) -> None:
        super().__init__(
            "The server no longer has this upload; it will be checked and sent again.", transient=True
        )


class _Counter:
    def __init__(self, progress: Progress | None) -> None:
        self.sent = 0
        self.progress = progress
        self.on_body_sent: Callable[[], None] | None = None


async def _stream(path: Path, start: int, end: int, counter: _Counter) -> AsyncIterator[bytes]:
    """The file's bytes from start to end in small pieces, counting and reporting them as they go."""
    position = start
    with path.open("rb") as f:
        f.seek(start)
        while position < end:
            piece = f.read(min(_PIECE, end - position))
            if not piece:
                raise ApiError(
                    f"{path.name} is shorter than expected: it changed in the outbox.", transient=False
                )
            yield piece
            position += len(piece)
            counter.sent += len(piece)
            if counter.progress:
                counter.progress(position)
    if counter.on_body_sent:
        counter.on_body_sent()


class TusClient:
    """Uploads may run side by side; their bytes take turns on the link (one body at a time), so the
    next file streams at full rate while the server verifies the previous one."""

    def __init__(
        self, api: SiteApi, *, chunk_bytes: int = 0, whole_creation_bytes: int = WHOLE_CREATION_BYTES
    ) -> None:
        self.api = api
        self.chunk_bytes = chunk_bytes
        self.whole_creation_bytes = whole_creation_bytes
        self._link = asyncio.Lock()

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Tus-Resumable": TUS_VERSION, **(extra or {})}

    async def create(self, length: int, metadata: Mapping[str, str]) -> tuple[str, int, int | None]:
        """A new upload, or the unfinished one of the same file: its URL, the server's offset, and the
        media id when the server held every byte already and stored the file on this request."""
        headers = self._headers({"Upload-Length": str(length), "Upload-Metadata": encode_metadata(metadata)})
        try:
            async with self.api.session.post(self.api.url(UPLOADS_PATH), headers=headers) as resp:
                if resp.status != 201:
                    raise await error_from(resp)
                media = resp.headers.get("Tp-Media-Id")
                offset = int(resp.headers.get("Upload-Offset", "0"))
                return self._location(resp), offset, int(media) if media else None
        except ValueError as exc:
            raise ApiError("The server's answer about the upload had no usable offset.") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise network_error(exc, self.api.config.server_url) from exc

    @staticmethod
    def _location(resp: aiohttp.ClientResponse) -> str:
        location = resp.headers.get("Location")
        if not location:
            raise ApiError("The server created an upload but did not say where.", status=resp.status)
        return str(resp.url.join(URL(location)))

    async def offset(self, url: str) -> int | None:
        """How many bytes the server holds of this upload; None when it no longer knows it."""
        try:
            async with self.api.session.head(url, headers=self._headers()) as resp:
                if resp.status in _GONE:
                    return None
                if resp.status != 200:
                    raise await error_from(resp)
                return int(resp.headers["Upload-Offset"])
        except (KeyError, ValueError) as exc:
            raise ApiError("The server's answer about the upload had no usable offset.") from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise network_error(exc, self.api.config.server_url) from exc

    async def _send(
        self, url: str | None, path: Path, start: int, end: int, counter: _Counter, headers: dict[str, str]
    ) -> tuple[str | None, int, int | None]:
        """Sends bytes [start, end) by PATCH to `url`, or with the creation when `url` is None.

        Returns (the upload's URL when the creation made it, the server's offset, the media id once the
        file is stored).
        """
        headers = self._headers({**headers, "Content-Type": "application/offset+octet-stream"})
        headers["Content-Length"] = str(end - start)
        if self.chunk_bytes:
            digest = hashlib.sha256(_read_range(path, start, end)).digest()
            headers["Upload-Checksum"] = "sha256 " + base64.b64encode(digest).decode()
        await self._link.acquire()
        held = True

        def free_link() -> None:
            nonlocal held
            if held:
                held = False
                self._link.release()

        counter.on_body_sent = free_link
        body = _stream(path, start, end, counter)
        try:
            if url is None:
                request = self.api.session.post(self.api.url(UPLOADS_PATH), data=body, headers=headers)
            else:
                request = self.api.session.patch(url, data=body, headers=headers)
            async with request as resp:
                free_link()
                created = self._location(resp) if url is None and resp.status < 300 else None
                if resp.status == 409 and "Upload-Offset" in resp.headers:
                    return created, int(resp.headers["Upload-Offset"]), None
                if resp.status in _GONE and url is not None:
                    raise UploadGone()
                if resp.status == 460 and url is not None:
                    return None, start, None  # the chunk was damaged on the way and dropped: send it again
                if resp.status >= 300:
                    raise await error_from(resp)
                media = resp.headers.get("Tp-Media-Id")
                # A server without creation-with-upload ignores the body and says no offset: send it by PATCH.
                offset = int(resp.headers.get("Upload-Offset", "0" if created else ""))
                return created, offset, int(media) if media else None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise network_error(exc, self.api.config.server_url) from exc
        finally:
            free_link()

    async def _patch(
        self, url: str, path: Path, start: int, end: int, counter: _Counter
    ) -> tuple[int, int | None]:
        """Sends bytes [start, end); returns (the server's offset, the media id once the file is stored)."""
        _, offset, media_id = await self._send(url, path, start, end, counter, {"Upload-Offset": str(start)})
        return offset, media_id

    async def upload(
        self,
        path: Path,
        *,
        size: int,
        metadata: Mapping[str, str],
        url: str | None,
        remember_url: Callable[[str | None], None],
        progress: Progress | None = None,
        max_rounds: int = 1000,
    ) -> UploadResult:
        """Uploads one file, resuming the upload at `url` from the server's offset when it still has it."""
        begun = url == CREATION_BEGUN
        offset = await self.offset(url) if url and not begun else None
        counter = _Counter(progress)
        if offset is None:
            if size <= self.whole_creation_bytes and not self.chunk_bytes and not begun:
                remember_url(CREATION_BEGUN)
                headers = {"Upload-Length": str(size), "Upload-Metadata": encode_metadata(metadata)}
                url, offset, media_id = await self._send(None, path, 0, size, counter, headers)
                remember_url(url)
                if media_id is not None:
                    return UploadResult(media_id, counter.sent, 0)
            else:
                # A new upload, or (after a creation that broke off) the one the server kept.
                url, offset, media_id = await self.create(size, metadata)
                remember_url(url)
                if media_id is not None:
                    return UploadResult(media_id, counter.sent, offset)
        assert url is not None
        resumed_from = offset
        if progress:
            progress(offset)
        for _ in range(max_rounds):
            end = size if not self.chunk_bytes else min(size, offset + self.chunk_bytes)
            try:
                new_offset, media_id = await self._patch(url, path, offset, end, counter)
            except UploadGone:
                # Perhaps stored by the request this process was killed in: the sender asks the fill first.
                remember_url(None)
                raise
            if media_id is not None:
                return UploadResult(media_id, counter.sent, resumed_from)
            if offset == size and new_offset == size:
                raise ApiError("The server holds the whole file but did not confirm it; trying again later.")
            offset = new_offset
        raise ApiError("The upload made no progress; it will be tried again later.")
