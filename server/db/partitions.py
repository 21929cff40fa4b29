"""Monthly partitions of the tables that grow by time, on PostgreSQL.

`events`, `audit_events` and `access_log` are partitioned by range of their time column `at`: one
partition a month (`<table>_YYYY_MM`, from the first of the month, UTC), made ahead of time for this
month and the next MONTHS_AHEAD (at migration and daily by the server), and a DEFAULT partition
(`<table>_default`) that takes any row outside them. Retention drops a month whole
(`drop_partitions_before`) instead of deleting its rows one by one, and leaves no dead rows behind.

A partitioned table's primary key must hold the partition key, so there it is (id, at). Ids stay
unique without the database checking it alone: audit rows and events get theirs under the journal
lock, access log entries from the table's sequence. On SQLite nothing is partitioned and every
function here does nothing.

Table and partition names in the statements are this module's own (TABLES, or made from them), never
text from outside. The functions taking a `Connection` run inside a caller's transaction (a migration,
the schema's creation); the async ones open their own, under an advisory lock, so that server
instances starting together do not make the same partition twice.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine


class Database(Protocol):
    """What partitioning needs of server.db.engine.Database (which calls this module as it creates the
    schema, so this module cannot import it)."""

    @property
    def is_sqlite(self) -> bool: ...

    @property
    def write_engine(self) -> AsyncEngine: ...


TABLES = ("events", "audit_events", "access_log")
# Months made ahead of the current one: the daily task may miss a few days and rows still find theirs.
MONTHS_AHEAD = 3
# How often a running server makes the coming months' partitions.
CHECK_SECONDS = 24 * 3600
PARTITION_LOCK_KEY = 0x7E1E_0002
_MONTHLY = re.compile(r"^(events|audit_events|access_log)_(\d{4})_(\d{2})$")


def month_start(at: dt.datetime) -> dt.datetime:
    """The first instant (UTC) of the month holding `at`."""
    at = at.astimezone(dt.UTC)
    return dt.datetime(at.year, at.month, 1, tzinfo=dt.UTC)


def next_month(start: dt.datetime) -> dt.datetime:
    return dt.datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=dt.UTC)


def partition_name(table: str, start: dt.datetime) -> str:
    return f"{table}_{start.year:04d}_{start.month:02d}"


def is_partition(name: str) -> bool:
    """Whether a table name is one of the partitions made here (which the models do not describe)."""
    return bool(_MONTHLY.match(name)) or name in {f"{t}_default" for t in TABLES}


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Alembic's include_name filter: comparing the schema with the models leaves the partitions out."""
    return not (type_ == "table" and name is not None and is_partition(name))


@dataclass(frozen=True)
class DroppedPartition:
    """A month of a table dropped: [start, end) in UTC and the rows it held."""

    table: str
    name: str
    start: dt.datetime
    end: dt.datetime
    rows: int


def _checked(table: str) -> str:
    if table not in TABLES:
        raise ValueError(f"{table!r} is not partitioned by month (one of {', '.join(TABLES)})")
    return table


def _literal(at: dt.datetime) -> str:
    # DDL takes no parameters; the bound is a time made here, never text from outside.
    return "'" + at.isoformat() + "'"


def is_partitioned(conn: Connection, table: str) -> bool:
    partitioned = conn.execute(
        text("SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(:t)"), {"t": _checked(table)}
    ).scalar()
    return bool(partitioned)


def _partitions(conn: Connection, table: str) -> list[str]:
    rows = conn.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " WHERE i.inhparent = to_regclass(:t) ORDER BY c.relname"
        ),
        {"t": table},
    )
    return list(rows.scalars())


def _months(first: dt.datetime, last: dt.datetime) -> list[dt.datetime]:
    months, month = [], month_start(first)
    while month <= last:
        months.append(month)
        month = next_month(month)
    return months


