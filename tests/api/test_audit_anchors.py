"""The audit chain's head anchored outside the database: deleting the newest rows, or rewriting the
whole chain so that it verifies again, is caught; so is a forged anchor."""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from server.app import Anchoring
from server.audit import chain
from server.audit.anchors import AnchorFile, anchor_head, check, head
from server.db.models import AuditEvent, utcnow
from tests.api.world import World, rx_body, until_serving

ROOT = Path(__file__).resolve().parents[2]


async def _some_history(world: World, n: int = 3, *, first: int = 0) -> None:
    tech = await world.device("tech_nd1")
    for i in range(first, first + n):
        await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(f"RXA{i}"))


async def _rewrite_from(world: World, row_id: int) -> None:
    """What someone holding the database would do: change a row and recompute every hash after it, so
    that the chain verifies again."""
    async with world.services.db.write() as s:
        rows = (
            await s.execute(select(AuditEvent).where(AuditEvent.id >= row_id).order_by(AuditEvent.id))
        ).scalars()
        prev = None
        for row in rows:
            if prev is None:
                row.detail = {**row.detail, "rx_number": "FORGED"}
            else:
                row.prev_hash = prev
            row.hash = chain.row_hash(row)
            prev = row.hash


async def test_the_newest_rows_deleted_are_caught_by_the_anchor(world: World, tmp_path: Path) -> None:
    anchors = AnchorFile(tmp_path / "anchored")
    await _some_history(world)
    written = await anchor_head(world.services.db, anchors, utcnow())
    assert written is not None
    # Nothing new: no second anchor of the same head.
    assert await anchor_head(world.services.db, anchors, utcnow()) is None
    assert (await check(world.services.db, anchors)).ok

    async with world.services.db.write() as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.id >= written.id - 1))
    assert (await chain.verify(world.services.db)).ok  # the chain alone cannot tell
    report = await check(world.services.db, anchors)
    # Past the chain's end: deleted, or a database restored from a copy older than the anchors.
    assert report.problem == (
        f"row {written.id}, anchored at {written.at.isoformat(timespec='seconds')}, is gone: the chain ends"
        f" at row {written.id - 2}, so rows after it were deleted, or the database was restored from a"
        " copy made before this anchor was written"
    )
    assert not report.ok


async def test_an_anchored_row_deleted_before_the_chain_s_end_is_said_deleted(
    world: World, tmp_path: Path
) -> None:
    """A hole no restore leaves: the row is missing and later rows are there."""
    anchors = AnchorFile(tmp_path / "anchored")
    await _some_history(world)
    written = await anchor_head(world.services.db, anchors, utcnow())
    assert written is not None
    await _some_history(world, first=3)
    async with world.services.db.write() as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.id == written.id))
    report = await check(world.services.db, anchors)
    assert not report.ok and report.problem == (
        f"row {written.id}, anchored at {written.at.isoformat(timespec='seconds')}, is gone:"
        " rows were deleted"
    )


async def test_a_rewritten_chain_is_caught_by_the_anchor(world: World, tmp_path: Path) -> None:
    anchors = AnchorFile(tmp_path / "anchored")
    await _some_history(world)
    written = await anchor_head(world.services.db, anchors, utcnow())
    assert written is not None
    await _rewrite_from(world, 2)
    assert (await chain.verify(world.services.db)).ok
    report = await check(world.services.db, anchors)
    assert not report.ok and "rewritten" in (report.problem or "")


async def test_a_forged_anchor_is_refused(world: World, tmp_path: Path) -> None:
    anchors = AnchorFile(tmp_path / "anchored")
    await _some_history(world)
    await anchor_head(world.services.db, anchors, utcnow())
    # The forger rewrites the chain and the anchor line to match, without the key.
    await _rewrite_from(world, 2)
    async with world.services.db.read() as s:
        last = (await s.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1))).scalar_one()
    line = json.loads(anchors.path.read_text().splitlines()[-1])
    anchors.path.write_text(json.dumps({**line, "id": last.id, "hash": last.hash}) + "\n")
    report = await check(world.services.db, anchors)
    assert not report.ok and "not signed" in (report.problem or "")


