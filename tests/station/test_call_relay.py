"""The station's signalling relay, spoken by hand: what the page sends at once (before the station's own
connection to the server is up) still reaches the pharmacist, what the pharmacist sends reaches the page,
only signalling passes, and a page that goes away ends its call for the pharmacist."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.consult.wire import next_of
from tests.site_client.world import Pharmacist, ServerProcess
from tests.station.world import StationProcess, create_prescription

OFFER = {"type": "offer", "sdp": "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\n"}


class PageClient:
    """What the station's page does over HTTP: the CSRF token from the page's HTML on every call."""

    def __init__(self, station: StationProcess, http: aiohttp.ClientSession, csrf: str) -> None:
        self.base = station.url.rstrip("/")
        self.http = http
        self.csrf = csrf

    async def call(self, method: str, path: str, body: Any = None, status: int = 200) -> Any:
        async with self.http.request(
            method, self.base + path, json=body, headers={"X-CSRF-Token": self.csrf}
        ) as resp:
            data = await resp.json()
            assert resp.status == status, (resp.status, data)
            return data

    async def socket(self, **headers: str) -> aiohttp.ClientWebSocketResponse:
        return await self.http.ws_connect(f"{self.base}/api/calls/ws?csrf={self.csrf}", headers=headers)


@pytest.fixture
async def page(station: StationProcess) -> AsyncIterator[PageClient]:
    async with aiohttp.ClientSession() as http:
        async with http.get(station.url) as resp:
            html = await resp.text()
        found = re.search(r'name="tp-csrf" content="([^"]+)"', html)
        assert found is not None
        yield PageClient(station, http, found.group(1))


async def test_signals_sent_before_the_station_reached_the_server_reach_the_pharmacist(
    server: ServerProcess, station: StationProcess, token: str, page: PageClient
) -> None:
    rx = await create_prescription(server.url, token, "820001")
    asked = await page.call("POST", "/api/calls", {"prescription_id": rx["id"]}, status=201)
    cid = asked["id"]
    assert asked["state"] == "requested" and asked["prescription_id"] == rx["id"]
    assert "requested_by" not in asked and "site_id" not in asked  # the page's view: ids and states

    ws = await page.socket()
    # At once, before the station's own socket to the server said hello: these wait, in order.
    await ws.send_json({"type": "consult.join", "consultation_id": cid})
    await ws.send_json(
        {"type": "consult.signal", "consultation_id": cid, "description": OFFER, "generation": 0}
    )
    joined = await next_of(ws, "consult.joined")
    assert joined["state"] == "requested" and joined["role"] == "site"

    async with Pharmacist(server.url) as rph:
        await rph.call("POST", f"/api/v1/consultations/{cid}/accept")
        assert (await next_of(ws, "consult.accepted", "consultation.accepted"))["consultation_id"] == cid
        rph_ws = await rph.http.ws_connect(server.url + "/api/v1/ws", headers={"Origin": server.url})
        try:
            await rph_ws.send_json({"type": "consult.join", "consultation_id": cid})
            offer = await next_of(rph_ws, "consult.signal")
            assert offer["description"] == OFFER and offer["from"] == "site" and offer["generation"] == 0

            answer = {"type": "answer", "sdp": "v=0\r\n"}
            await rph_ws.send_json({"type": "consult.signal", "consultation_id": cid, "description": answer})
            got = await next_of(ws, "consult.signal")
            assert got["description"] == answer and got["from"] == "pharmacist"

            # Only signalling passes, each message naming its consultation.
            await ws.send_json({"type": "fill.decided", "consultation_id": cid})
            assert "relays" in (await next_of(ws, "call.error"))["error"]
            await ws.send_json({"type": "consult.signal", "description": OFFER})
            assert "consultation_id" in (await next_of(ws, "call.error"))["error"]

            # The page goes away: its call ends for the pharmacist at once.
            await ws.close()
            ended = await next_of(rph_ws, "consult.ended")
            assert ended["consultation_id"] == cid and ended["reason"] == "dropped"
        finally:
            await rph_ws.close()


async def test_the_signalling_socket_needs_the_page_token_and_origin(
    station: StationProcess, page: PageClient
) -> None:
    base = page.base
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/api/calls/ws") as resp:
            assert resp.status == 403
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(
                f"{base}/api/calls/ws?csrf={page.csrf}", headers={"Origin": "http://evil.test"}
            )
        assert refused.value.status == 403
        async with http.post(f"{base}/api/calls", json={"prescription_id": 1}) as resp:
            assert resp.status == 403
    await page.call("POST", "/api/calls", {"kind": "video_chat"}, status=400)
    await page.call("POST", "/api/calls", {"prescription_id": "one"}, status=400)
    await page.call("POST", "/api/calls/1/end", {"reason": "declined"}, status=400)
    refused_rx = await page.call("POST", "/api/calls", {"prescription_id": 999999}, status=404)
    assert "prescription" in refused_rx["message"]


async def test_a_declined_request_ends_the_call_and_the_page_reads_why(
    server: ServerProcess, station: StationProcess, token: str, page: PageClient
) -> None:
    rx = await create_prescription(server.url, token, "820002")
    cid = (await page.call("POST", "/api/calls", {"prescription_id": rx["id"]}, status=201))["id"]
    ws = await page.socket()
    try:
        await ws.send_json({"type": "consult.join", "consultation_id": cid})
        await next_of(ws, "consult.joined")
        async with Pharmacist(server.url) as rph:
            why = "Busy with another patient; please ask again in a few minutes."
            await rph.call("POST", f"/api/v1/consultations/{cid}/end", {"reason": "declined", "note": why})
        assert (await next_of(ws, "consult.ended"))["reason"] == "declined"
        seen = await page.call("GET", f"/api/calls/{cid}")
        assert seen["state"] == "ended" and seen["end_reason"] == "declined" and seen["outcome_note"] == why
        # The site cannot answer its own request as if invited, nor answer it twice.
        await page.call("POST", f"/api/calls/{cid}/answer", {}, status=403)
    finally:
        await ws.close()
