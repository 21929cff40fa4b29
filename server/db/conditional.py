"""The one way a transition changes a row: only if it is still as the caller saw it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.sql.expression import ClauseElement


async def update_if(
    s: AsyncSession, row: Any, where: Sequence[ColumnElement[bool]], values: dict[str, Any]
) -> bool:
    """Updates row when it still matches where; True if it did. The object then holds the new values."""
    model = type(row)
    result = await s.execute(
        update(model)
        .where(model.id == row.id, *where)
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if any(isinstance(v, ClauseElement) for v in values.values()):
        await s.refresh(row)  # a value computed by the database: read it back
    else:
        # Exactly these values were written: record them as loaded rather than reading the row back.
        for key, value in values.items():
            set_committed_value(row, key, value)
    return True
