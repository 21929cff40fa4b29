"""Recording a consultation: only after the site recorded the patient's consent on the consultation,
as mp4, delivered through the site's outbox as media of the consultation, readable by the two parties."""

from __future__ import annotations

import asyncio
import hashlib
import sys
from pathlib import Path

import av
import pytest
from playwright.async_api import Browser, expect

from remote_site_client import config as site_config
from remote_site_client.api import SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.consult import Consultation, ConsultError
from remote_site_client.outbox import Outbox
from tests.api.world import World
from tests.browser.conftest import WorldFactory, base_url, sign_in


async def test_a_recording_needs_recorded_consent_and_is_an_mp4(world: World) -> None:
    site = await world.device("tech_nd1")
    c = await site.json("POST", "/api/v1/consultations", 201, json={})
    url = f"/api/v1/consultations/{c['id']}"
    fake = b"\x00\x00\x00\x18ftypisom" + b"\x00" * 64
    sha = hashlib.sha256(fake).hexdigest()
    put = {"data": fake, "headers": {"X-Content-SHA256": sha}}
    assert (await site.request("PUT", f"{url}/recording", **put)).status == 409  # no consent yet
    nd = await world.login("nd_rph")
    await nd.json("POST", f"{url}/accept")
    assert (await nd.post(f"{url}/consent")).status == 403  # the site records the patient's consent
    assert (await (await world.device("tech_nd2")).post(f"{url}/consent")).status == 404
    consented = await site.json("POST", f"{url}/consent")
    assert consented["recording_consent"] is True and consented["recording_consent_at"]
    bad = {"data": fake, "headers": {"X-Content-SHA256": "0" * 64}}
    assert (await site.request("PUT", f"{url}/recording", **bad)).status == 400
    webm = b"\x1a\x45\xdf\xa3" + b"\x00" * 64
    not_mp4 = {"data": webm, "headers": {"X-Content-SHA256": hashlib.sha256(webm).hexdigest()}}
    assert (await site.request("PUT", f"{url}/recording", **not_mp4)).status == 400
    assert (await site.request("PUT", f"{url}/recording", **put)).status == 200
    assert (await nd.json("GET", url))["recording"] == {
        "sha256": sha,
        "bytes": len(fake),
        "content_type": "video/mp4",
    }
    assert (await (await world.login("both_rph")).get(f"{url}/recording")).status == 404
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
        await page.locator(".consult-request button").click(timeout=15000)
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
        assert (
            record["recording"]["sha256"] == sha and record["recording"]["bytes"] == recording.stat().st_size
        )
        got = await nd.get(f"/api/v1/consultations/{cid}/recording")
        assert got.status == 200 and got.headers["Content-Type"] == "video/mp4"
        assert hashlib.sha256(await got.read()).hexdigest() == sha
        assert (
            await (await world.device("tech_nd1")).get(f"/api/v1/consultations/{cid}/recording")
        ).status == 200
        for outsider in (await world.login("both_rph"), await world.device("tech_nd2")):
            assert (await outsider.get(f"/api/v1/consultations/{cid}/recording")).status == 404
        with Outbox(tmp_path / "site") as outbox:  # delivered, so no longer kept
            assert outbox.recordings() == [] and outbox.recordings(("delivered",))[0]["sha256"] == sha
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.communicate()
        await console.context.close()
