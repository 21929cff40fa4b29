"""Every transition of a fill goes through here: who may act, a conditional change, an audit event.

Which transitions exist, from which states, and who may make them is the table in server.fills.rules;
the role checks and each change's starting states and target come from it. A transition changes its
row only if the row is still as the caller saw it (state, version, lease holder); otherwise it raises
Conflict and changes nothing. The audit event and the realtime event are written in the same
transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    String,
    Update,
    and_,
    bindparam,
    case,
    func,
    literal,
    literal_column,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.compliance.checks import Compliance, schedule_of
from server.compliance.controlled import check_count
from server.compliance.rules import load_rules
from server.config import Config
from server.data_entry.service import check_fillable
from server.db.bound import at_most, one_of
from server.db.conditional import update_if
from server.db.engine import Database
from server.db.models import Decision, Fill, Media, Prescription, Site, utcnow
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.evidence.barcodes import check_product
from server.evidence.kinds import MediaKind
from server.fills.flags import check_approval, flags_at_queue
from server.fills.history import (
    LastApproved,
    last_approved,
    lock_patient_drug,
    open_of_patient_drug,
    refill_too_soon,
)
from server.fills.live import IS_OPEN, state_is
from server.fills.records import (
    FILL_SITE_PRESCRIPTION_TECHNICIAN,
    MEDIA_OF_FILL,
    FillRecord,
    decisions_of,
    load_record,
    with_step_up,
)
from server.fills.requests import DecisionInput, NewFill
from server.fills.rules import (
    APPROVE,
    APPROVED_STATES,
    CLAIM,
    COUNSELLING_RECORDED,
    CREATE,
    EXPIRE,
    FLAGGED,
    HAND_OUT,
    MEDIA_KINDS,
    OPEN_STATES,
    PRIORITIES,
    REJECT,
    RELEASE,
    SUBMIT,
    TRANSITIONS,
    Counselling,
    FillState,
    FlagCode,
    Transition,
    counselling_at_start,
)
from server.fills.supervision import check_claim, claimable_sites
from server.media.reuse import reused_photos
from server.realtime import journal
from server.reference import store as reference
from server.reference.store import annotate_product_check
from server.security import step_up
from server.security.principal import Principal, Role


def _literal(value: str | int) -> ColumnElement[Any]:
    if isinstance(value, str):
        return literal_column(f"'{value}'", String())
    return literal_column(str(value), Integer())


# Written with literals, as the index of the open fills in queue order has it (server.db.models'
# QUEUE_RANK): with parameters neither database would know the statement's order is the index's.
PRIORITY_RANK = case(
    {_literal(p): _literal(i) for i, p in enumerate(PRIORITIES)},
    value=Fill.priority,
    else_=_literal(len(PRIORITIES)),
)

# The hot path's statements, built once and run with parameters: building one costs more than SQLite
# takes to run it.
_FILL_AND_SITE = select(Fill, Site).join(Site, Site.id == Fill.site_id).where(Fill.id == bindparam("fill_id"))
_FILL_STATE = (
    select(Fill.state, Site.id, Site.state)
    .join(Site, Site.id == Fill.site_id)
    .where(Fill.id == bindparam("fill_id"))
)
# The fill, its site, and the same file if it is stored already.
_FILL_SITE_SAME_MEDIA = (
    select(Fill, Site, Media)
    .join(Site, Site.id == Fill.site_id)
    .outerjoin(
        Media,
        and_(
            Media.fill_id == Fill.id,
            Media.kind == bindparam("kind"),
            Media.sha256 == bindparam("sha256"),
        ),
    )
    .where(Fill.id == bindparam("fill_id"))
)
_PRESCRIPTION_AND_SITE = (
    select(Prescription, Site)
    .join(Site, Site.id == Prescription.site_id)
    .where(Prescription.id == bindparam("prescription_id"))
)
# A prescription's fills that use one of its fills (the first, then its refills): submitted and not
# rejected. A draft uses none (an abandoned one blocks nothing); a rejection gives its fill back, so a
# rejected fill and its resubmission use one between them.
FILL_USING_STATES = (*OPEN_STATES, *APPROVED_STATES)
_FILLS_USED = select(func.count()).where(
    Fill.prescription_id == bindparam("prescription_id"),
    Fill.state.in_(FILL_USING_STATES),
    Fill.id != bindparam("fill_id"),
)
_LOCK_PRESCRIPTION = (
    select(Prescription.id).where(Prescription.id == bindparam("prescription_id")).with_for_update()
)


def claimable_at(now: Any) -> ColumnElement[bool]:
    """The fills CLAIM may take at `now` (a time, or a parameter): queued, or in review under a lease
    that has run out."""
    return or_(
        state_is(FillState.QUEUED),
        and_(state_is(FillState.IN_REVIEW), Fill.lease_expires_at <= now),
    )


# CLAIM's change, written once for both ways of claiming, each a single statement returning the fill's
# id (claims are the busiest transition, and the statements are built once): the fill becomes the
# `user_id`'s until `lease`.
_NOW = bindparam("now", type_=Fill.lease_expires_at.type)
_CLAIMING = {
    "state": CLAIM.target,
    "version": Fill.version + 1,
    "claimed_by": bindparam("user_id"),
    "lease_expires_at": bindparam("lease", type_=Fill.lease_expires_at.type),
}


def _claims(which: ColumnElement[bool]) -> Update:
    return (
        update(Fill)
        .where(which)
        .values(_CLAIMING)
        .returning(Fill.id)
        .execution_options(synchronize_session=False)
    )


# One fill, as it was read (`fill_id`, `version`), if it is still claimable at `now`.
_CLAIM_ONE = _claims(
    and_(Fill.id == bindparam("fill_id"), Fill.version == bindparam("version"), claimable_at(_NOW))
)


@functools.cache
def _claim_first(postgres: bool, *, limited: bool) -> Update:
    """Claim-next: the first claimable fill at `now` of the pharmacist's `states` in queue order; when a
    limit of sites is in force, only at the `sites` listed."""
    first = (
        select(Fill.id)
        .join(Site, Site.id == Fill.site_id)
        .where(claimable_at(_NOW), one_of(Site.state, "states", String(), postgres=postgres))
        .order_by(PRIORITY_RANK, Fill.submitted_at, Fill.id)
        .limit(at_most(1))
    )
    if limited:
        # On SQLite as an expression no index serves: without statistics it would read the listed
        # sites' fills, a year of them, through the sites' index rather than the open ones.
        site_id = Site.id if postgres else Site.id + 0
        first = first.where(one_of(site_id, "sites", Integer(), postgres=postgres))
    # SQLite reads the partial index of open fills only when a statement names the index's own
    # states; PostgreSQL proves it from the claimable states, and misjudges the rows when given both
    # (it expects one, and scans the sites once a fill). On PostgreSQL a fill another claim has locked
    # is skipped; SQLite has one writer.
    first = first.with_for_update(skip_locked=True, of=Fill) if postgres else first.where(IS_OPEN)
    # The subquery reads its own `fills`, not the updated row; the row is checked again once locked.
    return _claims(and_(Fill.id == first.correlate(None).scalar_subquery(), claimable_at(_NOW)))


# How many new drafts the upload pre-check remembers (a site has a few open at a time).
KNOWN_DRAFTS = 4096
# Each transition's starting states as a condition, built once.
_STARTS = {
    t: (Fill.state == t.sources[0] if len(t.sources) == 1 else Fill.state.in_(t.sources))
    for t in TRANSITIONS
    if t.sources
}
_REFUSALS: dict[str, str] = {
    Role.TECHNICIAN: "Only a technician at the fill's site does this.",
    Role.PHARMACIST: "Only a pharmacist verifies fills.",
}


def _as_read(s: AsyncSession, fill: Fill, now: dt.datetime) -> dict[str, Any]:
    """_CLAIM_ONE's conditions for the fill as the session read it; the fill is then expired, so that
    the record after the claim (which changes the row in the database only) reads it again."""
    params = {"fill_id": fill.id, "version": fill.version, "now": now}
    s.expire(fill)
    return params


class Claimed(NamedTuple):
    """A claim answered without the fill's record, for a caller that reads the record itself: the fill
    as claimed (its version and lease) and its site."""

    fill: Fill
    site: Site


class KnownDrafts:
    """Fills this process created and has not seen leave the draft state, with their site (id, US
    state): the pre-check of each of a new fill's photos answers from here instead of reading the fill.

    Only "still a draft" is remembered. It goes stale when another server submits the fill; then
    attach_media, which checks again in its own transaction, refuses the photo after its bytes arrived
    (as when an upload overtakes a submit) and forgets the fill.
    """

    def __init__(self, size: int = KNOWN_DRAFTS) -> None:
        self.size = size
        self._sites: OrderedDict[str, tuple[int, str]] = OrderedDict()

    def add(self, fill_id: str, site_id: int, us_state: str) -> None:
        self._sites[fill_id] = (site_id, us_state)
        if len(self._sites) > self.size:
            self._sites.popitem(last=False)

    def site_of(self, fill_id: str) -> tuple[int, str] | None:
        return self._sites.get(fill_id)

    def discard(self, fill_id: str) -> None:
        self._sites.pop(fill_id, None)


def event_payload(fill: Fill, **extra: Any) -> dict[str, Any]:
    """What a realtime event says about a fill: ids, state, version. Never patient data."""
    return {
        "fill_id": fill.id,
        "site_id": fill.site_id,
        "state": fill.state,
        "version": fill.version,
        "priority": fill.priority,
        "product_check": fill.product_check,
        "claimed_by": fill.claimed_by,
        "flags": fill.flags or [],
        "counselling": fill.counselling,
        **extra,
    }


def _must_see(actor: Principal, site_id: int | None, site_state: str | None) -> None:
    """NotFound unless the fill exists at a site the actor may see: ids of other sites do not leak."""
    if site_id is None or site_state is None or not actor.may_see_site(site_id, site_state):
        raise NotFound("No such fill.")


class FillService:
    """The life of a fill. Each public method is one transaction."""

    def __init__(
        self,
        db: Database,
        config: Config,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        on_decided: Callable[[Fill], None] | None = None,
        compliance: Compliance | None = None,
    ) -> None:
        self.db = db
        self.config = config
        # The state rules: which fills a site may make, their photos, how many sites a pharmacist takes.
        self.compliance = compliance or Compliance(
            load_rules(config.compliance_rules, config.site_rules),
            supervision_minutes=config.supervision_minutes,
        )
        self.clock = clock
        self.on_decided = on_decided
        self.drafts = KnownDrafts()

    # -- helpers ---------------------------------------------------------------------------------

    async def _visible_row(
        self, s: AsyncSession, actor: Principal, statement: Any, params: dict[str, Any]
    ) -> Any:
        """The row of a statement over one fill and its Site, if the actor may see the fill; NotFound
        otherwise, so ids of other sites do not leak."""
        row = (await s.execute(statement, params)).first()
        _must_see(actor, row.Site.id if row else None, row.Site.state if row else None)
        return row

    async def _visible_fill(self, s: AsyncSession, actor: Principal, fill_id: str) -> tuple[Fill, Site]:
        """The fill and its site if the actor may see it."""
        row = await self._visible_row(s, actor, _FILL_AND_SITE, {"fill_id": fill_id})
        return row.Fill, row.Site

    async def _visible_state(self, s: AsyncSession, actor: Principal, fill_id: str) -> str:
        """_visible_fill for the fill's state alone: columns, not entities (asked on every upload)."""
        row = (await s.execute(_FILL_STATE, {"fill_id": fill_id})).first()
        _must_see(actor, row[1] if row else None, row[2] if row else None)
        assert row is not None
        return str(row[0])

    async def _announce(
        self,
        s: AsyncSession,
        actor: Principal | None,
        action: str,
        fill: Fill,
        site: Site,
        detail: dict[str, Any] | None = None,
        *,
        audit_only: dict[str, Any] | None = None,
    ) -> None:
        """Audits a transition and announces it live; audit_only details stay out of the broadcast."""
        detail = detail or {}
        await audit.append(
            self.db,
            s,
            actor,
            action,
            "fill",
            fill.id,
            {"state": fill.state, "version": fill.version, **detail, **(audit_only or {})},
            at=self.clock(),
        )
        await journal.record(
            self.db, s, action, site_id=site.id, us_state=site.state, payload=event_payload(fill, **detail)
        )

    @staticmethod
    def _require(actor: Principal, t: Transition) -> None:
        """Forbidden unless the transition table lets the actor's role make t."""
        if actor.role is not t.by:
            raise Forbidden(_REFUSALS.get(t.by, "Only the server itself makes this change."))

    @staticmethod
    async def _move(
        s: AsyncSession, fill: Fill, t: Transition, where: Sequence[Any], values: dict[str, Any]
    ) -> bool:
        """Makes transition t if the row is still in one of t's starting states and where holds: the row
        takes t's state and the next version. False, and nothing changed, otherwise."""
        return await update_if(
            s,
            fill,
            [_STARTS[t], *where],
            {**values, "state": t.target, "version": fill.version + 1},
        )

    def required_kinds(self, site: Site, rx: Prescription) -> tuple[str, ...]:
        """The views the prescription's dosage form needs under the site's rules, and the site's own."""
        own = tuple(site.required_media_kinds or self.config.required_media_kinds)
        return self.compliance.required_photos(site, rx, own)

    async def views_required(self, prescriptions: Sequence[Prescription]) -> dict[int, tuple[str, ...]]:
        """required_kinds of each prescription, by its id: what a site shows before it takes photos."""
        site_ids = sorted({rx.site_id for rx in prescriptions})
        if not site_ids:
            return {}
        async with self.db.read() as s:
            sites = {
                site.id: site
                for site in (await s.execute(select(Site).where(Site.id.in_(site_ids)))).scalars()
            }
        return {rx.id: self.required_kinds(sites[rx.site_id], rx) for rx in prescriptions}

    # -- at the site -----------------------------------------------------------------------------

    async def create(self, actor: Principal, new: NewFill) -> tuple[FillRecord, bool]:
        """Creates a draft fill; idempotent on the site's id. Returns (its record, created)."""
        self._require(actor, CREATE)
        if actor.site_id is None:
            raise Forbidden("Only a technician at a site creates fills.")
        digest = new.digest()
        record, created = await self._create(actor, new, digest)
        if created:
            # Committed: the photos' pre-checks need not read it back.
            self.drafts.add(record.fill.id, record.site.id, record.site.state)
        return record, created

    async def _create(self, actor: Principal, new: NewFill, digest: str) -> tuple[FillRecord, bool]:
        async with self.db.write() as s:
            existing = await s.get(Fill, new.id)
            if existing is not None:
                if existing.site_id != actor.site_id or existing.request_digest != digest:
                    raise Conflict("A different fill with this id exists already.", code="fill_id_conflict")
                record = await load_record(s, actor, existing.id)
                assert record is not None  # the actor's own site
                return record, False
            found = (
                await s.execute(_PRESCRIPTION_AND_SITE, {"prescription_id": new.prescription_id})
            ).first()
            if found is None or found.Prescription.site_id != actor.site_id:
                raise NotFound("No such prescription at this site.")
            rx, site = found.Prescription, found.Site
            if site.status != "active":
                raise Forbidden("This site is suspended and cannot submit fills.")
            check_fillable(rx)
            await self.compliance.check_new_fill(s, site, rx)
            replaced = await self._check_resubmission(s, new, rx) if new.previous_fill_id else None
            await self._check_refills(s, rx, new.id, lock=False)
            counselling = self.compliance.counselling_required(site, rx.fill_type)
            fill = Fill(
                id=new.id,
                prescription_id=rx.id,
                site_id=site.id,
                technician_id=actor.user_id,
                previous_fill_id=new.previous_fill_id,
                # A retake keeps the patient's place: waiting at the counter still, unless the site says.
                priority=new.priority or (replaced.priority if replaced is not None else "routine"),
                state=CREATE.target,
                version=1,
                barcodes=list(new.barcodes),
                counted_quantity=new.counted_quantity,
                override_reason=new.override_reason,
                overridden_checks=list(new.overridden_checks),
                request_digest=digest,
                created_at=self.clock(),
                counselling_required=counselling,
                counselling=counselling_at_start(counselling),
            )
            s.add(fill)
            await s.flush()
            detail: dict[str, Any] = {"prescription_id": rx.id}
            if new.previous_fill_id:
                detail["previous_fill_id"] = new.previous_fill_id
            await audit.append(self.db, s, actor, CREATE.action, "fill", fill.id, detail, at=self.clock())
            # The answer's record from what this transaction holds: a new fill has no media yet.
            decisions = await decisions_of(s, rx.id)
            schedule = await schedule_of(s, rx)
            return FillRecord(fill, site, rx, actor.display_name, [], decisions, schedule=schedule), True

    async def _check_resubmission(self, s: AsyncSession, new: NewFill, rx: Prescription) -> Fill:
        """The rejected fill a resubmission replaces, once it may."""
        prev = await s.get(Fill, new.previous_fill_id)
        if prev is None or prev.prescription_id != rx.id:
            raise InvalidInput("A resubmission must name a rejected fill of the same prescription.")
        if prev.state != FillState.REJECTED:
            raise Conflict("Only a rejected fill can be resubmitted.", code="not_rejected")
        taken = (await s.execute(select(Fill.id).where(Fill.previous_fill_id == prev.id))).first()
        if taken is not None:
            raise Conflict("This rejected fill was resubmitted already.", code="already_resubmitted")
        return prev

    @staticmethod
    async def _replaced(s: AsyncSession, fill: Fill) -> list[str]:
        """The rejected fills this one replaces: the one it resubmits, that one's, and so on."""
        chain: list[str] = []
        previous = fill.previous_fill_id
        while previous is not None and previous not in chain:
            chain.append(previous)
            previous = (
                await s.execute(select(Fill.previous_fill_id).where(Fill.id == previous))
            ).scalar_one_or_none()
        return chain

    async def _check_refills(self, s: AsyncSession, rx: Prescription, fill_id: str, *, lock: bool) -> None:
        """Conflict when the prescription's fills (the first and its refills) are all used by others.

        With `lock`, the prescription's row is locked first (PostgreSQL; SQLite has one writer), so of
        two fills submitted at once the second counts the first: two open fills never exceed it.
        """
        if lock and not self.db.is_sqlite:
            await s.execute(_LOCK_PRESCRIPTION, {"prescription_id": rx.id})
        used = (await s.execute(_FILLS_USED, {"prescription_id": rx.id, "fill_id": fill_id})).scalar_one()
        allowed = 1 + rx.refills_authorized
        if used >= allowed:
            raise Conflict(
                f"This prescription allows {allowed} fill{'s' if allowed > 1 else ''} "
                f"({rx.refills_authorized} refill{'s' if rx.refills_authorized != 1 else ''} authorized) "
                f"and {used} {'is' if used == 1 else 'are'} used or waiting for verification; "
                "it needs a new prescription.",
                code="refills_exhausted",
                refills_authorized=rx.refills_authorized,
                fills_used=used,
            )

    async def authorize_upload(self, actor: Principal, fill_id: str, kind: str) -> None:
        """Media may be added only by the fill's site, while the fill is still a draft."""
        if kind not in MEDIA_KINDS:
            raise InvalidInput(f"Media kind must be one of {', '.join(MEDIA_KINDS)}.")
        if actor.role is not Role.TECHNICIAN:
            raise Forbidden("Only the site's technician adds media to a fill.")
        known = self.drafts.site_of(fill_id)
        if known is not None:
            _must_see(actor, *known)
            return
        async with self.db.read_one() as s:
            state = await self._visible_state(s, actor, fill_id)
        if state != FillState.DRAFT:
            raise Conflict("Media can be added only before the fill is submitted.", code="not_draft")

    async def attach_media(self, actor: Principal, fill_id: str, media: Media) -> Media:
        """Records stored media on a draft fill; the same file twice is stored once."""
        async with self.db.write() as s:
            row = await self._visible_row(
                s,
                actor,
                _FILL_SITE_SAME_MEDIA,
                {"fill_id": fill_id, "kind": media.kind, "sha256": media.sha256},
            )
            fill: Fill = row.Fill
            same: Media | None = row.Media
            if fill.state != FillState.DRAFT:
                self.drafts.discard(fill.id)
                raise Conflict("Media can be added only before the fill is submitted.", code="not_draft")
            if same is not None:
                return same
            media.fill_id = fill.id
            media.created_at = self.clock()
            s.add(media)
            await s.flush()
            await audit.append(
                self.db,
                s,
                actor,
                "media.stored",
                "fill",
                fill.id,
                {"media_id": media.id, "kind": media.kind, "sha256": media.sha256, "bytes": media.bytes},
                at=self.clock(),
            )
            return media

    async def submit(self, actor: Principal, fill_id: str) -> FillRecord:
        """Submits a draft whose required media are stored; it enters the queue at once. Returns the
        fill's record as it left the transaction."""
        async with self.db.write() as s:
            row = await self._visible_row(s, actor, FILL_SITE_PRESCRIPTION_TECHNICIAN, {"fill_id": fill_id})
            fill: Fill = row.Fill
            site: Site = row.Site
            rx: Prescription = row.Prescription
            self._require(actor, SUBMIT)
            media = (await s.execute(MEDIA_OF_FILL, {"fill_id": fill.id})).scalars().all()
            if fill.state not in SUBMIT.sources:
                self.drafts.discard(fill.id)
                if fill.state in OPEN_STATES:
                    # A retried submit is not an error.
                    decisions = await decisions_of(s, rx.id)
                    schedule = await schedule_of(s, rx)
                    return FillRecord(fill, site, rx, row.display_name, media, decisions, schedule=schedule)
                raise Conflict(f"This fill is {fill.state} and cannot be submitted again.", code="not_draft")
            missing = [k for k in self.required_kinds(site, rx) if k not in {m.kind for m in media}]
            if missing:
                raise Conflict(
                    "The fill cannot be submitted before these photos are stored: "
                    + ", ".join(missing)
                    + ".",
                    code="media_missing",
                    missing=missing,
                )
            now = self.clock()
            bottles = [m for m in media if m.kind == MediaKind.STOCK_BOTTLE]
            decoded = [b for m in bottles for b in m.quality.get("barcodes", [])]
            check = check_product([*fill.barcodes, *decoded], rx.expected_ndc, now.date())
            product_detail = await annotate_product_check(s, check.detail, now.date())
            # Corrected since the draft was made: it waits for PV1 again.
            check_fillable(rx)
            await self._check_refills(s, rx, fill.id, lock=True)
            photos = await reused_photos(s, fill.id, media, await self._replaced(s, fill))
            flags = flags_at_queue(
                fill,
                rx.quantity,
                check.result,
                product_detail,
                {"code": FlagCode.REUSED_PHOTO, "photos": photos} if photos else None,
                refill_too_soon(await last_approved(s, fill, rx), now, self.config.refill_too_soon_percent),
            )
            if not await self._move(
                s,
                fill,
                SUBMIT,
                [Fill.version == fill.version],
                {
                    "submitted_at": now,
                    "queued_at": now,
                    "product_check": check.result,
                    "product_check_detail": product_detail,
                    "flags": flags,
                },
            ):
                raise Conflict("The fill changed while it was being submitted.")
            self.drafts.discard(fill.id)
            # The technician's act, with what only the trail keeps; then the queue's event, which the
            # consoles hear. Both name the state the row is in now.
            await audit.append(
                self.db,
                s,
                actor,
                SUBMIT.action,
                "fill",
                fill.id,
                {
                    "state": fill.state,
                    "version": fill.version,
                    "media": len(media),
                    "product_check": check.result,
                    "flags": [f["code"] for f in flags],
                    **({"override_reason": fill.override_reason} if fill.override_reason else {}),
                },
                at=now,
            )
            await self._announce(s, actor, "fill.queued", fill, site)
            decisions = await decisions_of(s, rx.id)
            schedule = await schedule_of(s, rx)
            return FillRecord(fill, site, rx, row.display_name, media, decisions, schedule=schedule)

    # -- at the pharmacist's console -------------------------------------------------------------

    async def _take(
        self, s: AsyncSession, actor: Principal, statement: Update, params: dict[str, Any], *, whole: bool
    ) -> FillRecord | Claimed | None:
        """Claims the fill `statement` picks, if any; then its record (or, not `whole`, the fill and its
        site), read in the claim's own transaction (the fill as claimed, in one transaction rather than
        two) and before the claim is announced, which takes the journal's lock until the commit."""
        now: dt.datetime = params["now"]
        lease = now + dt.timedelta(seconds=self.config.lease_seconds)
        fill_id = (await s.execute(statement, {**params, "user_id": actor.user_id, "lease": lease})).scalar()
        if fill_id is None:
            return None
        taken = await self._claimed(s, actor, fill_id, whole=whole)
        await self._announce(s, actor, CLAIM.action, taken.fill, taken.site)
        return taken

    async def _claimed(
        self, s: AsyncSession, actor: Principal, fill_id: str, *, whole: bool
    ) -> FillRecord | Claimed:
        """The claimed fill's record, or (not `whole`) only the fill and its site."""
        if not whole:
            return Claimed(*await self._visible_fill(s, actor, fill_id))
        record = await load_record(s, actor, fill_id)
        assert record is not None  # the actor was shown to see it
        return await with_step_up(s, actor, record, self.config.step_up_after_seconds)

    async def claim(self, actor: Principal, fill_id: str, *, whole: bool = True) -> FillRecord | Claimed:
        """Claims one fill: a lease of lease_seconds, renewed by heartbeat. The fill's record, or (not
        `whole`) the fill as claimed and its site, for a caller that reads the record itself."""
        self._require(actor, CLAIM)
        async with self.db.write() as s:
            fill, site = await self._visible_fill(s, actor, fill_id)
            now = self.clock()
            if (
                fill.state == FillState.IN_REVIEW
                and fill.claimed_by == actor.user_id
                and fill.lease_expires_at
                and fill.lease_expires_at > now
            ):
                # Already this pharmacist's: claimed again as it is, the fill and site just read.
                return await self._claimed(s, actor, fill.id, whole=True) if whole else Claimed(fill, site)
            if fill.state not in CLAIM.sources:
                raise Conflict(
                    f"This fill is {fill.state}; it is not waiting for verification.", code="not_queued"
                )
            await check_claim(s, self.compliance, actor, site, now, postgres=not self.db.is_sqlite)
            if taken := await self._take(s, actor, _CLAIM_ONE, _as_read(s, fill, now), whole=whole):
                return taken
            # The lease sweeper may have put this lapsed claim back in the queue since it was read:
            # that is no rival, so the fill is taken as it is now.
            await s.refresh(fill)
            if fill.state == FillState.QUEUED and (
                taken := await self._take(s, actor, _CLAIM_ONE, _as_read(s, fill, now), whole=whole)
            ):
                return taken
            raise Conflict("Another pharmacist is verifying this fill.", code="claimed_by_other")

    async def claim_next(self, actor: Principal, *, whole: bool = True) -> FillRecord | Claimed | None:
        """Claims the first fill in queue order (priority, then age) from the actor's licensed states;
        as claim() answers, or None when there is none to claim."""
        self._require(actor, CLAIM)
        if not actor.licensed_states:
            return None
        async with self.db.write() as s:
            now = self.clock()
            postgres = not self.db.is_sqlite
            # Only sites the pharmacist may take on without going over a state's limit of sites.
            sites = await claimable_sites(s, self.compliance, actor, now, postgres=postgres)
            params = {"now": now, "states": sorted(actor.licensed_states), "sites": sites}
            statement = _claim_first(postgres, limited=sites is not None)
            return await self._take(s, actor, statement, params, whole=whole)

    async def heartbeat(self, actor: Principal, fill_id: str) -> Fill:
        """Renews the actor's lease; a lease that has run out is lost. Not a transition: the state stays."""
        self._require(actor, CLAIM)  # the claim's holder renews it
        async with self.db.write() as s:
            fill, _ = await self._visible_fill(s, actor, fill_id)
            now = self.clock()
            if not await update_if(
                s,
                fill,
                [
                    Fill.state == FillState.IN_REVIEW,
                    Fill.claimed_by == actor.user_id,
                    Fill.lease_expires_at > now,
                ],
                {"lease_expires_at": now + dt.timedelta(seconds=self.config.lease_seconds)},
            ):
                raise Conflict("Your claim on this fill has lapsed.", code="lease_lost")
            return fill

    async def release(self, actor: Principal, fill_id: str) -> Fill:
        """Puts a fill the actor holds back in the queue."""
        self._require(actor, RELEASE)
        async with self.db.write() as s:
            fill, site = await self._visible_fill(s, actor, fill_id)
            if not await self._move(
                s,
                fill,
                RELEASE,
                [Fill.claimed_by == actor.user_id],
                {"claimed_by": None, "lease_expires_at": None},
            ):
                raise Conflict("You do not hold this fill.", code="not_holder")
            await self._announce(s, actor, RELEASE.action, fill, site, {"why": "released"})
            return fill

    async def decide(self, actor: Principal, fill_id: str, d: DecisionInput) -> tuple[Fill, Decision]:
        """Approves or rejects. Needs the lease and the current version: of two racing decisions one wins."""
        t = APPROVE if d.outcome == "approve" else REJECT
        self._require(actor, t)
        async with self.db.write() as s:
            fill, site = await self._visible_fill(s, actor, fill_id)
            now = self.clock()
            approved_as: dict[str, Any] = {}
            rx: Prescription | None = None
            if (
                t is APPROVE
                and fill.state in APPROVE.sources
                and fill.claimed_by == actor.user_id
                and fill.version == d.version
            ):
                # Checked against the fill as it is; a fill that changed since is refused below anyway.
                media = (await s.execute(MEDIA_OF_FILL, {"fill_id": fill.id})).scalars().all()
                check_approval(fill, media, d)
                rx = await s.get(Prescription, fill.prescription_id)
                if rx is not None and not self.db.is_sqlite:
                    # Of two approvals of the patient's drug at once, the second waits for the first,
                    # then finds its fill flagged by it (SQLite's one writer orders them already).
                    await lock_patient_drug(s, rx)
                check_count(await schedule_of(s, rx) if rx else None, fill, d.confirmed_count)
                # The product this fill is approved as: a later fill's reference photo is looked up by it.
                approved_as = {"approved_ndc": rx.expected_ndc} if rx else {}
            stepped_up: list[str] = []
            if fill.state in t.sources and fill.claimed_by == actor.user_id and fill.version == d.version:
                stepped_up = await self.confirm_identity(
                    s, actor, fill, site, approving=t is APPROVE, now=now
                )
            values: dict[str, Any] = {
                "decided_at": now,
                "claimed_by": None,
                "lease_expires_at": None,
                **await self._counselling_at_decision(s, fill, site, approving=t is APPROVE),
                **approved_as,
            }
            ok = await self._move(
                s,
                fill,
                t,
                [
                    Fill.claimed_by == actor.user_id,
                    Fill.version == d.version,
                    Fill.lease_expires_at > now,
                ],
                values,
            )
            if not ok:
                await s.refresh(fill)
                raise self._decision_conflict(fill, actor, d, now)
            flagged = await self._flag_refills_after(s, fill, rx, now) if t is APPROVE and rx else []
            license_number = await step_up.license_number(s, actor, site.state)
            decision = Decision(
                fill_id=fill.id,
                pharmacist_id=actor.user_id,
                license_state=site.state,
                license_number=license_number,
                outcome=d.outcome,
                reason_codes=list(d.reason_codes),
                note=d.note,
                acknowledgements=list(d.acknowledgements),
                views_seen=list(d.views_seen),
                confirmed_count=d.confirmed_count if t is APPROVE else None,
                decided_at=now,
            )
            s.add(decision)
            await s.flush()
            # A Schedule II approval's count, a number: the trail keeps what was confirmed.
            count = decision.confirmed_count
            confirmed = {} if count is None else {"confirmed_count": float(count)}
            await self._announce(
                s,
                actor,
                t.action,
                fill,
                site,
                {
                    "outcome": d.outcome,
                    "reason_codes": list(d.reason_codes),
                    "counselling": fill.counselling,
                },
                audit_only={
                    "decision_id": decision.id,
                    "pharmacist": actor.display_name,
                    "pharmacist_id": actor.user_id,
                    "license": {"state": site.state, "number": license_number},
                    "has_note": d.note is not None,
                    # What the pharmacist saw and acknowledged; notes stay in the decision.
                    "acknowledgements": [
                        {"flag": a["flag"], "reason": a["reason"], "has_note": a["note"] is not None}
                        for a in d.acknowledgements
                    ],
                    "views_seen": list(d.views_seen),
                    **confirmed,
                    # Why the pharmacist was asked to prove who they are again, when they were.
                    "step_up": stepped_up,
                },
            )
            for other, other_site in flagged:
                await self._announce(
                    s, None, FLAGGED, other, other_site, {"flag": FlagCode.REFILL_TOO_SOON},
                    audit_only={"previous_fill_id": fill.id},
                )  # fmt: skip
        if self.on_decided:
            self.on_decided(fill)
        return fill, decision

    async def _flag_refills_after(
        self, s: AsyncSession, approved: Fill, rx: Prescription, now: dt.datetime
    ) -> list[tuple[Fill, Site]]:
        """The patient's other open fills of the drug were queued before this approval, so their flags do
        not know of it: each is now a refill too soon (in place of a flag about an older fill) and takes
        its next version, so that a decision made on the fill as it was is refused as stale. The fills
        changed, for the caller to announce: their rows are locked here, before the journal's lock, as
        a claim of one of them takes its row and then the journal's."""
        flag = refill_too_soon(
            LastApproved(approved.id, now, rx.days_supply), now, self.config.refill_too_soon_percent
        )
        if flag is None:
            return []
        flagged = []
        for other, site in await open_of_patient_drug(s, approved, rx):
            flags = [f for f in other.flags or [] if f["code"] != FlagCode.REFILL_TOO_SOON]
            # The version as it is then: a claim or a heartbeat may have moved it since it was read.
            if await update_if(s, other, [IS_OPEN], {"flags": [*flags, flag], "version": Fill.version + 1}):
                flagged.append((other, site))
        return flagged

    async def _counselling_at_decision(
        self, s: AsyncSession, fill: Fill, site: Site, *, approving: bool
    ) -> dict[str, Any]:
        """A decided fill's counselling: an approved one's under the rules in force now (due or not
        required), a rejected one's not required (it is never handed out); a record made already (a
        video call during review) is kept as it is by the update itself."""
        values: dict[str, Any] = {}
        required = False
        if approving:
            rx = await s.get(Prescription, fill.prescription_id)
            required = rx is not None and self.compliance.counselling_required(site, rx.fill_type)
            values["counselling_required"] = required
        values["counselling"] = case(
            (Fill.counselling.in_(COUNSELLING_RECORDED), Fill.counselling),
            else_=literal(counselling_at_start(required).value),
        )
        return values

    # -- at the site, after the decision ---------------------------------------------------------

    async def hand_out(self, actor: Principal, fill_id: str) -> Fill:
        """The site hands an approved fill to the patient: only once its counselling is recorded where
        the rules in force require it. Handing out a fill handed out already changes nothing."""
        self._require(actor, HAND_OUT)
        async with self.db.write() as s:
            fill, site = await self._visible_fill(s, actor, fill_id)
            if fill.state == HAND_OUT.target:
                return fill
            if fill.state not in HAND_OUT.sources:
                raise Conflict(
                    f"This fill is {fill.state}: only an approved fill is handed to the patient.",
                    code="not_approved",
                    state=fill.state,
                )
            if fill.counselling == Counselling.DUE:
                raise self._counselling_due(site)
            now = self.clock()
            if not await self._move(
                s,
                fill,
                HAND_OUT,
                [
                    Fill.version == fill.version,
                    or_(Fill.counselling.is_(None), Fill.counselling != Counselling.DUE),
                ],
                {"handed_out_at": now, "handed_out_by": actor.user_id},
            ):
                raise Conflict("The fill changed meanwhile; look at it again.", code="stale_version")
            await self._announce(s, actor, HAND_OUT.action, fill, site, {"counselling": fill.counselling})
            return fill

    def _counselling_due(self, site: Site) -> Conflict:
        rules = self.compliance.rules_for(site)
        rule = rules["counselling_fills"] if rules else None
        return Conflict(
            "This fill cannot be handed out yet: the patient must be counselled first"
            + (f" ({rule.source})" if rule is not None and rule.source else "")
            + ". Ask the pharmacist for a counselling call"
            + (
                ", or record that the patient declined."
                if rules is not None and rules["counselling_may_decline"].value is True
                else "."
            ),
            code="counselling_due",
            source=rule.source if rule is not None else None,
        )

    async def confirm_identity(
        self, s: AsyncSession, actor: Principal, fill: Fill, site: Site, *, approving: bool, now: dt.datetime
    ) -> list[str]:
        """The step-up rule for a decision on this fill (server/security/step_up.py): overriding a
        product-check flag, approving a Schedule II drug (the drug reference's schedule for the
        prescribed NDC, else the prescription's), a site that requires a second factor, an old session."""
        rx = await s.get(Prescription, fill.prescription_id)
        schedules = [rx.dea_schedule if rx else None]
        if rx is not None and approving:
            known = (await reference.lookup(s, [rx.expected_ndc])).packages.get(rx.expected_ndc)
            if known is not None:
                schedules.append(known[1].dea_schedule)
        return await step_up.confirm_decision(
            s,
            actor,
            approving=approving,
            flag_codes=[f.get("code") for f in fill.flags or []],
            schedules=schedules,
            site_requires_factor=site.require_second_factor,
            now=now,
            after_seconds=self.config.step_up_after_seconds,
        )

    @staticmethod
    def _decision_conflict(fill: Fill, actor: Principal, d: DecisionInput, now: dt.datetime) -> Conflict:
        if fill.state in (*APPROVED_STATES, FillState.REJECTED):
            return Conflict("This fill has been decided already.", code="already_decided", state=fill.state)
        if fill.state != FillState.IN_REVIEW or fill.claimed_by != actor.user_id:
            return Conflict(
                "You no longer hold this fill: it was released or claimed by someone else.", code="lease_lost"
            )
        if fill.lease_expires_at is not None and fill.lease_expires_at <= now:
            return Conflict("Your claim on this fill has lapsed; open it again.", code="lease_lost")
        return Conflict(
            "The fill changed since you opened it; review it again.",
            code="stale_version",
            version=fill.version,
            your_version=d.version,
        )

    async def expire_leases(self) -> int:
        """Puts fills whose lease ran out back in the queue; returns how many."""
        now = self.clock()
        async with self.db.write() as s:
            rows = (
                await s.execute(
                    select(Fill, Site)
                    .join(Site, Site.id == Fill.site_id)
                    .where(IS_OPEN, state_is(*EXPIRE.sources), Fill.lease_expires_at <= now)
                    .limit(200)
                )
            ).all()
            n = 0
            for row in rows:
                fill = row.Fill
                holder = fill.claimed_by
                if await self._move(
                    s,
                    fill,
                    EXPIRE,
                    [Fill.version == fill.version, Fill.lease_expires_at <= now],
                    {"claimed_by": None, "lease_expires_at": None},
                ):
                    await self._announce(
                        s,
                        None,
                        EXPIRE.action,
                        fill,
                        row.Site,
                        {"why": "lease_expired", "previous_holder": holder},
                    )
                    n += 1
            return n
