"""Signing in: wrong passwords slow their account and stop their address, hashing never floods the
server, only JSON from the server's own pages signs in, and the cookie is Secure over HTTPS."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import ClientResponse, web
from aiohttp.test_utils import TestClient

from server.db.models import utcnow
from server.security.auth import Auth
from tests.api.world import PASSWORD, World, build_world

PROXY = "127.0.0.1"  # the test client's own address: the proxy in front of these servers
ATTACKER = "203.0.113.7"
OWNER = "198.51.100.20"


class FrozenClock:
    """The sign-in limits' clock: still unless moved, so a delay is observed without sleeping."""

    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


@pytest.fixture
async def behind_proxy(tmp_path: Path, database_url: str) -> AsyncIterator[tuple[World, FrozenClock]]:
    """The API world behind a trusted proxy (clients named by X-Forwarded-For), with a still clock."""
    world = await build_world(tmp_path, database_url, trusted_proxies=(PROXY,))
    clock = FrozenClock()
    world.services.auth.limits.clock = clock
    try:
        yield world, clock
    finally:
        await world.close()


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


async def retry_after(resp: ClientResponse) -> int:
    """The wait a 429 names, once in its header and once in its body (the same)."""
    assert resp.status == 429
    body = await resp.json()
    seconds = body["detail"]["retry_after"]
    assert resp.headers["Retry-After"] == str(seconds)
    assert f"try again in {seconds} second" in body["message"]
    return int(seconds)


async def test_one_address_cannot_try_account_after_account(behind_proxy: tuple[World, FrozenClock]) -> None:
    world, clock = behind_proxy
    client = await world.anonymous()
    names = ["nd_rph", "mn_rph", "both_rph", "lapsed_rph", "admin"] + [f"guess{i}" for i in range(15)]
    statuses = [(await sign_in(client, name, "wrong-password!", ATTACKER)).status for name in names]
    assert statuses == [401] * 10 + [429] * 10
    # Even the right password waits from there; the wait is the window after the last failure.
    refused = await sign_in(client, "nd_rph", PASSWORD, ATTACKER)
    assert await retry_after(refused) == 300
    assert "from this address" in (await refused.json())["message"]
    assert (await sign_in(client, "nd_rph", PASSWORD, OWNER)).status == 200
    clock.advance(300)
    assert (await sign_in(client, "nd_rph", PASSWORD, ATTACKER)).status == 200


async def test_wrong_passwords_from_elsewhere_only_delay_the_owner(
    behind_proxy: tuple[World, FrozenClock],
) -> None:
    world, clock = behind_proxy
    client = await world.anonymous()
    for _ in range(5):
        assert (await sign_in(client, "nd_rph", "wrong-password!", ATTACKER)).status == 401
    refused = await sign_in(client, "nd_rph", PASSWORD, OWNER)
    assert await retry_after(refused) == 1
    assert "This account" in (await refused.json())["message"]
    clock.advance(1)
    assert (await sign_in(client, "nd_rph", PASSWORD, OWNER)).status == 200


async def test_a_guesser_is_slowed_down_more_with_every_failure_up_to_a_minute(
    behind_proxy: tuple[World, FrozenClock],
) -> None:
    world, clock = behind_proxy
    client = await world.anonymous()
    waits = []
    for i in range(12):
        resp = await sign_in(client, "nd_rph", "wrong-password!", f"203.0.113.{i}")
        if resp.status == 429:
            waits.append(await retry_after(resp))
            clock.advance(waits[-1])
            resp = await sign_in(client, "nd_rph", "wrong-password!", f"203.0.113.{i}")
        assert resp.status == 401
    assert waits == [1, 2, 4, 8, 16, 32, 60]
    # The owner, who knows the password, waits a minute at most; then the count starts again.
    clock.advance(59)
    assert await retry_after(await sign_in(client, "nd_rph", PASSWORD, OWNER)) == 1
    clock.advance(1)
    assert (await sign_in(client, "nd_rph", PASSWORD, OWNER)).status == 200
    assert (await sign_in(client, "nd_rph", "wrong-password!", ATTACKER)).status == 401


async def test_every_server_instance_sees_the_same_failures(behind_proxy: tuple[World, FrozenClock]) -> None:
    world, clock = behind_proxy
    svc = world.services
    other = Auth(svc.db, svc.config, svc.auth.passwords, clock=clock)
    client = await world.anonymous()
    for _ in range(5):
        assert (await sign_in(client, "nd_rph", "wrong-password!", ATTACKER)).status == 401
    wait = await other.limits.wait("nd_rph", OWNER)
    assert wait is not None and wait.seconds == 1


