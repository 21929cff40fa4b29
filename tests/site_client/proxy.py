"""A TCP proxy the test controls: counts bytes each way, cuts every connection on demand or after N bytes
sent up, refuses connections while "down", and can shape the link (upstream rate, round-trip delay).

Shaping paces the reads from the client, so the client feels the bottleneck through TCP backpressure
(as on a real slow uplink) instead of pouring everything into the proxy's buffers.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

_READ = 16 * 1024


@dataclass
class LinkStats:
    up_bytes: int = 0
    down_bytes: int = 0
    connections: int = 0
    cuts: int = 0
    up_at_cut: int = 0
    per_connection_up: list[int] = field(default_factory=list)


class LinkProxy:
    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        up_rate: float | None = None,
        down_rate: float | None = None,
        rtt: float = 0.0,
    ) -> None:
        self.target = (target_host, target_port)
        self.up_rate = up_rate  # bytes per second from the client to the server
        self.down_rate = down_rate
        self.one_way = rtt / 2
        self.stats = LinkStats()
        self.down = False
        self.cut_after_up: int | None = None
        self._server: asyncio.Server | None = None
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        # One bottleneck per direction, shared by every connection (a site's uplink is one pipe).
        self._free_at = {True: 0.0, False: 0.0}

    async def start(self, port: int = 0) -> int:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        self.cut()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)
            self._server = None

    def cut(self) -> None:
        """Drops every open connection, as a link that went away would (abort: no polite close)."""
        for client, upstream in list(self._conns):
            for w in (client, upstream):
                w.transport.abort()
        if self._conns:
            self.stats.cuts += 1
            self.stats.up_at_cut = self.stats.up_bytes
        self._conns.clear()

    def reset_counts(self) -> None:
        self.stats = LinkStats()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.down:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.stats.connections += 1
        index = len(self.stats.per_connection_up)
        self.stats.per_connection_up.append(0)
        pair = (writer, up_writer)
        self._conns.add(pair)
        up = asyncio.create_task(self._pipe(reader, up_writer, upstream=True, index=index))
        down = asyncio.create_task(self._pipe(up_reader, writer, upstream=False, index=index))
        self._tasks |= {up, down}
        try:
            await asyncio.wait([up, down], return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in (up, down):
                t.cancel()
            await asyncio.gather(up, down, return_exceptions=True)
            self._tasks -= {up, down}
            self._conns.discard(pair)
            for w in (writer, up_writer):
                w.transport.abort()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, upstream: bool, index: int
    ) -> None:
        rate = self.up_rate if upstream else self.down_rate
        # Bytes in flight on the "wire": delivered after the one-way delay, in order.
        wire: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        deliver = asyncio.create_task(self._deliver(wire, writer))
        try:
            while True:
                data = await reader.read(_READ)
                if not data:
                    break
                if upstream:
                    self.stats.up_bytes += len(data)
                    self.stats.per_connection_up[index] += len(data)
                    if self.cut_after_up is not None and self.stats.up_bytes >= self.cut_after_up:
                        self.cut_after_up = None
                        self.cut()
                        return
                else:
                    self.stats.down_bytes += len(data)
                if rate:
                    # Serialisation on the bottleneck: the next read waits until this chunk has "left".
                    free_at = max(self._free_at[upstream], time.monotonic()) + len(data) / rate
                    self._free_at[upstream] = free_at
                    await asyncio.sleep(max(0.0, free_at - time.monotonic()))
                wire.put_nowait((time.monotonic() + self.one_way, data))
            wire.put_nowait((time.monotonic() + self.one_way, b""))
            await deliver
        finally:
            deliver.cancel()
            await asyncio.gather(deliver, return_exceptions=True)

    async def _deliver(self, wire: asyncio.Queue[tuple[float, bytes]], writer: asyncio.StreamWriter) -> None:
        while True:
            at, data = await wire.get()
            delay = at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if not data:
                with contextlib.suppress(OSError, RuntimeError):
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()
