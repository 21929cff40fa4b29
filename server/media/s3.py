"""The media store in an S3-compatible bucket, so that server instances on different hosts share media
without a shared volume.

Objects are named as on disk (`prefix + ab/cd/<sha256>`). Each is hashed before it is sent and put
with its SHA-256 as the checksum the storage service verifies, so bytes are never stored under another
name, and with server-side encryption requested. The event loop talks to the bucket through
aiobotocore; a media worker process puts the variants it made through botocore's blocking client, one
per process. The store pickles as its settings alone: a worker opens its own connection. What botocore
raises leaves as ObjectStorageError, which a request answers 503 (docs/decisions/0018).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from server.config import ObjectStorage
from server.media.errors import MediaNotFound, ObjectStorageError
from server.media.store import Handover, check_sha256, file_sha256

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

# What S3 and S3-compatible servers answer for an object that is not there.
_ABSENT = frozenset({"404", "NoSuchKey", "NotFound"})
# botocore's blocking clients, one per process and settings: a worker makes one and keeps it.
_BLOCKING: dict[ObjectStorage, BaseClient] = {}
_BLOCKING_LOCK = threading.Lock()


def _client_options(settings: ObjectStorage) -> dict[str, Any]:
    from botocore.config import Config as BotoConfig

    options: dict[str, Any] = {
        "region_name": settings.region,
        "endpoint_url": settings.endpoint_url,
        "config": BotoConfig(
            # An S3-compatible server is reached by its own name, not by a bucket's subdomain of it.
            s3={"addressing_style": "path"} if settings.endpoint_url else {},
            retries={"mode": "standard", "max_attempts": 4},
            connect_timeout=5,
            read_timeout=60,
            max_pool_connections=32,
        ),
    }
    if settings.access_key_id is not None:
        options["aws_access_key_id"] = settings.access_key_id
        options["aws_secret_access_key"] = settings.secret_access_key
    return options


def _blocking_client(settings: ObjectStorage) -> BaseClient:
    with _BLOCKING_LOCK:
        client = _BLOCKING.get(settings)
        if client is None:
            import botocore.session

            client = botocore.session.get_session().create_client("s3", **_client_options(settings))
            _BLOCKING[settings] = client
        return client


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _failures(operation: str) -> Iterator[None]:
    """Turns what botocore raises into ObjectStorageError naming the operation and the bucket's answer
    (an OSError: the request that met it is answered 503, an upload it interrupted is kept)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        raise ObjectStorageError(f"object storage: {operation} refused ({_code(exc) or 'no code'})") from None
    except BotoCoreError as exc:
        raise ObjectStorageError(f"object storage: {operation} failed ({exc})") from None


def _checksum(sha256: str) -> str:
    """A SHA-256 in hex as S3's x-amz-checksum-sha256 carries it (base64)."""
    return base64.b64encode(bytes.fromhex(sha256)).decode("ascii")


