"""0026 on a database in use: fills approved before it know the product they were approved as; the
others know none."""

from __future__ import annotations

from sqlalchemy import text

from server.db.engine import Database
from server.db.migrate import upgrade
from tests.migration.rows import prescription, site_and_technician


async def test_fills_approved_before_are_given_their_prescription_s_ndc(database_url: str) -> None:
    db = Database(database_url)
    try:
        await upgrade(db, "0025")
        async with db.write() as s:
            await site_and_technician(s)
            await prescription(s, "00378180501")
            for fill_id, state in (
                ("a", "approved"),
                ("b", "handed_out"),
                ("c", "rejected"),
                ("d", "queued"),
            ):
                await s.execute(
                    text(
                        "INSERT INTO fills (id, prescription_id, site_id, technician_id, priority, state,"
                        " version, barcodes, product_check, product_check_detail, overridden_checks, flags,"
                        " request_digest, created_at)"
                        " VALUES (:id, 1, 1, 1, 'routine', :state, 1, '[]', 'none', '{}', '[]', '[]', :id,"
                        " CURRENT_TIMESTAMP)"
                    ),
                    {"id": fill_id, "state": state},
                )
        await upgrade(db)
        async with db.read() as s:
            rows = (await s.execute(text("SELECT id, approved_ndc FROM fills ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [
            ("a", "00378180501"),
            ("b", "00378180501"),
            ("c", None),
            ("d", None),
        ]
    finally:
        await db.dispose()
