"""A consultation's recording leaves the site through the outbox, over tus, as media of the consultation:
a killed sender resumes from the server's offset, `tp-site sync` retries while the link is down, and a
refusal is final and shown with its reason."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from remote_site_client.api import SiteApi
from remote_site_client.outbox import DELIVERED, FAILED, PENDING, Outbox, Recording
from remote_site_client.tus import TusClient
from tests.consult.samples import recording_mp4
from tests.site_client.proxy import LinkProxy
from tests.site_client.world import Pharmacist, ServerProcess, Site, make_site, site_api


async def consultation(server_url: str, token: str, *, consent: bool = True) -> int:
    """The site asks for counselling, the pharmacist takes it; with `consent` the site records it."""
    status, body = await site_api(
        server_url, token, "POST", "/api/v1/consultations", {"recording_consent": consent}
    )
    assert status == 201, body
    cid = int(body["id"])
    async with Pharmacist(server_url) as rph:
        await rph.call("POST", f"/api/v1/consultations/{cid}/accept")
    if consent:
        status, body = await site_api(server_url, token, "POST", f"/api/v1/consultations/{cid}/consent", {})
        assert status == 200, body
    return cid


def recording_of(site: Site, cid: int) -> Recording:
    with Outbox(site.config.data_dir) as outbox:
        rec = outbox.recording(cid)
    assert rec is not None
    return rec


async def until_recording(site: Site, cid: int, ok: Any, timeout: float = 30) -> Recording:
    async with asyncio.timeout(timeout):
        while not ok(rec := recording_of(site, cid)):
            await asyncio.sleep(0.1)
    return rec


async def stop(proc: asyncio.subprocess.Process) -> tuple[str, str]:
    if proc.returncode is None:
        proc.terminate()
    out, err = await proc.communicate()
    return out.decode(), err.decode()


async def test_sync_killed_mid_recording_resumes_from_the_servers_offset_and_delivers_it_as_media(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    cid = await consultation(server.url, token)
    call = recording_mp4(tmp_path / "call.mp4", seconds=3, size=(480, 360), noise=True)
    size = call.stat().st_size
    assert size > 1_500_000
    proxy = LinkProxy("127.0.0.1", server.port, up_rate=1_000_000)
    await proxy.start()
    try:
        site = make_site(tmp_path, proxy.url, token)
        with Outbox(site.config.data_dir) as outbox:
            added = outbox.add_recording(cid, call)
        service = await site.start("sync")
        try:
            async with asyncio.timeout(30):
                while proxy.stats.up_bytes < size // 3:
                    await asyncio.sleep(0.02)
        finally:
            service.kill()  # SIGKILL: no cleanup of any kind
            proxy.cut()  # the link goes down with the computer, so no buffered byte arrives later
            await service.communicate()

        cut = recording_of(site, cid)
        assert cut.state == PENDING and cut.upload_url, cut
        # The server kept what arrived; wait until its offset stops moving.
        held, last = 0, -1
        async with SiteApi(site.config) as api, asyncio.timeout(10):
            while held != last or held == 0:
                await asyncio.sleep(0.3)
                last, held = held, await TusClient(api).offset(cut.upload_url) or 0
        assert 0 < held < size

        proxy.reset_counts()
        proxy.up_rate = None
        service = await site.start("sync")
        try:
            done = await until_recording(site, cid, lambda r: r.state != PENDING)
        finally:
            out, err = await stop(service)
        resent = proxy.stats.up_bytes
    finally:
        await proxy.stop()

    assert done.state == DELIVERED, (done, out, err)
    # Only what the server did not have went again (plus a few requests' headers), not the whole file.
    assert size - held <= resent < size - held + 30_000, (held, resent, size)
    assert not done.path.exists()  # delivered: the outbox's copy is gone
    async with Pharmacist(server.url) as rph:
        record = await rph.call("GET", f"/api/v1/consultations/{cid}")
        stored = record["recording"]
        assert stored["id"] == done.media_id and stored["sha256"] == added.sha256 and stored["bytes"] == size
        async with rph.http.get(server.url + f"/api/v1/consultations/{cid}/recording") as resp:
            assert resp.status == 200 and resp.headers["Content-Type"] == "video/mp4"


async def test_tp_site_sync_retries_a_recording_with_backoff_until_the_link_is_back(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    cid = await consultation(server.url, token)
    proxy = LinkProxy("127.0.0.1", server.port)
    await proxy.start()
    try:
        proxy.down = True
        site = make_site(tmp_path, proxy.url, token)
        with Outbox(site.config.data_dir) as outbox:
            outbox.add_recording(cid, recording_mp4(tmp_path / "call.mp4", seconds=1))
        service = await site.start("sync")
        try:
            waiting = await until_recording(site, cid, lambda r: r.attempts >= 3)
            assert waiting.state == PENDING and "cannot be reached" in (waiting.last_error or "")
            code, out, err = await site.run("outbox")
            assert code == 0 and f"recording of consultation {cid}" in out and "pending" in out, out + err
            proxy.down = False
            done = await until_recording(site, cid, lambda r: r.state != PENDING)
        finally:
            out, err = await stop(service)
    finally:
        await proxy.stop()
    assert done.state == DELIVERED and done.media_id, (done, out, err)
    assert service.returncode == 0


async def test_a_recording_without_consent_is_refused_for_good_and_shown_with_the_reason(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    cid = await consultation(server.url, token, consent=False)
    site = make_site(tmp_path, server.url, token)
    with Outbox(site.config.data_dir) as outbox:
        outbox.add_recording(cid, recording_mp4(tmp_path / "call.mp4", seconds=1))

    code, out, err = await site.run("sync", "--once")
    assert code == 4, out + err
    assert f"recording of consultation {cid}: REFUSED by the server" in out and "consent" in out

    refused = recording_of(site, cid)
    assert refused.state == FAILED and refused.attempts == 1 and "consent" in (refused.failed_reason or "")
    code, out, _ = await site.run("sync", "--once")  # final: not sent again by itself
    assert code == 0 and "recording" not in out
    assert recording_of(site, cid).attempts == 1
    code, out, _ = await site.run("outbox")
    assert "REFUSED" in out and "refused:" in out and "consent" in out
    status, body = await site_api(server.url, token, "GET", f"/api/v1/consultations/{cid}")
    assert status == 200 and body["recording"] is None
