"""Relays WebRTC signalling between the two parties of a consultation, over their live websockets.

Nothing here is persisted: offers, answers and candidates go from one party's connection to the
other's. A party joins the consultation's room first; a message for a party that has not joined
yet waits in the room (bounded) and is delivered when it joins, so an early offer is never lost.
A party's websocket closing ends the consultation, and both parties hear of every end at once.
The rooms live in this process: with several server instances, both parties must reach the same one.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from server.consultations.service import ACCEPTED, ENDED, OPEN_STATES, ConsultationService
from server.db.models import Consultation
from server.errors import DomainError
from server.realtime.hub import Connection, Hub

log = logging.getLogger(__name__)

SITE = "site"
PHARMACIST = "pharmacist"
MAX_PENDING = 64
SIGNAL_KEYS = ("description", "candidate", "restart")


def other(role: str) -> str:
    return PHARMACIST if role == SITE else SITE


@dataclass
class Room:
    consultation_id: int
    members: dict[str, Connection] = field(default_factory=dict)
    pending: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: {SITE: [], PHARMACIST: []})


async def send(conn: Connection, message: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await conn.ws.send_json(message)


class SignallingRelay:
    def __init__(self, hub: Hub, consultations: ConsultationService) -> None:
        self.hub = hub
        self.consultations = consultations
        self.rooms: dict[int, Room] = {}
        hub.handlers["consult.join"] = self.join
        hub.handlers["consult.signal"] = self.signal
        hub.handlers["consult.hangup"] = self.hangup
        hub.on_close.append(self.dropped)
        consultations.on_ended.append(self.ended)

    @staticmethod
    def _id(data: dict[str, Any]) -> int | None:
        raw = data.get("consultation_id")
        return raw if isinstance(raw, int) and not isinstance(raw, bool) else None

    async def _refuse(self, conn: Connection, cid: int | None, error: str) -> None:
        await send(conn, {"type": "consult.error", "consultation_id": cid, "error": error})

    def _role_of(self, conn: Connection, cid: int) -> str | None:
        room = self.rooms.get(cid)
        if room is None:
            return None
        for role, member in room.members.items():
            if member is conn:
                return role
        return None

    async def join(self, conn: Connection, data: dict[str, Any]) -> None:
        cid = self._id(data)
        if cid is None:
            return await self._refuse(conn, None, "consult.join needs a consultation_id.")
        try:
            c, _ = await self.consultations.get(conn.principal, cid)
        except DomainError as exc:
            return await self._refuse(conn, cid, exc.message)
        uid = conn.principal.user_id
        if self.consultations.is_site_party(c, conn.principal):
            role = SITE
        elif uid == c.pharmacist_id and c.state == ACCEPTED:
            role = PHARMACIST
        else:
            return await self._refuse(conn, cid, "Only the two parties of a consultation join it.")
        if c.state == ENDED:
            return await send(conn, self._ended_message(c))
        room = self.rooms.setdefault(cid, Room(cid))
        room.members[role] = conn
        peer = room.members.get(other(role))
        await send(
            conn,
            {
                "type": "consult.joined",
                "consultation_id": cid,
                "role": role,
                "state": c.state,
                "peer_joined": peer is not None,
            },
        )
        waiting, room.pending[role] = room.pending[role], []
        for message in waiting:
            await send(conn, message)
        if peer is not None:
            await send(peer, {"type": "consult.peer_joined", "consultation_id": cid, "role": role})

    async def signal(self, conn: Connection, data: dict[str, Any]) -> None:
        cid = self._id(data)
        role = self._role_of(conn, cid) if cid is not None else None
        if cid is None or role is None:
            return await self._refuse(conn, cid, "Join the consultation before signalling.")
        message: dict[str, Any] = {"type": "consult.signal", "consultation_id": cid, "from": role}
        for key in SIGNAL_KEYS:
            if key in data:
                message[key] = data[key]
        room = self.rooms[cid]
        peer = room.members.get(other(role))
        if peer is not None:
            await send(peer, message)
        elif len(room.pending[other(role)]) < MAX_PENDING:
            room.pending[other(role)].append(message)
        else:
            await self._refuse(conn, cid, "Too many messages waiting for the other party.")

    async def hangup(self, conn: Connection, data: dict[str, Any]) -> None:
        cid = self._id(data)
        if cid is None or self._role_of(conn, cid) is None:
            return await self._refuse(conn, cid, "Join the consultation before hanging up.")
        reason = data.get("reason", "hangup")
        note = data.get("note")
        try:
            await self.consultations.end(
                conn.principal,
                cid,
                reason if isinstance(reason, str) else "hangup",
                note if isinstance(note, str) else None,
            )
        except DomainError as exc:
            await self._refuse(conn, cid, exc.message)

    async def accepted(self, c: Consultation) -> None:
        """Tells the site at once (the journal event follows through the pump as well)."""
        room = self.rooms.get(c.id)
        site = room.members.get(SITE) if room else None
        if site is not None:
            await send(
                site,
                {"type": "consult.accepted", "consultation_id": c.id, "pharmacist_id": c.pharmacist_id},
            )

    @staticmethod
    def _ended_message(c: Consultation) -> dict[str, Any]:
        return {
            "type": "consult.ended",
            "consultation_id": c.id,
            "reason": c.end_reason,
            "duration_seconds": c.duration_seconds,
        }

    async def ended(self, c: Consultation) -> None:
        room = self.rooms.pop(c.id, None)
        if room is None:
            return
        for member in room.members.values():
            await send(member, self._ended_message(c))

    async def dropped(self, conn: Connection) -> None:
        """A party's live connection closed: the consultation ends for both, at once."""
        for cid in [cid for cid, room in self.rooms.items() if conn in room.members.values()]:
            room = self.rooms[cid]
            role = self._role_of(conn, cid)
            if role is not None and room.members.get(role) is conn:
                del room.members[role]
            try:
                c, _ = await self.consultations.get(conn.principal, cid)
                if c.state in OPEN_STATES:
                    await self.consultations.end(None, cid, "dropped")
            except Exception:
                log.exception("ending consultation %s after a dropped connection failed", cid)
