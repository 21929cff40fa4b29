"""A call survives a short network blip: the site re-offers on a fresh peer connection inside the same
consultation (aiortc cannot restart ICE), the console answers on a fresh one, media flows again and the
record counts the reconnection. A blip that does not heal ends the call on both sides with its reason.
Chromium (fake camera) is the pharmacist, the aiortc site client the patient's kiosk."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import av
import pytest
from aiohttp.test_utils import TestServer
from aioice.ice import StunProtocol
from playwright.async_api import Browser, Page, WebSocketRoute, expect

from remote_site_client.api import SiteApi
from remote_site_client.config import SiteConfig
from remote_site_client.consult import CallResult, Consultation, TestPattern, Timeouts
from server.app import create_app
from tests.api.world import World, build_world, server_config
from tests.browser.conftest import WorldFactory, base_url, sign_in
from tests.consult.wire import audit_of

pytestmark = pytest.mark.browser

PANEL = "document.getElementById('consult-panel')"


class _MutedTransport:
    """A UDP socket on a dead link: whatever is sent is lost."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def sendto(self, data: bytes, addr: Any = None) -> None:
        return None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def ice_of(kiosk: Consultation) -> Any:
    assert kiosk.pc is not None
    return kiosk.pc.getTransceivers()[0].receiver.transport.transport


def blip(kiosk: Consultation) -> None:
    """The site's current media path goes silent both ways, and nothing tells either side."""
    for protocol in ice_of(kiosk)._connection._protocols:
        protocol.transport = _MutedTransport(protocol.transport)
        protocol.datagram_received = lambda data, addr: None


WATCH_STATES = """() => {
  const panel = document.getElementById('consult-panel');
  window.consultStates = [];
  new MutationObserver(() => window.consultStates.push(
    [panel.dataset.state, document.getElementById('consult-state').textContent])
  ).observe(panel, { attributes: true, attributeFilter: ['data-state'] });
}"""


async def states_seen(page: Page) -> list[list[str]]:
    """Every (state, text) the call panel showed since WATCH_STATES ran, however briefly."""
    seen: list[list[str]] = await page.evaluate("window.consultStates")
    return seen


async def frames_in(page: Page) -> int:
    return int(await page.evaluate(f"Number({PANEL}.dataset.framesIn || 0)"))


async def frames_flow_again(page: Page, kiosk: Consultation, seconds: float = 10) -> None:
    """Frames arrive anew on both sides: at the browser (its counter grows) and at the site."""
    site_before, browser_before = kiosk.result.frames_received, await frames_in(page)
    async with asyncio.timeout(seconds):
        while kiosk.result.frames_received < site_before + 20 or await frames_in(page) < browser_before + 20:
            await asyncio.sleep(0.1)


async def until_true(check: Callable[[], bool], seconds: float, why: Callable[[], str] | None = None) -> None:
    """Waits until check() is true; `why` says what was seen if it never is."""
    try:
        async with asyncio.timeout(seconds):
            while not check():
                await asyncio.sleep(0.05)
    except TimeoutError:
        if why is None:
            raise
        raise AssertionError(why()) from None


async def _start_call(
    browser: Browser,
    world: World,
    site_url: str,
    tmp_path: Path,
    *,
    live_route: Callable[[WebSocketRoute], Awaitable[None]] | None = None,
    **kiosk_options: Any,
) -> tuple[Any, Consultation, asyncio.Task[CallResult], SiteApi, list[str]]:
    """The site (at site_url) asks; the pharmacist accepts in the console of world; the call connects.
    With `live_route`, the console's live connection goes through it."""
    console = await sign_in(browser, world, "nd_rph")
    if live_route is not None:
        await console.page.route_web_socket(re.compile(r"/api/v1/ws"), live_route)
        await console.page.reload()
        await expect(console.page.locator("#live")).to_have_attribute("data-state", "live")
    api = SiteApi(SiteConfig(server_url=site_url, token=world.tokens["tech_nd1"], data_dir=tmp_path / "site"))
    said: list[str] = []
    kiosk = Consultation(
        api, video=TestPattern(fps=20), max_seconds=90, on_status=said.append, **kiosk_options
    )
    site_task = asyncio.create_task(kiosk.run())
    try:
        await console.page.locator(".consult-request .consult-accept").click(timeout=15000)
        await expect(console.page.locator("#consult-panel")).to_have_attribute(
            "data-state", "connected", timeout=15000
        )
        await frames_flow_again(console.page, kiosk)
    except BaseException:
        # A call that never connected leaves nothing running for the next test to trip over.
        with contextlib.suppress(Exception):
            await _cleanup(console, kiosk, site_task, api)
        raise
    return console, kiosk, site_task, api, said


