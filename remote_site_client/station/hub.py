"""The pages' websockets: what the station pushes to every open page (uplink, progress, decisions).

Messages carry ids, states and counts; a page asks the station for the rest (a prescription, a
patient's name) over HTTP when it shows it, so nothing about a patient is pushed to a page that did not
ask for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from aiohttp import web

log = logging.getLogger(__name__)

# A page that cannot keep up gets dropped rather than buffered without end; it reconnects and asks
# for the state afresh.
SEND_TIMEOUT = 5.0


class PageHub:
    """The open pages, and the latest message of each kind a new page needs at once (the snapshot)."""

    def __init__(self) -> None:
        self.sockets: set[web.WebSocketResponse] = set()

    async def broadcast(self, message: dict[str, Any]) -> None:
        """Sends `message` to every open page; a page that fails is closed."""
        if not self.sockets:
            return
        data = json.dumps(message)

        async def one(ws: web.WebSocketResponse) -> None:
            try:
                async with asyncio.timeout(SEND_TIMEOUT):
                    await ws.send_str(data)
            except (ConnectionError, RuntimeError, TimeoutError):
                self.sockets.discard(ws)
                with contextlib.suppress(Exception):
                    await ws.close()

        await asyncio.gather(*(one(ws) for ws in list(self.sockets)))

    def post(self, message: dict[str, Any]) -> None:
        """Broadcasts from code that cannot wait (a progress callback)."""
        if self.sockets:
            task = asyncio.get_running_loop().create_task(self.broadcast(message))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())

    async def close(self) -> None:
        for ws in list(self.sockets):
            with contextlib.suppress(Exception):
                await ws.close(code=1001, message=b"station stopping")
        self.sockets.clear()
