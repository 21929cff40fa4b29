"""What stops a pharmacist approving a fill unseen or over a flag: the flags set when a fill is queued,
their acknowledgements, the views an approval names, and the history a refill is judged against."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from sqlalchemy import select

from demo import photos
from server.db.models import AuditEvent, Event
from tests.api.world import REQUIRED, User, World, approval, new_fill_id, photo, queued_fill, rx_body, upload

# The stock bottle's GS1 DataMatrix for the prescriptions' NDC 0378-1805-01, expiring 2029-12-31.
MATCHING_SCAN = "]d2010030378180501817291231"
DAY = 86400


async def _rx(tech: User, number: str, **over: Any) -> int:
    """A prescription with refills to spare: these tests fill some several times."""
    body = rx_body(number, **{"refills_authorized": 5, **over})
    return int((await tech.json("POST", "/api/v1/prescriptions", 201, json=body))["id"])


async def _clean_fill(world: World, tech: User, rx: int, seed: int = 0) -> dict[str, Any]:
    """A fill with nothing to flag: the right bottle scanned and the prescribed 60 counted."""
    return await queued_fill(world, tech, rx, barcodes=[MATCHING_SCAN], counted_quantity=60, seed=seed)


async def _claim(rph: User, fill: dict[str, Any]) -> dict[str, Any]:
    return dict((await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"])


def _codes(fill: dict[str, Any]) -> list[str]:
    return [f["code"] for f in fill["flags"]]


async def test_a_clean_fill_has_no_flags_and_a_short_count_must_be_acknowledged(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    clean = await _clean_fill(world, tech, await _rx(tech, "RX1"))
    assert clean["flags"] == []

    short = await queued_fill(
        world, tech, await _rx(tech, "RX2"), barcodes=[MATCHING_SCAN], counted_quantity=58, seed=1
    )
    assert short["flags"] == [{"code": "quantity_mismatch", "counted": 58.0, "prescribed": 60.0}]
    claimed = await _claim(rph, short)
    plain = {**approval(claimed), "acknowledgements": []}
    refused = await rph.json("POST", f"/api/v1/fills/{short['id']}/decision", 422, json=plain)
    assert refused["error"] == "flags_unacknowledged"
    assert refused["detail"]["missing"] == ["quantity_mismatch"]
    # Nothing was decided: the fill is still in the pharmacist's hands.
    assert (await rph.json("GET", f"/api/v1/fills/{short['id']}"))["state"] == "in_review"

    without_note = approval(claimed, reason="other")
    bad = await rph.json("POST", f"/api/v1/fills/{short['id']}/decision", 400, json=without_note)
    assert "note" in bad["message"]

    ack = {"flag": "quantity_mismatch", "reason": "partial_fill_documented", "note": "Owed 2, slip given"}
    decided = await rph.json(
        "POST", f"/api/v1/fills/{short['id']}/decision", json={**approval(claimed), "acknowledgements": [ack]}
    )
    assert decided["state"] == "approved"
    assert decided["decision"]["acknowledgements"] == [ack]
    assert [v["media_id"] for v in decided["decision"]["views_seen"]] == [m["id"] for m in claimed["media"]]

    # The trail says what was acknowledged and seen, without the note's words.
    async with world.services.db.read() as s:
        trail = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "fill.decided"))).scalars().all()
        )
    detail = trail[-1].detail
    assert detail["acknowledgements"] == [
        {"flag": "quantity_mismatch", "reason": "partial_fill_documented", "has_note": True}
    ]
    assert len(detail["views_seen"]) == 3 and "Owed" not in json.dumps(detail)
    # The decision names the licence it was made under: the pharmacist's for the site's state.
    licence = {"state": "ND", "number": "ND-nd_rph"}
    assert decided["decision"]["license"] == licence and detail["license"] == licence


async def test_a_count_video_counts_as_seen_only_once_played_nearly_to_its_end(
    world: World, tmp_path: Path
) -> None:
    """The server's rule, which the console learns from /api/v1/reasons: a video glanced at for a few
    seconds, or half played, was not seen."""
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    filmed = new_fill_id()
    rx = await _rx(tech, "RX1")
    clean = {"barcodes": [MATCHING_SCAN], "counted_quantity": 60}
    await tech.json("POST", "/api/v1/fills", 201, json={"id": filmed, "prescription_id": rx, **clean})
    for i, kind in enumerate(REQUIRED):
        assert (await upload(tech, filmed, kind, photo(kind, 700 + i))).status == 204
    video = tmp_path / "count.mp4"
    photos.count_video(video, seconds=1.0)
    assert (await upload(tech, filmed, "count_video", video.read_bytes(), "count.mp4")).status == 204
    claimed = await _claim(rph, await tech.json("POST", f"/api/v1/fills/{filmed}/submit"))
    share = (await rph.json("GET", "/api/v1/reasons"))["video_seen_fraction"]
    assert 0 < share < 1
    body = approval(claimed)
    [view] = [v for v in body["views_seen"] if v["media_id"] == next(
        m["id"] for m in claimed["media"] if m["kind"] == "count_video")]  # fmt: skip
    for played in (0.0, share - 0.05):
        view.update(seconds=30.0, played_fraction=played)
        refused = await rph.json("POST", f"/api/v1/fills/{filmed}/decision", 422, json=body)
        assert refused["error"] == "views_unseen" and refused["detail"]["missing"] == [view["media_id"]]
    view["played_fraction"] = share
    assert (await rph.json("POST", f"/api/v1/fills/{filmed}/decision", json=body))["state"] == "approved"


async def test_an_approval_must_name_every_photo_as_seen_but_a_rejection_need_not(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    fill = await _clean_fill(world, tech, await _rx(tech, "RX1"))
    claimed = await _claim(rph, fill)
    body = approval(claimed)
    vial = claimed["media"][2]
    body["views_seen"] = [v for v in body["views_seen"] if v["media_id"] != vial["id"]]
    refused = await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 422, json=body)
    assert refused["error"] == "views_unseen" and refused["detail"]["missing"] == [vial["id"]]
    # A photo listed with no time on screen was not seen either.
    body["views_seen"].append({"media_id": vial["id"], "seconds": 0})
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/decision", 422, json=body)

    rejected = await rph.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json={"version": claimed["version"], "outcome": "reject", "reason_codes": ["image_unclear"]},
    )
    assert rejected["state"] == "rejected"


async def test_each_kind_of_flag_is_set_when_the_fill_is_queued(world: World) -> None:
    tech = await world.device("tech_nd1")
    unscanned = await queued_fill(world, tech, await _rx(tech, "RX1"), counted_quantity=60)
    assert unscanned["flags"] == [{"code": "product_check", "result": "none"}]
    overridden = await queued_fill(
        world,
        tech,
        await _rx(tech, "RX2"),
        barcodes=[MATCHING_SCAN],
        counted_quantity=60,
        override_reason="Camera fogged; pills checked by hand",
        overridden_checks=[{"kind": "pills", "check": "blurry"}],
        seed=1,
    )
    assert overridden["flags"] == [{"code": "override", "checks": [{"kind": "pills", "check": "blurry"}]}]
    assert overridden["overridden_checks"] == [{"kind": "pills", "check": "blurry"}]
    uncounted = await queued_fill(world, tech, await _rx(tech, "RX3"), barcodes=[MATCHING_SCAN], seed=2)
    assert uncounted["flags"] == [{"code": "quantity_mismatch", "counted": None, "prescribed": 60.0}]


async def test_a_refill_before_most_of_the_days_supply_is_used_is_flagged(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await _rx(tech, "RX1")
    first = await _clean_fill(world, tech, rx)
    await rph.json("POST", f"/api/v1/fills/{first['id']}/decision", json=approval(await _claim(rph, first)))

    # Three days into a 30-day supply: the same prescription again.
    world.clock.advance(3 * DAY)
    early = await _clean_fill(world, tech, rx, seed=1)
    assert _codes(early) == ["refill_too_soon"]
    flag = early["flags"][0]
    assert flag["previous_fill_id"] == first["id"]
    assert (flag["days_supply"], flag["threshold_percent"], round(flag["elapsed_days"])) == (30, 75.0, 3)

    # The same patient's drug on a new prescription (another prescriber, another strength) counts too.
    other = await _rx(tech, "RX2", strength="850 mg", prescriber="Dr. Other")
    assert _codes(await _clean_fill(world, tech, other, seed=2)) == ["refill_too_soon"]
    # So does one typed in capitals, as a pharmacy system's export often has them.
    shouted = await _rx(tech, "RX4", patient_name="JANE Q. PATIENT", drug="METFORMIN HCL")
    assert _codes(await _clean_fill(world, tech, shouted, seed=5)) == ["refill_too_soon"]
    # Another patient's does not.
    stranger = await _rx(tech, "RX3", patient_name="John Other")
    assert _codes(await _clean_fill(world, tech, stranger, seed=3)) == []

    # Past 75 % of the supply (day 23 of 30), a refill is on time.
    world.clock.advance(20 * DAY)
    assert _codes(await _clean_fill(world, tech, rx, seed=4)) == []


async def test_a_fill_waiting_when_another_of_the_drug_is_approved_becomes_a_refill_too_soon(
    world: World,
) -> None:
    """Two fills of the patient's drug queued together (the same prescription twice, or another site's):
    neither was too soon when queued, but once one is approved the other would be a second supply."""
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await _rx(tech, "RX1")
    first = await _clean_fill(world, tech, rx)
    again = await _clean_fill(world, tech, rx, seed=1)
    nd2 = await world.device("tech_nd2")
    elsewhere = await _clean_fill(world, nd2, await _rx(nd2, "RX2", strength="850 mg"), seed=2)
    other_patient = await _clean_fill(world, tech, await _rx(tech, "RX3", patient_name="John Other"), seed=3)
    assert _codes(again) == _codes(elsewhere) == []
    # A second pharmacist has the second fill open when the first is approved.
    both = await world.login("both_rph")
    held = await _claim(both, again)
    await rph.json("POST", f"/api/v1/fills/{first['id']}/decision", json=approval(await _claim(rph, first)))

    stale = await both.json("POST", f"/api/v1/fills/{again['id']}/decision", 409, json=approval(held))
    assert stale["error"] == "stale_version"
    for fill in (held, elsewhere):
        now = await both.json("GET", f"/api/v1/fills/{fill['id']}")
        assert _codes(now) == ["refill_too_soon"] and now["version"] == fill["version"] + 1
        assert now["flags"][0]["previous_fill_id"] == first["id"]
        assert now["flags"][0]["elapsed_days"] == 0
    assert _codes(await both.json("GET", f"/api/v1/fills/{other_patient['id']}")) == []

    reopened = await _claim(both, again)
    unacknowledged = {**approval(reopened), "acknowledgements": []}
    refused = await both.json("POST", f"/api/v1/fills/{again['id']}/decision", 422, json=unacknowledged)
    assert refused["detail"]["missing"] == ["refill_too_soon"]
    # The consoles heard of it, with ids only; the trail says why, as the server's doing.
    async with world.services.db.read() as s:
        events = (await s.execute(select(Event).where(Event.type == "fill.flagged"))).scalars().all()
        trail = (
            (await s.execute(select(AuditEvent).where(AuditEvent.action == "fill.flagged"))).scalars().all()
        )
    assert sorted(e.payload["fill_id"] for e in events) == sorted([again["id"], elsewhere["id"]])
    assert "Jane" not in json.dumps([e.payload for e in events])
    assert {(r.entity_id, r.actor, r.detail["previous_fill_id"]) for r in trail} == {
        (again["id"], "system", first["id"]),
        (elsewhere["id"], "system", first["id"]),
    }
    # A rejection supplies nothing: it flags nothing.
    rejected = await _clean_fill(world, tech, await _rx(tech, "RX4", patient_name="Ann Third"), seed=4)
    waiting = await _clean_fill(world, tech, await _rx(tech, "RX5", patient_name="Ann Third"), seed=5)
    reject = {
        "version": (await _claim(rph, rejected))["version"],
        "outcome": "reject",
        "reason_codes": ["image_unclear"],
    }
    await rph.json("POST", f"/api/v1/fills/{rejected['id']}/decision", json=reject)
    assert _codes(await rph.json("GET", f"/api/v1/fills/{waiting['id']}")) == []


async def test_of_two_approvals_of_the_patient_s_drug_at_once_the_second_finds_the_flag(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await _rx(tech, "RX1")
    fills = [await _clean_fill(world, tech, rx, seed=n) for n in range(2)]
    pharmacists = [await world.login("nd_rph"), await world.login("both_rph")]
    bodies = [approval(await _claim(p, f)) for p, f in zip(pharmacists, fills, strict=True)]
    answers = await asyncio.gather(
        *(
            p.request("POST", f"/api/v1/fills/{f['id']}/decision", json=b)
            for p, f, b in zip(pharmacists, fills, bodies, strict=True)
        )
    )
    assert sorted(a.status for a in answers) == [200, 409]
    refused = next(a for a in answers if a.status == 409)
    assert (await refused.json())["error"] == "stale_version"


async def test_the_verification_view_shows_the_history_and_the_queue_what_each_fill_is(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await _rx(tech, "RX1")
    first = await _clean_fill(world, tech, rx)
    await rph.json("POST", f"/api/v1/fills/{first['id']}/decision", json=approval(await _claim(rph, first)))
    # The same patient's same drug on another prescription; another patient's is no part of the history.
    other = await _clean_fill(world, tech, await _rx(tech, "RX2", strength="1000 mg"), seed=2)
    await _clean_fill(world, tech, await _rx(tech, "RX3", patient_name="John Other"), seed=3)
    world.clock.advance(28 * DAY)
    second = await _clean_fill(world, tech, rx, seed=1)
    latest = await _clean_fill(world, tech, rx, seed=4)
    rph = await world.login("nd_rph")  # four weeks on, the console locked long ago

    queue = await rph.json("GET", "/api/v1/queue")
    row = next(r for r in queue["fills"] if r["id"] == second["id"])
    assert (row["rx_number"], row["drug"], row["strength"], row["patient_initials"]) == (
        "RX1",
        "Metformin HCl",
        "500 mg",
        "J. P.",
    )
    assert row["flags"] == [] and "patient_name" not in row

    detail = await rph.json("GET", f"/api/v1/fills/{second['id']}")
    assert [m["kind"] for m in detail["media"]] == ["stock_bottle", "pills", "vial_label"]
    # This prescription's other fills, newest first, then the same patient's same drug on the others.
    earlier = detail["history"]["same_prescription"]
    assert [(e["fill_id"], e["outcome"]) for e in earlier] == [(latest["id"], None), (first["id"], "approve")]
    assert earlier[1]["pharmacist"]["name"] == "Nd Rph"
    assert earlier[1]["days_supply"] == 30 and earlier[1]["counted_quantity"] == 60.0
    assert [e["fill_id"] for e in detail["history"]["same_patient_drug"]] == [other["id"]]
    reference = detail["history"]["last_approved_pills"]
    pills = next(m for m in first["media"] if m["kind"] == "pills")
    assert reference["fill_id"] == first["id"] and reference["media"]["id"] == pills["id"]
    # A technician's view of the fill carries no history of the patient's other fills.
    assert "history" not in await tech.json("GET", f"/api/v1/fills/{second['id']}")


async def test_events_carry_the_flags_and_nothing_about_the_patient(world: World) -> None:
    tech = await world.device("tech_nd1")
    fill = await queued_fill(world, tech, await _rx(tech, "RX1"), counted_quantity=12)
    async with world.services.db.read() as s:
        events = (await s.execute(select(Event).where(Event.type == "fill.queued"))).scalars().all()
    payload = next(e.payload for e in events if e.payload["fill_id"] == fill["id"])
    assert [f["code"] for f in payload["flags"]] == ["product_check", "quantity_mismatch"]
    text = json.dumps(payload)
    assert "Jane" not in text and "RX1" not in text and "Metformin" not in text


async def test_reasons_name_the_acknowledgements_and_the_undo_window(world: World) -> None:
    rph = await world.login("nd_rph")
    reasons = await rph.json("GET", "/api/v1/reasons")
    assert "verified_visually" in [r["code"] for r in reasons["acknowledgement_reasons"]]
    assert set(reasons["flag_labels"]) >= {"quantity_mismatch", "reused_photo", "refill_too_soon"}
    assert reasons["undo_seconds"] == 4.0


async def test_the_reference_photo_is_the_product_s_last_approved_fill_the_viewer_may_see(
    world: World,
) -> None:
    """The reference pills photo is the newest approved fill of the same NDC at a site the viewer may
    see: a Minnesota fill is a North Dakota pharmacist's reference only once they are licensed there."""
    nd_tech, mn_tech = await world.device("tech_nd1"), await world.device("tech_mn1")
    nd_rph = await world.login("nd_rph")
    nd_first = await _clean_fill(world, nd_tech, await _rx(nd_tech, "RX1"))
    await nd_rph.json(
        "POST", f"/api/v1/fills/{nd_first['id']}/decision", json=approval(await _claim(nd_rph, nd_first))
    )
    world.clock.advance(DAY)
    mn_rph = await world.login("mn_rph")
    mn_first = await _clean_fill(world, mn_tech, await _rx(mn_tech, "RX9", patient_name="Mary Other"), seed=1)
    await mn_rph.json(
        "POST", f"/api/v1/fills/{mn_first['id']}/decision", json=approval(await _claim(mn_rph, mn_first))
    )
    world.clock.advance(DAY)
    waiting = await _clean_fill(world, nd_tech, await _rx(nd_tech, "RX2", patient_name="Ann Third"), seed=3)
    nd_rph = await world.login("nd_rph")  # a day on, the console locked long ago

    def reference_of(detail: dict[str, Any]) -> str:
        return str(detail["history"]["last_approved_pills"]["fill_id"])

    assert reference_of(await nd_rph.json("GET", f"/api/v1/fills/{waiting['id']}")) == nd_first["id"]
    both = await world.login("both_rph")
    assert reference_of(await both.json("GET", f"/api/v1/fills/{waiting['id']}")) == mn_first["id"]
    admin = await world.login("admin")
    assert reference_of(await admin.json("GET", f"/api/v1/fills/{waiting['id']}")) == mn_first["id"]
    # Another product has no approved fill yet, so no reference.
    other_rx = await nd_tech.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body("RX5", ndc="0093-7214-01")
    )
    other = await queued_fill(world, nd_tech, int(other_rx["id"]), counted_quantity=60, seed=4)
    assert (await nd_rph.json("GET", f"/api/v1/fills/{other['id']}"))["history"][
        "last_approved_pills"
    ] is None