def coming_months(now: dt.datetime, months_ahead: int = MONTHS_AHEAD) -> list[dt.datetime]:
    """This month and the next `months_ahead`, as their first instants."""
    months = [month_start(now)]
    for _ in range(months_ahead):
        months.append(next_month(months[-1]))
    return months


def _set_aside(conn: Connection, table: str, old: str) -> tuple[str, list[tuple[str, str]], str | None]:
    """Renames the table to `old` without its primary key and indexes (their names are free again);
    what they were, and the sequence of its ids, for the table that takes its place."""
    conn.execute(text(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE"))
    pkey = conn.execute(
        text("SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(:t) AND contype = 'p'"),
        {"t": table},
    ).scalar_one()
    indexes = conn.execute(
        text(
            "SELECT indexname, indexdef FROM pg_indexes"
            " WHERE schemaname = current_schema() AND tablename = :t AND indexname <> :pk"
        ),
        {"t": table, "pk": pkey},
    ).all()
    sequence = conn.execute(text("SELECT pg_get_serial_sequence(:t, 'id')"), {"t": table}).scalar()
    conn.execute(text(f"ALTER TABLE {table} RENAME TO {old}"))
    conn.execute(text(f"ALTER TABLE {old} DROP CONSTRAINT {pkey}"))
    for name, _ in indexes:
        conn.execute(text(f'DROP INDEX "{name}"'))
    return pkey, [(name, definition) for name, definition in indexes], sequence


def _take_over(
    conn: Connection, table: str, old: str, key: str, indexes: list[tuple[str, str]], sequence: str | None
) -> None:
    """Copies the rows of `old` into `table`, then builds its primary key and indexes (once, rather than
    kept up row by row), gives it the id sequence (or it would go with the old table) and drops `old`."""
    conn.execute(text(f"INSERT INTO {table} SELECT * FROM {old}"))  # noqa: S608
    conn.execute(text(f"ALTER TABLE {table} ADD CONSTRAINT {key}"))
    for _, definition in indexes:
        conn.execute(text(definition))
    if sequence:
        conn.execute(text(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id"))
    conn.execute(text(f"DROP TABLE {old}"))


def partition_table(
    conn: Connection, table: str, *, now: dt.datetime, months_ahead: int = MONTHS_AHEAD
) -> bool:
    """Makes a plain table partitioned by month, keeping its rows, ids, indexes and id sequence; False
    when it is partitioned already. Holds the table exclusively while it copies the rows."""
    if is_partitioned(conn, table):
        return False
    old = f"{table}_unpartitioned"
    pkey, indexes, sequence = _set_aside(conn, table, old)
    conn.execute(
        text(
            f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
            " PARTITION BY RANGE (at)"
        )
    )
    held = conn.execute(
        text(f"SELECT DISTINCT date_trunc('month', at AT TIME ZONE 'UTC') FROM {old}")  # noqa: S608
    ).scalars()
    months = {m.replace(tzinfo=dt.UTC) for m in held} | set(coming_months(now, months_ahead))
    for start in sorted(months):
        conn.execute(
            text(
                f"CREATE TABLE {partition_name(table, start)} PARTITION OF {table}"
                f" FOR VALUES FROM ({_literal(start)}) TO ({_literal(next_month(start))})"
            )
        )
    conn.execute(text(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT"))
    _take_over(conn, table, old, f"{pkey} PRIMARY KEY (id, at)", indexes, sequence)
    return True


def partition_all(conn: Connection, now: dt.datetime) -> None:
    """Every table that grows by time partitioned by month (see partition_table)."""
    for table in TABLES:
        partition_table(conn, table, now=now)


def unpartition_table(conn: Connection, table: str) -> bool:
    """The reverse of partition_table (a migration's downgrade): one plain table, primary key id."""
    if not is_partitioned(conn, table):
        return False
    old = f"{table}_partitioned"
    pkey, indexes, sequence = _set_aside(conn, table, old)
    conn.execute(text(f"CREATE TABLE {table} (LIKE {old} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    _take_over(conn, table, old, f"{pkey} PRIMARY KEY (id)", indexes, sequence)
    return True


def ensure_table_partitions(conn: Connection, table: str, months: list[dt.datetime]) -> list[str]:
    """Makes the table's partitions of these months (first instants) that are missing; their names.

    Rows of such a month that went to the DEFAULT partition meanwhile move into it. A new month is
    attached rather than created as a partition, which locks the parent only against schema changes:
    writers go on.
    """
    if not is_partitioned(conn, table):
        return []
    existing = set(_partitions(conn, table))
    default = f"{table}_default"
    made = []
    for start in sorted(months):
        name = partition_name(table, start)
        if name in existing:
            continue
        lo, hi = _literal(start), _literal(next_month(start))
        conn.execute(text(f"CREATE TABLE {name} (LIKE {table} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
        if default in existing:
            move = f"WITH moved AS (DELETE FROM {default} WHERE at >= {lo} AND at < {hi} RETURNING *)"  # noqa: S608
            conn.execute(text(f"{move} INSERT INTO {name} SELECT * FROM moved"))  # noqa: S608
        conn.execute(text(f"ALTER TABLE {table} ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"))
        made.append(name)
    if default not in existing:
        conn.execute(text(f"CREATE TABLE {default} PARTITION OF {table} DEFAULT"))
        made.append(default)
    return made


def drop_table_partitions_before(conn: Connection, table: str, cutoff: dt.datetime) -> list[DroppedPartition]:
    """Drops the table's monthly partitions that end at or before `cutoff`: whole months only, so rows
    at or after the cutoff stay. The DEFAULT partition is never dropped."""
    if not is_partitioned(conn, _checked(table)):
        return []
    dropped = []
    for name in _partitions(conn, table):
        found = _MONTHLY.match(name)
        if found is None:
            continue
        start = dt.datetime(int(found.group(2)), int(found.group(3)), 1, tzinfo=dt.UTC)
        end = next_month(start)
        if end > cutoff:
            continue
        rows = conn.execute(text(f"SELECT count(*) FROM {name}")).scalar_one()  # noqa: S608
        conn.execute(text(f"DROP TABLE {name}"))
        dropped.append(DroppedPartition(table, name, start, end, int(rows)))
    return sorted(dropped, key=lambda d: d.start)


def _lock(conn: Connection) -> None:
    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PARTITION_LOCK_KEY})


def ensure_all(
    conn: Connection, now: dt.datetime, *, months_ahead: int = MONTHS_AHEAD, since: dt.datetime | None = None
) -> list[str]:
    """Every partitioned table's partitions from `since` (default: this month) to `months_ahead`
    months after this one; the names made."""
    if conn.dialect.name != "postgresql":
        return []
    _lock(conn)
    months = coming_months(now, months_ahead)
    if since is not None:
        months = _months(since, months[-1])
    made = []
    for table in TABLES:
        made += ensure_table_partitions(conn, table, months)
    return made


async def ensure_partitions(
    db: Database,
    now: dt.datetime | None = None,
    *,
    months_ahead: int = MONTHS_AHEAD,
    since: dt.datetime | None = None,
) -> list[str]:
    """Makes the coming months' partitions of every partitioned table (see ensure_all); their names.
    Nothing on SQLite."""
    if db.is_sqlite:
        return []
    at = now or dt.datetime.now(dt.UTC)
    async with db.write_engine.begin() as conn:
        return await conn.run_sync(lambda c: ensure_all(c, at, months_ahead=months_ahead, since=since))


async def drop_partitions_before(db: Database, table: str, cutoff: dt.datetime) -> list[DroppedPartition]:
    """Drops the table's whole months that end at or before `cutoff`; what was dropped, oldest first.
    Nothing on SQLite, where retention deletes rows instead."""
    _checked(table)
    if db.is_sqlite:
        return []

    def drop(conn: Connection) -> list[DroppedPartition]:
        _lock(conn)
        return drop_table_partitions_before(conn, table, cutoff)

    async with db.write_engine.begin() as conn:
        return await conn.run_sync(drop)
