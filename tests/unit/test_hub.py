"""The hub fans events out without letting one slow client stall the others."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from server.db.engine import Database
from server.db.models import Event
from server.realtime import journal
from server.realtime.bus import LocalBus
from server.realtime.hub import CLOSE_ACCESS_WITHDRAWN, CLOSE_LAGGING, Hub, visible
from server.security.principal import Principal, Role


class FakeSocket:
    """Stands in for a websocket: records what is sent; a stuck one never finishes a send."""

    def __init__(self, stuck: bool = False) -> None:
        self.sent: list[dict[str, Any]] = []
        self.stuck = stuck
        self.closed_with: int | None = None
        self._closed = asyncio.Event()
        self._greeted = asyncio.Event()

    async def send_json(self, data: dict[str, Any]) -> None:
        if self.stuck and data.get("type") != "hello":
            await asyncio.Event().wait()
        self.sent.append(data)
        if data.get("type") == "hello":
            self._greeted.set()

    async def greeted(self) -> None:
        """Returns once the hub said hello: from then on the connection is registered for events."""
        async with asyncio.timeout(5):
            await self._greeted.wait()

    async def send_str(self, text: str) -> None:
        await self.send_json(json.loads(text))

    async def close(self, code: int = 1000, message: bytes = b"") -> None:
        self.closed_with = code
        self._closed.set()

    def __aiter__(self) -> FakeSocket:
        return self

    async def __anext__(self) -> Any:
        await self._closed.wait()
        raise StopAsyncIteration


def pharmacist(states: set[str]) -> Principal:
    return Principal(1, "rph", "Rph", Role.PHARMACIST, None, frozenset(states), "session")


async def test_slow_client_is_dropped_while_fast_ones_get_every_event(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    await db.create_schema()
    hub = Hub(db, LocalBus(), queue_size=5)
    await hub.start()
    fast, slow, other_state = FakeSocket(), FakeSocket(stuck=True), FakeSocket()
    tasks = [
        asyncio.create_task(hub.serve(pharmacist({"ND"}), fast, None)),  # type: ignore[arg-type]
        asyncio.create_task(hub.serve(pharmacist({"ND"}), slow, None)),  # type: ignore[arg-type]
        asyncio.create_task(hub.serve(pharmacist({"MN"}), other_state, None)),  # type: ignore[arg-type]
    ]
    await asyncio.gather(fast.greeted(), slow.greeted(), other_state.greeted())
    for i in range(40):
        async with db.write() as s:
            await journal.record(db, s, "fill.queued", site_id=1, us_state="ND", payload={"fill_id": str(i)})
    async with asyncio.timeout(5):
        while len([m for m in fast.sent if m["type"] == "fill.queued"]) < 40:
            await asyncio.sleep(0.01)
    assert [m["fill_id"] for m in fast.sent if m["type"] == "fill.queued"] == [str(i) for i in range(40)]
    assert [m for m in other_state.sent if m["type"] != "hello"] == []
    # The stuck client is never awaited by the others; once its queue overflowed it is marked lagging.
    conn = next(c for c in hub.connections if c.ws is slow)
    assert conn.lagging
    for ws in (fast, other_state):
        await ws.close()
    await hub.stop()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await db.dispose()


async def test_lagging_client_is_closed_once_its_queue_drains(sqlite_url: str) -> None:
    db = Database(sqlite_url)
    await db.create_schema()
    hub = Hub(db, LocalBus(), queue_size=2)
    await hub.start()
    ws = FakeSocket()
    gate = asyncio.Event()
    original = ws.send_json

    async def slow_send(data: dict[str, Any]) -> None:
        if data.get("type") != "hello":
            await gate.wait()
        await original(data)

    ws.send_json = slow_send  # type: ignore[method-assign]
    task = asyncio.create_task(hub.serve(pharmacist({"ND"}), ws, None))  # type: ignore[arg-type]
    await ws.greeted()
    for i in range(6):
        async with db.write() as s:
            await journal.record(db, s, "fill.queued", site_id=1, us_state="ND", payload={"fill_id": str(i)})
    conn = next(c for c in hub.connections if c.ws is ws)
    async with asyncio.timeout(5):
        while not conn.lagging:
            await asyncio.sleep(0.01)
    gate.set()
    async with asyncio.timeout(5):
        while ws.closed_with is None:
            await asyncio.sleep(0.01)
    assert ws.closed_with == CLOSE_LAGGING
    got = [m["id"] for m in ws.sent if m["type"] == "fill.queued"]
    assert got == sorted(got) and len(got) < 6  # it reconnects with its cursor for the rest
    await hub.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await db.dispose()


async def test_events_of_another_process_are_never_overtaken_by_this_ones(sqlite_url: str) -> None:
    """The hub hands on its own commits from memory, but only in journal order: an event another
    process committed first (not yet read here) comes first."""
    db = Database(sqlite_url)
    await db.create_schema()
    elsewhere = Database(sqlite_url)  # another process on the same database: its commits reach no hub here
    hub = Hub(db, LocalBus())
    await hub.start()
    ws = FakeSocket()
    task = asyncio.create_task(hub.serve(pharmacist({"ND"}), ws, None))  # type: ignore[arg-type]
    await ws.greeted()

    async def queued(on: Database, fill_id: str) -> None:
        async with on.write() as s:
            await journal.record(on, s, "fill.queued", site_id=1, us_state="ND", payload={"fill_id": fill_id})

    await queued(db, "a")  # next in order: from memory
    await queued(elsewhere, "b")  # unread here
    await queued(db, "c")  # not next: the journal is read, b first
    await queued(db, "d")
    async with asyncio.timeout(5):
        while len([m for m in ws.sent if m["type"] == "fill.queued"]) < 4:
            await asyncio.sleep(0.01)
    got = [(m["id"], m["fill_id"]) for m in ws.sent if m["type"] == "fill.queued"]
    assert got == [(1, "a"), (2, "b"), (3, "c"), (4, "d")]
    await ws.close()
    await hub.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await elsewhere.dispose()
    await db.dispose()


def test_an_event_reaches_whoever_may_see_its_site_or_the_user_it_is_for() -> None:
    readers = {
        "ND pharmacist": pharmacist({"ND"}),
        "MN pharmacist": pharmacist({"MN"}),
        "site 1 technician": Principal(7, "tech1", "Tech 1", Role.TECHNICIAN, 1, frozenset(), "device"),
        "site 2 technician": Principal(8, "tech2", "Tech 2", Role.TECHNICIAN, 2, frozenset(), "device"),
        "admin": Principal(9, "admin", "Admin", Role.ADMIN, None, frozenset(), "session"),
    }
    queued = Event(id=1, type="fill.queued", site_id=1, us_state="ND", payload={})
    signal = Event(id=2, type="consultation.signal", site_id=1, us_state="ND", payload={"for_user": 1})
    assert {name for name, p in readers.items() if visible(p, queued)} == {
        "ND pharmacist",
        "site 1 technician",
        "admin",
    }
    # Both pharmacists are user 1 here: an event for a user goes to that user alone.
    assert {name for name, p in readers.items() if visible(p, signal)} == {"ND pharmacist", "MN pharmacist"}


async def test_an_idle_connection_rereads_its_rights_and_loses_what_ran_out(sqlite_url: str) -> None:
    """A license runs out by the date, with no one announcing it: the hub re-reads the rights of a
    connection that has not been checked for `revalidate_seconds`, narrows them, and closes it once
    they are withdrawn."""
    db = Database(sqlite_url)
    await db.create_schema()
    hub = Hub(db, LocalBus(), revalidate_seconds=0.1)
    await hub.start()
    licensed_in_both = pharmacist({"ND", "MN"})
    rights: list[Principal | None] = [licensed_in_both]

    async def revalidate() -> Principal | None:
        return rights[-1]

    ws = FakeSocket()
    task = asyncio.create_task(hub.serve(licensed_in_both, ws, None, revalidate))  # type: ignore[arg-type]
    await ws.greeted()
    conn = next(c for c in hub.connections if c.ws is ws)
    rights.append(pharmacist({"ND"}))  # the Minnesota license ran out at midnight
    async with asyncio.timeout(5):
        while conn.principal.licensed_states != {"ND"}:
            await asyncio.sleep(0.01)
    for state in ("MN", "ND"):
        async with db.write() as s:
            await journal.record(db, s, "fill.queued", site_id=1, us_state=state, payload={"fill_id": state})
    async with asyncio.timeout(5):
        while not [m for m in ws.sent if m["type"] == "fill.queued"]:
            await asyncio.sleep(0.01)
    assert [m["fill_id"] for m in ws.sent if m["type"] == "fill.queued"] == ["ND"]
    rights.append(None)  # deactivated where no hub heard of it
    async with asyncio.timeout(5):
        while ws.closed_with is None:
            await asyncio.sleep(0.01)
    assert ws.closed_with == CLOSE_ACCESS_WITHDRAWN
    await hub.stop()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await db.dispose()
