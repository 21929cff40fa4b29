"""The local outbox: every submission, files included, is made durable here before any network call.

One SQLite database (WAL, synchronous=FULL) in the site's data folder, and one folder per fill holding
fsync'd copies of the photos. The sender works an entry through its delivery states:

    pending --create--> created --media uploaded--> uploaded --submit--> queued   (delivered)
        \\______________________ a refusal that will not change ______________> failed

An entry is delivered only when the server has confirmed the fill `queued`. Several processes may
open the outbox (the technician's `submit`, the `sync` service): an entry is worked by one process at
a time, under a lease that names the process, so a killed sender's entry is picked up at once.

A consultation's recording (mp4, recorded with consent) waits here the same way, as media of its
consultation: pending --uploaded over tus--> delivered, or failed when the server refuses it for good.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    fill_id TEXT PRIMARY KEY,
    prescription_id INTEGER NOT NULL,
    rx_number TEXT,
    body TEXT NOT NULL,
    state TEXT NOT NULL,
    fill_state TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL NOT NULL,
    last_error TEXT,
    failed_reason TEXT,
    created_at REAL NOT NULL,
    queued_at REAL,
    decided_at REAL,
    outcome TEXT,
    reason_codes TEXT,
    note TEXT,
    lease_pid INTEGER,
    lease_until REAL,
    pruned_at REAL
);
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    fill_id TEXT NOT NULL REFERENCES entries(fill_id),
    position INTEGER NOT NULL,
    kind TEXT NOT NULL,
    filename TEXT NOT NULL,
    original TEXT NOT NULL,
    original_sha256 TEXT NOT NULL,
    original_bytes INTEGER NOT NULL,
    prepared TEXT,
    sha256 TEXT,
    bytes INTEGER,
    upload_url TEXT,
    media_id INTEGER,
    UNIQUE (fill_id, position)
);
CREATE TABLE IF NOT EXISTS recordings (
    consultation_id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    created_at REAL NOT NULL,
    delivered_at REAL
    -- and the RECORDING_COLUMNS below, added when the outbox is opened
);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS prescriptions (
    id INTEGER PRIMARY KEY, data TEXT NOT NULL, fetched_at REAL NOT NULL
);
"""

# Columns the recordings table gained after it first shipped, added in place to an older outbox.
RECORDING_COLUMNS = {
    "next_attempt_at": "REAL NOT NULL DEFAULT 0",
    "failed_reason": "TEXT",
    "upload_url": "TEXT",
    "media_id": "INTEGER",
    "lease_pid": "INTEGER",
    "lease_until": "REAL",
}

PENDING = "pending"
CREATED = "created"
UPLOADED = "uploaded"
QUEUED = "queued"
FAILED = "failed"
OPEN_STATES = (PENDING, CREATED, UPLOADED)
DELIVERED = "delivered"  # a recording the server stored as media of its consultation
_COPY_CHUNK = 1024 * 1024
_INCOMING = ".incoming-"


@dataclass(frozen=True)
class OutboxFile:
    id: int
    fill_id: str
    position: int
    kind: str
    filename: str
    original: Path
    original_sha256: str
    original_bytes: int
    prepared: Path | None
    sha256: str | None
    bytes: int | None
    upload_url: str | None
    media_id: int | None


