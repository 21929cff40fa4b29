"""Wakes event readers when events are committed: in-process, or PostgreSQL LISTEN/NOTIFY across nodes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Protocol

log = logging.getLogger(__name__)


class EventBus(Protocol):
    """Tells the hub that the journal has grown. Carries no data: readers read the journal."""

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def committed(self) -> None: ...
    async def wait(self, seconds: float) -> None: ...


class LocalBus:
    """One node: a commit in this process wakes this process's hub."""

    def __init__(self) -> None:
        self._wake = asyncio.Event()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        self._wake.set()

    def committed(self) -> None:
        self._wake.set()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), seconds)
        self._wake.clear()


class PostgresBus(LocalBus):
    """Several nodes: every commit NOTIFYs tp_events (see journal.record); each node LISTENs."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self.dsn = dsn.replace("postgresql+asyncpg://", "postgresql://")
        self._conn: Any = None

    async def start(self) -> None:
        import asyncpg  # type: ignore[import-untyped]

        self._conn = await asyncpg.connect(self.dsn)
        await self._conn.add_listener("tp_events", self._on_notify)

    def _on_notify(self, *_args: Any) -> None:
        self._wake.set()

    async def stop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                await self._conn.close()
            self._conn = None
        await super().stop()
