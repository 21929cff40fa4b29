"""Wakes event readers when events are committed: in-process, or PostgreSQL LISTEN/NOTIFY across nodes.

It also carries access notices: someone's rights changed (signed out, token revoked, deactivated, licenses
or site changed), so every node re-checks the live connections the notice names. A notice names ids only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

# A lost LISTEN connection is made again after these delays (doubling up to the maximum).
RECONNECT_FIRST_DELAY = 0.5
RECONNECT_MAX_DELAY = 5.0
ACCESS_CHANNEL = "tp_access"
# Called with the text of another node's notice; an empty text names no one: notices may have been missed.
AccessHandler = Callable[[str], None]


class EventBus(Protocol):
    """Tells the hub that the journal has grown. Carries no data: readers read the journal."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def committed(self) -> None: ...
    async def wait(self, seconds: float) -> bool:
        """Until woken (True) or `seconds` passed (False)."""
        ...

    def unread(self, last_id: int) -> bool:
        """Whether what woke the reader may be events after last_id (else they were read already)."""
        ...

    def on_access(self, handler: AccessHandler) -> None:
        """Calls handler with each access notice another node announces."""
        ...

    async def announce_access(self, notice: str) -> None:
        """Tells the other nodes of an access notice (this node's hub has its own in hand)."""
        ...


class LocalBus:
    """One node: a commit in this process wakes this process's hub."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()
        self._access_handlers: list[AccessHandler] = []

    def on_access(self, handler: AccessHandler) -> None:
        self._access_handlers.append(handler)

    async def announce_access(self, notice: str) -> None:
        del notice  # there is no other node

    def _access_notified(self, notice: str) -> None:
        for handler in self._access_handlers:
            try:
                handler(notice)
            except Exception:
                log.exception("an access notice handler failed")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._wake.set()

    def committed(self) -> None:
        self._wake.set()

    async def wait(self, seconds: float) -> bool:
        woken = False
        with contextlib.suppress(TimeoutError):
            woken = await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()
        return woken

    def unread(self, last_id: int) -> bool:
        del last_id
        return True  # woken only when the hub could not take its own events from memory


class PostgresBus(LocalBus):
    """Several nodes: every commit NOTIFYs tp_events (see journal.record); each node LISTENs.

    Its one listening connection also carries the other channels a node listens to (`listen`).
    """

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self._conn: Any = None
        self._channels: dict[str, Callable[[str], None]] = {
            "tp_events": self._notified,
            ACCESS_CHANNEL: self._access_notified,
        }
        # One statement at a time on the listening connection (LISTEN, and NOTIFY of access notices).
        self._conn_lock = asyncio.Lock()
        self._newest = 0  # the highest event id a NOTIFY named
        self._must_read = False  # woken by something that names no id
        self._stopping = False
        self._reconnecting: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._stopping = False
        await self._connect()

    async def _connect(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        conn = await asyncpg.connect(self.dsn)
        try:
            for channel in self._channels:
                await conn.add_listener(channel, self._on_notify)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._on_terminated)
        self._conn = conn

    def _on_terminated(self, conn: Any) -> None:
        if self._stopping or conn is not self._conn:
            return
        self._conn = None
        log.warning("the LISTEN connection to PostgreSQL was lost; reconnecting (polling meanwhile)")
        self._reconnecting = asyncio.get_running_loop().create_task(
            self._reconnect(), name="listen-reconnect"
        )

    async def _reconnect(self) -> None:
        delay = RECONNECT_FIRST_DELAY
        while not self._stopping:
            try:
                await self._connect()
            except Exception as exc:
                log.warning(
                    "reconnecting to PostgreSQL to LISTEN failed (%s); again in %.1f s",
                    type(exc).__name__,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_DELAY)
                continue
            log.info("listening to PostgreSQL again")
            # What was NOTIFYed while it was away is lost. An empty payload names nothing: the hub reads
            # the journal for it (the signal mailbox's own poll finds any waiting signal).
            for handler in list(self._channels.values()):
                handler("")
            return

    def _notified(self, payload: str) -> None:
        if payload.isdigit():
            self._newest = max(self._newest, int(payload))
        else:
            self._must_read = True
        self._wake.set()

    def committed(self) -> None:
        self._must_read = True
        self._wake.set()

    def unread(self, last_id: int) -> bool:
        # A node's own commits NOTIFY it too, after its hub has delivered them from memory.
        must, self._must_read = self._must_read, False
        return must or self._newest > last_id

    async def listen(self, channel: str, on_payload: Callable[[str], None]) -> None:
        """Calls on_payload with each NOTIFY payload on channel (from now, or from start)."""
        self._channels[channel] = on_payload
        async with self._conn_lock:
            if self._conn is not None:
                await self._conn.add_listener(channel, self._on_notify)

    async def announce_access(self, notice: str) -> None:
        try:
            async with self._conn_lock:
                if self._conn is not None:
                    await self._conn.execute("SELECT pg_notify($1, $2)", ACCESS_CHANNEL, notice)
                    return
            import asyncpg

            conn = await asyncpg.connect(self.dsn)
            try:
                await conn.execute("SELECT pg_notify($1, $2)", ACCESS_CHANNEL, notice)
            finally:
                await conn.close()
        except Exception as exc:
            # The other nodes' live connections re-read their rights on their own (hub.REVALIDATE_SECONDS).
            log.warning("announcing an access change to the other nodes failed (%s)", type(exc).__name__)

    def _on_notify(self, conn: Any, pid: int, channel: str, payload: str) -> None:
        if channel == ACCESS_CHANNEL and pid == conn.get_server_pid():
            return  # this node's own notice: its hub handled it when announcing it
        handler = self._channels.get(channel)
        if handler is not None:
            handler(payload)

    async def stop(self) -> None:
        self._stopping = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
            self._reconnecting = None
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        await super().stop()
