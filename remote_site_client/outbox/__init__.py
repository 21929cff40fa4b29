"""The local outbox: every submission, files included, is made durable here before any network call.

One SQLite database (WAL, synchronous=FULL) in the site's data folder, and one folder per fill holding
fsync'd copies of the photos. The sender works an entry through its delivery states:

    pending --create--> created --media uploaded--> uploaded --submit--> queued   (delivered)
        \\______________________ a refusal that will not change ______________> failed
    failed --fixed by the technician--> pending (the same fill, or a new one replacing it)
    failed or not yet delivered --discarded with a reason--> discarded (audited)

An entry is delivered only when the server has confirmed the fill `queued`. Several processes may
open the outbox (the technician's `submit`, the `sync` service): an entry is worked by one process at
a time, under a lease that names the process, so a killed sender's entry is picked up at once.

A consultation's recording (mp4, recorded with consent) waits here the same way, as media of its
consultation: pending --uploaded over tus--> delivered, or failed when the server refuses it for good;
so does the original of a paper prescription (a photo, a fax's TIFF, a PDF), as media of its prescription.

Four stores share the database, one module each: the fills (fills.py), the recordings
(recordings.py), the originals of paper prescriptions (originals.py) and the small state kept between
runs (local_state.py); fixes and discards are
recorded in the outbox's own audit (audit.py). The schema is numbered and
upgraded in place when the outbox opens (schema.py).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from remote_site_client.outbox.audit import AuditRow
from remote_site_client.outbox.fills import Entry, FillStore, NotFixable, OutboxFile, short_id
from remote_site_client.outbox.local_state import LocalState
from remote_site_client.outbox.originals import Original, OriginalStore
from remote_site_client.outbox.recordings import Recording, RecordingStore
from remote_site_client.outbox.schema import migrate
from remote_site_client.outbox.store import (
    CREATED,
    DELIVERED,
    DISCARDED,
    FAILED,
    OPEN_STATES,
    PENDING,
    QUEUED,
    UPLOADED,
)

__all__ = [
    "CREATED",
    "DELIVERED",
    "DISCARDED",
    "FAILED",
    "OPEN_STATES",
    "PENDING",
    "QUEUED",
    "UPLOADED",
    "AuditRow",
    "Entry",
    "NotFixable",
    "Original",
    "Outbox",
    "OutboxFile",
    "Recording",
    "short_id",
]


class Outbox(FillStore, RecordingStore, OriginalStore, LocalState):
    """The outbox database and its file folder: the four stores over one connection."""

    def __init__(self, data_dir: Path) -> None:
        (data_dir / "outbox").mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(data_dir / "outbox.sqlite3", isolation_level=None, timeout=30)
        super().__init__(data_dir, db)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=ON")
        try:
            with self.transaction():
                migrate(self.db)
        except BaseException:
            self.db.close()
            raise
        self._sweep_incoming()

    def data_version(self) -> int:
        """A number that changes when another process commits to the outbox (not on this one's commits)."""
        return int(self.db.execute("PRAGMA data_version").fetchone()[0])

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def wake_all(self) -> None:
        """Makes every open entry and pending recording due now (the link is back)."""
        with self.transaction() as db:
            self._wake_entries(db)
            self._wake_recordings(db)
            self._wake_originals(db)
