"""The station serves its page to its own address only, and every change needs the page's token."""

from __future__ import annotations

import re

import aiohttp

from tests.station.world import StationProcess


async def _page_token(http: aiohttp.ClientSession, station: StationProcess) -> str:
    async with http.get(station.url) as resp:
        html = await resp.text()
    found = re.search(r'name="tp-csrf" content="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


async def test_the_page_carries_a_token_and_calls_without_it_are_refused(station: StationProcess) -> None:
    async with aiohttp.ClientSession() as http:
        token = await _page_token(http, station)
        async with http.get(station.url + "api/state", headers={"X-CSRF-Token": token}) as resp:
            assert resp.status == 200, await resp.text()
            assert (await resp.json())["enrolled"] is True
        async with http.get(station.url + "api/state") as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == "csrf"
        async with http.post(station.url + "api/fills", json={}, headers={"X-CSRF-Token": "x" * 43}) as resp:
            assert resp.status == 403


async def test_a_foreign_host_header_is_refused(station: StationProcess) -> None:
    """DNS rebinding: a page on evil.example resolved to 127.0.0.1 sends its own name as Host."""
    async with aiohttp.ClientSession() as http:
        token = await _page_token(http, station)
        for host in (f"evil.example:{station.port}", "127.0.0.1", f"127.0.0.1:{station.port + 1}"):
            async with http.get(station.url, headers={"Host": host}) as resp:
                assert resp.status == 421, host
            async with http.get(
                station.url + "api/state", headers={"Host": host, "X-CSRF-Token": token}
            ) as resp:
                assert resp.status == 421, host
        async with http.get(station.url, headers={"Host": f"localhost:{station.port}"}) as resp:
            assert resp.status == 200


async def test_another_origin_is_refused(station: StationProcess) -> None:
    async with aiohttp.ClientSession() as http:
        token = await _page_token(http, station)
        headers = {"X-CSRF-Token": token, "Origin": "http://evil.example"}
        async with http.post(station.url + "api/fills", json={}, headers=headers) as resp:
            assert resp.status == 403
            assert (await resp.json())["error"] == "wrong_origin"
        own = {"X-CSRF-Token": token, "Origin": f"http://127.0.0.1:{station.port}"}
        async with http.get(station.url + "api/state", headers=own) as resp:
            assert resp.status == 200


async def test_the_live_feed_needs_the_token_and_the_own_origin(station: StationProcess) -> None:
    async with aiohttp.ClientSession() as http:
        token = await _page_token(http, station)
        ws_url = station.url.replace("http", "ws") + "api/events"
        for url, origin in (
            (ws_url, f"http://127.0.0.1:{station.port}"),
            (f"{ws_url}?csrf={token}", "http://evil.example"),
        ):
            try:
                async with http.ws_connect(url, origin=origin):
                    raise AssertionError(f"{url} from {origin} was let in")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 403
        async with http.ws_connect(f"{ws_url}?csrf={token}", origin=f"http://127.0.0.1:{station.port}") as ws:
            first = await ws.receive_json(timeout=5)
            assert first["type"] == "status"


async def test_bad_input_gets_a_clear_refusal(station: StationProcess) -> None:
    async with aiohttp.ClientSession() as http:
        token = await _page_token(http, station)
        h = {"X-CSRF-Token": token}

        def js(body: object) -> dict[str, object]:
            return {"json": body, "headers": h}

        def raw(data: bytes, content_type: str = "application/json") -> dict[str, object]:
            return {"data": data, "headers": {**h, "Content-Type": content_type}}

        fills, nobody = "api/fills", "api/fills/0f0f0f0f-0000-4000-8000-000000000000"
        cases: list[tuple[str, str, dict[str, object], int, str]] = [
            ("POST", fills, raw(b"{not json"), 400, "bad_json"),
            ("POST", fills, raw(b"x=1", "text/plain"), 415, "not_json"),
            ("POST", fills, js({"prescription_id": "x"}), 400, "no_prescription"),
            ("POST", fills, js({"prescription_id": 999999}), 400, "unknown_prescription"),
            ("POST", "api/captures?kind=pills", raw(b"\xff\xd8\xff", "image/jpeg"), 400, "no_prescription"),
            ("GET", "api/fills/not-a-fill", {"headers": h}, 404, "not_found"),
            ("POST", nobody + "/discard", js({"reason": ""}), 400, "no_reason"),
            ("POST", nobody + "/fix", js({}), 409, "not_refused"),
            ("POST", "api/enroll", js({"server_url": "ftp://x", "token": "t"}), 400, "bad_server"),
            ("POST", "api/pair", js({"code": "123456"}), 403, "wrong_code"),
        ]
        for method, path, kw, status, code in cases:
            async with http.request(method, station.url + path, **kw) as resp:  # type: ignore[arg-type]
                body = await resp.json()
                assert (resp.status, body["error"]) == (status, code), (path, body)
                assert body["message"], path
        async with http.post(station.url + fills, **raw(b"x" * (70 * 1024))) as resp:  # type: ignore[arg-type]
            assert resp.status == 413
