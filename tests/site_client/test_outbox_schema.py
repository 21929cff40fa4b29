"""The outbox's schema is numbered: every file a shipped tp-site wrote opens, upgrades and keeps its rows."""

from __future__ import annotations

import getpass
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from remote_site_client.outbox import DISCARDED, PENDING, Outbox
from remote_site_client.outbox.schema import MIGRATIONS, VERSION, NewerOutbox
from tests.site_client.world import make_site

OLD_FILL = "0ddf111e-1234-4abc-8def-000000000042"

# The schema as tp-site wrote it before it was numbered (user_version 0), one shipped release each.
FILLS_AS_FIRST_SHIPPED = """
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
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS prescriptions (
    id INTEGER PRIMARY KEY, data TEXT NOT NULL, fetched_at REAL NOT NULL
);
"""
RECORDINGS_AS_FIRST_SHIPPED = """
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
);
"""
RESUMABLE_RECORDINGS = {
    "next_attempt_at": "REAL NOT NULL DEFAULT 0",
    "failed_reason": "TEXT",
    "upload_url": "TEXT",
    "media_id": "INTEGER",
    "lease_pid": "INTEGER",
    "lease_until": "REAL",
}


def unnumbered_outbox(data: Path, release: int) -> None:
    """An outbox as release 1, 2 or 3 wrote it, holding a fill, a cursor, a prescription, a recording."""
    data.mkdir()
    db = sqlite3.connect(data / "outbox.sqlite3")
    db.executescript(FILLS_AS_FIRST_SHIPPED)
    if release >= 2:
        db.executescript(RECORDINGS_AS_FIRST_SHIPPED)
    if release >= 3:
        for name, ddl in RESUMABLE_RECORDINGS.items():
            db.execute(f"ALTER TABLE recordings ADD COLUMN {name} {ddl}")
    db.execute(
        "INSERT INTO entries (fill_id, prescription_id, rx_number, body, state, next_attempt_at, created_at)"
        " VALUES ('f-1', 7, '100234', '{\"id\": \"f-1\", \"prescription_id\": 7}', 'pending', 1.0, 1.0)"
    )
    db.execute(
        "INSERT INTO files (fill_id, position, kind, filename, original, original_sha256, original_bytes)"
        " VALUES (?, 0, 'stock_bottle', 'bottle.jpg', ?, 'ab', 10)",
        ("f-1", "outbox/f-1/00-stock_bottle-original.jpg"),
    )
    db.execute("INSERT INTO cursors (name, value) VALUES ('sync', 41)")
    db.execute(
        "INSERT INTO prescriptions (id, data, fetched_at) VALUES (7, ?, 1.0)",
        ('{"id": 7, "rx_number": "100234"}',),
    )
    if release >= 2:
        db.execute(
            "INSERT INTO recordings (consultation_id, path, sha256, bytes, state, created_at)"
            " VALUES (3, '/x/3.mp4', 'cd', 20, 'pending', 1.0)"
        )
    db.commit()
    db.close()


def schema(path: Path) -> dict[str, list[Any]]:
    db = sqlite3.connect(path)
    try:
        tables = [
            r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        ]
        return {
            t: db.execute(f"PRAGMA table_info({t})").fetchall()
            + db.execute(f"PRAGMA index_list({t})").fetchall()
            for t in tables
        }
    finally:
        db.close()


def user_version(path: Path) -> int:
    db = sqlite3.connect(path)
    try:
        return int(db.execute("PRAGMA user_version").fetchone()[0])
    finally:
        db.close()


@pytest.fixture
def fresh_schema(tmp_path: Path) -> dict[str, list[Any]]:
    Outbox(tmp_path / "fresh").close()
    return schema(tmp_path / "fresh" / "outbox.sqlite3")


def test_a_new_outbox_is_made_by_the_migrations_and_numbered(tmp_path: Path) -> None:
    Outbox(tmp_path / "data").close()
    path = tmp_path / "data" / "outbox.sqlite3"
    assert user_version(path) == VERSION == len(MIGRATIONS)
    before = schema(path)
    Outbox(tmp_path / "data").close()  # opening again changes nothing
    assert schema(path) == before and user_version(path) == VERSION
    assert set(before) == {
        "entries", "files", "cursors", "prescriptions", "recordings", "audit", "fill_prescriptions",
        "originals",
    }  # fmt: skip


