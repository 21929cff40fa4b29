"""Engines and transactions. SQLite: WAL, one writer connection with BEGIN IMMEDIATE. PostgreSQL: pooled."""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import json
import logging
import os
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson
from sqlalchemy import event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from server.db import partitions
from server.db.journal_tails import JournalTails
from server.db.models import Base, Event
from server.db.sqlite_driver import OneTripConnection, one_trip_url

# Serialises writes of the audit chain and the event journal on PostgreSQL, so that event ids
# become visible in the order they were handed out and each audit row sees its predecessor.
JOURNAL_LOCK_KEY = 0x7E1E_F11
# Takes the journal lock and reads both journals' ends under it, in one round trip instead of three.
# A function because a volatile PL/pgSQL function's statements each take a snapshot of their own: the
# reads see every commit made before the lock was granted, where one plain statement would read with
# the snapshot it took before waiting for the lock. Its statements' plans are kept by the session,
# not made again at every call. Created by create_schema() and by migration 0028.
JOURNAL_LOCK_FUNCTION = """
CREATE OR REPLACE FUNCTION tp_lock_journal(lock_key bigint)
RETURNS TABLE (audit_id bigint, audit_hash varchar, event_id bigint)
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(lock_key);
    SELECT a.id, a.hash INTO audit_id, audit_hash FROM audit_events a ORDER BY a.id DESC LIMIT 1;
    SELECT coalesce(max(e.id), 0) INTO event_id FROM events e;
    RETURN NEXT;
END
$$
"""
# Session.info key: the realtime events a transaction wrote, handed to the commit hooks (the hub).
WROTE_EVENTS = "tp_wrote_events"


log = logging.getLogger(__name__)

# Session.info key: the JournalTails of a transaction whose connection keeps none (PostgreSQL).
_TRANSACTION_TAILS = "tp_journal_tails"
_LOCK_JOURNAL = text("SELECT audit_id, audit_hash, event_id FROM tp_lock_journal(:k)")
# Execution option of read_one()'s SQLite sessions: no BEGIN, each statement is its own snapshot.
_NO_BEGIN = "tp_no_begin"


def _sqlite_setup(engine: AsyncEngine, *, writer: bool) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_conn: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
        # Take transaction control from the driver so BEGIN is ours to issue.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        # NORMAL: SQLite does not sync inside a commit, which would hold the single writer for it;
        # WalSync makes each commit durable before it is answered instead, one sync for many commits.
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=10000")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(conn: Any) -> None:
        if not conn.get_execution_options().get(_NO_BEGIN):
            conn.exec_driver_sql("BEGIN IMMEDIATE" if writer else "BEGIN")


# The thread WalSync syncs on, one per process: a sync never queues behind file work in the loop's
# default executor.
_SYNC_THREAD = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="wal-sync")


