"""Sites, users and licenses: what an administrator manages. Every change is audited."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from server.audit import chain as audit
from server.db.engine import Database
from server.db.models import ConsoleSession, License, Site, User, utcnow
from server.errors import Conflict, InvalidInput, NotFound
from server.fills.rules import MEDIA_KINDS
from server.keyset import MAX_LIMIT, Keyset, Page
from server.security.passwords import Passwords
from server.security.principal import PEOPLE, AccessChange, AccessListener, Principal, Role, tell

SITES_ORDER = Keyset("sites", [(Site.id, int)])
USERS_ORDER = Keyset("users", [(User.id, int)])
US_STATES = frozenset(
    [
        "AL",
        "AK",
        "AZ",
        "AR",
        "CA",
        "CO",
        "CT",
        "DE",
        "DC",
        "FL",
        "GA",
        "HI",
        "ID",
        "IL",
        "IN",
        "IA",
        "KS",
        "KY",
        "LA",
        "ME",
        "MD",
        "MA",
        "MI",
        "MN",
        "MS",
        "MO",
        "MT",
        "NE",
        "NV",
        "NH",
        "NJ",
        "NM",
        "NY",
        "NC",
        "ND",
        "OH",
        "OK",
        "OR",
        "PA",
        "RI",
        "SC",
        "SD",
        "TN",
        "TX",
        "UT",
        "VT",
        "VA",
        "WA",
        "WV",
        "WI",
        "WY",
        "PR",
        "GU",
        "VI",
    ]
)
USERNAME = re.compile(r"^[a-z0-9][a-z0-9._-]{1,63}$")


def _state(value: str) -> str:
    state = (value or "").upper()
    if state not in US_STATES:
        raise InvalidInput(f"{value!r} is not a US state code.")
    return state


class Directory:
    def __init__(self, db: Database, passwords: Passwords) -> None:
        self.db = db
        self.passwords = passwords
        # Told after a change of someone's rights committed (the realtime hub re-checks live connections).
        self.access_listeners: list[AccessListener] = []

    async def create_site(
        self,
        actor: Principal | None,
        code: str,
        name: str,
        state: str,
        required_media_kinds: list[str] | None = None,
        *,
        requires_pv1: bool = True,
    ) -> Site:
        if not code or not name:
            raise InvalidInput("A site needs a code and a name.")
        if required_media_kinds is not None and any(k not in MEDIA_KINDS for k in required_media_kinds):
            raise InvalidInput(f"Media kinds must come from {', '.join(MEDIA_KINDS)}.")
        try:
            async with self.db.write() as s:
                site = Site(
                    code=code,
                    name=name,
                    state=_state(state),
                    status="active",
                    required_media_kinds=required_media_kinds,
                    requires_pv1=requires_pv1,
                )
                s.add(site)
                await s.flush()
                await audit.append(
                    self.db,
                    s,
                    actor,
                    "site.created",
                    "site",
                    site.id,
                    {"code": code, "state": site.state, "requires_pv1": requires_pv1},
                )
                return site
        except IntegrityError as exc:
            raise Conflict(f"A site with code {code!r} exists already.") from exc

    async def set_requires_pv1(self, actor: Principal | None, code: str, requires_pv1: bool) -> Site:
        """Turns the site's data-entry verification on or off for prescriptions entered from now on;
        those already waiting keep waiting for a pharmacist."""
        async with self.db.write() as s:
            site = (await s.execute(select(Site).where(Site.code == code))).scalar_one_or_none()
            if site is None:
                raise NotFound(f"No site {code!r}.")
            site.requires_pv1 = requires_pv1
            await audit.append(self.db, s, actor, "site.pv1", "site", site.id, {"requires_pv1": requires_pv1})
            return site

    async def set_site_status(
        self,
        actor: Principal | None,
        site_id: int,
        status: str | None,
        *,
        require_second_factor: bool | None = None,
    ) -> Site:
        """Suspends a site (its devices' live connections close) or makes it active again; sets its
        policy on second factors. Each change is audited."""
        if status is not None and status not in ("active", "suspended"):
            raise InvalidInput("Status is 'active' or 'suspended'.")
        async with self.db.write() as s:
            site = await s.get(Site, site_id)
            if site is None:
                raise NotFound("No such site.")
            if status is not None and status != site.status:
                site.status = status
                await audit.append(self.db, s, actor, "site.status", "site", site.id, {"status": status})
            if require_second_factor is not None and require_second_factor != site.require_second_factor:
                site.require_second_factor = require_second_factor
                await audit.append(
                    self.db,
                    s,
                    actor,
                    "site.policy",
                    "site",
                    site.id,
                    {"require_second_factor": require_second_factor},
                )
        await tell(self.access_listeners, AccessChange(site_id=site.id))
        return site

    async def site_by_code(self, code: str) -> Site:
        async with self.db.read() as s:
            site = (await s.execute(select(Site).where(Site.code == code))).scalar_one_or_none()
        if site is None:
            raise NotFound(f"No site {code!r}.")
        return site

    async def reset_password(self, actor: Principal | None, username: str, password: str) -> User:
        """Sets a new password (checked as at creation) and ends the user's console sessions."""
        async with self.db.read() as s:
            user = (await s.execute(select(User).where(User.username == username))).scalar_one_or_none()
        if user is None or user.role not in PEOPLE:
            raise NotFound("No such person.")
        hashed = await self.passwords.new_hash(
            password, username=username, user_inputs=user.display_name.split()
        )
        async with self.db.write() as s:
            await s.execute(update(User).where(User.id == user.id).values(password_hash=hashed))
            ended = await s.execute(
                update(ConsoleSession)
                .where(ConsoleSession.user_id == user.id, ConsoleSession.expires_at > utcnow())
                .values(expires_at=utcnow())
            )
            await audit.append(
                self.db,
                s,
                actor,
                "user.password_reset",
                "user",
                user.id,
                {"sessions_ended": ended.rowcount},  # type: ignore[attr-defined]
            )
        await tell(self.access_listeners, AccessChange(user_id=user.id))
        return user

    async def set_user_active(self, actor: Principal | None, username: str, active: bool) -> User:
        """Deactivates a user (no sign-in, no device, live connections closed) or reactivates them."""
        async with self.db.write() as s:
            user = (await s.execute(select(User).where(User.username == username))).scalar_one_or_none()
            if user is None:
                raise NotFound("No such user.")
            user.active = active
            if not active:
                # Reactivation must not bring back the sessions that were open.
                await s.execute(
                    update(ConsoleSession)
                    .where(ConsoleSession.user_id == user.id, ConsoleSession.expires_at > utcnow())
                    .values(expires_at=utcnow())
                )
            await audit.append(self.db, s, actor, "user.active", "user", user.id, {"active": active})
        await tell(self.access_listeners, AccessChange(user_id=user.id))
        return user

    async def create_user(
        self,
        actor: Principal | None,
        username: str,
        display_name: str,
        role: str,
        password: str,
        *,
        site_code: str | None = None,
    ) -> User:
        if not USERNAME.match(username or ""):
            raise InvalidInput("Usernames are 2-64 lowercase letters, digits, dots, dashes or underscores.")
        if role not in {r.value for r in PEOPLE}:
            raise InvalidInput("Role is technician, pharmacist or admin.")
        hashed = await self.passwords.new_hash(password, username=username, user_inputs=display_name.split())
        try:
            async with self.db.write() as s:
                site_id = None
                if role == Role.TECHNICIAN:
                    site = (await s.execute(select(Site).where(Site.code == site_code))).scalar_one_or_none()
                    if site is None:
                        raise InvalidInput("A technician belongs to one existing site: give its code.")
                    site_id = site.id
                user = User(
                    username=username,
                    display_name=display_name or username,
                    role=role,
                    password_hash=hashed,
                    site_id=site_id,
                    active=True,
                    licenses=[],
                )
                s.add(user)
                await s.flush()
                await audit.append(
                    self.db,
                    s,
                    actor,
                    "user.created",
                    "user",
                    user.id,
                    {"username": username, "role": role, "site_id": site_id},
                )
                return user
        except IntegrityError as exc:
            raise Conflict(f"The username {username!r} is taken.") from exc

    async def add_license(
        self, actor: Principal | None, username: str, state: str, number: str, expires_on: dt.date
    ) -> License:
        async with self.db.write() as s:
            user = (await s.execute(select(User).where(User.username == username))).scalar_one_or_none()
            if user is None or user.role != Role.PHARMACIST:
                raise InvalidInput("Licenses belong to an existing pharmacist.")
            st = _state(state)
            lic = next((x for x in user.licenses if x.state == st), None)
            if lic is None:
                lic = License(user_id=user.id, state=st, number=number, expires_on=expires_on)
                s.add(lic)
            else:
                lic.number, lic.expires_on = number, expires_on
            await s.flush()
            await audit.append(
                self.db,
                s,
                actor,
                "license.set",
                "user",
                user.id,
                {"state": st, "number": number, "expires_on": expires_on.isoformat()},
            )
        await tell(self.access_listeners, AccessChange(user_id=user.id))
        return lic

    async def sites(self) -> list[Site]:
        async with self.db.read() as s:
            return list((await s.execute(select(Site).order_by(Site.id))).scalars())

    async def users(self) -> list[User]:
        async with self.db.read() as s:
            return list((await s.execute(select(User).order_by(User.id))).scalars())

    async def site_page(
        self, actor: Principal, *, after: tuple[Any, ...] | None = None, limit: int = MAX_LIMIT
    ) -> Page[Site]:
        """A page of the sites the actor may see (Principal.may_see_site), by id."""
        q = select(Site).order_by(*SITES_ORDER.order_by()).limit(limit + 1)
        if actor.role in (Role.TECHNICIAN, Role.INTEGRATION):
            q = q.where(Site.id == actor.site_id)
        elif actor.role is not Role.ADMIN:
            q = q.where(Site.state.in_(sorted(actor.licensed_states)))
        if after is not None:
            q = q.where(SITES_ORDER.after(after))
        async with self.db.read() as s:
            rows = list((await s.execute(q)).scalars())
        return SITES_ORDER.page(rows, limit, lambda site: (site.id,))

    async def user_page(self, *, after: tuple[Any, ...] | None = None, limit: int = MAX_LIMIT) -> Page[User]:
        """A page of the users, by id."""
        q = select(User).order_by(*USERS_ORDER.order_by()).limit(limit + 1)
        if after is not None:
            q = q.where(USERS_ORDER.after(after))
        async with self.db.read() as s:
            rows = list((await s.execute(q)).scalars())
        return USERS_ORDER.page(rows, limit, lambda user: (user.id,))
