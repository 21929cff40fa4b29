"""Recording a consultation: only after the site recorded the patient's consent on the consultation,
as mp4, uploaded over tus as media of the consultation (the same store and verification as a fill's
media), readable by the two parties and admins only."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from pathlib import Path

import av
import pytest
from aiohttp import ClientResponse
from playwright.async_api import Browser, expect
from sqlalchemy import func, select

from remote_site_client import config as site_config
from remote_site_client.api import SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.consult import Consultation, ConsultError
from remote_site_client.outbox import DELIVERED, Outbox
from server.db.models import Media
from tests.api.world import User, World, sha256, tus_metadata
from tests.browser.conftest import WorldFactory, base_url, sign_in
from tests.consult.samples import SECRET_TITLE, recording_mp4
from tests.consult.wire import audit_of

TUS = {"Tus-Resumable": "1.0.0"}


async def create_upload(
    user: User, cid: int, data: bytes, filename: str = "consultation.mp4", **extra: str
) -> ClientResponse:
    meta = {"consultation_id": str(cid), "kind": "consultation_recording", "filename": filename}
    meta |= {"sha256": sha256(data), **extra}
    return await user.post(
        "/api/v1/uploads",
        headers={**TUS, "Upload-Length": str(len(data)), "Upload-Metadata": tus_metadata(**meta)},
    )


async def patch(user: User, location: str, data: bytes, offset: int = 0) -> ClientResponse:
    headers = {**TUS, "Upload-Offset": str(offset), "Content-Type": "application/offset+octet-stream"}
    return await user.request("PATCH", location, data=data, headers=headers)


async def upload_recording(
    user: User, cid: int, data: bytes, filename: str = "consultation.mp4"
) -> ClientResponse:
    """The whole file in one tus upload; the last response (the PATCH's, or the refused creation)."""
    created = await create_upload(user, cid, data, filename)
    if created.status != 201:
        return created
    return await patch(user, created.headers["Location"], data)


async def consented_call(world: World) -> tuple[User, User, int]:
    """ND-1's device asks, nd_rph takes the call, the site records the patient's consent."""
    site, nd = await world.device("tech_nd1"), await world.login("nd_rph")
    c = await site.json("POST", "/api/v1/consultations", 201, json={"recording_consent": True})
    await nd.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    await site.json("POST", f"/api/v1/consultations/{c['id']}/consent")
    return site, nd, int(c["id"])


async def stored_media(world: World) -> int:
    async with world.services.db.read() as s:
        return int((await s.execute(select(func.count()).select_from(Media))).scalar_one())


def store_files(world: World) -> list[Path]:
    root = world.services.config.media_dir
    return [p for p in root.rglob("*") if p.is_file()] if root.exists() else []


async def test_a_recording_without_recorded_consent_is_refused_and_nothing_is_stored(
    world: World, tmp_path: Path
) -> None:
    site, nd = await world.device("tech_nd1"), await world.login("nd_rph")
    # Asked with consent in mind, but the site never recorded the patient's consent on the record.
    c = await site.json("POST", "/api/v1/consultations", 201, json={"recording_consent": True})
    await nd.json("POST", f"/api/v1/consultations/{c['id']}/accept")
    data = recording_mp4(tmp_path / "call.mp4").read_bytes()

    refused = await upload_recording(site, c["id"], data)

    body = await refused.json()
    assert refused.status == 409 and body["error"] == "no_consent", body
    assert "consent" in body["message"]
    assert await stored_media(world) == 0 and store_files(world) == []
    assert list(world.services.config.upload_dir.iterdir()) == []  # no upload was even created
    assert (await nd.json("GET", f"/api/v1/consultations/{c['id']}"))["recording"] is None
    assert (await nd.get(f"/api/v1/consultations/{c['id']}/recording")).status == 404
    # The pharmacist on the call records only their own consent: the patient's is the site's act.
    mine = await nd.json("POST", f"/api/v1/consultations/{c['id']}/consent")
    assert mine["pharmacist_consent_at"] and mine["recording_consent_at"] is None
    assert (
        await (await world.login("both_rph")).post(f"/api/v1/consultations/{c['id']}/consent")
    ).status == 403


async def test_a_recording_is_media_of_its_consultation_for_the_two_parties_and_admins(
    world: World, tmp_path: Path
) -> None:
    site, nd, cid = await consented_call(world)
    data = recording_mp4(tmp_path / "call.mp4", seconds=2, metadata={"title": SECRET_TITLE}).read_bytes()

    # Another site and pharmacists cannot start an upload for it.
    other_site = await world.device("tech_nd2")
    assert (await create_upload(other_site, cid, data)).status == 404
    assert (await create_upload(await world.login("both_rph"), cid, data)).status == 403

    done = await upload_recording(site, cid, data)
    assert done.status == 204, await done.text()
    media_id = int(done.headers["Tp-Media-Id"])

    record = await nd.json("GET", f"/api/v1/consultations/{cid}")
    recording = record["recording"]
    assert recording["id"] == media_id and recording["kind"] == "consultation_recording"
    assert recording["sha256"] == sha256(data) and recording["bytes"] == len(data)
    assert recording["url"] == f"/api/v1/media/{media_id}"
    assert recording["variants"] == ["full", "poster"]
    assert recording["duration_seconds"] == pytest.approx(2.0, abs=0.2)
    async with world.services.db.read() as s:
        media = (await s.execute(select(Media))).scalar_one()
    assert media.consultation_id == cid and media.fill_id is None

    # The two parties and an admin fetch it through the media route and the recording route.
    admin = await world.login("admin")
    for who in (nd, site, admin):
        for path in (f"/api/v1/media/{media_id}", f"/api/v1/consultations/{cid}/recording"):
            got = await who.get(path)
            assert got.status == 200 and got.headers["Content-Type"] == "video/mp4", (who.username, path)
        poster = await who.get(f"/api/v1/consultations/{cid}/recording?variant=poster")
        assert poster.status == 200 and poster.headers["Content-Type"] == "image/jpeg"
    ranged = await nd.get(f"/api/v1/media/{media_id}", headers={"Range": "bytes=0-99"})
    assert ranged.status == 206 and len(await ranged.read()) == 100

    # An unrelated pharmacist licensed in the site's state, another site, another state: nothing.
    for outsider in (await world.login("both_rph"), other_site, await world.login("mn_rph")):
        for path in (f"/api/v1/media/{media_id}", f"/api/v1/consultations/{cid}/recording"):
            assert (await outsider.get(path)).status == 404, (outsider.username, path)

    # The stored recording is the remuxed copy: audio and video kept, container metadata gone.
    served = await (await nd.get(f"/api/v1/media/{media_id}")).read()
    assert SECRET_TITLE.encode() not in served and b"PATIENT" not in served
    copy = tmp_path / "served.mp4"
    copy.write_bytes(served)
    with av.open(str(copy)) as container:
        assert container.format.name.startswith("mov,mp4")
        assert sorted(st.type for st in container.streams) == ["audio", "video"]
        assert set(container.metadata) <= {"major_brand", "minor_version", "compatible_brands", "encoder"}
        for stream in container.streams:
            assert set(stream.metadata) <= {"handler_name", "vendor_id", "language", "encoder"}, (
                stream.metadata
            )

    # Stored and audited once, with ids and digests only.
    audit = [detail for action, detail in await audit_of(world, cid) if action == "consultation.recording"]
    assert audit == [{"media_id": media_id, "sha256": sha256(data), "bytes": len(data)}]
    assert "PATIENT" not in json.dumps(audit) and "Jane" not in json.dumps(audit)


async def test_a_recording_is_stored_once_and_a_retried_upload_is_the_same_media(
    world: World, tmp_path: Path
) -> None:
    site, nd, cid = await consented_call(world)
    data = recording_mp4(tmp_path / "call.mp4", seconds=1).read_bytes()
    first = await upload_recording(site, cid, data)
    assert first.status == 204, await first.text()

    again = await upload_recording(site, cid, data)
    assert again.status == 204 and again.headers["Tp-Media-Id"] == first.headers["Tp-Media-Id"]

    other = recording_mp4(tmp_path / "other.mp4", seconds=2).read_bytes()
    refused = await upload_recording(site, cid, other)
    assert refused.status == 409 and (await refused.json())["error"] == "recording_exists"
    assert await stored_media(world) == 1
    recorded = [a for a, _ in await audit_of(world, cid) if a == "consultation.recording"]
    assert recorded == ["consultation.recording"]
    assert (await nd.json("GET", f"/api/v1/consultations/{cid}"))["recording"]["sha256"] == sha256(data)


async def test_an_interrupted_recording_upload_resumes_from_the_servers_offset(
    world: World, tmp_path: Path
) -> None:
    site, nd, cid = await consented_call(world)
    data = recording_mp4(tmp_path / "call.mp4", seconds=2, size=(320, 240), noise=True).read_bytes()
    created = await create_upload(site, cid, data)
    location = created.headers["Location"]
    half = len(data) // 2
    assert (await patch(site, location, data[:half])).status == 204

    head = await site.request("HEAD", location, headers=TUS)
    offset = int(head.headers["Upload-Offset"])
    assert offset == half
    # Another site cannot see or continue it.
    assert (await (await world.device("tech_nd2")).request("HEAD", location, headers=TUS)).status == 404
    done = await patch(site, location, data[offset:], offset)

    assert done.status == 204, await done.text()
    recording = (await nd.json("GET", f"/api/v1/consultations/{cid}"))["recording"]
    assert recording["id"] == int(done.headers["Tp-Media-Id"]) and recording["sha256"] == sha256(data)


async def test_a_recording_must_be_an_mp4(world: World, tmp_path: Path) -> None:
    site, _, cid = await consented_call(world)
    webm = recording_mp4(tmp_path / "call.webm", fmt="webm", codec="libvpx", seconds=1).read_bytes()

    # Named as what it is: refused before a byte is sent.
    by_name = await create_upload(site, cid, webm, filename="call.webm")
    assert by_name.status == 415 and (await by_name.json())["error"] == "not_mp4"
    # Named .mp4: refused by its content once it arrived.
    for content in (webm, b"Not a video at all, just a note a technician picked by mistake.\n" * 50):
        refused = await upload_recording(site, cid, content)
        body = await refused.json()
        assert refused.status == 415 and body["error"] == "not_mp4", body
        assert "MP4" in body["message"]
    assert await stored_media(world) == 0 and store_files(world) == []
    assert list(world.services.config.upload_dir.iterdir()) == []

    too_big = world.services.config.max_recording_bytes + 1
    meta = tus_metadata(
        consultation_id=str(cid), kind="consultation_recording", filename="c.mp4", sha256="0" * 64
    )
    created = await site.post(
        "/api/v1/uploads", headers={**TUS, "Upload-Length": str(too_big), "Upload-Metadata": meta}
    )
    assert created.status == 413
    both = await create_upload(site, cid, webm, fill_id="f")
    assert both.status == 400
    with pytest.raises(ConsultError, match="mp4"):
        Consultation(
            SiteApi(SiteConfig(server_url="http://x", token="t", data_dir=Path("/nonexistent"))),
            record_to="a.webm",
        )


@pytest.mark.browser
async def test_tp_site_consult_record_goes_through_the_outbox_to_the_two_parties(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    console = await sign_in(browser, world, "nd_rph")
    page = console.page
    config = tmp_path / "site.json"
    site_config.save(
        SiteConfig(
            server_url=base_url(world).rstrip("/"), token=world.tokens["tech_nd1"], data_dir=tmp_path / "site"
        ),
        config,
    )
    recording = tmp_path / "call.mp4"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "remote_site_client", "--config", str(config), "consult", "--camera", "test",
        "--record", str(recording), "--max-seconds", "4",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await page.locator(".consult-request .consult-accept").click(timeout=15000)
        await expect(page.locator("#consult-panel")).to_have_attribute(
            "data-state", "connected", timeout=15000
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, err.decode()
        assert "Recording (consent recorded)." in err.decode()
        cid = int(out.decode().split("consultation ")[1].split(":")[0])
        assert f"recording of consultation {cid}: delivered" in out.decode()

        nd = await world.login("nd_rph")
        record = await nd.json("GET", f"/api/v1/consultations/{cid}")
        assert record["recording_consent"] and record["recording_consent_at"] <= record["connected_at"]
        with av.open(str(recording)) as container:
            assert container.format.name.startswith("mov,mp4")
            assert sorted(s.type for s in container.streams) == ["audio", "video"]
            frames = sum(1 for _ in container.decode(video=0))
        assert frames >= 20
        sha = hashlib.sha256(recording.read_bytes()).hexdigest()
        stored = record["recording"]
        assert stored["sha256"] == sha and stored["bytes"] == recording.stat().st_size
        assert stored["kind"] == "consultation_recording" and stored["duration_seconds"] > 1
        # Served as media of the consultation: the remuxed copy, with its sound (consent was recorded).
        got = await nd.get(f"/api/v1/consultations/{cid}/recording")
        assert got.status == 200 and got.headers["Content-Type"] == "video/mp4"
        served = tmp_path / "served.mp4"
        served.write_bytes(await got.read())
        with av.open(str(served)) as container:
            assert sorted(s.type for s in container.streams) == ["audio", "video"]
            assert sum(1 for _ in container.decode(video=0)) >= 20
        assert (await nd.get(stored["url"])).status == 200
        assert (await (await world.device("tech_nd1")).get(stored["url"])).status == 200
        for outsider in (await world.login("both_rph"), await world.device("tech_nd2")):
            assert (await outsider.get(f"/api/v1/consultations/{cid}/recording")).status == 404
            assert (await outsider.get(stored["url"])).status == 404
        with Outbox(tmp_path / "site") as outbox:  # delivered, so the outbox's copy is gone
            assert outbox.recordings() == []
            (delivered,) = outbox.recordings([DELIVERED])
            assert delivered.sha256 == sha and delivered.media_id == stored["id"]
            assert not delivered.path.exists()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
        await console.context.close()
