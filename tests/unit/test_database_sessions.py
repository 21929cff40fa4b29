"""What the server's database sessions are set up with."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from server.db.engine import Database
from server.db.models import Event


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


async def test_a_json_value_json_dumps_wrote_reads_back_as_it_was_written(tmp_path: Path) -> None:
    # JSON columns are read with orjson, which refuses NaN; SQLite keeps whatever json.dumps wrote.
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        await db.create_schema()
        async with db.write() as s:
            s.add_all(
                [Event(type="a", payload={"n": float("nan")}), Event(type="b", payload={"n": [1, "é"]})]
            )
        async with db.read() as s:
            payloads: dict[str, dict[str, Any]] = dict(
                (await s.execute(select(Event.type, Event.payload))).all()
            )
    finally:
        await db.dispose()
    assert math.isnan(payloads["a"]["n"])
    assert payloads["b"] == {"n": [1, "é"]}
