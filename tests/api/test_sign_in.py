"""Signing in: only JSON from the server's own pages (or origins the operator allowed) signs in,
another site's page changes nothing, and the cookie is Secure over HTTPS."""

from __future__ import annotations

import json
from pathlib import Path

from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from tests.api.world import PASSWORD, World, build_world

PROXY = "127.0.0.1"  # the test client's own address: the proxy in front of these servers
OWNER = "198.51.100.20"


async def sign_in(
    client: TestClient[web.Request, web.Application],
    username: str,
    password: str,
    address: str,
    **headers: str,
) -> ClientResponse:
    return await client.post(
        "/api/v1/session",
        json={"username": username, "password": password},
        headers={"X-Forwarded-For": address, **headers},
    )


async def test_sign_in_takes_only_json(world: World) -> None:
    client = await world.anonymous()
    body = json.dumps({"username": "nd_rph", "password": PASSWORD})
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        resp = await client.post("/api/v1/session", data=body, headers={"Content-Type": content_type})
        assert resp.status == 415, content_type
        assert (await resp.json())["error"] == "unsupported_media_type"
        assert "Set-Cookie" not in resp.headers


async def test_a_page_of_another_site_changes_nothing(world: World) -> None:
    client = await world.anonymous()
    foreign = {"Origin": "https://evil.example"}
    resp = await client.post(
        "/api/v1/session", json={"username": "nd_rph", "password": PASSWORD}, headers=foreign
    )
    assert resp.status == 403
    assert (await resp.json())["error"] == "bad_origin"
    assert "Set-Cookie" not in resp.headers
    # A signed-in pharmacist's browser, lured to that page, cannot claim or sign out either.
    rph = await world.login("nd_rph")
    for method, path in (("POST", "/api/v1/queue/claim-next"), ("DELETE", "/api/v1/session")):
        resp = await rph.request(method, path, headers=foreign)
        assert resp.status == 403, path
        assert (await resp.json())["error"] == "bad_origin"
    own = str(rph.client.make_url("/")).rstrip("/")
    assert (await rph.post("/api/v1/queue/claim-next", headers={"Origin": own})).status == 200
    # A site device sends no Origin; nothing changes for it.
    tech = await world.device("tech_nd1")
    assert (await tech.get("/api/v1/fills")).status == 200


async def test_an_origin_the_operator_allowed_may_sign_in(tmp_path: Path, database_url: str) -> None:
    world = await build_world(tmp_path, database_url, allowed_origins=("https://console.example.org",))
    try:
        client = await world.anonymous()
        body = {"username": "nd_rph", "password": PASSWORD}
        ok = await client.post(
            "/api/v1/session", json=body, headers={"Origin": "https://console.example.org"}
        )
        assert ok.status == 200
        other = await client.post("/api/v1/session", json=body, headers={"Origin": "https://example.org"})
        assert other.status == 403
    finally:
        await world.close()


def _cookie(resp: ClientResponse) -> str:
    assert resp.status == 200
    return resp.headers["Set-Cookie"]


async def test_session_cookie_is_secure_when_the_browser_came_over_https(
    tmp_path: Path, database_url: str
) -> None:
    world = await build_world(tmp_path, database_url, host="0.0.0.0", trusted_proxies=(PROXY,))
    try:
        client = await world.anonymous()
        plain = await sign_in(client, "nd_rph", PASSWORD, OWNER)
        assert "Secure" not in _cookie(plain)
        https = await sign_in(client, "nd_rph", PASSWORD, OWNER, **{"X-Forwarded-Proto": "https"})
        assert "Secure" in _cookie(https)
    finally:
        await world.close()
