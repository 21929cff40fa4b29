"""A device token the server refuses (revoked, or from another server) is its own case: the technician
reads one line that says so and how to enrol again, nothing is retried in vain, and the outbox keeps
what it holds until the computer is enrolled again, then sends it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from remote_site_client.outbox import OPEN_STATES, Outbox
from tests.site_client.test_end_to_end import FILL_ID, enter_rx, fill_detail, photos
from tests.site_client.test_rx_import import EXPORT
from tests.site_client.world import ROOT, TECH, ServerProcess, make_site

REFUSED = (
    "The server refused this computer's device token (revoked, or from another server): enrol it again "
    "with `tp-site enroll --token-file ...`."
)


def admin(data_dir: Path, *args: str) -> str:
    """`tp-server admin` on the server's data folder, as its operator runs it."""
    done = subprocess.run(
        [sys.executable, "-m", "server.cli", "admin", "--data-dir", str(data_dir), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


async def revoke_the_sites_token(server: ServerProcess) -> None:
    await server.stop()
    (token_id,) = [line.split()[0] for line in admin(server.data_dir, "tokens").splitlines() if TECH in line]
    assert f"token {token_id} revoked" in admin(server.data_dir, "revoke-token", "--token-id", token_id)
    await server.start()


async def test_a_revoked_token_is_said_as_such_and_the_outbox_waits_for_the_next_enrolment(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    rx_id = await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("rx", "list")  # known here before the token is revoked
    assert code == 0, out + err
    await revoke_the_sites_token(server)

    # A prescription this computer does not know: nothing can be stored, and the reason is the token.
    code, out, err = await site.run("submit", "--rx", "6001237", *photos(photo_dir), "--count", "60")
    assert code == 4, out + err
    assert f"error: {REFUSED}" in err and "cannot be reached" not in out + err
    with Outbox(site.config.data_dir) as outbox:
        assert outbox.entries() == []

    for command in (["rx", "list"], ["status"]):
        code, out, err = await site.run(*command)
        assert code == 4, (command, out, err)
        assert err.splitlines()[0] == REFUSED, (command, err)
        assert "cannot be reached" not in out + err and "Offline" not in err, (command, err)
    code, out, _ = await site.run("rx", "list")
    assert out.startswith("Rx 100234"), out  # the copy kept here is still shown
    export = tmp_path / "export.csv"
    export.write_text(EXPORT, encoding="utf-8")
    code, out, err = await site.run("rx", "import", str(export))
    assert code == 4 and REFUSED in out and "cannot be reached" not in out, out + err

    # A prescription named by its id: kept in the outbox, tried once, not retried for the whole wait.
    code, out, err = await site.run(
        "submit", "--prescription-id", str(rx_id), *photos(photo_dir), "--count", "60", "--wait", "60"
    )
    assert code == 3, out + err
    found = FILL_ID.search(out)
    assert found, out
    fill_id = found.group(1)
    assert REFUSED in out.splitlines()
    assert f"Fill {fill_id[:8]} waits in the outbox: it goes once this computer is enrolled again" in out
    assert "cannot be reached" not in out and "`tp-site sync` delivers it" not in out
    with Outbox(site.config.data_dir) as outbox:
        entry = outbox.get(fill_id)
    assert entry is not None and entry.state in OPEN_STATES and entry.attempts == 1, entry

    code, out, err = await site.run("outbox")
    assert code == 0, out + err
    assert "waiting: the server refused this computer's device token; it goes once this computer is " in out
    assert "REFUSED" not in out and "to fix" not in out

    code, out, err = await site.run("sync", "--once", "--patience", "60")
    assert code == 4, out + err
    assert err.splitlines() == [
        REFUSED,
        "The outbox keeps 1 fill(s): they go once this computer is enrolled again "
        "(`tp-site enroll --token-file ...`, then `tp-site sync`).",
    ]
    for service in (["watch"], ["sync"]):
        code, out, err = await site.run(*service, timeout=30)
        assert code == 4 and f"error: {REFUSED}" in err, (service, out, err)
    with Outbox(site.config.data_dir) as outbox:
        entry = outbox.get(fill_id)
    assert entry is not None and entry.state in OPEN_STATES and entry.failed_reason is None

    # Enrolled again with a new token: what waited goes.
    token_file = tmp_path / "token.txt"
    token_file.write_text(admin(server.data_dir, "token", "--username", TECH, "--label", "ND-1 counter 2"))
    code, out, err = await site.run("enroll", "--server", server.url, "--token-file", str(token_file))
    assert code == 0, out + err
    code, out, err = await site.run("sync", "--once", "--patience", "30")
    assert code == 0 and f"{fill_id[:8]}: delivered" in out, out + err
    assert (await fill_detail(server.url, token_file.read_text().strip(), fill_id))["state"] == "queued"


async def test_enrolling_with_a_refused_token_says_to_ask_for_a_new_one(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    await revoke_the_sites_token(server)
    token_file = tmp_path / "token.txt"
    token_file.write_text(token)
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("enroll", "--server", server.url, "--token-file", str(token_file))
    assert code == 4, out + err
    assert "refused this device token (revoked, or from another server): ask the administrator" in err
