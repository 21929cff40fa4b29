"""The one way a transition changes a row: only if it is still as the caller saw it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Update, bindparam, update
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
        _written(row, values)
    return True


def update_statement(model: Any, where: Sequence[ColumnElement[bool]], columns: Sequence[str]) -> Update:
    """update_if's statement for a hot path, built once: the row's id is bound as `row_id`, each new
    value as `new_<column>`, and `where` binds the rest (building it on each call costs more than the
    database takes to run it)."""
    return (
        update(model)
        .where(model.id == bindparam("row_id"), *where)
        .values({c: bindparam(f"new_{c}") for c in columns})
        .execution_options(synchronize_session=False)
    )


async def update_bound(
    s: AsyncSession, row: Any, statement: Update, params: dict[str, Any], values: dict[str, Any]
) -> bool:
    """update_if with a statement from update_statement: `params` bind its conditions and `values` (plain
    values, one for each of its columns) its new values."""
    bound = {"row_id": row.id, **params, **{f"new_{k}": v for k, v in values.items()}}
    if (await s.execute(statement, bound)).rowcount != 1:  # type: ignore[attr-defined]
        return False
    _written(row, values)
    return True


def _written(row: Any, values: dict[str, Any]) -> None:
    """Exactly these values were written: they are recorded as loaded rather than read back."""
    for key, value in values.items():
        set_committed_value(row, key, value)
