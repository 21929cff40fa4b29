"""tp-site against a real server process: checked, stored, forwarded over a failing link, decided, shown."""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from demo.photos import count_video
from remote_site_client.api import SiteApi
from remote_site_client.outbox import CREATED, QUEUED, Outbox, OutboxFile
from remote_site_client.sender import Sender, upload_name
from remote_site_client.tus import CREATION_BEGUN, TusClient
from tests.site_client.proxy import LinkProxy
from tests.site_client.world import (
    NDC,
    Pharmacist,
    ServerProcess,
    Site,
    free_port,
    make_site,
    rx_body,
    site_api,
)

FILL_ID = re.compile(r"Stored in the outbox as fill [0-9a-f]{8} \(id ([0-9a-f-]{36})\)")
HOOK = """
import json, os, sys
data = json.load(sys.stdin)
with open(sys.argv[1], "w") as f:
    json.dump({"env": {k: v for k, v in os.environ.items() if k.startswith("TP_")}, "stdin": data,
               "argv": sys.argv[2:]}, f)
"""


def photos(photo_dir: Path, stock: str = "stock_bottle.jpg") -> list[str]:
    return [
        "--stock-bottle", str(photo_dir / stock),
        "--pills", str(photo_dir / "pills.jpg"),
        "--vial-label", str(photo_dir / "vial_label.jpg"),
    ]  # fmt: skip


async def enter_rx(server_url: str, token: str, rx_number: str, ndc: str = NDC, refills: int = 0) -> int:
    body = {**rx_body(rx_number, ndc), "refills_authorized": refills}
    status, rx = await site_api(server_url, token, "POST", "/api/v1/prescriptions", body)
    assert status == 201, rx
    return int(rx["id"])


async def refused_for_a_view(
    server: ServerProcess, token: str, tmp_path: Path, prescription_id: int, *submit: str
) -> tuple[Site, str, str]:
    """A fill the server refused for a view it lacks: the site, the fill's id and what `sync` said.
    `submit` names a missing view itself once the site knows the prescription, so this fill is stored
    while the server cannot be reached, before the site knew it; then the link is back."""
    offline = make_site(tmp_path, f"http://127.0.0.1:{free_port()}", token)
    code, out, err = await offline.run(
        "submit", "--prescription-id", str(prescription_id), *submit, "--no-send"
    )
    assert code == 3, out + err
    found = FILL_ID.search(out)
    assert found, out
    site = make_site(tmp_path, server.url, token)
    code, synced, err = await site.run("sync", "--once", "--patience", "10")
    assert code == 4 and "REFUSED (The server needs the" in synced, synced + err
    code, out, err = await site.run("rx", "list")  # the prescription known here from now on
    assert code == 0, out + err
    return site, found.group(1), synced


async def site_fills(server_url: str, token: str) -> list[dict[str, Any]]:
    status, body = await site_api(server_url, token, "GET", "/api/v1/fills")
    assert status == 200
    return list(body["fills"])


async def fill_detail(server_url: str, token: str, fill_id: str) -> dict[str, Any]:
    status, body = await site_api(server_url, token, "GET", f"/api/v1/fills/{fill_id}")
    assert status == 200, body
    return dict(body)


async def wait_for_line(stream: asyncio.StreamReader, text: str, timeout: float = 20) -> str:
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError(f"stream ended before {text!r}")
            if text in line:
                return line