async def test_a_disk_that_fills_up_while_the_key_is_made_leaves_no_partial_key(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first anchor makes the signing key; a full disk then leaves no key file for the next anchor
    to trip over (it would be read as a key, and no anchor could ever be written again)."""
    anchors = AnchorFile(tmp_path / "anchored")
    await _some_history(world)

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError):
        await anchor_head(world.services.db, anchors, utcnow())
    assert sorted(p.name for p in anchors.folder.iterdir()) == []

    monkeypatch.undo()
    assert await anchor_head(world.services.db, anchors, utcnow()) is not None
    assert sorted(p.name for p in anchors.folder.iterdir()) == [
        "anchor-key.pem",
        "anchor-key.pub.pem",
        "anchors.jsonl",
    ]
    assert (await check(world.services.db, anchors)).ok


async def test_a_key_cut_short_by_an_earlier_version_is_made_again(world: World, tmp_path: Path) -> None:
    """An empty key file (a write cut short before keys were written whole) never signed anything: the
    next anchor makes a key in its place. A public half that is missing is written again from the key."""
    anchors = AnchorFile(tmp_path / "anchored")
    anchors.folder.mkdir(parents=True)
    (anchors.folder / "anchor-key.pem").write_bytes(b"")
    await _some_history(world)
    assert await anchor_head(world.services.db, anchors, utcnow()) is not None
    assert (await check(world.services.db, anchors)).ok

    (anchors.folder / "anchor-key.pub.pem").unlink()
    await _some_history(world, first=3)
    assert await anchor_head(world.services.db, anchors, utcnow()) is not None
    report = await check(world.services.db, anchors)
    assert report.ok and report.anchors == 2


async def test_a_full_disk_stops_the_anchors_and_is_said_once_in_one_line(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The anchors' folder is full at start, on the hour and at shutdown: one line naming the path and
    the errno, not a traceback each time; once there is room, the next anchor covers every row."""
    caplog.set_level(logging.INFO, logger="server.app")
    anchoring = Anchoring(world.services, AnchorFile(world.services.config.data_dir))
    write = anchoring.anchors.write

    def full(row_id: int, row_hash: str, at: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(anchoring.anchors.path))

    monkeypatch.setattr(anchoring.anchors, "write", full)
    await _some_history(world)
    for _ in range(3):
        await anchoring.now()
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage() for r in failures] == [
        "anchoring the audit chain's head failed: the data path failed to write: no space left "
        "(errno 28); the next anchor covers the rows added meanwhile"
    ]
    assert failures[0].exc_info is None and "Traceback" not in caplog.text
    assert anchoring.anchors.read() == []

    monkeypatch.setattr(anchoring.anchors, "write", write)
    await anchoring.now()
    assert "anchoring the audit chain's head works again" in caplog.text
    (anchor,) = anchoring.anchors.read()
    assert (anchor.id, anchor.hash) == await head(world.services.db)
    assert (await check(world.services.db, anchoring.anchors)).ok


async def test_the_server_anchors_its_head_and_the_admin_sees_it_verified(world: World) -> None:
    await _some_history(world)
    admin = await world.login("admin")
    # The server anchors on start, on its interval, and when it stops; here, on demand.
    data_dir = world.services.config.data_dir
    await anchor_head(world.services.db, AnchorFile(data_dir), utcnow())
    report = await admin.json("GET", "/api/v1/audit/verify")
    assert report["ok"] and report["anchors"]["ok"] and report["anchors"]["count"] >= 1
    async with world.services.db.write() as s:
        await s.execute(
            update(AuditEvent).where(AuditEvent.id == report["anchors"]["latest"]["id"]).values(hash="0" * 64)
        )
    broken = await admin.json("GET", "/api/v1/audit/verify")
    assert not broken["ok"]


def test_tp_server_audit_verify_names_deleted_rows(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env_args = ["--data-dir", str(data)]

    def tp_server(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "server.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )

    assert tp_server("migrate", *env_args).returncode == 0
    made = tp_server("admin", *env_args, "site", "--code", "ND-9", "--name", "Anchor Test", "--state", "ND")
    assert made.returncode == 0, made.stderr
    # The server anchors the head when it starts and when it stops; a short-lived server is enough.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    served = subprocess.Popen(
        [sys.executable, "-m", "server.cli", "serve", "--port", str(port), *env_args],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        until_serving(served, port)
    finally:
        served.send_signal(signal.SIGINT)
        served.wait(30)
    ok = tp_server("audit", *env_args, "verify")
    assert ok.returncode == 0, ok.stderr
    assert "head anchored: " in ok.stdout

    import sqlite3

    with sqlite3.connect(data / "telepharmacy.sqlite3") as db:
        db.execute("DELETE FROM audit_events WHERE id = (SELECT max(id) FROM audit_events)")
    broken = tp_server("audit", *env_args, "verify")
    assert broken.returncode == 1
    assert "audit anchors BROKEN" in broken.stderr and "deleted" in broken.stderr
