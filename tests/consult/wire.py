"""What the consultation tests share: a party's websocket, its messages, and a consultation's audit."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import ClientWebSocketResponse, WSMsgType
from sqlalchemy import select

from server.db.models import AuditEvent
from tests.api.world import World


async def next_of(ws: ClientWebSocketResponse, *kinds: str, seconds: float = 5) -> dict[str, Any]:
    """The next message of one of these types (others are skipped)."""
    async with asyncio.timeout(seconds):
        while True:
            msg: dict[str, Any] = await ws.receive_json()
            if msg["type"] in kinds:
                return msg


async def drain(ws: Any, seconds: float = 0.5) -> list[dict[str, Any]]:
    """Every message that arrives within `seconds` (or until the socket closes)."""
    got: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(seconds):
            while True:
                msg = await ws.receive()
                if msg.type != WSMsgType.TEXT:
                    return got
                got.append(json.loads(msg.data))
    except TimeoutError:
        return got


async def audit_of(world: World, cid: int) -> list[tuple[str, dict[str, Any]]]:
    """The consultation's audit rows: action and detail."""
    async with world.services.db.read() as s:
        rows = await s.execute(
            select(AuditEvent.action, AuditEvent.detail).where(
                AuditEvent.entity_type == "consultation", AuditEvent.entity_id == str(cid)
            )
        )
        return [(r.action, r.detail) for r in rows]
