"""Every read of a patient's records by a person is in the access log, and a patient's access report
lists them: who, what, when."""

from __future__ import annotations

import csv
import datetime as dt
import io
import logging

import pytest

from tests.api.world import FullDisk, World, queued_fill, rx_body


async def test_a_patients_access_report_lists_every_read_of_their_records(world: World) -> None:
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    mine = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    other = await tech.json(
        "POST", "/api/v1/prescriptions", 201, json=rx_body("RX2", patient_name="John Other")
    )
    fill = await queued_fill(world, tech, mine["id"])
    await queued_fill(world, tech, other["id"], seed=1)

    await tech.json("GET", "/api/v1/prescriptions")
    seen = (await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim"))["fill"]
    photo = seen["media"][0]
    for _ in range(3):  # a photo and its thumbnails, fetched again: one entry
        resp = await rph.get(f"/api/v1/media/{photo['id']}")
        assert resp.status == 200
        await resp.read()
    await world.services.access_log.flush()

    admin = await world.login("admin")
    today = dt.date.today().isoformat()
    query = f"patient_name=Jane Q. Patient&patient_dob=1948-02-29&from={today}&to={today}"
    resp = await admin.get(f"/api/v1/audit/access?{query}")
    assert resp.status == 200 and resp.content_type == "text/csv"
    rows = list(csv.DictReader(io.StringIO(await resp.text())))
    got = {(r["username"], r["what"], r["id"], r["rx_number"]) for r in rows}
    assert got == {
        ("tech_nd1", "prescription", str(mine["id"]), "RX1"),
        ("nd_rph", "fill", fill["id"], "RX1"),
        ("nd_rph", "media", str(photo["id"]), "RX1"),
    }
    # Another patient's records are not in this patient's report, and nobody but an admin reads it.
    assert all(r["rx_number"] == "RX1" for r in rows)
    assert (await rph.get(f"/api/v1/audit/access?{query}")).status == 403


async def test_a_full_disk_keeps_the_reads_and_says_so_once_in_one_line(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    caplog.set_level(logging.INFO, logger="server.security.access_log")
    access_log = world.services.access_log
    disk = FullDisk(access_log.db)
    monkeypatch.setattr(access_log, "db", disk)
    monkeypatch.setattr("server.security.access_log.FLUSH_SECONDS", 0.05)
    tech, rph = await world.device("tech_nd1"), await world.login("nd_rph")
    rx = await tech.json("POST", "/api/v1/prescriptions", 201, json=rx_body("RX1"))
    fill = await queued_fill(world, tech, rx["id"])
    await rph.json("POST", f"/api/v1/fills/{fill['id']}/claim")

    # One line however many writes failed, naming the path and the errno, without a traceback.
    assert await disk.said_once(caplog) == (
        "writing the access log failed: the database path failed to write: no space left (errno 28); "
        "the reads noted are kept until a write succeeds"
    )
    await disk.room_again(caplog, "the access log is written again")
    admin = await world.login("admin")
    today = dt.date.today().isoformat()
    query = f"patient_name=Jane Q. Patient&patient_dob=1948-02-29&from={today}&to={today}"
    rows = list(csv.DictReader(io.StringIO(await (await admin.get(f"/api/v1/audit/access?{query}")).text())))
    # The pharmacist's read made while the disk was full is in the patient's report.
    assert ("nd_rph", "fill", fill["id"]) in {(r["username"], r["what"], r["id"]) for r in rows}
