"""Delivers journal events to websocket clients, each only what its user may see.

One pump reads the journal after each commit and offers every event to the connections whose user may
see it; connections are grouped by user (a site's devices, a console's tabs), so the rule is asked once
per group and event, not once per socket. A connection has a bounded queue: a client too slow to
drain it is disconnected, and catches up by cursor when it reconnects, so one slow client never stalls
the others.

A connection keeps only the rights it still has. Its user's rights are read afresh (`Hub.still_valid`)
when an access notice names the user or their site (a sign-out, a revoked token, a deactivation, a
license or site change, announced on the bus to every node), before each message it acts with (joining
or signalling a call), before anything is sent to it when they were last read more than
`revalidate_seconds` ago, and every `revalidate_seconds` while it is idle (a license runs out by the
date; a change made where no hub hears of it, such as on the command line, is seen that late at worst).
Rights withdrawn close it (4401, with the reason); narrower ones (a license removed) apply to what it is
sent from then on.

The journal is a window, not an archive: old events are deleted. A client reconnecting with a cursor
from before the window's start, or more than `replay_limit` events behind, is not replayed to: it is
told to reload (`{"type": "reload", "reason": ..., "cursor": ...}`), reads the state afresh over HTTP
and goes on from the live point, which costs one page of its list instead of thousands of events.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSCloseCode, web
from sqlalchemy import bindparam, func, select

from server.db.bound import at_most
from server.db.engine import Database
from server.db.models import Event
from server.realtime.bus import EventBus
from server.security.principal import AccessChange, Principal, Role

log = logging.getLogger(__name__)

CLOSE_LAGGING = 4000
CLOSE_ACCESS_WITHDRAWN = 4401
# Why a connection was closed with CLOSE_ACCESS_WITHDRAWN, by how its user authenticated.
WITHDRAWN_REASON = {
    "device": b"device token revoked, account deactivated or site suspended",
    "session": b"signed out, session ended or account deactivated: sign in again",
}
REVALIDATE_SECONDS = 60.0
CATCH_UP_BATCH = 500
# Events a reconnecting client is replayed at most; further behind, it reloads.
REPLAY_LIMIT = 1000
# Why a client is told to reload rather than replayed to.
BEHIND_WINDOW = "behind_window"  # events after its cursor were deleted from the journal
TOO_FAR_BEHIND = "too_far_behind"  # more than the replay limit of events came after its cursor
# The pump's read of the journal: built once.
_EVENTS_AFTER = (
    select(Event).where(Event.id > bindparam("after")).order_by(Event.id).limit(at_most(CATCH_UP_BATCH))
)


def event_message(ev: Event) -> dict[str, Any]:
    payload = {k: v for k, v in ev.payload.items() if k != "for_user"}
    return {"id": ev.id, "type": ev.type, "at": ev.at.isoformat(), "us_state": ev.us_state, **payload}


def visible(principal: Principal, ev: Event) -> bool:
    """Who sees an event: the user it is for, else whoever may see its site (Principal's rule)."""
    target = ev.payload.get("for_user")
    if target is not None:
        return bool(target == principal.user_id)
    if ev.site_id is None or ev.us_state is None:
        # Every event names its site or its user; one that names neither is for administrators.
        return principal.role is Role.ADMIN
    return principal.may_see_site(ev.site_id, ev.us_state)


def serialized_once(ev: Event) -> Callable[[], str]:
    """The event's message as JSON text, made on first use and shared by every connection."""
    text: str | None = None

    def message() -> str:
        nonlocal text
        if text is None:
            text = json.dumps(event_message(ev))
        return text

    return message


# Reads a connection's rights afresh: None once they were withdrawn.
Revalidate = Callable[[], Awaitable[Principal | None]]


class Connection:
    def __init__(
        self,
        principal: Principal,
        ws: web.WebSocketResponse,
        queue_size: int,
        revalidate: Revalidate | None = None,
    ) -> None:
        self.principal = principal
        self.ws = ws
        # (event, its message text)
        self.queue: asyncio.Queue[tuple[Event, str]] = asyncio.Queue(queue_size)
        self.lagging = False
        self.revalidate = revalidate
        self.checked_at = time.monotonic()
        self.withdrawn = False
        self.closing: asyncio.Task[None] | None = None  # the close once its rights were withdrawn
        # One reading of the rights at a time, each applied in turn: the last one read is the newest.
        self.check_lock = asyncio.Lock()

    def offer(self, ev: Event, message: Callable[[], str]) -> None:
        """Queues the event's message (`message` makes its text); the hub has checked that this
        connection's user may see it."""
        if self.lagging:
            return
        try:
            self.queue.put_nowait((ev, message()))
        except asyncio.QueueFull:
            self.lagging = True


MessageHandler = Callable[[Connection, dict[str, Any]], Awaitable[None]]
CloseListener = Callable[[Connection], Awaitable[None]]
EventListener = Callable[[Event], None]


def _named(notice: str) -> AccessChange | None:
    """Who an access notice names; None when it names no one in particular (re-check everyone)."""
    try:
        body = json.loads(notice) if notice else None
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    user_id, site_id = body.get("user_id"), body.get("site_id")
    if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in (user_id, site_id)):
        return None
    return AccessChange(user_id=user_id, site_id=site_id)


