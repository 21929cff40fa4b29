"""Consultation recordings (mp4, recorded with consent), waiting to be delivered as media of their call."""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from remote_site_client.outbox.store import DELIVERED, FAILED, PENDING, Store, durable_copy, fsync_dir


@dataclass(frozen=True)
class Recording:
    """A consultation's recording waiting in the outbox (or delivered, or refused)."""

    consultation_id: int
    path: Path
    sha256: str
    bytes: int
    state: str
    attempts: int
    next_attempt_at: float
    last_error: str | None
    failed_reason: str | None
    upload_url: str | None
    media_id: int | None
    created_at: float
    delivered_at: float | None


class RecordingStore(Store):
    """Recordings: pending --uploaded over tus--> delivered, or failed when the server refuses for good."""

    def add_recording(self, consultation_id: int, src: Path) -> Recording:
        """An fsync'd copy of a call's recording, then its entry, due now."""
        folder = self.files_dir / "recordings"
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        dest = folder / f"{consultation_id}.mp4"
        sha, size = durable_copy(src, dest)
        fsync_dir(folder)
        now = time.time()
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO recordings (consultation_id, path, sha256, bytes, state,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (consultation_id, str(dest), sha, size, PENDING, now, now),
            )
        found = self.recording(consultation_id)
        assert found is not None
        return found

    @staticmethod
    def _recording(row: sqlite3.Row) -> Recording:
        return Recording(
            consultation_id=row["consultation_id"],
            path=Path(row["path"]),
            sha256=row["sha256"],
            bytes=row["bytes"],
            state=row["state"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            failed_reason=row["failed_reason"],
            upload_url=row["upload_url"],
            media_id=row["media_id"],
            created_at=row["created_at"],
            delivered_at=row["delivered_at"],
        )

    def recording(self, consultation_id: int) -> Recording | None:
        row = self.db.execute(
            "SELECT * FROM recordings WHERE consultation_id = ?", (consultation_id,)
        ).fetchone()
        return self._recording(row) if row else None

    def recordings(self, states: Sequence[str] | None = (PENDING,)) -> list[Recording]:
        """Recordings in these states (all with None), oldest consultation first."""
        return [self._recording(r) for r in self._rows_in("recordings", "consultation_id", states)]

    def due_recordings(self, now: float | None = None) -> list[int]:
        """Pending recordings whose next attempt is due, oldest consultation first."""
        return self._due("recordings", "consultation_id", now)

    def next_recording_due_at(self) -> float | None:
        return self._next_due_at("recordings")

    def acquire_recording(self, consultation_id: int, seconds: float = 120.0) -> bool:
        """Takes a pending recording for this process unless another live process is uploading it."""
        return self._acquire("recordings", "consultation_id", consultation_id, (PENDING,), seconds)

    def renew_recording(self, consultation_id: int, seconds: float = 120.0) -> None:
        self._renew("recordings", "consultation_id", consultation_id, seconds)

    def release_recording(self, consultation_id: int) -> None:
        self._release("recordings", "consultation_id", consultation_id)

    def set_recording_upload_url(self, consultation_id: int, url: str | None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE recordings SET upload_url = ? WHERE consultation_id = ?", (url, consultation_id)
            )

    def recording_delivered(self, consultation_id: int, media_id: int) -> None:
        """The server stored it as media of the consultation: the outbox's copy goes."""
        with self.transaction() as db:
            db.execute(
                "UPDATE recordings SET state = ?, media_id = ?, upload_url = NULL, last_error = NULL,"
                " delivered_at = ?, lease_pid = NULL, lease_until = NULL WHERE consultation_id = ?",
                (DELIVERED, media_id, time.time(), consultation_id),
            )
        with contextlib.suppress(FileNotFoundError):
            (self.files_dir / "recordings" / f"{consultation_id}.mp4").unlink()

    def recording_retry_later(self, consultation_id: int, error: str, delay: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE recordings SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                " lease_pid = NULL, lease_until = NULL WHERE consultation_id = ?",
                (error, time.time() + delay, consultation_id),
            )

    def recording_failed(self, consultation_id: int, reason: str) -> None:
        """A refusal that retrying will not change: kept with its reason, never sent again by itself."""
        with self.transaction() as db:
            db.execute(
                "UPDATE recordings SET state = ?, attempts = attempts + 1, failed_reason = ?, last_error = ?,"
                " upload_url = NULL, lease_pid = NULL, lease_until = NULL WHERE consultation_id = ?",
                (FAILED, reason, reason, consultation_id),
            )

    def requeue_recording(self, consultation_id: int) -> bool:
        """Puts a refused recording back to be sent (after the cause was fixed)."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE recordings SET state = ?, failed_reason = NULL, attempts = 0, next_attempt_at = ?"
                " WHERE consultation_id = ? AND state = ?",
                (PENDING, time.time(), consultation_id, FAILED),
            )
            return cur.rowcount == 1

    def _wake_recordings(self, db: sqlite3.Connection) -> None:
        db.execute("UPDATE recordings SET next_attempt_at = ? WHERE state = ?", (time.time(), PENDING))
