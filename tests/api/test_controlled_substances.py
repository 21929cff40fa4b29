"""Controlled substances: the schedule on the queue row and in the verification view, the count a
Schedule II approval confirms, and the per-site log an inspector reads (the API and tp-server)."""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from server.cli import cmd_admin, cmd_audit, cmd_migrate, parser
from server.db.models import AccessLogEntry, AuditEvent
from server.reference import store
from tests.api.world import User, World, approval, queued_fill, rx_body
from tests.ndc_directory import SCHEDULE_II, scan, write_sample

# The stock bottle's GS1 DataMatrix for the test prescriptions' NDC 0378-1805-01: the product check
# passes, so the only flags are the ones a test asks for.
MATCHING_SCAN = "]d2010030378180501817291231"
DAY = 86400


async def controlled_fill(
    world: World, tech: str, rx_number: str, schedule: str | None, **fill: Any
) -> dict[str, Any]:
    """A prescription of the schedule entered at the technician's site and its fill queued: the
    prescribed bottle scanned and, unless the test says otherwise, the prescribed 60 counted."""
    site = await world.device(tech)
    rx = await site.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, dea_schedule=schedule or "")
    )
    fill.setdefault("counted_quantity", 60)
    return await queued_fill(world, site, rx["id"], barcodes=[MATCHING_SCAN], **fill)


async def claim(rph: User, fill: dict[str, Any]) -> dict[str, Any]:
    return dict((await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"])


async def decide(rph: User, fill: dict[str, Any], body: dict[str, Any]) -> Any:
    return await rph.post(f"/api/v1/fills/{fill['id']}/decision", json=body)


def counted(fill: dict[str, Any], count: Any) -> dict[str, Any]:
    return {**approval(fill), "count_confirmation": {"count": count}}


async def test_the_schedule_shows_on_the_queue_row_and_in_the_verification_view(world: World) -> None:
    cii = await controlled_fill(world, "tech_nd1", "RX-CII", "CII")
    civ = await controlled_fill(world, "tech_nd1", "RX-CIV", "CIV")
    plain = await controlled_fill(world, "tech_nd1", "RX-PLAIN", None)
    rph = await world.login("nd_rph")

    rows = {r["id"]: r for r in (await rph.json("GET", "/api/v1/queue"))["fills"]}
    assert [rows[f["id"]]["schedule"] for f in (cii, civ, plain)] == ["CII", "CIV", None]

    detail = await claim(rph, cii)
    assert detail["schedule"] == "CII"
    assert detail["controlled"] == {"schedule": "CII", "count_confirmation": True, "undo": False}
    assert (await rph.json("GET", f"/api/v1/fills/{civ['id']}"))["controlled"] == {
        "schedule": "CIV",
        "count_confirmation": False,
        "undo": True,
    }
    shown = await rph.json("GET", f"/api/v1/fills/{plain['id']}")
    assert shown["schedule"] is None and shown["controlled"] is None
    # The technician's own answer says it too.
    assert cii["schedule"] == "CII"


async def test_a_schedule_ii_approval_needs_the_sites_count_confirmed(world: World) -> None:
    fill = await controlled_fill(world, "tech_nd1", "RX-CII", "CII")
    rph = await world.login("nd_rph")
    claimed = await claim(rph, fill)

    missing = await decide(rph, fill, approval(claimed))
    assert missing.status == 400
    assert (await missing.json())["error"] == "count_confirmation_required"

    wrong = await decide(rph, fill, counted(claimed, "58"))
    assert wrong.status == 409
    body = await wrong.json()
    assert body["error"] == "count_mismatch"
    assert "58" in body["message"] and "60" not in body["message"]

    # Refused, nothing was lost: the fill is still the pharmacist's to decide.
    still = await rph.json("GET", f"/api/v1/fills/{fill['id']}")
    assert still["state"] == "in_review" and still["decision"] is None

    await rph.step_up()  # Schedule II asks who approves
    decided = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=counted(claimed, "60"))
    assert decided["state"] == "approved"
    assert decided["decision"]["confirmed_count"] == 60

    async with world.services.db.read() as s:
        event = (
            await s.execute(
                select(AuditEvent)
                .where(AuditEvent.action == "fill.decided", AuditEvent.entity_id == fill["id"])
                .order_by(AuditEvent.id.desc())
            )
        ).scalar_one()
    assert event.detail["confirmed_count"] == 60
    assert "RX-CII" not in str(event.detail) and "Jane" not in str(event.detail)


async def test_a_count_as_a_number_is_accepted_and_a_fill_without_a_site_count_is_not_approved(
    world: World,
) -> None:
    uncounted = await controlled_fill(world, "tech_nd1", "RX-NOCOUNT", "CII", counted_quantity=None)
    fill = await controlled_fill(world, "tech_nd1", "RX-CII", "CII")
    rph = await world.login("nd_rph")

    claimed = await claim(rph, uncounted)
    refused = await decide(rph, uncounted, counted(claimed, 60))
    assert refused.status == 409
    assert (await refused.json())["error"] == "count_not_recorded"

    nonsense = await decide(rph, uncounted, counted(claimed, "sixty"))
    assert nonsense.status == 400
    assert (await nonsense.json())["error"] == "invalid_input"

    claimed = await claim(rph, fill)
    await rph.step_up()
    decided = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=counted(claimed, 60))
    assert decided["decision"]["confirmed_count"] == 60


