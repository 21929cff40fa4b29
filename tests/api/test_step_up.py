"""Positive identification at the decision: overriding a product-check flag, approving a Schedule II
drug, deciding long after the last proof and deciding a fill of a site that requires a second factor
ask the pharmacist to prove who they are again; the server refuses until they have."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from sqlalchemy import select

from server.db.models import AuditEvent, ConsoleSession
from server.db.models import User as DbUser
from server.reference import store
from tests.api.test_second_factor import enrol_totp, next_code, password_only
from tests.api.world import PASSWORD, User, World, approval, build_world, queued_fill, rx_body
from tests.ndc_directory import PRESCRIBED, SCHEDULE_II, scan, write_sample

REJECTION = {"outcome": "reject", "reason_codes": ["image_unclear"]}


async def _rx(tech: User, number: str, ndc: str = PRESCRIBED, **over: Any) -> int:
    return int(
        (await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body(number, ndc, **over)))["id"]
    )


async def _claimed(world: World, rph: User, tech: User, rx: int, **fill: Any) -> dict[str, Any]:
    queued = await queued_fill(world, tech, rx, **fill)
    return dict((await rph.json("POST", f"/api/v1/fills/{queued['id']}/claim"))["fill"])


def _clean(ndc: str = PRESCRIBED) -> dict[str, Any]:
    """The prescribed bottle scanned and the prescribed count: nothing to flag."""
    return {"barcodes": [scan(ndc)], "counted_quantity": 60}


async def _decision_trail(world: World, fill_id: str) -> dict[str, Any]:
    async with world.services.db.read() as s:
        event = await s.scalar(
            select(AuditEvent).where(AuditEvent.entity_id == fill_id, AuditEvent.action == "fill.decided")
        )
    assert event is not None
    return dict(event.detail)


async def _session(world: World, username: str) -> ConsoleSession:
    """The user's newest console session, as the server keeps it."""
    async with world.services.db.read() as s:
        row = await s.scalar(
            select(ConsoleSession)
            .join(DbUser, DbUser.id == ConsoleSession.user_id)
            .where(DbUser.username == username)
            .order_by(ConsoleSession.id.desc())
            .limit(1)
        )
    assert row is not None
    return row


def _stale_at(session: ConsoleSession, world: World) -> dt.datetime:
    """When the session's last proof grows too old for a decision (TP_STEP_UP_AFTER_MINUTES after it)."""
    assert session.proved_at is not None
    return session.proved_at + dt.timedelta(seconds=world.services.config.step_up_after_seconds)


async def test_overriding_a_product_check_flag_asks_for_the_password_once_per_decision(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await _rx(tech, "RX1", refills_authorized=5)
    fill = await _claimed(world, rph, tech, rx)  # no barcode scanned: a product-check flag
    assert "product_check" in [f["code"] for f in fill["flags"]]
    asked = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=approval(fill))
    assert asked["error"] == "step_up_required"
    assert asked["detail"] == {"reasons": ["product_check"], "methods": ["password"]}
    # Nothing was decided: the fill is still in the pharmacist's hands.
    assert (await rph.json("GET", f"/api/v1/fills/{fill['id']}"))["state"] == "in_review"

    wrong = await rph.json("POST", "/api/v1/session/proof", 401, json={"password": "not-the-password"})
    assert wrong["error"] == "bad_proof"
    proved = await rph.json("POST", "/api/v1/session/proof", json={"password": PASSWORD})
    assert proved["stepped_up"] is True
    decided = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(fill))
    assert decided["state"] == "approved"
    assert (await _decision_trail(world, fill["id"]))["step_up"] == ["product_check"]

    # The proof was used by that decision: the next override asks again. A rejection does not.
    second = await _claimed(world, rph, tech, rx)
    await rph.json("POST", f"/api/v1/fills/{second['id']}/decision", 403, json=approval(second))
    rejected = await rph.json(
        "POST", f"/api/v1/fills/{second['id']}/decision", json={"version": second["version"], **REJECTION}
    )
    assert rejected["state"] == "rejected"
    # A fill with nothing flagged is approved without a word.
    clean = await _claimed(world, rph, tech, rx, **_clean())
    await rph.json("POST", f"/api/v1/fills/{clean['id']}/decision", json=approval(clean))


