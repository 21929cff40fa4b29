"""Schema migrations with Alembic, run from the server's own async engine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from server.db import partitions
from server.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x7E1E_0001


class CannotConnect(Exception):
    """The database took no connection when a command or the server first asked for one: not reached,
    not there, or refusing the user. The driver's error is the cause."""


class SchemaNotCurrent(Exception):
    """The database's schema is not the one the code was written for: `found` is its revision (None
    when it has none: no tables yet), `head` the code's. `newer`: the code knows no such revision, so a
    newer version made it; else the schema is behind and an upgrade brings it up."""

    def __init__(self, found: str | None, head: str, *, newer: bool) -> None:
        super().__init__(f"the schema is at revision {found or 'none'}, the code's at {head}")
        self.found, self.head, self.newer = found, head, newer


def alembic_config(connection: Any = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def _schema_state(sync_conn: Connection) -> SchemaNotCurrent | None:
    """What is wrong with the connected database's schema revision, read without writing; None when it
    is the code's head."""
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    found = set(MigrationContext.configure(sync_conn).get_current_heads())
    if found == heads:
        return None
    head = ", ".join(sorted(heads))
    known = {revision.revision for revision in script.walk_revisions()}
    shown = ", ".join(sorted(found)) or None
    return SchemaNotCurrent(shown, head, newer=not found <= known)


async def _connect(engine: AsyncEngine) -> AsyncConnection:
    """The first connection a command or the server takes: CannotConnect when there is none."""
    conn = engine.connect()
    try:
        await conn.start()
    except Exception as exc:
        raise CannotConnect("the database took no connection") from exc
    return conn


async def require_current(db: Database) -> None:
    """For work that leaves the schema as it is: SchemaNotCurrent unless the database is at the code's
    revision, found without writing anything. CannotConnect when it takes no connection."""
    conn = await _connect(db.read_engine)
    try:
        wrong = await conn.run_sync(_schema_state)
    finally:
        await conn.close()
    if wrong is not None:
        raise wrong


async def upgrade(db: Database, revision: str = "head") -> None:
    """Brings the schema to revision; on PostgreSQL one instance at a time (advisory lock). The first
    thing a command or the server does with the database: CannotConnect when it takes no connection,
    SchemaNotCurrent (`newer`) when a newer version of the code made it."""
    conn = await _connect(db.write_engine)
    try:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            await conn.commit()
        try:
            wrong = await conn.run_sync(_schema_state)
            await conn.commit()
            if wrong is not None and wrong.newer:
                raise wrong
            await conn.run_sync(lambda sync_conn: command.upgrade(alembic_config(sync_conn), revision))
            await conn.commit()
            # The coming months' partitions, made at every migration as well as daily by the server.
            now = dt.datetime.now(dt.UTC)
            await conn.run_sync(lambda sync_conn: partitions.ensure_all(sync_conn, now))
            await conn.commit()
        finally:
            if not db.is_sqlite:
                await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": MIGRATION_LOCK_KEY})
                await conn.commit()
    finally:
        await conn.close()


async def autogenerate(db: Database, message: str) -> None:
    """Writes a new revision from the difference between the models and the database (developers)."""
    async with db.write_engine.connect() as conn:
        await conn.run_sync(
            lambda sync_conn: command.revision(alembic_config(sync_conn), message=message, autogenerate=True)
        )
