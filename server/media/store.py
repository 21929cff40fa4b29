"""Content-addressed media storage: objects are named by the SHA-256 of their bytes."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import errno
import hashlib
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from server.media.errors import MediaNotFound

_SHA256_RE = re.compile(r"[0-9a-f]{64}")
_COPY_CHUNK = 1024 * 1024
# Why a rename or a hard link into the store can fail where a copy succeeds.
_NO_SHORTCUT = frozenset({errno.EXDEV, errno.EPERM, errno.EMLINK, errno.EOPNOTSUPP})


def is_sha256(value: str) -> bool:
    """True when `value` is 64 lowercase hex digits."""
    return _SHA256_RE.fullmatch(value) is not None


def check_sha256(value: str) -> str:
    """Return `value` if it is 64 lowercase hex digits, else raise ValueError (never a path)."""
    if not isinstance(value, str) or not is_sha256(value):
        raise ValueError("not a lowercase hex SHA-256")
    return value


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes (blocking)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Handover(enum.Enum):
    """What the caller does with a file once it has handed it to the store: a store may spare itself
    a copy where the caller's use of the file allows it."""

    KEEPS = enum.auto()
    """The caller keeps the file and may change it: the store keeps a copy of its own."""
    GIVES = enum.auto()
    """The file is the store's: the caller never opens it again (and expects it may be gone)."""
    KEEPS_UNCHANGED = enum.auto()
    """The caller keeps the file and never changes it again (it may delete it)."""


@runtime_checkable
class MediaStore(Protocol):
    """Where verified evidence lives, each object named by the SHA-256 of its bytes: stored once,
    never changed, read whole or by byte range. Implemented on a local filesystem (LocalMediaStore) and
    in an S3-compatible bucket (server.media.s3.S3MediaStore): nothing here assumes a path."""

    async def open(self) -> None:
        """Makes the store ready, or raises an error that says why it cannot be used."""
        ...

    async def close(self) -> None:
        """Releases what `open` or use took; the store may be used again afterwards."""
        ...

    def put_file_blocking(
        self, src: Path, *, sha256: str | None = None, handover: Handover = Handover.KEEPS
    ) -> str:
        """Store `src`'s bytes durably and return their SHA-256; idempotent. For a worker thread or
        process (the store is picklable). `sha256` is the digest of `src`'s bytes when the caller has
        just computed it from them (the store does not read the file again to learn it); `handover`
        says what becomes of `src` afterwards."""
        ...

    def prepare_blocking(self) -> None:
        """In a worker: readies what put_file_blocking needs (a connection), so its first call does not
        wait for it."""
        ...

    async def put_file(self, src: Path) -> str:
        """put_file_blocking of a file the caller keeps, from the event loop."""
        ...

    async def put_bytes(self, data: bytes) -> str:
        """Store `data` durably; return its SHA-256. Idempotent."""
        ...

    async def exists(self, sha256: str) -> bool:
        """True when an object with this SHA-256 is stored."""
        ...

    async def size(self, sha256: str) -> int:
        """The object's length in bytes; raise MediaNotFound when absent."""
        ...

    async def read(self, sha256: str, start: int = 0, length: int | None = None) -> bytes:
        """`length` bytes of the object from `start` (to its end when None, fewer past its end); raise
        MediaNotFound when absent."""
        ...

    async def delete(self, sha256: str) -> bool:
        """Remove the object, durably: True; False when it is absent (then nothing happens), so that a
        caller never counts as removed what was not there to remove."""
        ...

    def where(self) -> str:
        """Where the objects are, as an operator would look for them: a folder, or a bucket."""
        ...