class S3MediaStore:
    """MediaStore in an S3 bucket: `prefix + ab/cd/<sha256>`, encrypted at rest by the service."""

    def __init__(self, settings: ObjectStorage) -> None:
        self.settings = settings
        self._client: Any = None
        self._exit: contextlib.AsyncExitStack | None = None
        self._connecting: asyncio.Lock | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["settings"])  # type: ignore[misc]

    def key_for(self, sha256: str) -> str:
        """The object's key, whether or not it exists; the SHA-256 is validated first."""
        check_sha256(sha256)
        return f"{self.settings.key_prefix}{sha256[:2]}/{sha256[2:4]}/{sha256}"

    def _put_args(self, sha256: str) -> dict[str, Any]:
        args: dict[str, Any] = {
            "Bucket": self.settings.bucket,
            "Key": self.key_for(sha256),
            "ChecksumSHA256": _checksum(sha256),
            "ContentType": "application/octet-stream",
            "ServerSideEncryption": self.settings.encryption,
        }
        if self.settings.kms_key_id:
            args["SSEKMSKeyId"] = self.settings.kms_key_id
        return args

    # The event loop's side: aiobotocore.

    async def open(self) -> None:
        """Connects and checks that the bucket is there and ours to use; ObjectStorageError otherwise."""
        with _failures(f"bucket {self.settings.bucket!r}"):
            client = await self._async_client()
            await client.head_bucket(Bucket=self.settings.bucket)

    async def close(self) -> None:
        """Closes the connections; a later call opens them again."""
        if self._exit is not None:
            exit_stack, self._exit, self._client = self._exit, None, None
            await exit_stack.aclose()

    async def _async_client(self) -> Any:
        if self._client is not None:
            return self._client
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._client is None:
                from aiobotocore.session import get_session

                stack = contextlib.AsyncExitStack()
                client = await stack.enter_async_context(
                    get_session().create_client("s3", **_client_options(self.settings))
                )
                self._exit, self._client = stack, client
        return self._client

    async def _head(self, sha256: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        key = self.key_for(sha256)
        with _failures("head"):
            client = await self._async_client()
            try:
                return dict(await client.head_object(Bucket=self.settings.bucket, Key=key))
            except ClientError as exc:
                if _code(exc) in _ABSENT:
                    return None
                raise

    async def exists(self, sha256: str) -> bool:
        """True when the object is stored (asked of the bucket; nothing is downloaded)."""
        return await self._head(sha256) is not None

    async def size(self, sha256: str) -> int:
        """The object's length in bytes; raise MediaNotFound when absent."""
        head = await self._head(sha256)
        if head is None:
            raise MediaNotFound(sha256)
        return int(head["ContentLength"])

    async def read(self, sha256: str, start: int = 0, length: int | None = None) -> bytes:
        """`length` bytes of the object from `start` (to its end when None), one ranged GET; MediaNotFound
        when absent."""
        from botocore.exceptions import ClientError

        key = self.key_for(sha256)
        if start < 0 or (length is not None and length < 0):
            raise ValueError("a range starts at 0 or later and is not negative")
        if length == 0:
            if not await self.exists(sha256):
                raise MediaNotFound(sha256)
            return b""
        wanted = f"bytes={start}-" if length is None else f"bytes={start}-{start + length - 1}"
        with _failures("get"):
            client = await self._async_client()
            try:
                response = await client.get_object(Bucket=self.settings.bucket, Key=key, Range=wanted)
            except ClientError as exc:
                if _code(exc) in _ABSENT:
                    raise MediaNotFound(sha256) from None
                if _code(exc) == "InvalidRange":
                    return b""  # from past its end: nothing, as a file read there gives
                raise
            async with response["Body"] as body:
                return bytes(await body.read())

    async def put_bytes(self, data: bytes) -> str:
        """Store `data` durably (once the bucket has answered); return its SHA-256. Idempotent."""
        data = bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        if await self.exists(sha):
            return sha
        with _failures("put"):
            client = await self._async_client()
            await client.put_object(Body=data, **self._put_args(sha))
        return sha

    async def put_file(self, src: Path) -> str:
        """Store `src`'s bytes (the caller keeps the file); return their SHA-256."""
        return await asyncio.to_thread(self.put_file_blocking, Path(src))

    async def delete(self, sha256: str) -> bool:
        """Remove the object: True; False when it is absent. The bucket answers a deletion the same
        whether or not the object was there, so it is asked first."""
        key = self.key_for(sha256)
        if await self._head(sha256) is None:
            return False
        with _failures("delete"):
            client = await self._async_client()
            await client.delete_object(Bucket=self.settings.bucket, Key=key)
        return True

    def where(self) -> str:
        """The bucket, and the prefix its keys begin with (not the endpoint: a URL may carry a secret)."""
        named = f"the bucket {self.settings.bucket!r}"
        return named + f" under {self.settings.key_prefix!r}" if self.settings.key_prefix else named

    # A worker's side: botocore's blocking client.

    def prepare_blocking(self) -> None:
        """Makes this process's blocking client now (a third of a second), not at its first upload."""
        _blocking_client(self.settings)

    def put_file_blocking(
        self, src: Path, *, sha256: str | None = None, handover: Handover = Handover.KEEPS
    ) -> str:
        """Store `src`'s bytes and return their SHA-256; idempotent. The file is hashed here whether or
        not `sha256` is given (a pass over local bytes is cheap beside sending them): bytes that are not
        what `sha256` says raise OSError, nothing stored. The bucket is asked to check the bytes that
        reach it against the same SHA-256, so a file that changes while it streams is refused too.
        Whatever `handover` says, the file stays where it is for its owner to remove."""
        from botocore.exceptions import ClientError

        del handover  # the bytes are copied whichever way: the bucket is elsewhere
        src = Path(src)
        actual = file_sha256(src)
        if sha256 is not None and check_sha256(sha256) != actual:
            raise OSError("the file's bytes are not those of the SHA-256 it was to be stored under")
        key = self.key_for(actual)
        with _failures("put"):
            client = _blocking_client(self.settings)
            try:
                client.head_object(Bucket=self.settings.bucket, Key=key)
                return actual
            except ClientError as exc:
                if _code(exc) not in _ABSENT:
                    raise
            with src.open("rb") as body:
                client.put_object(Body=body, **self._put_args(actual))
        return actual
