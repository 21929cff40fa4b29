"""Never retried forever: a fill the server refuses for a reason retrying cannot cure stops, says why,
and waits for the technician to fix it in place or discard it with a reason (audited at the site)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from aiohttp import web

from remote_site_client.api import SiteApi
from remote_site_client.outbox import DISCARDED, FAILED, PENDING, Outbox
from remote_site_client.sender import Sender
from tests.site_client.test_end_to_end import (
    FILL_ID,
    enter_rx,
    fill_detail,
    photos,
    refused_for_a_view,
    site_fills,
)
from tests.site_client.world import Pharmacist, ServerProcess, Site, free_port, make_site


def refused_id(out: str) -> str:
    match = FILL_ID.search(out)
    assert match, out
    return match.group(1)


async def test_a_fill_missing_a_required_view_stops_says_which_and_is_fixed_in_place(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    rx_id = await enter_rx(server.url, token, "100234")
    # No vial label: every check here passes, the server's rule for the site wants one.
    site, fill_id, out = await refused_for_a_view(
        server, token, tmp_path, rx_id, "--stock-bottle", str(photo_dir / "stock_bottle.jpg"),
        "--pills", str(photo_dir / "pills.jpg"), "--count", "60",
    )  # fmt: skip
    assert "REFUSED (The server needs the vial label photo, which this fill does not have.)" in out

    # Not sent again by itself: the sender leaves it alone however often it runs.
    with Outbox(site.config.data_dir) as outbox:
        before = outbox.get(fill_id)
    assert (
        before is not None and before.state == FAILED and before.failed_detail == {"missing": ["vial_label"]}
    )
    code, out, err = await site.run("sync", "--once", "--patience", "2")
    assert code == 0, out + err
    with Outbox(site.config.data_dir) as outbox:
        after = outbox.get(fill_id)
    assert after is not None and after.state == FAILED and after.attempts == before.attempts

    code, out, err = await site.run("outbox")
    assert code == 0, out + err
    assert f"{fill_id[:8]}  Rx 100234  Metformin HCl 500 mg  REFUSED" in out
    assert "refused: The server needs the vial label photo" in out
    assert f"tp-site outbox fix {fill_id[:8]} --photo vial_label=FILE" in out
    assert f'tp-site outbox discard {fill_id[:8]} --reason "WHY"' in out

    code, out, err = await site.run(
        "outbox", "fix", fill_id[:8], "--photo", f"vial_label={photo_dir / 'vial_label.jpg'}", "--by", "Terry"
    )
    assert code == 0, out + err
    assert f"Fill {fill_id[:8]} is queued for verification." in out
    detail = await fill_detail(server.url, token, fill_id)  # the same fill: only a view was added
    assert detail["state"] == "queued"
    assert sorted(m["kind"] for m in detail["media"]) == ["pills", "stock_bottle", "vial_label"]
    code, out, err = await site.run("outbox", "history")
    assert code == 0 and re.search(rf"{fill_id[:8]}  fixed\s+by Terry: fixed: vial label photo", out), out


async def test_an_unknown_prescription_stops_and_is_fixed_with_the_right_rx(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    await server.stop()
    # Offline, the technician gives a prescription id the server does not know.
    code, out, err = await site.run(
        "submit", "--prescription-id", "999999", *photos(photo_dir), "--count", "60", "--wait", "1"
    )
    assert code == 3, out + err
    fill_id = refused_id(out)
    await server.start()
    code, out, err = await site.run("sync", "--once", "--patience", "10")
    assert code == 4 and "REFUSED" in out and "No such prescription at this site" in out, out + err
    code, out, err = await site.run("outbox")
    assert f"tp-site outbox fix {fill_id[:8]} --rx RX_NUMBER" in out, out

    code, out, err = await site.run("outbox", "fix", fill_id[:8], "--rx", "100234", "--count", "60")
    assert code == 0, out + err
    fills = await site_fills(server.url, token)
    assert [(f["id"], f["state"]) for f in fills] == [(fill_id, "queued")]  # never created before: same id
    detail = await fill_detail(server.url, token, fill_id)
    assert detail["prescription"]["rx_number"] == "100234" and detail["product_check"] == "match"


async def test_a_refused_photo_is_replaced_and_the_fill_goes(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    scan = tmp_path / "pills.jpg"
    scan.write_bytes(b"%PDF-1.4 this is a scanned document, not a photo")
    code, out, err = await site.run(
        "submit", "--rx", "100234", "--stock-bottle", str(photo_dir / "stock_bottle.jpg"),
        "--pills", str(scan), "--vial-label", str(photo_dir / "vial_label.jpg"),
        "--override", "camera broken",
    )  # fmt: skip
    assert code == 4, out + err
    fill_id = refused_id(out)
    assert f"tp-site outbox fix {fill_id[:8]} --photo pills=FILE" in out

    code, out, err = await site.run(
        "outbox", "fix", fill_id[:8], "--photo", f"pills={photo_dir / 'pills.jpg'}"
    )
    assert code == 0, out + err
    detail = await fill_detail(server.url, token, fill_id)
    assert detail["state"] == "queued" and detail["override_reason"] == "camera broken"
    assert sorted(m["kind"] for m in detail["media"]) == ["pills", "stock_bottle", "vial_label"]
    with Outbox(site.config.data_dir) as outbox:
        entry = outbox.get(fill_id)
    assert entry is not None and [f.original.read_bytes()[:4] for f in entry.files if f.kind == "pills"] == [
        (photo_dir / "pills.jpg").read_bytes()[:4]
    ]
    kept = [p for p in (site.config.data_dir / "outbox").rglob("*") if p.is_file()]
    assert kept and not any(p.read_bytes().startswith(b"%PDF") for p in kept)


async def test_a_changed_count_on_a_fill_the_server_holds_goes_under_a_new_id(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    rx_id = await enter_rx(server.url, token, "100234")
    site, old, _ = await refused_for_a_view(
        server, token, tmp_path, rx_id, "--stock-bottle", str(photo_dir / "stock_bottle.jpg"),
        "--pills", str(photo_dir / "pills.jpg"), "--count", "58",
    )  # fmt: skip
    code, out, err = await site.run(
        "outbox", "fix", old[:8], "--photo", f"vial-label={photo_dir / 'vial_label.jpg'}", "--count", "60"
    )
    assert code == 0, out + err
    new = re.search(r"as fill ([0-9a-f]{8}), which replaces " + old[:8], out)
    assert new, out
    queued = [f for f in await site_fills(server.url, token) if f["state"] == "queued"]
    assert [f["id"][:8] for f in queued] == [new.group(1)]
    assert (await fill_detail(server.url, token, queued[0]["id"]))["counted_quantity"] == 60
    code, out, err = await site.run("outbox", "--all")
    assert f"fixed: replaced by fill {new.group(1)}" in out, out
    assert not (site.config.data_dir / "outbox" / old).exists()


async def test_discard_gives_up_with_a_reason_and_records_who_when_why(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    rx_id = await enter_rx(server.url, token, "100234")
    site, fill_id, _ = await refused_for_a_view(
        server, token, tmp_path, rx_id, "--stock-bottle", str(photo_dir / "stock_bottle.jpg")
    )
    code, out, err = await site.run("outbox", "discard", fill_id[:8])
    assert code == 2 and "--reason" in err  # a reason is required

    code, out, err = await site.run(
        "outbox", "discard", fill_id[:8], "--reason", "Patient left; will come back tomorrow", "--by", "Terry"
    )
    assert code == 0 and f"Fill {fill_id[:8]} (Rx 100234) discarded" in out, out + err
    code, out, _ = await site.run("outbox")
    assert "The outbox is empty" in out
    code, out, _ = await site.run("outbox", "--all")
    assert f"{fill_id[:8]}  Rx 100234" in out and "discarded" in out
    code, out, _ = await site.run("outbox", "history", fill_id[:8])
    assert re.search(rf"\d{{4}}-\d\d-\d\d \d\d:\d\d  {fill_id[:8]}  discarded by Terry: Patient left", out), (
        out
    )
    with Outbox(site.config.data_dir) as outbox:
        entry = outbox.get(fill_id)
        (row,) = outbox.audit_log(fill_id)
    assert entry is not None and entry.state == DISCARDED and entry.files == ()
    assert row.detail["photos"] == ["stock_bottle"] and row.detail["refused"].startswith("The server needs")
    assert not (site.config.data_dir / "outbox" / fill_id).exists()  # the photos left this computer
    # A discarded fill is not sent, and cannot be fixed or retried.
    code, out, err = await site.run("outbox", "--retry", fill_id[:8])
    assert code == 2, out + err
    code, out, err = await site.run("outbox", "fix", fill_id[:8], "--count", "60")
    assert code == 2 and "was not refused" in err


async def test_a_server_down_keeps_the_fill_retrying_with_backoff(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("rx", "list")  # known here before the link drops
    assert code == 0, out + err
    await server.stop()
    code, out, err = await site.run("submit", "--rx", "100234", *photos(photo_dir), "--wait", "2")
    assert code == 3, out + err
    fill_id = refused_id(out)
    with Outbox(site.config.data_dir) as outbox:
        entry = outbox.get(fill_id)
    assert entry is not None and entry.state == PENDING and entry.attempts >= 2
    code, out, _ = await site.run("outbox")
    assert "waiting to send" in out and "cannot be reached" in out and "REFUSED" not in out


@pytest.mark.parametrize(
    ("status", "code"), [(503, "unavailable"), (429, "too_many_requests"), (409, "conflict"), (500, "")]
)
async def test_a_busy_or_failing_server_is_retried_not_refused(
    photo_dir: Path, tmp_path: Path, status: int, code: str
) -> None:
    """503, 429, any 5xx and a conflict that names no lasting cause (the fill changed while it was
    submitted) are answers that may change by themselves: the fill keeps its place and is tried again."""
    calls = 0

    async def busy(request: web.Request) -> web.Response:
        nonlocal calls
        calls += 1
        return web.json_response({"error": code, "message": "Not now."}, status=status)

    app = web.Application()
    app.router.add_route("*", "/api/v1/{tail:.*}", busy)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        site = make_site(tmp_path, f"http://127.0.0.1:{port}", "t" * 43)
        files = [(kind, photo_dir / f"{kind}.jpg") for kind in ("stock_bottle", "pills", "vial_label")]
        with Outbox(site.config.data_dir) as outbox:
            fill_id = outbox.add({"prescription_id": 1, "barcodes": []}, files)
            async with SiteApi(site.config) as api:
                sender = Sender(site.config, outbox, api)
                tries = [await sender.attempt(fill_id) for _ in range(2)]
            entry = outbox.get(fill_id)
    finally:
        await runner.cleanup()
    assert [t.state if t else None for t in tries] == [PENDING, PENDING] and calls == 2
    assert entry is not None and entry.state == PENDING and entry.attempts == 2
    assert entry.last_error == "Not now." and entry.failed_reason is None


async def rejected(server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path) -> tuple[Site, str]:
    """A site and a fill of Rx 100234 it sent that the pharmacist rejected."""
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("submit", "--rx", "100234", *photos(photo_dir), "--count", "58")
    assert code == 0, out + err
    fill_id = refused_id(out)
    async with Pharmacist(server.url) as rph:
        await rph.decide(fill_id, "reject", ["wrong_quantity"], "Recount the tray.")
    return site, fill_id


async def test_a_second_retake_of_a_rejected_fill_is_refused_before_anything_is_stored(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    site, first = await rejected(server, token, photo_dir, tmp_path)
    retake = ["--pills", str(photo_dir / "pills.jpg"), "--count", "60"]
    code, out, err = await site.run("submit", "--resubmit-of", first[:8], *retake, "--no-send")
    assert code == 3, out + err
    second = refused_id(out)

    # Not sent yet: this computer's outbox knows the retake.
    code, out, err = await site.run("submit", "--resubmit-of", first[:8], *retake)
    assert code == 2, out + err
    assert (
        f"error: The rejected fill {first[:8]} was resubmitted already: fill {second[:8]} replaces it "
        "(in this outbox, not sent yet; see `tp-site outbox`). Nothing was stored." in err
    )
    code, out, err = await site.run("sync", "--once", "--patience", "30")
    assert code == 0, out + err

    # Sent: the server knows it, whichever computer asks.
    for counter in (site, make_site(tmp_path / "counter2", server.url, token)):
        code, out, err = await counter.run("submit", "--resubmit-of", first[:8], *retake)
        assert code == 2, out + err
        assert (
            f"error: The rejected fill {first[:8]} was resubmitted already: fill {second[:8]} replaces it "
            f"(waiting for a pharmacist; see `tp-site status {second[:8]}`). Nothing was stored." in err
        )
        assert "Checking the photos" not in out and "Stored in the outbox" not in out
        with Outbox(counter.config.data_dir) as outbox:
            assert len(outbox.entries()) == (2 if counter is site else 0)
    assert len(await site_fills(server.url, token)) == 2


async def test_a_refusal_no_change_cures_says_what_to_do_instead_of_a_fix(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    site, first = await rejected(server, token, photo_dir, tmp_path)
    retake = ["--pills", str(photo_dir / "pills.jpg"), "--count", "60"]
    # Two counters retake the same rejected fill; the second to reach the server is refused.
    code, out, err = await site.run("submit", "--resubmit-of", first[:8], *retake, "--no-send")
    assert code == 3, out + err
    late = refused_id(out)
    counter2 = make_site(tmp_path / "counter2", server.url, token)
    code, out, err = await counter2.run("submit", "--resubmit-of", first[:8], *retake)
    assert code == 0, out + err
    code, out, err = await site.run("sync", "--once", "--patience", "30")
    assert code == 4 and "This rejected fill was resubmitted already." in out, out + err

    code, out, err = await site.run("outbox")
    assert code == 0, out + err
    assert f"{late[:8]}  Rx 100234" in out and "REFUSED" in out
    assert (
        "    no change sends it: the rejected fill it replaces was resubmitted already, by another fill "
        "(`tp-site status` lists it)" in out
    )
    assert f'    give it up: tp-site outbox discard {late[:8]} --reason "WHY"' in out
    assert "to fix" not in out and "--retry" not in out and "outbox fix" not in out

    # The prescription's last fill used: a new prescription is needed, not another photo.
    code, out, err = await counter2.run("submit", "--rx", "100234", *photos(photo_dir), "--count", "60")
    assert code == 4, out + err
    assert "This prescription allows 1 fill" in out and "it needs a new prescription" in out
    assert "It is not sent again by itself. It waits in the outbox:" in out
    assert (
        "    no change sends it: the prescription has no fill left; the patient needs a new prescription"
        in out
    )
    assert "to fix" not in out and "--retry" not in out