async def test_fill_is_checked_queued_decided_and_the_rejection_shown_with_its_note(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    # Enrolment: the token from a file (not the shell history), settings readable by the owner only.
    token_file = tmp_path / "token.txt"
    token_file.write_text(token + "\n")
    config_path = tmp_path / "etc" / "tp-site.json"
    site = Site(config_path, make_site(tmp_path, "http://unused", "unused").config)
    code, out, err = await site.run(
        "enroll",
        "--server",
        server.url,
        "--token-file",
        str(token_file),
        "--data-dir",
        str(tmp_path / "site"),
    )
    assert code == 0, out + err
    assert "as Terry Tech" in out and stat.S_IMODE(config_path.stat().st_mode) == 0o600
    code, out, err = await site.run(
        "rx", "create", "--rx-number", "100234", "--patient-name", "Jane Q. Patient",
        "--patient-dob", "1948-02-29", "--prescriber", "Dr. Ruth Prescriber", "--drug", "Metformin HCl",
        "--strength", "500 mg", "--dosage-form", "tablet", "--ndc", NDC, "--quantity", "60",
        "--days-supply", "30", "--directions", "Take one tablet by mouth twice daily with meals",
    )  # fmt: skip
    assert code == 0, out + err
    hook_file = tmp_path / "hook.py"
    hook_file.write_text(HOOK)
    hook_out = tmp_path / "hook-out.json"
    watch = await site.start(
        "watch", "--exit-after", "1", "--run", sys.executable,
        "--run-arg", str(hook_file), "--run-arg", str(hook_out), "--run-arg", "label-printer",
    )  # fmt: skip
    try:
        assert watch.stderr is not None and watch.stdout is not None
        await wait_for_line(watch.stderr, "Connected")

        code, out, err = await site.run("submit", "--rx", "100234", *photos(photo_dir), "--count", "60")
        assert code == 0, out + err
        assert "The barcode matches the prescription: NDC 00378-1805-01, lot LOT42A" in out
        assert "queued for verification" in out
        match = FILL_ID.search(out)
        assert match
        fill_id = match.group(1)

        fill = await fill_detail(server.url, token, fill_id)
        assert fill["state"] == "queued"
        assert fill["product_check"] == "match"
        assert fill["counted_quantity"] == 60
        assert sorted(m["kind"] for m in fill["media"]) == ["pills", "stock_bottle", "vial_label"]
        assert all(max(m["width"], m["height"]) <= 2048 for m in fill["media"])
        assert fill["barcodes"] and fill["barcodes"][0].endswith("LOT42A")  # read from the photo at the site

        async with Pharmacist(server.url) as rph:
            await rph.decide(fill_id, "reject", ["wrong_strength", "other"], "The vial label says 850 mg.")
        shown, _ = await asyncio.wait_for(watch.communicate(), 30)
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
    text = shown.decode()
    assert "REJECTED" in text and fill_id[:8] in text and "Rx 100234" in text
    assert "Wrong strength" in text and "The vial label says 850 mg." in text
    hook = json.loads(hook_out.read_text())
    assert hook["argv"] == ["label-printer"]
    assert hook["env"]["TP_FILL_ID"] == fill_id and hook["env"]["TP_OUTCOME"] == "reject"
    assert hook["env"]["TP_REASON_CODES"] == "wrong_strength,other"
    assert hook["stdin"]["TP_NOTE"] == "The vial label says 850 mg."

    code, out, _ = await site.run("status", fill_id)
    assert code == 0 and "REJECTED by Pat Pharmacist" in out and "850 mg" in out


async def test_fill_submitted_while_the_server_is_down_is_delivered_once_when_it_returns(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "200001")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("rx", "list")
    assert code == 0 and "200001" in out, out + err  # the prescription is now known offline too
    await server.stop()

    video = count_video(tmp_path / "count.mp4", seconds=1, count=20)
    code, out, err = await site.run(
        "submit", "--rx", "200001", *photos(photo_dir), "--video", str(video), "--wait", "1"
    )
    assert code == 3, out + err
    assert "safe in the outbox" in out
    code, out, _ = await site.run("outbox")
    assert "pending" in out and "cannot be reached" in out

    await server.start()
    code, out, err = await site.run("sync", "--once")
    assert code == 0, out + err
    assert "delivered" in out
    code, out, _ = await site.run("sync", "--once")
    assert code == 0
    code, out, _ = await site.run("outbox")
    assert "empty" in out

    fills = await site_fills(server.url, token)
    assert len(fills) == 1 and fills[0]["state"] == "queued"
    detail = await fill_detail(server.url, token, fills[0]["id"])
    assert sorted(m["kind"] for m in detail["media"]) == [
        "count_video",
        "pills",
        "stock_bottle",
        "vial_label",
    ]


async def server_offset(api: SiteApi, f: OutboxFile) -> int | None:
    """How much of an outbox file the server holds, found as the client finds it."""
    if f.upload_url == CREATION_BEGUN:
        # The same file created again (without a body) is the upload the server kept.
        assert f.sha256 is not None and f.bytes is not None
        meta = {"fill_id": f.fill_id, "kind": f.kind, "filename": upload_name(f), "sha256": f.sha256}
        return (await TusClient(api).create(f.bytes, meta))[1]
    return await TusClient(api).offset(f.upload_url) if f.upload_url else 0


async def test_client_killed_mid_upload_resumes_from_the_servers_offset(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "300001")
    proxy = LinkProxy("127.0.0.1", server.port, up_rate=200_000)
    await proxy.start()
    try:
        site = make_site(tmp_path, proxy.url, token)
        proc = await site.start("submit", "--rx", "300001", *photos(photo_dir))
        try:
            async with asyncio.timeout(30):
                while proxy.stats.up_bytes < 500_000:
                    await asyncio.sleep(0.02)
        finally:
            proc.kill()  # SIGKILL: no cleanup of any kind
            # On loopback the kernel buffers megabytes that a dead process's socket still delivers; drop
            # the link with the process, as at a site whose computer lost power, so the upload stays cut.
            proxy.cut()
            await proc.communicate()

        with Outbox(site.config.data_dir) as outbox:
            (entry,) = outbox.entries()
        assert entry.state == CREATED
        waiting = [f for f in entry.files if f.media_id is None]
        # A photo goes whole with its creation: killed mid-way, the client knows only that it began.
        assert waiting and any(f.upload_url == CREATION_BEGUN for f in waiting)
        # The server notices the dropped requests and keeps what arrived (it buffers up to 1 MB before);
        # a file whose last byte arrived before the kill is stored, though the client never heard so.
        held, last = 0, -1
        async with SiteApi(site.config) as api, asyncio.timeout(10):
            while held != last or held == 0:
                await asyncio.sleep(0.3)
                stored = {m["sha256"] for m in (await api.fill(entry.fill_id))["media"]}
                offsets = {f.id: await server_offset(api, f) for f in waiting}
                last, held = held, sum(o or 0 for o in offsets.values())
        partial = [f for f in waiting if f.sha256 not in stored]
        assert any(offsets[f.id] for f in partial)  # at least one file was cut mid-way and kept
        still_to_send = sum((f.bytes or 0) - (offsets[f.id] or 0) for f in partial)

        proxy.reset_counts()
        proxy.up_rate = None
        code, out, err = await site.run("sync", "--once")
        assert code == 0, out + err
        resent = proxy.stats.up_bytes
    finally:
        await proxy.stop()
    # Only what the server did not have went again (plus a few requests' headers), not the whole file.
    with Outbox(site.config.data_dir) as outbox:
        done = outbox.get(entry.fill_id)
    assert still_to_send <= resent < still_to_send + 30_000, (offsets, stored, entry, done, out, err)
    assert done is not None
    assert done.state == QUEUED, (done.failed_reason, out)
    fills = await site_fills(server.url, token)
    assert [f["id"] for f in fills] == [entry.fill_id] and fills[0]["state"] == "queued"
    detail = await fill_detail(server.url, token, entry.fill_id)
    assert sorted((m["kind"], m["sha256"]) for m in detail["media"]) == sorted(
        (f.kind, f.sha256) for f in done.files
    )


async def test_link_cut_mid_upload_resumes_without_starting_over(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    rx_id = await enter_rx(server.url, token, "400001")
    # A link (1 MB/s) the server keeps up with; cut with a reset, as a dropped mobile link is.
    proxy = LinkProxy("127.0.0.1", server.port, up_rate=1_000_000)
    await proxy.start()
    site = make_site(tmp_path, proxy.url, token)
    files = [(kind, photo_dir / f"{kind}.jpg") for kind in ("stock_bottle", "pills", "vial_label")]
    try:
        with Outbox(site.config.data_dir) as outbox:
            fill_id = outbox.add({"prescription_id": rx_id, "barcodes": []}, files)
            proxy.cut_after_up = 250_000
            async with SiteApi(site.config) as api:
                result = await Sender(site.config, outbox, api).deliver(fill_id, patience=30)
            entry = outbox.get(fill_id)
            cuts, up_bytes, after_cut = proxy.stats.cuts, proxy.stats.up_bytes, proxy.stats.up_at_cut
    finally:
        await proxy.stop()
    assert result.delivered, result.error
    assert cuts == 1
    assert entry is not None and entry.attempts == 1  # one failed attempt, then the resumed one
    total = sum(f.bytes or 0 for f in entry.files)
    # After the cut, what the server had kept was not sent again: the files resumed from their offsets.
    assert up_bytes - after_cut < total - 50_000, (total, up_bytes, after_cut)
    fills = await site_fills(server.url, token)
    assert len(fills) == 1 and fills[0]["state"] == "queued"


async def test_blurred_dark_and_wrong_product_photos_are_stopped_before_anything_is_sent(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "500001")
    site = make_site(tmp_path, server.url, token)
    expected = {
        "blurred_stock_bottle.jpg": "The stock bottle photo is blurred",
        "dark_stock_bottle.jpg": "The stock bottle photo is too dark",
        "wrong_stock_bottle.jpg": "Wrong product",
    }
    for photo, message in expected.items():
        code, out, err = await site.run("submit", "--rx", "500001", *photos(photo_dir, photo))
        assert code == 1, out + err
        assert message in out, out
        assert "Nothing was sent" in out
    code, out, _ = await site.run("outbox")
    assert "empty" in out
    assert await site_fills(server.url, token) == []

    # A file the server refuses whatever happens: kept, marked failed with the server's reason.
    (tmp_path / "pills.jpg").write_bytes(b"%PDF-1.4 this is a scanned document, not a photo")
    code, out, err = await site.run(
        "submit", "--rx", "500001", "--stock-bottle", str(photo_dir / "stock_bottle.jpg"),
        "--pills", str(tmp_path / "pills.jpg"), "--vial-label", str(photo_dir / "vial_label.jpg"),
        "--override", "camera broken",
    )  # fmt: skip
    assert code == 4, out + err
    assert "The pills photo cannot be opened" in out
    code, out, _ = await site.run("outbox")
    assert "REFUSED" in out and "refused: The server refused the pills photo" in out, out

    reason = "Manufacturer changed the NDC; pharmacist told by phone"
    code, out, err = await site.run(
        "submit", "--rx", "500001", *photos(photo_dir, "wrong_stock_bottle.jpg"), "--override", reason
    )
    assert code == 0, out + err
    fill_id = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
    fill = await fill_detail(server.url, token, fill_id)
    assert fill["override_reason"] == reason and fill["product_check"] == "mismatch"
    # The pharmacist sees which check was sent past on which photo, and must acknowledge it.
    assert fill["overridden_checks"] == [{"kind": "stock_bottle", "check": "wrong_ndc"}]
    assert {"code": "override", "checks": fill["overridden_checks"]} in fill["flags"]


async def _decided_while_watch_was_cut_off(
    server: ServerProcess,
    token: str,
    photo_dir: Path,
    tmp_path: Path,
    rx_number: str,
    while_down: Callable[[], None] = lambda: None,
) -> None:
    """A fill sent, `tp-site watch` connected through a link that is then cut, the fill approved (and
    `while_down` done) while the link is down: once it is back, watch shows the approval and the outbox
    records it."""
    rx_id = await enter_rx(server.url, token, rx_number)
    proxy = LinkProxy("127.0.0.1", server.port)
    await proxy.start()
    site = make_site(tmp_path, server.url, token)
    files = [(kind, photo_dir / f"{kind}.jpg") for kind in ("stock_bottle", "pills", "vial_label")]
    with Outbox(site.config.data_dir) as outbox:
        fill_id = outbox.add({"prescription_id": rx_id, "barcodes": []}, files)
        async with SiteApi(site.config) as api:
            assert (await Sender(site.config, outbox, api).deliver(fill_id, patience=30)).delivered
    watcher = Site(site.config_path, site.config)
    watcher.retarget(proxy.url)
    watch = await watcher.start("watch", "--exit-after", "1")
    try:
        assert watch.stderr is not None
        await wait_for_line(watch.stderr, "Connected")
        proxy.down = True
        proxy.cut()
        await wait_for_line(watch.stderr, "Link lost")
        async with Pharmacist(server.url) as rph:
            await rph.decide(fill_id, "approve")
        while_down()
        await asyncio.sleep(4)  # watch retries meanwhile (0.5, 1 and 2 s apart), saying nothing more
        proxy.down = False
        shown, told = await asyncio.wait_for(watch.communicate(), 30)
    finally:
        if watch.returncode is None:
            watch.kill()
            await watch.wait()
        await proxy.stop()
    assert f"APPROVED  Rx {rx_number}  Metformin HCl 500 mg  (fill {fill_id[:8]})" in shown.decode()
    # The outage said once, and once more as its reason changed from the cut to the refusals: not at
    # every retry.
    assert told.decode().count("Link lost") <= 1 and "Connected" in told.decode(), told.decode()
    with Outbox(site.config.data_dir) as outbox:
        entry = outbox.get(fill_id)
    assert entry is not None and entry.outcome == "approve" and entry.fill_state == "approved"


async def test_watch_catches_up_on_a_decision_made_while_its_link_was_down(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await _decided_while_watch_was_cut_off(server, token, photo_dir, tmp_path, "600001")


async def test_watch_away_longer_than_the_event_window_reloads_and_shows_the_decision(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    def forget_missed_events() -> None:
        # The server no longer keeps the events the site missed (all but the newest).
        with sqlite3.connect(server.data_dir / "telepharmacy.sqlite3") as db:
            db.execute("DELETE FROM events WHERE id < (SELECT max(id) FROM events)")

    await _decided_while_watch_was_cut_off(
        server, token, photo_dir, tmp_path, "600002", while_down=forget_missed_events
    )


async def test_sync_service_delivers_the_outbox_and_records_decisions(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "700001")
    site = make_site(tmp_path, server.url, token, retention_days=0)
    code, out, err = await site.run("submit", "--rx", "700001", *photos(photo_dir), "--no-send")
    assert code == 3, out + err
    fill_id = FILL_ID.search(out).group(1)  # type: ignore[union-attr]
    service = await site.start("sync")
    try:
        async with asyncio.timeout(30):
            while [f["state"] for f in await site_fills(server.url, token)] != ["queued"]:
                await asyncio.sleep(0.2)
            async with Pharmacist(server.url) as rph:
                await rph.decide(fill_id, "approve")
            while True:
                with Outbox(site.config.data_dir) as outbox:
                    entry = outbox.get(fill_id)
                if entry is not None and entry.pruned_at is not None:
                    break
                await asyncio.sleep(0.2)
    finally:
        service.terminate()
        await service.communicate()
    assert service.returncode == 0
    assert entry.outcome == "approve" and entry.state == QUEUED
    # Approved, and the retention (0 days here) has passed: the originals are gone from the site.
    assert not any(f.original.exists() for f in entry.files)