@pytest.fixture
async def hashing_one_at_a_time(tmp_path: Path, database_url: str) -> AsyncIterator[World]:
    world = await build_world(
        tmp_path, database_url, trusted_proxies=(PROXY,), password_hash_slots=1, password_hash_queue=2
    )
    try:
        yield world
    finally:
        await world.close()


async def test_concurrent_sign_ins_never_hash_more_at_once_than_the_cap(
    hashing_one_at_a_time: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = hashing_one_at_a_time
    passwords = world.services.auth.passwords
    check = passwords._verify
    lock = threading.Lock()
    running, most = 0, 0

    def counted(stored: str | None, password: str) -> bool:
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.02)  # long enough for the others to overlap if they may
        with lock:
            running -= 1
        return check(stored, password)

    monkeypatch.setattr(passwords, "_verify", counted)
    client = await world.anonymous()
    names = ["nd_rph", "mn_rph", "both_rph"]
    answers = await asyncio.gather(
        *(sign_in(client, n, PASSWORD, f"198.51.100.{i}") for i, n in enumerate(names))
    )
    assert [r.status for r in answers] == [200] * 3
    assert most == 1


async def test_sign_ins_beyond_the_queue_are_answered_at_once(
    hashing_one_at_a_time: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    world = hashing_one_at_a_time
    passwords = world.services.auth.passwords
    check = passwords._verify
    release = threading.Event()

    def held(stored: str | None, password: str) -> bool:
        release.wait(30)
        return check(stored, password)

    monkeypatch.setattr(passwords, "_verify", held)
    client = await world.anonymous()
    tasks = [asyncio.create_task(sign_in(client, "nd_rph", PASSWORD, f"198.51.100.{i}")) for i in range(6)]
    try:
        # One hashing, two waiting for their turn: the other three are told at once to come back.
        refused: list[ClientResponse] = []
        for finished in asyncio.as_completed(tasks, timeout=20):
            refused.append(await finished)
            if len(refused) == 3:
                break
        for resp in refused:
            assert await retry_after_busy(resp) == 1
    finally:
        release.set()
    answers = [await t for t in tasks]
    assert sorted(r.status for r in answers) == [200] * 3 + [429] * 3


async def retry_after_busy(resp: ClientResponse) -> int:
    assert resp.status == 429
    body = await resp.json()
    assert body["error"] == "busy"
    assert resp.headers["Retry-After"] == str(body["detail"]["retry_after"])
    return int(body["detail"]["retry_after"])


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


async def test_only_a_trusted_proxy_may_say_https_or_name_the_client(world: World) -> None:
    client = await world.anonymous()
    said: dict[str, Any] = {"X-Forwarded-Proto": "https"}
    resp = await sign_in(client, "nd_rph", PASSWORD, OWNER, **said)
    assert "Secure" not in _cookie(resp)
    # Failures count against the connection's own address, whatever X-Forwarded-For claims.
    for i in range(10):
        assert (await sign_in(client, f"guess{i}", "wrong-password!", f"198.51.100.{i}")).status == 401
    assert (await sign_in(client, "nd_rph", PASSWORD, OWNER)).status == 429


async def test_a_password_that_can_be_set_can_be_used_and_no_longer_one(world: World) -> None:
    admin = await world.login("admin")
    longest = ("violet-harbor-lantern-" * 10)[:128]
    new_user = {"username": "rph_long", "display_name": "Rph Long", "role": "pharmacist"}
    refused = await admin.json("POST", "/api/v1/users", 400, json={**new_user, "password": longest + "x"})
    assert refused["error"] == "weak_password" and "at most 128" in refused["message"]
    await admin.json("POST", "/api/v1/users", 201, json={**new_user, "password": longest})
    client = await world.anonymous()
    ok = await client.post("/api/v1/session", json={"username": "rph_long", "password": longest})
    assert ok.status == 200
    too_long = await client.post("/api/v1/session", json={"username": "rph_long", "password": longest + "x"})
    assert too_long.status == 400


async def test_an_easy_password_is_refused_with_the_reason(world: World) -> None:
    admin = await world.login("admin")
    for password in ("password", "12345678", "rph_easy2024"):
        body = {
            "username": "rph_easy",
            "display_name": "Rph Easy",
            "role": "pharmacist",
            "password": password,
        }
        refused = await admin.json("POST", "/api/v1/users", 400, json=body)
        assert refused["error"] == "weak_password", password
