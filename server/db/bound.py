"""A list of values bound as one parameter, whatever its length, for statements built once.

An IN list is written out again at each execution with one parameter per value: for a page's 200 ids
or a pharmacist's 300 sites that cost more of the server's CPU than the statement itself, and each
length is another statement for the driver to prepare. PostgreSQL takes the list as one array
(`= ANY`); SQLite, which has no arrays, keeps the expanding IN list.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, any_, bindparam
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import TypeEngine


def one_of(column: Any, name: str, element: TypeEngine[Any], *, postgres: bool) -> ColumnElement[bool]:
    """`column` is one of the values bound as `name` (a list)."""
    if postgres:
        return column == any_(bindparam(name, type_=ARRAY(element)))  # type: ignore[no-any-return]
    return column.in_(bindparam(name, expanding=True))  # type: ignore[no-any-return]
