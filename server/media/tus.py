"""tus 1.0 resumable uploads for aiohttp: core, creation (with upload), termination, checksum (sha256).

The endpoint knows nothing of users or the database: the application passes callbacks that authorize a
creation, name the owner of a request, and take over a finished upload. State lives on disk (an info JSON
and a data file per upload), so a restart keeps partial uploads and instances sharing the directory can
continue each other's uploads. The data file's size is the upload offset, and a flock on it is the
upload's lock.

A file sent whole with its creation request never becomes visible: it is a data file held by that
request until it is taken over, with no info file, no fsync and no other file made for it. Only when it
does not finish (the body broke off, was refused, or its completion failed) is it published, durably,
so the client can resume it.
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
import shutil
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.client_exceptions import ClientPayloadError
from aiohttp.http_exceptions import HttpProcessingError

from server.media.workfiles import EARLIER_JOB_DIR_PREFIX, WORK_PREFIX

log = logging.getLogger(__name__)

TUS_VERSION = "1.0.0"
TUS_EXTENSIONS = "creation,creation-with-upload,termination,checksum"
TUS_CHECKSUM_ALGORITHMS = "sha256"
PATCH_CONTENT_TYPE = "application/offset+octet-stream"

_ID_RE = re.compile(r"[0-9a-f]{32}")
# Network reads buffered before a write: one pwritev takes at most IOV_MAX (1024 on Linux) pieces.
_MAX_CHUNKS = 256
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
# Names the file an upload carries (from its metadata), or None: see TusEndpoint's `same_file`.
SameFile = Callable[[Mapping[str, str]], str | None]


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
        same_file: SameFile | None = None,
    ) -> None:
        """`same_file` makes creation find an unfinished upload of the same file by the same owner and
        answer with it (its Location and Upload-Offset) instead of starting over: a client whose
        creation-with-upload broke off before it learnt the Location resumes instead of resending."""
        self.upload_dir = Path(upload_dir)
        self.max_size = max_size
        self.base_path = base_path.rstrip("/")
        self._authorize = authorize
        self._owner_of = owner_of
        self._on_complete = on_complete
        self.lock_timeout = lock_timeout
        self.idle_timeout = idle_timeout
        self.write_buffer = write_buffer
        self._same_file = same_file
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # Same-file keys of the unpublished uploads this process is receiving, and their ids.
        self._receiving: dict[str, str] = {}
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
            upload_id, new_fd = await asyncio.to_thread(self._find_or_start, info)
            if new_fd is not None:
                return await self._create_whole(request, info, new_fd, expected)
        elif upload_id is None:
            found_id, new = await asyncio.to_thread(self._find_or_create, info)
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
            length = _parse_length(request.headers.get("Upload-Length"), "Upload-Length")
            expected = _parse_checksum(request.headers.get("Upload-Checksum")) if with_body else None
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
            data_path=self._path(info["id"], "data"),
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
                await asyncio.to_thread(self._publish, info)
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

    def _find_or_create(self, info: dict[str, Any]) -> tuple[str, bool]:
        """(upload id, whether it is new): the unfinished upload of the same file, else info's, published."""
        if info["same"]:
            found = self._find_same(info["same"], info["owner"], info["length"])
            if found is not None:
                return found, False
        self._create_files(info["id"], info)
        return info["id"], True

    def _find_or_start(self, info: dict[str, Any]) -> tuple[str, int | None]:
        """(upload id, None) for the unfinished upload of the same file; else (info's id, the locked
        descriptor of its new, unpublished data file)."""
        if info["same"]:
            found = self._find_same(info["same"], info["owner"], info["length"])
            if found is not None:
                return found, None
        fd = os.open(self._path(info["id"], "data"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        # Nobody else knows the id yet, so the lock is free: taken for purge_stale's sake.
        _try_flock(fd)
        return info["id"], fd

    def _find_same(self, same: str, owner: str, length: int) -> str | None:
        upload_id = self._hinted(same)
        if upload_id is None:
            return None
        upload = self._load_sync(upload_id)
        if upload is None or upload.owner != owner or upload.length != length:
            return None
        return upload_id

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
            offset = _parse_length(request.headers.get("Upload-Offset"), "Upload-Offset")
            expected = _parse_checksum(request.headers.get("Upload-Checksum"))
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
        owner = self._owner(request)
        return self._mine(await self._load(request.match_info.get("upload_id", "")), owner)

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
            await asyncio.to_thread(self._remove_files, upload.id)
            raise self._with_tus_headers(exc) from None
        # Any other error leaves the finished upload in place, so completion can be retried.
        await asyncio.to_thread(self._remove_files, upload.id)
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
        appender = _Appender(upload.data_path, upload.offset, hasher, skip=skip)
        # The network's chunks are kept as they came and written together (pwritev): no copying.
        buf: list[bytes] = []
        buffered = 0
        interrupted = too_large = False
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
                chunk = appender.skip_held(chunk)
                if appender.written + buffered + len(chunk) > room:
                    too_large = True
                    break
                buf.append(chunk)
                buffered += len(chunk)
                if buffered >= self.write_buffer or len(buf) >= _MAX_CHUNKS:
                    await asyncio.to_thread(appender.write, buf)
                    buf, buffered = [], 0
        except BaseException:
            # Cancelled: keep what arrived, synchronously (one buffer at most). Should a cancelled
            # thread write still be running, the same bytes land at the same place: harmless.
            appender.finish(buf, keep=True, sync=publish is None)
            if publish is not None:
                self._publish(publish)  # makes it durable
            raise
        if too_large:
            buf = []
        mismatch = await asyncio.to_thread(
            self._finish, appender, buf, not too_large, expected, interrupted, publish
        )
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

    def _finish(
        self,
        appender: _Appender,
        data: list[bytes],
        keep: bool,
        expected: bytes | None,
        interrupted: bool,
        unpublished: dict[str, Any] | None,
    ) -> bool:
        """_Appender.finish; for an unpublished upload (its info given) no fsync when it finished whole
        (it is taken over at once), else durable and published. True when the checksum did not match."""
        if unpublished is None:
            return appender.finish(data, keep=keep, expected=expected, interrupted=interrupted)
        mismatch = appender.finish(data, keep=keep, expected=expected, interrupted=interrupted, sync=False)
        if mismatch or appender.start + appender.written < int(unpublished["length"]):
            self._publish(unpublished)
        return mismatch

    @contextlib.asynccontextmanager
    async def _locked(self, upload_id: str) -> AsyncIterator[TusUpload | None]:
        """Exclusive access to one upload, and its state read under the lock (None when unknown): an
        asyncio lock here, a flock for other processes. Taking the flock and reading the state is one
        thread round trip."""
        if not _ID_RE.fullmatch(upload_id):
            # Never a path from a request: only ids this endpoint made name files.
            raise self._error(web.HTTPNotFound, "upload not found")
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
            # flock on the data file rather than O_EXCL: the kernel releases it when a process dies,
            # so no stale locks.
            fd, held, upload = await asyncio.to_thread(self._lock_and_load, upload_id)
            try:
                deadline = asyncio.get_running_loop().time() + self.lock_timeout
                while not held and fd is not None:
                    if asyncio.get_running_loop().time() > deadline:
                        raise self._error(HTTPLocked, "another server is writing to this upload")
                    await asyncio.sleep(0.05)
                    held = _try_flock(fd)
                    if held:
                        upload = await self._load(upload_id)
                yield upload
            finally:
                if fd is not None:
                    os.close(fd)
        finally:
            lock.release()

    def _lock_and_load(self, upload_id: str) -> tuple[int | None, bool, TusUpload | None]:
        try:
            fd = os.open(self._path(upload_id, "data"), os.O_RDWR)
        except FileNotFoundError:
            return None, True, None  # an unknown upload: nothing to lock, nothing to load
        held = _try_flock(fd)
        return fd, held, self._load_sync(upload_id) if held else None

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
        self._write_info(upload_id, info)

    def _publish(self, info: dict[str, Any]) -> None:
        """Makes an upload held by its creation request durable and visible (its data file exists)."""
        fd = os.open(self._path(info["id"], "data"), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write_info(info["id"], info)

    def _write_info(self, upload_id: str, info: dict[str, Any]) -> None:
        """Writes the info file durably (and the same-file hint): from now on the upload exists."""
        tmp = self._path(upload_id, "info.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        if info.get("same"):
            # The hint for creation is a second name of the info file, made before the upload is
            # visible: no file of its own (each new inode is costly on a busy disk), no fsync needed.
            link = self._path(upload_id, "same.tmp")
            os.link(tmp, link)
            os.replace(link, self._path(info["same"], "same"))
        os.replace(tmp, self._path(upload_id, "info"))
        dir_fd = os.open(self.upload_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _remove_files(self, upload_id: str) -> None:
        try:
            same = json.loads(self._path(upload_id, "info").read_text("utf-8")).get("same")
        except (OSError, ValueError):
            same = None
        # The info file goes first: without it the upload no longer exists for anyone.
        for suffix in ("info", "data"):
            with contextlib.suppress(FileNotFoundError):
                self._path(upload_id, suffix).unlink()
        if isinstance(same, str) and _ID_RE.fullmatch(same) and self._hinted(same) == upload_id:
            # Not a newer upload's hint.
            with contextlib.suppress(OSError):
                self._path(same, "same").unlink()

    def _hinted(self, same: str) -> str | None:
        """The upload id a same-file hint names: a link to that upload's info file (earlier versions
        wrote the bare id)."""
        try:
            text = self._path(same, "same").read_text("utf-8")
            upload_id = json.loads(text).get("id") if text.startswith("{") else text.strip()
        except (OSError, ValueError, AttributeError):
            return None
        return upload_id if isinstance(upload_id, str) and _ID_RE.fullmatch(upload_id) else None

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
        await asyncio.to_thread(self._purge_unpublished, now - max_idle_seconds)
        return removed

    def _purge_unpublished(self, before: float) -> None:
        """Deletes data files that were never published (their request died with its process), work
        files never renamed, what media jobs that died left behind (files, and directories of earlier
        versions) and lock files of earlier versions, untouched since `before`."""
        for path in [*self.upload_dir.glob("*.tmp"), *self.upload_dir.glob(f"{WORK_PREFIX}*")]:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < before:
                    path.unlink()
        for path in self.upload_dir.glob(f"{EARLIER_JOB_DIR_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir() and path.stat().st_mtime < before:
                    shutil.rmtree(path, ignore_errors=True)
        for path in [*self.upload_dir.glob("*.data"), *self.upload_dir.glob("*.lock")]:
            upload_id = path.name.split(".", 1)[0]
            if not _ID_RE.fullmatch(upload_id) or self._path(upload_id, "info").exists():
                continue
            try:
                if path.stat().st_mtime >= before:
                    continue
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if _try_flock(fd):  # not held by a request still receiving it
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)


class _Appender:
    """Writes one request's bytes at the upload's offset; its methods run in a thread."""

    def __init__(self, path: Path, start: int, hasher: Any, *, skip: int = 0) -> None:
        self.path = path
        self.start = start
        self.hasher = hasher
        self.skip = skip
        self.written = 0
        self.fd: int | None = None

    def skip_held(self, chunk: bytes) -> bytes:
        """The part of `chunk` past the bytes the upload holds already (those count for the checksum)."""
        if not self.skip:
            return chunk
        held = chunk[: self.skip]
        if self.hasher is not None:
            self.hasher.update(held)
        self.skip -= len(held)
        return chunk[len(held) :]

    def write(self, chunks: list[bytes]) -> None:
        if self.fd is None:
            self.fd = os.open(self.path, os.O_WRONLY)
        self.written += _write_at(self.fd, chunks, self.start + self.written, self.hasher)

    def finish(
        self,
        data: list[bytes],
        *,
        keep: bool,
        expected: bytes | None = None,
        interrupted: bool = False,
        sync: bool = True,
    ) -> bool:
        """Writes the rest, makes it durable (with `sync`) and closes; returns True when the checksum
        did not match.

        A chunk that overflows the upload (not `keep`), or that cannot be verified, is dropped whole.
        """
        try:
            if keep and data:
                self.write(data)
            verified = self.hasher is None or (not interrupted and self.hasher.digest() == expected)
            if self.fd is None and (self.written == 0 or verified):
                return False
            if self.fd is None:
                self.fd = os.open(self.path, os.O_WRONLY)
            if not keep or not verified:
                os.ftruncate(self.fd, self.start)
                self.written = 0
            if sync:
                os.fsync(self.fd)
            return self.hasher is not None and not interrupted and not verified
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None


def _write_at(fd: int, chunks: list[bytes], position: int, hasher: Any) -> int:
    """Writes the chunks one after another at `position`; returns how many bytes."""
    if hasher is not None:
        for chunk in chunks:
            hasher.update(chunk)
    total = sum(len(c) for c in chunks)
    done = os.pwritev(fd, chunks, position) if chunks else 0
    if done < total:
        # A short write (rare on a regular file): the rest, piece by piece.
        rest = b"".join(chunks)
        while done < total:
            done += os.pwrite(fd, rest[done:], position + done)
    return total


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
