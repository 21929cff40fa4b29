"""The uploads' state on disk: an info JSON and a data file per upload, in one directory.

State lives on disk, so a restart keeps partial uploads and instances sharing the directory can continue
each other's uploads. The data file's size is the upload offset, and a flock on it is the upload's lock
(with an asyncio lock in front of it for the requests of one process).

An upload held by its creation request (sent whole with it) is a data file with no info file: nobody
else sees it until it is published (made durable and given its info file).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import time
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.media.workfiles import EARLIER_JOB_DIR_PREFIX, WORK_PREFIX

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"[0-9a-f]{32}")


def is_upload_id(value: str) -> bool:
    """True when `value` can name an upload (never a path from a request: only ids made here name files)."""
    return _ID_RE.fullmatch(value) is not None


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


class UploadLocked(Exception):
    """Another request, of this process or another, holds the upload's lock for too long."""


class Uploads:
    """The uploads in `directory`: their files, offsets and locks, and the purge of abandoned ones."""

    def __init__(self, directory: Path, *, lock_timeout: float) -> None:
        self.directory = Path(directory)
        self.lock_timeout = lock_timeout
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.directory.mkdir(parents=True, exist_ok=True)

    @contextlib.asynccontextmanager
    async def locked(self, upload_id: str) -> AsyncIterator[TusUpload | None]:
        """Exclusive access to one upload, and its state read under the lock (None when unknown): an
        asyncio lock here, a flock for other processes. Taking the flock and reading the state is one
        thread round trip."""
        if not is_upload_id(upload_id):
            yield None
            return
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[upload_id] = lock
        try:
            async with asyncio.timeout(self.lock_timeout):
                await lock.acquire()
        except TimeoutError:
            raise UploadLocked("another request is writing to this upload") from None
        try:
            # flock on the data file rather than O_EXCL: the kernel releases it when a process dies,
            # so no stale locks.
            fd, held, upload = await asyncio.to_thread(self._lock_and_load, upload_id)
            try:
                deadline = asyncio.get_running_loop().time() + self.lock_timeout
                while not held and fd is not None:
                    if asyncio.get_running_loop().time() > deadline:
                        raise UploadLocked("another server is writing to this upload")
                    await asyncio.sleep(0.05)
                    held = try_flock(fd)
                    if held:
                        upload = await self.load(upload_id)
                yield upload
            finally:
                if fd is not None:
                    os.close(fd)
        finally:
            lock.release()

    def _lock_and_load(self, upload_id: str) -> tuple[int | None, bool, TusUpload | None]:
        try:
            fd = os.open(self.path(upload_id, "data"), os.O_RDWR)
        except FileNotFoundError:
            return None, True, None  # an unknown upload: nothing to lock, nothing to load
        held = try_flock(fd)
        return fd, held, self.load_sync(upload_id) if held else None

    def path(self, upload_id: str, suffix: str) -> Path:
        """The upload's file with this suffix ("data", "info", ...); `upload_id` is one made here."""
        return self.directory / f"{upload_id}.{suffix}"

    async def load(self, upload_id: str) -> TusUpload | None:
        """The upload's current state, or None when unknown."""
        if not is_upload_id(upload_id):
            return None
        return await asyncio.to_thread(self.load_sync, upload_id)

    def load_sync(self, upload_id: str) -> TusUpload | None:
        """load, blocking."""
        try:
            info: dict[str, Any] = json.loads(self.path(upload_id, "info").read_text("utf-8"))
            size = self.path(upload_id, "data").stat().st_size
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
            data_path=self.path(upload_id, "data"),
            created_at=float(info.get("created_at", 0.0)),
        )

    def create_files(self, upload_id: str, info: dict[str, Any]) -> None:
        # The data file exists before the info file, so a visible info always has its data.
        data = self.path(upload_id, "data")
        fd = os.open(data, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.close(fd)
        try:
            self._write_info(upload_id, info)
        except BaseException:
            # An upload whose info could not be written never existed: its empty data file goes too.
            with contextlib.suppress(OSError):
                data.unlink()
            raise

    def publish(self, info: dict[str, Any]) -> None:
        """Makes an upload held by its creation request durable and visible (its data file exists)."""
        fd = os.open(self.path(info["id"], "data"), os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self._write_info(info["id"], info)

    def _write_info(self, upload_id: str, info: dict[str, Any]) -> None:
        """Writes the info file durably (and the same-file hint): from now on the upload exists."""
        tmp = self.path(upload_id, "info.tmp")
        link = self.path(upload_id, "same.tmp")
        try:
            with tmp.open("w", encoding="utf-8") as f:
                json.dump(info, f)
                f.flush()
                os.fsync(f.fileno())
            if info.get("same"):
                # The hint for creation is a second name of the info file, made before the upload is
                # visible: no file of its own (each new inode is costly on a busy disk), no fsync needed.
                os.link(tmp, link)
                os.replace(link, self.path(info["same"], "same"))
            os.replace(tmp, self.path(upload_id, "info"))
        except BaseException:
            # A disk that filled up must not keep the half-written file of every attempt.
            for left in (tmp, link):
                with contextlib.suppress(OSError):
                    left.unlink()
            raise
        dir_fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def remove(self, upload_id: str) -> None:
        try:
            same = json.loads(self.path(upload_id, "info").read_text("utf-8")).get("same")
        except (OSError, ValueError):
            same = None
        # The info file goes first: without it the upload no longer exists for anyone.
        for suffix in ("info", "data"):
            with contextlib.suppress(FileNotFoundError):
                self.path(upload_id, suffix).unlink()
        if isinstance(same, str) and is_upload_id(same) and self._hinted(same) == upload_id:
            # Not a newer upload's hint.
            with contextlib.suppress(OSError):
                self.path(same, "same").unlink()

    def _hinted(self, same: str) -> str | None:
        """The upload id a same-file hint names: a link to that upload's info file (earlier versions
        wrote the bare id)."""
        try:
            text = self.path(same, "same").read_text("utf-8")
            upload_id = json.loads(text).get("id") if text.startswith("{") else text.strip()
        except (OSError, ValueError, AttributeError):
            return None
        return upload_id if isinstance(upload_id, str) and is_upload_id(upload_id) else None

    def _data_mtime(self, upload_id: str) -> float:
        try:
            return self.path(upload_id, "data").stat().st_mtime
        except FileNotFoundError:
            return 0.0

    async def purge_stale(self, max_idle_seconds: float) -> int:
        """Delete uploads that received no byte for `max_idle_seconds`; return how many went."""
        now = time.time()
        removed = 0
        for info_path in await asyncio.to_thread(sorted, self.directory.glob("*.info")):
            upload_id = info_path.stem
            if not is_upload_id(upload_id):
                continue
            mtime = await asyncio.to_thread(self._data_mtime, upload_id)
            if now - mtime < max_idle_seconds:
                continue
            with contextlib.suppress(UploadLocked):
                async with self.locked(upload_id):
                    await asyncio.to_thread(self.remove, upload_id)
                    removed += 1
        await asyncio.to_thread(self._purge_unpublished, now - max_idle_seconds)
        return removed

    def _purge_unpublished(self, before: float) -> None:
        """Deletes data files that were never published (their request died with its process), work
        files never renamed, what media jobs that died left behind (files, and directories of earlier
        versions) and lock files of earlier versions, untouched since `before`."""
        for path in [*self.directory.glob("*.tmp"), *self.directory.glob(f"{WORK_PREFIX}*")]:
            with contextlib.suppress(FileNotFoundError):
                if path.stat().st_mtime < before:
                    path.unlink()
        for path in self.directory.glob(f"{EARLIER_JOB_DIR_PREFIX}*"):
            with contextlib.suppress(FileNotFoundError):
                if path.is_dir() and path.stat().st_mtime < before:
                    shutil.rmtree(path, ignore_errors=True)
        for path in [*self.directory.glob("*.data"), *self.directory.glob("*.lock")]:
            upload_id = path.name.split(".", 1)[0]
            if not is_upload_id(upload_id) or self.path(upload_id, "info").exists():
                continue
            try:
                if path.stat().st_mtime >= before:
                    continue
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                if try_flock(fd):  # not held by a request still receiving it
                    path.unlink(missing_ok=True)
            finally:
                os.close(fd)

    def find_or_create(self, info: dict[str, Any]) -> tuple[str, bool]:
        """(upload id, whether it is new): the unfinished upload of the same file, else info's, published."""
        if info["same"]:
            found = self._find_same(info["same"], info["owner"], info["length"])
            if found is not None:
                return found, False
        self.create_files(info["id"], info)
        return info["id"], True

    def find_or_start(self, info: dict[str, Any]) -> tuple[str, int | None]:
        """(upload id, None) for the unfinished upload of the same file; else (info's id, the locked
        descriptor of its new, unpublished data file)."""
        if info["same"]:
            found = self._find_same(info["same"], info["owner"], info["length"])
            if found is not None:
                return found, None
        fd = os.open(self.path(info["id"], "data"), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        # Nobody else knows the id yet, so the lock is free: taken for purge_stale's sake.
        try_flock(fd)
        return info["id"], fd

    def _find_same(self, same: str, owner: str, length: int) -> str | None:
        upload_id = self._hinted(same)
        if upload_id is None:
            return None
        upload = self.load_sync(upload_id)
        if upload is None or upload.owner != owner or upload.length != length:
            return None
        return upload_id


class Appender:
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
        self.written += write_at(self.fd, chunks, self.start + self.written, self.hasher)

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

    def discard(self) -> None:
        """Undoes this request's writes (a write failed: disk full, not writable): the file is cut back
        to where the request began."""
        try:
            if self.fd is None:
                self.fd = os.open(self.path, os.O_WRONLY)
            os.ftruncate(self.fd, self.start)
        except FileNotFoundError:
            pass
        finally:
            if self.fd is not None:
                os.close(self.fd)
                self.fd = None
        self.written = 0


def named(exc: OSError, path: Path) -> OSError:
    """The error with the file it is about (a write on a descriptor names none), for the log."""
    if exc.filename is not None:
        return exc
    return type(exc)(exc.errno, exc.strerror, str(path))


def write_at(fd: int, chunks: list[bytes], position: int, hasher: Any) -> int:
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


def try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
