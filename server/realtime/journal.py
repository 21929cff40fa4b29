"""Writes realtime events into the journal, in the transaction of the change they announce."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, bindparam, cast, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.engine import WROTE_EVENTS, Database
from server.db.models import Event

_LAST_ID = select(func.max(Event.id))
# PostgreSQL: the event's row and the NOTIFY of its id in one statement. The NOTIFY is sent at commit
# and dropped on rollback, like the row.
_COLUMNS = ("id", "at", "type", "site_id", "us_state", "payload")
_INSERTED = (
    insert(Event)
    .values({c: bindparam(c, type_=Event.__table__.c[c].type) for c in _COLUMNS})
    .returning(Event.id)
    .cte("inserted")
)
_INSERT_AND_NOTIFY = select(func.pg_notify("tp_events", cast(_INSERTED.c.id, String)))


async def record(
    db: Database,
    session: AsyncSession,
    type_: str,
    *,
    site_id: int | None,
    us_state: str | None,
    payload: dict[str, Any],
    user_id: int | None = None,
) -> Event:
    """Appends an event. Payloads carry ids, states and versions: never patient data.

    Ids are handed out under the journal lock, so they become visible in commit order and a
    reader that advances its cursor past id N has already seen every id below N.
    """
    tails = await db.journal_tails(session)
    if tails.audit() is None and tails.events() is None:
        # An end the transaction knows, it knows under the lock: its first append took it (or SQLite's
        # single writer holds it). On PostgreSQL taking the lock reads the ends.
        await db.lock_journal(session)
    if session.new or session.dirty:
        # What the transaction holds back is written first: then only the event's own row and the
        # commit come between its time and its commit, and the time says when it was committed.
        await session.flush()
    last = tails.events()
    if last is None:
        last = (await session.execute(_LAST_ID)).scalar() or 0
    body = dict(payload)
    if user_id is not None:
        body["for_user"] = user_id
    ev = Event(
        id=last + 1,
        at=dt.datetime.now(dt.UTC),
        type=type_,
        site_id=site_id,
        us_state=us_state,
        payload=body,
    )
    if db.is_sqlite:
        session.add(ev)  # written with the transaction's next statement or its commit
    else:
        await session.execute(_INSERT_AND_NOTIFY, {c: getattr(ev, c) for c in _COLUMNS})
    tails.events_appended(ev.id)
    session.info.setdefault(WROTE_EVENTS, []).append(ev)
    return ev
