"""Schema migrations with Alembic, run from the server's own async engine."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text

from server.db import partitions
from server.db.engine import Database

MIGRATIONS = Path(__file__).parent / "migrations"
MIGRATION_LOCK_KEY = 0x7E1E_0001


class CannotConnect(Exception):
    """The database took no connection when a command or the server first asked for one: not reached,
    not there, or refusing the user. The driver's error is the cause."""


def alembic_config(connection: Any = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


async def upgrade(db: Database, revision: str = "head") -> None:
    """Brings the schema to revision; on PostgreSQL one instance at a time (advisory lock). The first
    thing a command or the server does with the database: CannotConnect when it takes no connection."""
    conn = db.write_engine.connect()
    try:
        await conn.start()
    except Exception as exc:
        raise CannotConnect("the database took no connection") from exc
    try:
        if not db.is_sqlite:
            await conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": MIGRATION_LOCK_KEY})
            await conn.commit()
        try:
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
