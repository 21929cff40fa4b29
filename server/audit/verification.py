"""`audit verify`: the chain walked from the last checkpoint, or from the start, and the anchors checked.

A checkpoint is an anchor (a signed head, see anchors) up to which a walk found the chain whole. A daily
run walks only the rows after it, so it costs a day of rows, not a year: it still finds a row after
the checkpoint edited, removed or reordered, and the anchors still find an anchored row gone or given
another hash. What it does not look at again is the content of the rows before the checkpoint; `full`
walks the whole chain for that. A checkpoint is used only while every anchor holds: otherwise the walk
begins at the start.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from server.audit import chain
from server.audit.anchors import Anchor, AnchorFile, AnchorReport
from server.audit.anchors import check as check_anchors
from server.db.engine import Database


@dataclass(frozen=True)
class TrailReport:
    chain: chain.ChainReport
    anchors: AnchorReport
    # The checkpoint the walk began after, and when it was verified; None for a walk from the start.
    checkpoint: Anchor | None = None
    checkpoint_verified_at: dt.datetime | None = None

    @property
    def ok(self) -> bool:
        return self.chain.ok and self.anchors.ok

    @property
    def problem(self) -> str | None:
        return self.chain.problem or self.anchors.problem


async def verify_trail(
    db: Database,
    anchors: AnchorFile,
    *,
    full: bool = False,
    now: dt.datetime | None = None,
    side_by_side: bool = False,
) -> TrailReport:
    """Checks the anchors, walks the chain from the last checkpoint (from the start when `full`, or
    when there is none), and on success moves the checkpoint to the newest anchor walked.
    `side_by_side`: as chain.verify's."""
    anchored = await check_anchors(db, anchors)
    start = anchors.checkpoint() if anchored.ok and not full else None
    after = (start[0].id, start[0].hash) if start else None
    walked = await chain.verify(db, after=after, side_by_side=side_by_side)
    if walked.ok and anchored.ok and walked.last_id is not None:
        reached = [a for a in anchors.read() if a.id <= walked.last_id]
        if reached and (start is None or reached[-1] != start[0]):
            anchors.mark_verified(reached[-1], now or dt.datetime.now(dt.UTC))
    return TrailReport(walked, anchored, *(start or (None, None)))
