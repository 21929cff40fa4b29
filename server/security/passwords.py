"""Passwords: what may be set (zxcvbn's estimate of guessability), argon2 hashing off the event loop,
and a cap on how many hashes run at once.

A hash costs tens of milliseconds of a core by design. Unbounded, a flood of sign-ins would take every
core and starve uploads and decisions; capped, it takes `slots` cores and a short queue, and sign-ins
beyond that are answered 429 at once rather than piling up.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from zxcvbn import zxcvbn

from server.errors import InvalidInput, TooManyRequests

MIN_LENGTH = 8
# One bound for setting and for signing in, so that every password that can be set can be used.
MAX_LENGTH = 128
# zxcvbn's 3: "safely unguessable", about 10^8 guesses or more; its lists hold the passwords most
# common in breaches, English words and names, keyboard patterns and dates.
MIN_SCORE = 3
# zxcvbn's time grows faster than the length (seconds for 128 characters): it judges this many first
# characters, and a password whose start is hard to guess is hard to guess.
JUDGED_LENGTH = 40

T = TypeVar("T")


def default_slots() -> int:
    """Half the cores the process may use, at least one: the other half stays with the rest of the work."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // 2)


def check_strength(password: str, username: str, user_inputs: Sequence[str] = ()) -> None:
    """Raises InvalidInput saying why a new password is refused; returns when it may be set."""
    if len(password) < MIN_LENGTH:
        raise InvalidInput(f"A password needs at least {MIN_LENGTH} characters.", code="weak_password")
    if len(password) > MAX_LENGTH:
        raise InvalidInput(f"A password has at most {MAX_LENGTH} characters.", code="weak_password")
    if username and username.lower() in password.lower():
        raise InvalidInput("A password must not contain the username.", code="weak_password")
    verdict = zxcvbn(password[:JUDGED_LENGTH], user_inputs=[username, *user_inputs])
    if verdict["score"] < MIN_SCORE:
        feedback = verdict["feedback"]
        why = " ".join(x for x in [feedback["warning"], *feedback["suggestions"]] if x)
        raise InvalidInput(
            f"This password is too easy to guess. {why or 'Add another word or two.'}", code="weak_password"
        )


class Passwords:
    def __init__(
        self,
        time_cost: int = 3,
        memory_kib: int = 65536,
        *,
        slots: int = 0,
        queue: int = 16,
    ) -> None:
        # One lane: a hash then uses one core, and `slots` hashes at once use `slots` cores.
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_kib, parallelism=1)
        # Verifying against this keeps the timing of an unknown user like that of a wrong password.
        self._dummy = self._hasher.hash("not-a-real-password")
        self.slots = slots or default_slots()
        self.queue = queue
        self._turns = asyncio.Semaphore(self.slots)
        self._waiting = 0

    async def _in_turn(self, work: Callable[[], T]) -> T:
        """Runs work in a thread once a slot is free; 429 at once when the queue for slots is full."""
        if self._turns.locked() and self._waiting >= self.queue:
            raise TooManyRequests(
                "Many sign-ins are under way; try again in a moment.", code="busy", retry_after=1
            )
        self._waiting += 1
        try:
            await self._turns.acquire()
        finally:
            self._waiting -= 1
        try:
            job = asyncio.get_running_loop().run_in_executor(None, work)
        except BaseException:
            self._turns.release()
            raise
        # The slot is freed when the hash ends, not when a cancelled caller stops waiting for it.
        job.add_done_callback(self._finished)
        return await asyncio.shield(job)

    def _finished(self, job: asyncio.Future[Any]) -> None:
        self._turns.release()
        if not job.cancelled():
            job.exception()  # retrieved here: a caller that was cancelled no longer will

    def _verify(self, stored: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored or self._dummy, password) and stored is not None
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    async def verify(self, stored: str | None, password: str) -> bool:
        return await self._in_turn(lambda: self._verify(stored, password))

    async def upgraded(self, stored: str, password: str) -> str | None:
        """A new hash of a password just verified when its stored hash was made with other parameters
        (an older cost, or several lanes); None when it is current, or when no slot is free now."""
        if not self._hasher.check_needs_rehash(stored):
            return None
        try:
            return await self._in_turn(lambda: self._hasher.hash(password))
        except TooManyRequests:
            return None

    def _new_hash(self, password: str, username: str, user_inputs: Sequence[str]) -> str:
        check_strength(password, username, user_inputs)
        return self._hasher.hash(password)

    async def new_hash(self, password: str, *, username: str, user_inputs: Sequence[str] = ()) -> str:
        """The hash of a password being set, once it passes check_strength (InvalidInput says why not).

        user_inputs: what else a guesser knows of the person (their name), counted as easy to guess.
        """
        return await self._in_turn(lambda: self._new_hash(password, username, user_inputs))
