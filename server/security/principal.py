"""The authenticated caller and the visibility rules that follow from their role."""

from __future__ import annotations

import datetime as dt
import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)


class Role(enum.StrEnum):
    TECHNICIAN = "technician"
    PHARMACIST = "pharmacist"
    ADMIN = "admin"
    # A site's pharmacy system sending prescriptions (FHIR, NCPDP SCRIPT): a machine, never a person,
    # allowed only the intake routes and only for its own site.
    INTEGRATION = "integration"


# The roles a person signs in with.
PEOPLE = frozenset({Role.TECHNICIAN, Role.PHARMACIST, Role.ADMIN})


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    display_name: str
    role: Role
    site_id: int | None
    licensed_states: frozenset[str]
    via: str  # "session" or "device"
    csrf_token: str | None = None
    # A console session's row and how far it got: "ready", "second_factor" (the password was right, the
    # second factor is awaited), "enrol" (policy wants a second factor enrolled first) or "locked" (idle).
    session_id: int | None = None
    stage: str = "ready"
    # The session's last recorded action (the idle lock counts from it).
    active_at: dt.datetime | None = None

    @property
    def label(self) -> str:
        return f"{self.role.value}:{self.username}"

    def may_see_site(self, site_id: int, site_state: str) -> bool:
        """A technician sees their own site, a pharmacist the sites of their licensed states."""
        if self.role is Role.ADMIN:
            return True
        if self.role in (Role.TECHNICIAN, Role.INTEGRATION):
            return self.site_id == site_id
        return site_state in self.licensed_states


def active_states(licenses: list[tuple[str, dt.date]], today: dt.date) -> frozenset[str]:
    """States whose license has not expired by today."""
    return frozenset(state for state, expires in licenses if expires >= today)


@dataclass(frozen=True)
class AccessChange:
    """Someone's rights changed: a session ended, a device token was revoked, a user deactivated, a
    pharmacist's licenses or a site's status changed. Ids only, so it may travel between server nodes."""

    user_id: int | None = None
    site_id: int | None = None


AccessListener = Callable[[AccessChange], Awaitable[None]]


async def tell(listeners: list[AccessListener], change: AccessChange) -> None:
    """Hands a committed change to every listener (the realtime hub re-checks its live connections)."""
    for listener in listeners:
        try:
            await listener(change)
        except Exception:
            log.exception("telling of an access change failed; live connections re-check on their own")
