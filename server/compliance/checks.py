"""Where the state rules meet the work: creating a fill, its photos, claiming it, recording a call.

Each check asks the rules in force at the fill's site (its own rules, or its state's) and refuses with a
plain reason that names the rule. A value the sources do not settle (`unknown`) refuses nothing here,
except for recording, where an unsettled consent rule asks every party's consent: asking more consent
than a state needs breaks no rule, asking less might.

Supervising: a pharmacist supervises a site while they hold one of its fills in review under a live
lease, and for `supervision_minutes` after they decided one of its fills (the patient may still be at
the counter, the counselling still to come); server.fills.supervision reads those sites. A claim that
would make the pharmacist supervise more sites than the strictest limit among the states (or sites)
involved is refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.compliance.forms import form_group
from server.compliance.rules import SCHEDULES, RuleBook, RulesError, Sourced, StateRules
from server.db.engine import Database
from server.db.models import Prescription, Site
from server.errors import Conflict, Forbidden
from server.evidence.kinds import MediaKind
from server.reference.store import lookup

# The views that belong to one dosage form group: a site's own list of required views adds only those
# that fit the prescription's form (no counted pills for a liquid).
_FORM_VIEWS = {
    "tablet_capsule": frozenset({MediaKind.PILLS, MediaKind.VIAL_LABEL}),
    "liquid": frozenset({MediaKind.MEASURED_VOLUME, MediaKind.BOTTLE_LABEL}),
}


@dataclass(frozen=True)
class SupervisedSite:
    id: int
    code: str
    state: str


@dataclass(frozen=True)
class Limit:
    """The strictest limit of sites at once among a set of sites: the number and whose rule it is."""

    sites: int
    rules: StateRules


@dataclass(frozen=True)
class Option:
    """Whether one way of recording counselling is allowed at a site, and if not, why (naming the rule)."""

    allowed: bool
    why: str | None
    source: str | None


@dataclass(frozen=True)
class CounsellingOptions:
    """What may be recorded on a fill due counselling at a site, besides a video call."""

    decline: Option
    phone: Option


def cited(rule: Sourced[Any]) -> str:
    """Where a rule's value comes from: a site's own reason where the site set it, else its source."""
    if rule.site:
        return f"the site's own rule: {rule.site}"
    return rule.source or "no source named"


class Compliance:
    """The rule book and the checks that use it; one per application."""

    def __init__(self, book: RuleBook, *, supervision_minutes: float = 30.0) -> None:
        self.book = book
        self.window = dt.timedelta(minutes=supervision_minutes)
        # Whether any state or site limits the sites at once: without one, claims skip the question.
        self.limits = any(
            r["max_sites_per_pharmacist"].known for r in (*book.states.values(), *book.sites.values())
        )

    def rules_for(self, site: Site) -> StateRules | None:
        return self.book.for_site(site.code, site.state)

    async def check_sites(self, db: Database) -> None:
        """RulesError when a site's own rules name another state than the site is in: its rules would
        never apply (a site not created yet is fine: its rules apply once it is)."""
        if not self.book.sites:
            return
        async with db.read() as s:
            rows = (
                await s.execute(select(Site.code, Site.state).where(Site.code.in_(sorted(self.book.sites))))
            ).all()
        for code, state in rows:
            named = self.book.sites[code].code
            if named != state:
                raise RulesError(
                    f"site rules for {code}: state = {named!r}, but the site {code} is in {state}; "
                    "correct the site rules file"
                )

    # -- creating a fill ----------------------------------------------------------------------------

    async def check_new_fill(self, s: AsyncSession, site: Site, rx: Prescription) -> None:
        """Forbidden when the site's rules do not let it dispense this prescription."""
        rules = self.rules_for(site)
        if rules is None:
            return
        allowed = rules["telepharmacy_allowed"]
        if allowed.value is False:
            raise Forbidden(
                f"{rules.name} does not allow dispensing at a remote telepharmacy site ({allowed.source}).",
                code="telepharmacy_not_allowed",
            )
        permitted = rules["schedules_allowed"]
        allowed_schedules: frozenset[str] | None = permitted.value
        if allowed_schedules is None:
            return
        schedule = await schedule_of(s, rx)
        if schedule is not None and schedule not in allowed_schedules:
            names = ", ".join(x for x in SCHEDULES if x in allowed_schedules) or "no controlled substances"
            raise Forbidden(
                f"A Schedule {schedule[1:]} prescription cannot be filled at this site: the rules in force "
                f"({rules.name}) allow {names} at a remote site ({permitted.source}).",
                code="schedule_not_allowed",
                schedule=schedule,
                source=permitted.source,
            )

    # -- the photos a fill needs --------------------------------------------------------------------

    def required_photos(self, site: Site, rx: Prescription, site_views: tuple[str, ...]) -> tuple[str, ...]:
        """The views a fill of this prescription needs at this site: its dosage form's under the rules in
        force, and those of the site's own list that fit the form."""
        group = form_group(rx.dosage_form)
        views = list(self.book.photos(self.rules_for(site), group))
        foreign = frozenset().union(*(v for g, v in _FORM_VIEWS.items() if g != group))
        views += [k for k in site_views if k not in views and k not in foreign]
        return tuple(views)

    # -- claiming a fill ----------------------------------------------------------------------------

    def _tighter(self, limit: Limit | None, site: SupervisedSite) -> Limit | None:
        """The stricter of `limit` and the site's own limit of sites (the earlier one on a tie)."""
        rules = self.book.for_site(site.code, site.state)
        value = rules["max_sites_per_pharmacist"].value if rules else None
        if value is not None and rules is not None and (limit is None or value < limit.sites):
            return Limit(value, rules)
        return limit

    def limit_of(self, sites: list[SupervisedSite]) -> Limit | None:
        tightest: Limit | None = None
        for site in sites:
            tightest = self._tighter(tightest, site)
        return tightest

    def over_limit(self, supervised: list[SupervisedSite], site: SupervisedSite) -> Limit | None:
        """The limit a claim at `site` would break, or None."""
        return self._over({x.id for x in supervised}, self.limit_of(supervised), site)

    def _over(self, held: set[int], current: Limit | None, site: SupervisedSite) -> Limit | None:
        # `held`: the ids of the sites supervised now; `current`: their limit_of, worked out once for
        # every site a claim could be at.
        if site.id in held:
            return None
        limit = self._tighter(current, site)
        return limit if limit is not None and len(held) + 1 > limit.sites else None

    def check_claim(self, supervised: list[SupervisedSite], site: SupervisedSite) -> None:
        """Conflict when claiming a fill of `site` would put the pharmacist over a limit of sites."""
        limit = self.over_limit(supervised, site)
        if limit is None:
            return
        rule = limit.rules["max_sites_per_pharmacist"]
        raise Conflict(
            f"Claiming this fill would have you supervise {len(supervised) + 1} remote sites at once; the "
            f"rules of {limit.rules.name} allow {limit.sites} ({rule.source}). You supervise "
            f"{', '.join(x.code for x in supervised)} now: finish or release their fills first (a decided "
            f"fill counts for {int(self.window.total_seconds() // 60)} minutes).",
            code="supervision_limit",
            limit=limit.sites,
            supervising=[x.code for x in supervised],
            source=rule.source,
        )

    def _least_limit(self, states: Iterable[str]) -> int | None:
        """The smallest limit of sites any site of these states has (its state's, or its own); None
        when none of them limits."""
        wanted = set(states)
        rules = [self.book.states[x] for x in wanted if x in self.book.states]
        rules += [r for r in self.book.sites.values() if r.code in wanted]
        limits = [r["max_sites_per_pharmacist"].value for r in rules]
        return min((x for x in limits if x is not None), default=None)

    def all_claimable(self, supervised: list[SupervisedSite], states: Iterable[str]) -> bool:
        """Whether every site of these states may be claimed without going over a limit, known without
        listing the sites: one more site stays within the tightest limit any of them, or of the sites
        supervised now, could have."""
        current = self.limit_of(supervised)
        limits = [x for x in (self._least_limit(states), current.sites if current else None) if x is not None]
        return not limits or len({x.id for x in supervised}) + 1 <= min(limits)

    def claimable(self, supervised: list[SupervisedSite], sites: list[SupervisedSite]) -> list[int] | None:
        """Of `sites`, those the pharmacist may take a fill of without going over a limit; None when all."""
        held, current = {x.id for x in supervised}, self.limit_of(supervised)
        allowed = [x.id for x in sites if self._over(held, current, x) is None]
        return None if len(allowed) == len(sites) else allowed

    # -- counselling ---------------------------------------------------------------------------------

    def counselling_required(self, site: Site, fill_type: str) -> bool:
        """Whether the rules in force require counselling (given or offered) on a fill of this type
        before it is handed out. An unknown rule requires nothing: the server does not invent a duty
        the sources do not settle (a site that knows better says so in its own rules)."""
        rules = self.rules_for(site)
        fills: frozenset[str] | None = rules["counselling_fills"].value if rules else None
        return bool(fills) and fill_type in (fills or ())

    def counselling_options(self, site: Site) -> CounsellingOptions:
        """What the rules in force let be recorded on a fill due counselling besides a video call: the
        patient's decline (only where a rule allows it; unknown does not) and a telephone call (not where
        counselling is by video), each with why not."""
        rules = self.rules_for(site)
        name = rules.name if rules else f"the state {site.state}"
        decline = rules["counselling_may_decline"] if rules else None
        if decline is not None and decline.value is True:
            declining = Option(True, None, cited(decline))
        elif decline is not None and decline.value is False:
            why = f"The rules of {name} do not let the patient decline counselling ({cited(decline)})."
            declining = Option(False, why, cited(decline))
        else:
            duty = rules["counselling_fills"] if rules else None
            required = (
                f"{name} requires counselling ({cited(duty)})"
                if duty is not None and duty.known
                else f"Counselling is required at this site under the rules of {name}"
            )
            declining = Option(False, f"{required}, and no rule read lets the patient decline it.", None)
        video = rules["counselling_by_video"] if rules else None
        if video is not None and video.value is True:
            phone = Option(
                False,
                f"Counselling by telephone does not count at this site: the rules of {name} say the "
                f"pharmacist counsels by audio and video ({cited(video)}). Counsel the patient in a video "
                "call from the fill.",
                cited(video),
            )
        else:
            phone = Option(True, None, None)
        return CounsellingOptions(declining, phone)

    def check_decline(self, site: Site) -> None:
        """Forbidden unless the rules in force let the patient decline counselling."""
        declining = self.counselling_options(site).decline
        if declining.allowed:
            return
        raise Forbidden(
            f"Declined counselling cannot be recorded at this site. {declining.why} The pharmacist "
            "counsels the patient before the fill is handed out.",
            code="decline_not_allowed",
            rule="counselling_may_decline",
            source=declining.source,
        )

    def check_by_phone(self, site: Site) -> None:
        """Forbidden when the rules in force say counselling is by video, so a telephone call does not
        count."""
        phone = self.counselling_options(site).phone
        if phone.allowed:
            return
        raise Forbidden(
            phone.why or "Counselling by telephone does not count at this site.",
            code="video_required",
            rule="counselling_by_video",
            source=phone.source,
        )

    # -- recording a call ---------------------------------------------------------------------------

    def recording_consent(self, site: Site) -> tuple[bool, str]:
        """(whether recording needs every party's consent at this site, why)."""
        rules = self.rules_for(site)
        rule = rules["recording_consent"] if rules else None
        if rule is None or not rule.known:
            return True, "the consent rule for this state is not settled by the sources read"
        return rule.value == "all_party", f"{rule.source}"


async def schedule_of(s: AsyncSession, rx: Prescription) -> str | None:
    """The prescription's DEA schedule: the stricter of the one it carries and the drug reference's for
    its NDC (a reference loaded after the prescription was entered still counts)."""
    found = await lookup(s, [rx.expected_ndc])
    entry = found.packages.get(rx.expected_ndc)
    reference = entry[1].dea_schedule if entry else None
    known = [x for x in (rx.dea_schedule, reference) if x in SCHEDULES]
    return min(known, key=SCHEDULES.index) if known else None
