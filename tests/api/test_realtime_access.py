"""A live connection keeps only the rights it still has: a sign-out, a revoked token, a deactivation, a
suspended site close it at once (on every server instance), a removed license narrows what it is sent,
and every call action reads its rights afresh first."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from sqlalchemy import select

from server.db.models import DeviceToken
from server.realtime.hub import CLOSE_ACCESS_WITHDRAWN
from server.security import tokens
from server.security.auth import Auth
from tests.api.world import Nodes, World, connect, new_fill_id, rx_body


async def _closed(ws: ClientWebSocketResponse, seconds: float = 1.0) -> tuple[str, list[dict[str, Any]]]:
    """Waits for the server to close the socket; returns its reason and what arrived before."""
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        while True:
            msg = await ws.receive()
            if msg.type == WSMsgType.TEXT:
                got.append(json.loads(msg.data))
                continue
            assert msg.type == WSMsgType.CLOSE and msg.data == CLOSE_ACCESS_WITHDRAWN, msg
            return str(msg.extra), got


async def _until(ws: ClientWebSocketResponse, kind: str, seconds: float = 5.0) -> dict[str, Any]:
    async with asyncio.timeout(seconds):
        while True:
            msg: dict[str, Any] = await ws.receive_json()
            if msg["type"] == kind:
                return msg


async def _arriving(ws: ClientWebSocketResponse, seconds: float = 0.5) -> list[dict[str, Any]]:
    """What arrives within `seconds`."""
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                got.append(await ws.receive_json())
    except TimeoutError:
        return got


async def _token_id(world: World, username: str) -> int:
    async with world.services.db.read() as s:
        token_id = await s.scalar(
            select(DeviceToken.id).where(DeviceToken.token_hash == tokens.digest(world.tokens[username]))
        )
    assert token_id is not None
    return token_id


async def test_a_site_socket_closes_within_a_second_of_its_token_being_revoked(world: World) -> None:
    tech = await world.device("tech_nd1")
    ws = await connect(tech)
    admin = await world.login("admin")
    await admin.json("DELETE", f"/api/v1/device-tokens/{await _token_id(world, 'tech_nd1')}")
    reason, _ = await _closed(ws)
    assert "revoked" in reason
    assert (await tech.get("/api/v1/ws")).status == 401


async def test_a_console_socket_closes_when_its_session_signs_out(world: World) -> None:
    rph = await world.login("nd_rph")
    ws, other_tab = await connect(rph), await connect(rph)
    elsewhere = await connect(await world.login("nd_rph"))  # another session of the same pharmacist
    await rph.json("DELETE", "/api/v1/session")
    for socket in (ws, other_tab):
        reason, _ = await _closed(socket)
        assert "signed out" in reason
    assert await _arriving(elsewhere, 0.3) == [] and not elsewhere.closed
    await elsewhere.close()


async def test_a_deactivated_pharmacists_socket_closes(world: World) -> None:
    ws = await connect(await world.login("nd_rph"))
    await world.services.directory.set_user_active(None, "nd_rph", False)
    reason, _ = await _closed(ws)
    assert "deactivated" in reason


async def test_a_suspended_sites_sockets_close_and_open_no_more(world: World) -> None:
    tech = await world.device("tech_nd1")
    ws = await connect(tech)
    other_site = await connect(await world.device("tech_nd2"))
    await world.services.directory.set_site_status(None, world.sites["ND-1"], "suspended")
    reason, _ = await _closed(ws)
    assert "suspended" in reason
    assert (await tech.get("/api/v1/ws")).status == 401
    assert not other_site.closed
    await other_site.close()


async def test_a_pharmacist_whose_license_is_removed_stops_getting_that_states_events(world: World) -> None:
    ws = await connect(await world.login("both_rph"))
    yesterday = dt.date.today() - dt.timedelta(days=1)
    await world.services.directory.add_license(None, "both_rph", "MN", "MN-both_rph", yesterday)
    mn = await (await world.device("tech_mn1")).json("POST", "/api/v1/consultations", 201, json={})
    nd = await (await world.device("tech_nd1")).json("POST", "/api/v1/consultations", 201, json={})
    got = await _until(ws, "consultation.requested")
    assert got["consultation_id"] == nd["id"] != mn["id"]
    assert not ws.closed  # still signed in: licensed in North Dakota
    await ws.close()


async def test_a_revoked_site_neither_gets_the_pharmacists_offer_nor_acts_in_the_call(world: World) -> None:
    tech = await world.device("tech_nd1")
    site_ws = await connect(tech)
    rph = await world.login("nd_rph")
    rph_ws = await connect(rph)
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await tech.json(
        "POST", "/api/v1/fills", 201, json={"id": new_fill_id(), "prescription_id": rx["id"]}
    )
    # Revoked as the command line does it: in another process, so no hub hears of it.
    svc = world.services
    await Auth(svc.db, svc.config, svc.auth.passwords).revoke_device_token(
        None, await _token_id(world, "tech_nd1")
    )

    c = await rph.json("POST", "/api/v1/consultations/invite", 201, json={"fill_id": fill["id"]})
    await rph_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    await _until(rph_ws, "consult.joined")
    offer = {"type": "offer", "sdp": "v=0\r\n"}
    await rph_ws.send_json({"type": "consult.signal", "consultation_id": c["id"], "description": offer})
    await site_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    reason, before = await _closed(site_ws)
    assert "revoked" in reason
    assert not [m for m in before if m["type"].startswith("consult.")]  # neither joined nor the offer
    assert "consult.peer_joined" not in [m["type"] for m in await _arriving(rph_ws, 0.3)]
    await rph_ws.close()


async def test_a_pharmacist_whose_license_is_removed_mid_call_neither_signals_nor_is_signalled(
    world: World,
) -> None:
    site = await world.device("tech_nd1")
    site_ws = await connect(site)
    rph = await world.login("nd_rph")
    rph_ws = await connect(rph)
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    await site_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    await _until(site_ws, "consult.joined")
    await rph.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await rph_ws.send_json({"type": "consult.join", "consultation_id": c["id"]})
    await _until(rph_ws, "consult.joined")
    yesterday = dt.date.today() - dt.timedelta(days=1)
    await world.services.directory.add_license(None, "nd_rph", "ND", "ND-nd_rph", yesterday)

    candidate = {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0"}
    await site_ws.send_json({"type": "consult.signal", "consultation_id": c["id"], "candidate": candidate})
    await rph_ws.send_json({"type": "consult.signal", "consultation_id": c["id"], "candidate": candidate})
    to_rph = [m for m in await _arriving(rph_ws) if m["type"].startswith("consult.")]
    assert [m["type"] for m in to_rph] == ["consult.error"] and "no longer" in to_rph[0]["error"]
    assert "consult.signal" not in [m["type"] for m in await _arriving(site_ws, 0.3)]
    for ws in (site_ws, rph_ws):
        await ws.close()


async def test_a_revocation_on_one_instance_closes_the_sites_socket_on_another(nodes: Nodes) -> None:
    tech_on_b = await nodes.device(nodes.b, "tech_nd1")
    ws = await connect(tech_on_b)
    bystander = await connect(await nodes.device(nodes.b, "tech_nd2"))
    admin = await nodes.world.login("admin")  # on A
    started = time.monotonic()
    await admin.json("DELETE", f"/api/v1/device-tokens/{await _token_id(nodes.world, 'tech_nd1')}")
    reason, _ = await _closed(ws)
    assert "revoked" in reason and time.monotonic() - started < 1.0
    assert (await tech_on_b.get("/api/v1/ws")).status == 401
    assert not bystander.closed
    await bystander.close()
