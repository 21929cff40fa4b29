"""The consultation record over HTTP and the signalling relay over websockets (no media)."""

from __future__ import annotations

import asyncio

from sqlalchemy import select

from server.db.models import AuditEvent
from tests.api.world import World, connect
from tests.consult.wire import next_of


async def test_one_accept_wins_and_only_licensed_pharmacists_may(world: World) -> None:
    site = await world.device("tech_nd1")
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    assert c["state"] == "requested" and c["site"]["code"] == "ND-1"
    assert (await (await world.login("mn_rph")).post(f"/api/v1/consultations/{c['id']}/accept")).status == 404
    other_site = await world.device("tech_mn1")
    assert (await other_site.get(f"/api/v1/consultations/{c['id']}")).status == 404
    nd, both = await world.login("nd_rph"), await world.login("both_rph")
    a, b = await asyncio.gather(
        nd.post(f"/api/v1/consultations/{c['id']}/accept"),
        both.post(f"/api/v1/consultations/{c['id']}/accept"),
    )
    assert sorted([a.status, b.status]) == [200, 409]
    ended = await site.json("POST", f"/api/v1/consultations/{c['id']}/end", json={"reason": "hangup"})
    assert ended["state"] == "ended" and ended["duration_seconds"] is not None


async def test_early_offer_waits_for_the_pharmacist_and_a_drop_ends_both(world: World) -> None:
    site = await world.device("tech_nd1")
    nd = await world.login("nd_rph")
    site_ws = await connect(site)
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    await site_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    assert (await next_of(site_ws, "consult.joined"))["peer_joined"] is False
    await nd.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await next_of(site_ws, "consult.accepted")
    # Sent before the pharmacist joined: kept in the room, delivered on join.
    offer = {"type": "offer", "sdp": "v=0"}
    await site_ws.send_json({"type": "consult.signal", "consultation_id": c["id"], "description": offer})
    rph_ws = await connect(nd)
    await rph_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    assert (await next_of(rph_ws, "consult.joined"))["peer_joined"] is True
    got = await next_of(rph_ws, "consult.signal")
    assert got["description"] == offer and got["from"] == "site"
    await site_ws.close()
    ended = await next_of(rph_ws, "consult.ended")
    assert ended["reason"] == "dropped"
    record = await nd.json("GET", f"/api/v1/consultations/{c['id']}")
    assert record["state"] == "ended" and record["end_reason"] == "dropped"
    await rph_ws.close()


async def test_only_the_site_reports_a_reconnection_and_only_of_a_connected_call(world: World) -> None:
    site = await world.device("tech_nd1")
    nd = await world.login("nd_rph")
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    url = f"/api/v1/consultations/{c['id']}"
    await nd.json("POST", f"{url}/accept")
    assert (await site.post(f"{url}/reconnected")).status == 409  # never connected yet
    await site.json("POST", f"{url}/connected")
    assert (await nd.post(f"{url}/reconnected")).status == 403  # the site re-offers, so the site reports
    assert (await (await world.device("tech_nd2")).post(f"{url}/reconnected")).status == 404
    assert (await site.json("POST", f"{url}/reconnected"))["reconnections"] == 1
    assert (await site.json("POST", f"{url}/reconnected"))["reconnections"] == 2
    ended = await site.json("POST", f"{url}/end", json={"reason": "reconnect_failed"})
    assert ended["end_reason"] == "reconnect_failed" and ended["reconnections"] == 2
    assert (await site.post(f"{url}/reconnected")).status == 409
    async with world.services.db.read() as s:
        rows = await s.execute(
            select(AuditEvent.action, AuditEvent.detail).where(AuditEvent.entity_id == str(c["id"]))
        )
        reconnected = [r.detail for r in rows if r.action == "consultation.reconnected"]
    assert reconnected == [{"reconnections": 1}, {"reconnections": 2}]


async def test_the_outcome_note_is_for_the_two_parties_and_admins_only(world: World) -> None:
    site, nd = await world.device("tech_nd1"), await world.login("nd_rph")
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    url = f"/api/v1/consultations/{c['id']}"
    await nd.json("POST", f"{url}/accept")
    note = "Counselled on taking it with food; patient asked about grapefruit."
    ended = await nd.json("POST", f"{url}/end", json={"reason": "hangup", "note": note})
    assert ended["outcome_note"] == note

    for reader in (nd, site, await world.login("admin")):
        assert (await reader.json("GET", url))["outcome_note"] == note, reader.username

    # Another pharmacist licensed in the site's state sees that the call took place, never its note.
    outsider = await world.login("both_rph")
    record = await outsider.json("GET", url)
    assert record["state"] == "ended" and "outcome_note" not in record
    assert note not in await (await outsider.get(url)).text()
    # Nor by ending it again (the record it answers with).
    again = await outsider.post(f"{url}/end", json={"reason": "hangup"})
    assert note not in await again.text()


async def test_a_pharmacist_declines_a_request_with_a_reason_the_site_reads(world: World) -> None:
    site, nd = await world.device("tech_nd1"), await world.login("nd_rph")
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    url = f"/api/v1/consultations/{c['id']}"
    # A reason is required, and only a pharmacist declines.
    await nd.json("POST", f"{url}/end", 400, json={"reason": "declined"})
    await site.json("POST", f"{url}/end", 403, json={"reason": "declined", "note": "No"})
    # A pharmacist not licensed in the site's state does not see the request at all.
    await (await world.login("mn_rph")).json(
        "POST", f"{url}/end", 404, json={"reason": "declined", "note": "x"}
    )

    reason = "All pharmacists are on a call; ask again in 15 minutes."
    declined = await nd.json("POST", f"{url}/end", json={"reason": "declined", "note": reason})
    me = await nd.json("GET", "/api/v1/session")
    assert (declined["state"], declined["end_reason"]) == ("ended", "declined")
    assert declined["pharmacist_id"] == me["user"]["id"]
    seen = await site.json("GET", url)
    assert seen["end_reason"] == "declined" and seen["outcome_note"] == reason
    # Declined once: a second decline, or an accept, finds it ended.
    await (await world.login("both_rph")).json(
        "POST", f"{url}/end", 409, json={"reason": "declined", "note": "x"}
    )
    assert (await nd.post(f"{url}/accept")).status == 409
