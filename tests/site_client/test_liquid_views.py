"""A liquid's views at the site: sent with a tablet's views, the fill stops naming the views a liquid
needs (the measured volume, the labelled bottle), and the technician adds them in place."""

from __future__ import annotations

from pathlib import Path

from demo.photos import pills_photo, to_jpeg_bytes, vial_label_photo
from tests.site_client.test_end_to_end import FILL_ID, fill_detail, photos
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
    site = make_site(tmp_path, server.url, token)
    code, out, err = await site.run(
        "submit", "--rx", "100900", *photos(photo_dir), "--count", "60", "--wait", "10"
    )
    assert code == 4, out + err
    found = FILL_ID.search(out)
    assert found, out
    fill_id = found.group(1)
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
