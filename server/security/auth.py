"""Authentication: console sessions (cookie + CSRF token) and site device tokens (bearer)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from aiohttp import web
from sqlalchemy import Row, Select, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.config import Config
from server.db.engine import Database
from server.db.models import ConsoleSession, DeviceToken, License, Site, User, utcnow
from server.errors import InvalidInput, NotAuthenticated, NotFound, TooManyRequests
from server.keyset import Keyset, Page
from server.security import tokens
from server.security.identity import Identity
from server.security.passwords import MAX_LENGTH, Passwords
from server.security.principal import AccessChange, AccessListener, Principal, Role, active_states, tell
from server.security.ratelimit import SignInLimits, SignInPolicy
from server.security.second_factor import SecondFactors

SESSION_COOKIE = "tp_session"
# As Directory.create_user allows them.
USERNAME_MAX = 64
AUTH_CACHE_SECONDS = 5.0
AUTH_CACHE_SIZE = 10_000
# A session's last action is written at most this often (the idle lock counts in minutes).
TOUCH_SECONDS = 15.0

TOKENS_ORDER = Keyset("tokens", [(DeviceToken.id, int)])

# Built once: whom a session or a device token belongs to, with the user's licenses (a row for each,
# or one row without), in one statement outside a transaction. An identity is kept AUTH_CACHE_SECONDS,
# so a pharmacist making a request every second or so pays for this read on one request in five.
_PERSON = (
    *(User.id, User.username, User.display_name, User.role, User.site_id),
    *(License.state, License.expires_on),
)
_BY_SESSION = (
    select(
        *_PERSON,
        ConsoleSession.id.label("session_id"),
        ConsoleSession.csrf_token,
        ConsoleSession.stage,
        func.coalesce(ConsoleSession.active_at, ConsoleSession.created_at).label("active_at"),
    )
    .join(ConsoleSession, ConsoleSession.user_id == User.id)
    .outerjoin(License, License.user_id == User.id)
    .where(
        ConsoleSession.token_hash == bindparam("token_hash"),
        ConsoleSession.expires_at > bindparam("now"),
        User.active.is_(True),
    )
)
_BY_DEVICE_TOKEN = (
    select(*_PERSON)
    .join(DeviceToken, DeviceToken.user_id == User.id)
    .outerjoin(License, License.user_id == User.id)
    .where(
        DeviceToken.token_hash == bindparam("token_hash"),
        DeviceToken.revoked_at.is_(None),
        User.active.is_(True),
    )
)


def _licenses(held: Iterable[Any]) -> list[tuple[str, dt.date]]:
    """(state, expires_on) of a user's License entities, or of _PERSON's rows (whose columns are
    None in the one row of a user who holds none)."""
    return [(h.state, h.expires_on) for h in held if h.state is not None]


class Person(Protocol):
    """Who a principal is made for: a User, or a row of _BY_SESSION or _BY_DEVICE_TOKEN."""

    @property
    def id(self) -> int: ...

    @property
    def username(self) -> str: ...

    @property
    def display_name(self) -> str: ...

    @property
    def role(self) -> str: ...

    @property
    def site_id(self) -> int | None: ...


def principal_for(
    user: Person,
    licenses: list[tuple[str, dt.date]],
    *,
    via: str,
    csrf: str | None = None,
    today: dt.date | None = None,
    session_id: int | None = None,
    stage: str = "ready",
    active_at: dt.datetime | None = None,
) -> Principal:
    states = active_states(licenses, today or dt.date.today())
    return Principal(
        user_id=user.id,
        username=user.username,
        display_name=user.display_name,
        role=Role(user.role),
        site_id=user.site_id,
        licensed_states=states if user.role == Role.PHARMACIST else frozenset(),
        via=via,
        csrf_token=csrf,
        session_id=session_id,
        stage=stage,
        active_at=active_at,
    )


@dataclass(frozen=True)
class LoginResult:
    session_token: str
    principal: Principal


class Auth:
    def __init__(
        self,
        db: Database,
        config: Config,
        passwords: Passwords,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.db = db
        self.config = config
        self.passwords = passwords
        policy = SignInPolicy(
            free=config.login_attempts,
            per_address=config.login_address_attempts,
            window_seconds=config.login_window_seconds,
            max_delay_seconds=config.login_max_delay_seconds,
        )
        self.limits = SignInLimits(db, policy, clock)
        self.clock = clock
        self.factors = SecondFactors(db, clock)
        self.identity = Identity(db, config, passwords, self.factors, self.limits, clock)
        # When each session's last action was written, so that it is written at most every TOUCH_SECONDS
        # however many requests come.
        self._touched: dict[int, dt.datetime] = {}
        self._identities: dict[tuple[str, str], tuple[float, Principal | None]] = {}
        # Told after a sign-out or a revocation committed (the realtime hub closes the live connections).
        self.access_listeners: list[AccessListener] = []

    async def authenticate(self, request: web.Request) -> Principal | None:
        """The caller from a bearer device token or a session cookie; None when neither is valid."""
        credential = self.credential(request)
        if credential is None:
            return None
        return self._locked_if_idle(await self._cached(credential, self._look_up(credential[0])))

    def _locked_if_idle(self, principal: Principal | None) -> Principal | None:
        """The session as locked once it sat idle past the idle time (judged now, not when cached)."""
        idle = self.config.idle_lock_seconds
        if principal is None or principal.stage != "ready" or principal.active_at is None or idle <= 0:
            return principal
        # This node's own record of an action is newer than a cached identity's.
        active_at = max(
            principal.active_at, self._touched.get(principal.session_id or 0, principal.active_at)
        )
        if (self.clock() - active_at).total_seconds() > idle:
            return replace(principal, stage="locked")
        return principal

    @staticmethod
    def credential(request: web.Request) -> tuple[str, str] | None:
        """("device", bearer token) or ("session", cookie): what the caller authenticates with."""
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            return ("device", header[7:].strip())
        cookie = request.cookies.get(SESSION_COOKIE)
        return ("session", cookie) if cookie else None

    def _look_up(self, via: str) -> Callable[[str], Awaitable[Principal | None]]:
        return self.from_device_token if via == "device" else self.from_session

    async def reload(self, credential: tuple[str, str]) -> Principal | None:
        """The caller's rights read afresh (a live connection re-checks with it): None once the token is
        revoked, the session ended, the user deactivated or a technician's site suspended."""
        principal = await self._look_up(credential[0])(credential[1])
        self._identities[credential] = (time.monotonic() + AUTH_CACHE_SECONDS, principal)
        if principal is not None and principal.site_id is not None:
            async with self.db.read() as s:
                status = await s.scalar(select(Site.status).where(Site.id == principal.site_id))
            # A suspended site takes no live part: no events, no calls (its HTTP reads still work).
            if status != "active":
                return None
        return principal

    async def _cached(
        self, key: tuple[str, str], look_up: Callable[[str], Awaitable[Principal | None]]
    ) -> Principal | None:
        """A caller's identity is looked up at most every few seconds (an upload is many requests).

        Revoking a token or signing out clears it here at once; other server instances see it within
        AUTH_CACHE_SECONDS, as they see an expired license.
        """
        now = time.monotonic()
        hit = self._identities.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        principal = await look_up(key[1])
        if len(self._identities) > AUTH_CACHE_SIZE:
            self._identities.clear()
        self._identities[key] = (now + AUTH_CACHE_SECONDS, principal)
        return principal

    async def methods(self, user_id: int) -> list[str]:
        """The second factors the user can prove (empty when none is enrolled)."""
        async with self.db.read() as s:
            return await self.factors.methods_of(s, user_id)

    def forget_all(self) -> None:
        self._identities.clear()

    def forget(self, request: web.Request) -> None:
        """Forgets the caller's cached identity: their session just changed stage (signed in, unlocked)."""
        credential = self.credential(request)
        if credential is not None:
            self._identities.pop(credential, None)

    async def access_changed(self, change: AccessChange) -> None:
        """Someone's rights changed (deactivated, password reset, site suspended): ask the database again."""
        self.forget_all()

    async def touch(self, principal: Principal) -> None:
        """Records the person's action in their console session (what the idle lock measures from);
        a session already locked stays locked."""
        if principal.session_id is None or principal.stage != "ready":
            return
        now = self.clock()
        last = self._touched.get(principal.session_id, principal.active_at)
        if last is not None and 0 <= (now - last).total_seconds() < TOUCH_SECONDS:
            return
        where = [ConsoleSession.id == principal.session_id, ConsoleSession.stage == "ready"]
        if self.config.idle_lock_seconds > 0:
            idle_since = now - dt.timedelta(seconds=self.config.idle_lock_seconds)
            where.append(func.coalesce(ConsoleSession.active_at, ConsoleSession.created_at) > idle_since)
        async with self.db.write() as s:
            done = await s.execute(update(ConsoleSession).where(*where).values(active_at=now))
        # Remembered only when written: a session another node saw lock stays locked here too.
        if done.rowcount:  # type: ignore[attr-defined]
            if len(self._touched) >= AUTH_CACHE_SIZE:
                self._touched.clear()
            self._touched[principal.session_id] = now

    async def from_device_token(self, token: str) -> Principal | None:
        rows = await self._person(_BY_DEVICE_TOKEN, {"token_hash": tokens.digest(token)})
        return principal_for(rows[0], _licenses(rows), via="device") if rows else None

    async def from_session(self, token: str) -> Principal | None:
        rows = await self._person(_BY_SESSION, {"token_hash": tokens.digest(token), "now": utcnow()})
        if not rows:
            return None
        row = rows[0]
        return principal_for(
            row,
            _licenses(rows),
            via="session",
            csrf=row.csrf_token,
            session_id=row.session_id,
            stage=row.stage,
            active_at=row.active_at,
        )

    async def _person(
        self, statement: Select[*tuple[Any, ...]], params: dict[str, Any]
    ) -> Sequence[Row[*tuple[Any, ...]]]:
        async with self.db.read_one() as s:
            return (await s.execute(statement, params)).all()

    async def login(self, username: str, password: str, client: str) -> LoginResult:
        """Checks a password and opens a console session; failures slow the account and the address."""
        if not username or not password or len(username) > USERNAME_MAX:
            raise InvalidInput("Give a username and a password.")
        if len(password) > MAX_LENGTH:
            raise InvalidInput(f"Passwords have at most {MAX_LENGTH} characters.")
        wait = await self.limits.wait(username, client)
        if wait is not None:
            raise TooManyRequests(wait.message, retry_after=wait.seconds)
        async with self.db.read() as s:
            user = (
                await s.execute(select(User).where(User.username == username, User.active.is_(True)))
            ).scalar_one_or_none()
        ok = await self.passwords.verify(user.password_hash if user else None, password)
        if not ok or user is None:
            async with self.db.write() as s:
                await self.limits.failed(s, username, client)
                await audit.append(
                    self.db,
                    s,
                    None,
                    "login.failed",
                    "user",
                    user.id if user else "unknown",
                    {"client": client},
                )
            raise NotAuthenticated("Wrong username or password.", code="bad_credentials")
        upgraded = await self.passwords.upgraded(user.password_hash, password) if user.password_hash else None
        token, csrf = tokens.new_secret(), tokens.new_secret()
        async with self.db.write() as s:
            await self.limits.succeeded(s, username)
            if upgraded is not None:
                await s.execute(update(User).where(User.id == user.id).values(password_hash=upgraded))
            stage = await self.identity.stage_after_password(s, user)
            now = self.clock()
            session = ConsoleSession(
                token_hash=tokens.digest(token),
                user_id=user.id,
                csrf_token=csrf,
                created_at=now,
                expires_at=now + dt.timedelta(hours=self.config.session_hours),
                stage=stage,
                # The password alone proves who they are where no second factor is enrolled.
                proved_at=now if stage != "second_factor" else None,
                active_at=now,
            )
            s.add(session)
            await s.flush()
            principal = principal_for(
                user, _licenses(user.licenses), via="session", csrf=csrf, session_id=session.id, stage=stage
            )
            await audit.append(
                self.db, s, principal, "login", "user", user.id, {"client": client, "stage": stage}
            )
        return LoginResult(token, principal)

    async def logout(self, token: str | None) -> None:
        if not token:
            return
        self._identities.pop(("session", token), None)
        async with self.db.write() as s:
            user_id = await s.scalar(
                update(ConsoleSession)
                .where(ConsoleSession.token_hash == tokens.digest(token))
                .values(expires_at=utcnow())
                .returning(ConsoleSession.user_id)
            )
        if user_id is not None:
            await tell(self.access_listeners, AccessChange(user_id=user_id))

    async def _new_token(self, s: AsyncSession, admin: Principal | None, user: User, label: str) -> str:
        """A new token for the user, audited; only its hash is kept."""
        token = tokens.new_secret()
        row = DeviceToken(token_hash=tokens.digest(token), user_id=user.id, label=label[:200])
        s.add(row)
        await s.flush()
        await audit.append(
            self.db,
            s,
            admin,
            "device_token.issued",
            "device_token",
            row.id,
            {"user_id": user.id, "label": row.label},
        )
        return token

    async def issue_device_token(self, admin: Principal | None, username: str, label: str) -> str:
        """A new device token for a technician's site device; only its hash is kept."""
        async with self.db.write() as s:
            user = (await s.execute(select(User).where(User.username == username))).scalar_one_or_none()
            if user is None or user.role != Role.TECHNICIAN:
                raise NotFound("Device tokens are issued to an existing technician.")
            return await self._new_token(s, admin, user, label)

    async def issue_integration_token(self, admin: Principal | None, site_code: str, label: str) -> str:
        """A new token for a site's pharmacy system to send prescriptions with (FHIR, NCPDP SCRIPT). The
        site's integration identity is made on first issue; only the token's hash is kept."""
        async with self.db.write() as s:
            site = (await s.execute(select(Site).where(Site.code == site_code))).scalar_one_or_none()
            if site is None:
                raise NotFound(f"No site {site_code!r}.")
            username = f"integration.{site.code.lower()}"
            user = (await s.execute(select(User).where(User.username == username))).scalar_one_or_none()
            if user is None:
                user = User(
                    username=username,
                    display_name=f"{site.name} pharmacy system",
                    role=Role.INTEGRATION,
                    password_hash=None,
                    site_id=site.id,
                    active=True,
                    licenses=[],
                )
                s.add(user)
                await s.flush()
                await audit.append(
                    self.db,
                    s,
                    admin,
                    "user.created",
                    "user",
                    user.id,
                    {"username": username, "role": Role.INTEGRATION.value, "site_id": site.id},
                )
            return await self._new_token(s, admin, user, label)

    async def tokens(
        self, *, after: tuple[Any, ...] | None = None, limit: int | None = None
    ) -> Page[dict[str, object]]:
        """Device and integration tokens by id (a page of `limit` after `after`; all without a limit),
        whose each is and whether it is revoked; never the token itself (only its hash is stored)."""
        q = (
            select(DeviceToken, User.username, User.role, Site.code)
            .join(User, User.id == DeviceToken.user_id)
            .outerjoin(Site, Site.id == User.site_id)
            .order_by(*TOKENS_ORDER.order_by())
        )
        if after is not None:
            q = q.where(TOKENS_ORDER.after(after))
        if limit is not None:
            q = q.limit(limit + 1)
        async with self.db.read() as s:
            found = (await s.execute(q)).all()
        page = TOKENS_ORDER.page(found, limit if limit is not None else len(found), lambda r: (r[0].id,))
        return Page([self._token_view(*row) for row in page.rows], page.next)

    @staticmethod
    def _token_view(t: DeviceToken, username: str, role: str, site_code: str | None) -> dict[str, object]:
        return {
            "id": t.id,
            "kind": "integration" if role == Role.INTEGRATION else "device",
            "username": username,
            "site_code": site_code,
            "label": t.label,
            "created_at": t.created_at.isoformat(),
            "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
        }

    async def revoke_device_token(self, admin: Principal | None, token_id: int) -> None:
        async with self.db.write() as s:
            row = await s.get(DeviceToken, token_id)
            if row is None:
                raise NotFound("No such device token.")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                # Only the hash is stored, so the cached entry cannot be named: forget every identity.
                self.forget_all()
                await audit.append(self.db, s, admin, "device_token.revoked", "device_token", row.id, {})
            user_id = row.user_id
        await tell(self.access_listeners, AccessChange(user_id=user_id))
