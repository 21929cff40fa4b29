"""Data-entry verification (PV1) as the technician lives it at the command line: a paper prescription
entered with its faxed original, returned by the pharmacist (seen live by `tp-site watch`), corrected
with `tp-site rx edit`, and verified."""

from __future__ import annotations

import asyncio
import io
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from remote_site_client.outbox import Outbox
from tests.site_client.world import Pharmacist, ServerProcess, free_port, make_site


def fax(path: Path, pages: int) -> Path:
    """A bilevel multi-page TIFF, as a fax machine saves a faxed prescription."""
    frames = []
    for n in range(1, pages + 1):
        im = Image.new("L", (850, 1100), 255)
        ImageDraw.Draw(im).text((60, 60 + 20 * n), f"Rx page {n}: Metformin HCl 500 mg, #60", fill=0)
        frames.append(im.convert("1"))
    out = io.BytesIO()
    frames[0].save(out, "TIFF", save_all=True, append_images=frames[1:], compression="group4")
    path.write_bytes(out.getvalue())
    return path


@pytest.fixture
async def pv1_server(tmp_path: Path, server_data: tuple[Path, str]) -> AsyncIterator[ServerProcess]:
    """The seeded server with its site requiring PV1, as a new site does by default."""
    db = sqlite3.connect(server_data[0] / "telepharmacy.sqlite3")
    with db:
        db.execute("UPDATE sites SET requires_pv1 = 1")
    db.close()
    proc = ServerProcess(server_data[0], free_port(), tmp_path / "server.log")
    await proc.start()
    try:
        yield proc
    finally:
        await proc.stop()


RX = [
    "--rx-number", "100234", "--patient-name", "Jane Q. Patient", "--patient-dob", "1948-02-29",
    "--prescriber", "Dr. Ruth Prescriber", "--drug", "Metformin HCl", "--strength", "500 mg",
    "--dosage-form", "tablet", "--ndc", "0378-1805-01", "--quantity", "600", "--days-supply", "30",
    "--directions", "Take one tablet by mouth twice daily with meals",
]  # fmt: skip


async def test_a_returned_paper_prescription_is_seen_live_corrected_and_verified(
    pv1_server: ServerProcess, token: str, tmp_path: Path
) -> None:
    site = make_site(tmp_path, pv1_server.url, token)
    code, out, err = await site.run("rx", "create", *RX, "--original", str(fax(tmp_path / "fax.tif", 2)))
    assert code == 0, out + err
    assert "waits for the pharmacist's data-entry verification" in out
    assert "delivered (2 pages)" in out
    code, out, err = await site.run("rx", "list")
    assert "[waiting for PV1]" in out, out + err

    watch = await site.start("watch", "--exit-after", "1")
    assert watch.stdout is not None and watch.stderr is not None
    assert b"Connected" in await asyncio.wait_for(watch.stderr.readline(), 30)
    async with Pharmacist(pv1_server.url) as rph:
        queue = await rph.call("GET", "/api/v1/queue")
        [row] = queue["data_entry"]
        view = await rph.call("POST", f"/api/v1/prescriptions/{row['prescription_id']}/claim")
        assert [p["page"] for p in view["original"]] == [1, 2]
        await rph.call(
            "POST",
            f"/api/v1/prescriptions/{row['prescription_id']}/verification",
            {
                "version": view["prescription"]["version"],
                "outcome": "return",
                "reason_codes": ["wrong_quantity"],
                "note": "The fax says #60",
            },
        )
        shown, _ = await asyncio.wait_for(watch.communicate(), 30)
        assert "Rx 100234: RETURNED by the pharmacist: wrong_quantity - The fax says #60" in shown.decode()
        assert "tp-site rx edit 100234" in shown.decode()
        code, out, err = await site.run("rx", "list")
        assert "[RETURNED]" in out, out + err

        code, out, err = await site.run("rx", "edit", "100234", "--quantity", "60")
        assert code == 0, out + err
        assert (
            "corrected (quantity)" in out
            and "waits for the pharmacist's data-entry verification again" in out
        )

        view = await rph.call("POST", f"/api/v1/prescriptions/{row['prescription_id']}/claim")
        assert view["revisions"][0]["changes"] == {"quantity": {"old": 600, "new": 60}}
        await rph.call(
            "POST",
            f"/api/v1/prescriptions/{row['prescription_id']}/verification",
            {
                "version": view["prescription"]["version"],
                "outcome": "verify",
                "original_seen": [page["id"] for page in view["original"]],
            },
        )
    code, out, err = await site.run("rx", "show", "100234")
    assert code == 0, out + err
    assert "verified" in out.splitlines()[0]
    assert "returned by Pat Pharmacist" in out and "verified by Pat Pharmacist" in out
    # Verified, its original is closed: another file is refused and kept in the outbox with the reason.
    code, out, err = await site.run("rx", "original", "100234", str(fax(tmp_path / "again.tif", 1)))
    assert code == 4, out + err
    assert "REFUSED" in out and "Correct the prescription first" in out
    code, out, err = await site.run("outbox")
    assert "original of prescription" in out and "(again.tif)" in out and "REFUSED" in out, out + err


async def test_an_original_given_wrong_is_named_with_what_to_do_and_nothing_is_kept(
    pv1_server: ServerProcess, token: str, tmp_path: Path
) -> None:
    """A missing, wrong or too large file for the original exited 3, which says the original waits in
    the outbox for `tp-site sync`: it is a mistake in what was given (2), and nothing is kept."""
    site = make_site(tmp_path, pv1_server.url, token)
    missing = tmp_path / "fax.tiff"
    code, out, err = await site.run("rx", "create", *RX, "--original", str(missing))
    assert code == 2, out + err
    assert err.splitlines() == [
        f"error: The original {missing} does not exist: check the file's name and folder. "
        "The prescription was not entered."
    ]
    code, out, err = await site.run("rx", "list")
    assert code == 0 and out.strip() == "No prescriptions yet.", out + err

    code, out, err = await site.run("rx", "create", *RX)
    assert code == 0, out + err
    note, folder, huge = tmp_path / "note.txt", tmp_path / "scans", tmp_path / "huge.pdf"
    note.write_text("Metformin 500 mg #60\n")
    folder.mkdir()
    with huge.open("wb") as f:  # a PDF's first bytes, then 31 MB (sparse: nothing is written)
        f.write(b"%PDF-1.7\n")
        f.truncate(31 * 1024 * 1024)
    for given, says in (
        (missing, "does not exist: check the file's name and folder."),
        (note, "is not a JPEG, PNG, TIFF or PDF: scan or photograph the paper prescription again."),
        (folder, "is a folder: give the scan or photo itself."),
        (huge, "is 31.0 MB, more than the 30.0 MB the server takes: scan it again at a lower resolution."),
    ):
        code, out, err = await site.run("rx", "original", "100234", str(given))
        assert code == 2, (given, out, err)
        assert err.splitlines() == [f"error: The original {given} {says} Nothing was stored."], err
    for command in (["original", "100243", str(fax(tmp_path / "fax.tif", 1))], ["show", "100243"]):
        code, out, err = await site.run("rx", *command)
        assert code == 2, (command, out, err)
        assert err.splitlines() == [
            "error: No prescription Rx 100243 at this site: enter it with `tp-site rx create`."
        ]
    with Outbox(site.config.data_dir) as outbox:
        assert outbox.originals(None) == []
