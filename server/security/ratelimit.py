"""Sign-in limiting by the failures of an account and of a client address, shared by every server
instance through the database.

Each count is forgotten `window` after its last failure. An address with `per_address` failures is
refused until then, whichever accounts it tried: one address cannot walk through the accounts. An
account is never locked: after `free` failures each further attempt must wait a delay that doubles
with every failure, up to `max_delay`, so a guesser is slowed to a crawl while the owner, who knows
the password, waits no longer than that. Attempts refused for a wait are not counted.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import math
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import case, delete, select
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from server.db.engine import Database
from server.db.models import SignInFailure


@dataclass(frozen=True)
class SignInPolicy:
    free: int = 5
    per_address: int = 10
    window_seconds: float = 300.0
    max_delay_seconds: float = 60.0

    @property
    def memory(self) -> dt.timedelta:
        """How long a count is kept after its last failure (at least as long as the longest delay)."""
        return dt.timedelta(seconds=max(self.window_seconds, self.max_delay_seconds))

    def account_delay(self, failures: int) -> float:
        """Seconds an account waits after its last failure: none for the first `free`, then 1, 2, 4..."""
        if failures < self.free:
            return 0.0
        return float(min(self.max_delay_seconds, 2 ** min(failures - self.free, 30)))


@dataclass(frozen=True)
class Wait:
    seconds: int
    # "account" or "address": what is being waited for, to say so.
    of: str

    @property
    def message(self) -> str:
        why = (
            "This account had several wrong passwords"
            if self.of == "account"
            else "Too many wrong passwords came from this address"
        )
        when = "1 second" if self.seconds == 1 else f"{self.seconds} seconds"
        return f"{why}: try again in {when}."


def account_key(username: str) -> str:
    return f"account:{username.lower()}"


def address_key(address: str) -> str:
    """An IPv6 client is counted by its /64: one subscriber is given a whole /64 to pick from."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return f"address:{address[:150]}"
    if ip.version == 6:
        return f"address:{ipaddress.ip_network(f'{ip}/64', strict=False)}"
    return f"address:{ip}"


class SignInLimits:
    def __init__(self, db: Database, policy: SignInPolicy, clock: Callable[[], dt.datetime]) -> None:
        self.db = db
        self.policy = policy
        self.clock = clock

    async def wait(self, username: str, address: str) -> Wait | None:
        """How long this sign-in must wait, and why; None when it may go ahead now."""
        now = self.clock()
        keys = {account_key(username): "account", address_key(address): "address"}
        async with self.db.read_one() as s:
            rows = (
                await s.execute(
                    select(SignInFailure).where(
                        SignInFailure.key.in_(list(keys)), SignInFailure.last_at > now - self.policy.memory
                    )
                )
            ).scalars()
            waits = []
            for row in rows:
                of = keys[row.key]
                if of == "account":
                    delay = self.policy.account_delay(row.failures)
                elif row.failures >= self.policy.per_address:
                    delay = self.policy.window_seconds
                else:
                    continue
                left = (row.last_at + dt.timedelta(seconds=delay) - now).total_seconds()
                if left > 0:
                    waits.append(Wait(math.ceil(left), of))
        return max(waits, key=lambda w: w.seconds, default=None)

    async def failed(self, s: AsyncSession, username: str, address: str) -> None:
        """Counts a wrong password against the account and the address (in the caller's transaction)."""
        now = self.clock()
        forgotten = now - self.policy.memory
        insert = sqlite_insert if self.db.is_sqlite else postgresql_insert
        stmt = insert(SignInFailure).values(
            [
                {"key": account_key(username), "failures": 1, "last_at": now},
                {"key": address_key(address), "failures": 1, "last_at": now},
            ]
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=[SignInFailure.key],
            set_={
                "failures": case((SignInFailure.last_at <= forgotten, 1), else_=SignInFailure.failures + 1),
                "last_at": stmt.excluded.last_at,
            },
        )
        await s.execute(stmt)
        # Counts nobody will read again go here rather than in a sweep: failures are what fills the table.
        await s.execute(delete(SignInFailure).where(SignInFailure.last_at <= forgotten))

    async def succeeded(self, s: AsyncSession, username: str) -> None:
        """The owner is in: the account's count starts again (the address keeps its own)."""
        await s.execute(delete(SignInFailure).where(SignInFailure.key == account_key(username)))
