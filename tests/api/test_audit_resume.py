"""`audit verify` resumes from the last checkpoint (an anchored head found whole): a daily run walks
the rows after it, still catches a row edited after it, and `full` catches one edited before it."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select, text, update

from server.audit import chain
from server.audit.anchors import Anchor, AnchorFile, anchor_head
from server.audit.verification import verify_trail
from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import AuditEvent, utcnow
from tests.api.world import World, rx_body

ROOT = Path(__file__).resolve().parents[2]


async def _history(world: World, prefix: str, n: int = 2) -> None:
    tech = await world.device("tech_nd1")
    for i in range(n):
        await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(f"{prefix}{i}"))


async def _head_id(world: World) -> int:
    async with world.services.db.read() as s:
        return (await s.execute(select(AuditEvent.id).order_by(AuditEvent.id.desc()).limit(1))).scalar_one()


async def _checkpointed(world: World) -> tuple[AnchorFile, Anchor]:
    """History, its head anchored and walked once from the start: the checkpoint is that anchor."""
    anchors = AnchorFile(world.services.config.data_dir)
    await _history(world, "RXA")
    anchor = await anchor_head(world.services.db, anchors, utcnow())
    assert anchor is not None
    first = await verify_trail(world.services.db, anchors)
    assert first.ok and first.checkpoint is None and first.chain.first_id == 1
    return anchors, anchor


async def _edit(world: World, row_id: int) -> None:
    """Changes a row's content and leaves its hash: what a forger without the chain's order would do."""
    async with world.services.db.write() as s:
        await s.execute(update(AuditEvent).where(AuditEvent.id == row_id).values(entity_id="forged"))


async def test_a_daily_run_verifies_only_the_rows_after_the_checkpoint(world: World) -> None:
    anchors, anchor = await _checkpointed(world)
    await _history(world, "RXB")
    head = await _head_id(world)
    report = await verify_trail(world.services.db, anchors)
    assert report.ok and report.checkpoint == anchor
    assert (report.chain.first_id, report.chain.last_id) == (anchor.id + 1, head)
    assert report.chain.rows == head - anchor.id

    admin = await world.login("admin")
    seen = await admin.json("GET", "/api/v1/audit/verify")
    assert seen["ok"] and seen["checkpoint"]["id"] == anchor.id
    assert seen["verified"]["from_id"] == anchor.id + 1 and seen["verified"]["to_id"] >= head
    everything = await admin.json("GET", "/api/v1/audit/verify?full=true")
    assert everything["ok"] and everything["checkpoint"] is None and everything["verified"]["from_id"] == 1
    await admin.json("GET", "/api/v1/audit/verify?full=maybe", 400)


async def test_a_row_edited_after_the_checkpoint_is_still_caught(world: World) -> None:
    anchors, anchor = await _checkpointed(world)
    await _history(world, "RXB")
    await _edit(world, anchor.id + 2)
    report = await verify_trail(world.services.db, anchors)
    assert not report.ok and report.checkpoint == anchor
    assert report.chain.first_broken_id == anchor.id + 2 and "edited" in (report.problem or "")
    # Nothing is checkpointed past a broken walk.
    kept = anchors.checkpoint()
    assert kept is not None and kept[0] == anchor


async def test_full_catches_a_row_edited_before_the_checkpoint(world: World) -> None:
    anchors, anchor = await _checkpointed(world)
    await _history(world, "RXB")
    await _edit(world, 2)
    resumed = await verify_trail(world.services.db, anchors)
    assert resumed.ok and resumed.checkpoint == anchor and resumed.chain.first_id == anchor.id + 1
    full = await verify_trail(world.services.db, anchors, full=True)
    assert not full.ok and full.checkpoint is None and full.chain.first_broken_id == 2

    admin = await world.login("admin")
    verdict = await admin.json("GET", "/api/v1/audit/verify?full=true")
    assert not verdict["ok"] and verdict["first_broken_id"] == 2


async def test_the_fast_walk_hashes_what_append_hashed(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unicode, nested and empty details, rows without an actor, and details stored as written before
    they were stored canonically: all verify without reading a row whole again."""
    db = world.services.db
    async with db.write() as s:
        for detail in (
            {"name": "Zoë \u2713 \U0001f48a", "nested": {"b": [1, 2.5, None, True], "a": 'x"y\\z\n'}},
            {},
            {"big": 2**53 + 1, "neg": -0.0, "e": 1e-7},
        ):
            await chain.append(db, s, None, "test.detail", "site", "1", detail)
    async with db.read() as s:
        rows = (await s.execute(select(AuditEvent.id, AuditEvent.detail))).all()
    async with db.write() as s:
        for row_id, detail in rows[:5]:
            # Written with spaces and in insertion order, as rows were before ChainJSON.
            await s.execute(
                text("UPDATE audit_events SET detail = :d WHERE id = :id"),
                {"d": json.dumps(detail), "id": row_id},
            )

    async def refused(_db: Database, row_id: int) -> str:
        raise AssertionError(f"row {row_id} needed the reference hash")

    monkeypatch.setattr(chain, "_reference_hash", refused)
    report = await chain.verify(db)
    assert report.ok and report.rows == len(rows)


def _tp_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_tp_server_audit_verify_resumes_and_full_walks_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert _tp_server("migrate", "--data-dir", str(data)).returncode == 0
    for code in ("ND-8", "ND-9"):
        made = _tp_server(
            "admin", "--data-dir", str(data), "site", "--code", code, "--name", "T", "--state", "ND"
        )
        assert made.returncode == 0, made.stderr

    async def anchor() -> None:
        db = Database(f"sqlite+aiosqlite:///{data / 'telepharmacy.sqlite3'}")
        try:
            await upgrade(db)
            await anchor_head(db, AnchorFile(data), utcnow())
        finally:
            await db.dispose()

    asyncio.run(anchor())
    first = _tp_server("audit", "--data-dir", str(data), "verify")
    assert first.returncode == 0 and "intact: 2 rows (rows 1-2, from the start)" in first.stdout
    with sqlite3.connect(data / "telepharmacy.sqlite3") as db:
        db.execute("UPDATE audit_events SET entity_id = 'forged' WHERE id = 1")
    daily = _tp_server("audit", "--data-dir", str(data), "verify")
    assert daily.returncode == 0 and "intact: 0 rows (no rows, after the checkpoint at row 2" in daily.stdout
    full = _tp_server("audit", "--data-dir", str(data), "verify", "--full")
    assert full.returncode == 1 and "BROKEN at row 1" in full.stderr and "from the start" in full.stderr
