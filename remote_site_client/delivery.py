"""What the fill sender and the recording sender share: the link, a lease kept while bytes flow, and
sending one file over tus to the end."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from remote_site_client.api import ApiError, SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.outbox import Outbox
from remote_site_client.progress import FileProgress, ProgressFactory, Quiet
from remote_site_client.tus import TusClient, UploadGone

# How long a process holds an outbox item; renewed while its bytes flow.
LEASE_SECONDS = 120.0


async def idle(
    stop: asyncio.Event, wake: asyncio.Event, next_due_at: float | None, *, at_most: float = 30.0
) -> None:
    """A service loop's rest: until stop, a wake-up, the next item's time (epoch seconds), or at_most."""
    timeout = at_most if next_due_at is None else min(at_most, max(0.2, next_due_at - time.time()))
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*waiters, return_exceptions=True)


# How often a long-running sender looks for entries other processes stored: the median wait is half.
OTHER_WRITERS_EVERY = 0.2


async def wake_on_other_writers(
    data_version: Callable[[], int], *wakes: asyncio.Event, every: float = OTHER_WRITERS_EVERY
) -> None:
    """Sets `wakes` whenever another process commits to the outbox (`submit --no-send`, a recording
    kept by `consult`), so what it stored goes at once rather than at the sender's next rest's end.
    Asking SQLite's data version is one statement on an open connection: no file or socket to manage."""
    seen = data_version()
    while True:
        await asyncio.sleep(every)
        now = data_version()
        if now != seen:
            seen = now
            for wake in wakes:
                wake.set()


def quiet(label: str, total: int) -> FileProgress:
    return Quiet()


@dataclass(frozen=True)
class Delivered:
    """A file the server stored: its media id, the bytes this attempt sent, and where it resumed."""

    media_id: int
    sent_bytes: int = 0
    resumed_from: int = 0


class OutboxWorker:
    """Works items of the outbox one attempt at a time, over one tus client."""

    def __init__(
        self,
        config: SiteConfig,
        outbox: Outbox,
        api: SiteApi,
        *,
        progress: ProgressFactory = quiet,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.api = api
        self.tus = TusClient(api, chunk_bytes=config.chunk_bytes)
        self.progress = progress
        self.rng = rng or random.Random()
        self._renewed_at = 0.0

    def _leased(self) -> None:
        """The attempt's lease was just taken."""
        self._renewed_at = time.monotonic()

    def _keep_lease(self, renew: Callable[[float], object]) -> None:
        now = time.monotonic()
        if now - self._renewed_at > LEASE_SECONDS / 3:
            self._renewed_at = now
            renew(LEASE_SECONDS)

    async def _send_file(
        self,
        path: Path,
        *,
        size: int,
        metadata: Mapping[str, str],
        url: str | None,
        remember_url: Callable[[str | None], None],
        label: str,
        renew: Callable[[float], object],
        stored: Callable[[], Awaitable[int | None]],
        passed_on: frozenset[str] = frozenset(),
    ) -> Delivered:
        """Uploads one file to the end, resuming the upload at `url` when the server still has it.

        An upload the server no longer knows may have been finished by the request a killed process
        left behind: `stored` asks the server for the file's media id before it is sent again. A
        refusal is final and names the file (`label`), unless its code is one of `passed_on`.
        """
        bar = self.progress(label, size)

        def step(done: int) -> None:
            bar.update(done)
            self._keep_lease(renew)

        async def upload(at: str | None) -> Delivered:
            result = await self.tus.upload(
                path, size=size, metadata=metadata, url=at, remember_url=remember_url, progress=step
            )
            if result.media_id is None:
                raise ApiError("The server took the file but did not say where it is.", transient=True)
            return Delivered(result.media_id, result.sent_bytes, result.resumed_from)

        try:
            try:
                done = await upload(url)
            except UploadGone:
                media_id = await stored()
                if media_id is not None:
                    bar.finish("stored")
                    return Delivered(media_id)
                done = await upload(None)
        except ApiError as exc:
            bar.finish("interrupted" if exc.transient else "refused")
            if exc.transient or exc.code in passed_on:
                raise
            raise ApiError(
                f"The server refused the {label}: {exc.message}",
                status=exc.status,
                code=exc.code,
                transient=False,
            ) from exc
        bar.finish("stored" + (f" (resumed at {done.resumed_from} bytes)" if done.resumed_from else ""))
        return done
