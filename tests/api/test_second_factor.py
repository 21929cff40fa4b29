"""A second factor after the password: an authenticator app (TOTP) enrolled with a QR code, recovery
codes shown once, a policy that requires enrolment, and wrong codes counted like wrong passwords."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pyotp
from sqlalchemy import select

from server.db.models import AuditEvent, RecoveryCode
from tests.api.world import PASSWORD, User, World, build_world


async def enrol_totp(rph: User) -> pyotp.TOTP:
    """Enrols an authenticator app for the signed-in person; returns the app (its secret)."""
    begun = await rph.json("POST", "/api/v1/second-factors/totp/begin")
    assert begun["qr_svg"].lstrip().startswith("<svg") and begun["otpauth_uri"].startswith("otpauth://totp/")
    app = pyotp.TOTP(begun["secret"])
    enrolled = await rph.json(
        "POST", "/api/v1/second-factors/totp", 201, json={"code": app.now(), "label": "Phone"}
    )
    assert enrolled["factor"]["kind"] == "totp" and enrolled["factor"]["label"] == "Phone"
    rph.recovery_codes = enrolled["recovery_codes"]  # type: ignore[attr-defined]
    return app


def next_code(app: pyotp.TOTP, now: dt.datetime | None = None) -> str:
    """The code of the time step after `now` (the server's time, when a test moved it): a code already
    used (at enrolment, say) is never taken twice."""
    return str(app.at((now.timestamp() if now else time.time()) + app.interval))


async def password_only(world: World, username: str) -> tuple[User, dict[str, Any]]:
    client = await world.anonymous()
    resp = await client.post("/api/v1/session", json={"username": username, "password": PASSWORD})
    body = await resp.json()
    assert resp.status == 200, body
    return User(client, username, csrf=body["csrf_token"]), body


async def test_a_pharmacist_enrols_an_authenticator_and_then_signs_in_with_its_code(world: World) -> None:
    rph = await world.login("nd_rph")
    app = await enrol_totp(rph)
    codes: list[str] = rph.recovery_codes  # type: ignore[attr-defined]
    assert len(codes) == 10 and len(set(codes)) == 10
    listed = await rph.json("GET", "/api/v1/second-factors")
    assert [f["kind"] for f in listed["factors"]] == ["totp"] and listed["recovery_codes_left"] == 10
    # Only hashes are kept: no code is in the database as shown.
    async with world.services.db.read() as s:
        stored = set((await s.execute(select(RecoveryCode.code_hash))).scalars())
    assert not stored & set(codes)

    pending, body = await password_only(world, "nd_rph")
    assert body["stage"] == "second_factor" and body["second_factors"] == ["totp", "recovery_code"]
    # The password alone opens nothing but the next step.
    refused = await pending.json("GET", "/api/v1/queue", 401)
    assert refused["error"] == "second_factor_required"
    assert (await pending.json("GET", "/api/v1/session"))["stage"] == "second_factor"
    wrong = await pending.json("POST", "/api/v1/session/second-factor", 401, json={"totp": "000000"})
    assert wrong["error"] == "bad_second_factor"
    # A password is no second factor.
    await pending.json("POST", "/api/v1/session/second-factor", 400, json={"password": PASSWORD})
    code = next_code(app)
    await pending.json("POST", "/api/v1/session/second-factor", json={"totp": code})
    assert (await pending.json("GET", "/api/v1/session"))["stage"] == "ready"
    await pending.json("GET", "/api/v1/queue")

    # The same code again (another tab, a replay) is refused: each time step is taken once. (Asked for
    # anew, a code could be the next step's, when a step's 30 s end between the two sign-ins.)
    again, _ = await password_only(world, "nd_rph")
    await again.json("POST", "/api/v1/session/second-factor", 401, json={"totp": code})

    async with world.services.db.read() as s:
        actions = list((await s.execute(select(AuditEvent.action))).scalars())
    assert {"second_factor.enrolled", "login.second_factor", "proof.failed"} <= set(actions)


async def test_a_recovery_code_signs_in_once(world: World) -> None:
    rph = await world.login("nd_rph")
    await enrol_totp(rph)
    code = rph.recovery_codes[0]  # type: ignore[attr-defined]
    first, _ = await password_only(world, "nd_rph")
    await first.json("POST", "/api/v1/session/second-factor", json={"recovery_code": code.lower()})
    second, _ = await password_only(world, "nd_rph")
    await second.json("POST", "/api/v1/session/second-factor", 401, json={"recovery_code": code})
    assert (await first.json("GET", "/api/v1/second-factors"))["recovery_codes_left"] == 9


async def test_wrong_codes_slow_the_account_like_wrong_passwords(world: World) -> None:
    rph = await world.login("nd_rph")
    await enrol_totp(rph)
    pending, _ = await password_only(world, "nd_rph")
    statuses = [
        (await pending.post("/api/v1/session/second-factor", json={"totp": f"{n:06d}"})).status
        for n in range(world.services.config.login_attempts + 1)
    ]
    assert statuses[:-1] == [401] * world.services.config.login_attempts
    resp = await pending.post("/api/v1/session/second-factor", json={"totp": "123456"})
    assert resp.status == 429 and int(resp.headers["Retry-After"]) >= 1


async def test_policy_makes_pharmacists_and_admins_enrol_before_they_work(
    tmp_path: Path, database_url: str
) -> None:
    world = await build_world(tmp_path, database_url, second_factor_required=True)
    try:
        rph, body = await password_only(world, "nd_rph")
        assert body["stage"] == "enrol" and body["second_factor_required"] is True
        refused = await rph.json("GET", "/api/v1/queue", 403)
        assert refused["error"] == "enrol_second_factor"
        await enrol_totp(rph)
        await rph.json("GET", "/api/v1/queue")
        # A technician's site device works as before.
        tech = await world.device("tech_nd1")
        await tech.json("GET", "/api/v1/fills")
    finally:
        await world.close()


async def test_removing_a_factor_or_renewing_codes_asks_for_a_proof_first(world: World) -> None:
    rph = await world.login("nd_rph")
    app = await enrol_totp(rph)
    factor_id = (await rph.json("GET", "/api/v1/second-factors"))["factors"][0]["id"]
    asked = await rph.json("POST", "/api/v1/second-factors/recovery-codes", 403)
    assert asked["error"] == "step_up_required" and asked["detail"]["methods"] == ["totp", "recovery_code"]
    # With a second factor enrolled, the password unlocks but does not step up.
    proved = await rph.json("POST", "/api/v1/session/proof", json={"password": PASSWORD})
    assert proved["stepped_up"] is False
    await rph.json("POST", "/api/v1/second-factors/recovery-codes", 403)
    await rph.json("POST", "/api/v1/session/proof", json={"totp": next_code(app)})
    renewed = await rph.json("POST", "/api/v1/second-factors/recovery-codes", 201)
    assert len(renewed["recovery_codes"]) == 10
    await rph.json("POST", "/api/v1/session/proof", json={"recovery_code": renewed["recovery_codes"][0]})
    await rph.json("DELETE", f"/api/v1/second-factors/{factor_id}")
    assert await rph.json("GET", "/api/v1/second-factors") == {"factors": [], "recovery_codes_left": 0}


async def test_a_technicians_device_has_no_second_factor_steps(world: World) -> None:
    tech = await world.device("tech_nd1")
    await tech.json("GET", "/api/v1/second-factors", 403)
    refused = await tech.json("POST", "/api/v1/session/proof", 403, json={"password": PASSWORD})
    assert refused["error"] == "console_only"
