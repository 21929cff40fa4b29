"""The months the partitions cover, their names, and what is left out of the schema comparison."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from server.db.engine import Database
from server.db.partitions import (
    coming_months,
    drop_partitions_before,
    ensure_partitions,
    include_name,
    month_start,
    next_month,
    partition_name,
)


def test_months_run_in_utc_across_the_year_end() -> None:
    # 23:30 on 31 December in Chicago is already January in UTC: the row goes to January.
    late = dt.datetime(2026, 12, 31, 23, 30, tzinfo=dt.timezone(dt.timedelta(hours=-6)))
    assert month_start(late) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    assert next_month(dt.datetime(2026, 12, 1, tzinfo=dt.UTC)) == dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
    months = coming_months(dt.datetime(2026, 11, 15, tzinfo=dt.UTC), 3)
    assert [partition_name("events", m) for m in months] == [
        "events_2026_11",
        "events_2026_12",
        "events_2027_01",
        "events_2027_02",
    ]


def test_the_schema_comparison_leaves_out_the_partitions_only() -> None:
    for name in ("audit_events_2026_12", "events_default", "access_log_2030_01"):
        assert not include_name(name, "table", {})
    for name in ("audit_events", "events", "fills", "events_archive"):
        assert include_name(name, "table", {})
    assert include_name("events_2026_12", "index", {})


async def test_sqlite_is_not_partitioned_and_the_calls_do_nothing(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite3'}")
    try:
        await db.create_schema()
        assert await ensure_partitions(db) == []
        assert await drop_partitions_before(db, "audit_events", dt.datetime.now(dt.UTC)) == []
        with pytest.raises(ValueError, match="not partitioned by month"):
            await drop_partitions_before(db, "fills", dt.datetime.now(dt.UTC))
    finally:
        await db.dispose()
