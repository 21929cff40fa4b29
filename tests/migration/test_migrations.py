"""Applying every migration gives the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import Base


async def test_migrations_build_the_schema_the_models_describe(database_url: str) -> None:
    db = Database(database_url)
    try:
        await upgrade(db)
        await upgrade(db)  # a second run is a no-op

        def diff(sync_conn: object) -> list[object]:
            ctx = MigrationContext.configure(sync_conn, opts={"compare_type": True})  # type: ignore[arg-type]
            return list(compare_metadata(ctx, Base.metadata))

        async with db.write_engine.connect() as conn:
            differences = await conn.run_sync(diff)
        assert differences == []
    finally:
        await db.dispose()
