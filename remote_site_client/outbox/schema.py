"""The outbox's SQLite schema, numbered by `PRAGMA user_version` and brought up to date when opened.

MIGRATIONS[n] takes a file from version n to n + 1: a shipped step never changes, a new one is
appended. A file from before the schema was numbered (user_version 0 with tables in it) is placed
by the tables it holds, then upgraded like any other.
"""

from __future__ import annotations

import sqlite3

from remote_site_client.config import ConfigError

MIGRATIONS: tuple[str, ...] = (
    # 1: fills and their files, the websocket cursors, the prescription cache.
    """
    CREATE TABLE entries (
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
    CREATE TABLE files (
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
    CREATE TABLE cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
    CREATE TABLE prescriptions (
        id INTEGER PRIMARY KEY, data TEXT NOT NULL, fetched_at REAL NOT NULL
    );
    """,
    # 2: consultation recordings.
    """
    CREATE TABLE recordings (
        consultation_id INTEGER PRIMARY KEY,
        path TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        created_at REAL NOT NULL,
        delivered_at REAL
    );
    """,
    # 3: recordings retried, resumed over tus and leased as fills are.
    """
    ALTER TABLE recordings ADD COLUMN next_attempt_at REAL NOT NULL DEFAULT 0;
    ALTER TABLE recordings ADD COLUMN failed_reason TEXT;
    ALTER TABLE recordings ADD COLUMN upload_url TEXT;
    ALTER TABLE recordings ADD COLUMN media_id INTEGER;
    ALTER TABLE recordings ADD COLUMN lease_pid INTEGER;
    ALTER TABLE recordings ADD COLUMN lease_until REAL;
    """,
    # 4: a refusal says what to fix (its code and detail); fixes and discards are audited here; the
    # prescription of a fill sent from elsewhere is remembered once looked up.
    """
    ALTER TABLE entries ADD COLUMN failed_code TEXT;
    ALTER TABLE entries ADD COLUMN failed_detail TEXT;
    ALTER TABLE entries ADD COLUMN failed_at REAL;
    ALTER TABLE entries ADD COLUMN replaced_by TEXT;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at REAL NOT NULL,
        fill_id TEXT NOT NULL,
        action TEXT NOT NULL,
        actor TEXT NOT NULL,
        reason TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    CREATE INDEX audit_fill ON audit (fill_id);
    CREATE TABLE fill_prescriptions (fill_id TEXT PRIMARY KEY, prescription_id INTEGER NOT NULL);
    """,
    # 5: the originals of paper prescriptions (a photo, a fax's TIFF, a PDF), delivered over tus.
    """
    CREATE TABLE originals (
        id INTEGER PRIMARY KEY,
        prescription_id INTEGER NOT NULL,
        path TEXT NOT NULL,
        filename TEXT NOT NULL,
        sha256 TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL NOT NULL,
        last_error TEXT,
        failed_reason TEXT,
        upload_url TEXT,
        media_id INTEGER,
        pages INTEGER,
        created_at REAL NOT NULL,
        delivered_at REAL,
        lease_pid INTEGER,
        lease_until REAL,
        UNIQUE (prescription_id, sha256)
    );
    """,
)
VERSION = len(MIGRATIONS)


class NewerOutbox(ConfigError):
    """The outbox was written by a newer tp-site than this one."""


def migrate(db: sqlite3.Connection) -> None:
    """Brings the schema to VERSION; run inside the transaction that opens the outbox."""
    numbered = int(db.execute("PRAGMA user_version").fetchone()[0])
    version = numbered or _unnumbered_version(db)
    if version > VERSION:
        raise NewerOutbox(
            f"This outbox has schema {version}, from a newer tp-site; this one knows up to {VERSION}. "
            "Install the newer tp-site again."
        )
    for step in MIGRATIONS[version:]:
        for statement in step.split(";"):
            if statement.strip():
                db.execute(statement)
    if numbered != VERSION:
        db.execute(f"PRAGMA user_version = {VERSION}")


def _unnumbered_version(db: sqlite3.Connection) -> int:
    """The version of a file written before the schema was numbered (0 for a new file)."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "entries" not in tables:
        return 0
    if "recordings" not in tables:
        return 1
    columns = {row[1] for row in db.execute("PRAGMA table_info(recordings)")}
    return 3 if "next_attempt_at" in columns else 2
