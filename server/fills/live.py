"""The live queue in SQL: the fills waiting for a pharmacist or in one's hands, among a year's.

A partial index holds only open fills (ix_fills_open). A statement may read it only when the planner
sees that the statement's states are the index's: with the states as parameters SQLite never does, and
PostgreSQL stops once it caches a generic plan for a prepared statement (asyncpg prepares every one).
So the states are written into the statement as literals (docs/decisions/0022-history-indexes-and-rollup.md).
"""

from __future__ import annotations

from sqlalchemy import ColumnElement, String, literal_column

from server.db.models import Fill
from server.fills.rules import OPEN_STATES, FillState


def state_is(*states: FillState) -> ColumnElement[bool]:
    """The fill is in one of `states`, named in the statement as literals: written when the statement is
    compiled, not each time it runs (a value rendered at run time made SQLAlchemy rewrite the whole
    statement's text on every execution)."""
    return Fill.state.in_([literal_column(f"'{s}'", String()) for s in states])


IS_OPEN = state_is(*OPEN_STATES)


def state_among(*states: FillState) -> ColumnElement[bool]:
    """The fill is in one of `states`, as a condition no index on the state can serve: for statements
    that find their fills some other way (a product's approvals, a patient's prescriptions). Given an
    index on the state, SQLite, which has no statistics, reads every fill in those states, a year of
    approvals, rather than the few the statement's other conditions lead to."""
    return Fill.state.concat("").in_([str(s) for s in states])
