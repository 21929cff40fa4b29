"""Step-up: a decision that needs it asks the pharmacist to prove who they are again, and the server
refuses it until they have (403 step_up_required, which the console answers with a prompt).

`confirm_decision` is the one rule for every decision a pharmacist signs (product verification of a
fill, data-entry verification of a prescription): called in the decision's transaction with what the
decision is about, it asks for a proof when overriding a product-check flag, approving Schedule II, a
site that requires a second factor, or a session whose last proof is older than the configured time.
A proof counts for one decision, within STEP_UP_VALID_SECONDS. `confirm` is the same check for other
changes that want a fresh proof (a second factor removed), with reasons of their own.

`outlook` reads, without using anything up, what the same check would ask of a decision made now, so
that the console asks for the proof when the pharmacist decides, before it holds the decision for Undo
(a held decision may be sent as the tab closes, when nobody is left to answer a prompt) or sends it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypedDict

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import ConsoleSession, License
from server.errors import DomainError, Forbidden
from server.security.principal import Principal
from server.security.second_factor import SecondFactors, methods_from, proof_columns

# What about a decision asks for a proof, in words the console shows.
REASONS = {
    "product_check": "you override a product-check flag",
    "schedule_ii": "this is a Schedule II controlled substance",
    "site_policy": "this site requires a second factor",
    "session_age": "your last sign-in or confirmation was a while ago",
    "account_change": "you change how you sign in",
}
# A step-up is used by the decision it was asked for; one left unused lapses after this.
STEP_UP_VALID_SECONDS = 300
SCHEDULE_II = "CII"
# The session's proofs and its person's second factors in one round trip: read with each open fill a
# pharmacist reads (outlook).
_SESSION_PROOFS = select(
    ConsoleSession.proved_at,
    ConsoleSession.factor_at,
    ConsoleSession.created_at,
    *proof_columns(ConsoleSession.user_id),
).where(ConsoleSession.id == bindparam("session_id"))


class StepUpRequired(DomainError):
    status = 403
    code = "step_up_required"


class DecisionFacts(TypedDict):
    """What about a decision asks for a proof, as confirm_decision and outlook take it."""

    flag_codes: Sequence[str]
    schedules: Sequence[str | None]
    site_requires_factor: bool


@dataclass(frozen=True)
class Outlook:
    """What a decision on a fill or a prescription would ask of the pharmacist, as of the session's
    proofs now."""

    # The reasons an approval and a rejection would need a proof for, besides the session's age.
    approve: list[str]
    reject: list[str]
    # From then on a decision also needs one for the session's age (session_age); None: never.
    stale_at: dt.datetime | None
    # The proofs that would do (as step_up_required lists them); none when the site's policy wants a
    # second factor and none is enrolled (the decision is refused until one is).
    methods: list[str]


def decision_reasons(
    *, approving: bool, flag_codes: Sequence[str], schedules: Sequence[str | None], site_requires_factor: bool
) -> list[str]:
    """What about a decision needs a proof, before the session's age is counted."""
    reasons = []
    if approving and "product_check" in flag_codes:
        reasons.append("product_check")
    if approving and SCHEDULE_II in schedules:
        reasons.append("schedule_ii")
    if site_requires_factor:
        reasons.append("site_policy")
    return reasons


async def license_number(s: AsyncSession, actor: Principal, state: str) -> str | None:
    """The licence a pharmacist signs a decision under: their number in the site's state."""
    return (
        await s.execute(
            select(License.number).where(License.user_id == actor.user_id, License.state == state)
        )
    ).scalar_one_or_none()


async def confirm_decision(
    s: AsyncSession,
    actor: Principal,
    *,
    approving: bool,
    flag_codes: Sequence[str],
    schedules: Sequence[str | None],
    site_requires_factor: bool,
    now: dt.datetime,
    after_seconds: float,
) -> list[str]:
    """confirm() for a decision: the reasons its facts give (decision_reasons), and the session's age."""
    reasons = decision_reasons(
        approving=approving,
        flag_codes=flag_codes,
        schedules=schedules,
        site_requires_factor=site_requires_factor,
    )
    return await confirm(s, actor, reasons, now=now, after_seconds=after_seconds)


