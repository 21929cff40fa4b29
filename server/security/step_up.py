"""Step-up: a decision that needs it asks the pharmacist to prove who they are again, and the server
refuses it until they have (403 step_up_required, which the console answers with a prompt).

`confirm_decision` is the one rule for every decision a pharmacist signs (product verification of a
fill, data-entry verification of a prescription): called in the decision's transaction with what the
decision is about, it asks for a proof when overriding a product-check flag, approving Schedule II, a
site that requires a second factor, or a session whose last proof is older than the configured time.
A proof counts for one decision, within STEP_UP_VALID_SECONDS. `confirm` is the same check for other
changes that want a fresh proof (a second factor removed), with reasons of their own.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.models import ConsoleSession, License
from server.errors import DomainError, Forbidden
from server.security.principal import Principal
from server.security.second_factor import SecondFactors

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


class StepUpRequired(DomainError):
    status = 403
    code = "step_up_required"


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
    wanted = [r for r in reasons if r != "site_policy" or row.factor_at is None]
    if after_seconds > 0 and (row.proved_at is None or (now - row.proved_at).total_seconds() > after_seconds):
        wanted.append("session_age")
    if not wanted:
        return []
    methods = await SecondFactors.methods_of(s, actor.user_id)
    if "site_policy" in wanted and not methods:
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
        methods=methods or ["password"],
    )
