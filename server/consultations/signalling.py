"""Relays WebRTC signalling between the two parties of a consultation, over their live websockets.

Offers, answers and candidates go from one party's connection to the other's, and to no one else:
they are never journaled, audited or broadcast. A party joins the consultation's room first. When
the other party's websocket is on this server instance, a message goes straight to it; otherwise it
waits in the mailbox (server.consultations.mailbox): in memory on one instance, in a transient
table with a NOTIFY wake-up when several instances share PostgreSQL. Either way a message sent
before the other party joined is delivered when it joins, so an early offer is never lost, and the
messages to one party keep their order (one lock per party and room orders the direct sends and
the deliveries from the mailbox).

Each join tells the other party (`consult.peer_joined`), through the same path: a party joining
second finds that message waiting and learns from it that its peer is there (`peer_joined`).

A party's websocket closing ends the consultation. The party on this instance hears of an end at
once (`consult.ended`); a party on another instance hears of it through the journal event
`consultation.ended`, which its instance also uses to close its room.

Each party's rights are read afresh by the hub before each message it sends here (a revoked device, a
signed-out console is closed instead); a party whose rights no longer cover the consultation's site (a
license removed) neither signals nor is signalled to.

The relay carries `restart` requests and description `generation`s without reading them: the site
re-offers on a fresh peer connection when the media path drops (see remote_site_client/consult.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from server.consultations.mailbox import Address, Mailbox
from server.consultations.service import ACCEPTED, ENDED, OPEN_STATES, ConsultationService
from server.db.models import Consultation, Event
from server.errors import DomainError
from server.realtime.hub import Connection, Hub

log = logging.getLogger(__name__)

SITE = "site"
PHARMACIST = "pharmacist"
SIGNAL_KEYS = ("description", "candidate", "restart", "generation")
PEER_JOINED = "consult.peer_joined"


def other(role: str) -> str:
    return PHARMACIST if role == SITE else SITE


@dataclass
class Room:
    consultation_id: int
    site_id: int
    us_state: str
    members: dict[str, Connection] = field(default_factory=dict)
    # Orders what reaches each party: direct sends and deliveries from the mailbox.
    locks: dict[str, asyncio.Lock] = field(
        default_factory=lambda: {SITE: asyncio.Lock(), PHARMACIST: asyncio.Lock()}
    )

    def admits(self, conn: Connection) -> bool:
        """Whether the connection's user, as last read, may still see the consultation's site."""
        return conn.principal.may_see_site(self.site_id, self.us_state)


async def send(conn: Connection, message: dict[str, Any]) -> None:
    with contextlib.suppress(ConnectionError, RuntimeError):
        await conn.ws.send_json(message)


class SignallingRelay:
    def __init__(self, hub: Hub, consultations: ConsultationService, mailbox: Mailbox) -> None:
        self.hub = hub
        self.consultations = consultations
        self.mailbox = mailbox
        self.rooms: dict[int, Room] = {}
        self._closing: set[asyncio.Task[None]] = set()  # rooms being closed after a journaled end
        hub.handlers["consult.join"] = self.join
        hub.handlers["consult.signal"] = self.signal
        hub.handlers["consult.hangup"] = self.hangup
        hub.on_close.append(self.dropped)
        hub.on_event.append(self.journaled)
        consultations.on_ended.append(self.ended)

    async def start(self) -> None:
        await self.mailbox.start(self)

    async def stop(self) -> None:
        await self.mailbox.stop()

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

    # -- what the mailbox asks -------------------------------------------------------------------

    def local_parties(self) -> set[Address]:
        return {(cid, role) for cid, room in self.rooms.items() for role in room.members}

    async def deliver(self, consultation_id: int, party: str) -> None:
        """Hands the party on this instance what waits for it in the mailbox."""
        room = self.rooms.get(consultation_id)
        if room is None or party not in room.members:
            return
        async with room.locks[party]:
            member = room.members.get(party)
            if member is None or not room.admits(member):
                return
            for message in await self.mailbox.take(consultation_id, party):
                await send(member, message)

    async def _to(self, room: Room, party: str, message: dict[str, Any]) -> bool:
        """Sends to the party: directly when it is connected here, else through the mailbox."""
        async with room.locks[party]:
            member = room.members.get(party)
            if member is not None:
                if room.admits(member):
                    await send(member, message)
                return True
        return await self.mailbox.post(room.consultation_id, party, message)

    # -- websocket messages ----------------------------------------------------------------------

    async def join(self, conn: Connection, data: dict[str, Any]) -> None:
        cid = self._id(data)
        if cid is None:
            return await self._refuse(conn, None, "consult.join needs a consultation_id.")
        try:
            c, site = await self.consultations.get(conn.principal, cid)
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
            return await send(conn, self._ended_message(c.id, c.end_reason, c.duration_seconds))
        room = self.rooms.setdefault(cid, Room(cid, site.id, site.state))
        # Announced before the join is answered: a party that hears "joined" may count on its peer
        # knowing (across instances too). Anything the peer sends back meanwhile waits in the mailbox
        # and is handed over below, in order.
        await self._to(room, other(role), {"type": PEER_JOINED, "consultation_id": cid, "role": role})
        async with room.locks[role]:
            room.members[role] = conn
            waiting = await self.mailbox.take(cid, role)
            peer_joined = any(m.get("type") == PEER_JOINED for m in waiting)
            await send(
                conn,
                {
                    "type": "consult.joined",
                    "consultation_id": cid,
                    "role": role,
                    "state": c.state,
                    "peer_joined": peer_joined,
                },
            )
            for message in waiting:
                if message.get("type") != PEER_JOINED:
                    await send(conn, message)

    async def signal(self, conn: Connection, data: dict[str, Any]) -> None:
        cid = self._id(data)
        role = self._role_of(conn, cid) if cid is not None else None
        if cid is None or role is None:
            return await self._refuse(conn, cid, "Join the consultation before signalling.")
        if not self.rooms[cid].admits(conn):
            return await self._refuse(conn, cid, "You may no longer take part in this consultation.")
        message: dict[str, Any] = {"type": "consult.signal", "consultation_id": cid, "from": role}
        for key in SIGNAL_KEYS:
            if key in data:
                message[key] = data[key]
        if not await self._to(self.rooms[cid], other(role), message):
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

    # -- the consultation's life -----------------------------------------------------------------

    async def accepted(self, c: Consultation) -> None:
        """Tells the site at once when it is connected here (the journal event reaches it anywhere)."""
        room = self.rooms.get(c.id)
        site = room.members.get(SITE) if room else None
        if site is not None:
            await send(
                site,
                {"type": "consult.accepted", "consultation_id": c.id, "pharmacist_id": c.pharmacist_id},
            )

    @staticmethod
    def _ended_message(cid: int, reason: Any, duration: Any) -> dict[str, Any]:
        return {
            "type": "consult.ended",
            "consultation_id": cid,
            "reason": reason,
            "duration_seconds": duration,
        }

    async def _close_room(self, cid: int, message: dict[str, Any]) -> None:
        """Whichever comes first, the end's own code or its journal event, tells the parties here."""
        room = self.rooms.pop(cid, None)
        if room is not None:
            for member in list(room.members.values()):
                await send(member, message)

    async def ended(self, c: Consultation) -> None:
        """The consultation ended on this instance: both parties here hear it now, nothing waits on."""
        await self._close_room(c.id, self._ended_message(c.id, c.end_reason, c.duration_seconds))
        try:
            await self.mailbox.discard(c.id)
        except Exception:
            log.exception("clearing the signals of consultation %s failed (they expire)", c.id)

    def journaled(self, ev: Event) -> None:
        """An end committed by any instance closes this instance's room, and its parties here hear it."""
        cid = ev.payload.get("consultation_id")
        if ev.type == "consultation.ended" and isinstance(cid, int) and cid in self.rooms:
            payload = ev.payload
            message = self._ended_message(cid, payload.get("end_reason"), payload.get("duration_seconds"))
            task = asyncio.get_running_loop().create_task(self._close_room(cid, message))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def dropped(self, conn: Connection) -> None:
        """A party's live connection closed: the consultation ends for both, at once."""
        for cid in [cid for cid, room in self.rooms.items() if conn in room.members.values()]:
            room = self.rooms.get(cid)
            role = self._role_of(conn, cid)
            if room is not None and role is not None and room.members.get(role) is conn:
                del room.members[role]
            try:
                c, _ = await self.consultations.get(conn.principal, cid)
                if c.state in OPEN_STATES:
                    await self.consultations.end(None, cid, "dropped")
            except Exception:
                log.exception("ending consultation %s after a dropped connection failed", cid)
