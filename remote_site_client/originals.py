"""Originals of paper prescriptions in the outbox, delivered as media of their prescriptions over tus.

As a call's recording: the upload URL is kept before any byte is sent, so a dropped link or a killed
process resumes from the server's offset; an original the server already stored is recognised by its
SHA-256; a network error is retried with backoff (`tp-site sync` keeps at it); a refusal (not an image,
TIFF or PDF; too many pages; the prescription already verified) is final and kept with its reason.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from remote_site_client import backoff
from remote_site_client.api import ApiError, TokenRefused
from remote_site_client.delivery import LEASE_SECONDS, Delivered, OutboxWorker, idle
from remote_site_client.outbox import DELIVERED, FAILED, PENDING, Original

log = logging.getLogger(__name__)

KIND = "rx_image"


@dataclass(frozen=True)
class OriginalAttempt:
    """What one attempt at delivering an original came to."""

    original_id: int
    prescription_id: int
    state: str
    error: str | None = None
    pages: int | None = None
    token_refused: bool = False

    def line(self) -> str:
        """One line for the technician."""
        head = f"original of prescription {self.prescription_id}"
        if self.state == DELIVERED:
            pages = f" ({self.pages} page{'s' if self.pages != 1 else ''})" if self.pages else ""
            return f"{head}: delivered{pages}"
        if self.state == FAILED:
            return f"{head}: REFUSED by the server: {self.error}"
        return f"{head}: not delivered yet ({self.error or 'link down'}); `tp-site sync` delivers it"


class OriginalSender(OutboxWorker):
    """Delivers the outbox's originals, one process per original at a time."""

    async def attempt(self, original_id: int) -> OriginalAttempt | None:
        """Works one pending original as far as it goes; None when another process is working it."""
        if not self.outbox.acquire_original(original_id, LEASE_SECONDS):
            return None
        self._leased()
        found = self.outbox.original(original_id)
        assert found is not None
        try:
            if not found.path.exists():
                message = "The outbox's copy of the original is missing; it cannot be sent."
                self.outbox.original_failed(original_id, message)
                return OriginalAttempt(original_id, found.prescription_id, FAILED, message)
            done = await self._deliver(found)
            stored = await self._stored(found)
            pages = stored[1] if stored else None
            self.outbox.original_delivered(original_id, done.media_id, pages)
            return OriginalAttempt(original_id, found.prescription_id, DELIVERED, None, pages)
        except ApiError as exc:
            return self._failed_attempt(found, exc)
        except (OSError, ValueError, KeyError) as exc:
            log.exception("original %s could not be worked", original_id)
            message = f"Could not be sent from this computer: {type(exc).__name__}: {exc}"
            return self._failed_attempt(found, ApiError(message, transient=True))
        finally:
            self.outbox.release_original(original_id)

    def _failed_attempt(self, found: Original, exc: ApiError) -> OriginalAttempt:
        if exc.transient:
            wait = backoff.delay(
                found.attempts, self.config.retry_base_seconds, self.config.retry_max_seconds, self.rng
            )
            self.outbox.original_retry_later(found.id, exc.message, wait)
            refused = isinstance(exc, TokenRefused)
            return OriginalAttempt(
                found.id, found.prescription_id, PENDING, exc.message, token_refused=refused
            )
        self.outbox.original_failed(found.id, exc.message)
        log.warning("original of prescription %s refused by the server: %s", found.prescription_id, exc)
        return OriginalAttempt(found.id, found.prescription_id, FAILED, exc.message)

    async def _stored(self, found: Original) -> tuple[int, int] | None:
        """(first page's media id, pages) when the server already holds this very file."""
        _, rx = await self.api.call("GET", f"/prescriptions/{found.prescription_id}")
        pages = [
            p
            for p in rx.get("original", [])
            if p.get("sha256") == found.sha256 or p.get("quality", {}).get("original_sha256") == found.sha256
        ]
        return (int(pages[0]["id"]), len(pages)) if pages else None

    async def _deliver(self, found: Original) -> Delivered:
        if found.upload_url is None and (stored := await self._stored(found)) is not None:
            return Delivered(stored[0])
        metadata = {
            "prescription_id": str(found.prescription_id),
            "kind": KIND,
            "filename": found.filename,
            "sha256": found.sha256,
        }
        return await self._send_file(
            found.path,
            size=found.bytes,
            metadata=metadata,
            url=found.upload_url,
            remember_url=lambda u: self.outbox.set_original_upload_url(found.id, u),
            label="original",
            renew=lambda seconds: self.outbox.renew_original(found.id, seconds),
            stored=lambda: self._first_page(found),
        )

    async def _first_page(self, found: Original) -> int | None:
        stored = await self._stored(found)
        return stored[0] if stored else None

    async def deliver(self, original_id: int, *, patience: float) -> OriginalAttempt:
        """Tries one original until it is delivered, refused, or `patience` seconds are spent; a refused
        device token ends it at once."""
        deadline = time.monotonic() + patience
        found = self.outbox.original(original_id)
        assert found is not None
        last = OriginalAttempt(original_id, found.prescription_id, PENDING)
        while True:
            result = await self.attempt(original_id)
            if result is not None:
                last = result
                if result.state != PENDING or result.token_refused:
                    return result
            now = self.outbox.original(original_id)
            if now is None or now.state != PENDING:
                state = now.state if now else FAILED
                return OriginalAttempt(
                    original_id, found.prescription_id, state, now.failed_reason if now else None
                )
            wait = max(0.2, now.next_attempt_at - time.time()) if result is not None else 1.0
            if time.monotonic() + wait > deadline:
                return last
            await asyncio.sleep(wait)

    async def drain(self) -> list[OriginalAttempt]:
        """One attempt at each due original."""
        results = []
        for original_id in self.outbox.due_originals():
            result = await self.attempt(original_id)
            if result is not None:
                results.append(result)
        return results

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """The long-running service: deliver what is due, sleep until the next original is due."""
        while not stop.is_set():
            wake.clear()
            for result in await self.drain():
                if result.state != PENDING:
                    log.warning("%s", result.line())
            await idle(stop, wake, self.outbox.next_original_due_at())
