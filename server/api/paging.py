"""The query parameters of a paged list: `after` (a cursor) and `limit` (rows per page).

Every list the API returns pages the same way: the answer carries `next`, the cursor of the following
page (null on the last), and a client asks for it with `?after=<next>`, keeping its other parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from server.api.params import Query, query_param
from server.inputs import Int
from server.keyset import MAX_LIMIT, Keyset


@dataclass(frozen=True)
class Paging:
    """A list's `after` and `limit` parameters; `default` rows when no limit is asked."""

    after: Query
    limit: Query
    default: int

    @property
    def queries(self) -> tuple[Query, Query]:
        return (self.after, self.limit)

    def read(self, request: web.Request) -> tuple[tuple[Any, ...] | None, int]:
        """The position after which the page starts (None: the first page), and its size."""
        limit: int = query_param(request, self.limit, self.default)
        return query_param(request, self.after, None), limit


def paging(order: Keyset, default: int) -> Paging:
    return Paging(
        Query("after", order, "The 'next' cursor of the previous page; omitted for the first page"),
        Query("limit", Int(1, MAX_LIMIT), f"Rows per page, at most {MAX_LIMIT} (default {default})"),
        default,
    )
