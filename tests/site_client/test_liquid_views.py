"""A liquid's views at the site. Given a tablet's views, `submit` names the views a liquid needs (the
measured volume, the labelled bottle) before anything is stored; a fill stored offline, before the
site knew the prescription, stops at the server naming them, and the technician adds them in place."""

from __future__ import annotations

from pathlib import Path

from demo.photos import pills_photo, to_jpeg_bytes, vial_label_photo
from tests.site_client.test_end_to_end import fill_detail, photos, refused_for_a_view
from tests.site_client.world import ServerProcess, make_site, rx_body, site_api


async def test_a_liquid_sent_with_a_tablet_s_views_stops_and_takes_the_liquid_views(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    liquid = {
        **rx_body("100900"),
        "drug": "Amoxicillin",
        "strength": "250 mg/5 mL",
        "dosage_form": "oral suspension",
        "quantity": 60,
        "directions": "Take 5 mL by mouth three times daily",
    }
    status, rx = await site_api(server.url, token, "POST", "/api/v1/prescriptions", liquid)
    assert status == 201, rx
    site, fill_id, out = await refused_for_a_view(
        server, token, tmp_path, int(rx["id"]), *photos(photo_dir), "--count", "60"
    )
    assert "The server needs the measured volume photo and the bottle label photo" in out

    volume, bottle = tmp_path / "volume.jpg", tmp_path / "bottle.jpg"
    volume.write_bytes(to_jpeg_bytes(pills_photo(9, imprint="5 mL", seed=21), 90))
    bottle.write_bytes(
        to_jpeg_bytes(
            vial_label_photo(
                "100900",
                "Jane Q. Patient",
                "Amoxicillin",
                "250 mg/5 mL",
                "5 mL three times daily",
                60,
                seed=22,
            ),
            90,
        )
    )
    code, out, err = await site.run(
        "outbox", "fix", fill_id[:8],
        "--photo", f"measured_volume={volume}", "--photo", f"bottle_label={bottle}", "--by", "Terry",
    )  # fmt: skip
    assert code == 0, out + err
    detail = await fill_detail(server.url, token, fill_id)
    assert detail["state"] == "queued"
    assert {"stock_bottle", "measured_volume", "bottle_label"} <= {m["kind"] for m in detail["media"]}


async def test_submit_names_the_views_a_prescription_needs_before_storing_anything(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    """Known from the site's list, a liquid given only a tablet's views is refused at once: nothing is
    stored, and no photo goes over the link only for the fill to be refused after."""
    liquid = {
        **rx_body("100901"),
        "drug": "Amoxicillin",
        "strength": "250 mg/5 mL",
        "dosage_form": "oral suspension",
    }
    status, rx = await site_api(server.url, token, "POST", "/api/v1/prescriptions", liquid)
    assert status == 201, rx
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run("submit", "--rx", "100901", *photos(photo_dir), "--count", "60")
    assert code == 2, out + err
    assert (
        "Rx 100901 needs the measured volume photo and the bottle label photo too "
        "(--measured-volume FILE --bottle-label FILE). Nothing was stored." in err
    )
    code, out, err = await site.run("outbox", "--all")
    assert code == 0 and "100901" not in out, out + err
    # A count no fill can carry is refused as it is typed, too.
    code, out, err = await site.run("submit", "--rx", "100901", *photos(photo_dir), "--count", "-60")
    said = "The counted quantity must be more than 0 and at most 100000 (e.g. 60, or 2.5 for millilitres)."
    assert code == 2 and f"--count: {said}" in err, out + err
    # And one mistyped, in the words the station's page uses for it.
    code, out, err = await site.run("submit", "--rx", "100901", *photos(photo_dir), "--count", "3O")
    said = "--count: The counted quantity must be a number, e.g. 60, not '3O'."
    assert code == 2 and said in err, out + err
    # So is a wait that would never end (NaN compares false with every time left).
    for wait in ("nan", "inf", "-1"):
        code, out, err = await site.run(
            "submit", "--rx", "100901", *photos(photo_dir), "--count", "60", "--wait", wait
        )
        assert code == 2 and "--wait: seconds are from 0 to 86,400 (a day)" in err, out + err
    status, fills = await site_api(server.url, token, "GET", "/api/v1/fills")
    assert status == 200 and not [f for f in fills["fills"] if f["prescription"]["rx_number"] == "100901"]