async def test_with_a_second_factor_enrolled_only_the_second_factor_steps_up(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    app = await enrol_totp(rph)
    fill = await _claimed(world, rph, tech, await _rx(tech, "RX1"))
    asked = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=approval(fill))
    assert asked["detail"]["methods"] == ["totp", "recovery_code"]
    assert (await rph.json("POST", "/api/v1/session/proof", json={"password": PASSWORD}))[
        "stepped_up"
    ] is False
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=approval(fill))
    await rph.json("POST", "/api/v1/session/proof", json={"totp": next_code(app)})
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(fill))


async def test_approving_a_schedule_ii_drug_asks_even_when_the_schedule_came_later(
    world: World, tmp_path: Path
) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    # Entered before any drug reference was loaded: the prescription names no schedule.
    opioid = await _rx(tech, "RX1", SCHEDULE_II, drug="Hydrocodone/APAP", strength="5 mg/325 mg")
    await store.import_ndc(world.services.db, *write_sample(tmp_path / "ndc"))
    fill = await _claimed(world, rph, tech, opioid, **_clean(SCHEDULE_II))
    assert fill["flags"] == [] and fill["prescription"]["dea_schedule"] is None
    # Schedule II by the reference: the approval confirms the count too.
    counted = {**approval(fill), "count_confirmation": {"count": 60}}
    asked = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=counted)
    assert asked["detail"]["reasons"] == ["schedule_ii"]
    await rph.step_up()
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=counted)
    assert (await _decision_trail(world, fill["id"]))["step_up"] == ["schedule_ii"]


async def test_deciding_long_after_the_last_proof_asks_again(tmp_path: Path, database_url: str) -> None:
    world = await build_world(tmp_path, database_url, step_up_after_seconds=1800, idle_lock_seconds=3600)
    try:
        tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
        fill = await _claimed(world, rph, tech, await _rx(tech, "RX1"), **_clean())
        world.clock.advance(1801)
        # The lease lapsed long ago: claimed again, whether or not the server's sweep returned it first.
        fill = dict((await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"])
        body = {"version": fill["version"], **REJECTION}
        asked = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=body)
        assert asked["detail"]["reasons"] == ["session_age"]
        await rph.step_up()
        await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=body)
        # The proof renewed the session's: the next decision goes through.
        other = await _claimed(world, rph, tech, await _rx(tech, "RX2"), **_clean())
        await rph.json("POST", f"/api/v1/fills/{other['id']}/decision", json=approval(other))
    finally:
        await world.close()


async def test_a_site_that_requires_a_second_factor_is_decided_only_with_one(world: World) -> None:
    admin = await world.login("admin")
    site = await admin.json(
        "POST", f"/api/v1/sites/{world.sites['ND-1']}/status", json={"require_second_factor": True}
    )
    assert site["require_second_factor"] is True and site["status"] == "active"
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await _rx(tech, "RX1", refills_authorized=5)
    fill = await _claimed(world, rph, tech, rx, **_clean())
    refused = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=approval(fill))
    assert refused["error"] == "enrol_second_factor"

    app = await enrol_totp(rph)  # enrolling proves the factor in this session
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(fill))
    # A session signed in with the second factor decides the site's fills without asking again.
    later, _ = await password_only(world, "nd_rph")
    await later.json("POST", "/api/v1/session/second-factor", json={"totp": next_code(app)})
    again = await _claimed(world, later, tech, rx, **_clean(), seed=99)
    await later.json("POST", f"/api/v1/fills/{again['id']}/decision", json=approval(again))


