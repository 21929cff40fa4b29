"""The queue's order in SQL and the index that serves it say the same thing."""

from __future__ import annotations

from sqlalchemy.dialects import postgresql, sqlite

from server.db.models import QUEUE_RANK
from server.fills.lifecycle import PRIORITY_RANK
from server.fills.queries import _rank
from server.fills.rules import PRIORITIES


def test_the_rank_index_is_written_as_the_queue_orders_fills() -> None:
    # A statement orders by the index's expression only when it writes it the same way, with literals.
    for dialect in (sqlite.dialect(), postgresql.dialect()):
        written = str(PRIORITY_RANK.compile(dialect=dialect)).replace("fills.", "")
        assert f"({written})" == QUEUE_RANK


def test_the_rank_puts_the_priorities_in_their_order_and_anything_else_last() -> None:
    assert [_rank(p) for p in PRIORITIES] == list(range(len(PRIORITIES)))
    for rank, priority in enumerate(PRIORITIES):
        assert f"WHEN '{priority}' THEN {rank}" in QUEUE_RANK
    assert f"ELSE {len(PRIORITIES)} END" in QUEUE_RANK