@pytest.mark.parametrize("release", [1, 2, 3])
def test_an_outbox_from_before_the_schema_was_numbered_upgrades_and_keeps_its_rows(
    tmp_path: Path, release: int, fresh_schema: dict[str, list[Any]]
) -> None:
    data = tmp_path / "data"
    unnumbered_outbox(data, release)
    with Outbox(data) as outbox:
        entry = outbox.get("f-1")
        assert entry is not None and entry.state == PENDING and entry.rx_number == "100234"
        assert [f.kind for f in entry.files] == ["stock_bottle"]
        assert outbox.cursor("sync") == 41
        assert outbox.cached_prescription(rx_number="100234") == {"id": 7, "rx_number": "100234"}
        recordings = outbox.recordings()
        if release >= 2:
            (rec,) = recordings
            assert rec.consultation_id == 3 and rec.upload_url is None and rec.media_id is None
            assert outbox.due_recordings() == [3]  # waiting since before: due now
        else:
            assert recordings == []
    path = data / "outbox.sqlite3"
    assert user_version(path) == VERSION
    assert schema(path) == fresh_schema


def test_a_numbered_outbox_takes_only_the_steps_after_its_version(
    tmp_path: Path, fresh_schema: dict[str, list[Any]]
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    db = sqlite3.connect(data / "outbox.sqlite3")
    for step in MIGRATIONS[:2]:
        db.executescript(step)
    db.execute("PRAGMA user_version = 2")
    db.close()
    Outbox(data).close()
    assert user_version(data / "outbox.sqlite3") == VERSION
    assert schema(data / "outbox.sqlite3") == fresh_schema


def test_an_outbox_from_before_resumable_recordings_keeps_its_recordings(tmp_path: Path) -> None:
    data = tmp_path / "data"
    unnumbered_outbox(data, release=2)
    with Outbox(data) as outbox:
        assert outbox.acquire_recording(3)
        outbox.set_recording_upload_url(3, "http://server/api/v1/uploads/abc")
        outbox.release_recording(3)
    with Outbox(data) as outbox:
        assert outbox.recordings()[0].upload_url == "http://server/api/v1/uploads/abc"


def test_an_outbox_from_a_newer_tp_site_is_refused_untouched(tmp_path: Path) -> None:
    Outbox(tmp_path / "data").close()
    path = tmp_path / "data" / "outbox.sqlite3"
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {VERSION + 1}")
    db.close()
    before = schema(path)
    with pytest.raises(NewerOutbox, match="newer tp-site"):
        Outbox(tmp_path / "data")
    assert schema(path) == before and user_version(path) == VERSION + 1


async def test_an_outbox_of_the_last_release_upgrades_and_its_refused_fill_is_shown_and_discarded(
    tmp_path: Path,
) -> None:
    """A site upgrades tp-site with a refused fill waiting: the file takes the new step, the fill is shown
    with what to do, and discarding it is recorded in the outbox's new audit."""
    site = make_site(tmp_path, "http://127.0.0.1:9", "t" * 43)  # nothing here talks to a server
    data = site.config.data_dir
    data.mkdir(parents=True)
    db = sqlite3.connect(data / "outbox.sqlite3")
    for step in MIGRATIONS[:3]:
        db.executescript(step)
    db.execute("PRAGMA user_version = 3")
    db.execute(
        "INSERT INTO entries (fill_id, prescription_id, rx_number, body, state, next_attempt_at, created_at,"
        " failed_reason) VALUES (?, 7, '100234', ?, 'failed', 1.0, 1.0, 'The pills photo cannot be opened.')",
        (OLD_FILL, json.dumps({"id": OLD_FILL, "prescription_id": 7})),
    )
    db.commit()
    db.close()

    code, out, err = await site.run("outbox")
    assert code == 0, out + err
    assert f"{OLD_FILL[:8]}  Rx 100234" in out and "REFUSED" in out
    assert "refused: The pills photo cannot be opened." in out
    assert f'tp-site outbox discard {OLD_FILL[:8]} --reason "WHY"' in out
    assert user_version(data / "outbox.sqlite3") == VERSION == 5

    code, out, err = await site.run("outbox", "discard", OLD_FILL[:8], "--reason", "retaken as a new fill")
    assert code == 0, out + err
    with Outbox(data) as outbox:
        (row,) = outbox.audit_log()
        entry = outbox.get(OLD_FILL)
    assert entry is not None and entry.state == DISCARDED
    assert (row.fill_id, row.action, row.reason) == (OLD_FILL, "discarded", "retaken as a new fill")
    assert row.actor == getpass.getuser() and row.detail["refused"] == "The pills photo cannot be opened."
