"""The command line as a technician types it: reachable as the README says, ids they can read aloud,
their own clock, the token file as the administrator hands it over, retakes that keep the rest."""

from __future__ import annotations

import asyncio
import datetime as dt
import fcntl
import ipaddress
import os
import re
import signal
import ssl
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from demo.photos import pills_photo, to_jpeg_bytes
from remote_site_client.api import SiteApi
from remote_site_client.outbox import Outbox
from remote_site_client.sender import Sender
from tests.site_client.test_end_to_end import FILL_ID, enter_rx, fill_detail, photos, site_fills
from tests.site_client.world import ROOT, Pharmacist, ServerProcess, Site, free_port, make_site, rx_body

# North Dakota's south-west, where the demo's Hettinger Drug is, keeps Mountain time.
COUNTER_TZ = "America/Denver"


def local(iso: str) -> str:
    return dt.datetime.fromisoformat(iso).astimezone(ZoneInfo(COUNTER_TZ)).strftime("%Y-%m-%d %H:%M")


def test_readme_says_how_a_checkout_reaches_tp_site(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## The site client") : readme.index("## Deploying")]
    assert ".venv/bin/tp-site" in section and ". .venv/bin/activate" in section
    # As the README says it: activated, `tp-site` is on PATH in a shell started at the repository root.
    done = subprocess.run(
        ["bash", "-c", ". .venv/bin/activate && tp-site --help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 0 and "enroll" in done.stdout, done.stderr


async def test_rx_list_shows_rx_numbers_and_bottle_ndcs_not_internal_ids(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    rx_id = await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("rx", "list")
    assert code == 0, out + err
    (line,) = out.splitlines()
    assert line.startswith("Rx 100234"), line
    assert "Metformin HCl 500 mg" in line and "NDC 0378-1805-01" in line and "Jane Q. Patient" in line
    assert str(rx_id) not in line.split()


async def test_status_lists_fills_by_short_id_with_rx_and_drug_in_local_time(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100234")
    # Submitted from another computer of the site: this one learns the prescription from the server.
    other = make_site(tmp_path / "other", server.url, token)
    code, out, err = await other.run("submit", "--rx", "100234", *photos(photo_dir), "--count", "60")
    assert code == 0, out + err
    fill_id = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
    assert f"Fill {fill_id[:8]} is queued" in out
    submitted = (await fill_detail(server.url, token, fill_id))["submitted_at"]

    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("status", env={"TZ": COUNTER_TZ})
    assert code == 0, out + err
    (line,) = out.splitlines()
    assert line.startswith(f"{fill_id[:8]}  Rx 100234"), line
    assert "Metformin HCl 500 mg" in line and "queued" in line
    assert f"submitted {local(submitted)}" in line
    assert fill_id not in line and "+00:00" not in line and not re.search(r"\d\d:\d\d:\d\d", line)

    async with Pharmacist(server.url) as rph:
        await rph.decide(fill_id, "reject", ["wrong_quantity"], "Counted 58.")
    code, out, err = await site.run("status", fill_id[:8], env={"TZ": COUNTER_TZ})
    assert code == 0, out + err
    decided = (await fill_detail(server.url, token, fill_id))["decision"]["decided_at"]
    assert f"Fill {fill_id[:8]}: REJECTED" in out
    assert "Rx 100234  Metformin HCl 500 mg  qty 60" in out
    assert f"REJECTED by Pat Pharmacist at {local(decided)}" in out and "Wrong quantity" in out
    assert f"tp-site submit --resubmit-of {fill_id[:8]}" in out


async def test_a_short_id_that_names_two_fills_is_refused_with_both_listed(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    rx_id = await enter_rx(server.url, token, "100234", refills=1)
    site = make_site(tmp_path, server.url, token)
    files = [(kind, photo_dir / f"{kind}.jpg") for kind in ("stock_bottle", "pills", "vial_label")]
    twins = ["5eed1e55-0000-4000-8000-000000000001", "5eed1e55-0000-4000-8000-000000000002"]
    with Outbox(site.config.data_dir) as outbox:
        for fill_id in twins:
            outbox.add({"id": fill_id, "prescription_id": rx_id, "barcodes": []}, files, rx_number="100234")
        async with SiteApi(site.config) as api:
            for fill_id in twins:
                assert (await Sender(site.config, outbox, api).deliver(fill_id, patience=30)).delivered

    code, out, err = await site.run("status", "5eed1e55")
    assert code == 2, out + err
    assert "5eed1e55 is the start of 2 fills" in err and "give more of the id" in err
    assert "5eed1e550000400080000000" in err  # each listed by enough of its id to tell them apart
    code, out, err = await site.run("status", "5eed1e55-0000-4000-8000-000000000002")
    assert code == 0 and "Fill 5eed1e55: waiting for a pharmacist" in out, out + err
    code, out, err = await site.run("status", twins[0].replace("-", ""))
    assert code == 0 and twins[0] in out, out + err
    code, out, err = await site.run("status", "bad-id!")
    assert code == 2 and "is not a fill id" in err


async def test_resubmit_of_a_short_id_keeps_every_photo_not_retaken(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run(
        "submit", "--rx", "100234", *photos(photo_dir), "--count", "58", "--priority", "waiting"
    )
    assert code == 0, out + err
    first = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
    async with Pharmacist(server.url) as rph:
        await rph.decide(first, "reject", ["wrong_quantity"], "Recount the tray.")

    # Only the retaken view and the new count: the prescription, the bottle and the vial come along.
    retake = tmp_path / "recounted.jpg"
    retake.write_bytes(to_jpeg_bytes(pills_photo(12, imprint="M 30", seed=9), 90))  # the tray again
    code, out, err = await site.run(
        "submit", "--resubmit-of", first[:8], "--pills", str(retake), "--count", "60"
    )
    assert code == 0, out + err
    assert f"Kept from the rejected fill {first[:8]}: stock bottle photo, vial label photo." in out
    second = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
    old, new = await fill_detail(server.url, token, first), await fill_detail(server.url, token, second)
    assert new["previous_fill_id"] == first and new["state"] == "queued" and new["counted_quantity"] == 60
    assert new["priority"] == "waiting"  # the patient still waits at the counter
    sha = {f["id"]: {m["kind"]: m["sha256"] for m in f["media"]} for f in (old, new)}
    assert sha[second]["stock_bottle"] == sha[first]["stock_bottle"]
    assert sha[second]["vial_label"] == sha[first]["vial_label"]
    assert sha[second]["pills"] != sha[first]["pills"]

    # From a computer that never had the photos: they come from the server; the count too.
    async with Pharmacist(server.url) as rph:
        await rph.decide(second, "reject", ["label_error"], "Reprint the vial label.")
    counter2 = make_site(tmp_path / "counter2", server.url, token)
    code, out, err = await counter2.run(
        "submit", "--resubmit-of", second[:8], "--vial-label", str(photo_dir / "vial_label.jpg")
    )
    assert code == 0, out + err
    assert "Kept from the rejected fill" in out and "stock bottle photo, pills photo, count 60" in out
    third = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
    detail = await fill_detail(server.url, token, third)
    assert detail["previous_fill_id"] == second and detail["counted_quantity"] == 60
    assert sorted(m["kind"] for m in detail["media"]) == ["pills", "stock_bottle", "vial_label"]
    assert detail["product_check"] == "match"  # the kept bottle's barcode still read and matched
    assert len(await site_fills(server.url, token)) == 3


def admin_token_file(server: ServerProcess, path: Path) -> None:
    """What an administrator gets from `tp-server admin token > FILE 2>&1`: the log, then the token."""
    with path.open("w") as out:
        subprocess.run(
            [sys.executable, "-m", "server.cli", "admin", "--data-dir", str(server.data_dir), "token",
             "--username", "tech_nd1", "--label", "second counter"],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, check=True, timeout=60,
        )  # fmt: skip


@pytest.mark.parametrize(
    "form", ["admin output", "admin output after a migration", "variable line", "demo file"]
)
async def test_enroll_reads_the_token_file_as_the_administrator_hands_it_over(
    server: ServerProcess, token: str, tmp_path: Path, form: str
) -> None:
    token_file = tmp_path / "token.txt"
    if form == "admin output":
        admin_token_file(server, token_file)
    elif form == "admin output after a migration":
        # A command that upgraded the schema first logged it before the token.
        admin_token_file(server, token_file)
        migrated = "2026-12-07 09:00:00,000 INFO alembic.runtime.migration: Running upgrade 0027 -> 0028\n"
        token_file.write_text(migrated + token_file.read_text())
    elif form == "variable line":
        token_file.write_text(f"# Hettinger Drug, counter 1\nTP_SITE_TOKEN={token}\n")
    else:
        token_file.write_text(token + "\n")
    site = Site(tmp_path / "config.json", make_site(tmp_path, "http://unused", "unused").config)
    code, out, err = await site.run(
        "enroll", "--server", server.url, "--token-file", str(token_file), "--data-dir", str(tmp_path / "s")
    )
    assert code == 0, out + err
    assert "as Terry Tech" in out


async def test_enroll_says_when_the_address_is_not_the_server_s(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    """Typed without its scheme, the address was 'cannot be reached: 127.0.0.1:8080/api/v1/session';
    copied with the API's path, it was 'error: 404: Not Found'."""
    token_file = tmp_path / "token.txt"
    token_file.write_text(token + "\n")
    site = Site(tmp_path / "config.json", make_site(tmp_path, "http://unused", "unused").config)
    enroll = ("enroll", "--token-file", str(token_file), "--data-dir", str(tmp_path / "s"), "--server")
    bare = server.url.removeprefix("http://")
    code, out, err = await site.run(*enroll, bare)
    assert code == 2, out + err
    assert err.strip() == (
        "error: The server's address starts with https:// (or http://), e.g. https://verify.example.org: "
        f"'{bare}' is not one."
    )
    code, out, err = await site.run(*enroll, server.url + "/api/v1")
    assert code == 4, out + err
    assert err.strip() == (
        f"error: No telepharmacy server answers at {server.url}/api/v1 ({server.url}/api/v1/api/v1/session"
        " was not found): check the server's address."
    )
    assert not (tmp_path / "config.json").exists()  # nothing saved
    code, out, err = await site.run(*enroll, server.url + "/")
    assert code == 0 and "as Terry Tech" in out, out + err


def _self_signed(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 that no authority signed, and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


async def test_enroll_says_when_https_is_not_spoken_or_its_certificate_not_trusted(
    server: ServerProcess, token: str, tmp_path: Path
) -> None:
    """Each was 'The server cannot be reached' and the TLS library's own words, or 'Server disconnected'."""
    token_file = tmp_path / "token.txt"
    token_file.write_text(token + "\n")
    site = Site(tmp_path / "config.json", make_site(tmp_path, "http://unused", "unused").config)
    enroll = ("enroll", "--token-file", str(token_file), "--data-dir", str(tmp_path / "s"), "--server")
    plain = server.url.removeprefix("http://")
    code, out, err = await site.run(*enroll, f"https://{plain}")
    assert code == 3, out + err
    assert err.strip() == (
        f"error: No https answers at {plain}: what listens there speaks plain http. Check the server's "
        "address, its http:// or https:// and its port."
    )

    # A server whose certificate its own organisation signed (here: nobody).
    cert, key = _self_signed(tmp_path)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(cert, key)
    runner = web.AppRunner(web.Application())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    try:
        code, out, err = await site.run(*enroll, f"https://127.0.0.1:{port}")
        assert code == 3, out + err
        assert err.strip() == (
            f"error: The certificate of 127.0.0.1:{port} is not trusted on this computer (self-signed "
            "certificate). If your organisation issues its own certificates, add its authority to this "
            "computer's trusted ones (update-ca-certificates) or name its file in SSL_CERT_FILE; the "
            "server's address must be a name the certificate is for."
        )
        # As the message says: with the certificate named, the connection is made (and finds no server).
        code, out, err = await site.run(
            *enroll, f"https://127.0.0.1:{port}", env={"SSL_CERT_FILE": str(cert)}
        )
        assert code == 4 and "No telepharmacy server answers at" in err, out + err
        code, out, err = await site.run(*enroll, f"http://127.0.0.1:{port}")
        assert code == 3, out + err
        assert err.strip() == (
            f"error: The server at http://127.0.0.1:{port} closed the connection without answering: if it "
            "serves https, its address starts with https://."
        )
    finally:
        await runner.cleanup()
    assert not (tmp_path / "config.json").exists()


async def test_the_station_names_what_it_cannot_listen_on(tmp_path: Path) -> None:
    """--listen with an address this computer does not have was 'Port 8766 cannot be used ... choose
    another with --port'; a port past 65535 was a traceback."""
    site = make_site(tmp_path, "http://127.0.0.1:9", "unused")
    code, out, err = await site.run("station", "--port", "0", "--listen", "192.0.2.1")
    assert code == 2, out + err
    assert err.strip().endswith(
        "error: 192.0.2.1 is not an address of this computer: --listen takes its address on the pharmacy's"
        " network (`ip -brief address` lists them)."
    ), err
    code, out, err = await site.run("station", "--port", "99999")
    assert code == 2 and "argument --port: a port is from 0 to 65535" in err and "Traceback" not in err


async def test_a_server_down_is_named_by_its_address_once(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    """Was 'Not sent yet (The server cannot be reached: Cannot connect to host 127.0.0.1:PORT ssl:default
    ...)' for an http address, and `status` said 'The server cannot be reached' twice."""
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("rx", "list")
    assert code == 0, out + err
    await server.stop()
    down = f"The server cannot be reached: cannot connect to {server.url} (connection refused)"
    code, out, err = await site.run("submit", "--rx", "100234", *photos(photo_dir), "--wait", "1")
    assert code == 3, out + err
    assert f"Not sent yet ({down}). It is safe in the outbox" in out
    assert "ssl:default" not in out + err
    code, out, err = await site.run("status")
    assert code == 0, out + err
    assert err.splitlines() == [f"{down}; what this computer knows:"]
    code, out, err = await site.run("rx", "list")
    assert code == 0 and err.splitlines() == [f"{down}; showing the prescriptions kept on this computer."]


async def test_a_folder_given_as_a_photo_is_said_to_be_a_folder(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    site = make_site(tmp_path, server.url, token)
    folder = tmp_path / "x"
    folder.mkdir()
    given = ["--stock-bottle", str(photo_dir / "stock_bottle.jpg"), "--pills", str(folder)]
    code, out, err = await site.run("submit", "--rx", "100234", *given)
    assert code == 2, out + err
    assert err.strip() == f"error: The pills photo {folder} is a folder: give the file itself."
    code, out, err = await site.run("submit", "--rx", "100234", *given[:2], "--video", str(folder))
    assert code == 2 and f"The count video {folder} is a folder" in err, out + err


@pytest.mark.parametrize("command", [["status"], ["outbox", "--all"], ["rx", "list"]])
async def test_a_listing_read_by_head_stops_quietly(tmp_path: Path, command: list[str]) -> None:
    """`tp-site status | head` ended in a BrokenPipeError traceback."""
    site = make_site(tmp_path, f"http://127.0.0.1:{free_port()}", "t" * 43)  # offline: what is kept here
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"\xff\xd8\xff a photo")
    with Outbox(site.config.data_dir) as outbox:
        outbox.cache_prescriptions(
            [{**rx_body(f"7{n:05d}"), "id": n, "expected_ndc": "00378180501"} for n in range(1, 101)]
        )
        for n in range(1, 101):
            outbox.add({"prescription_id": n, "barcodes": []}, [("pills", photo)], rx_number=f"7{n:05d}")
    read, write = os.pipe()
    fcntl.fcntl(write, fcntl.F_SETPIPE_SZ, 4096)  # full at once: the listing waits for its reader
    proc = await asyncio.create_subprocess_exec(
        *site.argv(*command), cwd=ROOT, env=site.env(), stdout=write, stderr=asyncio.subprocess.PIPE
    )
    os.close(write)
    with os.fdopen(read, "rb") as reader:
        assert reader.readline()  # as `head -1` reads, then goes away
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert "Traceback" not in err.decode() and "Exception ignored" not in err.decode(), err.decode()
    assert proc.returncode == 128 + signal.SIGPIPE, err.decode()


async def test_a_prescription_older_than_the_newest_two_hundred_is_found_by_its_rx_number(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    """A refill's prescription was entered weeks ago: at a busy site it is far past the newest page of
    prescriptions, and on a computer that never saw it `tp-site rx show` and `submit --rx` said it
    did not exist."""
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    gate = asyncio.Semaphore(8)

    async def newer(n: int) -> None:
        async with gate:
            await enter_rx(server.url, token, f"2{n:05d}")

    await asyncio.gather(*(newer(n) for n in range(201)))
    code, out, err = await site.run("rx", "show", "100234")
    assert code == 0 and "Rx 100234" in out, out + err
    code, out, err = await site.run("submit", "--rx", "100234", *photos(photo_dir), "--count", "60")
    assert code == 0 and "queued for verification" in out, out + err
    code, out, err = await site.run("rx", "show", "100235")
    assert code == 2 and "No prescription Rx 100235 at this site" in err, out + err
