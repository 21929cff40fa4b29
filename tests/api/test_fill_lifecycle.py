"""The life of a fill through the API: create, photograph, submit, claim, decide, resubmit."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from demo import photos
from server.db.models import AccessLogEntry
from server.fills.lifecycle import FillService
from tests.api.world import (
    REQUIRED,
    FullDisk,
    User,
    World,
    approval,
    new_fill_id,
    photo,
    queued_fill,
    rx_body,
    upload,
)


async def _rx(world: World, tech: str = "tech_nd1", number: str = "RX100", **over: object) -> int:
    user = await world.device(tech)
    body = await user.json("POST", "/api/v1/prescriptions", 201, json=rx_body(number, **over))
    return int(body["id"])


async def _rejected_fill(world: World, tech: User, rx: int, **decision: Any) -> tuple[dict[str, Any], User]:
    """A fill queued by tech and rejected by nd_rph with the decision's reasons; (the fill, nd_rph)."""
    fill = await queued_fill(world, tech, rx)
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await rph.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json={"version": claimed["version"], "outcome": "reject", **decision},
    )
    return fill, rph


async def test_each_queue_row_counts_its_fill_s_photos_and_videos(world: World, tmp_path: Path) -> None:
    tech = await world.device("tech_nd1")
    filmed = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": filmed, "prescription_id": await _rx(world)})
    for i, kind in enumerate(REQUIRED):
        assert (await upload(tech, filmed, kind, photo(kind, 900 + i))).status == 204
    video = tmp_path / "count.mp4"
    photos.count_video(video, seconds=1.0)
    assert (await upload(tech, filmed, "count_video", video.read_bytes(), "count.mp4")).status == 204
    await tech.json("POST", f"/api/v1/fills/{filmed}/submit")
    plain = (await queued_fill(world, tech, await _rx(world, number="RX101")))["id"]

    rows = {
        row["id"]: row for row in (await (await world.login("nd_rph")).json("GET", "/api/v1/queue"))["fills"]
    }
    assert (rows[filmed]["images"], rows[filmed]["videos"]) == (len(REQUIRED), 1)
    assert (rows[plain]["images"], rows[plain]["videos"]) == (len(REQUIRED), 0)


async def test_submitted_fill_is_queued_and_approved_by_a_licensed_pharmacist(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await _rx(world)
    fill = await queued_fill(world, tech, rx)
    assert fill["state"] == "queued"
    assert {m["kind"] for m in fill["media"]} == set(REQUIRED)

    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", "/api/v1/queue/claim-next"))["fill"]
    assert claimed["id"] == fill["id"] and claimed["state"] == "in_review"
    assert claimed["prescription"]["patient_name"] == "Jane Q. Patient"
    await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    decided = await rph.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json=approval(claimed),
    )
    assert decided["state"] == "approved"
    assert decided["decision"]["pharmacist"]["name"] == "Nd Rph"

    seen = await tech.json("GET", f"/api/v1/fills/{fill['id']}")
    assert seen["state"] == "approved"


async def _fill_reads(world: World, fill_id: str) -> int:
    """How many reads of the fill's record the access log holds."""
    await world.services.access_log.flush()
    async with world.services.db.read() as s:
        where = (AccessLogEntry.entity_type == "fill", AccessLogEntry.entity_id == fill_id)
        return int((await s.execute(select(func.count()).where(*where))).scalar_one())


