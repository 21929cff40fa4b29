"""Generated evidence: deterministic, the right size, readable barcodes, usable metadata and video."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import av
import biip
import pytest
from PIL import ExifTags, Image, ImageChops, ImageStat

from demo import photos
from server.evidence.barcodes import check_product, normalize_ndc, parse_barcode
from server.evidence.photo_quality import decode_barcodes

TODAY = date(2026, 11, 26)
NDC = "12345-678-90"
EXPIRY = date(2027, 6, 30)


def stock(size: tuple[int, int], seed: int = 0, module_px: int = 8) -> Image.Image:
    return photos.stock_bottle_photo(
        NDC, "Lisinopril", "10 mg", "A1B2C3", EXPIRY, size=size, module_px=module_px, seed=seed
    )


def assert_reads_the_stock_bottle(image: Image.Image) -> None:
    found = decode_barcodes(image)
    assert any(text.startswith("]d2") for text in found), found
    scan = parse_barcode(next(text for text in found if text.startswith("]d2")))
    assert (scan.gtin, scan.lot, scan.expiry) == (photos.gtin_for_ndc10(NDC), "A1B2C3", EXPIRY)
    assert check_product(found, normalize_ndc(NDC), TODAY).result == "match"


# ------------------------------------------------------------------------------------------------- GTIN


@pytest.mark.parametrize(
    ("ndc", "gtin"),
    [
        ("1234-5678-90", "00312345678906"),
        ("12345-678-90", "00312345678906"),
        ("0002-3228-30", "00300023228307"),
    ],
)
def test_gtin_for_ndc10(ndc: str, gtin: str) -> None:
    assert photos.gtin_for_ndc10(ndc) == gtin
    parsed = biip.parse(gtin)
    assert parsed.gtin is not None and parsed.gtin_error is None


@pytest.mark.parametrize("ndc", ["1234-5678-90", "12345-678-90", "12345-6789-0"])
def test_gtin_round_trips_through_parse_barcode(ndc: str) -> None:
    scan = parse_barcode(photos.gtin_for_ndc10(ndc))
    assert scan.usable and normalize_ndc(ndc) in scan.ndc11_candidates


@pytest.mark.parametrize("bad", ["1234567890", "12345-6789-01", "1234-567-890", "abcd-efgh-ij"])
def test_gtin_for_ndc10_wants_a_hyphenated_ndc10(bad: str) -> None:
    with pytest.raises(ValueError):
        photos.gtin_for_ndc10(bad)


# ------------------------------------------------------------------------------------------ still photos


SMALL = (1024, 768)


def small_photos(seed: int) -> list[Image.Image]:
    return [
        stock(SMALL, seed=seed),
        photos.pills_photo(12, shape="oval", color="pink", imprint="A 1", seed=seed, size=SMALL),
        photos.vial_label_photo(
            "6001234", "Ann Lee", "Lisinopril", "10 mg", "Take one daily", 30, seed=seed, size=SMALL
        ),
    ]


def test_photos_are_deterministic_and_seeded() -> None:
    first, again, other = small_photos(5), small_photos(5), small_photos(6)
    for a, b, c in zip(first, again, other, strict=True):
        assert (a.mode, a.size) == ("RGB", SMALL)
        assert a.tobytes() == b.tobytes()
        assert a.tobytes() != c.tobytes()


def test_photos_look_like_photos_not_flat_drawings() -> None:
    for image in small_photos(1):
        stat = ImageStat.Stat(image.convert("L"))
        # Mid-grey on average, with texture and shading rather than a few flat colours.
        assert 90 < stat.mean[0] < 200
        assert stat.stddev[0] > 12
        assert len(image.convert("L").getcolors(256) or []) > 100


def test_stock_bottle_datamatrix_decodes_at_3_megapixels() -> None:
    assert_reads_the_stock_bottle(stock((2048, 1536), seed=2))
    assert_reads_the_stock_bottle(stock((2000, 1500), seed=3))


def test_stock_bottle_datamatrix_decodes_at_12_megapixels_and_after_jpeg_to_2048() -> None:
    image = stock((4000, 3000), seed=4)
    assert image.size == (4000, 3000)
    assert_reads_the_stock_bottle(image)
    # What the server keeps for viewing: long edge 2048, JPEG quality 85.
    image.thumbnail((2048, 2048), Image.Resampling.LANCZOS)
    reencoded = Image.open(io.BytesIO(photos.to_jpeg_bytes(image, 85)))
    assert reencoded.size == (2048, 1536)
    assert_reads_the_stock_bottle(reencoded)


def test_stock_bottle_other_module_size() -> None:
    assert_reads_the_stock_bottle(stock((1600, 1200), seed=7, module_px=6))


def test_datamatrix_is_real_gs1() -> None:
    (text,) = [t for t in decode_barcodes(stock((2048, 1536), seed=8)) if t.startswith("]d")]
    # ]d2 is GS1 DataMatrix; a symbol made without gs1=True would read as ]d1.
    assert text.startswith("]d2010031234567890617270630")


def test_vial_label_carries_the_rx_number_as_code_128() -> None:
    image = photos.vial_label_photo("7654321", "Ann Lee", "Lisinopril", "10 mg", "Take one daily", 30, seed=3)
    assert decode_barcodes(image) == ["]C07654321"]


@pytest.mark.parametrize("count", [0, 1, 90])
def test_pills_photo_any_count(count: int) -> None:
    image = photos.pills_photo(
        count, shape="capsule", color=(200, 60, 60), imprint="X", seed=count, size=SMALL
    )
    assert image.size == SMALL


def test_pills_photo_refuses_unknown_shape_and_negative_count() -> None:
    with pytest.raises(ValueError, match="shape"):
        photos.pills_photo(3, shape="triangle", size=SMALL)
    with pytest.raises(ValueError):
        photos.pills_photo(-1, size=SMALL)


def test_more_pills_cover_more_of_the_tray() -> None:
    # Same seed, same tray: what differs from the empty tray is the pills and their shadows.
    empty = photos.pills_photo(0, seed=9, size=SMALL)

    def covered(count: int) -> float:
        full = photos.pills_photo(count, seed=9, size=SMALL)
        diff = ImageChops.difference(empty, full).convert("L").point(lambda v: 255 if v > 40 else 0)
        return diff.histogram()[255] / (SMALL[0] * SMALL[1])

    assert 0 < covered(5) < covered(20) < covered(40)


# ------------------------------------------------------------------------------------------------ degrade


def test_degrade() -> None:
    base = stock(SMALL, seed=1)
    same = photos.degrade(base)
    assert same is not base and same.tobytes() == base.tobytes()

    def mean(image: Image.Image) -> float:
        return float(ImageStat.Stat(image.convert("L")).mean[0])

    assert mean(photos.degrade(base, darkness=4)) < 0.4 * mean(base)
    assert mean(photos.degrade(base, overexpose=1.5)) > 1.3 * mean(base)
    glare = photos.degrade(base, glare=0.5, glare_at=(0.5, 0.5))
    assert glare.getpixel((512, 384)) == (255, 255, 255)
    assert glare.getpixel((10, 10)) == base.getpixel((10, 10))
    blurred = photos.degrade(base, blur=3)
    assert ImageStat.Stat(blurred).stddev[0] < ImageStat.Stat(base).stddev[0]


# ------------------------------------------------------------------------------------------- JPEG bytes


def test_to_jpeg_bytes_plain_has_no_metadata() -> None:
    image = Image.open(io.BytesIO(photos.to_jpeg_bytes(stock(SMALL), 80)))
    assert image.format == "JPEG" and image.size == SMALL
    assert not image.getexif()
    assert "comment" not in image.info


def test_to_jpeg_bytes_with_gps_comment_and_orientation() -> None:
    data = photos.to_jpeg_bytes(stock(SMALL), exif_gps=True, comment="Patient: Ann Lee", orientation=6)
    image = Image.open(io.BytesIO(data))
    exif = image.getexif()
    assert exif[ExifTags.Base.Orientation] == 6
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    assert gps[ExifTags.GPS.GPSLatitudeRef] == "N"
    assert [float(v) for v in gps[ExifTags.GPS.GPSLatitude]] == pytest.approx([39.0, 22.0, 41.5])
    assert gps[ExifTags.GPS.GPSLongitudeRef] == "W"
    assert image.info["comment"] == b"Patient: Ann Lee"


def test_to_jpeg_bytes_orientation_alone() -> None:
    image = Image.open(io.BytesIO(photos.to_jpeg_bytes(stock(SMALL), orientation=8)))
    assert image.getexif()[ExifTags.Base.Orientation] == 8
    assert ExifTags.IFD.GPSInfo not in image.getexif()


# -------------------------------------------------------------------------------------------------- video


@pytest.mark.parametrize(
    ("container", "codec", "seconds", "fps"), [("mp4", "h264", 2, 10), ("webm", "vp8", 1, 6)]
)
def test_count_video(tmp_path: Path, container: str, codec: str, seconds: float, fps: int) -> None:
    path = photos.count_video(tmp_path / f"count.{container}", seconds=seconds, fps=fps, container=container)
    assert path.stat().st_size > 1000
    with av.open(str(path)) as video:
        stream = video.streams.video[0]
        assert stream.codec_context.name in (codec, f"lib{codec}", "libvpx")
        frames = list(video.decode(stream))
    assert len(frames) == round(seconds * fps)
    assert (frames[0].width, frames[0].height) == (640, 480)
    # The pills move: first and last frames differ.
    first, last = frames[0].to_image(), frames[-1].to_image()
    assert ImageChops.difference(first, last).getbbox() is not None


def test_count_video_refuses_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="container"):
        photos.count_video(tmp_path / "x.avi", container="avi")
    with pytest.raises(ValueError, match="even"):
        photos.count_video(tmp_path / "x.mp4", size=(641, 480))
