"""Controlled substances: each fill's DEA schedule, the count a Schedule II approval confirms, and the
per-site log an inspector reads.

A fill's schedule is the stricter of the prescription's and the drug reference's for the prescribed NDC
(as server.compliance.checks.schedule_of says), read when it is asked for: a reference loaded after the
prescription was entered still counts. A Schedule II approval carries the count the pharmacist read
off the counted-units photo; it must be the count the site recorded, and the site's count is held to
the prescription by the quantity_mismatch flag, which the approval acknowledges as any other flag.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from server.audit import chain as audit
from server.compliance.rules import SCHEDULES
from server.db.engine import Database
from server.db.models import Decision, DrugPackage, DrugProduct, Fill, Prescription, Site, User
from server.errors import Conflict, InvalidInput, NotFound
from server.security.principal import Principal

SCHEDULE_II = "CII"


def stricter(*schedules: str | None) -> str | None:
    """The strictest of the schedules given (CII before CV); None when none is a DEA schedule."""
    known = [x for x in schedules if x in SCHEDULES]
    return min(known, key=SCHEDULES.index) if known else None


# The reference's schedule of each of a set of NDCs that has one: two columns, no entities (the queue
# asks for up to 200 at each read). An empty reference has none.
_REFERENCE_SCHEDULES = (
    select(DrugPackage.ndc11, DrugProduct.dea_schedule)
    .join(DrugProduct, DrugProduct.product_id == DrugPackage.product_id)
    .where(DrugPackage.ndc11.in_(bindparam("ndc11s", expanding=True)), DrugProduct.dea_schedule.is_not(None))
)


async def schedules_of(
    s: AsyncSession, prescriptions: Sequence[tuple[int, str | None, str]]
) -> dict[int, str]:
    """The schedule of each controlled prescription among (id, its own schedule, its NDC), in one read
    of the drug reference; prescriptions of no schedule are left out."""
    if not prescriptions:
        return {}
    reference = dict(
        (await s.execute(_REFERENCE_SCHEDULES, {"ndc11s": sorted({n for _, _, n in prescriptions})})).all()
    )
    out: dict[int, str] = {}
    for rx_id, own, ndc in prescriptions:
        schedule = stricter(own, reference.get(ndc))
        if schedule is not None:
            out[rx_id] = schedule
    return out


def decision_terms(schedule: str | None) -> dict[str, Any] | None:
    """What the schedule asks of a decision, for the console: None for a fill of no schedule."""
    if schedule is None:
        return None
    schedule_ii = schedule == SCHEDULE_II
    return {
        "schedule": schedule,
        # The pharmacist types the count they read off the counted-units photo.
        "count_confirmation": schedule_ii,
        # Sent at once: a Schedule II decision is never held back for Undo.
        "undo": not schedule_ii,
    }


def check_count(schedule: str | None, fill: Fill, confirmed: Decimal | None) -> None:
    """A Schedule II approval must carry the pharmacist's count, equal to the count the site recorded;
    InvalidInput (none given) or Conflict (another count, or none recorded at the site) otherwise."""
    if schedule != SCHEDULE_II:
        return
    if confirmed is None:
        raise InvalidInput(
            "A Schedule II fill is approved with the count confirmed: count the units in the counted-units "
            "photo and enter the count.",
            code="count_confirmation_required",
        )
    counted = fill.counted_quantity
    if counted is None:
        raise Conflict(
            "The site recorded no count for this Schedule II fill, so no count can be confirmed: reject it "
            "(wrong quantity) for the site to count again.",
            code="count_not_recorded",
        )
    if confirmed != counted:
        raise Conflict(
            f"The count you entered ({_shown(confirmed)}) is not the site's count for this Schedule II fill. "
            "Count the units in the photo again; if the site miscounted, reject the fill (wrong quantity).",
            code="count_mismatch",
            confirmed=float(confirmed),
        )


def _shown(n: Decimal) -> str:
    return format(n.normalize(), "f")


def _text(value: str | None) -> str:
    """A text cell a spreadsheet shows as text: one that starts like a formula is quoted."""
    if not value:
        return ""
    return f"'{value}" if value[0] in "=+-@\t\r" else value


# -- the inspector's log ------------------------------------------------------------------------------

LOG_COLUMNS = [
    "decided_at",
    "site",
    "rx_number",
    "drug",
    "strength",
    "ndc",
    "schedule",
    "quantity_prescribed",
    "quantity_counted",
    "count_confirmed",
    "decision",
    "pharmacist",
    "pharmacist_license",
    "technician",
    "fill_id",
]


@dataclass(frozen=True)
class LogRow:
    decided_at: dt.datetime
    site: str
    rx_number: str
    drug: str
    strength: str
    ndc: str
    schedule: str
    quantity_prescribed: Decimal
    quantity_counted: Decimal | None
    count_confirmed: Decimal | None
    decision: str
    pharmacist: str | None
    pharmacist_license: str | None
    technician: str | None
    fill_id: str

    def cells(self) -> list[str]:
        def number(n: Decimal | None) -> str:
            return "" if n is None else _shown(n)

        return [
            self.decided_at.isoformat(),
            _text(self.site),
            _text(self.rx_number),
            _text(self.drug),
            _text(self.strength),
            self.ndc,
            self.schedule,
            number(self.quantity_prescribed),
            number(self.quantity_counted),
            number(self.count_confirmed),
            "approved" if self.decision == "approve" else "rejected",
            _text(self.pharmacist),
            _text(self.pharmacist_license),
            _text(self.technician),
            self.fill_id,
        ]


_PHARMACIST = aliased(User)
_TECHNICIAN = aliased(User)
# A site's decided fills of a controlled schedule, the prescription's or the reference's for its NDC,
# with who decided and who filled them; the caller adds the site and the range.
_LOG = (
    select(
        Fill,
        Prescription,
        Decision,
        DrugProduct.dea_schedule,
        _PHARMACIST.display_name,
        _TECHNICIAN.display_name,
    )
    .join(Prescription, Prescription.id == Fill.prescription_id)
    .join(Decision, Decision.fill_id == Fill.id)
    .outerjoin(DrugPackage, DrugPackage.ndc11 == Prescription.expected_ndc)
    .outerjoin(DrugProduct, DrugProduct.product_id == DrugPackage.product_id)
    .outerjoin(_PHARMACIST, _PHARMACIST.id == Decision.pharmacist_id)
    .outerjoin(_TECHNICIAN, _TECHNICIAN.id == Fill.technician_id)
    .where(or_(Prescription.dea_schedule.in_(SCHEDULES), DrugProduct.dea_schedule.in_(SCHEDULES)))
    .order_by(Decision.decided_at, Fill.id)
)


async def controlled_log(
    db: Database, actor: Principal | None, site_id: int, start: dt.datetime, end: dt.datetime
) -> list[LogRow]:
    """Every decided fill of a controlled substance at the site, decided from start up to end, oldest
    first (a period made by server.inputs.day_range). The export itself is audited (the site, the
    range, how many fills: no patient data)."""
    # Read first, then the audit row in a short write of its own: a long range does not hold the
    # writer (on SQLite, the only one) while it is read.
    async with db.read() as s:
        site = await s.get(Site, site_id)
        if site is None:
            raise NotFound("No such site.")
        rows = (
            await s.execute(
                _LOG.where(Fill.site_id == site.id, Decision.decided_at >= start, Decision.decided_at < end)
            )
        ).all()
    out = []
    for fill, rx, decision, reference, pharmacist, technician in rows:
        schedule = stricter(rx.dea_schedule, reference)
        assert schedule is not None  # the WHERE clause
        out.append(
            LogRow(
                decided_at=decision.decided_at,
                site=site.code,
                rx_number=rx.rx_number,
                drug=rx.drug,
                strength=rx.strength,
                ndc=rx.expected_ndc,
                schedule=schedule,
                quantity_prescribed=rx.quantity,
                quantity_counted=fill.counted_quantity,
                count_confirmed=decision.confirmed_count,
                decision=decision.outcome,
                pharmacist=pharmacist,
                pharmacist_license=decision.license_number,
                technician=technician,
                fill_id=fill.id,
            )
        )
    async with db.write() as s:
        await audit.append(
            db,
            s,
            actor,
            "controlled_log.exported",
            "site",
            site.id,
            {"from": start.isoformat(), "to": end.isoformat(), "fills": len(out)},
        )
    return out


def write_log_csv(rows: Sequence[LogRow], out: Any) -> None:
    writer = csv.writer(out)
    writer.writerow(LOG_COLUMNS)
    for row in rows:
        writer.writerow(row.cells())
