"""A console session's proofs of identity after the password: the second factor that finishes a
sign-in, and the proof again that unlocks an idle console or steps up before a decision.

Wrong proofs count as sign-in failures of the account and the address (server/security/ratelimit.py),
so six digits cannot be walked through.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.audit import chain as audit
from server.config import Config
from server.db.engine import Database
from server.db.models import ConsoleSession, User
from server.errors import InvalidInput, NotAuthenticated, TooManyRequests
from server.security.passwords import Passwords
from server.security.principal import Principal
from server.security.ratelimit import SignInLimits
from server.security.second_factor import ENROLLING_ROLES, Proof, RelyingParty, SecondFactors


class Identity:
    def __init__(
        self,
        db: Database,
        config: Config,
        passwords: Passwords,
        factors: SecondFactors,
        limits: SignInLimits,
        clock: Callable[[], dt.datetime],
    ) -> None:
        self.db = db
        self.config = config
        self.passwords = passwords
        self.factors = factors
        self.limits = limits
        self.clock = clock

    async def stage_after_password(self, s: AsyncSession, user: User) -> str:
        """Where a right password leaves a new session: waiting for the second factor when one is
        enrolled, for an enrolment when policy requires one, otherwise ready."""
        if await self.factors.methods_of(s, user.id):
            return "second_factor"
        if self.config.second_factor_required and user.role in ENROLLING_ROLES:
            return "enrol"
        return "ready"

    async def _refuse(self, s: AsyncSession, principal: Principal, client: str, method: str) -> None:
        await self.limits.failed(s, principal.username, client)
        await audit.append(
            self.db,
            s,
            principal,
            "proof.failed",
            "user",
            principal.user_id,
            {"method": method, "client": client},
            at=self.clock(),
        )

    async def _wait_turn(self, principal: Principal, client: str) -> None:
        wait = await self.limits.wait(principal.username, client)
        if wait is not None:
            raise TooManyRequests(wait.message.replace("passwords", "codes"), retry_after=wait.seconds)

    async def finish_sign_in(
        self, principal: Principal, proof: Proof, rp: RelyingParty | None, client: str
    ) -> None:
        """The second factor after the password: the session becomes ready. A password is no answer here."""
        method = proof.method
        if method == "password":
            raise InvalidInput("The password was right; now the second factor: a code or your security key.")
        await self._wait_turn(principal, client)
        # The failure is written in a transaction of its own: the refusal must not roll it back.
        async with self.db.write() as s:
            ok = await self.factors.check(s, principal, proof, rp)
            now = self.clock()
            if ok:
                row = await s.get(ConsoleSession, principal.session_id)
                assert row is not None
                row.stage, row.factor_at, row.proved_at, row.active_at = "ready", now, now, now
                await self.limits.succeeded(s, principal.username)
                await audit.append(
                    self.db,
                    s,
                    principal,
                    "login.second_factor",
                    "user",
                    principal.user_id,
                    {"method": method},
                )
            else:
                await self._refuse(s, principal, client, method)
        if not ok:
            raise NotAuthenticated("That code or key was not accepted.", code="bad_second_factor")

    async def prove(
        self, principal: Principal, proof: Proof, rp: RelyingParty | None, client: str
    ) -> dict[str, Any]:
        """Proof again in a ready or locked session: it unlocks the session (password or second factor)
        and steps it up for the next decision that needs it (the second factor where one is enrolled,
        else the password). Says which it did."""
        method = proof.method
        await self._wait_turn(principal, client)
        async with self.db.write() as s:
            methods = await self.factors.methods_of(s, principal.user_id)
            if method == "password":
                stored = await s.scalar(select(User.password_hash).where(User.id == principal.user_id))
                ok = await self.passwords.verify(stored, proof.password or "")
            else:
                ok = await self.factors.check(s, principal, proof, rp)
            if not ok:
                await self._refuse(s, principal, client, method)
        if not ok:
            raise NotAuthenticated(
                "That password was wrong." if method == "password" else "That code or key was not accepted.",
                code="bad_proof",
            )
        stepped_up = method != "password" or not methods
        async with self.db.write() as s:
            row = await s.get(ConsoleSession, principal.session_id)
            assert row is not None
            now = self.clock()
            row.active_at = now
            if stepped_up:
                row.proved_at = row.stepped_up_at = now
            if method != "password":
                row.factor_at = now
            await self.limits.succeeded(s, principal.username)
            await audit.append(
                self.db,
                s,
                principal,
                "proof",
                "user",
                principal.user_id,
                {"method": method, "unlocked": principal.stage == "locked", "stepped_up": stepped_up},
            )
        return {"unlocked": True, "stepped_up": stepped_up, "method": method}
