"""What counts as the disk failing, and which data path it was."""

from __future__ import annotations

import errno
import sqlite3
from pathlib import Path

from sqlalchemy.exc import OperationalError

from server.config import Config
from server.operations.storage import DataPaths


def paths(tmp_path: Path) -> DataPaths:
    return DataPaths.of(Config(data_dir=tmp_path))


def test_a_full_or_unwritable_disk_is_named_with_its_path(tmp_path: Path) -> None:
    p = paths(tmp_path)
    full = p.failure_in(OSError(errno.ENOSPC, "No space left", str(tmp_path / "media" / "ab" / "cd")))
    assert full is not None and (full.role, full.reason) == ("media", "no space left")
    readonly = p.failure_in(PermissionError(errno.EROFS, "Read-only", str(tmp_path / "uploads" / "x.data")))
    assert readonly is not None and readonly.role == "uploads"
    wal = p.failure_in(OSError(errno.EDQUOT, "Quota", str(tmp_path / "telepharmacy.sqlite3-wal")))
    assert wal is not None and wal.role == "database"


def test_the_database_saying_it_is_full_is_a_storage_failure_however_wrapped(tmp_path: Path) -> None:
    driver = sqlite3.OperationalError("database or disk is full")
    wrapped = OperationalError("INSERT INTO fills ...", {}, driver)
    try:
        raise RuntimeError("while committing") from wrapped
    except RuntimeError as exc:
        failure = paths(tmp_path).failure_in(exc)
    assert failure is not None and (failure.errno, failure.role) == (errno.ENOSPC, "database")


def test_other_errors_are_not_storage_failures(tmp_path: Path) -> None:
    p = paths(tmp_path)
    assert p.failure_in(FileNotFoundError(errno.ENOENT, "gone", str(tmp_path / "media"))) is None
    assert p.failure_in(sqlite3.OperationalError("no such table: fills")) is None
    assert p.failure_in(ValueError("bad")) is None


def test_free_room_is_read_where_a_path_will_be_made(tmp_path: Path) -> None:
    free = paths(tmp_path).free_bytes()  # no media folder yet: its parent's file system answers
    assert set(free) == {"media", "uploads", "database"} and min(free.values()) > 0
