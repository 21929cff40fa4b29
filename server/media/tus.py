"""tus 1.0 resumable uploads for aiohttp: core, creation, termination and checksum (sha256) extensions.

The endpoint knows nothing of users or the database: the application passes callbacks that authorize a
creation, name the owner of a request, and take over a finished upload. State lives on disk (an info JSON
and a data file per upload), so a restart keeps partial uploads and instances sharing the directory can
continue each other's uploads. The data file's size is the upload offset.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import dataclasses
import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,termination,checksum"
TUS_CHECKSUM_ALGORITHMS = "sha256"
PATCH_CONTENT_TYPE = "application/offset+octet-stream"

_ID_RE = re.compile(r"[0-9a-f]{32}")
_METADATA_KEY_RE = re.compile(r"[!-+\--~]+")  # printable ASCII without space or comma
_INT_RE = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class TusUpload:
    """An upload as stored on disk; `offset` is how many bytes have arrived."""

    id: str
    length: int
    offset: int
    metadata: dict[str, str]
    owner: str
    data_path: Path
    created_at: float

    @property
    def complete(self) -> bool:
        """True when every byte has arrived."""
        return self.offset == self.length


Authorize = Callable[[web.Request, dict[str, str], int], Awaitable[None]]
OwnerOf = Callable[[web.Request], str]
OnComplete = Callable[[web.Request, TusUpload], Awaitable[dict[str, str]]]


class HTTPChecksumMismatch(web.HTTPClientError):
    """460: the chunk's bytes do not match its Upload-Checksum; the chunk was discarded."""

    status_code = 460


class HTTPLocked(web.HTTPClientError):
    """423: another request is writing to this upload."""

    status_code = 423


class MetadataError(ValueError):
    """A malformed Upload-Metadata header."""


def parse_metadata(header: str) -> dict[str, str]:
    """Parse an Upload-Metadata header (`key base64,key2 base64,flag`) into text values."""
    result: dict[str, str] = {}
    if not header.strip():
        return result
    for pair in header.split(","):
        parts = pair.strip().split(" ")
        if len(parts) > 2 or not parts[0]:
            raise MetadataError("malformed Upload-Metadata pair")
        key = parts[0]
        if not _METADATA_KEY_RE.fullmatch(key):
            raise MetadataError("invalid Upload-Metadata key")
        if key in result:
            raise MetadataError("duplicate Upload-Metadata key")
        value = ""
        if len(parts) == 2:
            try:
                value = base64.b64decode(parts[1], validate=True).decode("utf-8")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                raise MetadataError("Upload-Metadata value is not base64 UTF-8") from None
        result[key] = value
    return result


def encode_metadata(metadata: Mapping[str, str]) -> str:
    """Encode text values as an Upload-Metadata header."""
    pairs = []
    for key, value in metadata.items():
        if not _METADATA_KEY_RE.fullmatch(key):
            raise MetadataError("invalid Upload-Metadata key")
        pairs.append(f"{key} {base64.b64encode(value.encode('utf-8')).decode('ascii')}" if value else key)
    return ",".join(pairs)


def _parse_length(value: str | None, name: str) -> int:
    if value is None or not _INT_RE.fullmatch(value.strip()):
        raise ValueError(f"{name} must be a non-negative integer")
    return int(value.strip())


