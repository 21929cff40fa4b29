"""Keyset paging: a list read page by page after the last row's key, never by offset.

A list names its order once (`Keyset`): key expressions that together are unique, all ascending or all
descending. A page is the rows whose key comes after the cursor's, so rows added or removed elsewhere in
the list while a client pages never shift a page: no row is repeated, and none that was there when the
client started is skipped. With an index over the key, each page is a range of it, however deep.

The cursor is opaque to clients: the list's name and the last row's key, as base64url JSON. It is not
secret: a page still applies every visibility rule, so a hand-made cursor only moves where a list starts.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ColumnElement, bindparam, tuple_
from sqlalchemy.orm import QueryableAttribute

from server.errors import InvalidInput
from server.inputs import INT32_MAX, UNSTORABLE

R = TypeVar("R")
# A part of a key: a column, or an expression over the row (such as the queue's priority rank).
KeyPart = ColumnElement[Any] | QueryableAttribute[Any]

# What a key part holds; a cursor's values are checked against it before they reach a query. Whole
# numbers are INTEGER ids and ranks (no list is keyed by a BIGINT).
KINDS: dict[type, str] = {int: "int", str: "str", dt.datetime: "time"}
# The longest cursor read: a key of a few parts is far below it.
MAX_CURSOR = 512
# What a cursor is written with (base64url, unpadded).
CURSOR_TEXT = re.compile("[A-Za-z0-9_-]+")
# Rows a page may ask for; each list has its own default at or below this.
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[R]):
    """One page of a list: its rows and the cursor of the next page (None: this is the last)."""

    rows: list[R]
    next: str | None


def _bad(message: str) -> InvalidInput:
    return InvalidInput(message, code="bad_cursor", field="after")


class Keyset:
    """A list's order over a unique key, and its cursors. Also the spec of the `after` query parameter,
    so that a cursor is checked (400, `bad_cursor`) before any handler runs."""

    def __init__(self, name: str, key: Sequence[tuple[KeyPart, type]], *, descending: bool = False) -> None:
        self.name = name
        self.columns = [expr for expr, _ in key]
        self.kinds = [KINDS[kind] for _, kind in key]
        self.descending = descending
        # Every cursor of this list starts with the same characters: the name's whole base64 groups.
        opening = f'["{name}",'.encode()
        self.prefix = base64.urlsafe_b64encode(opening[: len(opening) // 3 * 3]).decode()

    def order_by(self) -> list[KeyPart]:
        return [c.desc() for c in self.columns] if self.descending else list(self.columns)

    def after(self, position: tuple[Any, ...]) -> ColumnElement[bool]:
        """Rows strictly after `position` in this order (one row-value comparison, which an index over
        the key serves as a range)."""
        return self._beyond(
            bindparam(None, v, type_=c.type) for c, v in zip(self.columns, position, strict=True)
        )

    def after_bound(self) -> ColumnElement[bool]:
        """`after` a position bound at execution (`bound`), for a statement built once."""
        return self._beyond(bindparam(f"after_{i}", type_=c.type) for i, c in enumerate(self.columns))

    @staticmethod
    def bound(position: tuple[Any, ...]) -> dict[str, Any]:
        """The parameters of `after_bound` for `position`."""
        return {f"after_{i}": v for i, v in enumerate(position)}

    def _beyond(self, values: Iterable[Any]) -> ColumnElement[bool]:
        rows, key = tuple_(*self.columns), tuple_(*values)
        return rows < key if self.descending else rows > key

    def cursor(self, position: tuple[Any, ...]) -> str:
        values = [v.isoformat() if isinstance(v, dt.datetime) else v for v in position]
        text = json.dumps([self.name, *values], separators=(",", ":"))
        return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")

    def page(self, rows: Sequence[R], limit: int, key: Callable[[R], tuple[Any, ...]]) -> Page[R]:
        """The page from up to `limit + 1` rows read in this order: the extra row only says there is more."""
        shown = list(rows[:limit])
        more = len(rows) > limit and shown
        return Page(shown, self.cursor(key(shown[-1])) if more else None)

    # -- the query parameter's spec ----------------------------------------------------------------

    def parse(self, value: object, name: str) -> tuple[Any, ...]:
        if not isinstance(value, str):
            raise _bad(f"'{name}' must be a cursor: the 'next' of an earlier page.")
        return self.parse_text(value, name)

    def parse_text(self, text: str, name: str) -> tuple[Any, ...]:
        """The position a cursor of this list names; InvalidInput for anything else."""
        message = f"'{name}' is not a cursor of this list: pass the 'next' of an earlier page as it came."
        if len(text) > MAX_CURSOR or not CURSOR_TEXT.fullmatch(text) or not text.startswith(self.prefix):
            raise _bad(message)
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            decoded = json.loads(raw.decode())
        except (binascii.Error, ValueError):
            raise _bad(message) from None
        if not isinstance(decoded, list) or len(decoded) != len(self.kinds) + 1 or decoded[0] != self.name:
            raise _bad(message)
        return tuple(self._value(kind, v, message) for kind, v in zip(self.kinds, decoded[1:], strict=True))

    @staticmethod
    def _value(kind: str, value: object, message: str) -> Any:
        """A key part as its column can hold it (an INTEGER's range, storable text, an aware time)."""
        if kind == "int" and isinstance(value, int) and not isinstance(value, bool):
            if -INT32_MAX - 1 <= value <= INT32_MAX:
                return value
        elif kind == "str" and isinstance(value, str) and len(value) <= 200 and not UNSTORABLE.search(value):
            return value
        elif kind == "time" and isinstance(value, str):
            try:
                t = dt.datetime.fromisoformat(value)
                if t.tzinfo is not None:
                    return t.astimezone(dt.UTC)
            except (ValueError, OverflowError):
                raise _bad(message) from None
        raise _bad(message)

    def schema(self) -> dict[str, Any]:
        return {"type": "string", "maxLength": MAX_CURSOR, "pattern": f"^{self.prefix}[A-Za-z0-9_-]+$"}