async def outlook(
    s: AsyncSession,
    actor: Principal,
    *,
    flag_codes: Sequence[str],
    schedules: Sequence[str | None],
    site_requires_factor: bool,
    after_seconds: float,
) -> Outlook | None:
    """What confirm_decision would ask of an approval and of a rejection with these facts, read without
    using up a step-up; None outside a console session (no decision is made there)."""
    if actor.session_id is None:
        return None
    row = (await s.execute(_SESSION_PROOFS, {"session_id": actor.session_id})).first()
    if row is None:
        return None

    def wanted(approving: bool) -> list[str]:
        reasons = decision_reasons(
            approving=approving,
            flag_codes=flag_codes,
            schedules=schedules,
            site_requires_factor=site_requires_factor,
        )
        return _unanswered(reasons, row.factor_at)

    approve, reject = wanted(True), wanted(False)
    return Outlook(
        approve,
        reject,
        _stale_at(row.proved_at, row.created_at, after_seconds),
        _proofs([*approve, *reject], methods_from(row._mapping)),
    )


def _unanswered(reasons: Sequence[str], factor_at: dt.datetime | None) -> list[str]:
    """The reasons the session has not answered already: a second factor proved in it meets the site's
    policy."""
    return [r for r in reasons if r != "site_policy" or factor_at is None]


def _stale_at(
    proved_at: dt.datetime | None, started_at: dt.datetime, after_seconds: float
) -> dt.datetime | None:
    """When the session's last proof grows too old for a decision: TP_STEP_UP_AFTER_MINUTES after it,
    from its start for a session never proved, never (None) when the age is not counted."""
    if after_seconds <= 0:
        return None
    if proved_at is None:
        return started_at
    return proved_at + dt.timedelta(seconds=after_seconds)


def _proofs(wanted: Sequence[str], factors: list[str]) -> list[str]:
    """The proofs that answer `wanted`: the second factors where any is enrolled, else the password;
    none when the site's policy wants a second factor and none is enrolled."""
    if factors:
        return factors
    return [] if "site_policy" in wanted else ["password"]


async def confirm(
    s: AsyncSession, actor: Principal, reasons: Sequence[str], *, now: dt.datetime, after_seconds: float
) -> list[str]:
    """Checks, in the decision's transaction, that the actor proved who they are as `reasons` need;
    uses the step-up up and returns the reasons it answered (for the audit trail). Raises
    StepUpRequired (or Forbidden when a second factor is needed and none is enrolled) otherwise."""
    if actor.session_id is None:
        raise Forbidden("Decisions are made in the console, signed in as a person.")
    row = await s.get(ConsoleSession, actor.session_id)
    if row is None:
        raise Forbidden("Sign in again.")
    wanted = _unanswered(reasons, row.factor_at)
    stale_at = _stale_at(row.proved_at, row.created_at, after_seconds)
    if stale_at is not None and (row.proved_at is None or now > stale_at):
        wanted.append("session_age")
    if not wanted:
        return []
    methods = _proofs(wanted, await SecondFactors.methods_of(s, actor.user_id))
    if not methods:
        raise Forbidden(
            "This site's fills are decided with a second factor: enrol an authenticator or a security key.",
            code="enrol_second_factor",
        )
    stepped = row.stepped_up_at
    if stepped is not None and 0 <= (now - stepped).total_seconds() <= STEP_UP_VALID_SECONDS:
        used = await s.execute(
            update(ConsoleSession)
            .where(ConsoleSession.id == row.id, ConsoleSession.stepped_up_at == stepped)
            .values(stepped_up_at=None)
        )
        if used.rowcount:  # type: ignore[attr-defined]
            return wanted
    raise StepUpRequired(
        "Confirm it is you: " + "; ".join(REASONS[r] for r in wanted) + ".",
        reasons=wanted,
        methods=methods,
    )
