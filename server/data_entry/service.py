"""Every PV1 transition of a prescription: who may act, a conditional change, an audit event, a live event.

The mechanism is the fills' (server.fills.lifecycle): a claim is a lease of the same length, renewed by
heartbeat and returned to the queue when it runs out; a decision changes the row only if it is still in
review, held by the deciding pharmacist, at the version they saw, so of two racing decisions one wins
and the other gets 409. The audit event and the live event are written in the change's transaction;
live events carry ids, states, versions and reason codes, never patient data.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, Select, String, and_, bindparam, func, literal_column, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.compliance.checks import schedule_of
from server.config import Config
from server.data_entry.rules import (
    DATA_ENTRY,
    NOT_FILLABLE,
    OPEN_STATES,
    OUTCOME_STATE,
    VerificationState,
)
from server.data_entry.source import differences, entered_fields
from server.db.bound import one_of
from server.db.conditional import update_if
from server.db.engine import Database
from server.db.models import (
    Media,
    Prescription,
    PrescriptionRevision,
    PrescriptionVerification,
    Site,
    User,
    utcnow,
)
from server.errors import Conflict, Forbidden, NotFound
from server.keyset import Keyset, Page
from server.realtime import journal
from server.reference.compare import describe
from server.reference.store import lookup
from server.security import step_up
from server.security.principal import Principal, Role
from server.security.step_up import DecisionFacts, Outlook

RX_IMAGE = "rx_image"
# The PV1 queue's order: waiting longest first (a prescription never set waiting counts from its entry).
_WAITING_SINCE = func.coalesce(Prescription.awaiting_since, Prescription.created_at)
DATA_ENTRY_ORDER = Keyset("data_entry", [(_WAITING_SINCE, dt.datetime), (Prescription.id, int)])


@functools.cache
def _waiting(postgres: bool, *, role: Role, by_site: bool, paged: bool) -> Select[Prescription, Site, Any]:
    """The PV1 queue's statement for one role and combination of filters, built once with its values
    bound: a pharmacist's `states`, a technician's `own_site`, `site_id`, `limit` and `after`'s."""
    # The states as literals: SQLite reads the partial index of open prescriptions
    # (ix_prescriptions_open) only when a statement names the index's own states.
    where: list[Any] = [
        Prescription.verification_state.in_([literal_column(f"'{v}'", String()) for v in OPEN_STATES])
    ]
    if role is Role.PHARMACIST:
        where.append(one_of(Site.state, "states", String(), postgres=postgres))
    elif role is Role.TECHNICIAN:
        where.append(Site.id == bindparam("own_site"))
    if by_site:
        where.append(Site.id == bindparam("site_id"))
    if paged:
        where.append(DATA_ENTRY_ORDER.after_bound())
    return (
        select(Prescription, Site, _WAITING_SINCE.label("waiting_since"))
        .join(Site, Site.id == Prescription.site_id)
        .where(*where)
        .order_by(*DATA_ENTRY_ORDER.order_by())
        .limit(bindparam("limit", type_=Integer()))
    )


async def _step_up_facts(s: AsyncSession, rx: Prescription, site: Site) -> DecisionFacts:
    """What about a PV1 decision asks for a proof (server/security/step_up.py), for the check at the
    decision and the outlook read with the prescription alike: no flags; the prescription's schedule,
    as a fill's approval reads it (a Schedule II prescription is verified by a proven pharmacist); the
    site's policy."""
    return {
        "flag_codes": [],
        "schedules": [await schedule_of(s, rx)],
        "site_requires_factor": site.require_second_factor,
    }


def _original_of(rx_id: int) -> tuple[Any, ...]:
    """The conditions for the stored pages of a prescription's paper original."""
    return (Media.prescription_id == rx_id, Media.kind == RX_IMAGE)


@dataclass(frozen=True)
class VerificationInput:
    """A pharmacist's PV1 decision as sent: on which version, verify or return, reasons and a note."""

    version: int
    outcome: str
    reason_codes: tuple[str, ...]
    note: str | None
    # What the pharmacist checked: each field that differs from the message, ticked one by one, and the
    # original's pages (media ids) that were on screen.
    differences_confirmed: tuple[str, ...] = ()
    original_seen: tuple[int, ...] = ()
    # The e-prescription's fields as its message says them (server.data_entry.source), read beforehand
    # in a worker; None for a prescription without a message.
    message: dict[str, Any] | None = None


