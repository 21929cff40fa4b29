"""SQLAlchemy's aiosqlite dialect with one thread round trip per statement instead of four.

The stock adapter awaits aiosqlite for cursor(), execute(), fetchall() and close() separately; each
await waits for a turn of the event loop. While a busy loop serves uploads, those turns made a write
transaction hold SQLite's single writer for about 17 ms, and the writer capped the whole server near
10 fills/s. This cursor runs the four steps as one function on aiosqlite's connection thread.

A transaction's BEGIN travels with its first statement, not on a round trip of its own; a transaction
that runs no statement never begins at all, and a COMMIT or ROLLBACK with no transaction open (the
pool's reset of a returned connection, say) makes no round trip.

A write transaction's BEGIN IMMEDIATE also reads `PRAGMA data_version`, which changes only when another
connection commits; the connection's JournalTails hears of it and of how each transaction ended
(server.db.journal_tails).

It uses aiosqlite's `Connection._execute` (queue a function for the connection's thread), which is
private: aiosqlite is pinned, and every database test runs through this cursor.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Sequence
from threading import Thread
from typing import Any

from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
    SQLiteDialect_aiosqlite,
)
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

from server.db.journal_tails import JournalTails

DRIVER = "tp_aiosqlite"

# description, rows, rowcount, lastrowid, whether a transaction is open afterwards, and the
# database's data_version when this round trip began a write transaction
_Outcome = tuple[Any, list[Any], int, int | None, bool, int | None]


# As Database's "begin" listener issues them.
_BEGIN_WRITE = "BEGIN IMMEDIATE"
_BEGINS = frozenset({"BEGIN", _BEGIN_WRITE})


def _run(
    conn: sqlite3.Connection, begin: str | None, operation: str, parameters: Any, many: bool
) -> _Outcome:
    """On the connection's thread: begin if a BEGIN waits, execute, fetch everything, close the cursor."""
    version = None
    if begin is not None:
        conn.execute(begin)
        if begin == _BEGIN_WRITE:
            # Read under the write lock: nobody else can commit until this transaction ends.
            version = conn.execute("PRAGMA data_version").fetchone()[0]
    cursor = conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        return description, rows, cursor.rowcount, cursor.lastrowid, conn.in_transaction, version
    finally:
        cursor.close()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose results arrive with the statement's single round trip."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")
    _adapt_connection: OneTripConnection
    # No driver cursor stays open between calls, so there is nothing to close asynchronously.
    _awaitable_cursor_close = False

    def __init__(self, adapt_connection: Any) -> None:  # the base opens a driver cursor here: not needed
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> int:
        return self._lastrowid  # type: ignore[return-value]

    @property
    def arraysize(self) -> int:
        return 1

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        del value

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        if operation in _BEGINS and not parameters:
            # Held back until the transaction's first statement, which takes it along.
            self._adapt_connection._begin = operation
            # What a transaction that ended otherwise (a ROLLBACK sent as a statement) appended is dropped.
            self._adapt_connection.tails.ended()
            self._description, self._rows, self._rowcount = None, collections.deque(), -1
            return None
        return super().execute(operation, parameters)

    async def _round_trip(self, operation: Any, parameters: Any, many: bool) -> None:
        adapt = self._adapt_connection
        async with adapt._execute_mutex:
            driver = self._connection
            begin, adapt._begin = adapt._begin, None
            try:
                description, rows, rowcount, lastrowid, adapt._open, version = await driver._execute(
                    _run, driver._conn, begin, operation, parameters, many
                )
            except BaseException:
                adapt._open = True  # unknown: let COMMIT or ROLLBACK make sure
                raise
        if version is not None:
            adapt.tails.began(version)
        self._description = description
        self._rows = collections.deque(rows)
        self._rowcount = rowcount
        self._lastrowid = lastrowid

    async def _execute_async(self, operation: Any, parameters: Any) -> None:
        await self._round_trip(operation, parameters, False)

    async def _executemany_async(self, operation: Any, seq_of_parameters: Sequence[Any]) -> None:
        await self._round_trip(operation, seq_of_parameters, True)


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("_begin", "_open", "tails")
    _cursor_cls = OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._begin: str | None = None  # a BEGIN waiting for the transaction's first statement
        self._open = True  # whether a transaction may be open (as the last statement left it)
        # The journals' ends as this connection's own commits left them.
        self.tails = JournalTails()

    def commit(self) -> None:
        self._begin = None
        if not self._open:
            self.tails.ended()
            return
        try:
            super().commit()
        except BaseException:
            self.tails.failed()
            raise
        self._open = False
        self.tails.committed()

    def rollback(self) -> None:
        self._begin = None
        if self._open:
            # A transaction failed (not the pool's reset after a commit).
            self.tails.failed()
            super().rollback()
            self._open = False
        else:
            self.tails.ended()


class OneTripDBAPI(AsyncAdapt_aiosqlite_dbapi):
    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        connection = self.aiosqlite.connect(*arg, **kw)
        thread = connection if isinstance(connection, Thread) else connection._thread
        # Like the stock adapter: the connection's thread must not keep the process alive.
        thread.daemon = True
        try:
            return OneTripConnection(self, await_(connection))
        except BaseException:
            # A file that cannot be opened: aiosqlite has queued its thread's stop, whose answer goes to
            # this loop. Waiting for the thread to end keeps that answer from meeting a loop already
            # closed (a command that fails at once), which printed the thread's traceback.
            await_(asyncio.to_thread(thread.join, 5))
            raise


class OneTripDialect(SQLiteDialect_aiosqlite):
    driver = DRIVER
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> OneTripDBAPI:
        return OneTripDBAPI(__import__("aiosqlite"), __import__("sqlite3"))


registry.register(f"sqlite.{DRIVER}", __name__, "OneTripDialect")


def one_trip_url(url: str) -> str:
    """The same SQLite URL on this driver (`sqlite+aiosqlite://...` -> `sqlite+tp_aiosqlite://...`)."""
    return url.replace("sqlite+aiosqlite:", f"sqlite+{DRIVER}:", 1)