async def test_a_claim_asked_to_return_minimal_answers_the_queue_row_and_reads_nothing_of_the_patient(
    world: World,
) -> None:
    tech = await world.device("tech_nd1")
    first = await queued_fill(world, tech, await _rx(world))
    second = await queued_fill(world, tech, await _rx(world, number="RX101"), seed=1)
    rph = await world.login("nd_rph")

    # The preference among others, with a parameter of its own, as RFC 7240 writes them.
    resp = await rph.post(
        "/api/v1/queue/claim-next", headers={"Prefer": "handling=lenient, RETURN=minimal; x=1"}
    )
    claimed = (await resp.json())["fill"]
    assert resp.status == 200 and resp.headers["Preference-Applied"] == "return=minimal"
    assert (claimed["id"], claimed["state"]) == (first["id"], "in_review")
    assert claimed["version"] == first["version"] + 1 and claimed["lease_expires_at"]
    assert claimed["claimed_by"] is not None and claimed["site"]["code"] == "ND-1"
    assert not {"prescription", "media", "technician", "history"} & set(claimed)
    assert await _fill_reads(world, first["id"]) == 0

    # The same claim as a whole answer makes: the record read next shows it; claiming it again is the same.
    detail = await rph.json("GET", f"/api/v1/fills/{first['id']}")
    assert (detail["version"], detail["claimed_by"]) == (claimed["version"], claimed["claimed_by"])
    assert await _fill_reads(world, first["id"]) == 1
    again = await rph.post(f"/api/v1/fills/{first['id']}/claim", headers={"Prefer": "return=minimal"})
    assert (await again.json())["fill"]["version"] == claimed["version"]
    await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    await rph.json("POST", f"/api/v1/fills/{first['id']}/decision", json=approval(detail))

    # Without the preference (or with another), the whole record, as before.
    whole = await rph.post(f"/api/v1/fills/{second['id']}/claim", headers={"Prefer": "return=representation"})
    body = (await whole.json())["fill"]
    assert "Preference-Applied" not in whole.headers
    assert body["prescription"]["patient_name"] == "Jane Q. Patient" and len(body["media"]) == len(REQUIRED)
    assert await _fill_reads(world, second["id"]) == 1


