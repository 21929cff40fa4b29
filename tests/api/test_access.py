"""Every route declares who may call it, and refuses everyone else: walked from the route table."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from server.api.openapi import document, openapi_path
from server.api.routes import ROUTES
from server.security.principal import Role
from tests.api.world import World, new_fill_id, queued_fill, rx_body

SIGNED_IN_AS = {Role.ADMIN: "admin", Role.PHARMACIST: "nd_rph", Role.TECHNICIAN: "tech_nd1"}


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_every_route_declares_its_roles() -> None:
    for route in ROUTES:
        assert route.allow == "public" or (isinstance(route.allow, frozenset) and route.allow), route.path


def test_public_routes_are_only_the_ones_meant_to_be() -> None:
    public = {(r.method, r.path) for r in ROUTES if r.is_public}
    assert public == {
        ("GET", "/healthz"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/openapi.json"),
        ("POST", "/api/v1/session"),
        ("OPTIONS", "/api/v1/uploads"),
        ("GET", "/"),
        ("GET", "/console/{path:.+}"),
    }


def test_openapi_document_equals_the_route_table() -> None:
    doc = document(ROUTES)
    declared = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert declared == {(r.method, openapi_path(r.path)) for r in ROUTES}
    for r in ROUTES:
        op = doc["paths"][openapi_path(r.path)][r.method.lower()]
        assert op["x-roles"] == ("public" if r.is_public else sorted(x.value for x in r.allow))


async def test_served_openapi_document_is_the_one_built_from_the_table(world: World) -> None:
    resp = await (await world.anonymous()).get("/api/v1/openapi.json")
    assert resp.status == 200
    assert await resp.json() == document(ROUTES)


async def test_every_route_refuses_the_anonymous_and_the_roles_it_does_not_allow(world: World) -> None:
    anon = await world.anonymous()
    users = {
        role: (await world.device(name) if role is Role.TECHNICIAN else await world.login(name))
        for role, name in SIGNED_IN_AS.items()
    }
    checked = 0
    for route in ROUTES:
        if route.is_public:
            continue
        path = _concrete(route.path)
        resp = await anon.request(route.method, path)
        assert resp.status == 401, (route.method, route.path, resp.status)
        for role, user in users.items():
            if role in route.allow:
                continue
            resp = await user.request(route.method, path)
            assert resp.status == 403, (route.method, route.path, role, resp.status)
            checked += 1
    assert checked > 30


async def test_app_routes_are_exactly_the_table(world: World) -> None:
    registered = set()
    for resource in world.server.app.router.resources():
        info = resource.get_info()
        path = info.get("path") or info.get("formatter")
        for r in resource:
            if r.method != "HEAD" or any(x.method == "HEAD" and x.path == path for x in ROUTES):
                registered.add((r.method, path))
    assert registered == {(r.method, openapi_path(r.path)) for r in ROUTES}


async def test_console_session_needs_the_csrf_token_for_changes(world: World) -> None:
    rph = await world.login("nd_rph")
    resp = await rph.client.post("/api/v1/queue/claim-next")  # cookie only, no CSRF header
    assert resp.status == 403
    assert (await resp.json())["error"] == "csrf"
    assert (await rph.post("/api/v1/queue/claim-next")).status == 200


async def test_console_session_refuses_a_wrong_csrf_token(world: World) -> None:
    rph = await world.login("nd_rph")
    assert rph.csrf is not None
    wrong = rph.csrf[:-1] + ("0" if rph.csrf[-1] != "0" else "1")
    for token in (wrong, rph.csrf[:-1], "é" * len(rph.csrf)):
        resp = await rph.client.post("/api/v1/queue/claim-next", headers={"X-CSRF-Token": token})
        assert resp.status == 403, token
        assert (await resp.json())["error"] == "csrf"


async def test_session_cookie_is_httponly_and_strict(world: World) -> None:
    anon = await world.anonymous()
    resp = await anon.post(
        "/api/v1/session", json={"username": "nd_rph", "password": "correct-horse-battery"}
    )
    cookie = resp.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie


async def test_revoked_device_token_is_refused(world: World) -> None:
    tech = await world.device("tech_nd1")
    assert (await tech.get("/api/v1/fills")).status == 200
    admin = await world.login("admin")
    body = await admin.json("GET", "/api/v1/users")
    assert all("password" not in str(u) for u in body["users"])
    from sqlalchemy import select

    from server.db.models import DeviceToken

    async with world.services.db.read() as s:
        token_id = (await s.execute(select(DeviceToken.id).limit(1))).scalar_one()
    await admin.json("DELETE", f"/api/v1/device-tokens/{token_id}")
    assert (await tech.get("/api/v1/fills")).status == 401


async def test_technician_never_sees_another_site(world: World) -> None:
    nd1, nd2 = await world.device("tech_nd1"), await world.device("tech_nd2")
    rx = await nd1.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await queued_fill(world, nd1, rx["id"])
    assert (await nd2.get(f"/api/v1/fills/{fill['id']}")).status == 404
    assert (await nd2.json("GET", "/api/v1/fills"))["fills"] == []
    assert (await nd2.json("GET", "/api/v1/prescriptions"))["prescriptions"] == []
    # Another site's prescription cannot carry this site's fill.
    body = await nd2.json(
        "POST", "/api/v1/fills", 404, json={"id": new_fill_id(), "prescription_id": rx["id"]}
    )
    assert body["error"] == "not_found"
    media_id = fill["media"][0]["id"]
    assert (await nd2.get(f"/api/v1/media/{media_id}")).status == 404
    assert (await nd1.get(f"/api/v1/media/{media_id}")).status == 200


async def test_a_session_carries_every_license_in_force_and_no_lapsed_one(world: World) -> None:
    """Who a caller is comes from the database with each of their licenses: both of a pharmacist's
    states, not one that lapsed yesterday; none at all for a pharmacist whose only license lapsed."""
    yesterday = dt.date.today() - dt.timedelta(days=1)
    await world.services.directory.add_license(None, "both_rph", "SD", "SD-both_rph", yesterday)
    both, lapsed = await world.login("both_rph"), await world.login("lapsed_rph")
    world.services.auth.forget_all()  # read from the database, not from what signing in left
    assert (await both.json("GET", "/api/v1/session"))["user"]["licensed_states"] == ["MN", "ND"]
    assert (await lapsed.json("GET", "/api/v1/session"))["user"]["licensed_states"] == []


@pytest.mark.parametrize("who", ["mn_rph", "lapsed_rph"])
async def test_pharmacist_never_sees_an_unlicensed_state(world: World, who: str) -> None:
    nd1 = await world.device("tech_nd1")
    rx = await nd1.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await queued_fill(world, nd1, rx["id"])
    rph = await world.login(who)
    assert (await rph.json("GET", "/api/v1/queue"))["fills"] == []
    assert (await rph.json("POST", "/api/v1/queue/claim-next"))["fill"] is None
    assert (await rph.post(f"/api/v1/fills/{fill['id']}/claim")).status == 404
    assert (await rph.get(f"/api/v1/fills/{fill['id']}")).status == 404
    assert (await rph.get(f"/api/v1/media/{fill['media'][0]['id']}")).status == 404
