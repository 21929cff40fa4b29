"""A device token the server refuses (revoked, or from another server) is its own case: the technician
reads one line that says so and how to enrol again, nothing is retried in vain, and the outbox keeps
what it holds until the computer is enrolled again, then sends it."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from remote_site_client.outbox import OPEN_STATES, Outbox
from tests.site_client.test_end_to_end import FILL_ID, enter_rx, fill_detail, photos, wait_for_line
from tests.site_client.test_rx_import import EXPORT
from tests.site_client.world import ROOT, TECH, Pharmacist, ServerProcess, make_site

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


async def revoke_the_sites_token(server: ServerProcess, label: str = "ND-1 counter") -> None:
    """Revokes the technician's device token of that label, as the operator does with the server down."""
    await server.stop()
    tokens = admin(server.data_dir, "tokens").splitlines()
    (token_id,) = [line.split()[0] for line in tokens if TECH in line and line.endswith(f" {label}")]
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


async def lines_until(stream: asyncio.StreamReader, text: str, timeout: float = 90) -> list[str]:
    """The lines read up to the first that holds `text`, that one included (a client retries at most
    30 s apart: a server down for a while is seen back that late)."""
    lines: list[str] = []
    async with asyncio.timeout(timeout):
        while not lines or text not in lines[-1]:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended before {text!r}: {lines}")
            lines.append(line.rstrip("\n"))
    return lines


async def test_a_running_watch_goes_on_with_the_token_of_a_new_enrolment_and_stops_without_one(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    watch = await site.start("watch", "--exit-after", "1")
    try:
        assert watch.stdout is not None and watch.stderr is not None
        await wait_for_line(watch.stderr, "Connected")
        # The computer is enrolled again with a new token while watch runs; then the old one is revoked.
        token_file = tmp_path / "token.txt"
        new_token = admin(server.data_dir, "token", "--username", TECH, "--label", "ND-1 counter 2")
        token_file.write_text(new_token)
        code, out, err = await site.run("enroll", "--server", server.url, "--token-file", str(token_file))
        assert code == 0, out + err
        await revoke_the_sites_token(server)
        told = await lines_until(watch.stderr, "Connected")
        assert (
            "Link lost (the old device token was refused; going on with the one of the new enrolment); "
            "reconnecting..." in told
        ), told
        assert REFUSED not in "".join(told), told

        code, out, err = await site.run("submit", "--rx", "100234", *photos(photo_dir), "--count", "60")
        assert code == 0, out + err
        fill_id = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
        async with Pharmacist(server.url) as rph:
            await rph.decide(fill_id, "reject", ["wrong_strength"], "The vial label says 850 mg.")
        shown, _ = await asyncio.wait_for(watch.communicate(), 30)
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    assert watch.returncode == 0
    assert f"REJECTED  Rx 100234  Metformin HCl 500 mg  (fill {fill_id[:8]})" in shown.decode()

    # Its token revoked with no new enrolment: one line says so, and watch stops rather than retrying.
    watch = await site.start("watch")
    try:
        assert watch.stderr is not None
        await wait_for_line(watch.stderr, "Connected")
        await revoke_the_sites_token(server, "ND-1 counter 2")
        _, told_bytes = await asyncio.wait_for(watch.communicate(), 90)
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    assert watch.returncode == 4
    assert told_bytes.decode().splitlines()[-1] == f"error: {REFUSED}", told_bytes.decode()
    assert told_bytes.decode().count(REFUSED) == 1
