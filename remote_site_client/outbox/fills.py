"""Fills waiting to be delivered: one entry per submission and the files it carries."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from remote_site_client.outbox.audit import AuditTrail
from remote_site_client.outbox.store import (
    DISCARDED,
    FAILED,
    OPEN_STATES,
    PENDING,
    QUEUED,
    durable_copy,
    fsync_dir,
    pid_alive,
)

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
    failed_code: str | None = None
    failed_detail: dict[str, Any] = field(default_factory=dict)
    failed_at: float | None = None
    replaced_by: str | None = None

    @property
    def delivered(self) -> bool:
        return self.state == QUEUED

    @property
    def short_id(self) -> str:
        return short_id(self.fill_id)

    def kinds(self) -> list[str]:
        return [f.kind for f in self.files]


def short_id(fill_id: str) -> str:
    """The first 8 hex characters of a fill's id: what the console shows and people read aloud."""
    return fill_id.replace("-", "")[:8]


class NotFixable(Exception):
    """The entry is not in a state this change applies to; the message says why."""


class FillStore(AuditTrail):
    """The entries and their files: added durably, worked through the delivery states, pruned."""

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
            failed_code=row["failed_code"],
            failed_detail=json.loads(row["failed_detail"]) if row["failed_detail"] else {},
            failed_at=row["failed_at"],
            replaced_by=row["replaced_by"],
        )

    def get(self, fill_id: str) -> Entry | None:
        row = self.db.execute("SELECT * FROM entries WHERE fill_id = ?", (fill_id,)).fetchone()
        return self._entry(row) if row else None

    def find(self, prefix: str) -> list[Entry]:
        """The entries whose id starts with `prefix` (a short id, or the whole id), newest first."""
        digits = prefix.lower().replace("-", "")
        rows = self.db.execute(
            "SELECT * FROM entries WHERE replace(fill_id, '-', '') LIKE ? ORDER BY created_at DESC",
            (digits + "%",),
        ).fetchall()
        return [self._entry(r, with_files=False) for r in rows]

    def resubmission_of(self, fill_id: str) -> Entry | None:
        """The entry, not discarded, that resubmits the rejected fill `fill_id` (newest first)."""
        row = self.db.execute(
            "SELECT * FROM entries WHERE json_extract(body, '$.previous_fill_id') = ? AND state != ?"
            " ORDER BY created_at DESC LIMIT 1",
            (fill_id, DISCARDED),
        ).fetchone()
        return self._entry(row, with_files=False) if row else None

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

    def acquire(self, fill_id: str, seconds: float = 120.0) -> bool:
        """Takes the entry for this process unless another live process is working it."""
        return self._acquire("entries", "fill_id", fill_id, OPEN_STATES, seconds)

    def renew(self, fill_id: str, seconds: float = 120.0) -> None:
        self._renew("entries", "fill_id", fill_id, seconds)

    def release(self, fill_id: str) -> None:
        self._release("entries", "fill_id", fill_id)

    # -- progress of delivery --------------------------------------------------------------------

    def set_state(
        self, fill_id: str, state: str, *, fill_state: str | None = None, rx_number: str | None = None
    ) -> None:
        """`rx_number`: the server's, for a fill stored before this computer knew its prescription."""
        with self.transaction() as db:
            db.execute(
                "UPDATE entries SET state = ?, fill_state = COALESCE(?, fill_state), last_error = NULL,"
                " rx_number = COALESCE(rx_number, ?) WHERE fill_id = ?",
                (state, fill_state, rx_number, fill_id),
            )

    def mark_queued(self, fill_id: str, fill_state: str, *, now: float | None = None) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE entries SET state = ?, fill_state = ?, queued_at = COALESCE(queued_at, ?),"
                " last_error = NULL, lease_pid = NULL, lease_until = NULL WHERE fill_id = ?",
                (QUEUED, fill_state, time.time() if now is None else now, fill_id),
            )

    def mark_failed(
        self, fill_id: str, reason: str, *, code: str = "", detail: dict[str, Any] | None = None
    ) -> None:
        """A refusal that retrying will not change: kept, shown by `outbox` with its reason (and, in
        `code` and `detail`, what to fix), never sent again until fixed or retried by hand."""
        with self.transaction() as db:
            db.execute(
                "UPDATE entries SET state = ?, failed_reason = ?, last_error = ?, failed_code = ?,"
                " failed_detail = ?, failed_at = ?, lease_pid = NULL, lease_until = NULL WHERE fill_id = ?",
                (FAILED, reason, reason, code or None, json.dumps(detail or {}), time.time(), fill_id),
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
                "UPDATE entries SET state = ?, failed_reason = NULL, failed_code = NULL,"
                " failed_detail = NULL, failed_at = NULL, attempts = 0, next_attempt_at = ?"
                " WHERE fill_id = ? AND state = ?",
                (PENDING, time.time(), fill_id, FAILED),
            )
            return cur.rowcount == 1

    def _wake_entries(self, db: sqlite3.Connection) -> None:
        marks = ",".join("?" for _ in OPEN_STATES)
        db.execute(
            f"UPDATE entries SET next_attempt_at = ? WHERE state IN ({marks})",  # noqa: S608
            (time.time(), *OPEN_STATES),
        )

    # -- the files' upload ---------------------------------------------------------------------

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

    # -- fixing and discarding what the server refused -------------------------------------------

    def _check_not_worked(self, db: sqlite3.Connection, fill_id: str) -> sqlite3.Row:
        row: sqlite3.Row | None = db.execute("SELECT * FROM entries WHERE fill_id = ?", (fill_id,)).fetchone()
        if row is None:
            raise NotFixable(f"Fill {short_id(fill_id)} is not in this outbox.")
        pid, until = row["lease_pid"], row["lease_until"]
        leased = pid is not None and pid != os.getpid() and until is not None and until > time.time()
        if leased and pid_alive(pid):
            raise NotFixable(
                f"Fill {short_id(fill_id)} is being sent right now (process {pid}): wait for it to stop."
            )
        return row

    def fix(
        self,
        fill_id: str,
        *,
        photos: Sequence[tuple[str, Path]],
        body: dict[str, Any],
        rekey: bool,
        rx_number: str | None,
        actor: str,
        reason: str,
        now: float | None = None,
    ) -> str:
        """Changes a refused entry in place and puts it back to be sent; returns its fill id.

        Each photo in `photos` replaces the entry's photo of that kind (all of its "other" photos when
        one is given), or adds it. With `rekey` the fixed fill gets a new id: the server may hold a draft
        under the old one that the changed fill no longer matches. The old entry is then kept, as
        discarded and replaced by the new one. Either way the change is audited.
        """
        entry = self.get(fill_id)
        if entry is None:
            raise NotFixable(f"Fill {short_id(fill_id)} is not in this outbox.")
        if entry.state != FAILED:
            raise NotFixable(
                f"Fill {entry.short_id} was not refused (it is {entry.state}): only a refused fill is fixed."
            )
        new_kinds = {kind for kind, _ in photos}
        dropped = [f for f in entry.files if f.kind in new_kinds]
        new_id = str(uuid.uuid4()) if rekey else fill_id
        added = self._stage_fix(entry, new_id, photos, rekey)
        when = time.time() if now is None else now
        detail: dict[str, Any] = {
            "refused": entry.failed_reason,
            "photos": sorted(new_kinds),
            "counted_quantity": body.get("counted_quantity"),
        }
        with self.transaction() as db:
            self._check_not_worked(db, fill_id)
            if rekey:
                detail["replaced_by"] = new_id
                db.execute(
                    "INSERT INTO entries (fill_id, prescription_id, rx_number, body, state, attempts,"
                    " next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                    (new_id, int(body["prescription_id"]), rx_number,
                     json.dumps({**body, "id": new_id}), PENDING, when, when),
                )  # fmt: skip
                db.execute("DELETE FROM files WHERE fill_id = ?", (fill_id,))
                db.execute(
                    "UPDATE entries SET state = ?, replaced_by = ? WHERE fill_id = ?",
                    (DISCARDED, new_id, fill_id),
                )
            else:
                db.executemany("DELETE FROM files WHERE id = ?", [(f.id,) for f in dropped])
                db.execute(
                    "UPDATE entries SET body = ?, prescription_id = ?, rx_number = ?, state = ?,"
                    " failed_reason = NULL, failed_code = NULL, failed_detail = NULL, failed_at = NULL,"
                    " last_error = NULL, attempts = 0, next_attempt_at = ? WHERE fill_id = ?",
                    (json.dumps(body), int(body["prescription_id"]), rx_number, PENDING, when, fill_id),
                )
            db.executemany(
                "INSERT INTO files (fill_id, position, kind, filename, original, original_sha256,"
                " original_bytes) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(new_id, pos, kind, filename, f"outbox/{new_id}/{name}", sha, size)
                 for pos, kind, filename, name, sha, size in added],
            )  # fmt: skip
            self._audit(db, fill_id, "fixed", actor, reason, detail, now=when)
        # Committed: what the fixed entry no longer names goes (upload copies too).
        if rekey:
            shutil.rmtree(self.files_dir / fill_id, ignore_errors=True)
        for f in dropped if not rekey else ():
            for path in (f.original, f.prepared):
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
        return new_id

    def _stage_fix(
        self, entry: Entry, new_id: str, photos: Sequence[tuple[str, Path]], rekey: bool
    ) -> list[tuple[int, str, str, str, str, int]]:
        """Makes the fixed entry's files durable in its folder before any row names them; returns the
        rows to add: (position, kind, filename, name, sha256, bytes). A new id takes every kept file
        along (a hard link: the old folder goes once the change is committed)."""
        new_kinds = {kind for kind, _ in photos}
        kept = [f for f in entry.files if f.kind not in new_kinds]
        tag = uuid.uuid4().hex[:6]
        staging = self.files_dir / f"{_INCOMING}{new_id}-{tag}"
        staging.mkdir(mode=0o700)
        added: list[tuple[int, str, str, str, str, int]] = []
        try:
            if rekey:
                for position, f in enumerate(kept):
                    name = f"{position:02d}-{f.kind}-original{f.original.suffix.lower()[:8] or '.bin'}"
                    os.link(f.original, staging / name)
                    added.append((position, f.kind, f.filename, name, f.original_sha256, f.original_bytes))
                start = len(kept)
            else:
                start = max((f.position for f in kept), default=-1) + 1
            for offset, (kind, src) in enumerate(photos):
                position = start + offset
                name = f"{position:02d}-{kind}-{tag}-original{src.suffix.lower()[:8] or '.bin'}"
                sha, size = durable_copy(src, staging / name)
                added.append((position, kind, src.name[:200] or name, name, sha, size))
            fsync_dir(staging)
            target = self.files_dir / new_id
            if rekey:
                os.replace(staging, target)
            else:
                target.mkdir(mode=0o700, exist_ok=True)
                for name in os.listdir(staging):
                    os.replace(staging / name, target / name)
                fsync_dir(target)
                staging.rmdir()
            fsync_dir(self.files_dir)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return added

    def discard(self, fill_id: str, *, actor: str, reason: str, now: float | None = None) -> Entry:
        """Gives up on an entry the server has not taken (refused, or still waiting): never sent, its
        photos deleted from this computer, and who did it, when and why kept in the audit."""
        entry = self.get(fill_id)
        if entry is None:
            raise NotFixable(f"Fill {short_id(fill_id)} is not in this outbox.")
        if entry.state not in (FAILED, *OPEN_STATES):
            raise NotFixable(
                f"Fill {entry.short_id} is {entry.state}: only a fill not yet delivered can be discarded."
            )
        detail = {
            "state": entry.state,
            "refused": entry.failed_reason,
            "rx_number": entry.rx_number,
            "photos": entry.kinds(),
        }
        with self.transaction() as db:
            row = self._check_not_worked(db, fill_id)
            if row["state"] != entry.state:
                raise NotFixable(f"Fill {entry.short_id} changed meanwhile ({row['state']}); look again.")
            db.execute("DELETE FROM files WHERE fill_id = ?", (fill_id,))
            db.execute(
                "UPDATE entries SET state = ?, lease_pid = NULL, lease_until = NULL WHERE fill_id = ?",
                (DISCARDED, fill_id),
            )
            self._audit(db, fill_id, "discarded", actor, reason, detail, now=now)
        shutil.rmtree(self.files_dir / fill_id, ignore_errors=True)
        return entry

    # -- the prescription of a fill (sent from here, or looked up once) ------------------------

    def prescription_of(self, fill_id: str) -> int | None:
        row = self.db.execute(
            "SELECT prescription_id FROM entries WHERE fill_id = ?"
            " UNION ALL SELECT prescription_id FROM fill_prescriptions WHERE fill_id = ?",
            (fill_id, fill_id),
        ).fetchone()
        return int(row[0]) if row else None

    def remember_prescription_of(self, fill_id: str, prescription_id: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO fill_prescriptions (fill_id, prescription_id) VALUES (?, ?)",
                (fill_id, prescription_id),
            )