async def _cleanup(console: Any, kiosk: Consultation, task: asyncio.Task[CallResult], api: SiteApi) -> None:
    if not task.done():
        kiosk.hang_up()
        await asyncio.wait_for(task, 10)
    await api.close()
    await console.context.close()


async def test_a_network_blip_is_recovered_in_the_same_consultation(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    recording = tmp_path / "call.mp4"
    console, kiosk, task, api, said = await _start_call(
        browser,
        world,
        base_url(world).rstrip("/"),
        tmp_path,
        record_to=str(recording),
        request={"recording_consent": True},
    )
    page, panel = console.page, console.page.locator("#consult-panel")
    try:
        cid = kiosk.result.consultation_id
        first_pc = kiosk.pc

        # 1. A silent blip: only the browser notices (aiortc has no "disconnected" state) and asks the
        #    site for a new offer; the site answers with a fresh peer connection.
        await page.evaluate(WATCH_STATES)
        t_blip = time.monotonic()
        blip(kiosk)
        await until_true(
            lambda: kiosk.generation == 1,
            15,
            lambda: f"no new offer: the site said {said}, the console logged {console.logs[-10:]}",
        )
        noticed_s = time.monotonic() - t_blip
        await expect(panel).to_have_attribute("data-state", "connected", timeout=15000)
        recovered_s = time.monotonic() - t_blip
        assert await states_seen(page) == [["reconnecting", "Reconnecting…"], ["connected", "Connected"]]
        await frames_flow_again(page, kiosk)
        assert kiosk.pc is not first_pc and kiosk.generation == 1
        assert kiosk.result.reconnections == 1 and task.done() is False
        assert any(text.startswith("The media connection dropped. Reconnecting…") for text in said)
        await expect(panel).to_have_attribute("data-reconnections", "1")

        # 2. The site's own transport dies: the site notices and re-offers without being asked.
        second_pc = kiosk.pc
        await ice_of(kiosk).stop()
        await until_true(lambda: kiosk.result.reconnections == 2, 15)
        await expect(panel).to_have_attribute("data-state", "connected", timeout=10000)
        await frames_flow_again(page, kiosk)
        assert kiosk.pc is not second_pc and kiosk.result.consultation_id == cid

        # The site hangs up: both sides end within 5 s, one consultation all along.
        t_hangup = time.monotonic()
        kiosk.hang_up()
        result = await asyncio.wait_for(asyncio.shield(task), 5)
        await expect(panel).to_have_attribute("data-state", "ended", timeout=5000)
        assert time.monotonic() - t_hangup < 5
        assert result.reason == "hangup" and result.reconnections == 2 and result.consultation_id == cid

        record = await (await world.login("nd_rph")).json("GET", f"/api/v1/consultations/{cid}")
        assert record["reconnections"] == 2 and record["end_reason"] == "hangup"
        audit = await audit_of(world, cid)
        reconnected = [detail for action, detail in audit if action == "consultation.reconnected"]
        assert reconnected == [{"reconnections": 1}, {"reconnections": 2}]
        assert "sdp" not in json.dumps(audit) and "candidate" not in json.dumps(audit)

        # The recording goes on across both reconnections, in one file.
        with av.open(str(recording)) as container:
            assert sorted(s.type for s in container.streams) == ["audio", "video"]
            frames = sum(1 for _ in container.decode(video=0))
        assert frames >= 60
        print(f"silent blip: re-offered after {noticed_s:.1f} s, connected after {recovered_s:.1f} s")
    finally:
        await _cleanup(console, kiosk, task, api)


async def test_a_request_for_a_new_offer_lost_on_the_way_is_asked_again(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    lost: list[str] = []

    async def losing_the_first_request(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_console(message: str | bytes) -> None:
            if not lost and isinstance(message, str) and '"restart":true' in message:
                lost.append(message)  # never reaches the server
            else:
                server.send(message)

        ws.on_message(from_console)
        server.on_message(ws.send)

    console, kiosk, task, api, _ = await _start_call(
        browser, world, base_url(world).rstrip("/"), tmp_path, live_route=losing_the_first_request
    )
    panel = console.page.locator("#consult-panel")
    try:
        blip(kiosk)
        await until_true(lambda: kiosk.generation == 1, 15)
        assert len(lost) == 1
        await expect(panel).to_have_attribute("data-state", "connected", timeout=15000)
        await frames_flow_again(console.page, kiosk)
        assert kiosk.result.reconnections == 1 and task.done() is False
    finally:
        await _cleanup(console, kiosk, task, api)


# The console's next peer connection sends no video, as if its camera gave out on the new path.
NO_VIDEO_ON_NEXT_PEER = """() => {
  const Real = window.RTCPeerConnection;
  let done = false;
  window.RTCPeerConnection = function (...args) {
    const pc = new Real(...args);
    if (!done) {
      done = true;
      const add = pc.addTrack.bind(pc);
      pc.addTrack = (track, ...streams) => (track.kind === 'video' ? null : add(track, ...streams));
    }
    return pc;
  };
  window.RTCPeerConnection.prototype = Real.prototype;
}"""


async def test_a_new_connection_the_console_gives_up_on_is_offered_again(
    browser: Browser, make_world: WorldFactory, tmp_path: Path
) -> None:
    world = await make_world()
    to_server: list[WebSocketRoute] = []

    async def passing(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()
        to_server.append(server)
        ws.on_message(server.send)
        server.on_message(ws.send)

    console, kiosk, task, api, said = await _start_call(
        browser, world, base_url(world).rstrip("/"), tmp_path, live_route=passing
    )
    page, panel = console.page, console.page.locator("#consult-panel")
    try:
        await page.evaluate(NO_VIDEO_ON_NEXT_PEER)
        blip(kiosk)
        await until_true(lambda: kiosk.generation == 1, 15)
        # The console hears the site again on the new connection; the site sees no video on it.
        await expect(panel).to_have_attribute("data-state", "connected", timeout=15000)
        assert kiosk.result.reconnections == 0
        # What the console sends when a connection's media path drops, naming the new connection.
        request = {"type": "consult.signal", "consultation_id": kiosk.result.consultation_id}
        to_server[-1].send(json.dumps({**request, "restart": True, "generation": 1}))
        await until_true(
            lambda: kiosk.generation == 2,
            5,
            lambda: f"the request went unheeded: the site said {said}",
        )
        await frames_flow_again(page, kiosk)
        assert kiosk.result.reconnections == 1 and task.done() is False
    finally:
        await _cleanup(console, kiosk, task, api)


async def test_a_blip_that_does_not_heal_ends_the_call_on_both_sides_with_its_reason(
    browser: Browser, make_world: WorldFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = await make_world()
    console, kiosk, task, api, said = await _start_call(
        browser, world, base_url(world).rstrip("/"), tmp_path, timeouts=Timeouts(reconnect=4)
    )
    page, panel = console.page, console.page.locator("#consult-panel")
    try:
        cid = kiosk.result.consultation_id
        # The site's link stays down: every media packet of this process, old connection or new, is lost.
        await page.evaluate(WATCH_STATES)
        blip(kiosk)
        monkeypatch.setattr(StunProtocol, "datagram_received", lambda self, data, addr: None)
        monkeypatch.setattr(StunProtocol, "send_stun", lambda self, message, addr: None)
        result = await asyncio.wait_for(asyncio.shield(task), 15)
        assert result.reason == "reconnect_failed" and result.ended_by == "us"
        assert "Could not reconnect within 4 s; call ended." in said
        await expect(panel).to_have_attribute("data-state", "ended", timeout=5000)
        await expect(page.locator("#consult-state")).to_contain_text("could not be re-established")
        assert [state for state, _ in await states_seen(page)] == ["reconnecting", "ended"]
        record = await (await world.login("nd_rph")).json("GET", f"/api/v1/consultations/{cid}")
        assert record["state"] == "ended" and record["end_reason"] == "reconnect_failed"
        assert record["reconnections"] == 0
    finally:
        await _cleanup(console, kiosk, task, api)


@pytest.mark.postgres
async def test_a_call_across_two_instances_reconnects_and_hangs_up_on_both(
    browser: Browser, tmp_path: Path, postgres_url: str
) -> None:
    world = await build_world(tmp_path / "a", postgres_url)
    node_b = TestServer(create_app(server_config(tmp_path / "b", postgres_url), schema="none"))
    await node_b.start_server()
    console = kiosk = task = api = None
    try:
        # The pharmacist's console on instance A, the site on instance B.
        console, kiosk, task, api, said = await _start_call(
            browser, world, str(node_b.make_url("/")).rstrip("/"), tmp_path
        )
        page, panel = console.page, console.page.locator("#consult-panel")
        cid = kiosk.result.consultation_id
        await ice_of(kiosk).stop()
        await until_true(lambda: kiosk.result.reconnections == 1, 15)
        await expect(panel).to_have_attribute("data-state", "connected", timeout=10000)
        await frames_flow_again(page, kiosk)
        assert any("Reconnecting…" in text for text in said)

        t_hangup = time.monotonic()
        await page.click("#consult-hangup")
        result = await asyncio.wait_for(asyncio.shield(task), 5)
        assert time.monotonic() - t_hangup < 5
        assert result.ended_by == "peer" and result.reason == "hangup" and result.consultation_id == cid
        record = await (await world.login("nd_rph")).json("GET", f"/api/v1/consultations/{cid}")
        assert record["reconnections"] == 1 and record["end_reason"] == "hangup" and record["connected_at"]
    finally:
        if console is not None and kiosk is not None and task is not None and api is not None:
            await _cleanup(console, kiosk, task, api)
        await node_b.close()
        await world.close()
