"""The life of a consultation: requested by a site, accepted by one licensed pharmacist, ended by either.

Every change is a conditional update plus an audit event and a realtime event in one transaction.
Realtime events carry ids and states only: they reach every pharmacist of the site's state.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.compliance.checks import Compliance
from server.db.conditional import update_if
from server.db.engine import Database
from server.db.models import Consultation, Fill, Media, Prescription, Site, utcnow
from server.errors import Conflict, Forbidden, InvalidInput, NotFound
from server.evidence.kinds import CONSULTATION_RECORDING
from server.keyset import Keyset, Page
from server.realtime import journal
from server.security.principal import Principal, Role

REQUESTED = "requested"
ACCEPTED = "accepted"
ENDED = "ended"
OPEN_STATES = (REQUESTED, ACCEPTED)
CONSULTATIONS_ORDER = Keyset("consultations", [(Consultation.id, int)])
KINDS = ("counsel", "live_look")
# "dropped": a party's live connection closed; "reconnect_failed": the media path dropped and could
# not be re-established within the recovery window; "declined": a pharmacist turned the request down,
# saying why in the note (which the site that asked reads).
END_REASONS = (
    "hangup",
    "cancelled",
    "unanswered",
    "timeout",
    "dropped",
    "failed",
    "reconnect_failed",
    "declined",
)
MAX_NOTE = 2000
# The media kind of a consultation's recording (an mp4 with its audio, recorded with consent).
RECORDING_KIND = CONSULTATION_RECORDING

EndListener = Callable[[Consultation], Awaitable[None]]


class CallOutcomes(Protocol):
    """What a call's end means beyond the call, written in the transaction that ends it (a counselling
    call becomes the fill's counselling record: server.counselling)."""

    async def call_ended(
        self, s: AsyncSession, actor: Principal | None, c: Consultation, site: Site
    ) -> None: ...

    async def note_added(self, s: AsyncSession, actor: Principal, c: Consultation, site: Site) -> None: ...


def event_payload(c: Consultation) -> dict[str, Any]:
    """A realtime event about a consultation: ids and state only."""
    return {
        "consultation_id": c.id,
        "site_id": c.site_id,
        "kind": c.kind,
        "state": c.state,
        "version": c.version,
        "pharmacist_id": c.pharmacist_id,
        "end_reason": c.end_reason,
        "duration_seconds": c.duration_seconds,
    }