@dataclass(frozen=True)
class DataEntryRecord:
    """One prescription as the PV1 view shows it: the entry, its source, its original's pages, what
    the drug reference says of its NDC, the patient's other open prescriptions, its history."""

    prescription: Prescription
    site: Site
    pages: list[Media]
    reference: dict[str, Any] | None
    reference_loaded: bool
    others: list[Prescription]
    # (verification, pharmacist's name), oldest first.
    verifications: list[tuple[PrescriptionVerification, str]]
    # (revision, editor's name), oldest first.
    revisions: list[tuple[PrescriptionRevision, str]]
    # For a pharmacist who may decide it (waiting or in review): what verifying or returning it would
    # ask them to prove.
    step_up: Outlook | None = None


@dataclass(frozen=True)
class DataEntryRow:
    prescription: Prescription
    site: Site


def initial_state(site: Site) -> VerificationState:
    """Where a new prescription of the site starts: waiting for PV1, unless the site does without it."""
    return VerificationState.AWAITING if site.requires_pv1 else VerificationState.NOT_REQUIRED


def check_fillable(rx: Prescription) -> None:
    """Conflict unless the prescription may be filled: verified, or needing no PV1."""
    if rx.verification_state in NOT_FILLABLE:
        returned = rx.verification_state == VerificationState.RETURNED
        raise Conflict(
            "This prescription was returned by the pharmacist; correct it and it waits for verification "
            "again before it can be filled."
            if returned
            else "This prescription waits for the pharmacist's data-entry verification (PV1); it can be "
            "filled once verified.",
            code="prescription_not_verified",
            verification_state=rx.verification_state,
        )


def event_payload(rx: Prescription, **extra: Any) -> dict[str, Any]:
    """What a live event says about a prescription's PV1: ids, state, version. Never patient data."""
    return {
        "kind": DATA_ENTRY,
        "prescription_id": rx.id,
        "site_id": rx.site_id,
        "verification_state": rx.verification_state,
        "version": rx.version,
        "claimed_by": rx.claimed_by,
        **extra,
    }


async def announce(
    db: Database,
    s: AsyncSession,
    actor: Principal | None,
    action: str,
    rx: Prescription,
    site: Site,
    detail: dict[str, Any] | None = None,
    *,
    audit_only: dict[str, Any] | None = None,
    at: dt.datetime | None = None,
) -> None:
    """Audits a PV1 change of a prescription and announces it live; audit_only stays out of the broadcast."""
    detail = detail or {}
    await audit.append(
        db,
        s,
        actor,
        action,
        "prescription",
        rx.id,
        {"verification_state": rx.verification_state, "version": rx.version, **detail, **(audit_only or {})},
        at=at,
    )
    await journal.record(
        db, s, action, site_id=site.id, us_state=site.state, payload=event_payload(rx, **detail)
    )


