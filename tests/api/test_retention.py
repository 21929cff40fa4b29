"""Retention: with periods from a site rules file and the server's clock moved on, exactly what is due
is removed (files gone from the store, rows kept and marked, events trimmed), nothing in a dry run,
nothing where a period is unknown; the run is recorded in the audit trail, which still verifies."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import func, select, text, update

from server import cli
from server.audit.anchors import AnchorFile, anchor_head
from server.audit.anchors import check as check_anchors
from server.audit.chain import verify
from server.compliance import retention
from server.config import ObjectStorage
from server.db import partitions
from server.db.migrate import alembic_config
from server.db.models import AuditEvent, Event, Fill, Media, Prescription
from server.media.s3 import S3MediaStore
from server.media.store import LocalMediaStore
from tests.api.test_object_storage import bucket_keys
from tests.api.test_prescription_originals import upload_original
from tests.api.world import World, approval, build_world, photo, queued_fill, rx_body, sha256, tus_metadata
from tests.consult.samples import recording_mp4
from tests.object_storage import new_bucket

DAY = 24 * 3600
# ND's retention periods are unknown in the state rules: ND-1 sets its own, ND-2 and MN-1 have none.
SITE_RULES = """
[sites.ND-1]
state = "ND"
why = "Company records policy: prescriptions 200 days, verification 100 days, recordings 30 days"
retention_prescription_days = 200
retention_verification_days = 100
retention_recording_days = 30
"""


@pytest.fixture
async def world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    rules = tmp_path / "site_rules.toml"
    rules.write_text(SITE_RULES, encoding="utf-8")
    w = await build_world(tmp_path, database_url, site_rules=rules)
    try:
        yield w
    finally:
        await w.close()


async def decided_fill(world: World, tech_name: str, rx_number: str, **rx: Any) -> dict[str, Any]:
    """A prescription of the technician's site and one fill of it, approved by nd_rph; the fill as
    the pharmacist last saw it."""
    tech = await world.device(tech_name)
    made = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, **rx))
    return await decided_refill(world, tech_name, made["id"])


async def decided_refill(world: World, tech_name: str, rx_id: int) -> dict[str, Any]:
    tech = await world.device(tech_name)
    fill = await queued_fill(world, tech, rx_id)
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(claimed))
    return dict(claimed)


async def recorded_call(world: World, folder: Path, seconds: int) -> int:
    """A call of ND-1 with nd_rph, recorded with the patient's consent and ended; its recording's id."""
    site, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    c = await site.json("POST", "/api/v1/consultations", 201, json={"recording_consent": True})
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await site.json("POST", f"/api/v1/consultations/{c['id']}/consent")
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/end", json={"reason": "hangup"})
    data = recording_mp4(folder / f"call-{c['id']}.mp4", seconds=seconds).read_bytes()
    meta = tus_metadata(
        consultation_id=str(c["id"]), kind="consultation_recording", filename="call.mp4", sha256=sha256(data)
    )
    created = await site.post(
        "/api/v1/uploads",
        headers={"Tus-Resumable": "1.0.0", "Upload-Length": str(len(data)), "Upload-Metadata": meta},
    )
    assert created.status == 201, await created.text()
    done = await site.request(
        "PATCH",
        created.headers["Location"],
        data=data,
        headers={
            "Tus-Resumable": "1.0.0",
            "Upload-Offset": "0",
            "Content-Type": "application/offset+octet-stream",
        },
    )
    assert done.status == 204, await done.text()
    media_id = int(done.headers["Tp-Media-Id"])
    async with world.services.db.read() as s:
        _VARIANTS[media_id] = (
            await s.execute(select(Media.variants).where(Media.id == media_id))
        ).scalar_one()
    return media_id


async def run(world: World, *, apply: bool) -> retention.Report:
    svc = world.services
    return await retention.run(
        svc.db,
        svc.store,
        svc.compliance.book,
        now=world.clock(),
        journal_days=svc.config.event_journal_days,
        apply=apply,
    )


def files_of(fill: dict[str, Any], world: World) -> list[Path]:
    return [p for m in fill["media"] for p in _paths(world, m["id"])]


_VARIANTS: dict[int, dict[str, Any]] = {}


def _paths(world: World, media_id: int) -> list[Path]:
    store = world.services.store
    assert isinstance(store, LocalMediaStore)
    return [store.path_for(v["sha256"]) for v in _VARIANTS[media_id].values()]


async def remember_variants(world: World) -> None:
    async with world.services.db.read() as s:
        for media_id, variants in await s.execute(select(Media.id, Media.variants)):
            _VARIANTS[media_id] = variants


async def counts(world: World) -> tuple[int, int, int]:
    """(media removed, events, audit rows)."""
    async with world.services.db.read() as s:
        removed = await s.scalar(select(func.count()).where(Media.removed_at.is_not(None)))
        events = await s.scalar(select(func.count()).select_from(Event))
        audit = await s.scalar(select(func.count()).select_from(AuditEvent))
    return int(removed or 0), int(events or 0), int(audit or 0)


def line(report: retention.Report, kind: str, site: str | None) -> retention.Line:
    [found] = [x for x in report.lines if x.kind == kind and x.site == site]
    return found


async def test_retention_removes_exactly_what_is_due_and_the_trail_still_verifies(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small batches, so that removing takes several of each.
    monkeypatch.setattr(retention, "BATCH", 2)
    monkeypatch.setattr(retention, "JOURNAL_BATCH", 4)
    old = await decided_fill(world, "tech_nd1", "RX1")
    tech = await world.device("tech_nd1")
    rx_old = (await tech.json("GET", f"/api/v1/fills/{old['id']}"))["prescription"]["id"]
    assert (await upload_original(tech, rx_old, photo("rx_image", 1))).status == 204
    elsewhere = await decided_fill(world, "tech_nd2", "RX9")  # ND-2: periods unknown
    refilled = await decided_fill(world, "tech_nd1", "RX6", refills_authorized=1)
    old_call = await recorded_call(world, tmp_path, seconds=1)
    world.clock.advance(150 * DAY)
    recent = await decided_fill(world, "tech_nd1", "RX2")
    refill = await decided_refill(world, "tech_nd1", refilled["prescription"]["id"])
    waiting = await queued_fill(
        world, tech, (await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX3")))["id"]
    )
    world.clock.advance(100 * DAY)  # the old fill 250 days past its decision, the recent one 100
    new_call = await recorded_call(world, tmp_path, seconds=2)
    await remember_variants(world)
    anchors = AnchorFile(world.services.config.data_dir)
    await anchor_head(world.services.db, anchors, world.clock())
    before = await counts(world)

    dry = await run(world, apply=False)
    nd1 = line(dry, retention.FILL_MEDIA, "ND-1")
    assert (nd1.due, nd1.period.days, nd1.period.rule) == (3, 200, "retention_prescription_days")
    assert nd1.period.site_rule and "Company records policy" in nd1.period.site_rule
    assert line(dry, retention.ORIGINALS, "ND-1").due == 1
    assert line(dry, retention.RECORDINGS, "ND-1").due == 1
    nd2 = line(dry, retention.FILL_MEDIA, "ND-2")
    assert (nd2.due, nd2.kept_unknown, nd2.period.days) == (0, 3, None)
    assert set(nd2.period.unknown) == {"retention_verification_days", "retention_prescription_days"}
    journal = line(dry, retention.EVENT_JOURNAL, None)
    assert journal.due == before[1] - 1
    assert await counts(world) == before, "a dry run changes nothing"
    assert all(p.is_file() for f in (old, recent, elsewhere) for p in files_of(f, world))
    assert all(p.is_file() for p in _paths(world, old_call))

    applied = await run(world, apply=True)
    assert applied.audit_row is not None
    assert line(applied, retention.FILL_MEDIA, "ND-1").removed == 3
    assert line(applied, retention.ORIGINALS, "ND-1").removed == 1
    assert line(applied, retention.RECORDINGS, "ND-1").removed == 1
    assert not any(p.is_file() for p in files_of(old, world)), "the old fill's files are gone"
    # The two calls' recordings differ, their posters (the same first frame) are one file, kept.
    call_files, shared = set(_paths(world, old_call)), set(_paths(world, new_call))
    assert call_files - shared and not any(p.is_file() for p in call_files - shared)
    assert line(applied, retention.RECORDINGS, "ND-1").files_shared == len(call_files & shared)
    # The first fill of a prescription refilled since is part of a prescription record still kept.
    assert all(p.is_file() for f in (recent, elsewhere, refilled, refill) for p in files_of(f, world))
    assert all(p.is_file() for m in waiting["media"] for p in _paths(world, m["id"]))
    assert all(p.is_file() for p in _paths(world, new_call))
    removed, events, _ = await counts(world)
    assert (removed, events) == (5, 1), "the newest event stays, so new ids follow it"

    rph = await world.login("nd_rph")
    shown = await rph.json("GET", f"/api/v1/fills/{old['id']}")
    assert shown["state"] == "approved" and len(shown["media"]) == 3
    for medium in shown["media"]:
        assert medium["removed_under_retention"] and medium["variants"] == []
        gone = await rph.get(medium["url"])
        assert gone.status == 404 and (await gone.json())["error"] == "removed_under_retention"
    kept = await rph.json("GET", f"/api/v1/fills/{recent['id']}")
    assert all(m["removed_under_retention"] is None and m["variants"] for m in kept["media"])

    async with world.services.db.read() as s:
        row = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "retention.applied"))
        ).scalar_one()
    assert row.id == applied.audit_row
    assert row.detail["removed"]["fill_media"]["ND-1"]["removed"] == 3
    assert row.detail["removed"]["event_journal"]["removed"] == before[1] - 1
    assert row.detail["kept"]["fill_media:ND-2"]["kept_because_unknown"] == 3
    assert "Jane" not in json.dumps(row.detail), "counts and ranges, never patient data"
    assert (await verify(world.services.db)).ok
    assert (await check_anchors(world.services.db, anchors)).ok

    again = await run(world, apply=True)
    assert again.removed == 0 and again.audit_row is None, "nothing left due: nothing recorded"
    async with world.services.db.read() as s:
        [kept_id] = [i for (i,) in await s.execute(select(Event.id))]
    new_rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX4"))
    await queued_fill(world, tech, new_rx["id"])
    async with world.services.db.read() as s:
        ids = [i for (i,) in await s.execute(select(Event.id).order_by(Event.id))]
    assert ids[0] == kept_id and ids[1] == kept_id + 1, "new events continue the ids"


async def test_a_file_shared_with_a_kept_photo_stays(world: World) -> None:
    """A photo sent again for a fill at another site is one stored file: removing the old fill's
    photo keeps the file the other fill still shows."""
    old = await decided_fill(world, "tech_nd1", "RX1")
    world.clock.advance(250 * DAY)
    tech2 = await world.device("tech_nd2")
    rx = await tech2.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX5"))
    seed = 424242
    same = await queued_fill(world, tech2, rx["id"], seed=seed)
    await remember_variants(world)
    # The old fill's first photo, byte for byte, is the new fill's first photo.
    async with world.services.db.write() as s:
        new_first = (
            (await s.execute(select(Media).where(Media.fill_id == same["id"]).order_by(Media.id)))
            .scalars()
            .first()
        )
        assert new_first is not None
        await s.execute(
            update(Media)
            .where(Media.fill_id == old["id"], Media.kind == new_first.kind)
            .values(sha256=new_first.sha256, variants=new_first.variants)
        )
    await remember_variants(world)
    report = await run(world, apply=True)
    assert line(report, retention.FILL_MEDIA, "ND-1").removed == 3
    assert line(report, retention.FILL_MEDIA, "ND-1").files_shared >= 1
    assert all(p.is_file() for m in same["media"] for p in _paths(world, m["id"]))


async def due_for_the_command(world: World, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """A fill of ND-1 due on the real clock the command runs on, the database as the command expects
    it and the site rules in its environment; the fill."""
    old = await decided_fill(world, "tech_nd1", "RX1")
    svc = world.services
    async with svc.db.write() as s:
        # The command runs on the real clock: the prescription and its fill 300 days old, the events too.
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=300)
        await s.execute(update(Fill).where(Fill.id == old["id"]).values(decided_at=long_ago))
        rx_id = old["prescription"]["id"]
        await s.execute(update(Prescription).where(Prescription.id == rx_id).values(created_at=long_ago))
        await s.execute(update(Event).values(at=long_ago))
    async with svc.db.write_engine.connect() as conn:
        await conn.run_sync(lambda c: command.stamp(alembic_config(c), "head"))
        await conn.commit()
    monkeypatch.setenv("TP_SITE_RULES", str(svc.config.site_rules))
    monkeypatch.delenv("TP_DATA_DIR", raising=False)
    monkeypatch.delenv("TP_S3_BUCKET", raising=False)
    return old


async def test_the_command_shows_what_is_due_and_applies_it(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await due_for_the_command(world, monkeypatch)
    svc = world.services
    args = ["--data-dir", str(svc.config.data_dir), "--database-url", svc.db.url, "--json"]

    dry = await asyncio.to_thread(_cli, ["retention", "run", *args])
    shown = json.loads(dry)
    due = {(x["kind"], x["site"]): x for x in shown["lines"]}
    assert shown["applied"] is False and due[("fill_media", "ND-1")]["due"] == 3
    assert due[("fill_media", "ND-1")]["source"] and due[("fill_media", "ND-2")]["days"] is None
    assert any(k["kind"] == "audit_trail" for k in shown["kept"])
    assert (await counts(world))[0] == 0

    applied = json.loads(await asyncio.to_thread(_cli, ["retention", "run", "--apply", *args]))
    assert applied["audit_row"] is not None
    assert {(x["kind"], x["site"]): x["removed"] for x in applied["lines"]}[("fill_media", "ND-1")] == 3
    assert (await counts(world))[0] == 3
    assert (await verify(svc.db)).ok


def _cli(argv: list[str]) -> str:
    status, out, err = _cli_status(argv)
    assert status == 0, err
    return out


def _cli_status(argv: list[str]) -> tuple[int, str, str]:
    """The command's exit status, standard output and standard error."""
    import contextlib
    import io

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = cli.main(argv)
    return status, out.getvalue(), err.getvalue()


