"""Live events over the websocket: who sees what, catching up by cursor, Origin, slow clients."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType

from tests.api.world import User, World, queued_fill, rx_body


async def _connect(
    user: User, cursor: int | None = None, origin: str | None = "same"
) -> ClientWebSocketResponse:
    headers = {}
    if user.token:
        headers["Authorization"] = f"Bearer {user.token}"
    if origin == "same":
        headers["Origin"] = str(user.client.make_url("/")).rstrip("/")
    elif origin:
        headers["Origin"] = origin
    path = "/api/v1/ws" + (f"?cursor={cursor}" if cursor is not None else "")
    return await user.client.ws_connect(path, headers=headers)


async def _until(ws: ClientWebSocketResponse, pred: Any, seconds: float = 5.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        while True:
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT, msg
            data = json.loads(msg.data)
            got.append(data)
            if pred(data, got):
                return got


async def _drain(ws: ClientWebSocketResponse, seconds: float = 0.3) -> list[dict[str, Any]]:
    got = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                msg = await ws.receive()
                got.append(json.loads(msg.data))
    except TimeoutError:
        return got


async def test_consoles_and_sites_see_only_their_own_events(world: World) -> None:
    nd_tech, mn_tech = await world.device("tech_nd1"), await world.device("tech_mn1")
    nd_rph, mn_rph = await world.login("nd_rph"), await world.login("mn_rph")
    sockets = {
        name: await _connect(u)
        for name, u in (("nd_tech", nd_tech), ("mn_tech", mn_tech), ("nd_rph", nd_rph), ("mn_rph", mn_rph))
    }
    for ws in sockets.values():
        assert (await ws.receive_json())["type"] == "hello"
    rx = await nd_tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await queued_fill(world, nd_tech, rx["id"])

    got = await _until(sockets["nd_rph"], lambda d, _: d["type"] == "fill.queued")
    event = got[-1]
    assert event["fill_id"] == fill["id"] and event["state"] == "queued" and event["us_state"] == "ND"
    assert "Jane" not in json.dumps(event) and "patient" not in json.dumps(event)
    await _until(sockets["nd_tech"], lambda d, _: d["type"] == "fill.queued")
    assert await _drain(sockets["mn_rph"]) == []
    assert await _drain(sockets["mn_tech"]) == []

    claimed = (await nd_rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    await nd_rph.json(
        "POST",
        f"/api/v1/fills/{fill['id']}/decision",
        json={
            "version": claimed["version"],
            "outcome": "reject",
            "reason_codes": ["label_error"],
            "note": "Patient name misspelled on the label",
        },
    )
    decided = (await _until(sockets["nd_tech"], lambda d, _: d["type"] == "fill.decided"))[-1]
    assert decided["outcome"] == "reject" and decided["reason_codes"] == ["label_error"]
    assert "misspelled" not in json.dumps(decided)  # notes are free text: fetched over HTTP, never broadcast
    for ws in sockets.values():
        await ws.close()


async def test_reconnecting_with_a_cursor_receives_exactly_what_was_missed(world: World) -> None:
    tech = await world.device("tech_nd1")
    rph = await world.login("nd_rph")
    ws = await _connect(rph)
    hello = await ws.receive_json()
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1", refills_authorized=3))
    first = await queued_fill(world, tech, rx["id"], seed=1)
    seen = await _until(ws, lambda d, _: d["type"] == "fill.queued")
    cursor = seen[-1]["id"]
    await ws.close()
    assert cursor > hello["cursor"]

    missed = []
    for i in range(3):
        f = await queued_fill(world, tech, rx["id"], seed=2 + i)
        missed.append(f["id"])
    # An event of another state while away must not show up.
    mn = await world.device("tech_mn1")
    mn_rx = await mn.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX9"))
    await queued_fill(world, mn, mn_rx["id"], seed=9)

    ws = await _connect(rph, cursor=cursor)
    assert (await ws.receive_json())["type"] == "hello"
    got = await _until(ws, lambda d, g: len([x for x in g if x["type"] == "fill.queued"]) == 3)
    assert [e["fill_id"] for e in got if e["type"] == "fill.queued"] == missed
    assert first["id"] not in [e.get("fill_id") for e in got]
    ids = [e["id"] for e in got]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert await _drain(ws) == []
    await ws.close()


async def test_websocket_from_a_foreign_origin_is_refused(world: World) -> None:
    rph = await world.login("nd_rph")
    resp = await rph.client.get(
        "/api/v1/ws",
        headers={
            "Origin": "https://evil.example",
            "Connection": "Upgrade",
            "Upgrade": "websocket",
            "Sec-WebSocket-Version": "13",
            "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        },
    )
    assert resp.status == 403
    ws = await _connect(rph)
    assert (await ws.receive_json())["type"] == "hello"
    await ws.close()