class DataEntryService:
    """PV1 at the pharmacist's console. Each public method is one transaction."""

    def __init__(self, db: Database, config: Config, *, clock: Callable[[], dt.datetime] = utcnow) -> None:
        self.db = db
        self.config = config
        self.clock = clock

    async def _visible(self, s: AsyncSession, actor: Principal, rx_id: int) -> tuple[Prescription, Site]:
        """The prescription and its site if the actor may see it; NotFound otherwise (ids do not leak)."""
        row = (
            await s.execute(
                select(Prescription, Site)
                .join(Site, Site.id == Prescription.site_id)
                .where(Prescription.id == rx_id)
            )
        ).first()
        if row is None or not actor.may_see_site(row.Site.id, row.Site.state):
            raise NotFound("No such prescription.")
        return row.Prescription, row.Site

    @staticmethod
    def _pharmacist(actor: Principal) -> None:
        if actor.role is not Role.PHARMACIST:
            raise Forbidden("Only a pharmacist verifies prescriptions.")

    def _claimable(self, now: dt.datetime) -> Any:
        return or_(
            Prescription.verification_state == VerificationState.AWAITING,
            and_(
                Prescription.verification_state == VerificationState.IN_REVIEW,
                Prescription.lease_expires_at <= now,
            ),
        )

    async def claim(self, actor: Principal, rx_id: int) -> Prescription:
        """Claims one prescription's PV1: a lease of lease_seconds, renewed by heartbeat."""
        self._pharmacist(actor)
        async with self.db.write() as s:
            rx, site = await self._visible(s, actor, rx_id)
            now = self.clock()
            if (
                rx.verification_state == VerificationState.IN_REVIEW
                and rx.claimed_by == actor.user_id
                and rx.lease_expires_at is not None
                and rx.lease_expires_at > now
            ):
                return rx
            if rx.verification_state not in OPEN_STATES:
                raise Conflict(
                    f"This prescription is {rx.verification_state}; it is not waiting for data-entry "
                    "verification.",
                    code="not_awaiting_verification",
                    verification_state=rx.verification_state,
                )
            if not await update_if(
                s,
                rx,
                [Prescription.version == rx.version, self._claimable(now)],
                {
                    "verification_state": VerificationState.IN_REVIEW,
                    "claimed_by": actor.user_id,
                    "lease_expires_at": now + dt.timedelta(seconds=self.config.lease_seconds),
                },
            ):
                raise Conflict("Another pharmacist is verifying this prescription.", code="claimed_by_other")
            await announce(self.db, s, actor, "prescription.claimed", rx, site, at=now)
            return rx

    async def heartbeat(self, actor: Principal, rx_id: int) -> Prescription:
        """Renews the actor's lease; one that has run out is lost."""
        self._pharmacist(actor)
        async with self.db.write() as s:
            rx, _ = await self._visible(s, actor, rx_id)
            now = self.clock()
            if not await update_if(
                s,
                rx,
                [
                    Prescription.verification_state == VerificationState.IN_REVIEW,
                    Prescription.claimed_by == actor.user_id,
                    Prescription.lease_expires_at > now,
                ],
                {"lease_expires_at": now + dt.timedelta(seconds=self.config.lease_seconds)},
            ):
                raise Conflict("Your claim on this prescription has lapsed.", code="lease_lost")
            return rx

    async def release(self, actor: Principal, rx_id: int) -> Prescription:
        """Puts a prescription the actor holds back in the queue."""
        self._pharmacist(actor)
        async with self.db.write() as s:
            rx, site = await self._visible(s, actor, rx_id)
            if not await update_if(
                s,
                rx,
                [
                    Prescription.verification_state == VerificationState.IN_REVIEW,
                    Prescription.claimed_by == actor.user_id,
                ],
                {
                    "verification_state": VerificationState.AWAITING,
                    "claimed_by": None,
                    "lease_expires_at": None,
                },
            ):
                raise Conflict("You do not hold this prescription.", code="not_holder")
            await announce(self.db, s, actor, "prescription.released", rx, site, {"why": "released"})
            return rx

    async def decide(
        self, actor: Principal, rx_id: int, d: VerificationInput
    ) -> tuple[Prescription, PrescriptionVerification]:
        """Verifies the prescription or returns it to the site. Needs the lease and the version seen."""
        self._pharmacist(actor)
        async with self.db.write() as s:
            rx, site = await self._visible(s, actor, rx_id)
            now = self.clock()
            target = OUTCOME_STATE[d.outcome]
            stepped_up: list[str] = []
            if (
                rx.verification_state == VerificationState.IN_REVIEW
                and rx.claimed_by == actor.user_id
                and rx.version == d.version
            ):
                if target == VerificationState.VERIFIED:
                    await self._checked(s, rx, d)
                # The same positive identification as a fill's decision (server/security/step_up.py).
                stepped_up = await step_up.confirm_decision(
                    s,
                    actor,
                    approving=target == VerificationState.VERIFIED,
                    now=now,
                    after_seconds=self.config.step_up_after_seconds,
                    **await _step_up_facts(s, rx, site),
                )
            if not await update_if(
                s,
                rx,
                [
                    Prescription.verification_state == VerificationState.IN_REVIEW,
                    Prescription.claimed_by == actor.user_id,
                    Prescription.version == d.version,
                    Prescription.lease_expires_at > now,
                ],
                {"verification_state": target, "claimed_by": None, "lease_expires_at": None},
            ):
                await s.refresh(rx)
                raise self._conflict(rx, actor, d, now)
            license_number = await step_up.license_number(s, actor, site.state)
            verification = PrescriptionVerification(
                prescription_id=rx.id,
                prescription_version=rx.version,
                pharmacist_id=actor.user_id,
                outcome="verified" if target == VerificationState.VERIFIED else "returned",
                reason_codes=list(d.reason_codes),
                note=d.note,
                license_state=site.state,
                license_number=license_number,
                decided_at=now,
            )
            s.add(verification)
            await s.flush()
            await announce(
                self.db,
                s,
                actor,
                f"prescription.{verification.outcome}",
                rx,
                site,
                {"reason_codes": list(d.reason_codes)},
                audit_only={
                    "verification_id": verification.id,
                    "pharmacist": actor.display_name,
                    "pharmacist_id": actor.user_id,
                    "license": {"state": site.state, "number": license_number},
                    "has_note": d.note is not None,
                    "differences_confirmed": list(d.differences_confirmed),
                    "step_up": stepped_up,
                },
                at=now,
            )
            return rx, verification

    @staticmethod
    async def _checked(s: AsyncSession, rx: Prescription, d: VerificationInput) -> None:
        """A verification is of an entry checked against its source: every field that differs from the
        e-prescription's message confirmed by name, every page of the paper original on screen."""
        differing = differences(entered_fields(rx), d.message) if d.message is not None else []
        if unconfirmed := [f for f in differing if f not in d.differences_confirmed]:
            raise Conflict(
                "The entry differs from the e-prescription in "
                + ", ".join(f.replace("_", " ") for f in unconfirmed)
                + ": confirm each difference you checked, or return the prescription to the site.",
                code="differences_unconfirmed",
                fields=unconfirmed,
            )
        pages = (await s.execute(select(Media.id).where(*_original_of(rx.id)).order_by(Media.id))).scalars()
        if unseen := [p for p in pages if p not in d.original_seen]:
            raise Conflict(
                "Look at every page of the paper original before verifying the entry against it.",
                code="original_unseen",
                pages=unseen,
            )

    @staticmethod
    def _conflict(rx: Prescription, actor: Principal, d: VerificationInput, now: dt.datetime) -> Conflict:
        if rx.verification_state in (VerificationState.VERIFIED, VerificationState.RETURNED):
            return Conflict(
                f"This prescription has been {rx.verification_state} already.",
                code="already_decided",
                verification_state=rx.verification_state,
            )
        if rx.version != d.version:
            # A correction at the site sends the prescription back to the queue: that, not the claim,
            # is what the pharmacist needs to hear.
            return Conflict(
                "The site corrected the prescription since you opened it; open it again to review it.",
                code="stale_version",
                version=rx.version,
                your_version=d.version,
            )
        if rx.verification_state != VerificationState.IN_REVIEW or rx.claimed_by != actor.user_id:
            return Conflict(
                "You no longer hold this prescription: it was released or claimed by someone else.",
                code="lease_lost",
            )
        return Conflict("Your claim on this prescription has lapsed; open it again.", code="lease_lost")

    async def expire_leases(self) -> int:
        """Puts prescriptions whose PV1 lease ran out back in the queue; returns how many."""
        now = self.clock()
        async with self.db.write() as s:
            rows = (
                await s.execute(
                    select(Prescription, Site)
                    .join(Site, Site.id == Prescription.site_id)
                    .where(
                        Prescription.verification_state == VerificationState.IN_REVIEW,
                        Prescription.lease_expires_at <= now,
                    )
                    .limit(200)
                )
            ).all()
            n = 0
            for rx, site in rows:
                holder = rx.claimed_by
                if await update_if(
                    s,
                    rx,
                    [
                        Prescription.verification_state == VerificationState.IN_REVIEW,
                        Prescription.version == rx.version,
                        Prescription.lease_expires_at <= now,
                    ],
                    {
                        "verification_state": VerificationState.AWAITING,
                        "claimed_by": None,
                        "lease_expires_at": None,
                    },
                ):
                    await announce(
                        self.db,
                        s,
                        None,
                        "prescription.released",
                        rx,
                        site,
                        {"why": "lease_expired", "previous_holder": holder},
                        at=now,
                    )
                    n += 1
            return n

    # -- the original of a paper prescription ------------------------------------------------------

    async def authorize_original(self, actor: Principal, rx_id: int) -> None:
        """An original may be attached by the prescription's site while no pharmacist has it in hand
        or has verified it (a verified one is corrected first, and so waits for PV1 again)."""
        if actor.role is not Role.TECHNICIAN:
            raise Forbidden("Only the site's technician attaches a prescription's original.")
        async with self.db.read() as s:
            rx, _ = await self._visible(s, actor, rx_id)
            self._may_attach(rx)

    @staticmethod
    def _may_attach(rx: Prescription) -> None:
        if rx.verification_state in (VerificationState.IN_REVIEW, VerificationState.VERIFIED):
            raise Conflict(
                f"This prescription is {rx.verification_state.replace('_', ' ')}: its original can no "
                "longer change. Correct the prescription first; it then waits for verification again.",
                code="original_closed",
                verification_state=rx.verification_state,
            )

    async def attach_original(self, actor: Principal, rx_id: int, pages: list[Media]) -> list[Media]:
        """Records an original's stored pages on the prescription; a page stored before is kept once."""
        async with self.db.write() as s:
            rx, site = await self._visible(s, actor, rx_id)
            self._may_attach(rx)
            stored: list[Media] = []
            for page in pages:
                same = (
                    await s.execute(
                        select(Media).where(
                            Media.prescription_id == rx.id,
                            Media.kind == page.kind,
                            Media.sha256 == page.sha256,
                        )
                    )
                ).scalar_one_or_none()
                if same is not None:
                    stored.append(same)
                    continue
                page.prescription_id = rx.id
                page.created_at = self.clock()
                s.add(page)
                stored.append(page)
            await s.flush()
            await announce(
                self.db,
                s,
                actor,
                "prescription.original_stored",
                rx,
                site,
                {"media_ids": [m.id for m in stored]},
                audit_only={"sha256": [m.sha256 for m in stored], "bytes": stored[0].bytes if stored else 0},
                at=self.clock(),
            )
            return stored

    # -- reading -----------------------------------------------------------------------------------

    async def queue(
        self,
        actor: Principal,
        *,
        site_id: int | None = None,
        after: tuple[Any, ...] | None = None,
        limit: int = 200,
    ) -> Page[DataEntryRow]:
        """A page of the prescriptions waiting for PV1 or in review that the actor may verify, oldest
        first (after the position `after`)."""
        if actor.role is Role.PHARMACIST and not actor.licensed_states:
            return Page([], None)
        postgres = not self.db.is_sqlite
        statement = _waiting(postgres, role=actor.role, by_site=site_id is not None, paged=after is not None)
        params: dict[str, Any] = {
            "states": sorted(actor.licensed_states),
            "own_site": actor.site_id,
            "site_id": site_id,
            "limit": limit + 1,
            **(DATA_ENTRY_ORDER.bound(after) if after is not None else {}),
        }
        async with self.db.read_one() as s:  # one statement: no transaction around it
            rows = (await s.execute(statement, params)).all()
        page = DATA_ENTRY_ORDER.page(rows, limit, lambda r: (r.waiting_since, r.Prescription.id))
        return Page([DataEntryRow(r.Prescription, r.Site) for r in page.rows], page.next)

    async def source(self, actor: Principal, rx_id: int) -> Prescription:
        """The prescription as stored, for its source message (kind, id and body), if the actor may see
        it."""
        async with self.db.read() as s:
            rx, _ = await self._visible(s, actor, rx_id)
            return rx

    async def detail(self, actor: Principal, rx_id: int) -> DataEntryRecord:
        """One prescription with everything its PV1 view shows."""
        async with self.db.read() as s:
            rx, site = await self._visible(s, actor, rx_id)
            pages = list(
                (
                    await s.execute(
                        select(Media)
                        .where(*_original_of(rx.id))
                        .order_by(Media.created_at, Media.page, Media.id)
                    )
                ).scalars()
            )
            found = await lookup(s, [rx.expected_ndc])
            known = found.packages.get(rx.expected_ndc)
            reference = describe(*known, self.clock().date()) if known is not None else None
            others = list(
                (
                    await s.execute(
                        select(Prescription)
                        .where(
                            Prescription.site_id == rx.site_id,
                            Prescription.patient_name == rx.patient_name,
                            Prescription.patient_dob == rx.patient_dob,
                            Prescription.id != rx.id,
                            Prescription.verification_state != VerificationState.RETURNED,
                        )
                        .order_by(Prescription.created_at.desc())
                        .limit(50)
                    )
                ).scalars()
            )
            verifications = (
                await s.execute(
                    select(PrescriptionVerification, User.display_name)
                    .join(User, User.id == PrescriptionVerification.pharmacist_id)
                    .where(PrescriptionVerification.prescription_id == rx.id)
                    .order_by(PrescriptionVerification.id)
                )
            ).all()
            revisions = (
                await s.execute(
                    select(PrescriptionRevision, User.display_name)
                    .join(User, User.id == PrescriptionRevision.edited_by)
                    .where(PrescriptionRevision.prescription_id == rx.id)
                    .order_by(PrescriptionRevision.id)
                )
            ).all()
            outlook = None
            if actor.role is Role.PHARMACIST and rx.verification_state in OPEN_STATES:
                # Read in the record's transaction and using nothing up: the console asks for the proof
                # before it sends the decision.
                outlook = await step_up.outlook(
                    s,
                    actor,
                    after_seconds=self.config.step_up_after_seconds,
                    **await _step_up_facts(s, rx, site),
                )
        return DataEntryRecord(
            rx,
            site,
            pages,
            reference,
            found.loaded,
            others,
            [(v, str(name)) for v, name in verifications],
            [(r, str(name)) for r, name in revisions],
            outlook,
        )
