"""Content-addressed media storage: objects are named by the SHA-256 of their bytes."""

from __future__ import annotations

import asyncio
import contextlib
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


@runtime_checkable
class MediaStore(Protocol):
    """Where verified media bytes live; implemented locally and (later) on S3-compatible storage."""

    async def put_file(self, src: Path) -> str:
        """Store a copy of `src`; return its SHA-256. Idempotent."""
        ...

    def put_file_blocking(
        self, src: Path, *, move: bool = False, link: bool = False, sha256: str | None = None
    ) -> str:
        """put_file for a worker thread or process (the store is picklable); with `move` the store may
        take `src` over instead of copying it; with `link`, `src` stays where it is and never changes
        again, so the store may keep the very same file (a second name) instead of a copy. `sha256` is
        the digest of `src`'s bytes when the caller has just computed it from them: the store does not
        read the file again to learn it."""
        ...

    async def put_bytes(self, data: bytes) -> str:
        """Store `data`; return its SHA-256. Idempotent."""
        ...

    async def exists(self, sha256: str) -> bool:
        """True when an object with this SHA-256 is stored."""
        ...

    def local_path(self, sha256: str) -> Path | None:
        """A local file to serve (with Range support), or None when absent or not on local disk."""
        ...

    async def open_bytes(self, sha256: str) -> bytes:
        """The object's bytes; raise MediaNotFound when absent."""
        ...


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

    def local_path(self, sha256: str) -> Path | None:
        """The object's file (for aiohttp FileResponse), or None when absent."""
        path = self.path_for(sha256)
        return path if path.is_file() else None

    async def open_bytes(self, sha256: str) -> bytes:
        """The object's bytes; raise MediaNotFound when absent."""
        path = self.path_for(sha256)
        try:
            return await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise MediaNotFound(sha256) from None

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
        self, src: Path, *, move: bool = False, link: bool = False, sha256: str | None = None
    ) -> str:
        """Store `src` durably and return its SHA-256. With `move` it is renamed into place, with `link`
        it gets the object's name as a second one (hard link); either is one hash pass, or none when
        `sha256` is given, and no copy, when `src` is on the store's filesystem."""
        src = Path(src)
        if move or link:
            sha = check_sha256(sha256) if sha256 is not None else file_sha256(src)
            target = self.path_for(sha)
            if target.is_file():
                return sha
            self._prepare_dir(target)
            with src.open("rb") as f:
                os.fsync(f.fileno())
            os.chmod(src, 0o644)
            try:
                if link:
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
            os.chmod(tmp, 0o644)
            # Concurrent writers of the same content race harmlessly: rename is atomic, bytes are equal.
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        _fsync_dir(target.parent)
