"""The server's data on disk: what each path is for, how much room it has, and which failures mean the
disk is full or cannot be written (not a fault of the request, nor of the file it carries).

A request that meets such a failure is answered 507 with words a technician can pass on; the log names
the errno and what the path is for, never the request's data.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from server.config import Config
from server.errors import behind
from server.media.errors import ObjectStorageError

# What a failed write on a data path means, by errno.
STORAGE_ERRNOS = {
    errno.ENOSPC: "no space left",
    errno.EDQUOT: "disk quota exceeded",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EIO: "input/output error",
    errno.EFBIG: "file too large",
}
# SQLite says these in words; PostgreSQL's SQLSTATE 53100 is disk_full.
_SQLITE_STORAGE = {
    "database or disk is full": errno.ENOSPC,
    "attempt to write a readonly database": errno.EROFS,
    "disk i/o error": errno.EIO,
}
_POSTGRES_DISK_FULL = "53100"


@dataclass(frozen=True)
class StorageFailure:
    errno: int
    role: str

    @property
    def reason(self) -> str:
        return STORAGE_ERRNOS.get(self.errno, os.strerror(self.errno))

    def __str__(self) -> str:
        return f"the {self.role} path failed to write: {self.reason} (errno {self.errno})"


@dataclass(frozen=True)
class DataPaths:
    """The server's data paths by what they are for: media (unless they are in object storage), uploads,
    database (SQLite only)."""

    media: Path | None
    uploads: Path
    database: Path | None

    @classmethod
    def of(cls, config: Config) -> DataPaths:
        url = config.effective_database_url
        database = Path(url.split(":///", 1)[1]) if config.is_sqlite and ":///" in url else None
        media = config.media_dir if config.object_storage is None else None
        return cls(media, config.upload_dir, database)

    def roles(self) -> Iterator[tuple[str, Path]]:
        if self.media is not None:
            yield "media", self.media
        yield "uploads", self.uploads
        if self.database is not None:
            yield "database", self.database.parent

    def open_to_others(self) -> Iterator[tuple[str, Path, int]]:
        """Each path (role, path, mode) that exists and whose rights let other users than the server's
        in: made by an earlier version, or by hand. The server makes its own for its user alone."""
        for role, path in self.roles():
            with contextlib.suppress(FileNotFoundError):
                mode = stat.S_IMODE(path.stat().st_mode)
                if mode & 0o077:
                    yield role, path, mode

    def role_of(self, filename: str | os.PathLike[str] | None) -> str:
        """What a path is for; 'data' for one outside the known paths (or none given)."""
        if filename is None:
            return "data"
        path = Path(os.fsdecode(filename)).absolute()
        if self.database is not None and path.name.startswith(self.database.name):
            return "database"  # the database file, its journal or write-ahead log
        for role, root in (("media", self.media), ("uploads", self.uploads)):
            if root is not None and path.is_relative_to(root.absolute()):
                return role
        return "data"

    def free_bytes(self) -> dict[str, int]:
        """Bytes free to the server on each path's file system."""
        free = {}
        for role, path in self.roles():
            # A folder made on first use (media before the first photo) is on its parent's file system.
            existing = next((p for p in (path, *path.parents) if p.exists()), path)
            try:
                free[role] = shutil.disk_usage(existing).free
            except OSError:
                free[role] = 0  # unreadable: nothing can be written there either
        return free

    def failure_in(self, exc: BaseException) -> StorageFailure | None:
        """The storage failure behind `exc` (however wrapped), or None when it is something else."""
        for e in behind(exc):
            if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
                return StorageFailure(e.errno, self.role_of(e.filename))
            if isinstance(e, sqlite3.Error):
                text = str(e).lower()
                for words, code in _SQLITE_STORAGE.items():
                    if words in text:
                        return StorageFailure(code, "database")
            if getattr(e, "sqlstate", None) == _POSTGRES_DISK_FULL:
                return StorageFailure(errno.ENOSPC, "database")
        return None


def object_storage_failure(exc: BaseException) -> ObjectStorageError | None:
    """The media bucket's failure behind `exc` (however wrapped), or None when it is something else."""
    return next((e for e in behind(exc) if isinstance(e, ObjectStorageError)), None)
