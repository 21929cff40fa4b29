"""Data-entry verification (PV1): a prescription waits for a pharmacist before any fill, is verified or
returned with reasons, is corrected at the site and waits again; one of two racing pharmacists wins."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientWebSocketResponse
from sqlalchemy import select

from server.cli import cmd_admin, cmd_migrate, parser
from server.db.engine import Database
from server.db.models import AuditEvent, PrescriptionRevision, Site
from server.reference.store import import_ndc
from tests.api.test_fhir_intake import _integration, _send, contained_request
from tests.api.test_prescription_originals import fax_tiff, upload_original
from tests.api.test_step_up import _session, _stale_at
from tests.api.world import (
    User,
    World,
    build_world,
    checked,
    connect,
    new_fill_id,
    queued_fill,
    rx_body,
    verified,
)
from tests.ndc_directory import SCHEDULE_II, write_sample


@pytest.fixture
async def pv1_world(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    """The test world with its sites requiring PV1, as sites do by default."""
    w = await build_world(tmp_path, database_url, pv1=True)
    try:
        yield w
    finally:
        await w.close()


async def _entered(tech: User, rx_number: str = "RX1", **over: Any) -> dict[str, Any]:
    return dict(await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(rx_number, **over)))


async def _try_fill(tech: User, rx_id: int) -> tuple[int, dict[str, Any]]:
    resp = await tech.post("/api/v1/fills", json={"id": new_fill_id(), "prescription_id": rx_id})
    return resp.status, await resp.json()


async def _claim(rph: User, rx_id: int, status: int = 200) -> dict[str, Any]:
    return dict(await rph.json("POST", f"/api/v1/prescriptions/{rx_id}/claim", status))


async def _decide(rph: User, view: dict[str, Any], status: int = 200, **body: Any) -> dict[str, Any]:
    rx = view["prescription"]
    return dict(
        await rph.json(
            "POST",
            f"/api/v1/prescriptions/{rx['id']}/verification",
            status,
            json={"version": rx["version"], **body},
        )
    )


async def _events(ws: ClientWebSocketResponse, wanted: str, timeout: float = 5.0) -> dict[str, Any]:
    """The next event of a type on a websocket, skipping others."""
    while True:
        msg = await asyncio.wait_for(ws.receive_json(), timeout)
        if msg.get("type") == wanted:
            return dict(msg)


async def test_a_fill_is_refused_before_pv1_and_accepted_after(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx = await _entered(tech)
    assert rx["verification_state"] == "awaiting_verification"
    status, body = await _try_fill(tech, rx["id"])
    assert status == 409
    assert body["error"] == "prescription_not_verified"
    assert "data-entry verification" in body["message"]

    rph = await pv1_world.login("nd_rph")
    queue = await rph.json("GET", "/api/v1/queue")
    assert [(r["kind"], r["prescription_id"]) for r in queue["data_entry"]] == [("data_entry", rx["id"])]
    view = await _claim(rph, rx["id"])
    assert view["prescription"]["verification_state"] == "in_review"
    verified = await _decide(rph, view, outcome="verify")
    assert verified["prescription"]["verification_state"] == "verified"
    [record] = verified["verifications"]
    assert record["outcome"] == "verified"
    assert record["license"] == {"state": "ND", "number": "ND-nd_rph"}
    assert (await rph.json("GET", "/api/v1/queue"))["data_entry"] == []

    fill = await queued_fill(pv1_world, tech, rx["id"])
    assert fill["state"] == "queued"


async def test_a_returned_prescription_is_corrected_and_verified(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    site_ws = await connect(tech)
    rx = await _entered(tech, quantity=600)
    rph = await pv1_world.login("nd_rph")
    console_ws = await connect(rph)
    view = await _claim(rph, rx["id"])

    for bad in (
        {"outcome": "return"},
        {"outcome": "return", "reason_codes": ["other"]},
        {"outcome": "return", "reason_codes": ["wrong_quantity"], "version": 99},
        {"outcome": "verify", "reason_codes": ["wrong_quantity"]},
    ):
        resp = await rph.post(
            f"/api/v1/prescriptions/{rx['id']}/verification", json={"version": rx["version"], **bad}
        )
        assert resp.status in (400, 409), bad
    returned = await _decide(
        rph, view, outcome="return", reason_codes=["wrong_quantity"], note="Prescriber wrote 60, not 600"
    )
    assert returned["prescription"]["verification_state"] == "returned"
    event = await _events(site_ws, "prescription.returned")
    assert event["prescription_id"] == rx["id"]
    assert event["reason_codes"] == ["wrong_quantity"]
    # Ids, states and codes only: the note and the patient stay out of broadcast events.
    assert "Prescriber wrote" not in json.dumps(event)
    assert "Jane" not in json.dumps(event)
    await _events(console_ws, "prescription.returned")

    status, body = await _try_fill(tech, rx["id"])
    assert (status, body["error"]) == (409, "prescription_not_verified")
    listed = await tech.json("GET", "/api/v1/prescriptions")
    assert listed["prescriptions"][0]["verification_state"] == "returned"

    stale = await tech.request(
        "PATCH", f"/api/v1/prescriptions/{rx['id']}", json={"version": rx["version"] + 5, "quantity": 60}
    )
    assert stale.status == 409
    bad = await tech.request(
        "PATCH", f"/api/v1/prescriptions/{rx['id']}", json={"version": rx["version"], "quantity": -1}
    )
    assert bad.status == 400
    corrected = await tech.json(
        "PATCH", f"/api/v1/prescriptions/{rx['id']}", json={"version": rx["version"], "quantity": 60}
    )
    assert corrected["verification_state"] == "awaiting_verification"
    assert corrected["quantity"] == 60
    assert corrected["version"] == rx["version"] + 1
    await _events(console_ws, "prescription.corrected")

    view = await _claim(rph, rx["id"])
    assert view["revisions"][0]["changes"] == {"quantity": {"old": 600, "new": 60}}
    assert view["verifications"][0]["reason_codes"] == ["wrong_quantity"]
    verified = await _decide(rph, view, outcome="verify")
    assert verified["prescription"]["verification_state"] == "verified"
    assert [v["outcome"] for v in verified["verifications"]] == ["returned", "verified"]
    await queued_fill(pv1_world, tech, rx["id"])


async def test_editing_a_verified_prescription_sends_it_back_with_old_and_new_values(
    pv1_world: World,
) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx = await _entered(tech)
    assert (await verified(pv1_world, rx["id"]))["prescription"]["verification_state"] == "verified"

    corrected = await tech.json(
        "PATCH",
        f"/api/v1/prescriptions/{rx['id']}",
        json={"version": rx["version"], "directions": "Take one tablet by mouth daily"},
    )
    assert corrected["verification_state"] == "awaiting_verification"
    assert (await _try_fill(tech, rx["id"]))[0] == 409
    async with pv1_world.services.db.read() as s:
        [revision] = (await s.execute(select(PrescriptionRevision))).scalars().all()
        audit = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "prescription.corrected"))
        ).scalar_one()
    assert revision.previous_state == "verified"
    assert revision.changes == {
        "directions": {
            "old": "Take one tablet by mouth twice daily with meals",
            "new": "Take one tablet by mouth daily",
        }
    }
    # The trail names the revision and seals its values by digest; the values stay in the revision.
    assert audit.detail["revision_id"] == revision.id
    assert audit.detail["fields"] == ["directions"]
    assert "twice daily" not in json.dumps(audit.detail)
    nothing = await tech.request(
        "PATCH",
        f"/api/v1/prescriptions/{rx['id']}",
        json={"version": corrected["version"], "directions": "Take one tablet by mouth daily"},
    )
    assert (nothing.status, (await nothing.json())["error"]) == (400, "no_change")


async def test_two_pharmacists_racing_on_one_pv1_one_wins(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx = await _entered(tech)
    a, b = await pv1_world.login("nd_rph"), await pv1_world.login("both_rph")
    claims = await asyncio.gather(
        a.post(f"/api/v1/prescriptions/{rx['id']}/claim"), b.post(f"/api/v1/prescriptions/{rx['id']}/claim")
    )
    assert sorted(r.status for r in claims) == [200, 409]
    winner, loser = (a, b) if claims[0].status == 200 else (b, a)
    view = await winner.json("GET", f"/api/v1/prescriptions/{rx['id']}")
    # The loser's decision on the same version is refused while the winner's stands.
    decisions = await asyncio.gather(
        winner.post(
            f"/api/v1/prescriptions/{rx['id']}/verification",
            json={"version": view["prescription"]["version"], "outcome": "verify"},
        ),
        loser.post(
            f"/api/v1/prescriptions/{rx['id']}/verification",
            json={
                "version": view["prescription"]["version"],
                "outcome": "return",
                "reason_codes": ["wrong_drug"],
            },
        ),
    )
    assert [d.status for d in decisions] == [200, 409]
    assert (await decisions[1].json())["error"] in ("lease_lost", "already_decided")
    again = await winner.post(
        f"/api/v1/prescriptions/{rx['id']}/verification",
        json={"version": view["prescription"]["version"], "outcome": "verify"},
    )
    assert (again.status, (await again.json())["error"]) == (409, "already_decided")


async def test_a_lapsed_pv1_lease_returns_the_prescription_to_the_queue(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx = await _entered(tech)
    a, b = await pv1_world.login("nd_rph"), await pv1_world.login("both_rph")
    view = await _claim(a, rx["id"])
    await _claim(b, rx["id"], 409)
    pv1_world.clock.advance(pv1_world.services.config.lease_seconds + 1)
    assert await pv1_world.services.data_entry.expire_leases() == 1
    await _decide(a, view, 409, outcome="verify")
    await _decide(b, await _claim(b, rx["id"]), outcome="verify")


async def test_pv1_is_for_pharmacists_licensed_in_the_sites_state(pv1_world: World) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx = await _entered(tech)
    mn = await pv1_world.login("mn_rph")
    assert (await mn.json("GET", "/api/v1/queue"))["data_entry"] == []
    assert (await mn.post(f"/api/v1/prescriptions/{rx['id']}/claim")).status == 404
    other_tech = await pv1_world.device("tech_mn1")
    assert (await other_tech.get(f"/api/v1/prescriptions/{rx['id']}")).status == 404
    assert (await tech.post(f"/api/v1/prescriptions/{rx['id']}/claim")).status == 403


async def test_an_e_prescription_shows_every_difference_from_its_message(pv1_world: World) -> None:
    system = await _integration(pv1_world)
    await _send(system, "/api/v1/fhir/MedicationRequest", contained_request("FH100"), 201)
    tech = await pv1_world.device("tech_nd1")
    [rx] = (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"]
    assert rx["verification_state"] == "awaiting_verification"
    await tech.json(
        "PATCH", f"/api/v1/prescriptions/{rx['id']}", json={"version": rx["version"], "strength": "850 mg"}
    )
    rph = await pv1_world.login("nd_rph")
    view = await rph.json("GET", f"/api/v1/prescriptions/{rx['id']}")
    assert view["source"]["kind"] == "fhir"
    assert view["source"]["fields"]["strength"] == "500 mg"
    assert view["source"]["differences"] == ["strength"]
    assert view["prescription"]["strength"] == "850 mg"
    assert (view["reference"], view["reference_loaded"]) == (None, False)


async def test_an_entry_that_differs_from_its_message_is_verified_only_with_each_difference_confirmed(
    pv1_world: World,
) -> None:
    """The strength entered is not the message's: one key cannot verify it. The verification names the
    differing field, and the audit trail keeps that it was confirmed."""
    system = await _integration(pv1_world)
    await _send(system, "/api/v1/fhir/MedicationRequest", contained_request("FH100"), 201)
    tech = await pv1_world.device("tech_nd1")
    [rx] = (await tech.json("GET", "/api/v1/prescriptions"))["prescriptions"]
    await tech.json(
        "PATCH", f"/api/v1/prescriptions/{rx['id']}", json={"version": rx["version"], "strength": "850 mg"}
    )
    rph = await pv1_world.login("nd_rph")
    view = await _claim(rph, rx["id"])
    refused = await _decide(rph, view, 409, outcome="verify")
    assert refused["error"] == "differences_unconfirmed" and refused["detail"] == {"fields": ["strength"]}
    assert "differs from the e-prescription in strength" in refused["message"]
    other = await _decide(rph, view, 409, outcome="verify", differences_confirmed=["quantity"])
    assert other["error"] == "differences_unconfirmed"
    assert (await _claim(rph, rx["id"]))["prescription"]["verification_state"] == "in_review"

    done = await _decide(rph, view, outcome="verify", differences_confirmed=["strength"])
    assert done["prescription"]["verification_state"] == "verified"
    async with pv1_world.services.db.read() as s:
        audit = (
            await s.execute(select(AuditEvent).where(AuditEvent.action == "prescription.verified"))
        ).scalar_one()
    assert audit.detail["differences_confirmed"] == ["strength"]
    assert "850" not in json.dumps(audit.detail)


async def test_a_paper_prescription_is_verified_only_after_every_page_of_its_original_was_seen(
    pv1_world: World,
) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx = await _entered(tech)
    assert (await upload_original(tech, rx["id"], fax_tiff(2), "fax.tif")).status == 204
    rph = await pv1_world.login("nd_rph")
    view = await _claim(rph, rx["id"])
    first, second = [page["id"] for page in view["original"]]
    refused = await _decide(rph, view, 409, outcome="verify", original_seen=[first])
    assert refused["error"] == "original_unseen" and refused["detail"] == {"pages": [second]}
    done = await _decide(rph, view, outcome="verify", original_seen=[first, second])
    assert done["prescription"]["verification_state"] == "verified"


async def test_a_correction_made_while_the_pharmacist_holds_the_prescription_is_said_as_such(
    pv1_world: World,
) -> None:
    tech = await pv1_world.device("tech_nd1")
    rx = await _entered(tech)
    rph = await pv1_world.login("nd_rph")
    view = await _claim(rph, rx["id"])
    await tech.json(
        "PATCH", f"/api/v1/prescriptions/{rx['id']}", json={"version": rx["version"], "days_supply": 7}
    )
    refused = await _decide(rph, view, 409, outcome="verify")
    assert refused["error"] == "stale_version"
    assert refused["message"] == (
        "The site corrected the prescription since you opened it; open it again to review it."
    )


async def test_a_site_without_pv1_fills_at_once(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await _entered(tech)
    assert rx["verification_state"] == "not_required"
    await queued_fill(world, tech, rx["id"])
    admin = await world.login("admin")
    site = await admin.json(
        "POST", "/api/v1/sites", 201, json={"code": "ND-9", "name": "Regent Drug", "state": "ND"}
    )
    assert site["requires_pv1"] is True


async def test_the_pv1_view_names_the_ndc_and_the_patients_other_prescriptions(
    pv1_world: World, tmp_path: Path
) -> None:
    await import_ndc(pv1_world.services.db, *write_sample(tmp_path / "ndc"))
    tech = await pv1_world.device("tech_nd1")
    earlier = await _entered(tech, "RX1")
    rx = await _entered(tech, "RX2", directions="Take one tablet by mouth daily")
    await _entered(tech, "RX3", patient_name="John Other")
    rph = await pv1_world.login("nd_rph")
    view = await rph.json("GET", f"/api/v1/prescriptions/{rx['id']}")
    assert view["reference_loaded"] is True
    assert view["reference"]["ndc11"] == "00378-1805-01"
    assert view["reference"]["labeler"]
    assert [o["rx_number"] for o in view["other_prescriptions"]] == [earlier["rx_number"]]
    assert view["source"] == {"kind": "entered", "body": None, "fields": None, "differences": []}


async def test_turning_pv1_off_lets_new_prescriptions_be_filled_and_keeps_waiting_ones(
    pv1_world: World,
) -> None:
    tech = await pv1_world.device("tech_nd1")
    waiting = await _entered(tech, "RX1")
    await pv1_world.services.directory.set_requires_pv1(None, "ND-1", False)
    later = await _entered(tech, "RX2")
    assert later["verification_state"] == "not_required"
    await queued_fill(pv1_world, tech, later["id"])
    assert (await _try_fill(tech, waiting["id"]))[1]["error"] == "prescription_not_verified"


def test_an_admin_makes_a_site_without_pv1_and_turns_it_on(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db = ("--data-dir", str(tmp_path / "data"), "--database-url", database_url)
    site = ("--code", "ND-9", "--name", "Regent Drug", "--state", "ND")
    assert cmd_migrate(parser().parse_args(["migrate", *db])) == 0
    assert cmd_admin(parser().parse_args(["admin", *db, "site", *site, "--without-pv1"])) == 0
    assert cmd_admin(parser().parse_args(["admin", *db, "site-pv1", "--site", "ND-9", "on"])) == 0
    assert "PV1) on for prescriptions entered from now on" in capsys.readouterr().out
    assert cmd_admin(parser().parse_args(["admin", *db, "site-pv1", "--site", "XX", "off"])) == 2

    async def requires_pv1() -> bool:
        database = Database(database_url)
        try:
            async with database.read() as s:
                return bool(
                    (await s.execute(select(Site.requires_pv1).where(Site.code == "ND-9"))).scalar_one()
                )
        finally:
            await database.dispose()

    assert asyncio.run(requires_pv1()) is True


async def test_verifying_long_after_the_last_proof_asks_who_verifies(
    tmp_path: Path, database_url: str
) -> None:
    world = await build_world(
        tmp_path, database_url, pv1=True, step_up_after_seconds=1800, idle_lock_seconds=3600
    )
    try:
        tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
        rx = await _entered(tech)
        world.clock.advance(1801)
        view = await _claim(rph, rx["id"])
        asked = await _decide(rph, view, 403, outcome="verify")
        assert asked["error"] == "step_up_required" and asked["detail"]["reasons"] == ["session_age"]
        assert (await _claim(rph, rx["id"]))["prescription"][
            "verification_state"
        ] == "in_review"  # still held
        await rph.step_up()
        verified = await _decide(rph, view, outcome="verify")
        assert verified["prescription"]["verification_state"] == "verified"
    finally:
        await world.close()


async def test_a_prescription_s_pv1_record_says_what_deciding_it_asks_and_reading_it_uses_no_proof_up(
    tmp_path: Path, database_url: str
) -> None:
    """The console asks for the proof before it sends a PV1 decision: the record the claim answers and
    GET /api/v1/prescriptions/{id} say what verifying or returning it would ask, as for a fill."""
    world = await build_world(
        tmp_path, database_url, pv1=True, step_up_after_seconds=1800, idle_lock_seconds=3600
    )
    try:
        tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
        rx = await _entered(tech)
        # Signed in a moment ago: the proof is fresh, and nothing about the decision asks for another.
        view = await _claim(rph, rx["id"])
        said = view["step_up"]
        stale_at = dt.datetime.fromisoformat(said["stale_at"])
        assert (said["approve"], said["reject"], said["methods"]) == ([], [], ["password"])
        assert stale_at == _stale_at(await _session(world, "nd_rph"), world) > world.clock()
        assert (await rph.json("GET", f"/api/v1/prescriptions/{rx['id']}"))["step_up"] == said

        # Past that time the record still names it (the console adds the session's age itself), and a
        # decision asks for a proof.
        world.clock.advance(1801)
        # The claim's lease ran out meanwhile too (the lease sweeper may have put it back): claimed again.
        await _claim(rph, rx["id"])
        view = await rph.json("GET", f"/api/v1/prescriptions/{rx['id']}")
        assert dt.datetime.fromisoformat(view["step_up"]["stale_at"]) == stale_at < world.clock()
        asked = await _decide(rph, view, 403, **checked(view))
        assert asked["detail"]["reasons"] == ["session_age"]

        # Proved again: the record says so, and reading it, as a claim or a read, uses the proof up
        # no more than it did before.
        await rph.step_up()
        proved = await _session(world, "nd_rph")
        again = await _claim(rph, rx["id"])
        assert again["step_up"] == (await rph.json("GET", f"/api/v1/prescriptions/{rx['id']}"))["step_up"]
        renewed = dt.datetime.fromisoformat(again["step_up"]["stale_at"])
        assert renewed == _stale_at(proved, world) > world.clock()
        assert (await _session(world, "nd_rph")).stepped_up_at == proved.stepped_up_at
        done = await _decide(rph, again, **checked(again))
        assert done["prescription"]["verification_state"] == "verified" and done["step_up"] is None
        # The site's technician is told nothing of a pharmacist's proofs.
        assert (await tech.json("GET", f"/api/v1/prescriptions/{rx['id']}"))["step_up"] is None
    finally:
        await world.close()


async def test_verifying_a_schedule_ii_prescription_asks_who_verifies(
    pv1_world: World, tmp_path: Path
) -> None:
    """As approving a Schedule II fill does: the schedule as the drug reference gives it, though the
    prescription was entered naming none; returning it asks nothing more."""
    tech, rph = await pv1_world.device("tech_nd1"), await pv1_world.login("nd_rph")
    rx = await _entered(tech, ndc=SCHEDULE_II, drug="Hydrocodone/APAP", strength="5 mg/325 mg")
    await import_ndc(pv1_world.services.db, *write_sample(tmp_path / "ndc"))
    view = await _claim(rph, rx["id"])
    assert (view["step_up"]["approve"], view["step_up"]["reject"]) == (["schedule_ii"], [])
    asked = await _decide(rph, view, 403, **checked(view))
    assert asked["error"] == "step_up_required" and asked["detail"]["reasons"] == ["schedule_ii"]
    await rph.step_up()
    done = await _decide(rph, view, **checked(view))
    assert done["prescription"]["verification_state"] == "verified"
    async with pv1_world.services.db.read() as s:
        trail = (
            await s.execute(
                select(AuditEvent).where(
                    AuditEvent.entity_id == str(rx["id"]), AuditEvent.action == "prescription.verified"
                )
            )
        ).scalar_one()
    assert trail.detail["step_up"] == ["schedule_ii"]


async def test_a_site_that_requires_a_second_factor_says_so_in_its_prescriptions(pv1_world: World) -> None:
    admin = await pv1_world.login("admin")
    await admin.json(
        "POST", f"/api/v1/sites/{pv1_world.sites['ND-1']}/status", json={"require_second_factor": True}
    )
    tech, rph = await pv1_world.device("tech_nd1"), await pv1_world.login("nd_rph")
    view = await _claim(rph, (await _entered(tech))["id"])
    said = view["step_up"]
    # Either decision wants a second factor, and none is enrolled: no proof would do until one is.
    assert (said["approve"], said["reject"], said["methods"]) == (["site_policy"], ["site_policy"], [])
    refused = await _decide(rph, view, 403, outcome="return", reason_codes=["wrong_drug"])
    assert refused["error"] == "enrol_second_factor"