async def retention_rows(world: World) -> list[AuditEvent]:
    async with world.services.db.read() as s:
        query = select(AuditEvent).where(AuditEvent.action == "retention.applied").order_by(AuditEvent.id)
        return list((await s.execute(query)).scalars())


async def test_a_media_folder_without_the_files_due_is_refused_and_nothing_is_marked(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run without --data-dir on PostgreSQL, say: the media folder is another, holding none of the
    photos due. Neither a dry run nor an applied one may say they are removed."""
    old = await due_for_the_command(world, monkeypatch)
    await remember_variants(world)
    svc = world.services
    wrong = tmp_path / "elsewhere"
    for apply in ([], ["--apply"]):
        status, out, err = await asyncio.to_thread(
            _cli_status, ["retention", "run", *apply, "--data-dir", str(wrong), "--database-url", svc.db.url]
        )
        assert status == 2 and out == ""
        assert err.count("\n") == 1, "one line"
        assert f"the media folder {wrong / 'media'} holds none of the " in err
        assert "--data-dir" in err and "TP_S3_BUCKET" in err and "nothing was removed" in err
    async with svc.db.read() as s:
        assert (
            await s.execute(select(Media.removed_at).where(Media.fill_id == old["id"]))
        ).scalars().all() == [None] * 3
    assert await retention_rows(world) == []
    assert all(p.is_file() for p in files_of(old, world))

    right = [
        "retention",
        "run",
        "--apply",
        "--data-dir",
        str(svc.config.data_dir),
        "--database-url",
        svc.db.url,
    ]
    applied = await asyncio.to_thread(_cli, right)
    assert f"media store: the media folder {svc.config.media_dir}" in applied
    assert (await counts(world))[0] == 3
    assert not any(p.is_file() for p in files_of(old, world)), "the right folder's files are removed"
    [row] = await retention_rows(world)
    assert row.detail["complete"] is True
    assert row.detail["media_store"] == f"the media folder {svc.config.media_dir}"
    assert row.detail["removed"]["fill_media"]["ND-1"]["files_missing"] == 0


@pytest.mark.parametrize("as_json", [False, True], ids=["printed", "json"])
async def test_files_already_gone_are_reported_and_their_media_marked_removed(
    world: World, monkeypatch: pytest.MonkeyPatch, as_json: bool
) -> None:
    """A run stopped between deleting files and marking their media leaves some files gone: a dry run
    is not refused (the store has the others), and the applied run removes the rest, marks every medium
    removed and says how many files were already gone."""
    old = await due_for_the_command(world, monkeypatch)
    await remember_variants(world)
    svc = world.services
    files = sorted(set(files_of(old, world)))
    files[0].unlink()
    args = ["retention", "run", "--data-dir", str(svc.config.data_dir), "--database-url", svc.db.url]

    dry = json.loads(await asyncio.to_thread(_cli, [*args, "--json"]))
    assert {(x["kind"], x["site"]): x["due"] for x in dry["lines"]}[("fill_media", "ND-1")] == 3
    assert (await counts(world))[0] == 0 and all(p.is_file() for p in files[1:]), "a dry run changes nothing"

    if as_json:
        shown = json.loads(await asyncio.to_thread(_cli, [*args, "--apply", "--json"]))
        nd1 = {(x["kind"], x["site"]): x for x in shown["lines"]}[("fill_media", "ND-1")]
        assert (nd1["removed"], nd1["files_removed"], nd1["files_missing"]) == (3, len(files) - 1, 1)
    else:
        applied = await asyncio.to_thread(_cli, [*args, "--apply"])
        assert "already missing: 1 file of fill_media at ND-1, not in the media store" in applied
    assert (await counts(world))[0] == 3
    assert not any(p.is_file() for p in files)
    [row] = await retention_rows(world)
    entry = row.detail["removed"]["fill_media"]["ND-1"]
    assert (entry["removed"], entry["files_removed"], entry["files_missing"]) == (3, len(files) - 1, 1)
    assert row.detail["complete"] is True
    assert dry["media_store"] == row.detail["media_store"] == f"the media folder {svc.config.media_dir}"


async def test_removed_media_leave_the_bucket(
    tmp_path: Path, sqlite_url: str, object_storage: ObjectStorage
) -> None:
    rules = tmp_path / "site_rules.toml"
    rules.write_text(SITE_RULES, encoding="utf-8")
    w = await build_world(tmp_path, sqlite_url, site_rules=rules, object_storage=object_storage)
    try:
        store = S3MediaStore(object_storage)
        old = await decided_fill(w, "tech_nd1", "RX1")
        w.clock.advance(250 * DAY)
        recent = await decided_fill(w, "tech_nd1", "RX2")
        keys: dict[str, set[str]] = {}
        async with w.services.db.read() as s:
            for fill_id, variants in await s.execute(select(Media.fill_id, Media.variants)):
                keys.setdefault(fill_id, set()).update(store.key_for(v["sha256"]) for v in variants.values())
        assert keys[old["id"]] | keys[recent["id"]] <= bucket_keys(object_storage)
        report = await run(w, apply=True)
        assert line(report, retention.FILL_MEDIA, "ND-1").removed == 3
        left = bucket_keys(object_storage)
        assert not keys[old["id"]] & left and keys[recent["id"]] <= left
    finally:
        await w.close()


async def test_a_bucket_without_the_files_due_is_refused(
    tmp_path: Path, sqlite_url: str, object_storage: ObjectStorage, s3_endpoint: str
) -> None:
    """An admin shell with another bucket named, or none: the bucket it names holds none of the files."""
    rules = tmp_path / "site_rules.toml"
    rules.write_text(SITE_RULES, encoding="utf-8")
    w = await build_world(tmp_path, sqlite_url, site_rules=rules, object_storage=object_storage)
    try:
        await decided_fill(w, "tech_nd1", "RX1")
        w.clock.advance(250 * DAY)
        keys = bucket_keys(object_storage)
        other = new_bucket(s3_endpoint)
        wrong = S3MediaStore(other)
        svc = w.services
        for apply in (False, True):
            with pytest.raises(retention.WrongMediaStore) as refused:
                await retention.run(
                    svc.db, wrong, svc.compliance.book, now=w.clock(), journal_days=7, apply=apply
                )
            assert f"the bucket {other.bucket!r} under 'media/' holds none of the" in str(refused.value)
        await wrong.close()
        assert (await counts(w))[0] == 0 and await retention_rows(w) == []
        assert bucket_keys(object_storage) == keys
        assert line(await run(w, apply=True), retention.FILL_MEDIA, "ND-1").removed == 3
    finally:
        await w.close()


class FailingStore:
    """The world's store, whose deletions of some files fail as an unreachable bucket's would."""

    def __init__(self, store: Any, failing: set[str]) -> None:
        self.store, self.failing = store, failing

    def where(self) -> str:
        return str(self.store.where())

    async def exists(self, sha: str) -> bool:
        return bool(await self.store.exists(sha))

    async def delete(self, sha: str) -> bool:
        if sha in self.failing:
            raise OSError("the bucket cannot be reached")
        return bool(await self.store.delete(sha))


async def test_a_run_stopped_by_the_store_records_what_it_removed_and_the_next_completes(
    world: World, tmp_path: Path
) -> None:
    old = await decided_fill(world, "tech_nd1", "RX1")
    call = await recorded_call(world, tmp_path, seconds=1)
    world.clock.advance(250 * DAY)
    await remember_variants(world)
    svc = world.services
    failing: Any = FailingStore(svc.store, {v["sha256"] for v in _VARIANTS[call].values()})
    with pytest.raises(OSError):
        await retention.run(
            svc.db, failing, svc.compliance.book, now=world.clock(), journal_days=7, apply=True
        )
    async with svc.db.read() as s:
        [row] = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "retention.applied"))
        ).scalars()
        recording_removed = await s.scalar(select(Media.removed_at).where(Media.id == call))
    assert row.detail["complete"] is False
    assert row.detail["removed"]["fill_media"]["ND-1"]["removed"] == 3
    assert "call_recordings" not in row.detail["removed"] and recording_removed is None
    assert not any(p.is_file() for p in files_of(old, world))

    done = await run(world, apply=True)
    assert line(done, retention.RECORDINGS, "ND-1").removed == 1
    assert line(done, retention.FILL_MEDIA, "ND-1").removed == 0
    assert not any(p.is_file() for p in _paths(world, call))
    assert (await verify(svc.db)).ok


async def test_the_server_applies_retention_daily(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The daily hour comes at once, and again and again.
    monkeypatch.setattr("server.app.until_hour", lambda now, hour: 0.05)
    rules = tmp_path / "site_rules.toml"
    rules.write_text(SITE_RULES, encoding="utf-8")
    w = await build_world(tmp_path, sqlite_url, site_rules=rules, retention_hour=3)
    try:
        old = await decided_fill(w, "tech_nd1", "RX1")
        await remember_variants(w)
        w.clock.advance(250 * DAY)

        async def applied() -> int:
            async with w.services.db.read() as s:
                query = select(func.count()).where(AuditEvent.action == "retention.applied")
                return int(await s.scalar(query) or 0)

        # The run removes, then records what it removed in a transaction of its own.
        for _ in range(400):
            if (await counts(w))[0] == 3 and await applied():
                break
            await asyncio.sleep(0.05)
        assert (await counts(w))[0] == 3
        assert not any(p.is_file() for p in files_of(old, w))
        await asyncio.sleep(0.3)  # several more daily hours
        assert await applied() == 1, "later runs found nothing due and recorded nothing"
    finally:
        await w.close()


async def test_the_server_s_daily_run_refuses_a_media_folder_without_the_files_due(
    tmp_path: Path, sqlite_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A host whose shared media volume is not mounted: each daily run is refused and logged, nothing
    marked, until the folder is back."""
    monkeypatch.setattr("server.app.until_hour", lambda now, hour: 0.05)
    rules = tmp_path / "site_rules.toml"
    rules.write_text(SITE_RULES, encoding="utf-8")
    w = await build_world(tmp_path, sqlite_url, site_rules=rules, retention_hour=3)
    try:
        old = await decided_fill(w, "tech_nd1", "RX1")
        await remember_variants(w)
        media = w.services.config.media_dir
        unmounted = media.rename(tmp_path / "not-mounted")
        w.clock.advance(250 * DAY)

        def refusals() -> list[str]:
            return [r.getMessage() for r in caplog.records if "retention run was refused" in r.getMessage()]

        for _ in range(400):
            if len(refusals()) >= 2:
                break
            await asyncio.sleep(0.05)
        assert f"the media folder {media} holds none of the " in refusals()[0]
        assert (await counts(w))[0] == 0 and await retention_rows(w) == []

        unmounted.rename(media)
        for _ in range(400):
            if (await counts(w))[0] == 3 and await retention_rows(w):
                break
            await asyncio.sleep(0.05)
        assert (await counts(w))[0] == 3
        assert not any(p.is_file() for p in files_of(old, w))
    finally:
        await w.close()


async def test_one_applied_run_at_a_time_on_postgresql(tmp_path: Path, postgres_url: str) -> None:
    rules = tmp_path / "site_rules.toml"
    rules.write_text(SITE_RULES, encoding="utf-8")
    w = await build_world(tmp_path, postgres_url, site_rules=rules)
    try:
        await decided_fill(w, "tech_nd1", "RX1")
        w.clock.advance(250 * DAY)
        db = w.services.db
        async with db.write_engine.connect() as other:
            # Another instance's run holds the lock.
            await other.execute(text("SELECT pg_advisory_lock(:k)"), {"k": retention.RETENTION_LOCK_KEY})
            await other.commit()
            skipped = await run(w, apply=True)
            assert skipped.skipped and skipped.removed == 0 and (await counts(w))[0] == 0
            assert (await run(w, apply=False)).skipped is None, "a dry run needs no lock"
            await other.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": retention.RETENTION_LOCK_KEY})
            await other.commit()
        assert line(await run(w, apply=True), retention.FILL_MEDIA, "ND-1").removed == 3
    finally:
        await w.close()


async def test_on_postgresql_the_journal_s_past_months_go_a_partition_at_a_time(
    tmp_path: Path, postgres_url: str
) -> None:
    w = await build_world(tmp_path, postgres_url)
    try:
        db = w.services.db
        now = w.clock()
        month = partitions.month_start(now)
        two_back = partitions.month_start(month - dt.timedelta(days=40))
        await partitions.ensure_partitions(db, now, since=two_back)
        # Two events in one past month and one in the next, one this month older than the window by the
        # time it runs (deleted as a row), and the newest.
        stamps = [two_back + dt.timedelta(days=d) for d in (1, 2, 35)] + [now, now + 8 * dt.timedelta(days=1)]
        async with db.write() as s:
            first = int(await s.scalar(select(func.coalesce(func.max(Event.id), 0)))) + 1
            for n, at in enumerate(stamps):
                await s.execute(
                    text("INSERT INTO events (id, at, type, payload) VALUES (:id, :at, 'test', '{}')"),
                    {"id": first + n, "at": at},
                )
        w.clock.advance(8 * DAY)
        journal = line(await run(w, apply=True), retention.EVENT_JOURNAL, None)
        async with db.read() as s:
            names = {n for (n,) in await s.execute(text("SELECT tablename FROM pg_tables"))}
            left = [i for (i,) in await s.execute(select(Event.id).order_by(Event.id))]
        assert partitions.partition_name("events", two_back) not in names, "a past month dropped whole"
        assert partitions.partition_name("events", month) in names, "the newest event's month stays"
        assert left == [first + 4], "everything past the window went, the newest event stayed"
        assert (journal.removed, journal.first_id, journal.last_id) == (4, first, first + 3)
    finally:
        await w.close()