def _affects(change: AccessChange, principal: Principal) -> bool:
    return change.user_id == principal.user_id or (
        change.site_id is not None and change.site_id == principal.site_id
    )


class Hub:
    def __init__(
        self,
        db: Database,
        bus: EventBus,
        *,
        queue_size: int = 1000,
        revalidate_seconds: float = REVALIDATE_SECONDS,
        replay_limit: int = REPLAY_LIMIT,
    ) -> None:
        self.db = db
        self.bus = bus
        self.queue_size = queue_size
        self.replay_limit = replay_limit
        self.revalidate_seconds = revalidate_seconds
        # Live connections by user: who may see an event is asked once per distinct principal.
        self._audiences: dict[Principal, set[Connection]] = {}
        self.last_id = 0
        self.handlers: dict[str, MessageHandler] = {}
        # Called after a connection ended (signalling ends the calls it was part of).
        self.on_close: list[CloseListener] = []
        # Told of every journal event this node reads, whichever node committed it (must not block).
        self.on_event: list[EventListener] = []
        self._pump: asyncio.Task[None] | None = None
        self._watch: asyncio.Task[None] | None = None
        self._rechecks: set[asyncio.Task[None]] = set()
        self._stopping = False
        bus.on_access(self._access_notice)

    async def start(self) -> None:
        async with self.db.read() as s:
            self.last_id = (await s.execute(select(func.max(Event.id)))).scalar() or 0
        await self.bus.start()
        self.db.commit_hooks.append(self.committed)
        self._pump = asyncio.create_task(self._run(), name="realtime-pump")
        self._watch = asyncio.create_task(self._revalidate_idle(), name="realtime-rights")

    async def stop(self) -> None:
        self._stopping = True
        await self.bus.stop()
        for task in [self._pump, self._watch, *self._rechecks]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.close_all()

    async def close_all(self) -> None:
        for conn in self.connections:
            await conn.ws.close(code=WSCloseCode.GOING_AWAY, message=b"server shutdown")

    async def _run(self) -> None:
        while not self._stopping:
            # The timeout is a safety net: a missed wake-up costs at most one second.
            if await self.bus.wait(1.0) and not self.bus.unread(self.last_id):
                continue
            try:
                await self.pump_once()
            except Exception:
                log.exception("realtime pump failed; retrying")
                await asyncio.sleep(0.5)

    def committed(self, events: list[Event]) -> None:
        """Events this process has just committed: delivered from memory, without reading them back,
        once the committing code has gone on (it may have more to do first, such as a consultation's
        end closing its room)."""
        asyncio.get_running_loop().call_soon(self._take, events)

    def _take(self, events: list[Event]) -> None:
        if events[-1].id <= self.last_id:
            return  # the pump read them first
        if events[0].id == self.last_id + 1:
            for ev in events:
                self._deliver(ev)
        else:
            # Events of another node (or another process) come between: the pump reads all in order.
            self.bus.committed()

    async def access_changed(self, change: AccessChange) -> None:
        """A committed change of someone's rights: the other nodes are told, and this node's connections
        it names are re-read before this returns (so the change's request is answered after that)."""
        notice = {"user_id": change.user_id, "site_id": change.site_id}
        await self.bus.announce_access(json.dumps({k: v for k, v in notice.items() if v is not None}))
        await self._recheck([c for c in self.connections if _affects(change, c.principal)])

    def _access_notice(self, notice: str) -> None:
        """Another node's notice (or, when notices may have been missed, none: everyone is re-read)."""
        change = _named(notice)
        affected = [c for c in self.connections if change is None or _affects(change, c.principal)]
        if affected:
            task = asyncio.get_running_loop().create_task(self._recheck(affected), name="realtime-recheck")
            self._rechecks.add(task)
            task.add_done_callback(self._rechecks.discard)

    async def _recheck(self, conns: list[Connection]) -> None:
        for conn in conns:
            try:
                await self.still_valid(conn)
            except Exception as exc:
                # Not closed on a failed read: the next message, event or idle check reads again.
                log.warning("re-reading a live connection's rights failed (%s)", type(exc).__name__)

    async def _revalidate_idle(self) -> None:
        while True:
            await asyncio.sleep(self.revalidate_seconds / 4)
            now = time.monotonic()
            await self._recheck(
                [c for c in self.connections if now - c.checked_at >= self.revalidate_seconds]
            )

    async def still_valid(self, conn: Connection) -> bool:
        """Reads the connection's rights afresh. Withdrawn, it is closed (4401, with the reason) and
        False is returned; otherwise what it is sent from now on follows the rights just read."""
        if conn.revalidate is None:
            return True
        async with conn.check_lock:
            if conn.withdrawn:
                return False
            principal = await conn.revalidate()
            conn.checked_at = time.monotonic()
            registered = conn in self._audiences.get(conn.principal, ())  # else `serve` has ended
            if principal is None:
                conn.withdrawn = True
                if registered:
                    self.discard(conn)
                    # Nothing more reaches it from now; the closing handshake does not hold up the
                    # caller (a sign-out's answer), and `serve` waits for it.
                    conn.closing = asyncio.get_running_loop().create_task(self._close_withdrawn(conn))
                return False
            if principal != conn.principal:
                self.discard(conn)
                conn.principal = principal
                if registered:
                    self.add(conn)
            return True

    @staticmethod
    async def _close_withdrawn(conn: Connection) -> None:
        reason = WITHDRAWN_REASON.get(conn.principal.via, b"access withdrawn")
        with contextlib.suppress(ConnectionError, RuntimeError):
            await conn.ws.close(code=CLOSE_ACCESS_WITHDRAWN, message=reason)

    @property
    def connections(self) -> list[Connection]:
        """Every live connection."""
        return [conn for group in self._audiences.values() for conn in group]

    def add(self, conn: Connection) -> None:
        """Registers a connection for live events."""
        self._audiences.setdefault(conn.principal, set()).add(conn)

    def discard(self, conn: Connection) -> None:
        """Unregisters a connection (no error if it is not registered)."""
        group = self._audiences.get(conn.principal)
        if group is not None:
            group.discard(conn)
            if not group:
                del self._audiences[conn.principal]

    def _deliver(self, ev: Event) -> None:
        message = serialized_once(ev)
        for principal, group in list(self._audiences.items()):
            if visible(principal, ev):
                for conn in list(group):
                    conn.offer(ev, message)
        for listener in self.on_event:
            try:
                listener(ev)
            except Exception:
                log.exception("an event listener failed")
        self.last_id = ev.id

    async def pump_once(self) -> None:
        while True:
            async with self.db.read_one() as s:
                events = (await s.execute(_EVENTS_AFTER, {"after": self.last_id})).scalars().all()
            for ev in events:
                if ev.id > self.last_id:  # not delivered from memory while the journal was read
                    self._deliver(ev)
            if len(events) < CATCH_UP_BATCH:
                return

    async def why_reload(self, cursor: int, upto: int) -> str | None:
        """Why a client at `cursor` must reload rather than be replayed the events up to `upto`; None
        when the replay is what it needs. Journal ids have no gaps (each is the last one plus one, under
        the journal lock), so the ids say how many events came after the cursor and whether the first of
        them is still kept."""
        if cursor >= upto:
            return None
        if upto - cursor > self.replay_limit:
            return TOO_FAR_BEHIND
        async with self.db.read() as s:
            oldest = (await s.execute(select(func.min(Event.id)))).scalar()
        if oldest is None or oldest > cursor + 1:
            return BEHIND_WINDOW
        return None

    async def catch_up(self, conn: Connection, cursor: int, upto: int) -> int:
        """Sends events after cursor up to upto that the connection may see; returns the last id sent."""
        sent = cursor
        while sent < upto:
            async with self.db.read() as s:
                events = (
                    (
                        await s.execute(
                            select(Event)
                            .where(Event.id > sent, Event.id <= upto)
                            .order_by(Event.id)
                            .limit(CATCH_UP_BATCH)
                        )
                    )
                    .scalars()
                    .all()
                )
            if not events:
                break
            for ev in events:
                if visible(conn.principal, ev):
                    await conn.ws.send_json(event_message(ev))
            sent = events[-1].id
        return max(sent, upto)

    async def serve(
        self,
        principal: Principal,
        ws: web.WebSocketResponse,
        cursor: int | None,
        revalidate: Revalidate | None = None,
    ) -> None:
        """Runs one connection: hello, catch-up from cursor, then live events and incoming messages.

        `revalidate` reads the user's rights afresh (without it they are never re-read)."""
        conn = Connection(principal, ws, self.queue_size, revalidate)
        # Registered before reading the catch-up, so nothing committed in between is missed.
        self.add(conn)
        try:
            upto = self.last_id
            await ws.send_json(
                {"type": "hello", "cursor": upto, "user_id": principal.user_id, "role": principal.role.value}
            )
            sent = upto
            if cursor is not None:
                reason = await self.why_reload(cursor, upto)
                if reason is None:
                    sent = await self.catch_up(conn, cursor, upto)
                else:
                    await ws.send_json({"type": "reload", "reason": reason, "cursor": upto})
            sender = asyncio.create_task(self._send(conn, sent))
            try:
                await self._receive(conn)
            finally:
                sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await sender
        finally:
            self.discard(conn)
            if conn.closing is not None:
                await conn.closing
            for listener in list(self.on_close):
                try:
                    await listener(conn)
                except Exception:
                    log.exception("a connection-close listener failed")

    async def _send(self, conn: Connection, sent: int) -> None:
        while True:
            if conn.lagging and conn.queue.empty():
                await conn.ws.close(code=CLOSE_LAGGING, message=b"too slow: reconnect with your cursor")
                return
            ev, text = await conn.queue.get()
            if conn.withdrawn:
                return
            if ev.id <= sent:
                continue
            if time.monotonic() - conn.checked_at >= self.revalidate_seconds:
                try:
                    if not await self.still_valid(conn):
                        return
                except Exception as exc:
                    log.warning("re-reading a live connection's rights failed (%s)", type(exc).__name__)
                if not visible(conn.principal, ev):
                    continue
            await conn.ws.send_str(text)
            sent = ev.id

    async def _receive(self, conn: Connection) -> None:
        async for msg in conn.ws:
            if msg.type != web.WSMsgType.TEXT:
                continue
            try:
                data = json.loads(msg.data)
                kind = data.get("type")
            except (ValueError, AttributeError):
                await conn.ws.send_json({"type": "error", "error": "messages are JSON objects with a 'type'"})
                continue
            if kind == "ping":
                await conn.ws.send_json({"type": "pong"})
                continue
            handler = self.handlers.get(kind)
            if handler is None:
                await conn.ws.send_json({"type": "error", "error": f"unknown message type {kind!r}"})
                continue
            if not await self._act(conn, handler, data):
                return

    async def _act(self, conn: Connection, handler: MessageHandler, data: dict[str, Any]) -> bool:
        """Runs a message's handler, which acts with the connection's rights (a call's join, signals,
        hang-up), once they are read afresh; False when they were withdrawn (the connection is closed)."""
        try:
            allowed = await self.still_valid(conn)
        except Exception as exc:
            log.warning("re-reading a live connection's rights failed (%s)", type(exc).__name__)
            await conn.ws.send_json(
                {"type": "error", "error": "Your rights could not be checked; try again."}
            )
            return True
        if allowed:
            await handler(conn, data)
        return allowed