class WalSync:
    """Group commit for SQLite: a write transaction is answered, and its events delivered, only once a
    sync of the write-ahead log that began after its commit has finished.

    The sync runs in a thread, outside the writer, for every commit since the last one: a commit
    costs the writer no disk wait, and a power cut cannot take back what anyone was told of (with
    synchronous=NORMAL alone it could lose the commits since the last checkpoint). Commits are
    answered, and their events handed to the hooks, in commit order. A read, too, goes on only once
    what it may have seen is on disk (`after_read`): SQLite shows a commit to readers before its sync.
    """

    def __init__(self, wal_path: str, deliver: Callable[[list[Event]], None]) -> None:
        self.wal_path = wal_path
        self._deliver = deliver
        self._pending: list[tuple[list[Event] | None, asyncio.Future[None]]] = []
        self._draining: asyncio.Task[None] | None = None

    def committed(self, events: list[Event] | None) -> asyncio.Future[None]:
        """Called by the committing code while it still holds the writer (so in commit order); the
        future is done once the commit is on disk."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._pending.append((events, done))
        draining = self._draining
        # A drain left behind by an event loop that ended (a CLI's earlier asyncio.run) runs no more.
        if draining is None or draining.done() or draining.get_loop() is not loop:
            self._draining = loop.create_task(self._drain(), name="wal-sync")
        return done

    def after_read(self, writing: bool) -> asyncio.Future[None] | None:
        """Called when a read has ended; `writing` says whether a write transaction is under way (it
        may have committed and not yet registered). The future is done once a sync that began after
        the read has finished; None when nothing the read saw can be waiting for one."""
        if not writing and not self._pending and (self._draining is None or self._draining.done()):
            return None
        return self.committed(None)

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                error: Exception | None = None
                try:
                    await asyncio.get_running_loop().run_in_executor(_SYNC_THREAD, self._fsync)
                except Exception as exc:
                    # The writers hear of it rather than wait for ever.
                    log.error("syncing the SQLite write-ahead log to disk failed: %s", exc)
                    error = exc
                # The committing code goes on first, then the hooks deliver (as right after a commit).
                for _, done in batch:
                    if not done.done() and not done.get_loop().is_closed():
                        if error is None:
                            done.set_result(None)
                        else:
                            done.set_exception(error)
                for events, _ in batch:
                    if events:
                        try:
                            self._deliver(events)
                        except Exception:
                            # The commit stands; the pump will read the events from the journal.
                            log.exception("delivering committed events failed")
        finally:
            self._draining = None

    def _fsync(self) -> None:
        # Flushing a file flushes it whichever descriptor asks: SQLite's own writes are covered. The
        # data sync, as SQLite's own for its log: the log's size and blocks are flushed when they
        # changed, its times are not (a log reused after a checkpoint then needs no journal commit).
        try:
            fd = os.open(self.wal_path, os.O_RDONLY)
        except FileNotFoundError:
            return  # no log (yet, or after the last connection closed): every commit is in the database
        try:
            os.fdatasync(fd)
        finally:
            os.close(fd)

    async def wait_idle(self) -> None:
        """Until every registered commit is on disk and answered (before the engine is disposed)."""
        while self._draining is not None and not self._draining.done():
            await asyncio.shield(self._draining)


def _loads(text: str | bytes) -> Any:
    """A JSON column's value. orjson reads one in under a third of the standard library's time (1.2
    against 4.3 µs for a fill's flags), and a queue page reads two for each of its 200 rows. A value
    it refuses (NaN, which json.dumps writes) is read as the column always was."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)


def _postgres_settings(url: str, jit: bool) -> dict[str, Any]:
    """Session settings for PostgreSQL connections: JIT only where asked for (`Database`)."""
    if make_url(url).get_driver_name() != "asyncpg":
        return {}
    return {"server_settings": {"jit": "on" if jit else "off"}}


class Database:
    """Opens sessions for reading and for writing; knows the dialect's locking rules."""

    def __init__(self, url: str, *, echo: bool = False, jit: bool = False) -> None:
        """`jit`: let PostgreSQL compile statements that it expects to be costly. Only for work that
        reads millions of rows in long statements (`audit verify`'s walk, 7 % faster with it). The
        server's statements read a few rows, yet a year of history makes PostgreSQL expect thousands
        for some (the reused-photo lookup), and compiling them took 20-30 ms of its CPU for 3-5 ms of
        work (decision 0026)."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            # One writer connection: SQLite has one writer anyway, and waiting in the pool is fair.
            # The driver makes a statement one thread round trip, which keeps that writer's turns short.
            driver_url = one_trip_url(url)
            self.write_engine = create_async_engine(
                driver_url, echo=echo, pool_size=1, max_overflow=0, pool_timeout=60, json_deserializer=_loads
            )
            # Readers stay open: an overflow connection costs a thread, a connect and four PRAGMAs.
            self.read_engine = create_async_engine(
                driver_url, echo=echo, pool_size=10, max_overflow=10, json_deserializer=_loads
            )
            _sqlite_setup(self.write_engine, writer=True)
            _sqlite_setup(self.read_engine, writer=False)
        else:
            self.write_engine = create_async_engine(
                url,
                echo=echo,
                pool_size=10,
                max_overflow=10,
                connect_args=_postgres_settings(url, jit),
                json_deserializer=_loads,
            )
            self.read_engine = self.write_engine
        # Called after a commit that wrote realtime events, with those events (in id order).
        self.commit_hooks: list[Callable[[list[Event]], None]] = []
        database = make_url(url).database if self.is_sqlite else None
        self.wal_sync = (
            WalSync(database + "-wal", self._run_hooks)
            if database and database != ":memory:" and not database.startswith("file:")
            else None
        )
        # Write transactions under way (from their start until their commit is registered with WalSync).
        self._writing = 0
        self._writer = async_sessionmaker(self.write_engine, expire_on_commit=False)
        self._reader = async_sessionmaker(self.read_engine, expire_on_commit=False)
        # Statements outside any transaction: SQLite without BEGIN, PostgreSQL in autocommit.
        single = {_NO_BEGIN: True} if self.is_sqlite else {"isolation_level": "AUTOCOMMIT"}
        self._single = async_sessionmaker(
            self.read_engine.execution_options(**single), expire_on_commit=False
        )

    async def create_schema(self) -> None:
        """The models' tables; on PostgreSQL those that grow by time partitioned by month, as the
        migrations leave them."""
        async with self.write_engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
            if not self.is_sqlite:
                await conn.run_sync(partitions.partition_all, dt.datetime.now(dt.UTC))
                await conn.execute(text(JOURNAL_LOCK_FUNCTION))

    async def drop_schema(self) -> None:
        async with self.write_engine.begin() as conn:
            await conn.run_sync(Base.metadata.drop_all)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncSession]:
        """A session in one write transaction: committed on success, rolled back on any error.

        After a commit that wrote realtime events, the commit hooks run with them (the hub delivers
        them), in commit order. On SQLite the caller goes on, and the hooks run, once the commit is on
        disk (WalSync); elsewhere at once, still holding the connection.
        """
        durable: asyncio.Future[None] | None = None
        self._writing += 1
        try:
            async with self._writer() as session:
                async with session.begin():
                    yield session
                events = session.info.pop(WROTE_EVENTS, None)
                if self.wal_sync is not None:
                    durable = self.wal_sync.committed(events)
                elif events:
                    self._run_hooks(events)
        finally:
            self._writing -= 1
        if durable is not None:
            await durable

    def _run_hooks(self, events: list[Event]) -> None:
        for hook in self.commit_hooks:
            hook(events)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session in one read transaction. On SQLite its statements see one snapshot; on PostgreSQL
        the transaction is READ COMMITTED, so each statement sees what was committed when it began.
        The caller goes on once what it read is on disk (SQLite: see WalSync), so nobody is shown what
        a power cut takes back."""
        async with self._reader() as session, session.begin():
            yield session
        await self._read_durably()

    @asynccontextmanager
    async def read_one(self) -> AsyncIterator[AsyncSession]:
        """A session for one read statement, outside any transaction (the statement is its own
        snapshot): no BEGIN and COMMIT around it, a round trip or two fewer than read()."""
        async with self._single() as session:
            yield session
        await self._read_durably()

    async def _read_durably(self) -> None:
        if self.wal_sync is not None:
            durable = self.wal_sync.after_read(self._writing > 0)
            if durable is not None:
                await durable

    async def lock_journal(self, session: AsyncSession) -> None:
        """Holds the journal lock until the transaction ends (SQLite's writer already holds it). On
        PostgreSQL the journals' ends are read under it in the same round trip, and the transaction's
        JournalTails know them (the audit chain's only when it has a row)."""
        if self.is_sqlite:
            return
        row = (await session.execute(_LOCK_JOURNAL, {"k": JOURNAL_LOCK_KEY})).one()
        audit = (row.audit_id, row.audit_hash) if row.audit_id is not None else None
        (await self.journal_tails(session)).found(audit, row.event_id)

    async def journal_tails(self, session: AsyncSession) -> JournalTails:
        """The journals' ends as the session's transaction may know them without reading them: on
        SQLite as the writer connection remembers them, elsewhere only what the transaction appended."""
        if self.is_sqlite:
            raw = (await session.connection()).sync_connection.connection.dbapi_connection  # type: ignore[union-attr]
            if isinstance(raw, OneTripConnection):
                return raw.tails
        tails: JournalTails | None = session.info.get(_TRANSACTION_TAILS)
        if tails is None:
            tails = session.info[_TRANSACTION_TAILS] = JournalTails()
        return tails

    async def dispose(self) -> None:
        if self.wal_sync is not None:
            await self.wal_sync.wait_idle()
        await self.write_engine.dispose()
        if self.read_engine is not self.write_engine:
            await self.read_engine.dispose()
