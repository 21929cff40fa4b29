"""What the server's PostgreSQL sessions are set up with."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from server.db.engine import Database


@pytest.mark.postgres
async def test_the_servers_sessions_do_not_compile_statements_and_the_audit_walk_may(
    postgres_url: str,
) -> None:
    # A year of history made short statements pay for JIT compiling (decision 0026); the walk of the
    # whole audit trail gains from it.
    for jit, expected in ((False, "off"), (True, "on")):
        db = Database(postgres_url, jit=jit)
        try:
            async with db.read() as s:
                assert (await s.execute(text("SHOW jit"))).scalar() == expected
        finally:
            await db.dispose()
