"""Call recordings in the outbox, delivered as media of their consultations over tus (no aiortc here).

Like a fill's photos: the upload URL is kept in the outbox before any byte is sent, so a dropped link
or a killed process resumes from the server's offset rather than from zero, and a recording the server
already stored is recognised by its SHA-256. A network error is retried with backoff (the long-running
`tp-site sync` keeps at it); a refusal (no consent recorded, not an mp4) is final and kept with its
reason for `tp-site outbox`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from remote_site_client import backoff
from remote_site_client.api import ApiError, TokenRefused
from remote_site_client.delivery import LEASE_SECONDS, Delivered, OutboxWorker, idle
from remote_site_client.outbox import DELIVERED, FAILED, PENDING, Recording
from server.evidence.kinds import CONSULTATION_RECORDING

log = logging.getLogger(__name__)

KIND = CONSULTATION_RECORDING


@dataclass(frozen=True)
class RecordingAttempt:
    """What one attempt at delivering a recording came to."""

    consultation_id: int
    state: str
    error: str | None = None
    sent_bytes: int = 0
    resumed_from: int = 0
    media_id: int | None = None
    token_refused: bool = False

    def line(self) -> str:
        """One line for the technician."""
        head = f"recording of consultation {self.consultation_id}"
        if self.state == DELIVERED:
            return f"{head}: delivered"
        if self.state == FAILED:
            return f"{head}: REFUSED by the server: {self.error}"
        return f"{head}: not delivered yet ({self.error or 'link down'}); `tp-site sync` delivers it"


class RecordingSender(OutboxWorker):
    """Delivers the outbox's recordings, one process per recording at a time (a lease, as for fills)."""

    async def attempt(self, consultation_id: int) -> RecordingAttempt | None:
        """Works one pending recording as far as it goes; None when another process is working it."""
        if not self.outbox.acquire_recording(consultation_id, LEASE_SECONDS):
            return None
        self._leased()
        try:
            rec = self.outbox.recording(consultation_id)
            assert rec is not None
            if not rec.path.exists():
                message = "The outbox's copy of the recording is missing; it cannot be sent."
                self.outbox.recording_failed(consultation_id, message)
                return RecordingAttempt(consultation_id, FAILED, message)
            done = await self._deliver(rec)
            self.outbox.recording_delivered(consultation_id, done.media_id)
            return RecordingAttempt(
                consultation_id, DELIVERED, None, done.sent_bytes, done.resumed_from, done.media_id
            )
        except ApiError as exc:
            return self._failed_attempt(consultation_id, exc)
        except (OSError, ValueError, KeyError) as exc:
            # Something on this computer (a file, a surprising answer): keep it and try later.
            log.exception("recording of consultation %s could not be worked", consultation_id)
            message = f"Could not be sent from this computer: {type(exc).__name__}: {exc}"
            return self._failed_attempt(consultation_id, ApiError(message, transient=True))
        finally:
            self.outbox.release_recording(consultation_id)

    def _failed_attempt(self, consultation_id: int, exc: ApiError) -> RecordingAttempt:
        if exc.transient:
            rec = self.outbox.recording(consultation_id)
            wait = backoff.delay(
                rec.attempts if rec else 0,
                self.config.retry_base_seconds,
                self.config.retry_max_seconds,
                self.rng,
            )
            self.outbox.recording_retry_later(consultation_id, exc.message, wait)
            log.info("recording %s not delivered yet (%s); next try in %.0fs", consultation_id, exc, wait)
            refused = isinstance(exc, TokenRefused)
            return RecordingAttempt(consultation_id, PENDING, exc.message, token_refused=refused)
        self.outbox.recording_failed(consultation_id, exc.message)
        log.warning("recording of consultation %s refused by the server: %s", consultation_id, exc)
        return RecordingAttempt(consultation_id, FAILED, exc.message)

    async def _stored(self, rec: Recording) -> int | None:
        """The media id when the server already holds this very recording (sent by an earlier attempt
        whose answer was lost)."""
        _, consultation = await self.api.call("GET", f"/consultations/{rec.consultation_id}")
        stored = consultation.get("recording")
        if stored and stored.get("sha256") == rec.sha256:
            return int(stored["id"])
        return None

    async def _deliver(self, rec: Recording) -> Delivered:
        cid = rec.consultation_id
        if rec.upload_url is None and (media_id := await self._stored(rec)) is not None:
            return Delivered(media_id)
        metadata = {
            "consultation_id": str(cid),
            "kind": KIND,
            "filename": f"consultation-{cid}.mp4",
            "sha256": rec.sha256,
        }
        return await self._send_file(
            rec.path,
            size=rec.bytes,
            metadata=metadata,
            url=rec.upload_url,
            remember_url=lambda u: self.outbox.set_recording_upload_url(cid, u),
            label="recording",
            renew=lambda seconds: self.outbox.renew_recording(cid, seconds),
            stored=lambda: self._stored(rec),
        )

    async def deliver(self, consultation_id: int, *, patience: float) -> RecordingAttempt:
        """Tries one recording until it is delivered, refused, or `patience` seconds are spent; a refused
        device token ends it at once."""
        deadline = time.monotonic() + patience
        last = RecordingAttempt(consultation_id, PENDING)
        while True:
            result = await self.attempt(consultation_id)
            if result is not None:
                last = result
                if result.state != PENDING or result.token_refused:
                    return result
            rec = self.outbox.recording(consultation_id)
            if rec is None or rec.state != PENDING:
                # Another process finished it meanwhile.
                state = rec.state if rec else FAILED
                return RecordingAttempt(consultation_id, state, rec.failed_reason if rec else None)
            wait = max(0.2, rec.next_attempt_at - time.time()) if result is not None else 1.0
            if time.monotonic() + wait > deadline:
                return last
            await asyncio.sleep(wait)

    async def drain(self) -> list[RecordingAttempt]:
        """One attempt at each due recording; none while a fill is due (a waiting patient's fill first)."""
        if self.outbox.due():
            return []
        results = []
        for cid in self.outbox.due_recordings():
            result = await self.attempt(cid)
            if result is not None:
                results.append(result)
        return results

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """The long-running service: deliver what is due, sleep until the next recording is due."""
        while not stop.is_set():
            wake.clear()
            for result in await self.drain():
                if result.state != PENDING:
                    log.warning("%s", result.line())
            # While a fill is due it goes first: look again soon.
            await idle(
                stop, wake, self.outbox.next_recording_due_at(), at_most=1.0 if self.outbox.due() else 30.0
            )
