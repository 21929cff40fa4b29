"""Checks at the site: the shared rules, said so a technician knows what to retake; photos fit the link."""

from __future__ import annotations

import datetime as dt
import random
from pathlib import Path

import pytest
from PIL import Image

from demo.photos import stock_bottle_photo, to_jpeg_bytes
from remote_site_client.checks import check_submission
from remote_site_client.outbox import Outbox
from remote_site_client.prepare import prepare_file
from server.evidence.media import MAX_PHOTO_PIXELS
from server.evidence.photo_quality import decode_barcodes
from tests.site_client.test_end_to_end import enter_rx, photos
from tests.site_client.world import EXPIRY, NDC, ServerProcess, make_site

TODAY = dt.date(2026, 11, 26)


def _check(photo_dir: Path, stock: str, scanned: list[str] | None = None, ndc: str | None = NDC):  # type: ignore[no-untyped-def]
    files = [("stock_bottle", photo_dir / stock), ("pills", photo_dir / "pills.jpg")]
    return check_submission(files, scanned=scanned or [], expected_ndc=ndc, today=TODAY)


def test_good_photos_pass_and_the_barcode_is_read_from_the_stock_bottle(photo_dir: Path) -> None:
    report = _check(photo_dir, "stock_bottle.jpg")
    assert report.ok, report.problems
    assert report.product is not None and report.product.result == "match"
    assert len(report.barcodes) == 1 and report.barcodes[0].startswith("]d2")
    assert any("lot LOT42A, expires 2028-06-30" in n for n in report.notes)


@pytest.mark.parametrize(
    ("photo", "code", "message"),
    [
        ("blurred_stock_bottle.jpg", "blurred", "The stock bottle photo is blurred: hold the camera still"),
        ("dark_stock_bottle.jpg", "too_dark", "The stock bottle photo is too dark"),
        (
            "wrong_stock_bottle.jpg",
            "wrong_ndc",
            "the bottle is NDC 0093-7214-01, but the prescription is for NDC 0378-1805-01",
        ),
        ("expired_stock_bottle.jpg", "expired", "The stock bottle expired on 2024-01-31"),
    ],
)
def test_a_photo_that_needs_retaking_is_named_with_what_to_do(
    photo_dir: Path, photo: str, code: str, message: str
) -> None:
    report = _check(photo_dir, photo)
    assert not report.ok
    assert code in [p.code for p in report.problems]
    assert any(message in p.message for p in report.problems), report.problems


def test_a_scanned_barcode_with_a_bad_check_digit_is_refused(photo_dir: Path) -> None:
    report = _check(photo_dir, "stock_bottle.jpg", scanned=["(01)00303781805019(17)280630(10)LOT42A"])
    assert [p.code for p in report.problems] == ["barcode_unreadable"]


def test_offline_without_the_prescription_the_barcode_is_still_checked(photo_dir: Path) -> None:
    report = _check(photo_dir, "expired_stock_bottle.jpg", ndc=None)
    assert [p.code for p in report.problems] == ["expired"]
    assert any("offline" in n for n in report.notes)


def test_a_file_that_is_not_a_photo_is_refused(tmp_path: Path, photo_dir: Path) -> None:
    bogus = tmp_path / "pills.jpg"
    bogus.write_bytes(b"%PDF-1.4 not a photo")
    report = check_submission(
        [("stock_bottle", photo_dir / "stock_bottle.jpg"), ("pills", bogus)],
        scanned=[],
        expected_ndc=NDC,
        today=TODAY,
    )
    assert [p.code for p in report.problems] == ["unreadable"]
    assert "pills photo cannot be opened" in report.problems[0].message


def test_a_phone_photo_is_fit_for_the_link_and_keeps_its_barcode(tmp_path: Path) -> None:
    photo = stock_bottle_photo(
        NDC, "Metformin HCl", "500 mg", "LOT42A", EXPIRY, size=(4000, 3000), module_px=14
    )
    src = tmp_path / "IMG_0001.jpg"
    # Taken sideways, with GPS and a comment that must not leave the site.
    src.write_bytes(
        to_jpeg_bytes(photo.rotate(90, expand=True), 95, exif_gps=True, orientation=6, comment="Jane Q")
    )
    prepared = prepare_file(src, "stock_bottle", tmp_path / "upload.jpg", long_edge=2048, quality=82)
    assert prepared.reencoded and prepared.barcodes_kept
    assert prepared.size * 8 < src.stat().st_size
    with Image.open(prepared.path) as im:
        assert im.size == (2000, 1500)  # upright, at most 2048 on the long edge
        assert not im.getexif() and "comment" not in im.info
        assert any(b.endswith("LOT42A") for b in decode_barcodes(im))