def _read_range(path: Path, start: int, length: int | None) -> bytes:
    with path.open("rb") as f:
        f.seek(start)
        return f.read() if length is None else f.read(length)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalMediaStore:
    """MediaStore on a local (or shared POSIX) filesystem: `root/ab/cd/<sha256>`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    async def open(self) -> None:
        """Nothing to connect to: folders are made as objects arrive."""

    async def close(self) -> None:
        """Nothing to release."""

    def prepare_blocking(self) -> None:
        """Nothing to ready."""

    def path_for(self, sha256: str) -> Path:
        """Where an object lives, whether or not it exists; the SHA-256 is validated first."""
        check_sha256(sha256)
        return self.root / sha256[:2] / sha256[2:4] / sha256

    async def put_file(self, src: Path) -> str:
        """Store a copy of `src` durably; return its SHA-256."""
        return await asyncio.to_thread(self.put_file_blocking, Path(src))

    async def put_bytes(self, data: bytes) -> str:
        """Store `data` durably; return its SHA-256."""
        return await asyncio.to_thread(self._put_bytes_sync, bytes(data))

    async def exists(self, sha256: str) -> bool:
        """True when the object is stored."""
        path = self.path_for(sha256)
        return await asyncio.to_thread(path.is_file)

    async def size(self, sha256: str) -> int:
        """The object's length in bytes; raise MediaNotFound when absent."""
        path = self.path_for(sha256)
        try:
            return (await asyncio.to_thread(path.stat)).st_size
        except FileNotFoundError:
            raise MediaNotFound(sha256) from None

    async def read(self, sha256: str, start: int = 0, length: int | None = None) -> bytes:
        """`length` bytes of the object from `start` (to its end when None); MediaNotFound when absent."""
        path = self.path_for(sha256)
        try:
            return await asyncio.to_thread(_read_range, path, start, length)
        except FileNotFoundError:
            raise MediaNotFound(sha256) from None

    async def delete(self, sha256: str) -> bool:
        """Remove the object, durably: True; False when it is absent."""
        return await asyncio.to_thread(self._delete_sync, self.path_for(sha256))

    def _delete_sync(self, path: Path) -> bool:
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        _fsync_dir(path.parent)
        return True

    def where(self) -> str:
        """The media folder."""
        return f"the media folder {self.root.absolute()}"

    def _prepare_dir(self, target: Path) -> None:
        parent = target.parent
        if parent.is_dir():
            return
        # New directory entries must be durable too, or a crash can lose a renamed object.
        created: list[Path] = []
        probe = parent
        while not probe.exists():
            created.append(probe)
            probe = probe.parent
        parent.mkdir(parents=True, exist_ok=True)
        for d in created:
            _fsync_dir(d.parent)

    def put_file_blocking(
        self, src: Path, *, sha256: str | None = None, handover: Handover = Handover.KEEPS
    ) -> str:
        """Store `src` durably and return its SHA-256. A file given to the store is renamed into place;
        one its caller keeps unchanged gets the object's name as a second one (a hard link): either is
        one hash pass, or none when `sha256` is given, and no copy, when `src` is on the store's
        filesystem."""
        src = Path(src)
        if handover is not Handover.KEEPS:
            sha = check_sha256(sha256) if sha256 is not None else file_sha256(src)
            target = self.path_for(sha)
            if target.is_file():
                return sha
            self._prepare_dir(target)
            with src.open("rb") as f:
                os.fsync(f.fileno())
            os.chmod(src, 0o600)  # a photo of a patient's medicine: the server's user's alone
            try:
                if handover is Handover.KEEPS_UNCHANGED:
                    os.link(src, target)
                else:
                    os.replace(src, target)
            except FileExistsError:
                return sha  # stored meanwhile by another worker: the same bytes
            except OSError as exc:
                # Another filesystem, or one without hard links: a copy after all.
                if exc.errno not in _NO_SHORTCUT:
                    raise
            else:
                _fsync_dir(target.parent)
                return sha
        return self._copy_in(src)

    def _copy_in(self, src: Path) -> str:
        sha = file_sha256(src)

        def copy(out: BinaryIO) -> None:
            digest = hashlib.sha256()
            with src.open("rb") as inp:
                while chunk := inp.read(_COPY_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            # The source could have changed between hashing and copying; never store under a wrong name.
            if digest.hexdigest() != sha:
                raise OSError("source file changed while it was being stored")

        self._write_atomic(sha, copy)
        return sha

    def _put_bytes_sync(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self._write_atomic(sha, lambda out: out.write(data))
        return sha

    def _write_atomic(self, sha: str, write: Callable[[BinaryIO], object]) -> None:
        target = self.path_for(sha)
        if target.is_file():
            return
        self._prepare_dir(target)
        fd, tmp_name = tempfile.mkstemp(prefix=".tmp-", dir=target.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                write(out)
                out.flush()
                os.fsync(out.fileno())
            os.chmod(tmp, 0o600)
            # Concurrent writers of the same content race harmlessly: rename is atomic, bytes are equal.
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(target.parent)