async def test_rejected_fill_returns_to_technician_with_reason_and_can_be_resubmitted(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await _rx(world)
    fill, rph = await _rejected_fill(
        world, tech, rx, reason_codes=["wrong_quantity"], note="Counted 58, prescription says 60."
    )

    seen = await tech.json("GET", f"/api/v1/fills/{fill['id']}")
    assert seen["state"] == "rejected"
    assert seen["decision"]["reason_codes"] == ["wrong_quantity"]
    assert seen["decision"]["note"] == "Counted 58, prescription says 60."

    retry_id = new_fill_id()
    retry = await tech.json(
        "POST",
        "/api/v1/fills",
        201,
        json={"id": retry_id, "prescription_id": rx, "previous_fill_id": fill["id"]},
    )
    assert retry["previous_fill_id"] == fill["id"]
    again = await tech.json(
        "POST",
        "/api/v1/fills",
        409,
        json={"id": new_fill_id(), "prescription_id": rx, "previous_fill_id": fill["id"]},
    )
    assert again["error"] == "already_resubmitted"
    for kind in REQUIRED:
        assert (await upload(tech, retry_id, kind, photo(kind, 99))).status == 204
    await tech.json("POST", f"/api/v1/fills/{retry_id}/submit")
    claimed = (await rph.json("POST", f"/api/v1/fills/{retry_id}/claim"))["fill"]
    assert [e["fill_id"] for e in claimed["earlier_rejections"]] == [fill["id"]]
    assert claimed["earlier_rejections"][0]["reason_codes"] == ["wrong_quantity"]


async def test_a_resubmission_keeps_the_priority_of_the_fill_it_replaces_unless_told_otherwise(
    world: World,
) -> None:
    """The patient waited at the counter for the first fill and is still waiting for the retake."""
    tech = await world.device("tech_nd1")
    rx = await _rx(world, refills_authorized=5)
    waiting = await queued_fill(world, tech, rx, priority="waiting")
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{waiting['id']}/claim"))["fill"]
    reject = {"version": claimed["version"], "outcome": "reject", "reason_codes": ["image_unclear"]}
    await rph.json("POST", f"/api/v1/fills/{waiting['id']}/decision", json=reject)

    retake = {"id": new_fill_id(), "prescription_id": rx, "previous_fill_id": waiting["id"]}
    assert (await tech.json("POST", "/api/v1/fills", 201, json=retake))["priority"] == "waiting"
    plain = {"id": new_fill_id(), "prescription_id": rx}
    assert (await tech.json("POST", "/api/v1/fills", 201, json=plain))["priority"] == "routine"
    # Said anew, the site's word stands.
    first, _ = await _rejected_fill(world, tech, rx, reason_codes=["label_error"])
    told = {**retake, "id": new_fill_id(), "previous_fill_id": first["id"], "priority": "delivery"}
    assert (await tech.json("POST", "/api/v1/fills", 201, json=told))["priority"] == "delivery"


async def test_create_and_submit_answer_with_the_fill_as_a_later_read_shows_it(world: World) -> None:
    # The answers are built from the writing transaction's own rows: they must not differ from a read.
    tech = await world.device("tech_nd1")
    rx = await _rx(world)
    first, _ = await _rejected_fill(world, tech, rx, reason_codes=["label_error"])
    body = {
        "id": new_fill_id(),
        "prescription_id": rx,
        "previous_fill_id": first["id"],
        "priority": "waiting",
    }
    created = await tech.json("POST", "/api/v1/fills", 201, json=body)
    path = f"/api/v1/fills/{body['id']}"
    assert created == await tech.json("GET", path)
    assert created["technician"]["name"] == "tech_nd1"
    assert [e["reason_codes"] for e in created["earlier_rejections"]] == [["label_error"]]
    assert await tech.json("POST", "/api/v1/fills", 200, json=body) == created  # the same create again

    for kind in REQUIRED:
        assert (await upload(tech, body["id"], kind, photo(kind, 7))).status == 204
    submitted = await tech.json("POST", f"{path}/submit")
    assert submitted["state"] == "queued" and len(submitted["media"]) == len(REQUIRED)
    assert submitted == await tech.json("GET", path)
    assert await tech.json("POST", f"{path}/submit") == submitted  # a retried submit


async def test_photos_are_refused_once_the_fill_is_submitted_here_or_by_another_server(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await _rx(world, refills_authorized=99)  # several fills of one prescription
    submitted = await queued_fill(world, tech, rx)
    late = await upload(tech, submitted["id"], "other", photo("other", 1))
    assert (late.method, late.status) == ("POST", 409)  # refused before any byte is sent
    assert (await late.json())["error"] == "not_draft"

    # A draft this server created, whose photos' pre-checks it answers from memory...
    draft = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": draft, "prescription_id": rx})
    stranger = await world.device("tech_nd2")
    assert (await upload(stranger, draft, "pills", photo("pills", 2))).status == 404
    for kind in REQUIRED:
        assert (await upload(tech, draft, kind, photo(kind, 3))).status == 204
    # ...submitted by another server on the same database.
    technician = await world.services.auth.from_device_token(world.tokens["tech_nd1"])
    assert technician is not None
    await FillService(world.services.db, world.services.config).submit(technician, draft)
    # This server learns of it when the photo is to be recorded: refused, and nothing is attached.
    stale = await upload(tech, draft, "other", photo("other", 4))
    assert (stale.method, stale.status) == ("PATCH", 409)
    assert (await stale.json())["error"] == "not_draft"
    # From then on it asks the database again: refused before the bytes.
    again = await upload(tech, draft, "other", photo("other", 5))
    assert (again.method, again.status) == ("POST", 409)
    seen = await tech.json("GET", f"/api/v1/fills/{draft}")
    assert seen["state"] == "queued" and sorted(m["kind"] for m in seen["media"]) == sorted(REQUIRED)


async def test_rejection_needs_a_reason_and_other_needs_a_note(world: World) -> None:
    tech = await world.device("tech_nd1")
    fill = await queued_fill(world, tech, await _rx(world))
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    url = f"/api/v1/fills/{fill['id']}/decision"
    body = await rph.json("POST", url, 400, json={"version": claimed["version"], "outcome": "reject"})
    assert "reason" in body["message"]
    await rph.json(
        "POST", url, 400, json={"version": claimed["version"], "outcome": "reject", "reason_codes": ["other"]}
    )
    await rph.json(
        "POST",
        url,
        400,
        json={"version": claimed["version"], "outcome": "reject", "reason_codes": ["not_a_reason"]},
    )
    still = await rph.json("GET", f"/api/v1/fills/{fill['id']}")
    assert still["state"] == "in_review"


async def test_fill_cannot_be_submitted_before_required_photos_are_stored(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await _rx(world)
    fill_id = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx})
    assert (await upload(tech, fill_id, "stock_bottle", photo("stock_bottle"))).status == 204
    body = await tech.json("POST", f"/api/v1/fills/{fill_id}/submit", 409)
    assert body["error"] == "media_missing"
    assert body["detail"]["missing"] == ["pills", "vial_label"]


async def test_creating_a_fill_is_idempotent_on_its_id(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await _rx(world)
    fill_id = new_fill_id()
    body = {
        "id": fill_id,
        "prescription_id": rx,
        "priority": "waiting",
        "barcodes": ["]d2010036660061800217271231"],
    }
    first = await tech.json("POST", "/api/v1/fills", 201, json=body)
    again = await tech.json("POST", "/api/v1/fills", 200, json=body)
    assert again["id"] == first["id"] and again["version"] == first["version"]
    changed = await tech.json("POST", "/api/v1/fills", 409, json={**body, "priority": "routine"})
    assert changed["error"] == "fill_id_conflict"
    listed = await tech.json("GET", "/api/v1/fills")
    assert [f["id"] for f in listed["fills"]] == [fill_id]


async def test_queue_order_is_priority_then_age(world: World) -> None:
    tech = await world.device("tech_nd1")
    ids = []
    for i, priority in enumerate(["delivery", "routine", "waiting", "routine"]):
        rx = await _rx(world, number=f"RX{i}")
        ids.append((priority, (await queued_fill(world, tech, rx, priority=priority, seed=i))["id"]))
    rph = await world.login("nd_rph")
    queue = await rph.json("GET", "/api/v1/queue")
    order = [f["id"] for f in queue["fills"]]
    assert order == [ids[2][1], ids[1][1], ids[3][1], ids[0][1]]
    assert queue["counts"] == {"queued": 4}
    # Each row says what evidence the fill carries: its required photos, no video.
    assert [(f["images"], f["videos"]) for f in queue["fills"]] == [(len(REQUIRED), 0)] * 4
    first = (await rph.json("POST", "/api/v1/queue/claim-next"))["fill"]
    assert first["id"] == ids[2][1]


async def test_released_fill_goes_back_to_the_queue(world: World) -> None:
    tech = await world.device("tech_nd1")
    fill = await queued_fill(world, tech, await _rx(world))
    a, b = await world.login("nd_rph"), await world.login("both_rph")
    await a.json("POST", f"/api/v1/fills/{fill['id']}/claim")
    taken = await b.json("POST", f"/api/v1/fills/{fill['id']}/claim", 409)
    assert taken["error"] == "claimed_by_other"
    await a.json("POST", f"/api/v1/fills/{fill['id']}/release")
    claimed = (await b.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    assert claimed["claimed_by"] is not None and claimed["state"] == "in_review"


async def test_expired_lease_puts_the_fill_back_and_the_late_decision_gets_409(world: World) -> None:
    tech = await world.device("tech_nd1")
    fill = await queued_fill(world, tech, await _rx(world))
    a = await world.login("nd_rph")
    claimed = (await a.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    world.clock.advance(world.services.config.lease_seconds + 1)
    await world.services.fills.expire_leases()  # what the sweeper does every lease_sweep_seconds
    back = await a.json("GET", f"/api/v1/fills/{fill['id']}")
    assert back["state"] == "queued" and back["claimed_by"] is None
    late = await a.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        409,
        json=approval(claimed),
    )
    assert late["error"] == "lease_lost"
    beat = await a.json("POST", f"/api/v1/fills/{fill['id']}/heartbeat", 409)
    assert beat["error"] == "lease_lost"


async def test_a_full_disk_stops_the_sweep_and_is_said_once_in_one_line(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sweeper meets a full disk at each of its runs while a claim has lapsed: one line naming the
    path and the errno, not a traceback a run; once there is room, the fill goes back to the queue."""
    caplog.set_level(logging.INFO, logger="server.app")
    tech = await world.device("tech_nd1")
    fill = await queued_fill(world, tech, await _rx(world))
    a = await world.login("nd_rph")
    await a.json("POST", f"/api/v1/fills/{fill['id']}/claim")
    disk = FullDisk(world.services.fills.db)
    monkeypatch.setattr(world.services.fills, "db", disk)
    world.clock.advance(world.services.config.lease_seconds + 1)

    assert await disk.said_once(caplog) == (
        "sweeping lapsed leases and stale uploads failed: the database path failed to write: no space "
        "left (errno 28); lapsed claims stay with their pharmacist until a sweep succeeds"
    )
    assert (await a.json("GET", f"/api/v1/fills/{fill['id']}"))["state"] == "in_review"
    await disk.room_again(caplog, "sweeping lapsed leases and stale uploads works again")
    back = await a.json("GET", f"/api/v1/fills/{fill['id']}")
    assert back["state"] == "queued" and back["claimed_by"] is None


async def test_heartbeat_keeps_the_lease(world: World) -> None:
    tech = await world.device("tech_nd1")
    fill = await queued_fill(world, tech, await _rx(world))
    a = await world.login("nd_rph")
    claimed = (await a.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    lease = world.services.config.lease_seconds
    for _ in range(4):  # twice the lease in all, never more than half of it between beats
        world.clock.advance(lease / 2)
        await world.services.fills.expire_leases()
        await a.json("POST", f"/api/v1/fills/{fill['id']}/heartbeat")
    await a.step_up()
    done = await a.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json=approval(claimed),
    )
    assert done["state"] == "approved"


@pytest.mark.slow
async def test_two_racing_decisions_exactly_one_wins(world: World) -> None:
    """Fifty times over: two decisions on the same fill and version at once (two console tabs): one wins."""
    tech = await world.device("tech_nd1")
    rx = await _rx(world, refills_authorized=99)  # several fills of one prescription
    a = await world.login("nd_rph")
    outcomes = []
    for i in range(50):
        fill = await queued_fill(world, tech, rx, seed=i)
        mine = (await a.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
        await a.step_up()
        r1, r2 = await asyncio.gather(
            a.post(
                f"/api/v1/fills/{fill['id']}/decision",
                json=approval(mine),
            ),
            a.post(
                f"/api/v1/fills/{fill['id']}/decision",
                json={"version": mine["version"], "outcome": "reject", "reason_codes": ["image_unclear"]},
            ),
        )
        outcomes.append(sorted([r1.status, r2.status]))
        final = await a.json("GET", f"/api/v1/fills/{fill['id']}")
        winner = r1 if r1.status == 200 else r2
        assert final["state"] == (await winner.json())["state"]
    assert all(o == [200, 409] for o in outcomes), outcomes


async def test_after_a_lapsed_lease_only_the_new_holder_can_decide(world: World) -> None:
    tech = await world.device("tech_nd1")
    fill = await queued_fill(world, tech, await _rx(world))
    a, b = await world.login("nd_rph"), await world.login("both_rph")
    old = (await a.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    world.clock.advance(world.services.config.lease_seconds + 1)
    new = (await b.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    ra, rb = await asyncio.gather(
        a.post(f"/api/v1/fills/{fill['id']}/decision", json=approval(old)),
        b.post(
            f"/api/v1/fills/{fill['id']}/decision",
            json={"version": new["version"], "outcome": "reject", "reason_codes": ["label_error"]},
        ),
    )
    assert (ra.status, rb.status) == (409, 200)
    assert (await ra.json())["error"] in ("lease_lost", "already_decided")