async def test_a_fill_s_record_says_what_deciding_it_asks_and_reading_it_uses_no_proof_up(
    world: World,
) -> None:
    """The console asks for the proof when the pharmacist decides, before it holds the decision for Undo:
    the record the claim answers and GET /api/v1/fills/{id} say what a decision would ask for."""
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await _rx(tech, "RX1", refills_authorized=5)
    fill = await _claimed(world, rph, tech, rx)  # no barcode scanned: a product-check flag
    signed_in = await _session(world, "nd_rph")
    said = fill["step_up"]
    assert {k: v for k, v in said.items() if k != "stale_at"} == {
        "approve": ["product_check"],
        "reject": [],
        "methods": ["password"],
    }
    assert dt.datetime.fromisoformat(said["stale_at"]) == _stale_at(signed_in, world)
    assert (await rph.json("GET", f"/api/v1/fills/{fill['id']}"))["step_up"] == said

    # Proved before the decision is held: reading the fill again, as a claim or a read, uses nothing up.
    world.clock.advance(5)
    await rph.step_up()
    proved = await _session(world, "nd_rph")
    assert proved.stepped_up_at is not None
    again = dict((await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"])
    read = await rph.json("GET", f"/api/v1/fills/{fill['id']}")
    assert again["step_up"] == read["step_up"]
    assert dt.datetime.fromisoformat(read["step_up"]["stale_at"]) == _stale_at(proved, world)
    assert (await _session(world, "nd_rph")).stepped_up_at == proved.stepped_up_at
    # Sent when the longest Undo window ran out: the proof is still good for it.
    world.clock.advance(30)
    decided = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(again))
    assert decided["state"] == "approved" and decided["step_up"] is None
    assert (await _decision_trail(world, fill["id"]))["step_up"] == ["product_check"]

    # A fill with nothing flagged asks for nothing; the site's technician is told nothing of it.
    clean = await _claimed(world, rph, tech, rx, **_clean())
    assert (clean["step_up"]["approve"], clean["step_up"]["reject"]) == ([], [])
    assert (await tech.json("GET", f"/api/v1/fills/{clean['id']}"))["step_up"] is None


async def test_a_site_that_requires_a_second_factor_says_so_in_its_fills_until_one_is_proved(
    world: World,
) -> None:
    admin = await world.login("admin")
    await admin.json(
        "POST", f"/api/v1/sites/{world.sites['ND-1']}/status", json={"require_second_factor": True}
    )
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await _rx(tech, "RX1", refills_authorized=5)
    fill = await _claimed(world, rph, tech, rx, **_clean())
    said = fill["step_up"]
    # Either decision wants a second factor, and none is enrolled: no proof would do until one is.
    assert (said["approve"], said["reject"], said["methods"]) == (["site_policy"], ["site_policy"], [])
    refused = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=approval(fill))
    assert refused["error"] == "enrol_second_factor"

    await enrol_totp(rph)  # enrolling proves the factor in this session: the site's policy is met
    said = (await rph.json("GET", f"/api/v1/fills/{fill['id']}"))["step_up"]
    assert (said["approve"], said["reject"], said["methods"]) == ([], [], ["totp", "recovery_code"])
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", json=approval(fill))


async def test_a_fill_s_record_says_when_the_session_s_last_proof_grows_too_old(
    tmp_path: Path, database_url: str
) -> None:
    world = await build_world(tmp_path, database_url, step_up_after_seconds=1800, idle_lock_seconds=3600)
    try:
        tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
        fill = await _claimed(world, rph, tech, await _rx(tech, "RX1"), **_clean())
        said = fill["step_up"]
        assert (said["approve"], said["reject"]) == ([], [])
        stale_at = dt.datetime.fromisoformat(said["stale_at"])
        assert stale_at == _stale_at(await _session(world, "nd_rph"), world)
        # Past that time the record still names it (the console adds the session's age itself), and a
        # decision asks for a proof.
        world.clock.advance(1801)
        fill = dict((await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"])
        assert dt.datetime.fromisoformat(fill["step_up"]["stale_at"]) == stale_at < world.clock()
        body = {"version": fill["version"], **REJECTION}
        asked = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 403, json=body)
        assert asked["detail"]["reasons"] == ["session_age"]
        await rph.step_up()
        other = await _claimed(world, rph, tech, await _rx(tech, "RX2"), **_clean())
        renewed = dt.datetime.fromisoformat(other["step_up"]["stale_at"])
        assert renewed == _stale_at(await _session(world, "nd_rph"), world) > world.clock()
    finally:
        await world.close()