async def test_a_schedule_ii_count_that_differs_from_the_prescription_needs_the_count_flag_too(
    world: World,
) -> None:
    fill = await controlled_fill(world, "tech_nd1", "RX-CII", "CII", counted_quantity=30)
    rph = await world.login("nd_rph")
    claimed = await claim(rph, fill)
    assert [f["code"] for f in claimed["flags"]] == ["quantity_mismatch"]

    body = counted(claimed, "30")
    unacknowledged = await decide(rph, fill, {**body, "acknowledgements": []})
    assert unacknowledged.status == 422
    assert (await unacknowledged.json())["error"] == "flags_unacknowledged"

    await rph.step_up()
    body["acknowledgements"] = [{"flag": "quantity_mismatch", "reason": "partial_fill_documented"}]
    decided = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=body)
    assert decided["state"] == "approved" and decided["decision"]["confirmed_count"] == 30


async def test_a_schedule_iv_approval_needs_no_count_and_a_rejection_of_schedule_ii_neither(
    world: World,
) -> None:
    civ = await controlled_fill(world, "tech_nd1", "RX-CIV", "CIV")
    cii = await controlled_fill(world, "tech_nd1", "RX-CII", "CII")
    rph = await world.login("nd_rph")

    decided = await rph.json(
        "POST", f"/api/v1/fills/{civ['id']}/decision", json=approval(await claim(rph, civ))
    )
    assert decided["state"] == "approved" and decided["decision"]["confirmed_count"] is None

    claimed = await claim(rph, cii)
    rejected = await rph.json(
        "POST",
        f"/api/v1/fills/{cii['id']}/decision",
        json={"version": claimed["version"], "outcome": "reject", "reason_codes": ["wrong_quantity"]},
    )
    assert rejected["state"] == "rejected"


def log_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


async def test_the_controlled_substance_log_lists_exactly_the_sites_controlled_fills_in_range(
    world: World,
) -> None:
    # Decided before the range: left out.
    early = await controlled_fill(world, "tech_nd1", "RX-EARLY", "CII")
    before = await world.login("nd_rph")
    await before.step_up()
    assert (await decide(before, early, counted(await claim(before, early), 60))).status == 200

    world.clock.advance(10 * DAY)
    rph = await world.login("nd_rph")
    cii = await controlled_fill(world, "tech_nd1", "RX-CII", "CII")
    civ = await controlled_fill(world, "tech_nd1", "RX-CIV", "CIV")
    plain = await controlled_fill(world, "tech_nd1", "RX-PLAIN", None)
    elsewhere = await controlled_fill(world, "tech_nd2", "RX-ND2", "CIII")
    open_ = await controlled_fill(world, "tech_nd1", "RX-OPEN", "CV")
    await rph.step_up()
    assert (await decide(rph, cii, counted(await claim(rph, cii), "60"))).status == 200
    claimed = await claim(rph, civ)
    reject = {"version": claimed["version"], "outcome": "reject", "reason_codes": ["label_error"]}
    assert (await decide(rph, civ, reject)).status == 200
    for f in (plain, elsewhere):
        assert (await decide(rph, f, approval(await claim(rph, f)))).status == 200

    today = (dt.datetime.now(dt.UTC) + dt.timedelta(days=10)).date()
    span = f"from={today - dt.timedelta(days=5)}&to={today + dt.timedelta(days=5)}"
    admin = await world.login("admin")
    nd1 = world.sites["ND-1"]
    resp = await admin.get(f"/api/v1/sites/{nd1}/controlled-log?{span}")
    assert resp.status == 200
    assert resp.content_type == "text/csv"
    text = await resp.text()
    assert text.splitlines()[0] == (
        "decided_at,site,rx_number,drug,strength,ndc,schedule,quantity_prescribed,quantity_counted,"
        "count_confirmed,decision,pharmacist,pharmacist_license,technician,fill_id"
    )
    rows = log_rows(text)
    assert [r["fill_id"] for r in rows] == [cii["id"], civ["id"]]
    first, second = rows
    assert {k: first[k] for k in ("site", "rx_number", "drug", "strength", "ndc", "schedule")} == {
        "site": "ND-1",
        "rx_number": "RX-CII",
        "drug": "Metformin HCl",
        "strength": "500 mg",
        "ndc": "00378180501",
        "schedule": "CII",
    }
    assert (first["quantity_prescribed"], first["quantity_counted"], first["count_confirmed"]) == (
        "60",
        "60",
        "60",
    )
    assert (first["decision"], first["pharmacist"], first["pharmacist_license"], first["technician"]) == (
        "approved",
        "Nd Rph",
        "ND-nd_rph",
        "tech_nd1",
    )
    assert (second["schedule"], second["decision"], second["count_confirmed"]) == ("CIV", "rejected", "")
    assert open_["id"] not in text and early["id"] not in text

    # The other site's log has its own fill only; a pharmacist may not read either.
    other = log_rows(
        await (await admin.get(f"/api/v1/sites/{world.sites['ND-2']}/controlled-log?{span}")).text()
    )
    assert [r["fill_id"] for r in other] == [elsewhere["id"]]
    assert (await rph.get(f"/api/v1/sites/{nd1}/controlled-log?{span}")).status == 403

    # Each fill exported is noted as read by the admin; the export itself is audited, ids only.
    await world.services.access_log.flush()
    async with world.services.db.read() as s:
        read = (
            (await s.execute(select(AccessLogEntry.entity_id).where(AccessLogEntry.entity_type == "fill")))
            .scalars()
            .all()
        )
        exports = (
            (
                await s.execute(
                    select(AuditEvent)
                    .where(AuditEvent.action == "controlled_log.exported")
                    .order_by(AuditEvent.id)
                )
            )
            .scalars()
            .all()
        )
    assert {cii["id"], civ["id"], elsewhere["id"]} <= set(read)
    assert [(e.entity_id, e.detail["fills"]) for e in exports] == [
        (str(nd1), 2),
        (str(world.sites["ND-2"]), 1),
    ]
    assert "RX-CII" not in str([e.detail for e in exports])


