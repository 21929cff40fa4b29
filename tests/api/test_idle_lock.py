"""The idle lock, enforced by the server: a console session untouched for the idle time is refused
(423 locked) until the password or the second factor unlocks it; its claim is not renewed meanwhile."""

from __future__ import annotations

from pathlib import Path

from tests.api.test_second_factor import enrol_totp, next_code
from tests.api.world import PASSWORD, World, build_world, queued_fill, rx_body

IDLE = 600.0  # the default: ten minutes


async def test_an_idle_session_is_refused_until_unlocked_and_its_claim_lapses(world: World) -> None:
    assert world.services.config.idle_lock_seconds == IDLE
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = (await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1")))["id"]
    fill = await queued_fill(world, tech, rx)
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim")
    # Lease renewals are the console's own doing, not the pharmacist's: they keep nothing awake.
    for _ in range(5):
        world.clock.advance(IDLE / 5 - 1)
        await rph.json("POST", f"/api/v1/fills/{fill['id']}/heartbeat")
    world.clock.advance(10)
    for method, path in (("GET", "/api/v1/queue"), ("GET", f"/api/v1/fills/{fill['id']}")):
        locked = await rph.json(method, path, 423)
        assert locked["error"] == "locked"
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/heartbeat", 423)
    session = await rph.json("GET", "/api/v1/session")
    assert session["stage"] == "locked" and session["idle_lock_seconds"] == IDLE
    # A locking console puts its fill back.
    released = await rph.json("POST", f"/api/v1/fills/{fill['id']}/release")
    assert released["state"] == "queued"

    await rph.json("POST", "/api/v1/session/proof", 401, json={"password": "wrong-password-here"})
    unlocked = await rph.json("POST", "/api/v1/session/proof", json={"password": PASSWORD})
    assert unlocked["unlocked"] is True
    await rph.json("GET", "/api/v1/queue")


async def test_the_pharmacists_actions_keep_the_console_unlocked(world: World) -> None:
    rph = await world.login("nd_rph")
    for _ in range(3):
        world.clock.advance(IDLE - 60)
        await rph.json("POST", "/api/v1/session/activity")
    await rph.json("GET", "/api/v1/queue")


async def test_the_second_factor_unlocks_too(world: World) -> None:
    rph = await world.login("nd_rph")
    app = await enrol_totp(rph)
    world.clock.advance(IDLE + 1)
    await rph.json("GET", "/api/v1/queue", 423)
    await rph.json("POST", "/api/v1/session/proof", json={"totp": next_code(app, world.clock())})
    await rph.json("GET", "/api/v1/queue")


async def test_the_idle_time_is_a_setting_and_zero_turns_the_lock_off(
    tmp_path: Path, database_url: str
) -> None:
    world = await build_world(tmp_path, database_url, idle_lock_seconds=0)
    try:
        rph = await world.login("nd_rph")
        world.clock.advance(8 * 3600)
        await rph.json("GET", "/api/v1/queue")
    finally:
        await world.close()
