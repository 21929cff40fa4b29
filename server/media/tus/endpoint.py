"""tus 1.0 resumable uploads for aiohttp: core, creation (with upload), termination, checksum (sha256).

The endpoint knows nothing of users or the database: the application passes callbacks that authorize a
creation, name the owner of a request, and take over a finished upload. The uploads' state is on disk
(server.media.tus.uploads); the wire format is server.media.tus.protocol.

A file sent whole with its creation request never becomes visible: it is a data file held by that
request until it is taken over, with no info file, no fsync and no other file made for it. Only when it
does not finish (the body broke off, was refused, or its completion failed) is it published, durably,
so the client can resume it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

from server.media.tus.protocol import (
    PATCH_CONTENT_TYPE,
    TUS_CHECKSUM_ALGORITHMS,
    TUS_EXTENSIONS,
    TUS_VERSION,
    HTTPChecksumMismatch,
    HTTPLocked,
    MetadataError,
    encode_metadata,
    parse_checksum,
    parse_length,
    parse_metadata,
)
from server.media.tus.uploads import Appender, TusUpload, UploadLocked, Uploads, named

# Network reads buffered before a write: one pwritev takes at most IOV_MAX (1024 on Linux) pieces.
_MAX_CHUNKS = 256

Authorize = Callable[[web.Request, dict[str, str], int], Awaitable[None]]
OwnerOf = Callable[[web.Request], str]
OnComplete = Callable[[web.Request, TusUpload], Awaitable[dict[str, str]]]
# Names the file an upload carries (from its metadata), or None: see TusEndpoint's `same_file`.
SameFile = Callable[[Mapping[str, str]], str | None]


class TusEndpoint:
    """aiohttp handlers for one tus upload collection at `base_path`."""

    def __init__(
        self,
        upload_dir: Path,
        max_size: int,
        *,
        base_path: str,
        authorize: Authorize,
        owner_of: OwnerOf,
        on_complete: OnComplete,
        lock_timeout: float = 10.0,
        idle_timeout: float = 60.0,
        write_buffer: int = 1024 * 1024,
        same_file: SameFile | None = None,
    ) -> None:
        """`same_file` makes creation find an unfinished upload of the same file by the same owner and
        answer with it (its Location and Upload-Offset) instead of starting over: a client whose
        creation-with-upload broke off before it learnt the Location resumes instead of resending."""
        self.uploads = Uploads(upload_dir, lock_timeout=lock_timeout)
        self.max_size = max_size
        self.base_path = base_path.rstrip("/")
        self._authorize = authorize
        self._owner_of = owner_of
        self._on_complete = on_complete
        self.idle_timeout = idle_timeout
        self.write_buffer = write_buffer
        self._same_file = same_file
        # Same-file keys of the unpublished uploads this process is receiving, and their ids.
        self._receiving: dict[str, str] = {}

    def add_routes(self, router: web.UrlDispatcher) -> None:
        """Register the handlers at `base_path` and `base_path/{upload_id}`."""
        item = self.base_path + "/{upload_id}"
        router.add_route("OPTIONS", self.base_path, self.options)
        router.add_route("POST", self.base_path, self.create)
        router.add_route("OPTIONS", item, self.options)
        router.add_route("HEAD", item, self.head)
        router.add_route("PATCH", item, self.patch)
        router.add_route("DELETE", item, self.delete)

    # --- responses -------------------------------------------------------------------------------

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Tus-Resumable": TUS_VERSION, "Cache-Control": "no-store"}
        if extra:
            headers.update(extra)
        return headers

    def _error(self, cls: type[web.HTTPException], text: str, **extra: str) -> web.HTTPException:
        return cls(text=text, headers=self._headers(extra))

    def _with_tus_headers(self, exc: web.HTTPException) -> web.HTTPException:
        for key, value in self._headers().items():
            exc.headers.setdefault(key, value)
        return exc

    def _check_version(self, request: web.Request) -> None:
        if request.headers.get("Tus-Resumable") != TUS_VERSION:
            raise self._error(
                web.HTTPPreconditionFailed, "unsupported tus version", **{"Tus-Version": TUS_VERSION}
            )

    def _owner(self, request: web.Request) -> str:
        try:
            return self._owner_of(request)
        except web.HTTPException as exc:
            raise self._with_tus_headers(exc) from None

    # --- handlers --------------------------------------------------------------------------------

    async def options(self, request: web.Request) -> web.Response:
        """Describe the server's tus capabilities."""
        return web.Response(
            status=204,
            headers=self._headers(
                {
                    "Tus-Version": TUS_VERSION,
                    "Tus-Extension": TUS_EXTENSIONS,
                    "Tus-Max-Size": str(self.max_size),
                    "Tus-Checksum-Algorithm": TUS_CHECKSUM_ALGORITHMS,
                }
            ),
        )

    async def create(self, request: web.Request) -> web.Response:
        """Create an upload (creation extension): 201 with its Location and Upload-Offset.

        With a body (creation-with-upload) the first bytes travel in the same request: one round trip
        instead of two for a file sent whole.
        """
        with_body, length, expected, metadata = self._creation_headers(request)
        owner = self._owner(request)
        try:
            await self._authorize(request, metadata, length)
        except web.HTTPException as exc:
            raise self._with_tus_headers(exc) from None

        same = self._same_key(owner, metadata)
        info = {
            "id": secrets.token_hex(16),
            "length": length,
            "metadata": metadata,
            "owner": owner,
            "created_at": time.time(),
            "same": same,
        }
        # A request of this process still receiving the same file (a retry that overtook the
        # broken-off original): wait for its lock below, then resume what it published.
        upload_id = self._receiving.get(same) if same else None
        if upload_id is None and with_body and length > 0:
            # One thread round trip: the unfinished upload of the same file, or a new one held by
            # this request alone (created and locked).
            upload_id, new_fd = await asyncio.to_thread(self.uploads.find_or_start, info)
            if new_fd is not None:
                return await self._create_whole(request, info, new_fd, expected)
        elif upload_id is None:
            found_id, new = await asyncio.to_thread(self.uploads.find_or_create, info)
            if new and length > 0:
                return self._created(found_id, 0)
            upload_id = found_id
        assert upload_id is not None
        async with self._locked(upload_id) as current:
            if current is None:
                raise self._error(web.HTTPNotFound, "upload not found")
            if not current.complete and with_body:
                try:
                    # Bytes the server holds already (an earlier attempt of this creation) are skipped.
                    received = await self._receive(request, current, expected, skip=current.offset)
                except web.HTTPException as exc:
                    # The body broke off or was refused; the upload stays, and the client learns where.
                    exc.headers.setdefault("Location", f"{self.base_path}/{upload_id}")
                    raise
                current = dataclasses.replace(current, offset=current.offset + received)
            extra = await self._complete(request, current) if current.complete else {}
            return self._created(upload_id, current.offset, extra)

    def _creation_headers(self, request: web.Request) -> tuple[bool, int, bytes | None, dict[str, str]]:
        """(with a body, Upload-Length, the body's checksum, metadata) of a creation request, checked."""
        self._check_version(request)
        if "Upload-Defer-Length" in request.headers:
            raise self._error(web.HTTPBadRequest, "Upload-Defer-Length is not supported")
        with_body = bool(request.content_length) or (request.content_length is None and request.body_exists)
        if with_body and request.content_type != PATCH_CONTENT_TYPE:
            raise self._error(web.HTTPUnsupportedMediaType, f"Content-Type must be {PATCH_CONTENT_TYPE}")
        try:
            length = parse_length(request.headers.get("Upload-Length"), "Upload-Length")
            expected = parse_checksum(request.headers.get("Upload-Checksum")) if with_body else None
        except ValueError as exc:
            raise self._error(web.HTTPBadRequest, str(exc)) from None
        if length > self.max_size:
            raise self._with_tus_headers(
                web.HTTPRequestEntityTooLarge(
                    max_size=self.max_size, actual_size=length, text="Upload-Length exceeds Tus-Max-Size"
                )
            )
        try:
            metadata = parse_metadata(request.headers.get("Upload-Metadata", ""))
        except MetadataError as exc:
            raise self._error(web.HTTPBadRequest, str(exc)) from None
        return with_body, length, expected, metadata

    async def _create_whole(
        self, request: web.Request, info: dict[str, Any], fd: int, expected: bytes | None
    ) -> web.Response:
        """A new upload whose bytes come with its creation: received, then taken over; published only
        if it does not finish here."""
        upload = TusUpload(
            id=info["id"],
            length=int(info["length"]),
            offset=0,
            metadata=info["metadata"],
            owner=info["owner"],
            data_path=self.uploads.path(info["id"], "data"),
            created_at=float(info["created_at"]),
        )
        if info["same"]:
            self._receiving[info["same"]] = upload.id
        try:
            try:
                received = await self._receive(request, upload, expected, publish=info)
            except web.HTTPException as exc:
                exc.headers.setdefault("Location", f"{self.base_path}/{upload.id}")
                raise
            current = dataclasses.replace(upload, offset=received)
            if not current.complete:
                return self._created(upload.id, received)
            try:
                extra = await self._complete(request, current)
            except web.HTTPException:
                raise
            except BaseException:
                # Completion failed for another reason: keep the upload so that completion can be retried.
                await asyncio.to_thread(self.uploads.publish, info)
                raise
            return self._created(upload.id, current.offset, extra)
        finally:
            if info["same"]:
                self._receiving.pop(info["same"], None)
            os.close(fd)

    def _created(self, upload_id: str, offset: int, extra: Mapping[str, str] | None = None) -> web.Response:
        headers = {"Location": f"{self.base_path}/{upload_id}", "Upload-Offset": str(offset), **(extra or {})}
        return web.Response(status=201, headers=self._headers(headers))

    def _same_key(self, owner: str, metadata: Mapping[str, str]) -> str | None:
        name = self._same_file(metadata) if self._same_file is not None else None
        if not name:
            return None
        return hashlib.sha256(f"{owner}\0{name}".encode()).hexdigest()[:32]

    async def head(self, request: web.Request) -> web.Response:
        """Report an upload's offset (200) so a client can resume.

        Read under the upload's lock: a request still receiving it (the one a cut link broke, before
        the server has noticed) holds bytes not yet written, and an offset read around it would make
        the client send them again.
        """
        self._check_version(request)
        owner = self._owner(request)
        async with self._locked(request.match_info.get("upload_id", "")) as current:
            upload = self._mine(current, owner)
        headers = {"Upload-Offset": str(upload.offset), "Upload-Length": str(upload.length)}
        if upload.metadata:
            headers["Upload-Metadata"] = encode_metadata(upload.metadata)
        return web.Response(status=200, headers=self._headers(headers))

    async def patch(self, request: web.Request) -> web.Response:
        """Append a chunk at Upload-Offset (204); on the last byte hand the upload to on_complete."""
        self._check_version(request)
        if request.content_type != PATCH_CONTENT_TYPE:
            raise self._error(web.HTTPUnsupportedMediaType, f"Content-Type must be {PATCH_CONTENT_TYPE}")
        try:
            offset = parse_length(request.headers.get("Upload-Offset"), "Upload-Offset")
            expected = parse_checksum(request.headers.get("Upload-Checksum"))
        except ValueError as exc:
            raise self._error(web.HTTPBadRequest, str(exc)) from None
        upload = await self._owned(request)
        declared = request.content_length
        if declared is not None and offset + declared > upload.length:
            raise self._too_large(upload)

        async with self._locked(upload.id) as current:
            if current is None:
                raise self._error(web.HTTPNotFound, "upload not found")
            if offset != current.offset:
                raise self._error(
                    web.HTTPConflict, "Upload-Offset does not match", **{"Upload-Offset": str(current.offset)}
                )
            if current.complete:
                # A finished upload whose completion failed earlier: an empty PATCH retries completion.
                extra = await self._complete(request, current)
                return self._patched(current.length, extra)
            received = await self._receive(request, current, expected)
            new_offset = current.offset + received
            if new_offset < current.length:
                return self._patched(new_offset)
            done = dataclasses.replace(current, offset=new_offset)
            extra = await self._complete(request, done)
            return self._patched(new_offset, extra)

    async def delete(self, request: web.Request) -> web.Response:
        """Terminate an upload and delete its bytes (termination extension)."""
        self._check_version(request)
        upload = await self._owned(request)
        async with self._locked(upload.id):
            await asyncio.to_thread(self.uploads.remove, upload.id)
        return web.Response(status=204, headers=self._headers())

    # --- helpers used by handlers ----------------------------------------------------------------

    def _patched(self, offset: int, extra: Mapping[str, str] | None = None) -> web.Response:
        return web.Response(
            status=204, headers=self._headers({"Upload-Offset": str(offset), **(extra or {})})
        )

    def _too_large(self, upload: TusUpload) -> web.HTTPException:
        return self._with_tus_headers(
            web.HTTPRequestEntityTooLarge(
                max_size=upload.length, actual_size=0, text="the chunk runs past Upload-Length"
            )
        )

    async def _owned(self, request: web.Request) -> TusUpload:
        owner = self._owner(request)
        return self._mine(await self.uploads.load(request.match_info.get("upload_id", "")), owner)

    def _mine(self, upload: TusUpload | None, owner: str) -> TusUpload:
        # Someone else's upload is indistinguishable from a missing one.
        if upload is None or not hmac.compare_digest(upload.owner.encode(), owner.encode()):
            raise self._error(web.HTTPNotFound, "upload not found")
        return upload

    async def _complete(self, request: web.Request, upload: TusUpload) -> dict[str, str]:
        """Hand a finished upload to on_complete exactly once (the caller holds the upload's lock)."""
        try:
            extra = await self._on_complete(request, upload)
        except web.HTTPException as exc:
            await asyncio.to_thread(self.uploads.remove, upload.id)
            raise self._with_tus_headers(exc) from None
        # Any other error leaves the finished upload in place, so completion can be retried.
        await asyncio.to_thread(self.uploads.remove, upload.id)
        return dict(extra)

    async def _receive(
        self,
        request: web.Request,
        upload: TusUpload,
        expected: bytes | None,
        *,
        skip: int = 0,
        publish: dict[str, Any] | None = None,
    ) -> int:
        """Stream the body to the data file (one buffer in memory at most); return the bytes kept.

        The body's first `skip` bytes are not written (the upload holds them already); a checksum
        covers the whole body all the same. `publish` is the info of an upload not yet published: the
        bytes are made durable and the upload published (in the same thread round trip) unless it
        finished whole.

        The file is written from a thread once per `write_buffer` and once at the end (with the fsync):
        a photo costs one or two thread round trips, not one per network read.
        """
        room = upload.length - upload.offset
        hasher = hashlib.sha256() if expected is not None else None
        appender = Appender(upload.data_path, upload.offset, hasher, skip=skip)
        # The network's chunks are kept as they came and written together (pwritev): no copying.
        buf: list[bytes] = []
        try:
            interrupted, too_large = await self._read_body(request, appender, room, buf)
        except OSError as exc:
            await asyncio.to_thread(self._discard, upload, appender, publish)
            raise named(exc, upload.data_path) from None
        except BaseException:
            # Cancelled: keep what arrived, synchronously (one buffer at most). Should a cancelled
            # thread write still be running, the same bytes land at the same place: harmless.
            appender.finish(buf, keep=True, sync=publish is None)
            if publish is not None:
                self.uploads.publish(publish)  # makes it durable
            raise
        if too_large:
            buf = []
        try:
            mismatch = await asyncio.to_thread(
                self._finish, appender, buf, not too_large, expected, interrupted, publish
            )
        except OSError as exc:
            await asyncio.to_thread(self._discard, upload, appender, publish)
            raise named(exc, upload.data_path) from None
        if too_large:
            raise self._too_large(upload)
        if mismatch:
            raise self._error(
                HTTPChecksumMismatch,
                "Upload-Checksum does not match the chunk",
                **{"Upload-Offset": str(upload.offset)},
            )
        if interrupted:
            offset = str(upload.offset + appender.written)
            raise self._error(web.HTTPBadRequest, "the request body ended early", **{"Upload-Offset": offset})
        return appender.written

    async def _read_body(
        self, request: web.Request, appender: Appender, room: int, buf: list[bytes]
    ) -> tuple[bool, bool]:
        """Reads the body, writing it out once per `write_buffer`; `buf` holds what is not written
        yet. Returns (the client went away or stalled, the body is larger than the upload's room)."""
        buffered = 0
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    chunk = await request.content.readany()
            except (TimeoutError, ConnectionError, ClientPayloadError, HttpProcessingError):
                # The client went away or stalled: keep what arrived, it will HEAD and resume.
                return True, False
            if not chunk:
                return False, False
            chunk = appender.skip_held(chunk)
            if appender.written + buffered + len(chunk) > room:
                return False, True
            buf.append(chunk)
            buffered += len(chunk)
            if buffered >= self.write_buffer or len(buf) >= _MAX_CHUNKS:
                await asyncio.to_thread(appender.write, list(buf))
                buf.clear()
                buffered = 0

    def _discard(self, upload: TusUpload, appender: Appender, unpublished: dict[str, Any] | None) -> None:
        """A write of this request failed (disk full, not writable): nothing it wrote stays. An upload
        keeps the bytes earlier requests sent; one that holds none goes whole (the site starts again),
        so that a full disk does not collect an empty upload per attempt."""
        appender.discard()
        if unpublished is not None or appender.start == 0:
            self.uploads.remove(upload.id)

    def _finish(
        self,
        appender: Appender,
        data: list[bytes],
        keep: bool,
        expected: bytes | None,
        interrupted: bool,
        unpublished: dict[str, Any] | None,
    ) -> bool:
        """Appender.finish; for an unpublished upload (its info given) no fsync when it finished whole
        (it is taken over at once), else durable and published. True when the checksum did not match."""
        if unpublished is None:
            return appender.finish(data, keep=keep, expected=expected, interrupted=interrupted)
        mismatch = appender.finish(data, keep=keep, expected=expected, interrupted=interrupted, sync=False)
        if mismatch or appender.start + appender.written < int(unpublished["length"]):
            self.uploads.publish(unpublished)
        return mismatch

    @contextlib.asynccontextmanager
    async def _locked(self, upload_id: str) -> AsyncIterator[TusUpload | None]:
        """Uploads.locked, its timeout answered 423."""
        try:
            async with self.uploads.locked(upload_id) as current:
                yield current
        except UploadLocked as exc:
            raise self._error(HTTPLocked, str(exc)) from None

    async def get_upload(self, upload_id: str) -> TusUpload | None:
        """The upload's current state, or None when unknown."""
        return await self.uploads.load(upload_id)

    async def purge_stale(self, max_idle_seconds: float) -> int:
        """Delete uploads that received no byte for `max_idle_seconds`; return how many went."""
        return await self.uploads.purge_stale(max_idle_seconds)
