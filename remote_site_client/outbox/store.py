"""What the outbox's stores share: the delivery states, durable copies, one connection, leases."""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

PENDING = "pending"
CREATED = "created"
UPLOADED = "uploaded"
QUEUED = "queued"
FAILED = "failed"
DISCARDED = "discarded"  # given up on by the technician, with a reason (the outbox's audit keeps it)
OPEN_STATES = (PENDING, CREATED, UPLOADED)
DELIVERED = "delivered"  # a recording the server stored as media of its consultation
_COPY_CHUNK = 1024 * 1024


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


def pid_alive(pid: int) -> bool:
    """Whether the process holding a lease can still work on it. A zombie (killed, not yet reaped by
    its parent) cannot, though its pid still answers signals."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile, or no /proc: the signal's answer stands
        return False
    # The state follows the command name, which is in parentheses and may itself hold any character.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] == "Z"


class Store:
    """A store over the outbox's connection. Methods are short synchronous transactions."""

    def __init__(self, data_dir: Path, db: sqlite3.Connection) -> None:
        self.data_dir = data_dir
        self.files_dir = data_dir / "outbox"
        self.db = db

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

    # -- a side table's pending rows (recordings, originals): one key, oldest first ----------------

    def _rows_in(self, table: str, key: str, states: Sequence[str] | None) -> list[sqlite3.Row]:
        """Rows in these states (all with None), in key order."""
        if states is None:
            return list(self.db.execute(f"SELECT * FROM {table} ORDER BY {key}"))  # noqa: S608
        marks = ",".join("?" * len(states))
        query = f"SELECT * FROM {table} WHERE state IN ({marks}) ORDER BY {key}"  # noqa: S608
        return list(self.db.execute(query, tuple(states)))

    def _due(self, table: str, key: str, now: float | None) -> list[int]:
        """Pending rows whose next attempt is due, in key order."""
        when = time.time() if now is None else now
        rows = self.db.execute(
            f"SELECT {key} FROM {table} WHERE state = ? AND next_attempt_at <= ? ORDER BY {key}",  # noqa: S608
            (PENDING, when),
        )
        return [int(r[0]) for r in rows]

    def _next_due_at(self, table: str) -> float | None:
        row = self.db.execute(
            f"SELECT MIN(next_attempt_at) FROM {table} WHERE state = ?",  # noqa: S608
            (PENDING,),
        ).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    # -- leases: one process at a time works an entry or a recording -----------------------------

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
            if pid is not None and pid != me and until is not None and until > now and pid_alive(pid):
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
