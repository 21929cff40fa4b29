"""The event journal is a window: a client reconnecting from before it, or too far behind, reloads."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from sqlalchemy import delete

from server.db.models import Event
from tests.api.world import User, World, queued_fill, rx_body


async def _connect(user: User, cursor: int | None = None) -> ClientWebSocketResponse:
    headers = {"Origin": str(user.client.make_url("/")).rstrip("/")}
    path = "/api/v1/ws" + (f"?cursor={cursor}" if cursor is not None else "")
    return await user.client.ws_connect(path, headers=headers)


async def _until(ws: ClientWebSocketResponse, pred: Any, seconds: float = 5.0) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    async with asyncio.timeout(seconds):
        while True:
            msg = await ws.receive()
            assert msg.type == WSMsgType.TEXT, msg
            got.append(json.loads(msg.data))
            if pred(got[-1]):
                return got


async def _drain(ws: ClientWebSocketResponse, seconds: float = 0.3) -> list[dict[str, Any]]:
    got = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                got.append(json.loads((await ws.receive()).data))
    except TimeoutError:
        return got


async def _away(world: World, rph: User, fills: int) -> tuple[int, list[str]]:
    """The pharmacist's console sees one fill queued, drops, and misses `fills` more: (its cursor, the
    missed fills' ids)."""
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1", refills_authorized=9))
    ws = await _connect(rph)
    await _until(ws, lambda d: d["type"] == "hello")
    await queued_fill(world, tech, rx["id"])
    cursor = (await _until(ws, lambda d: d["type"] == "fill.queued"))[-1]["id"]
    await ws.close()
    missed = [(await queued_fill(world, tech, rx["id"]))["id"] for _ in range(fills)]
    return cursor, missed


async def _trim(world: World, upto: int) -> None:
    """Deletes the journal's events up to id `upto`, as retention does with old ones."""
    async with world.services.db.write() as s:
        await s.execute(delete(Event).where(Event.id <= upto))


async def test_a_console_reconnecting_from_before_the_window_is_told_to_reload(world: World) -> None:
    rph = await world.login("nd_rph")
    cursor, _ = await _away(world, rph, 2)
    await _trim(world, cursor + 1)  # the first event it missed is gone

    ws = await _connect(rph, cursor)
    hello = (await _until(ws, lambda d: d["type"] == "hello"))[-1]
    got = await _until(ws, lambda d: d["type"] == "reload")
    assert got == [{"type": "reload", "reason": "behind_window", "cursor": hello["cursor"]}]
    assert await _drain(ws) == []  # nothing replayed

    # From the live point on, events come as they happen.
    tech = await world.device("tech_nd1")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX2"))
    fill = await queued_fill(world, tech, rx["id"])
    live = (await _until(ws, lambda d: d["type"] == "fill.queued"))[-1]
    assert live["fill_id"] == fill["id"] and live["id"] > hello["cursor"]
    await ws.close()


async def test_a_cursor_inside_the_window_still_replays_exactly_the_missed_events(world: World) -> None:
    rph = await world.login("nd_rph")
    cursor, missed = await _away(world, rph, 3)
    await _trim(world, cursor)  # everything up to the cursor is gone, nothing after it

    ws = await _connect(rph, cursor)
    hello = (await _until(ws, lambda d: d["type"] == "hello"))[-1]
    got = await _until(ws, lambda d: d.get("id") == hello["cursor"])
    assert "reload" not in [d["type"] for d in got]
    assert [d["fill_id"] for d in got if d["type"] == "fill.queued"] == missed
    ids = [d["id"] for d in got]
    assert ids == sorted(set(ids)) and ids[0] > cursor
    assert await _drain(ws) == []
    await ws.close()


async def test_a_console_too_far_behind_reloads_instead_of_replaying(world: World) -> None:
    rph = await world.login("nd_rph")
    cursor, _ = await _away(world, rph, 3)
    world.services.hub.replay_limit = 2  # three fills queued make more events than that

    ws = await _connect(rph, cursor)
    await _until(ws, lambda d: d["type"] == "hello")
    got = await _until(ws, lambda d: d["type"] != "hello")
    assert got[-1]["type"] == "reload" and got[-1]["reason"] == "too_far_behind"
    assert await _drain(ws) == []
    await ws.close()


async def test_an_emptied_journal_sends_a_client_with_an_old_cursor_to_reload(world: World) -> None:
    rph = await world.login("nd_rph")
    cursor, _ = await _away(world, rph, 1)
    await _trim(world, 10**9)

    ws = await _connect(rph, cursor)
    await _until(ws, lambda d: d["type"] == "hello")
    assert (await _until(ws, lambda d: d["type"] != "hello"))[-1]["reason"] == "behind_window"
    # A client that saw everything is not sent to reload.
    current = await _connect(rph, world.services.hub.last_id)
    await _until(current, lambda d: d["type"] == "hello")
    assert await _drain(current) == []
    await ws.close()
    await current.close()
