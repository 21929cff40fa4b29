"""The photos the demo writes for the README's walk-through pass the site's checks for their prescription."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from demo import world
from remote_site_client.checks import check_submission
from server.evidence.barcodes import normalize_ndc


def test_the_sample_photos_pass_every_check_against_the_unfilled_prescription(tmp_path: Path) -> None:
    today = dt.date.today()
    written = world.sample_photos(tmp_path, today)
    assert sorted(written) == ["pills", "stock_bottle", "vial_label"]
    report = check_submission(
        list(written.items()), scanned=[], expected_ndc=normalize_ndc(world.UNFILLED.ndc), today=today
    )
    assert report.ok, report
    assert report.barcodes, "the stock bottle's DataMatrix is read from the photo"