@dataclass(frozen=True)
class Entry:
    fill_id: str
    prescription_id: int
    rx_number: str | None
    body: dict[str, Any]
    state: str
    fill_state: str | None
    attempts: int
    next_attempt_at: float
    last_error: str | None
    failed_reason: str | None
    created_at: float
    queued_at: float | None
    decided_at: float | None
    outcome: str | None
    reason_codes: list[str]
    note: str | None
    pruned_at: float | None
    files: tuple[OutboxFile, ...] = ()

    @property
    def delivered(self) -> bool:
        return self.state == QUEUED


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


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def durable_copy(src: Path, dest: Path) -> tuple[str, int]:
    """Copies src to dest through a temporary name, fsyncs it, and returns (sha256, bytes)."""
    tmp = dest.with_name(dest.name + ".part")
    digest = hashlib.sha256()
    size = 0
    with src.open("rb") as fin, tmp.open("wb") as fout:
        while chunk := fin.read(_COPY_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    os.replace(tmp, dest)
    return digest.hexdigest(), size


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Outbox:
    """The outbox database and its file folder. Methods are short synchronous transactions."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.files_dir = data_dir / "outbox"
        self.files_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.db = sqlite3.connect(data_dir / "outbox.sqlite3", isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        with self.transaction():
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self.db.execute(statement)
            have = {row["name"] for row in self.db.execute("PRAGMA table_info(recordings)")}
            for name, ddl in RECORDING_COLUMNS.items():
                if name not in have:
                    self.db.execute(f"ALTER TABLE recordings ADD COLUMN {name} {ddl}")
        self._sweep_incoming()

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE) so two processes never deadlock."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def _sweep_incoming(self) -> None:
        """Removes folders of submissions that were killed before their entry was committed."""
        cutoff = time.time() - 3600
        for path in self.files_dir.glob(_INCOMING + "*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < cutoff:
                    shutil.rmtree(path)

    # -- adding ----------------------------------------------------------------------------------

    def add(
        self,
        body: dict[str, Any],
        files: Sequence[tuple[str, Path]],
        *,
        rx_number: str | None = None,
        now: float | None = None,
    ) -> str:
        """Stores a new submission: fsync'd copies of the files, then the entry, in that order."""
        fill_id = str(body.get("id") or uuid.uuid4())
        body = {**body, "id": fill_id}
        incoming = self.files_dir / f"{_INCOMING}{fill_id}"
        incoming.mkdir(mode=0o700)
        copied = []
        for position, (kind, src) in enumerate(files):
            suffix = src.suffix.lower()[:8] or ".bin"
            name = f"{position:02d}-{kind}-original{suffix}"
            sha, size = durable_copy(src, incoming / name)
            copied.append((position, kind, src.name[:200] or name, name, sha, size))
        fsync_dir(incoming)
        final = self.files_dir / fill_id
        os.replace(incoming, final)
        fsync_dir(self.files_dir)
        when = time.time() if now is None else now
        with self.transaction() as db:
            db.execute(
                "INSERT INTO entries (fill_id, prescription_id, rx_number, body, state, attempts,"
                " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                (fill_id, int(body["prescription_id"]), rx_number, json.dumps(body), PENDING, when, when),
            )
            for position, kind, filename, name, sha, size in copied:
                db.execute(
                    "INSERT INTO files (fill_id, position, kind, filename, original, original_sha256,"
                    " original_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (fill_id, position, kind, filename, f"outbox/{fill_id}/{name}", sha, size),
                )
        return fill_id

    # -- reading ---------------------------------------------------------------------------------

    def _file(self, row: sqlite3.Row) -> OutboxFile:
        return OutboxFile(
            id=row["id"],
            fill_id=row["fill_id"],
            position=row["position"],
            kind=row["kind"],
            filename=row["filename"],
            original=self.data_dir / row["original"],
            original_sha256=row["original_sha256"],
            original_bytes=row["original_bytes"],
            prepared=self.data_dir / row["prepared"] if row["prepared"] else None,
            sha256=row["sha256"],
            bytes=row["bytes"],
            upload_url=row["upload_url"],
            media_id=row["media_id"],
        )

    def _entry(self, row: sqlite3.Row, with_files: bool = True) -> Entry:
        files: tuple[OutboxFile, ...] = ()
        if with_files:
            files = tuple(
                self._file(f)
                for f in self.db.execute(
                    "SELECT * FROM files WHERE fill_id = ? ORDER BY position", (row["fill_id"],)
                )
            )
        return Entry(
            fill_id=row["fill_id"],
            prescription_id=row["prescription_id"],
            rx_number=row["rx_number"],
            body=json.loads(row["body"]),
            state=row["state"],
            fill_state=row["fill_state"],
            attempts=row["attempts"],
            next_attempt_at=row["next_attempt_at"],
            last_error=row["last_error"],
            failed_reason=row["failed_reason"],
            created_at=row["created_at"],
            queued_at=row["queued_at"],
            decided_at=row["decided_at"],
            outcome=row["outcome"],
            reason_codes=json.loads(row["reason_codes"]) if row["reason_codes"] else [],
            note=row["note"],
            pruned_at=row["pruned_at"],
            files=files,
        )

    def get(self, fill_id: str) -> Entry | None:
        row = self.db.execute("SELECT * FROM entries WHERE fill_id = ?", (fill_id,)).fetchone()
        return self._entry(row) if row else None

    def entries(self, states: Sequence[str] | None = None, limit: int = 200) -> list[Entry]:
        if states:
            marks = ",".join("?" for _ in states)
            rows = self.db.execute(
                f"SELECT * FROM entries WHERE state IN ({marks}) ORDER BY created_at DESC LIMIT ?",  # noqa: S608
                (*states, limit),
            ).fetchall()
        else:
            rows = self.db.execute(
                "SELECT * FROM entries ORDER BY created_at DESC LIMIT ?", (limit,)
            ).fetchall()
        return [self._entry(r) for r in rows]

    def due(self, now: float | None = None) -> list[str]:
        """Open entries whose next attempt is due, oldest first."""
        when = time.time() if now is None else now
        marks = ",".join("?" for _ in OPEN_STATES)
        return [
            r[0]
            for r in self.db.execute(
                f"SELECT fill_id FROM entries WHERE state IN ({marks}) AND next_attempt_at <= ?"  # noqa: S608
                " ORDER BY created_at",
                (*OPEN_STATES, when),
            )
        ]

    def next_due_at(self) -> float | None:
        marks = ",".join("?" for _ in OPEN_STATES)
        row = self.db.execute(
            f"SELECT MIN(next_attempt_at) FROM entries WHERE state IN ({marks})",  # noqa: S608
            OPEN_STATES,
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # -- the sender's lease ----------------------------------------------------------------------

    def _acquire(
        self, table: str, key: str, value: object, open_states: Sequence[str], seconds: float
    ) -> bool:
        now = time.time()
        me = os.getpid()
        with self.transaction() as db:
            row = db.execute(
                f"SELECT state, lease_pid, lease_until FROM {table} WHERE {key} = ?",  # noqa: S608
                (value,),
            ).fetchone()
            if row is None or row["state"] not in open_states:
                return False
            pid, until = row["lease_pid"], row["lease_until"]
            if pid is not None and pid != me and until is not None and until > now and _pid_alive(pid):
                return False
            db.execute(
                f"UPDATE {table} SET lease_pid = ?, lease_until = ? WHERE {key} = ?",  # noqa: S608
                (me, now + seconds, value),
            )
            return True

    def _renew(self, table: str, key: str, value: object, seconds: float) -> None:
        with self.transaction() as db:
            db.execute(
                f"UPDATE {table} SET lease_until = ? WHERE {key} = ? AND lease_pid = ?",  # noqa: S608
                (time.time() + seconds, value, os.getpid()),
            )

    def _release(self, table: str, key: str, value: object) -> None:
        with self.transaction() as db:
            db.execute(
                f"UPDATE {table} SET lease_pid = NULL, lease_until = NULL"  # noqa: S608
                f" WHERE {key} = ? AND lease_pid = ?",
                (value, os.getpid()),
            )

    def acquire(self, fill_id: str, seconds: float = 120.0) -> bool:
        """Takes the entry for this process unless another live process is working it."""
        return self._acquire("entries", "fill_id", fill_id, OPEN_STATES, seconds)

    def renew(self, fill_id: str, seconds: float = 120.0) -> None:
        self._renew("entries", "fill_id", fill_id, seconds)

    def release(self, fill_id: str) -> None:
        self._release("entries", "fill_id", fill_id)

    # -- progress of delivery --------------------------------------------------------------------

    def set_state(self, fill_id: str, state: str, *, fill_state: str | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE entries SET state = ?, fill_state = COALESCE(?, fill_state), last_error = NULL"
                " WHERE fill_id = ?",
                (state, fill_state, fill_id),
            )

    def mark_queued(self, fill_id: str, fill_state: str, *, now: float | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE entries SET state = ?, fill_state = ?, queued_at = COALESCE(queued_at, ?),"
                " last_error = NULL, lease_pid = NULL, lease_until = NULL WHERE fill_id = ?",
                (QUEUED, fill_state, time.time() if now is None else now, fill_id),
            )

    def mark_failed(self, fill_id: str, reason: str) -> None:
        """A refusal that retrying will not change: kept, shown by `outbox`, never sent again by itself."""
        with self.transaction() as db:
            db.execute(
                "UPDATE entries SET state = ?, failed_reason = ?, last_error = ?, lease_pid = NULL,"
                " lease_until = NULL WHERE fill_id = ?",
                (FAILED, reason, reason, fill_id),
            )

    def retry_later(self, fill_id: str, error: str, delay: float) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE entries SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,"
                " lease_pid = NULL, lease_until = NULL WHERE fill_id = ?",
                (error, time.time() + delay, fill_id),
            )

    def requeue(self, fill_id: str) -> bool:
        """Puts a failed entry back to be sent (after the technician fixed the cause)."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE entries SET state = ?, failed_reason = NULL, attempts = 0, next_attempt_at = ?"
                " WHERE fill_id = ? AND state = ?",
                (PENDING, time.time(), fill_id, FAILED),
            )
            return cur.rowcount == 1

    def wake_all(self) -> None:
        """Makes every open entry and pending recording due now (the link is back)."""
        marks = ",".join("?" for _ in OPEN_STATES)
        with self.transaction() as db:
            db.execute(
                f"UPDATE entries SET next_attempt_at = ? WHERE state IN ({marks})",  # noqa: S608
                (time.time(), *OPEN_STATES),
            )
            db.execute("UPDATE recordings SET next_attempt_at = ? WHERE state = ?", (time.time(), PENDING))

    # -- consultation recordings (mp4, recorded with consent): delivered as media of the consultation --

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
        if states is None:
            rows = self.db.execute("SELECT * FROM recordings ORDER BY consultation_id")
        else:
            marks = ",".join("?" * len(states))
            query = f"SELECT * FROM recordings WHERE state IN ({marks}) ORDER BY consultation_id"  # noqa: S608
            rows = self.db.execute(query, tuple(states))
        return [self._recording(r) for r in rows]

    def due_recordings(self, now: float | None = None) -> list[int]:
        """Pending recordings whose next attempt is due, oldest consultation first."""
        when = time.time() if now is None else now
        rows = self.db.execute(
            "SELECT consultation_id FROM recordings WHERE state = ? AND next_attempt_at <= ?"
            " ORDER BY consultation_id",
            (PENDING, when),
        )
        return [int(r[0]) for r in rows]

    def next_recording_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT MIN(next_attempt_at) FROM recordings WHERE state = ?", (PENDING,)
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

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

    def set_prepared(self, file_id: int, prepared: Path, sha256: str, size: int) -> None:
        rel = prepared.relative_to(self.data_dir).as_posix()
        with self.transaction() as db:
            db.execute(
                "UPDATE files SET prepared = ?, sha256 = ?, bytes = ?, upload_url = NULL WHERE id = ?",
                (rel, sha256, size, file_id),
            )

    def set_upload_url(self, file_id: int, url: str | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE files SET upload_url = ? WHERE id = ?", (url, file_id))

    def set_media_id(self, file_id: int, media_id: int | None) -> None:
        with self.transaction() as db:
            db.execute("UPDATE files SET media_id = ?, upload_url = NULL WHERE id = ?", (media_id, file_id))

    def forget_media(self, fill_id: str, kinds: Sequence[str]) -> None:
        """The server says these kinds are missing: upload them again."""
        marks = ",".join("?" for _ in kinds)
        sql = f"UPDATE files SET media_id = NULL, upload_url = NULL WHERE fill_id = ? AND kind IN ({marks})"  # noqa: S608
        with self.transaction() as db:
            db.execute(sql, (fill_id, *kinds))

    # -- decisions and pruning -------------------------------------------------------------------

    def record_decision(
        self,
        fill_id: str,
        fill_state: str,
        outcome: str | None,
        reason_codes: Sequence[str],
        note: str | None,
        *,
        now: float | None = None,
    ) -> bool:
        """Remembers the decision on a fill sent from here; False when the fill is not in this outbox."""
        with self.transaction() as db:
            cur = db.execute(
                "UPDATE entries SET fill_state = ?, outcome = ?, reason_codes = ?, note = ?,"
                " decided_at = COALESCE(decided_at, ?) WHERE fill_id = ?",
                (
                    fill_state,
                    outcome,
                    json.dumps(list(reason_codes)),
                    note,
                    time.time() if now is None else now,
                    fill_id,
                ),
            )
            return cur.rowcount == 1

    def set_fill_state(self, fill_id: str, fill_state: str) -> None:
        with self.transaction() as db:
            db.execute("UPDATE entries SET fill_state = ? WHERE fill_id = ?", (fill_state, fill_id))

    def prune(self, retention_days: float, *, now: float | None = None) -> list[str]:
        """Deletes upload copies of delivered fills, and originals of fills approved long enough ago."""
        when = time.time() if now is None else now
        for row in self.db.execute(
            "SELECT f.id, f.prepared, f.original FROM files f JOIN entries e ON e.fill_id = f.fill_id"
            " WHERE e.state = ? AND f.prepared IS NOT NULL AND f.prepared != f.original",
            (QUEUED,),
        ).fetchall():
            with contextlib.suppress(FileNotFoundError):
                (self.data_dir / row["prepared"]).unlink()
            with self.transaction() as db:
                db.execute("UPDATE files SET prepared = NULL WHERE id = ?", (row["id"],))
        cutoff = when - retention_days * 86400
        pruned = []
        for row in self.db.execute(
            "SELECT fill_id FROM entries WHERE state = ? AND outcome = 'approve' AND pruned_at IS NULL"
            " AND decided_at <= ?",
            (QUEUED, cutoff),
        ).fetchall():
            shutil.rmtree(self.files_dir / row["fill_id"], ignore_errors=True)
            with self.transaction() as db:
                db.execute("UPDATE entries SET pruned_at = ? WHERE fill_id = ?", (when, row["fill_id"]))
            pruned.append(row["fill_id"])
        return pruned

    # -- small state: websocket cursors and the prescription cache -------------------------------

    def cursor(self, name: str) -> int | None:
        row = self.db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    def set_cursor(self, name: str, value: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO cursors (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                (name, value),
            )

    def cache_prescriptions(self, prescriptions: Sequence[dict[str, Any]]) -> None:
        now = time.time()
        with self.transaction() as db:
            for rx in prescriptions:
                db.execute(
                    "INSERT INTO prescriptions (id, data, fetched_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET data = excluded.data, fetched_at = excluded.fetched_at",
                    (int(rx["id"]), json.dumps(rx), now),
                )

    def cached_prescriptions(self) -> list[dict[str, Any]]:
        return [
            dict(json.loads(r[0])) for r in self.db.execute("SELECT data FROM prescriptions ORDER BY id DESC")
        ]

    def cached_prescription(
        self, *, rx_id: int | None = None, rx_number: str | None = None
    ) -> dict[str, Any] | None:
        """A cached prescription by its id or by its Rx number."""
        if rx_id is not None:
            row = self.db.execute("SELECT data FROM prescriptions WHERE id = ?", (rx_id,)).fetchone()
            return dict(json.loads(row[0])) if row else None
        for (data,) in self.db.execute("SELECT data FROM prescriptions ORDER BY id DESC"):
            rx = json.loads(data)
            if rx_number is not None and str(rx.get("rx_number")) == rx_number:
                return dict(rx)
        return None
