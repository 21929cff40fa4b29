"""Where signalling waits for a party that is not connected to this server instance.

A party of a consultation is addressed as (consultation id, "site" or "pharmacist"). The relay
sends to a party whose websocket is on this instance directly; anything else is posted here and
taken by whichever instance holds (or next gets) that party's connection.

Two backends, chosen by the database:

- `LocalMailbox` (one instance, SQLite): a bounded list in memory, as the relay always had.
- `PostgresMailbox` (several instances): a transient table of pending signals, so an SDP of any
  size travels (a NOTIFY payload stops at 8000 bytes); the NOTIFY on `tp_signals` carries only the
  address and wakes the instances (through the event bus's listening connection), and the
  addressee's instance takes the rows with
  DELETE ... RETURNING, so each signal is delivered once. Rows left behind (the party never joined)
  expire after `EXPIRY_SECONDS`. A missed wake-up (the listening connection dropped) costs at most
  `POLL_SECONDS`: the instance also looks for mail for its own parties that often.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import delete, func, select

from server.db.engine import Database
from server.db.models import ConsultationSignal, utcnow
from server.realtime.bus import PostgresBus

log = logging.getLogger(__name__)

Address = tuple[int, str]
MAX_PENDING = 64
EXPIRY_SECONDS = 60.0
POLL_SECONDS = 1.0
CHANNEL = "tp_signals"


class Addressees(Protocol):
    """The relay, as the mailbox sees it: which parties are connected here, and delivery to them."""

    def local_parties(self) -> set[Address]: ...
    async def deliver(self, consultation_id: int, party: str) -> None: ...


class Mailbox(Protocol):
    async def start(self, addressees: Addressees) -> None: ...
    async def stop(self) -> None: ...
    async def post(self, consultation_id: int, party: str, message: dict[str, Any]) -> bool:
        """Keeps message for the party; False when too many wait already."""
        ...

    async def take(self, consultation_id: int, party: str) -> list[dict[str, Any]]:
        """Removes and returns what waits for the party, oldest first."""
        ...

    async def discard(self, consultation_id: int) -> None:
        """Forgets everything waiting in a consultation (it ended)."""
        ...


class LocalMailbox:
    """One instance: pending signals in memory."""

    def __init__(self) -> None:
        self.pending: dict[Address, list[dict[str, Any]]] = {}

    async def start(self, addressees: Addressees) -> None:
        return None

    async def stop(self) -> None:
        self.pending.clear()

    async def post(self, consultation_id: int, party: str, message: dict[str, Any]) -> bool:
        waiting = self.pending.setdefault((consultation_id, party), [])
        if len(waiting) >= MAX_PENDING:
            return False
        waiting.append(message)
        return True

    async def take(self, consultation_id: int, party: str) -> list[dict[str, Any]]:
        return self.pending.pop((consultation_id, party), [])

    async def discard(self, consultation_id: int) -> None:
        for address in [a for a in self.pending if a[0] == consultation_id]:
            del self.pending[address]


class PostgresMailbox:
    """Several instances on one PostgreSQL database: a table of pending signals, NOTIFY as the wake-up."""

    def __init__(
        self,
        db: Database,
        bus: PostgresBus,
        *,
        expiry_seconds: float = EXPIRY_SECONDS,
        poll_seconds: float = POLL_SECONDS,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.bus = bus
        self.expiry = dt.timedelta(seconds=expiry_seconds)
        self.poll_seconds = poll_seconds
        self.clock = clock
        self._wakes: asyncio.Queue[Address] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self, addressees: Addressees) -> None:
        await self.bus.listen(CHANNEL, self._on_notify)
        self._task = asyncio.create_task(self._run(addressees), name="signal-mailbox")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _on_notify(self, payload: str) -> None:
        cid, _, party = payload.partition(":")
        if cid.isdigit() and party:
            self._wakes.put_nowait((int(cid), party))

    async def _run(self, addressees: Addressees) -> None:
        while True:
            try:
                try:
                    async with asyncio.timeout(self.poll_seconds):
                        wanted = {await self._wakes.get()}
                except TimeoutError:
                    wanted = await self._addressed(addressees.local_parties())
                while not self._wakes.empty():
                    wanted.add(self._wakes.get_nowait())
                for cid, party in wanted & addressees.local_parties():
                    await addressees.deliver(cid, party)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("delivering waiting signals failed; retrying")
                await asyncio.sleep(self.poll_seconds)

    async def _addressed(self, parties: set[Address]) -> set[Address]:
        """The safety net: which of these parties have mail (a missed NOTIFY is found this way)."""
        if not parties:
            return set()
        ids = sorted({cid for cid, _ in parties})
        async with self.db.read() as s:
            rows = await s.execute(
                select(ConsultationSignal.consultation_id, ConsultationSignal.party)
                .where(ConsultationSignal.consultation_id.in_(ids))
                .distinct()
            )
            return {(r.consultation_id, r.party) for r in rows}

    async def post(self, consultation_id: int, party: str, message: dict[str, Any]) -> bool:
        now = self.clock()
        async with self.db.write() as s:
            await s.execute(
                delete(ConsultationSignal).where(ConsultationSignal.created_at < now - self.expiry)
            )
            waiting = (
                await s.execute(
                    select(func.count())
                    .select_from(ConsultationSignal)
                    .where(
                        ConsultationSignal.consultation_id == consultation_id,
                        ConsultationSignal.party == party,
                    )
                )
            ).scalar_one()
            if waiting >= MAX_PENDING:
                return False
            s.add(
                ConsultationSignal(
                    consultation_id=consultation_id, party=party, message=message, created_at=now
                )
            )
            # Delivered at commit: the address only, whatever the size of the message.
            await s.execute(select(func.pg_notify(CHANNEL, f"{consultation_id}:{party}")))
        return True

    async def take(self, consultation_id: int, party: str) -> list[dict[str, Any]]:
        fresh_after = self.clock() - self.expiry
        async with self.db.write() as s:
            rows = (
                await s.execute(
                    delete(ConsultationSignal)
                    .where(
                        ConsultationSignal.consultation_id == consultation_id,
                        ConsultationSignal.party == party,
                    )
                    .returning(
                        ConsultationSignal.id, ConsultationSignal.message, ConsultationSignal.created_at
                    )
                )
            ).all()
        return [r.message for r in sorted(rows, key=lambda r: r.id) if r.created_at >= fresh_after]

    async def discard(self, consultation_id: int) -> None:
        async with self.db.write() as s:
            await s.execute(
                delete(ConsultationSignal).where(ConsultationSignal.consultation_id == consultation_id)
            )
