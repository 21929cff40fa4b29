"""Drains the outbox: create the fill (idempotent), upload each file over tus, submit, confirm `queued`.

Every step can be repeated safely, so an attempt interrupted anywhere (dropped link, server restart,
the process killed) is simply attempted again: the fill id was made before any network call, the
upload URL is kept in the outbox, and media the server already stored are recognised by their SHA-256.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from remote_site_client import backoff
from remote_site_client.api import ApiError, TokenRefused
from remote_site_client.delivery import LEASE_SECONDS, Delivered, OutboxWorker, idle
from remote_site_client.outbox import (
    CREATED,
    FAILED,
    OPEN_STATES,
    PENDING,
    QUEUED,
    UPLOADED,
    Entry,
    OutboxFile,
)
from remote_site_client.prepare import prepare_file
from server.evidence.kinds import KIND_NAMES

log = logging.getLogger(__name__)

# Server states that mean the fill went through submission: delivered.
PAST_SUBMISSION = frozenset({"queued", "in_review", "approved", "handed_out", "rejected"})
DECIDED = frozenset({"approved", "handed_out", "rejected"})


@dataclass(frozen=True)
class Attempt:
    """What one attempt at an entry came to."""

    fill_id: str
    state: str
    error: str | None = None
    sent_bytes: int = 0
    fill: dict[str, Any] | None = None
    # The server's error code when it refused (TokenRefused.CODE: the device token).
    code: str = ""

    @property
    def delivered(self) -> bool:
        return self.state == QUEUED

    @property
    def token_refused(self) -> bool:
        """Nothing goes until this computer is enrolled again: the entry waits, trying now is no use."""
        return self.code == TokenRefused.CODE


class Sender(OutboxWorker):
    # -- one attempt -----------------------------------------------------------------------------

    async def attempt(self, fill_id: str) -> Attempt | None:
        """Works one entry as far as it goes; None when another process is working it."""
        if not self.outbox.acquire(fill_id, LEASE_SECONDS):
            return None
        self._leased()
        sent = 0
        try:
            entry = self.outbox.get(fill_id)
            assert entry is not None
            fill, sent = await self._deliver(entry)
            self.outbox.mark_queued(fill_id, fill["state"])
            self._note_decision(fill)
            return Attempt(fill_id, QUEUED, sent_bytes=sent, fill=fill)
        except ApiError as exc:
            return await self._failed_attempt(fill_id, exc, sent)
        except (OSError, ValueError, KeyError) as exc:
            # Something on this computer (a file, a surprising answer): keep the entry and try later.
            log.exception("fill %s could not be worked", fill_id)
            message = f"Could not be sent from this computer: {type(exc).__name__}: {exc}"
            return await self._failed_attempt(fill_id, ApiError(message, transient=True), sent)
        finally:
            self.outbox.release(fill_id)

    async def _failed_attempt(self, fill_id: str, exc: ApiError, sent: int) -> Attempt:
        if exc.code == "not_draft":
            # The fill went past the draft in an attempt whose answer was lost: it was delivered.
            with contextlib.suppress(ApiError):
                fill = await self.api.fill(fill_id)
                if fill["state"] in PAST_SUBMISSION:
                    self.outbox.mark_queued(fill_id, fill["state"])
                    self._note_decision(fill)
                    return Attempt(fill_id, QUEUED, sent_bytes=sent, fill=fill)
        entry = self.outbox.get(fill_id)
        attempts = entry.attempts if entry else 0
        if exc.transient or _passing(exc):
            wait = backoff.delay(
                attempts, self.config.retry_base_seconds, self.config.retry_max_seconds, self.rng
            )
            self.outbox.retry_later(fill_id, exc.message, wait)
            log.info("fill %s not delivered yet (%s); next try in %.0fs", fill_id, exc.message, wait)
            return Attempt(fill_id, entry.state if entry else PENDING, exc.message, sent, code=exc.code)
        self.outbox.mark_failed(fill_id, exc.message, code=exc.code, detail=exc.detail)
        log.warning("fill %s refused by the server: %s", fill_id, exc.message)
        return Attempt(fill_id, FAILED, exc.message, sent, code=exc.code)

    async def _prepare(self, entry: Entry) -> Entry:
        """Makes the upload copy of each file (re-encoded for the link) once; kept in the outbox."""
        todo = [f for f in entry.files if not (f.prepared is not None and f.sha256 and f.prepared.exists())]
        if not todo:
            return entry
        for f in todo:
            if not f.original.exists():
                # Deleted from the outbox's folder: no retry brings it back, the technician must.
                name = KIND_NAMES.get(f.kind, f.kind)
                raise ApiError(
                    f"The {name} kept in the outbox is gone ({f.original.name}): give the photo again.",
                    code="original_missing",
                    detail={"kind": f.kind},
                    transient=False,
                )
        gate = asyncio.Semaphore(2)  # two photos at a time: the CPU is busy, memory stays small

        async def one(f: OutboxFile) -> None:
            async with gate:
                prepared = await asyncio.to_thread(
                    prepare_file,
                    f.original,
                    f.kind,
                    f.original.parent / f"{f.position:02d}-{f.kind}-upload.jpg",
                    long_edge=self.config.long_edge,
                    quality=self.config.jpeg_quality,
                )
            self.outbox.set_prepared(f.id, prepared.path, prepared.sha256, prepared.size)

        await asyncio.gather(*(one(f) for f in todo))
        fresh = self.outbox.get(entry.fill_id)
        assert fresh is not None
        return fresh

    async def _create_and_prepare(self, entry: Entry) -> tuple[dict[str, Any], Entry]:
        """Creates the fill on the server while the photos are made ready here: one waits on the link,
        the other on the CPU."""
        preparing = asyncio.ensure_future(self._prepare(entry))
        try:
            _, fill = await self.api.create_fill(entry.body)
        except BaseException:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await preparing
            raise
        return fill, await preparing

    async def _deliver(self, entry: Entry) -> tuple[dict[str, Any], int]:
        sent = 0
        fill, entry = await self._create_and_prepare(entry)
        if fill["state"] in PAST_SUBMISSION:
            return fill, sent
        if entry.state == PENDING:
            rx_number = (fill.get("prescription") or {}).get("rx_number")
            self.outbox.set_state(entry.fill_id, CREATED, fill_state=fill["state"], rx_number=rx_number)
        stored = {(m["kind"], m["sha256"]): int(m["id"]) for m in fill.get("media", [])}
        for f in entry.files:
            if f.media_id is None and (f.kind, f.sha256) in stored:
                self.outbox.set_media_id(f.id, stored[(f.kind, f.sha256)])
        fresh = self.outbox.get(entry.fill_id)
        assert fresh is not None
        sent += await self._upload_all([f for f in fresh.files if f.media_id is None])
        self.outbox.set_state(entry.fill_id, UPLOADED)
        try:
            fill = await self.api.submit_fill(entry.fill_id)
        except ApiError as exc:
            if exc.code == "media_missing":
                missing = [str(k) for k in exc.detail.get("missing", [])]
                lacking = [k for k in missing if k not in entry.kinds()]
                if lacking:
                    # A view the site requires and this fill never had: retrying cannot bring it.
                    names = " and the ".join(KIND_NAMES.get(k, k) for k in lacking)
                    raise ApiError(
                        f"The server needs the {names}, which this fill does not have.",
                        status=exc.status,
                        code=exc.code,
                        detail={"missing": lacking},
                        transient=False,
                    ) from exc
                # The server lost what it had stored: send those again.
                self.outbox.forget_media(entry.fill_id, missing)
                raise ApiError(exc.message, status=exc.status, code=exc.code, transient=True) from exc
            raise
        if fill["state"] not in PAST_SUBMISSION:
            raise ApiError(f"The server has the fill as {fill['state']}, not queued yet.", transient=True)
        return fill, sent

    async def _upload_all(self, files: Sequence[OutboxFile]) -> int:
        """Uploads files side by side: the link stays busy while the server verifies the previous one."""
        gate = asyncio.Semaphore(max(1, self.config.parallel_uploads))

        async def one(f: OutboxFile) -> int:
            async with gate:
                return await self._upload(f)

        results = await asyncio.gather(*(one(f) for f in files), return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        for error in errors:
            if not isinstance(error, ApiError):
                raise error
        # A refusal that will not change outweighs a dropped link: say it now, do not retry.
        for error in sorted(errors, key=lambda e: isinstance(e, ApiError) and e.transient):
            raise error
        return sum(r for r in results if isinstance(r, int))

    async def _upload(self, f: OutboxFile) -> int:
        assert f.prepared is not None and f.sha256 is not None and f.bytes is not None
        metadata = {"fill_id": f.fill_id, "kind": f.kind, "filename": upload_name(f), "sha256": f.sha256}

        async def stored() -> int | None:
            fill = await self.api.fill(f.fill_id)
            same = (m for m in fill.get("media", []) if (m["kind"], m["sha256"]) == (f.kind, f.sha256))
            return next((int(m["id"]) for m in same), None)

        try:
            done = await self._sending(f, metadata, stored)
        except ApiError as exc:
            if exc.transient or exc.code == "not_draft":
                raise
            # Which photo was refused, so that `tp-site outbox` can say which one to retake.
            raise ApiError(
                exc.message, status=exc.status, code=exc.code or "photo_refused",
                detail={**exc.detail, "kind": f.kind}, transient=False,
            ) from exc  # fmt: skip
        self.outbox.set_media_id(f.id, done.media_id)
        return done.sent_bytes

    async def _sending(
        self, f: OutboxFile, metadata: dict[str, str], stored: Callable[[], Awaitable[int | None]]
    ) -> Delivered:
        assert f.prepared is not None and f.bytes is not None
        return await self._send_file(
            f.prepared,
            size=f.bytes,
            metadata=metadata,
            url=f.upload_url,
            remember_url=lambda u: self.outbox.set_upload_url(f.id, u),
            label=KIND_NAMES.get(f.kind, f.kind),
            renew=lambda seconds: self.outbox.renew(f.fill_id, seconds),
            stored=stored,
            # A fill submitted meanwhile: the attempt learns so from the fill, not as a refused file.
            passed_on=frozenset({"not_draft"}),
        )

    def _note_decision(self, fill: dict[str, Any]) -> None:
        decision = fill.get("decision")
        if fill.get("state") in DECIDED and decision:
            self.outbox.record_decision(
                fill["id"],
                fill["state"],
                decision.get("outcome"),
                decision.get("reason_codes") or [],
                decision.get("note"),
            )

    # -- many attempts ---------------------------------------------------------------------------

    async def deliver(self, fill_id: str, *, patience: float) -> Attempt:
        """Tries one entry until it is delivered, refused, or `patience` seconds are spent; a refused
        device token ends it at once (the entry waits for the computer to be enrolled again)."""
        deadline = time.monotonic() + patience
        last = Attempt(fill_id, PENDING)
        while True:
            result = await self.attempt(fill_id)
            if result is not None:
                last = result
                if result.state in (QUEUED, FAILED) or result.token_refused:
                    return result
            entry = self.outbox.get(fill_id)
            if entry is None or entry.state not in OPEN_STATES:
                return Attempt(fill_id, entry.state if entry else FAILED, last.error)
            wait = max(0.2, entry.next_attempt_at - time.time()) if result is not None else 1.0
            if time.monotonic() + wait > deadline:
                return last
            await asyncio.sleep(wait)

    async def drain(
        self, fill_ids: Sequence[str] | None = None, *, ignore_backoff: bool = False
    ) -> list[Attempt]:
        """One attempt at each due entry (or each open entry, ignoring backoff), oldest first."""
        if fill_ids is None:
            fill_ids = (
                [e.fill_id for e in reversed(self.outbox.entries([PENDING, CREATED, UPLOADED]))]
                if ignore_backoff
                else self.outbox.due()
            )
        results = []
        for fill_id in fill_ids:
            result = await self.attempt(fill_id)
            if result is not None:
                results.append(result)
        return results

    async def run(self, stop: asyncio.Event, wake: asyncio.Event) -> None:
        """The long-running service: drain what is due, prune, sleep until the next entry is due."""
        while not stop.is_set():
            wake.clear()
            await self.drain()
            self.outbox.prune(self.config.retention_days)
            await idle(stop, wake, self.outbox.next_due_at())


def _passing(exc: ApiError) -> bool:
    """A conflict that names no lasting cause (the fill changed while it was submitted): try again."""
    return exc.status == 409 and exc.code in ("", "conflict")


def upload_name(f: OutboxFile) -> str:
    """The file name sent in Upload-Metadata: the technician's name, with the prepared file's suffix."""
    if f.prepared is not None and f.prepared != f.original:
        return Path(f.filename).stem[:100] + f.prepared.suffix
    return f.filename
