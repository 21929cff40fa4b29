"""bench/history.py at a tiny scale: what it builds is a history the server accepts as its own."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import func, select, update

from bench.history import ingest_ratio
from bench.history_build import build, top_up_queue
from server.audit import chain
from server.compliance.checks import Compliance
from server.compliance.rules import load_rules
from server.db.engine import Database
from server.db.models import AuditEvent, Decision, Event, Fill, Media, MediaFile, Prescription
from server.fills.queries import FillQueries
from server.security.principal import Principal, Role

ROOT = Path(__file__).resolve().parents[2]


async def test_built_history_passes_audit_verify_and_fills_the_queue(tmp_path: Path) -> None:
    history = await build("", tmp_path / "server", fills=300, sites=4, pharmacists=2, queued=12)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'server' / 'telepharmacy.sqlite3'}")
    try:
        report = await chain.verify(db)
        assert report.ok, report
        async with db.read() as s:
            assert (await s.execute(select(func.count()).select_from(AuditEvent))).scalar() == report.rows
            # Each row's stored hash is the one the server computes from the row as read back.
            for row in (
                await s.execute(select(AuditEvent).order_by(AuditEvent.id.desc()).limit(5))
            ).scalars():
                assert chain.row_hash(row) == row.hash
            states = dict((await s.execute(select(Fill.state, func.count()).group_by(Fill.state))).all())
            assert states.get("queued") == 12
            assert states.get("approved", 0) + states.get("rejected", 0) == 300
            assert (await s.execute(select(func.count()).select_from(Decision))).scalar() == 300
            assert (await s.execute(select(func.count()).select_from(Media))).scalar() == 3 * 312
            # Each photo names its two files (the photo and its thumbnail), so retention knows them kept.
            assert (await s.execute(select(func.count()).select_from(MediaFile))).scalar() == 2 * 3 * 312
            assert (await s.execute(select(func.count()).select_from(Event))).scalar_one() > 900
            # Approvals spread over many products, as a network's are, each the prescription's own.
            approved = (
                await s.execute(
                    select(Fill.approved_ndc, Prescription.expected_ndc)
                    .join(Prescription, Prescription.id == Fill.prescription_id)
                    .where(Fill.state == "approved")
                )
            ).all()
            assert all(ndc == expected for ndc, expected in approved)
            assert len({ndc for ndc, _ in approved}) > 20
        rph_id, rph = history.roster.pharmacists[0]
        pharmacist = Principal(
            user_id=rph_id,
            username=rph,
            role=Role.PHARMACIST,
            display_name="Pharmacist 0",
            site_id=None,
            licensed_states=frozenset({"ND", "SD", "MT", "MN", "IA"}),
            via="session",
        )
        queue = await FillQueries(db, Compliance(load_rules())).queue(pharmacist)
        assert len(queue.rows) == 12 and queue.counts == {"queued": 12}
    finally:
        await db.dispose()
    # Every photo row points at a file the media store holds.
    assert len(list((tmp_path / "server" / "media").rglob("*"))) > 6


async def test_a_reused_history_gets_its_queue_back(tmp_path: Path) -> None:
    """A run's pharmacists approve part of the live queue; the next --reuse run first puts back as many
    new fills at the queue's back, as the build makes them, so that every run measures the same queue."""
    history = await build("", tmp_path / "server", fills=60, sites=3, pharmacists=2, queued=8)
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'server' / 'telepharmacy.sqlite3'}")
    try:
        async with db.write() as s:
            first_five = select(Fill.id).where(Fill.state == "queued").order_by(Fill.id).limit(5)
            await s.execute(update(Fill).where(Fill.id.in_(first_five)).values(state="approved"))
        before = await db_fills(db)
        assert await top_up_queue(history) == 5
        assert await top_up_queue(history) == 0
        after = await db_fills(db)
        added = sorted(set(after) - set(before))
        assert len(added) == 5 and sum(1 for state, _ in after.values() if state == "queued") == 8
        # At the back of the queue: submitted after every fill there was.
        assert min(after[f][1] for f in added) > max(at for _, at in before.values())
        report = await chain.verify(db)
        assert report.ok, report
    finally:
        await db.dispose()


async def db_fills(db: Database) -> dict[str, tuple[str, object]]:
    async with db.read() as s:
        return {
            f: (state, at)
            for f, state, at in (await s.execute(select(Fill.id, Fill.state, Fill.submitted_at))).all()
        }


@pytest.mark.slow
def test_history_bench_smoke_run_prints_every_figure(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable, "-m", "bench.history", "--database", "sqlite", "--fills", "400", "--sites", "4",
            "--pharmacists", "2", "--queued", "10", "--pages", "2", "--claims", "2", "--think", "0",
            "--ingest-fills", "0",
        ],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip
    figures = json.loads(done.stdout)
    for key in ("queue_page_ms", "claim_next_ms", "fill_detail_ms", "decision_ms", "reconnect_day_behind"):
        assert key in figures["server"]
    assert figures["server"]["dashboard_30_days"]["admin"]["decided_in_period"] > 0
    assert figures["audit"]["verify"]["rows"] > 1200
    assert figures["audit"]["export_one_month"]["rows"] > 0
    assert figures["database_bytes_per_fill"] > 0 and figures["build_seconds"]["total"] > 0
    # The machine's speed before and after, to read the figures by.
    assert all(len(v) == 2 and min(v) > 0 for v in figures["calibration"].values())


def test_the_ingest_ratio_is_of_the_medians_of_its_rounds() -> None:
    rounds = {
        "empty": [{"fills_per_s": 10.0}, {"fills_per_s": 14.0}, {"fills_per_s": 12.0}],
        "history": [{"fills_per_s": 11.0}, {"fills_per_s": 9.0}, {"fills_per_s": 10.2}],
    }
    # A slow first round on the empty side alone would have read 1.1; the medians say 0.85.
    assert ingest_ratio(rounds) == {"ratio_history_vs_empty": 0.85, "ratio_by_round": [1.1, 0.643, 0.85]}
