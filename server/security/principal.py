"""The authenticated caller and the visibility rules that follow from their role."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass


class Role(enum.StrEnum):
    TECHNICIAN = "technician"
    PHARMACIST = "pharmacist"
    ADMIN = "admin"


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

    @property
    def label(self) -> str:
        return f"{self.role.value}:{self.username}"

    def may_see_site(self, site_id: int, site_state: str) -> bool:
        """A technician sees their own site, a pharmacist the sites of their licensed states."""
        if self.role is Role.ADMIN:
            return True
        if self.role is Role.TECHNICIAN:
            return self.site_id == site_id
        return site_state in self.licensed_states


def active_states(licenses: list[tuple[str, dt.date]], today: dt.date) -> frozenset[str]:
    """States whose license has not expired by today."""
    return frozenset(state for state, expires in licenses if expires >= today)
