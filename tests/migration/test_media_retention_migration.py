"""0017 on a database in use: every stored medium's files are listed by digest, each file once."""

from __future__ import annotations

import json

from sqlalchemy import text

from server.db.engine import Database
from server.db.migrate import upgrade
from tests.migration.rows import prescription, site_and_technician


async def test_the_files_of_media_stored_before_are_listed(database_url: str) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, "0014")
        async with db.write() as s:
            await site_and_technician(s)
            await prescription(s)
            # "2048" is the very file "full" is: one file, listed once.
            variants = {
                "full": {"sha256": "a" * 64, "content_type": "image/jpeg"},
                "2048": {"sha256": "a" * 64, "content_type": "image/jpeg"},
                "320": {"sha256": "b" * 64, "content_type": "image/jpeg"},
            }
            await s.execute(
                text(
                    "INSERT INTO media (id, prescription_id, kind, sha256, content_type, filename, bytes,"
                    " variants, quality, created_at)"
                    " VALUES (1, 1, 'rx_image', :sha, 'image/jpeg', 'o.jpg', 1, :variants, '{}',"
                    " CURRENT_TIMESTAMP)"
                ),
                {"sha": "c" * 64, "variants": json.dumps(variants)},
            )
        await upgrade(db)
        async with db.read() as s:
            rows = (await s.execute(text("SELECT media_id, sha256 FROM media_files ORDER BY sha256"))).all()
            removed = (await s.execute(text("SELECT removed_at FROM media"))).scalar_one()
        assert [tuple(r) for r in rows] == [(1, "a" * 64), (1, "b" * 64)]
        assert removed is None
    finally:
        await db.dispose()