def _parse_checksum(value: str | None) -> bytes | None:
    if value is None:
        return None
    algorithm, _, encoded = value.strip().partition(" ")
    if algorithm.lower() != "sha256":
        raise ValueError("unsupported checksum algorithm; use sha256")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("Upload-Checksum is not base64") from None
    if len(digest) != hashlib.sha256().digest_size:
        raise ValueError("Upload-Checksum has the wrong length for sha256")
    return digest


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
    ) -> None:
        self.upload_dir = Path(upload_dir)
        self.max_size = max_size
        self.base_path = base_path.rstrip("/")
        self._authorize = authorize
        self._owner_of = owner_of
        self._on_complete = on_complete
        self.lock_timeout = lock_timeout
        self.idle_timeout = idle_timeout
        self.write_buffer = write_buffer
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.upload_dir.mkdir(parents=True, exist_ok=True)

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
        """Create an upload (creation extension): 201 with its Location."""
        self._check_version(request)
        if "Upload-Defer-Length" in request.headers:
            raise self._error(web.HTTPBadRequest, "Upload-Defer-Length is not supported")
        try:
            length = _parse_length(request.headers.get("Upload-Length"), "Upload-Length")
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
        owner = self._owner(request)
        try:
            await self._authorize(request, metadata, length)
        except web.HTTPException as exc:
            raise self._with_tus_headers(exc) from None

        upload_id = secrets.token_hex(16)
        info = {
            "id": upload_id,
            "length": length,
            "metadata": metadata,
            "owner": owner,
            "created_at": time.time(),
        }
        await asyncio.to_thread(self._create_files, upload_id, info)
        location = f"{self.base_path}/{upload_id}"
        extra: dict[str, str] = {}
        if length == 0:
            async with self._locked(upload_id):
                upload = await self._load(upload_id)
                if upload is not None:
                    extra = await self._complete(request, upload)
        return web.Response(status=201, headers=self._headers({"Location": location, **extra}))

    async def head(self, request: web.Request) -> web.Response:
        """Report an upload's offset (200) so a client can resume."""
        self._check_version(request)
        upload = await self._owned(request)
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
            offset = _parse_length(request.headers.get("Upload-Offset"), "Upload-Offset")
            expected = _parse_checksum(request.headers.get("Upload-Checksum"))
        except ValueError as exc:
            raise self._error(web.HTTPBadRequest, str(exc)) from None
        upload = await self._owned(request)
        declared = request.content_length
        if declared is not None and offset + declared > upload.length:
            raise self._too_large(upload)

        async with self._locked(upload.id):
            current = await self._load(upload.id)
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
            await asyncio.to_thread(self._remove_files, upload.id)
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
        upload_id = request.match_info.get("upload_id", "")
        owner = self._owner(request)
        upload = await self._load(upload_id)
        # Someone else's upload is indistinguishable from a missing one.
        if upload is None or not hmac.compare_digest(upload.owner.encode(), owner.encode()):
            raise self._error(web.HTTPNotFound, "upload not found")
        return upload

    async def _complete(self, request: web.Request, upload: TusUpload) -> dict[str, str]:
        """Hand a finished upload to on_complete exactly once (the caller holds the upload's lock)."""
        try:
            extra = await self._on_complete(request, upload)
        except web.HTTPException as exc:
            await asyncio.to_thread(self._remove_files, upload.id)
            raise self._with_tus_headers(exc) from None
        # Any other error leaves the finished upload in place, so completion can be retried.
        await asyncio.to_thread(self._remove_files, upload.id)
        return dict(extra)

    async def _receive(self, request: web.Request, upload: TusUpload, expected: bytes | None) -> int:
        """Stream the body to the data file (one buffer in memory at most); return the bytes kept."""
        start = upload.offset
        room = upload.length - start
        hasher = hashlib.sha256() if expected is not None else None
        fd = await asyncio.to_thread(os.open, upload.data_path, os.O_WRONLY)
        buf = bytearray()
        written = 0
        interrupted = too_large = False
        try:
            try:
                while True:
                    try:
                        async with asyncio.timeout(self.idle_timeout):
                            chunk = await request.content.readany()
                    except (TimeoutError, ConnectionError, ClientPayloadError, HttpProcessingError):
                        # The client went away or stalled: keep what arrived, it will HEAD and resume.
                        interrupted = True
                        break
                    if not chunk:
                        break
                    if written + len(buf) + len(chunk) > room:
                        too_large = True
                        break
                    buf += chunk
                    if len(buf) >= self.write_buffer:
                        await asyncio.to_thread(_write_at, fd, buf, start + written, hasher)
                        written += len(buf)
                        buf = bytearray()
            finally:
                # Runs on cancellation too, so this flush is synchronous (one buffer at most). Should a
                # cancelled thread write still be running, the same bytes land at the same place: harmless.
                if buf and not too_large:
                    _write_at(fd, buf, start + written, hasher)
                    written += len(buf)
                    buf = bytearray()
            mismatch = hasher is not None and not interrupted and hasher.digest() != expected
            if too_large or mismatch or (hasher is not None and interrupted):
                # A chunk that overflows the upload, or that cannot be verified, is dropped whole.
                await asyncio.to_thread(os.ftruncate, fd, start)
                written = 0
            await asyncio.to_thread(os.fsync, fd)
        finally:
            os.close(fd)
        if too_large:
            raise self._too_large(upload)
        if mismatch:
            raise self._error(
                HTTPChecksumMismatch,
                "Upload-Checksum does not match the chunk",
                **{"Upload-Offset": str(start)},
            )
        if interrupted:
            offset = str(start + written)
            raise self._error(web.HTTPBadRequest, "the request body ended early", **{"Upload-Offset": offset})
        return written

    @contextlib.asynccontextmanager
    async def _locked(self, upload_id: str) -> AsyncIterator[None]:
        """Exclusive access to one upload: an asyncio lock here, a flock for other processes."""
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[upload_id] = lock
        try:
            async with asyncio.timeout(self.lock_timeout):
                await lock.acquire()
        except TimeoutError:
            raise self._error(HTTPLocked, "another request is writing to this upload") from None
        try:
            # flock rather than O_EXCL: the kernel releases it when a process dies, so no stale locks.
            fd = await asyncio.to_thread(
                os.open, self._path(upload_id, "lock"), os.O_RDWR | os.O_CREAT, 0o600
            )
            try:
                deadline = asyncio.get_running_loop().time() + self.lock_timeout
                while not _try_flock(fd):
                    if asyncio.get_running_loop().time() > deadline:
                        raise self._error(HTTPLocked, "another server is writing to this upload")
                    await asyncio.sleep(0.05)
                yield
            finally:
                os.close(fd)
        finally:
            lock.release()

    # --- disk state ------------------------------------------------------------------------------

    def _path(self, upload_id: str, suffix: str) -> Path:
        return self.upload_dir / f"{upload_id}.{suffix}"

    async def get_upload(self, upload_id: str) -> TusUpload | None:
        """The upload's current state, or None when unknown."""
        return await self._load(upload_id)

    async def _load(self, upload_id: str) -> TusUpload | None:
        if not _ID_RE.fullmatch(upload_id):
            return None
        return await asyncio.to_thread(self._load_sync, upload_id)

    def _load_sync(self, upload_id: str) -> TusUpload | None:
        try:
            info: dict[str, Any] = json.loads(self._path(upload_id, "info").read_text("utf-8"))
            size = self._path(upload_id, "data").stat().st_size
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            log.warning("unreadable tus upload state for %s", upload_id)
            return None
        return TusUpload(
            id=upload_id,
            length=int(info["length"]),
            offset=size,
            metadata={str(k): str(v) for k, v in info.get("metadata", {}).items()},
            owner=str(info["owner"]),
            data_path=self._path(upload_id, "data"),
            created_at=float(info.get("created_at", 0.0)),
        )

    def _create_files(self, upload_id: str, info: dict[str, Any]) -> None:
        # The data file exists before the info file, so a visible info always has its data.
        fd = os.open(self._path(upload_id, "data"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        tmp = self._path(upload_id, "info.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path(upload_id, "info"))
        dir_fd = os.open(self.upload_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _remove_files(self, upload_id: str) -> None:
        # The info file goes first: without it the upload no longer exists for anyone.
        for suffix in ("info", "data", "lock"):
            with contextlib.suppress(FileNotFoundError):
                self._path(upload_id, suffix).unlink()

    def _data_mtime(self, upload_id: str) -> float:
        try:
            return self._path(upload_id, "data").stat().st_mtime
        except FileNotFoundError:
            return 0.0

    async def purge_stale(self, max_idle_seconds: float) -> int:
        """Delete uploads that received no byte for `max_idle_seconds`; return how many went."""
        now = time.time()
        removed = 0
        for info_path in await asyncio.to_thread(sorted, self.upload_dir.glob("*.info")):
            upload_id = info_path.stem
            if not _ID_RE.fullmatch(upload_id):
                continue
            mtime = await asyncio.to_thread(self._data_mtime, upload_id)
            if now - mtime < max_idle_seconds:
                continue
            with contextlib.suppress(web.HTTPException):
                async with self._locked(upload_id):
                    await asyncio.to_thread(self._remove_files, upload_id)
                    removed += 1
        return removed


def _write_at(fd: int, data: bytearray, position: int, hasher: Any) -> None:
    if hasher is not None:
        hasher.update(data)
    done = 0
    with memoryview(data) as view:
        while done < len(data):
            done += os.pwrite(fd, view[done:], position + done)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
