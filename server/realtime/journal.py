"""Writes realtime events into the journal, in the transaction of the change they announce."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.engine import WROTE_EVENTS, Database
from server.db.models import Event

_LAST_ID = select(func.max(Event.id))


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
    await db.lock_journal(session)
    last = (await session.execute(_LAST_ID)).scalar()
    body = dict(payload)
    if user_id is not None:
        body["for_user"] = user_id
    ev = Event(
        id=(last or 0) + 1,
        at=dt.datetime.now(dt.UTC),
        type=type_,
        site_id=site_id,
        us_state=us_state,
        payload=body,
    )
    session.add(ev)  # written with the transaction's next statement or its commit
    session.info.setdefault(WROTE_EVENTS, []).append(ev)
    if not db.is_sqlite:
        await session.execute(select(func.pg_notify("tp_events", str(ev.id))))
    return ev
