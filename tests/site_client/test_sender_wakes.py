"""A running `tp-site sync` sends what another process stored at once, not at the end of its rest."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

from tests.site_client.world import ServerProcess, make_site, rx_body, site_api


async def test_a_fill_stored_with_no_send_is_picked_up_by_the_running_sender_within_a_second(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    body = {**rx_body("400001"), "refills_authorized": 9}  # ten fills of one prescription
    status, _ = await site_api(server.url, token, "POST", "/api/v1/prescriptions", body)
    assert status == 201
    site = make_site(tmp_path, server.url, token)
    sync = await site.start("sync")
    photos = [
        "--stock-bottle", str(photo_dir / "stock_bottle.jpg"),
        "--pills", str(photo_dir / "pills.jpg"),
        "--vial-label", str(photo_dir / "vial_label.jpg"),
    ]  # fmt: skip
    waits = []
    try:
        assert sync.stderr is not None
        await asyncio.wait_for(sync.stderr.readline(), 20)  # "Sync running for ..."
        for n in range(10):
            code, out, err = await site.run("submit", "--rx", "400001", *photos, "--no-send")
            assert code == 3, out + err  # stored, not sent by itself
            stored = time.monotonic()
            while True:
                status, body = await site_api(server.url, token, "GET", "/api/v1/fills")
                if len(body["fills"]) > n:
                    break
                assert time.monotonic() - stored < 20, "the running sender never picked the fill up"
                await asyncio.sleep(0.02)
            waits.append(time.monotonic() - stored)
    finally:
        sync.terminate()
        await sync.wait()
    assert statistics.median(waits) < 1.0, waits