def test_long_edge_zero_sends_the_original_untouched(tmp_path: Path, photo_dir: Path) -> None:
    prepared = prepare_file(photo_dir / "pills.jpg", "pills", tmp_path / "x.jpg", long_edge=0, quality=82)
    assert not prepared.reencoded and prepared.path == photo_dir / "pills.jpg"


def test_a_barcode_lost_by_re_encoding_sends_the_original(tmp_path: Path) -> None:
    # Tiny modules that survive only at full resolution.
    photo = stock_bottle_photo(
        NDC, "Metformin HCl", "500 mg", "LOT42A", EXPIRY, size=(2048, 1536), module_px=3
    )
    src = tmp_path / "small-code.png"
    photo.save(src)
    prepared = prepare_file(src, "stock_bottle", tmp_path / "upload.jpg", long_edge=800, quality=40)
    assert not prepared.reencoded and prepared.path == src


@pytest.mark.parametrize(
    ("printed", "expected", "says"),
    [
        # 5-3-2 and 5-4-1 labelers: the barcode's ten digits leave the grouping open, so both are given.
        ("68180-513-01", "0378-1805-01", "the bottle is NDC 68180-513-01 or 68180-5130-1, but"),
        ("12345-6789-1", "0378-1805-01", "the bottle is NDC 12345-678-91 or 12345-6789-1, but"),
        (
            "0093-7214-01",
            "68180-513-01",
            "prescription is for NDC 68180-513-01 or 68180-0513-1 (68180-0513-01",
        ),
    ],
)
def test_a_wrong_product_is_named_as_its_ndc_is_printed_on_bottles(
    tmp_path: Path, printed: str, expected: str, says: str
) -> None:
    bottle = tmp_path / "bottle.jpg"
    bottle.write_bytes(to_jpeg_bytes(stock_bottle_photo(printed, "Other", "1 mg", "L1", EXPIRY, seed=7), 90))
    report = check_submission([("stock_bottle", bottle)], scanned=[], expected_ndc=expected, today=TODAY)
    (problem,) = report.problems
    assert problem.code == "wrong_ndc" and says in problem.message, problem.message


async def test_a_photo_with_more_pixels_than_the_server_decodes_is_told_so_and_not_stored(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    """A 108-megapixel camera at full resolution (12000x9000), and a 200-megapixel one (16320x12240),
    which Pillow refuses to open before saying its size."""
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    pills, extra = tmp_path / "pills.jpg", tmp_path / "extra.jpg"
    Image.new("L", (12000, 9000), 128).save(pills, "JPEG", quality=50)
    Image.new("L", (16320, 12240), 128).save(extra, "JPEG", quality=50)
    code, out, err = await site.run(
        "submit", "--rx", "100234", "--stock-bottle", str(photo_dir / "stock_bottle.jpg"),
        "--pills", str(pills), "--vial-label", str(photo_dir / "vial_label.jpg"), "--other", str(extra),
    )  # fmt: skip
    assert code == 1, out + err
    assert (
        "PROBLEM: The pills photo is 108 megapixels, more than the 89 this accepts: lower the camera's "
        "resolution and retake it." in out
    )
    assert "PROBLEM: The extra photo is 200 megapixels, more than the 89 this accepts" in out
    assert "cannot be opened" not in out and "damaged" not in out
    with Outbox(site.config.data_dir) as outbox:
        assert outbox.entries() == []
    # The limit is the one the server decodes under: Pillow's.
    assert Image.MAX_IMAGE_PIXELS == MAX_PHOTO_PIXELS


async def test_a_count_video_too_large_or_not_a_video_is_refused_before_it_is_stored(
    server: ServerProcess, token: str, photo_dir: Path, tmp_path: Path
) -> None:
    await enter_rx(server.url, token, "100234")
    site = make_site(tmp_path, server.url, token)
    huge, junk = tmp_path / "huge.mp4", tmp_path / "junk.mp4"
    with huge.open("wb") as f:  # an MP4's first box, then 250 MB (sparse: nothing is written)
        f.write(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2")
        f.truncate(250 * 1024 * 1024)
    junk.write_bytes(random.Random(7).randbytes(4096))
    for video, says in (
        (huge, f"--video {huge}: the count video is 250 MB, more than the 200 MB the server takes."),
        (junk, f"--video {junk}: this is not a video the server takes (MP4 or WebM)."),
    ):
        code, out, err = await site.run(
            "submit", "--rx", "100234", *photos(photo_dir), "--count", "60", "--video", str(video)
        )
        assert code == 2, out + err
        assert says in err and "Nothing was stored." in err, err
        assert "count_video file" not in out + err and "must be an MP4" not in out + err
        with Outbox(site.config.data_dir) as outbox:
            assert outbox.entries() == []
        assert not [p for p in (site.config.data_dir / "outbox").rglob("*") if p.is_file()]
