"""One media job's work files: named apart from other jobs' in a shared directory, removed when it ends.

A job's variants are written beside the uploads and then taken over by the store (renamed into it), so
a job needs no directory of its own: making and removing one per photo cost a media worker more than
a photo's SHA-256 (ext4 allocates and frees an inode for each).
"""

from __future__ import annotations

import contextlib
import secrets
from pathlib import Path

# Every work file's name starts so: what a crashed job left behind is recognised by it.
WORK_PREFIX = ".ingest-"
# Before, each job had a directory of its own, named so.
EARLIER_JOB_DIR_PREFIX = "ingest-"


class WorkFiles:
    """Paths for one job's files in `directory`, and their removal."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self._prefix = f"{WORK_PREFIX}{secrets.token_hex(8)}-"
        self._named: list[Path] = []

    def path(self, name: str) -> Path:
        """Where the job's file `name` goes; the name's extension is kept (writers choose by it)."""
        path = self.directory / f"{self._prefix}{name}"
        self._named.append(path)
        return path

    def remove(self) -> None:
        """Deletes whichever of the job's files are still here (the store took over the others)."""
        for path in self._named:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
