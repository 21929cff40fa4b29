"""The administrator's accounts, over the API and with tp-server admin: deactivate and reactivate
people, reset passwords and second factors, suspend sites, list and revoke tokens by id. Each is
audited, and each takes away live rights at once."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from server.cli import cmd_admin, cmd_migrate, parser
from server.db.engine import Database
from server.db.models import AuditEvent, DeviceToken, License, Site, User
from server.security.passwords import Passwords
from tests.api.test_realtime_access import _closed
from tests.api.test_second_factor import enrol_totp, password_only
from tests.api.world import PASSWORD, World, connect

NEW_PASSWORD = "prairie-wind-turbine-42"


async def _actions(world: World) -> list[str]:
    async with world.services.db.read() as s:
        return list((await s.execute(select(AuditEvent.action).order_by(AuditEvent.id))).scalars())


async def test_a_deactivated_pharmacist_is_signed_out_everywhere_until_reactivated(world: World) -> None:
    admin, rph = await world.login("admin"), await world.login("nd_rph")
    ws = await connect(rph)
    user = await admin.json("POST", "/api/v1/users/nd_rph/active", json={"active": False})
    assert user["active"] is False
    reason, _ = await _closed(ws)
    assert "deactivated" in reason
    await rph.json("GET", "/api/v1/queue", 401)
    client = await world.anonymous()
    resp = await client.post("/api/v1/session", json={"username": "nd_rph", "password": PASSWORD})
    assert resp.status == 401

    await admin.json("POST", "/api/v1/users/nd_rph/active", json={"active": True})
    # The sessions open before the deactivation stay ended; a new sign-in works.
    await rph.json("GET", "/api/v1/queue", 401)
    await (await world.login("nd_rph")).json("GET", "/api/v1/queue")
    assert _actions_in_order(await _actions(world), ["user.active", "user.active"])


def _actions_in_order(actions: list[str], wanted: list[str]) -> bool:
    it = iter(actions)
    return all(w in it for w in wanted)


async def test_a_password_reset_ends_the_sessions_and_only_the_new_password_signs_in(world: World) -> None:
    admin, rph = await world.login("admin"), await world.login("nd_rph")
    weak = await admin.json("POST", "/api/v1/users/nd_rph/password", 400, json={"password": "password"})
    assert weak["error"] == "weak_password"
    await rph.json("GET", "/api/v1/queue")  # a refused reset changed nothing
    await admin.json("POST", "/api/v1/users/nd_rph/password", json={"password": NEW_PASSWORD})
    await rph.json("GET", "/api/v1/queue", 401)
    client = await world.anonymous()
    old = await client.post("/api/v1/session", json={"username": "nd_rph", "password": PASSWORD})
    assert old.status == 401
    new = await client.post("/api/v1/session", json={"username": "nd_rph", "password": NEW_PASSWORD})
    assert new.status == 200
    await admin.json("POST", "/api/v1/users/nobody/password", 404, json={"password": NEW_PASSWORD})
    assert "user.password_reset" in await _actions(world)


async def test_a_lost_authenticator_is_reset_by_an_admin(world: World) -> None:
    await enrol_totp(await world.login("nd_rph"))
    _, body = await password_only(world, "nd_rph")
    assert body["stage"] == "second_factor"
    admin = await world.login("admin")
    assert await admin.json("DELETE", "/api/v1/users/nd_rph/second-factors") == {"removed": 1}
    _, body = await password_only(world, "nd_rph")
    assert body["stage"] == "ready" and body["second_factors"] == []
    assert "second_factor.reset" in await _actions(world)


async def test_a_suspended_site_loses_its_live_connections_and_comes_back(world: World) -> None:
    admin, tech = await world.login("admin"), await world.device("tech_nd1")
    ws = await connect(tech)
    site_id = world.sites["ND-1"]
    suspended = await admin.json("POST", f"/api/v1/sites/{site_id}/status", json={"status": "suspended"})
    assert suspended["status"] == "suspended"
    reason, _ = await _closed(ws)
    assert "suspended" in reason
    await admin.json("POST", f"/api/v1/sites/{site_id}/status", json={"status": "active"})
    again = await connect(tech)
    await again.close()
    await admin.json("POST", f"/api/v1/sites/{site_id}/status", 400, json={})
    await admin.json("POST", "/api/v1/sites/999999/status", 404, json={"status": "active"})
    actions = await _actions(world)
    assert actions.count("site.status") == 2


async def test_tokens_are_listed_by_id_without_the_token_and_revoked_by_id(world: World) -> None:
    admin = await world.login("admin")
    integration = await world.services.auth.issue_integration_token(None, "ND-1", "pharmacy system")
    listed = (await admin.json("GET", "/api/v1/tokens"))["tokens"]
    kinds = {(t["kind"], t["username"], t["site_code"]) for t in listed}
    assert ("device", "tech_nd1", "ND-1") in kinds and ("integration", "integration.nd-1", "ND-1") in kinds
    text = str(listed)
    assert integration not in text and all(token not in text for token in world.tokens.values())
    chosen = next(t for t in listed if t["kind"] == "integration")
    assert chosen["revoked_at"] is None
    await admin.json("DELETE", f"/api/v1/device-tokens/{chosen['id']}")
    relisted = {t["id"]: t for t in (await admin.json("GET", "/api/v1/tokens"))["tokens"]}
    assert relisted[chosen["id"]]["revoked_at"] is not None
    client = await world.anonymous()
    resp = await client.post("/api/v1/fhir", json={}, headers={"Authorization": f"Bearer {integration}"})
    assert resp.status == 401
    # Only an administrator manages accounts.
    rph = await world.login("nd_rph")
    await rph.json("GET", "/api/v1/tokens", 403)
    await rph.json("POST", "/api/v1/users/mn_rph/active", 403, json={"active": False})


async def test_a_site_is_given_to_a_technician_only(world: World) -> None:
    """A pharmacist or an admin asked for with a site was made without it, and nothing said so: the
    request is refused, naming the field, and no one is made."""
    admin = await world.login("admin")
    asked = {"username": "rph2", "display_name": "Rph Two", "password": NEW_PASSWORD, "site_code": "ND-1"}
    for role in ("pharmacist", "admin"):
        refused = await admin.json("POST", "/api/v1/users", 400, json={**asked, "role": role})
        assert refused == {
            "error": "invalid_input",
            "message": "'site_code' is for technicians: pharmacists and admins belong to no site.",
        }
    users = (await admin.json("GET", "/api/v1/users"))["users"]
    assert "rph2" not in {u["username"] for u in users}
    await admin.json("POST", "/api/v1/users", 201, json={**asked, "role": "pharmacist", "site_code": None})
    await admin.json("POST", "/api/v1/users", 201, json={**asked, "username": "tech2", "role": "technician"})


def _cli(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


async def test_the_command_line_manages_the_same_accounts(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    db_args = ("--data-dir", str(tmp_path / "cli"), "--database-url", database_url)
    assert await asyncio.to_thread(cmd_migrate, _cli("migrate", *db_args)) == 0

    # Each command runs its own event loop, as from a shell: in a thread of its own here.
    async def admin(*argv: str) -> int:
        return await asyncio.to_thread(cmd_admin, _cli("admin", *db_args, *argv))

    assert await admin("site", "--code", "ND-1", "--name", "Hettinger Drug", "--state", "ND") == 0
    assert await admin("user", "--username", "tech1", "--role", "technician", "--site", "ND-1",
                       "--password", PASSWORD) == 0  # fmt: skip
    assert await admin("user", "--username", "rph1", "--role", "pharmacist", "--password", PASSWORD) == 0
    assert await admin("token", "--username", "tech1") == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    assert await admin("tokens") == 0
    out = capsys.readouterr().out
    assert "tech1" in out and "ND-1" in out and "active" in out and token not in out
    assert await admin("revoke-token", "--token-id", out.split()[0]) == 0
    assert await admin("deactivate", "--username", "rph1") == 0
    assert await admin("reactivate", "--username", "rph1") == 0
    assert await admin("reset-password", "--username", "rph1", "--password", NEW_PASSWORD) == 0
    assert await admin("suspend-site", "--site", "ND-1") == 0
    assert await admin("site-policy", "--site", "ND-1", "--require-second-factor", "yes") == 0
    assert await admin("reset-second-factor", "--username", "rph1") == 0
    assert await admin("deactivate", "--username", "nobody") == 2
    assert "No such user" in capsys.readouterr().err

    database = Database(database_url)
    try:
        async with database.read() as s:
            site = (await s.execute(select(Site))).scalar_one()
            rph = (await s.execute(select(User).where(User.username == "rph1"))).scalar_one()
            revoked = (await s.execute(select(DeviceToken.revoked_at))).scalar_one()
            actions = list((await s.execute(select(AuditEvent.action))).scalars())
        assert site.status == "suspended" and site.require_second_factor is True
        assert rph.active is True and revoked is not None
        assert await Passwords(1, 1024).verify(rph.password_hash, NEW_PASSWORD)
        assert {
            "device_token.revoked",
            "user.active",
            "user.password_reset",
            "site.status",
            "site.policy",
            "second_factor.reset",
        } <= set(actions)
    finally:
        await database.dispose()


async def test_the_command_line_takes_only_what_the_api_takes(
    tmp_path: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """An operator's typo is refused as the API refuses it, naming the option, and nothing is written:
    a blank license number would be on every decision the pharmacist signs, a site code with spaces
    around it would match no later command, and a name longer than its column was a traceback with
    the password's hash in it on PostgreSQL."""
    db_args = ("--data-dir", str(tmp_path / "cli"), "--database-url", database_url)
    assert await asyncio.to_thread(cmd_migrate, _cli("migrate", *db_args)) == 0

    async def admin(*argv: str) -> tuple[int, str]:
        status = await asyncio.to_thread(cmd_admin, _cli("admin", *db_args, *argv))
        return status, capsys.readouterr().err

    too_long = "x" * 201
    assert await admin("site", "--code", " ND-1 ", "--name", " Hettinger Drug ", "--state", "ND") == (0, "")
    assert await admin("site", "--code", "ND-2", "--name", too_long, "--state", "ND") == (
        2, "error: --name must be text of 1 to 200 characters.\n"
    )  # fmt: skip
    assert await admin("user", "--username", "rph1", "--role", "pharmacist", "--password", PASSWORD,
                       "--display-name", "  Ada Lind ") == (0, "")  # fmt: skip
    for argv, option in (
        (("user", "--username", "rph2", "--role", "pharmacist", "--password", PASSWORD,
          "--display-name", too_long), "--display-name"),
        (("license", "--username", "rph1", "--state", "ND", "--number", "  ", "--expires", "2030-01-01"),
         "--number"),
        (("license", "--username", "rph1", "--state", "ND", "--number", "9" * 65, "--expires", "2030-01-01"),
         "--number"),
        (("license", "--username", "rph1", "--state", "N.", "--number", "1", "--expires", "2030-01-01"),
         "--state"),
        (("token", "--username", "rph1", "--label", too_long), "--label"),
        (("user", "--username", "rph2", "--role", "pharmacist", "--password", PASSWORD, "--site", "ND-1"),
         "--site"),
    ):  # fmt: skip
        status, err = await admin(*argv)
        assert status == 2 and err.startswith(f"error: {option} ") and "Traceback" not in err, (argv, err)
    # The site's code as it was meant: later commands find it by it.
    assert await admin("site-pv1", "--site", "ND-1", "off") == (0, "")
    assert await admin("license", "--username", "rph1", "--state", "ND", "--number", " ND-5521 ",
                       "--expires", "2030-01-01") == (0, "")  # fmt: skip

    # A license recorded already expired is recorded, and the admin told it authorises nothing.
    expired = (
        "license",
        "--username",
        "rph1",
        "--state",
        "MN",
        "--number",
        "MN-77",
        "--expires",
        "2020-01-01",
    )
    assert await asyncio.to_thread(cmd_admin, _cli("admin", *db_args, *expired)) == 0
    assert capsys.readouterr().out.splitlines()[-1] == (
        "note: it expired on 2020-01-01: it lets rph1 verify nothing in MN"
    )

    # No password on the command line and no terminal to ask at: said, not a traceback.
    asked = subprocess.run(
        [sys.executable, "-m", "server.cli", "admin", *db_args, "reset-password", "--username", "rph1"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, start_new_session=True, check=False,
    )  # fmt: skip
    assert asked.returncode == 2 and "Traceback" not in asked.stderr
    assert "error: No password was given: give --password, or run the command at a terminal." in asked.stderr

    database = Database(database_url)
    try:
        async with database.read() as s:
            sites = list((await s.execute(select(Site.code, Site.name))).all())
            users = list((await s.execute(select(User.username, User.display_name))).all())
            licenses = list((await s.execute(select(License.state, License.number))).all())
            actions = list((await s.execute(select(AuditEvent.action))).scalars())
        assert sites == [("ND-1", "Hettinger Drug")]
        assert users == [("rph1", "Ada Lind")]
        assert sorted(licenses) == [("MN", "MN-77"), ("ND", "ND-5521")]
        assert "device_token.issued" not in actions and "user.password_reset" not in actions
    finally:
        await database.dispose()
