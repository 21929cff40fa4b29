"""Refills: a prescription allows its first fill and the refills authorised; a fill beyond them is
refused. A fill uses one from its submission until it is rejected (server.fills.lifecycle)."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.api.world import REQUIRED, User, World, approval, new_fill_id, photo, queued_fill, rx_body, upload


async def _draft(tech: User, rx_id: int, **extra: Any) -> str:
    fill_id = new_fill_id()
    await tech.json("POST", "/api/v1/fills", 201, json={"id": fill_id, "prescription_id": rx_id, **extra})
    for i, kind in enumerate(REQUIRED):
        assert (await upload(tech, fill_id, kind, photo(kind, hash(fill_id) % 97 + i))).status == 204
    return fill_id


async def _decide(world: World, fill_id: str, outcome: str) -> None:
    rph = await world.login("nd_rph")
    claimed = (await rph.json("POST", f"/api/v1/fills/{fill_id}/claim"))["fill"]
    body: dict[str, Any] = approval(claimed)
    if outcome == "reject":
        body = {"version": claimed["version"], "outcome": "reject", "reason_codes": ["wrong_quantity"]}
    else:
        await rph.step_up()  # the test photos carry no barcode: a product-check flag is overridden
    await rph.json("POST", f"/api/v1/fills/{fill_id}/decision", json=body)


async def _listed(tech: User, rx_id: int) -> dict[str, Any]:
    listed = await tech.json("GET", "/api/v1/prescriptions")
    return next(rx for rx in listed["prescriptions"] if rx["id"] == rx_id)


async def test_a_fill_beyond_the_refills_authorized_is_refused(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1", refills_authorized=1))
    assert rx["refills_authorized"] == 1 and rx["fills_remaining"] == 2
    first = await queued_fill(world, tech, rx["id"])
    await _decide(world, first["id"], "approve")
    await queued_fill(world, tech, rx["id"], seed=1)
    seen = await _listed(tech, rx["id"])
    assert (seen["refills_used"], seen["fills_remaining"]) == (1, 0)

    refused = await tech.json(
        "POST", "/api/v1/fills", 409, json={"id": new_fill_id(), "prescription_id": rx["id"]}
    )
    assert refused["error"] == "refills_exhausted"
    assert "allows 2 fills (1 refill authorized)" in refused["message"]
    assert refused["detail"] == {"refills_authorized": 1, "fills_used": 2}


async def test_without_refills_a_prescription_is_filled_once(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    assert rx["refills_authorized"] == 0
    await queued_fill(world, tech, rx["id"])
    refused = await tech.json(
        "POST", "/api/v1/fills", 409, json={"id": new_fill_id(), "prescription_id": rx["id"]}
    )
    assert refused["error"] == "refills_exhausted" and "allows 1 fill (0 refills" in refused["message"]


async def test_a_rejected_fill_and_its_resubmission_use_one_fill(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    first = await queued_fill(world, tech, rx["id"])
    await _decide(world, first["id"], "reject")
    assert (await _listed(tech, rx["id"]))["fills_remaining"] == 1
    retry = await _draft(tech, rx["id"], previous_fill_id=first["id"])
    submitted = await tech.json("POST", f"/api/v1/fills/{retry}/submit")
    assert submitted["state"] == "queued"
    await _decide(world, retry, "approve")
    seen = await _listed(tech, rx["id"])
    assert (seen["refills_used"], seen["fills_remaining"]) == (0, 0)


async def test_open_fills_together_never_exceed_the_refills(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1", refills_authorized=1))
    # Drafts use nothing: three are made, two are submitted at once, the third is refused.
    drafts = [await _draft(tech, rx["id"]) for _ in range(3)]
    both = await asyncio.gather(*(tech.post(f"/api/v1/fills/{d}/submit") for d in drafts[:2]))
    assert [r.status for r in both] == [200, 200]
    third = await tech.json("POST", f"/api/v1/fills/{drafts[2]}/submit", 409)
    assert third["error"] == "refills_exhausted"
    assert (await tech.json("GET", f"/api/v1/fills/{drafts[2]}"))["state"] == "draft"


async def test_two_submissions_racing_for_the_last_fill_one_wins(world: World) -> None:
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    drafts = [await _draft(tech, rx["id"]) for _ in range(2)]
    answers = await asyncio.gather(*(tech.post(f"/api/v1/fills/{d}/submit") for d in drafts))
    assert sorted(r.status for r in answers) == [200, 409]
    states = [(await tech.json("GET", f"/api/v1/fills/{d}"))["state"] for d in drafts]
    assert sorted(states) == ["draft", "queued"]


async def test_refills_authorized_is_validated(world: World) -> None:
    tech = await world.device("tech_nd1")
    for bad in (-1, 100, "two"):
        await tech.json(
            "POST", "/api/v1/prescriptions", 400, json=rx_body(f"RX{bad}", refills_authorized=bad)
        )
    refused = await tech.json(
        "POST",
        "/api/v1/prescriptions",
        400,
        json=rx_body("RX-CII", dea_schedule="CII", refills_authorized=1),
    )
    assert refused["error"] == "too_many_refills"
    ok = await tech.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body("RX-CIV", dea_schedule="CIV", refills_authorized=5)
    )
    assert ok["refills_authorized"] == 5