class ConsultationService:
    def __init__(
        self,
        db: Database,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
        compliance: Compliance | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        # Whose consent a recording needs, by the state of the consultation's site.
        self.compliance = compliance
        # Called after a consultation ended (committed): the signalling relay tells both parties.
        self.on_ended: list[EndListener] = []
        # Told inside the ending transaction: the counselling records.
        self.outcomes: CallOutcomes | None = None

    async def _visible(
        self, s: AsyncSession, actor: Principal, consultation_id: int
    ) -> tuple[Consultation, Site]:
        row = (
            await s.execute(
                select(Consultation, Site)
                .join(Site, Site.id == Consultation.site_id)
                .where(Consultation.id == consultation_id)
            )
        ).first()
        if row is None or not actor.may_see_site(row.Site.id, row.Site.state):
            raise NotFound("No such consultation.")
        return row.Consultation, row.Site

    async def _announce(
        self,
        s: AsyncSession,
        actor: Principal | None,
        action: str,
        c: Consultation,
        site: Site,
        **detail: Any,
    ) -> None:
        await audit.append(
            self.db,
            s,
            actor,
            action,
            "consultation",
            c.id,
            {"state": c.state, "version": c.version, "site_id": c.site_id, **detail},
            at=self.clock(),
        )
        await journal.record(
            self.db, s, action, site_id=site.id, us_state=site.state, payload=event_payload(c)
        )

    async def _conditional(
        self, s: AsyncSession, c: Consultation, where: list[Any], values: dict[str, Any]
    ) -> bool:
        return await update_if(s, c, where, {"version": Consultation.version + 1, **values})

    async def request(self, actor: Principal, body: dict[str, Any]) -> tuple[Consultation, Site]:
        """A site asks for a pharmacist: counselling (optionally on a prescription or fill) or a live look."""
        if actor.role is not Role.TECHNICIAN or actor.site_id is None:
            raise Forbidden("Only a site asks for a consultation.")
        kind = body.get("kind", "counsel")
        if kind not in KINDS:
            raise InvalidInput(f"The kind must be one of {', '.join(KINDS)}.")
        consent = body.get("recording_consent", False)
        if not isinstance(consent, bool):
            raise InvalidInput("recording_consent is true or false.")
        async with self.db.write() as s:
            site = await s.get(Site, actor.site_id)
            if site is None:
                raise NotFound("No such site.")
            rx_id, fill_id = await self._links(s, site, body)
            now = self.clock()
            c = Consultation(
                site_id=site.id,
                prescription_id=rx_id,
                fill_id=fill_id,
                kind=kind,
                state=REQUESTED,
                version=1,
                requested_by=actor.user_id,
                requested_at=now,
                recording_consent=consent,
                recording=None,  # loaded as "none yet", so the view can be built after the session
            )
            s.add(c)
            await s.flush()
            await self._announce(s, actor, "consultation.requested", c, site)
            return c, site

    async def _links(
        self, s: AsyncSession, site: Site, body: dict[str, Any]
    ) -> tuple[int | None, str | None]:
        rx_id: int | None = None
        fill_id: str | None = None
        if body.get("fill_id") is not None:
            fill = await s.get(Fill, str(body["fill_id"]))
            if fill is None or fill.site_id != site.id:
                raise NotFound("No such fill at this site.")
            fill_id, rx_id = fill.id, fill.prescription_id
        if body.get("prescription_id") is not None:
            try:
                wanted = int(body["prescription_id"])
            except (TypeError, ValueError) as exc:
                raise InvalidInput("prescription_id is a number.") from exc
            rx = await s.get(Prescription, wanted)
            if rx is None or rx.site_id != site.id or (rx_id is not None and rx_id != rx.id):
                raise NotFound("No such prescription at this site.")
            rx_id = rx.id
        return rx_id, fill_id

    async def invite(self, actor: Principal, body: dict[str, Any]) -> tuple[Consultation, Site]:
        """A pharmacist verifying a fill asks its site for counselling or a live look at the tray.

        The consultation starts accepted by the asking pharmacist; the site's kiosk (any device of that
        site) answers it. The fill and its prescription are linked on the record.
        """
        if actor.role is not Role.PHARMACIST:
            raise Forbidden("Only a pharmacist asks a site for a consultation.")
        kind = body.get("kind", "counsel")
        if kind not in KINDS:
            raise InvalidInput(f"The kind must be one of {', '.join(KINDS)}.")
        if not isinstance(body.get("fill_id"), str):
            raise InvalidInput("fill_id is required.")
        async with self.db.write() as s:
            fill = await s.get(Fill, body["fill_id"])
            site = await s.get(Site, fill.site_id) if fill is not None else None
            if fill is None or site is None or not actor.may_see_site(site.id, site.state):
                raise NotFound("No such fill.")
            if site.state not in actor.licensed_states:
                raise Forbidden("You are not licensed in this site's state.", code="not_licensed")
            c = Consultation(
                site_id=site.id,
                prescription_id=fill.prescription_id,
                fill_id=fill.id,
                kind=kind,
                state=ACCEPTED,
                version=1,
                requested_by=actor.user_id,
                pharmacist_id=actor.user_id,
                requested_at=self.clock(),
                recording_consent=False,
                recording=None,
            )
            s.add(c)
            await s.flush()
            await self._announce(s, actor, "consultation.invited", c, site, fill_id=fill.id)
            return c, site

    @staticmethod
    def is_site_party(c: Consultation, actor: Principal) -> bool:
        """The site's side: the device that asked, or, when a pharmacist asked, any device of the site."""
        if actor.role is not Role.TECHNICIAN or actor.site_id != c.site_id:
            return False
        return actor.user_id == c.requested_by or c.requested_by == c.pharmacist_id

    async def answer(self, actor: Principal, consultation_id: int) -> tuple[Consultation, Site]:
        """The site's kiosk answers a pharmacist's invitation (once)."""
        async with self.db.write() as s:
            c, site = await self._visible(s, actor, consultation_id)
            if not self.is_site_party(c, actor) or c.requested_by != c.pharmacist_id:
                raise Forbidden("Only the invited site answers.")
            won = await self._conditional(
                s,
                c,
                [Consultation.state == ACCEPTED, Consultation.answered_at.is_(None)],
                {"answered_at": self.clock()},
            )
            if not won:
                raise Conflict("The invitation was answered or ended already.", code="consultation_taken")
            await self._announce(s, actor, "consultation.answered", c, site)
            return c, site

    async def consent_to_recording(self, actor: Principal, consultation_id: int) -> Consultation:
        """A party records consent to recording, before the site starts it (stamped once, audited): the
        site's side records the patient's, the pharmacist who took the call their own. A state that needs
        every party's consent gets both before a recording is accepted."""
        async with self.db.write() as s:
            c, _ = await self._visible(s, actor, consultation_id)
            pharmacist = actor.role is Role.PHARMACIST and actor.user_id == c.pharmacist_id
            if not self.is_site_party(c, actor) and not pharmacist:
                raise Forbidden("Only the site's side and the pharmacist on the call record consent.")
            stamp = Consultation.pharmacist_consent_at if pharmacist else Consultation.recording_consent_at
            if (c.pharmacist_consent_at if pharmacist else c.recording_consent_at) is not None:
                return c
            if c.state not in OPEN_STATES:
                raise Conflict("The consultation has ended.", code="consultation_ended")
            now = self.clock()
            values: dict[str, Any] = (
                {"pharmacist_consent_at": now}
                if pharmacist
                else {"recording_consent": True, "recording_consent_at": now}
            )
            await self._conditional(s, c, [stamp.is_(None)], values)
            await audit.append(
                self.db,
                s,
                actor,
                "consultation.recording_consent",
                "consultation",
                c.id,
                {"party": "pharmacist" if pharmacist else "patient"},
                at=now,
            )
            return c

    @classmethod
    def is_party_or_admin(cls, c: Consultation, actor: Principal) -> bool:
        """The call's two parties (the site's side, the pharmacist who took the call) and admins."""
        return actor.role is Role.ADMIN or actor.user_id == c.pharmacist_id or cls.is_site_party(c, actor)

    @classmethod
    def may_see_recording(cls, c: Consultation, site: Site, actor: Principal) -> bool:
        """The recording is for the two parties and admins; each still only while they may see the site."""
        return actor.may_see_site(site.id, site.state) and cls.is_party_or_admin(c, actor)

    @classmethod
    def may_read_note(cls, c: Consultation, actor: Principal) -> bool:
        """The outcome note is what the pharmacist said of the patient's call: like the recording, for
        the two parties and admins. Others who may see the consultation see that it exists, not the note.

        Only for a consultation the actor was given by this service, which checked they may see the site.
        """
        return cls.is_party_or_admin(c, actor)

    def _recording_rule(self, c: Consultation, site: Site, actor: Principal, sha256: str) -> Media | None:
        """Who may deliver a recording, and when: the site's side, with consent recorded (every party's
        where the site's state needs it), once.

        Returns the stored recording when it is this very file (a retried delivery), else None.
        """
        if not self.is_site_party(c, actor):
            raise Forbidden("Only the site's side uploads the recording.")
        if not c.recording_consent or c.recording_consent_at is None:
            raise Conflict(
                "The patient's consent to recording was not recorded on this consultation: "
                "the recording is refused.",
                code="no_consent",
            )
        every_party, why = self.compliance.recording_consent(site) if self.compliance else (False, "")
        if every_party and c.pharmacist_consent_at is None:
            raise Conflict(
                "Recording this call needs every party's consent at this site, and the pharmacist's was "
                f"not recorded: the recording is refused ({why}).",
                code="no_consent",
                missing="pharmacist",
            )
        if c.recording is None:
            return None
        if c.recording.sha256 == sha256:
            return c.recording
        raise Conflict(
            "A different recording of this consultation was stored already.", code="recording_exists"
        )

    async def authorize_recording(self, actor: Principal, consultation_id: int, sha256: str) -> Media | None:
        """Refuses a recording that could never be stored; returns the stored one when it is this file."""
        async with self.db.read() as s:
            c, site = await self._visible(s, actor, consultation_id)
            return self._recording_rule(c, site, actor, sha256)

    async def attach_recording(self, actor: Principal, consultation_id: int, media: Media) -> Media:
        """Records stored, verified media as the consultation's recording; the same file again is the
        same media (idempotent), audited once."""
        async with self.db.write() as s:
            c, site = await self._visible(s, actor, consultation_id)
            same = self._recording_rule(c, site, actor, media.sha256)
            if same is not None:
                return same
            # Taken first, so of two deliveries racing on PostgreSQL the second waits here, then finds it.
            if not await self._conditional(s, c, [Consultation.recording_media_id.is_(None)], {}):
                await s.refresh(c)
                same = self._recording_rule(c, site, actor, media.sha256)
                if same is None:
                    raise Conflict("The consultation changed meanwhile; deliver it again.", code="busy")
                return same
            media.consultation_id = c.id
            media.created_at = self.clock()
            s.add(media)
            await s.flush()
            await update_if(s, c, [], {"recording_media_id": media.id})
            await s.refresh(c, ["recording"])
            await audit.append(
                self.db,
                s,
                actor,
                "consultation.recording",
                "consultation",
                c.id,
                {"media_id": media.id, "sha256": media.sha256, "bytes": media.bytes},
                at=self.clock(),
            )
            return media

    async def recording_of(self, actor: Principal, consultation_id: int) -> Media:
        """The recording's media, for those who may see it."""
        async with self.db.read() as s:
            c, site = await self._visible(s, actor, consultation_id)
            if not self.may_see_recording(c, site, actor):
                raise NotFound("No such recording.")
            if c.recording is None:
                raise NotFound("No recording was delivered.")
            return c.recording

    async def get(self, actor: Principal, consultation_id: int) -> tuple[Consultation, Site]:
        async with self.db.read() as s:
            return await self._visible(s, actor, consultation_id)

    async def list_open(
        self, actor: Principal, *, after: tuple[Any, ...] | None = None, limit: int = 200
    ) -> Page[tuple[Consultation, Site]]:
        """A page of the open consultations the caller may see, oldest first (a console starting up shows
        waiting requests)."""
        async with self.db.read() as s:
            q = select(Consultation, Site).join(Site, Site.id == Consultation.site_id)
            q = q.where(Consultation.state.in_(OPEN_STATES)).order_by(Consultation.id)
            if actor.role is Role.TECHNICIAN:
                q = q.where(Consultation.site_id == actor.site_id)
            elif actor.role is Role.PHARMACIST:
                q = q.where(Site.state.in_(sorted(actor.licensed_states)))
                q = q.where(or_(Consultation.state == REQUESTED, Consultation.pharmacist_id == actor.user_id))
            if after is not None:
                q = q.where(CONSULTATIONS_ORDER.after(after))
            rows = (await s.execute(q.limit(limit + 1))).all()
        page = CONSULTATIONS_ORDER.page(rows, limit, lambda r: (r.Consultation.id,))
        return Page([(r.Consultation, r.Site) for r in page.rows], page.next)

    async def accept(self, actor: Principal, consultation_id: int) -> tuple[Consultation, Site]:
        """One licensed pharmacist answers; the conditional update makes sure only one wins."""
        if actor.role is not Role.PHARMACIST:
            raise Forbidden("Only a pharmacist answers a consultation.")
        async with self.db.write() as s:
            c, site = await self._visible(s, actor, consultation_id)
            if site.state not in actor.licensed_states:
                raise Forbidden("You are not licensed in this site's state.", code="not_licensed")
            won = await self._conditional(
                s,
                c,
                [Consultation.state == REQUESTED],
                {"state": ACCEPTED, "pharmacist_id": actor.user_id, "answered_at": self.clock()},
            )
            if not won:
                raise Conflict("Another pharmacist answered, or the site hung up.", code="consultation_taken")
            await self._announce(s, actor, "consultation.accepted", c, site)
            return c, site

    async def mark_connected(self, actor: Principal, consultation_id: int) -> Consultation:
        """The first party to see media flowing stamps the connection time (once)."""
        async with self.db.write() as s:
            c, _ = await self._visible(s, actor, consultation_id)
            if actor.user_id not in (c.requested_by, c.pharmacist_id) and not self.is_site_party(c, actor):
                raise Forbidden("Only the two parties report the connection.")
            if await self._conditional(
                s,
                c,
                [Consultation.state == ACCEPTED, Consultation.connected_at.is_(None)],
                {"connected_at": self.clock()},
            ):
                await audit.append(
                    self.db, s, actor, "consultation.connected", "consultation", c.id, {}, at=self.clock()
                )
            return c

    async def mark_reconnected(self, actor: Principal, consultation_id: int) -> Consultation:
        """The site re-established the media path inside the call: counted on the record and audited.

        The site reports it because the site is the side that re-offers (remote_site_client/consult.py).
        """
        async with self.db.write() as s:
            c, _ = await self._visible(s, actor, consultation_id)
            if not self.is_site_party(c, actor):
                raise Forbidden("Only the site's side reports a reconnection.")
            if not await self._conditional(
                s,
                c,
                [Consultation.state == ACCEPTED, Consultation.connected_at.is_not(None)],
                {"reconnections": Consultation.reconnections + 1},
            ):
                raise Conflict("The call is not connected, or it has ended.", code="consultation_ended")
            await audit.append(
                self.db,
                s,
                actor,
                "consultation.reconnected",
                "consultation",
                c.id,
                {"reconnections": c.reconnections},
                at=self.clock(),
            )
            return c

    async def end(
        self, actor: Principal | None, consultation_id: int, reason: str, note: str | None = None
    ) -> Consultation:
        """Either party (or the server, actor None) ends it, or a pharmacist declines a request; ending
        an ended consultation changes nothing."""
        if reason not in END_REASONS:
            raise InvalidInput(f"The reason must be one of {', '.join(END_REASONS)}.")
        if note is not None and (not isinstance(note, str) or len(note) > MAX_NOTE):
            raise InvalidInput(f"The note must be text of at most {MAX_NOTE} characters.")
        if reason == "declined":
            c, ended_now = await self._decline(actor, consultation_id, note), True
        else:
            c, ended_now = await self._hang_up(actor, consultation_id, reason, note)
        if ended_now:
            for listener in list(self.on_ended):
                await listener(c)
        return c

    async def _hang_up(
        self, actor: Principal | None, consultation_id: int, reason: str, note: str | None
    ) -> tuple[Consultation, bool]:
        """Ends the call; (the consultation, whether this call ended it)."""
        c: Consultation
        site: Site
        async with self.db.write() as s:
            if actor is None:
                row = (
                    await s.execute(
                        select(Consultation, Site)
                        .join(Site, Site.id == Consultation.site_id)
                        .where(Consultation.id == consultation_id)
                    )
                ).first()
                if row is None:
                    raise NotFound("No such consultation.")
                c, site = row.Consultation, row.Site
            else:
                c, site = await self._visible(s, actor, consultation_id)
                party = actor.user_id in (c.requested_by, c.pharmacist_id)
                same_site = actor.role is Role.TECHNICIAN and actor.site_id == c.site_id
                if actor.role is not Role.ADMIN and not party and not same_site:
                    raise Forbidden("Only the two parties end a consultation.")
            if c.state == ENDED:
                if note and actor is not None and actor.user_id == c.pharmacist_id and not c.outcome_note:
                    await self._conditional(
                        s, c, [Consultation.state == ENDED], {"outcome_note": note.strip()}
                    )
                    await audit.append(
                        self.db, s, actor, "consultation.note", "consultation", c.id, {}, at=self.clock()
                    )
                    if self.outcomes is not None:
                        await self.outcomes.note_added(s, actor, c, site)
                return c, False
            now = self.clock()
            start = c.connected_at or c.answered_at
            duration = max(0.0, (now - start).total_seconds()) if start else 0.0
            values: dict[str, Any] = {
                "state": ENDED,
                "ended_at": now,
                "duration_seconds": round(duration, 3),
                "end_reason": reason,
                "ended_by": actor.user_id if actor else None,
            }
            if note and actor is not None and actor.user_id == c.pharmacist_id:
                values["outcome_note"] = note.strip()
            if not await self._conditional(s, c, [Consultation.state.in_(OPEN_STATES)], values):
                await s.refresh(c)
                return c, False
            await self._announce(
                s, actor, "consultation.ended", c, site, reason=reason, duration=c.duration_seconds
            )
            if self.outcomes is not None:
                await self.outcomes.call_ended(s, actor, c, site)
        return c, True

    async def _decline(self, actor: Principal | None, consultation_id: int, note: str | None) -> Consultation:
        """A pharmacist who may take the request turns it down, with a reason the site reads."""
        if actor is None or actor.role is not Role.PHARMACIST:
            raise Forbidden("Only a pharmacist declines a consultation request.")
        if not note or not note.strip():
            raise InvalidInput("Declining needs a note saying why, for the site that asked.")
        async with self.db.write() as s:
            c, site = await self._visible(s, actor, consultation_id)
            values: dict[str, Any] = {
                "state": ENDED,
                "ended_at": self.clock(),
                "duration_seconds": 0.0,
                "end_reason": "declined",
                "ended_by": actor.user_id,
                "pharmacist_id": actor.user_id,
                "outcome_note": note.strip(),
            }
            if not await self._conditional(s, c, [Consultation.state == REQUESTED], values):
                raise Conflict(
                    "This request was answered or ended already.", code="consultation_not_requested"
                )
            await self._announce(s, actor, "consultation.ended", c, site, reason="declined", duration=0.0)
            return c
