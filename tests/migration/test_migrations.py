"""Applying every migration gives the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import warnings

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Column, text
from sqlalchemy.exc import IntegrityError

from server.db.engine import Database
from server.db.migrate import upgrade
from server.db.models import Base
from server.db.partitions import include_name
from tests.migration.rows import site_and_technician

# Indexes over an expression: SQLite's reflection skips them (with a warning) and PostgreSQL's gives the
# expression back as it rewrote it, so they are not compared with the models, only found by name.
EXPRESSION_INDEXES = {
    index.name
    for table in Base.metadata.tables.values()
    for index in table.indexes
    if any(not isinstance(e, Column) for e in index.expressions)
}


def not_expression(item: object, name: str | None, type_: str, reflected: bool, compare_to: object) -> bool:
    return not (type_ == "index" and name in EXPRESSION_INDEXES)


async def test_migrations_build_the_schema_the_models_describe(database_url: str) -> None:
    db = Database(database_url)
    try:
        await upgrade(db)
        await upgrade(db)  # a second run is a no-op

        def diff(sync_conn: object) -> list[object]:
            # The monthly partitions (PostgreSQL) are made at run time; the models describe their parents.
            opts = {"compare_type": True, "include_name": include_name, "include_object": not_expression}
            ctx = MigrationContext.configure(sync_conn, opts=opts)  # type: ignore[arg-type]
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Skipped unsupported reflection of expression-based index")
                warnings.filterwarnings("ignore", "autogenerate skipping metadata-specified expression-based")
                return list(compare_metadata(ctx, Base.metadata))

        async with db.write_engine.connect() as conn:
            differences = await conn.run_sync(diff)
            catalog = (
                "SELECT name FROM sqlite_master WHERE type = 'index'"
                if db.is_sqlite
                else "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
            )
            indexes = set((await conn.execute(text(catalog))).scalars())
        assert differences == []
        assert EXPRESSION_INDEXES and indexes >= EXPRESSION_INDEXES
    finally:
        await db.dispose()


async def test_recordings_become_media_on_a_database_in_use(database_url: str) -> None:
    """0005 runs on a database with consultations and pending signals (on SQLite a table that others
    refer to cannot be recreated), and from then on a medium belongs to a fill or a consultation."""
    db = Database(database_url)
    try:
        await upgrade(db, "0004")
        async with db.write() as s:
            await site_and_technician(s)
            await s.execute(
                text(
                    "INSERT INTO consultations (id, site_id, kind, state, version, requested_by,"
                    " requested_at, recording_consent, reconnections, recording_sha256)"
                    " VALUES (1, 1, 'counsel', 'accepted', 1, 1, CURRENT_TIMESTAMP, true, 0, :sha)"
                ),
                {"sha": "a" * 64},
            )
            await s.execute(
                text(
                    "INSERT INTO consultation_signals (consultation_id, party, message, created_at)"
                    " VALUES (1, 'site', '{}', CURRENT_TIMESTAMP)"
                )
            )
        await upgrade(db)

        insert = text(
            "INSERT INTO media (fill_id, consultation_id, kind, sha256, content_type, filename, bytes,"
            " variants, quality, created_at)"
            " VALUES (:fill, :consultation, 'consultation_recording', :sha, 'video/mp4', 'c.mp4', 1,"
            " '{}', '{}', CURRENT_TIMESTAMP)"
        )
        async with db.write() as s:
            await s.execute(insert, {"fill": None, "consultation": 1, "sha": "b" * 64})
            await s.execute(text("UPDATE consultations SET recording_media_id = 1 WHERE id = 1"))
        for owners in ({"fill": None, "consultation": None}, {"fill": "f", "consultation": 1}):
            # The check comes before the foreign keys, on both databases.
            with pytest.raises(IntegrityError, match="ck_media_one_owner"):
                async with db.write() as s:
                    await s.execute(insert, {**owners, "sha": "c" * 64})
        unique = r"uq_media_consultation_kind|UNIQUE constraint failed: media.consultation_id, media.kind"
        with pytest.raises(IntegrityError, match=unique):  # one recording per consultation
            async with db.write() as s:
                await s.execute(insert, {"fill": None, "consultation": 1, "sha": "d" * 64})
        async with db.read() as s:
            signals = (await s.execute(text("SELECT count(*) FROM consultation_signals"))).scalar_one()
        assert signals == 1
    finally:
        await db.dispose()
