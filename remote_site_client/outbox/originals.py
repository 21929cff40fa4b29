"""Originals of paper prescriptions (a photo or scan, a fax's TIFF, a PDF), waiting to be delivered as
media of their prescription: pending --uploaded over tus--> delivered, or failed when refused for good."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from remote_site_client.outbox.store import DELIVERED, FAILED, PENDING, Store, durable_copy, fsync_dir


@dataclass(frozen=True)
class Original:
    """A prescription's original waiting in the outbox (or delivered, or refused)."""

    id: int
    prescription_id: int
    path: Path
    filename: str
    sha256: str
    bytes: int
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    failed_reason: str | None
    upload_url: str | None
    media_id: int | None
    pages: int | None


class OriginalStore(Store):
    """Originals, leased per process as fills and recordings are."""

    def add_original(self, prescription_id: int, src: Path) -> Original:
        """An fsync'd copy of the original, then its entry, due now; the same file twice is one entry."""
        folder = self.files_dir / "originals"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = folder / f".incoming-{prescription_id}-{time.time_ns()}"
        sha, size = durable_copy(src, staging)
        dest = folder / f"{prescription_id}-{sha[:16]}{src.suffix.lower()[:8]}"
        staging.replace(dest)
        fsync_dir(folder)
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT OR IGNORE INTO originals (prescription_id, path, filename, sha256, bytes, state,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (prescription_id, str(dest), src.name[:255], sha, size, PENDING, now, now),
            )
            row = db.execute(
                "SELECT * FROM originals WHERE prescription_id = ? AND sha256 = ?", (prescription_id, sha)
            ).fetchone()
        return self._original(row)

    @staticmethod
    def _original(row: sqlite3.Row) -> Original:
        return Original(
            id=row["id"],
            prescription_id=row["prescription_id"],
            path=Path(row["path"]),
            filename=row["filename"],
            sha256=row["sha256"],
            bytes=row["bytes"],
            state=row["state"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            failed_reason=row["failed_reason"],
            upload_url=row["upload_url"],
            media_id=row["media_id"],
            pages=row["pages"],
        )

    def original(self, original_id: int) -> Original | None:
        row = self.db.execute("SELECT * FROM originals WHERE id = ?", (original_id,)).fetchone()
        return self._original(row) if row else None

    def originals(self, states: Sequence[str] | None = (PENDING,)) -> list[Original]:
        """Originals in these states (all with None), oldest first."""
        return [self._original(r) for r in self._rows_in("originals", "id", states)]

    def due_originals(self, now: float | None = None) -> list[int]:
        return self._due("originals", "id", now)

    def next_original_due_at(self) -> float | None:
        return self._next_due_at("originals")

    def acquire_original(self, original_id: int, seconds: float = 120.0) -> bool:
        return self._acquire("originals", "id", original_id, (PENDING,), seconds)

    def renew_original(self, original_id: int, seconds: float = 120.0) -> None:
        self._renew("originals", "id", original_id, seconds)

    def release_original(self, original_id: int) -> None:
        self._release("originals", "id", original_id)

    def set_original_upload_url(self, original_id: int, url: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE originals SET upload_url = ? WHERE id = ?", (url, original_id))

    def original_delivered(self, original_id: int, media_id: int, pages: int | None) -> None:
        """The server stored its pages: the outbox's copy goes."""
        found = self.original(original_id)
        with self.transaction() as db:
            db.execute(
                "UPDATE originals SET state = ?, media_id = ?, pages = ?, upload_url = NULL,"
                " last_error = NULL, delivered_at = ?, lease_pid = NULL, lease_until = NULL WHERE id = ?",
                (DELIVERED, media_id, pages, time.time(), original_id),
            )
        if found is not None:
            with contextlib.suppress(FileNotFoundError):
                found.path.unlink()

    def original_retry_later(self, original_id: int, error: str, delay: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE originals SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                " lease_pid = NULL, lease_until = NULL WHERE id = ?",
                (error, time.time() + delay, original_id),
            )

    def original_failed(self, original_id: int, reason: str) -> None:
        """A refusal that retrying will not change: kept with its reason, never sent again by itself."""
        with self.transaction() as db:
            db.execute(
                "UPDATE originals SET state = ?, attempts = attempts + 1, failed_reason = ?, last_error = ?,"
                " upload_url = NULL, lease_pid = NULL, lease_until = NULL WHERE id = ?",
                (FAILED, reason, reason, original_id),
            )

    def _wake_originals(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE originals SET next_attempt_at = ? WHERE state = ?", (time.time(), PENDING))