async def test_the_controlled_substance_log_refuses_a_bad_range_and_an_unknown_site(world: World) -> None:
    admin = await world.login("admin")
    nd1 = world.sites["ND-1"]
    backwards = await admin.get(f"/api/v1/sites/{nd1}/controlled-log?from=2026-12-05&to=2026-12-01")
    assert backwards.status == 400
    assert (await admin.get(f"/api/v1/sites/{nd1}/controlled-log?from=2026-12-05")).status == 400
    assert (await admin.get("/api/v1/sites/9999/controlled-log?from=2026-12-01&to=2026-12-05")).status == 404


def _cli(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


async def test_tp_server_writes_the_controlled_substance_log(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db_args = ("--data-dir", str(tmp_path / "cli"), "--database-url", database_url)
    out = tmp_path / "controlled.csv"
    assert await asyncio.to_thread(cmd_migrate, _cli("migrate", *db_args)) == 0
    assert await asyncio.to_thread(
        cmd_admin, _cli("admin", *db_args, "site", "--code", "ND-1", "--name", "Hettinger", "--state", "ND")
    ) == 0  # fmt: skip

    async def controlled(site: str) -> int:
        args = _cli("audit", *db_args, "controlled", "--site", site, "--from", "2026-11-01", "--to",
                    "2026-11-30", "--out", str(out))  # fmt: skip
        return await asyncio.to_thread(cmd_audit, args)

    assert await controlled("ND-1") == 0
    assert out.read_text(encoding="utf-8").splitlines() == [
        "decided_at,site,rx_number,drug,strength,ndc,schedule,quantity_prescribed,quantity_counted,"
        "count_confirmed,decision,pharmacist,pharmacist_license,technician,fill_id"
    ]
    assert "0 controlled-substance fills of ND-1" in capsys.readouterr().err
    assert await controlled("NOPE") == 2
    assert "No site 'NOPE'" in capsys.readouterr().err


async def test_a_schedule_the_drug_reference_gives_later_counts_in_the_queue_the_count_and_the_log(
    world: World, tmp_path: Path
) -> None:
    tech = await world.device("tech_nd1")
    # Entered before any drug reference was loaded: the prescription names no schedule.
    made = await tech.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body("RX-OPIOID", SCHEDULE_II, drug="Hydrocodone/APAP")
    )
    assert made["dea_schedule"] is None
    await store.import_ndc(world.services.db, *write_sample(tmp_path / "ndc"))
    fill = await queued_fill(world, tech, made["id"], barcodes=[scan(SCHEDULE_II)], counted_quantity=60)
    rph = await world.login("nd_rph")
    row = next(r for r in (await rph.json("GET", "/api/v1/queue"))["fills"] if r["id"] == fill["id"])
    assert row["schedule"] == "CII"

    claimed = await claim(rph, fill)
    assert (await decide(rph, fill, approval(claimed))).status == 400
    await rph.step_up()
    assert (await decide(rph, fill, counted(claimed, "60"))).status == 200

    today = dt.datetime.now(dt.UTC).date()
    span = f"from={today - dt.timedelta(days=1)}&to={today + dt.timedelta(days=1)}"
    admin = await world.login("admin")
    text = await (await admin.get(f"/api/v1/sites/{world.sites['ND-1']}/controlled-log?{span}")).text()
    assert [(r["fill_id"], r["schedule"], r["count_confirmed"]) for r in log_rows(text)] == [
        (fill["id"], "CII", "60")
    ]
