"""Call recordings in the outbox, delivered as media of their consultations (no aiortc needed here)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp

from remote_site_client.api import ApiError, SiteApi
from remote_site_client.outbox import FAILED, Outbox


async def _chunks(path: Path, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    f = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk
    finally:
        f.close()


async def deliver_recordings(api: SiteApi, outbox: Outbox) -> list[tuple[int, str, str | None]]:
    """Uploads the outbox's call recordings as media of their consultations; (id, state, error) each.

    A refusal (no recorded consent, not an mp4) is final; a network error leaves it for the next run.
    """
    results: list[tuple[int, str, str | None]] = []
    for rec in outbox.recordings():
        cid = int(rec["consultation_id"])
        path = Path(rec["path"])
        try:
            async with api.session.put(
                api.url(f"/api/v1/consultations/{cid}/recording"),
                data=_chunks(path),
                headers={"X-Content-SHA256": rec["sha256"], "Content-Type": "video/mp4"},
            ) as resp:
                if resp.status >= 400:
                    text = (await resp.text())[:300]
                    state = FAILED if 400 <= resp.status < 500 and resp.status != 408 else "pending"
                    outbox.mark_recording(cid, state, f"HTTP {resp.status}: {text}")
                    results.append((cid, state, text))
                    continue
            outbox.mark_recording(cid, "delivered")
            results.append((cid, "delivered", None))
        except (aiohttp.ClientError, OSError, TimeoutError, ApiError) as exc:
            outbox.mark_recording(cid, "pending", str(exc))
            results.append((cid, "pending", str(exc)))
    return results
