"""Who read which record with patient data, and when: for a patient's access report.

A read is noted in memory at once and written with the others of the same second in one statement, so
reading a fill costs an append to a list, not a database write. The same person reading the same
record again within that second (a video played by ranges, a photo and its thumbnail) is one entry.
What is noted when the server stops is written as it stops; a crash loses at most the last second.
A write that fails keeps its reads for the next one; a full disk is logged once, in one line, however
long it lasts (one traceback a second would fill what little room is left).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, insert, or_, select

from server.db.engine import Database
from server.db.models import AccessLogEntry, Consultation, Fill, Media, Prescription, User, utcnow
from server.failures import RepeatedFailures
from server.security.principal import Principal

log = logging.getLogger(__name__)

FLUSH_SECONDS = 1.0
# Past this many waiting entries a write starts at once.
FLUSH_AT = 500


class AccessLog:
    def __init__(
        self,
        db: Database,
        clock: Callable[[], dt.datetime] = utcnow,
        storage_failure: Callable[[BaseException], object | None] = lambda exc: None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.failures = RepeatedFailures(
            log,
            "writing the access log",
            storage_failure,
            meanwhile="the reads noted are kept until a write succeeds",
            recovered="the access log is written again",
        )
        self._waiting: dict[tuple[int, str, str], dt.datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def read(self, actor: Principal, entity_type: str, entity_ids: Iterable[Any]) -> None:
        """Notes that a person read these records (the routes that call this are people's)."""
        now = self.clock()
        for entity_id in entity_ids:
            self._waiting.setdefault((actor.user_id, entity_type, str(entity_id)), now)
        if len(self._waiting) >= FLUSH_AT:
            self._wake.set()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._keep_writing(), name="access log")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()

    async def _keep_writing(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), FLUSH_SECONDS)
            self._wake.clear()
            try:
                written = await self.flush()
            except Exception as exc:
                self.failures.failed(exc)
            else:
                if written:
                    self.failures.succeeded()

    async def flush(self) -> int:
        """Writes what was noted, in one statement; how many entries it wrote."""
        if not self._waiting:
            return 0
        batch, self._waiting = self._waiting, {}
        rows = [
            {"at": at, "user_id": user_id, "entity_type": kind, "entity_id": entity_id}
            for (user_id, kind, entity_id), at in batch.items()
        ]
        try:
            async with self.db.write() as s:
                await s.execute(insert(AccessLogEntry), rows)
        except Exception:
            # Kept for the next write: an access is not forgotten because the database blinked.
            for key, at in batch.items():
                self._waiting.setdefault(key, at)
            raise
        return len(rows)


@dataclass(frozen=True)
class AccessReportRow:
    at: dt.datetime
    username: str
    role: str
    what: str
    entity_id: str
    rx_number: str


async def access_report(
    db: Database, patient_name: str, patient_dob: dt.date, start: dt.datetime, end: dt.datetime
) -> list[AccessReportRow]:
    """Every read of the patient's prescriptions, their fills and their media (photos, videos, call
    recordings) between start and end, oldest first."""
    async with db.read() as s:
        rxs = dict(
            (
                await s.execute(
                    select(Prescription.id, Prescription.rx_number).where(
                        Prescription.patient_name == patient_name, Prescription.patient_dob == patient_dob
                    )
                )
            ).all()
        )
        if not rxs:
            return []
        fills = dict(
            (
                await s.execute(select(Fill.id, Fill.prescription_id).where(Fill.prescription_id.in_(rxs)))
            ).all()
        )
        media = dict(
            (
                await s.execute(
                    select(
                        Media.id,
                        func.coalesce(
                            Media.prescription_id, Fill.prescription_id, Consultation.prescription_id
                        ),
                    )
                    .outerjoin(Fill, Fill.id == Media.fill_id)
                    .outerjoin(Consultation, Consultation.id == Media.consultation_id)
                    .where(
                        or_(
                            Media.prescription_id.in_(rxs),
                            Fill.prescription_id.in_(rxs),
                            Consultation.prescription_id.in_(rxs),
                        )
                    )
                )
            ).all()
        )
        of_rx = {
            "prescription": {str(k): v for k, v in rxs.items()},
            "fill": {str(k): rxs[v] for k, v in fills.items()},
            "media": {str(k): rxs[v] for k, v in media.items()},
        }
        rows = (
            await s.execute(
                select(AccessLogEntry, User.username, User.role)
                .join(User, User.id == AccessLogEntry.user_id)
                .where(
                    AccessLogEntry.at >= start,
                    AccessLogEntry.at < end,
                    or_(
                        *(
                            and_(AccessLogEntry.entity_type == kind, AccessLogEntry.entity_id.in_(list(ids)))
                            for kind, ids in of_rx.items()
                            if ids
                        )
                    ),
                )
                .order_by(AccessLogEntry.at, AccessLogEntry.id)
            )
        ).all()
    return [
        AccessReportRow(e.at, username, role, e.entity_type, e.entity_id, of_rx[e.entity_type][e.entity_id])
        for e, username, role in rows
    ]


REPORT_COLUMNS = ["at", "username", "role", "what", "id", "rx_number"]


def write_report_csv(rows: list[AccessReportRow], out: Any) -> None:
    writer = csv.writer(out)
    writer.writerow(REPORT_COLUMNS)
    for r in rows:
        writer.writerow([r.at.isoformat(), r.username, r.role, r.what, r.entity_id, r.rx_number])
