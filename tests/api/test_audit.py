"""The audit trail: hash-chained, tamper-evident, exportable for an inspector."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import delete, select, update

from server.audit import chain as audit
from server.db.models import AuditEvent
from tests.api.world import World, approved_fill


async def test_every_transition_is_audited_with_the_pharmacists_identity(world: World) -> None:
    fill_id = await approved_fill(world)
    async with world.services.db.read() as s:
        rows = (
            (
                await s.execute(
                    select(AuditEvent).where(AuditEvent.entity_id == fill_id).order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    actions = [r.action for r in rows]
    assert actions == [
        "fill.created",
        "media.stored",
        "media.stored",
        "media.stored",
        "fill.submitted",
        "fill.queued",
        "fill.claimed",
        "fill.decided",
    ]
    decision = rows[-1]
    assert decision.actor == "pharmacist:nd_rph"
    assert decision.detail["pharmacist"] == "Nd Rph" and decision.detail["outcome"] == "approve"
    everything = json.dumps([r.detail for r in rows])
    assert "Jane" not in everything and "1948" not in everything  # no patient data in the trail
    report = await audit.verify(world.services.db)
    assert report.ok and report.rows >= len(rows)


async def test_verify_names_the_first_edited_row(world: World) -> None:
    await approved_fill(world)
    db = world.services.db
    async with db.read() as s:
        target = (await s.execute(select(AuditEvent).where(AuditEvent.action == "fill.decided"))).scalar_one()
    async with db.write() as s:
        await s.execute(
            update(AuditEvent)
            .where(AuditEvent.id == target.id)
            .values(detail={**target.detail, "outcome": "reject"})
        )
    report = await audit.verify(db)
    assert not report.ok and report.first_broken_id == target.id and "edited" in (report.problem or "")


async def test_verify_names_the_row_after_a_deletion(world: World) -> None:
    await approved_fill(world)
    db = world.services.db
    async with db.write() as s:
        await s.execute(delete(AuditEvent).where(AuditEvent.id == 5))
    report = await audit.verify(db)
    assert not report.ok and report.first_broken_id == 6 and "deleted" in (report.problem or "")


async def test_inspector_exports_a_date_range_as_csv(world: World) -> None:
    await approved_fill(world)
    admin = await world.login("admin")
    today = dt.date.today()
    resp = await admin.get(f"/api/v1/audit/export?from={today}&to={today}")
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    assert any(r["action"] == "fill.decided" for r in rows)
    assert [int(r["id"]) for r in rows] == sorted(int(r["id"]) for r in rows)
    empty = await admin.get(
        f"/api/v1/audit/export?from={today - dt.timedelta(days=9)}&to={today - dt.timedelta(days=8)}"
    )
    assert len((await empty.text()).strip().splitlines()) == 1  # the header only
    verdict = await admin.json("GET", "/api/v1/audit/verify")
    assert verdict["ok"] is True


def _tp_server(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
def test_audit_commands_verify_and_export(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    assert _tp_server("migrate", "--data-dir", data).returncode == 0
    assert (
        _tp_server(
            "admin", "--data-dir", data, "site", "--code", "ND-9", "--name", "Test", "--state", "ND"
        ).returncode
        == 0
    )
    assert (
        _tp_server(
            "admin",
            "--data-dir",
            data,
            "user",
            "--username",
            "rph",
            "--role",
            "pharmacist",
            "--password",
            "long-enough-pw",
        ).returncode
        == 0
    )
    ok = _tp_server("audit", "--data-dir", data, "verify")
    assert ok.returncode == 0 and "intact: 2 rows" in ok.stdout
    out = tmp_path / "audit.csv"
    today = dt.date.today().isoformat()
    exp = _tp_server("audit", "--data-dir", data, "export", "--from", today, "--to", today, "--out", str(out))
    assert exp.returncode == 0 and len(out.read_text().splitlines()) == 3
    import sqlite3

    con = sqlite3.connect(tmp_path / "data" / "telepharmacy.sqlite3")
    con.execute("UPDATE audit_events SET actor = 'someone-else' WHERE id = 2")
    con.commit()
    con.close()
    bad = _tp_server("audit", "--data-dir", data, "verify")
    assert bad.returncode == 1 and "row 2" in bad.stderr
