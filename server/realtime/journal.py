"""Writes realtime events into the journal, in the transaction of the change they announce."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import String, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.engine import WROTE_EVENTS, Database
from server.db.models import Event

_LAST_ID = select(func.max(Event.id))
# PostgreSQL: the NOTIFY of the new event's id travels with the read of the last one. It is sent at
# commit and dropped on rollback, like the row.
_LAST_ID_AND_NOTIFY = select(
    func.max(Event.id), func.pg_notify("tp_events", cast(func.coalesce(func.max(Event.id), 0) + 1, String))
)


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
        # single writer holds it).
        await db.lock_journal(session)
    if session.new or session.dirty:
        # What the transaction holds back is written first: then only the event's own row and the
        # commit come between its time and its commit, and the time says when it was committed.
        await session.flush()
    # On PostgreSQL the read of the last id carries the new event's NOTIFY: it is read every time.
    last = tails.events() if db.is_sqlite else None
    if last is None:
        last = (await session.execute(_LAST_ID if db.is_sqlite else _LAST_ID_AND_NOTIFY)).scalar() or 0
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
    session.add(ev)  # written with the transaction's next statement or its commit
    tails.events_appended(ev.id)
    session.info.setdefault(WROTE_EVENTS, []).append(ev)
    return ev
