"""Photo validation and metadata-free variants (server.media.images)."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import ExifTags, Image, ImageChops, ImageCms, ImageDraw, ImageFile, ImageFilter

from server.media.errors import MediaRejected
from server.media.images import ProcessedImage, process_image, strip_jpeg
from server.media.workfiles import WorkFiles

SECRETS = (b"PATIENT", b"JOHN DOE", b"40.7128", b"Exif", b"http://ns.adobe.com/xap", b"ICC_PROFILE", b"GPS")
MAX_PIXELS = 50_000_000


def photo(width: int = 640, height: int = 480, *, seed_noise: float = 30.0) -> Image.Image:
    """A photo-like RGB image: a gradient, some shapes and sensor-like noise."""
    base = Image.linear_gradient("L").resize((width, height)).convert("RGB")
    draw = ImageDraw.Draw(base)
    draw.ellipse((width // 4, height // 4, width // 2, height // 2), fill=(200, 40, 40))
    draw.rectangle((width // 2, height // 2, width * 3 // 4, height * 3 // 4), fill=(30, 160, 60))
    noise = Image.effect_noise((width, height), seed_noise).convert("RGB")
    return Image.blend(base, noise, 0.2)


def exif_with_gps(orientation: int = 1) -> Image.Exif:
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = orientation
    exif[ExifTags.Base.ImageDescription] = "PATIENT JANE ROE"
    exif[ExifTags.Base.Make] = "ACME"
    exif[ExifTags.IFD.GPSInfo] = {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 21.0)}
    return exif


def srgb_icc() -> bytes:
    profile: bytes = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    return profile


def write_jpeg(path: Path, im: Image.Image, **params: object) -> Path:
    im.save(path, "JPEG", quality=90, **params)
    return path


def tagged_jpeg(path: Path, im: Image.Image, orientation: int = 1, **params: object) -> Path:
    """A JPEG carrying every kind of metadata a phone or an app might add."""
    return write_jpeg(
        path,
        im,
        exif=exif_with_gps(orientation),
        comment=b"PATIENT JOHN DOE 40.7128",
        xmp=b"<x:xmpmeta><rdf:Description>PATIENT JOHN DOE</rdf:Description></x:xmpmeta>",
        icc_profile=srgb_icc(),
        **params,
    )


def jpeg_segments(data: bytes) -> list[int]:
    """Markers of a JPEG's segments up to the first scan."""
    assert data[:2] == b"\xff\xd8"
    markers = []
    pos = 2
    while True:
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        markers.append(marker)
        if marker == 0xDA:
            return markers
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        pos += 2 + length


def all_jpeg_markers(data: bytes) -> set[int]:
    """Every marker present anywhere in a JPEG (a scan across entropy data too)."""
    found = set()
    for i in range(len(data) - 1):
        if data[i] == 0xFF and data[i + 1] not in (0x00, 0xFF) and not 0xD0 <= data[i + 1] <= 0xD7:
            found.add(data[i + 1])
    return found


def outside_scans(data: bytes) -> bytes:
    """A JPEG's bytes without its entropy-coded data, where a short string like b"GPS" can occur by
    chance; other formats as they are."""
    if data[:2] != b"\xff\xd8":
        return data
    kept, pos, in_scan = [], 2, False
    while pos < len(data) - 1:
        if in_scan:
            # The scan runs to the next marker that is not stuffing (FF00), a restart or fill.
            nxt = data.find(b"\xff", pos)
            if nxt < 0:
                break
            follower = data[nxt + 1]
            if follower == 0x00 or follower == 0xFF or 0xD0 <= follower <= 0xD7:
                pos = nxt + 1
                continue
            pos, in_scan = nxt, False
            continue
        marker = data[pos + 1]
        if marker == 0xD9:
            kept.append(data[pos:])  # EOI and anything after it (a trailer is not image data)
            break
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        kept.append(data[pos : pos + 2 + length])
        pos += 2 + length
        in_scan = marker == 0xDA
    return b"".join(kept)


def assert_metadata_free(path: Path) -> None:
    data = path.read_bytes()
    searched = outside_scans(data)
    for secret in SECRETS:
        assert secret not in searched, (path.name, secret)
    with Image.open(path) as im:
        assert not im.getexif()
        for key in ("exif", "comment", "icc_profile", "xmp", "XML:com.adobe.xmp"):
            assert key not in im.info, (path.name, key)
        if im.format == "JPEG":
            markers = all_jpeg_markers(data)
            assert 0xFE not in markers  # COM
            assert not {m for m in markers if 0xE1 <= m <= 0xEF}  # APP1..APP15
        if im.format == "PNG":
            assert not getattr(im, "text", {})
            for chunk in (b"tEXt", b"zTXt", b"iTXt", b"eXIf", b"iCCP"):
                assert chunk not in data
        if im.format == "WEBP":
            for chunk in (b"EXIF", b"XMP ", b"ICCP"):
                assert chunk not in data


def run(src: Path, tmp_path: Path, max_pixels: int = MAX_PIXELS) -> ProcessedImage:
    return process_image(src, WorkFiles(tmp_path / "work"), max_pixels=max_pixels)


def refused(src: Path, tmp_path: Path, code: str, max_pixels: int = MAX_PIXELS) -> MediaRejected:
    with pytest.raises(MediaRejected) as info:
        run(src, tmp_path, max_pixels)
    assert info.value.code == code, info.value
    assert info.value.message
    return info.value


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return a.size == b.size and ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getbbox() is None


# --- metadata --------------------------------------------------------------------------------------


def test_jpeg_variants_carry_no_metadata(tmp_path: Path) -> None:
    src = tagged_jpeg(tmp_path / "upload.bin", photo(800, 600))
    with Image.open(src) as original:
        assert original.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        assert b"PATIENT JOHN DOE" in original.info["comment"]

    result = run(src, tmp_path)

    assert (result.width, result.height, result.format) == (800, 600, "JPEG")
    assert set(result.variants) == {"full", "2048", "320"}
    for variant in result.variants.values():
        assert_metadata_free(variant.path)


def test_unrotated_jpeg_full_variant_is_the_same_image_without_reencoding(tmp_path: Path) -> None:
    src = tagged_jpeg(tmp_path / "upload.bin", photo(800, 600))
    result = run(src, tmp_path)

    full = result.variants["full"]
    assert result.variants["2048"] == full  # fits in 2048: the same file
    assert full.content_type == "image/jpeg"
    # Only the marker segments changed: the entropy-coded data, hence the pixels, are identical.
    assert full.path.stat().st_size < src.stat().st_size
    with Image.open(src) as a, Image.open(full.path) as b:
        assert same_pixels(a, b)
    assert jpeg_segments(full.path.read_bytes())[0] == 0xE0  # a bare JFIF APP0 survives
    # Hashed as it was written, so the store names it without reading it back: the name must be right.
    assert full.sha256 == hashlib.sha256(full.path.read_bytes()).hexdigest()


def test_a_photo_with_nothing_to_strip_is_kept_byte_for_byte_under_its_upload_digest(tmp_path: Path) -> None:
    # As the site client sends photos: re-encoded by Pillow, a plain JFIF header and no metadata.
    buf = io.BytesIO()
    photo(800, 600).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    src = tmp_path / "upload.bin"
    src.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    result = process_image(
        src, WorkFiles(tmp_path / "work"), max_pixels=MAX_PIXELS, data=data, data_sha256=digest
    )
    full = result.variants["full"]
    assert full.path == src and full.source  # no copy written: the upload itself
    assert full.path.read_bytes() == data
    assert full.sha256 == digest
    assert not result.variants["320"].source


def test_orientation_6_is_applied_and_gives_a_portrait(tmp_path: Path) -> None:
    # A landscape sensor image with a red block top-left; orientation 6 means "rotate 90 clockwise".
    im = Image.new("RGB", (400, 300), (240, 240, 240))
    ImageDraw.Draw(im).rectangle((0, 0, 80, 60), fill=(255, 0, 0))
    src = tagged_jpeg(tmp_path / "upload.bin", im, orientation=6)

    result = run(src, tmp_path)

    assert (result.width, result.height) == (300, 400)
    for name in ("full", "2048", "320"):
        variant = result.variants[name]
        assert variant.height > variant.width
        assert_metadata_free(variant.path)
        with Image.open(variant.path) as out:
            assert out.size == (variant.width, variant.height)
            rgb = out.convert("RGB")
            red = rgb.getpixel((rgb.width - 3, 2))
            assert isinstance(red, tuple) and red[0] > 200 and red[1] < 60, red  # now top-right
            other = rgb.getpixel((2, 2))
            assert isinstance(other, tuple) and other[1] > 200, other


def test_large_photo_gets_a_2048_variant_and_a_320_thumbnail(tmp_path: Path) -> None:
    src = tagged_jpeg(tmp_path / "upload.bin", photo(4096, 1024))
    result = run(src, tmp_path)

    assert (result.width, result.height) == (4096, 1024)
    large = result.variants["2048"]
    assert large.path != result.variants["full"].path
    assert (large.width, large.height) == (2048, 512)
    thumb = result.variants["320"]
    assert (thumb.width, thumb.height) == (320, 80)
    for variant in result.variants.values():
        with Image.open(variant.path) as out:
            assert out.size == (variant.width, variant.height)
        assert_metadata_free(variant.path)


def test_odd_size_uses_an_exact_resize_to_2048(tmp_path: Path) -> None:
    # 4400 px: halving leaves 2200 (too big), quartering 1100 (too small), so Lanczos to exactly 2048.
    src = write_jpeg(tmp_path / "upload.bin", photo(4400, 1100))
    result = run(src, tmp_path)
    large = result.variants["2048"]
    assert max(large.width, large.height) == 2048
    assert (large.width, large.height) == (2048, 512)


def test_rotated_large_photo(tmp_path: Path) -> None:
    src = tagged_jpeg(tmp_path / "upload.bin", photo(2600, 1300), orientation=8)
    result = run(src, tmp_path)
    assert (result.width, result.height) == (1300, 2600)
    assert max(result.variants["2048"].width, result.variants["2048"].height) <= 2048
    assert result.variants["2048"].height > result.variants["2048"].width
    for variant in result.variants.values():
        assert_metadata_free(variant.path)


def test_png_variants_are_lossless_and_metadata_free(tmp_path: Path) -> None:
    from PIL import PngImagePlugin

    im = photo(500, 400).convert("RGBA")
    info = PngImagePlugin.PngInfo()
    info.add_text("Comment", "PATIENT JOHN DOE")
    info.add_itxt("Description", "PATIENT JOHN DOE", zip=True)
    src = tmp_path / "upload.bin"
    im.save(src, "PNG", pnginfo=info, exif=exif_with_gps(), icc_profile=srgb_icc())

    result = run(src, tmp_path)

    assert result.format == "PNG"
    assert result.variants["full"].content_type == "image/png"
    with Image.open(result.variants["full"].path) as out:
        assert out.mode == "RGBA"
        assert same_pixels(out, im)
    for variant in result.variants.values():
        assert_metadata_free(variant.path)


def test_rotated_png_is_reencoded_without_metadata(tmp_path: Path) -> None:
    src = tmp_path / "upload.bin"
    photo(300, 200).save(src, "PNG", exif=exif_with_gps(orientation=6))
    result = run(src, tmp_path)
    assert (result.width, result.height) == (200, 300)
    for variant in result.variants.values():
        assert_metadata_free(variant.path)


def test_webp_variants_are_metadata_free(tmp_path: Path) -> None:
    src = tmp_path / "upload.bin"
    im = photo(500, 400)
    im.save(src, "WEBP", exif=exif_with_gps(), xmp=b"<x:xmpmeta>PATIENT</x:xmpmeta>", icc_profile=srgb_icc())
    assert b"EXIF" in src.read_bytes()

    result = run(src, tmp_path)

    assert result.format == "WEBP"
    assert result.variants["full"].content_type == "image/webp"
    with Image.open(src) as a, Image.open(result.variants["full"].path) as b:
        assert same_pixels(a, b)
    for variant in result.variants.values():
        assert_metadata_free(variant.path)


def test_mpo_keeps_only_the_first_image(tmp_path: Path) -> None:
    src = tmp_path / "upload.bin"
    first = photo(320, 240)
    first.save(src, "MPO", save_all=True, append_images=[Image.new("RGB", (320, 240), "blue")])
    result = run(src, tmp_path)
    assert result.format == "JPEG"
    data = result.variants["full"].path.read_bytes()
    assert data.count(b"\xff\xd8") == 1 and data.endswith(b"\xff\xd9")
    with Image.open(src) as a, Image.open(result.variants["full"].path) as b:
        assert b.format == "JPEG"
        assert same_pixels(a, b)


def test_strip_jpeg_removes_comments_between_progressive_scans_and_trailers(tmp_path: Path) -> None:
    buf = io.BytesIO()
    photo(200, 150).save(buf, "JPEG", progressive=True, quality=85)
    data = buf.getvalue()
    second_scan = data.index(b"\xff\xda", data.index(b"\xff\xda") + 2)
    comment = b"PATIENT JOHN DOE"
    com = b"\xff\xfe" + struct.pack(">H", len(comment) + 2) + comment
    tampered = data[:second_scan] + com + data[second_scan:] + b"TRAILER PATIENT"

    stripped = strip_jpeg(tampered)

    assert b"PATIENT" not in stripped
    with Image.open(io.BytesIO(data)) as a, Image.open(io.BytesIO(stripped)) as b:
        assert same_pixels(a, b)


# --- quality measures ------------------------------------------------------------------------------


def test_quality_measures(tmp_path: Path) -> None:
    sharp = photo(640, 480)
    ImageDraw.Draw(sharp).text((10, 10), "0123456789 " * 5, fill=(0, 0, 0))
    dark = Image.new("RGB", (640, 480), (2, 2, 2))
    a = run(write_jpeg(tmp_path / "sharp.bin", sharp), tmp_path / "a").quality
    b = run(
        write_jpeg(tmp_path / "blurred.bin", sharp.filter(ImageFilter.GaussianBlur(6))), tmp_path / "b"
    ).quality
    c = run(write_jpeg(tmp_path / "dark.bin", dark), tmp_path / "c").quality

    assert set(a) >= {"mean_luminance", "clipped_fraction", "sharpness_laplacian_var"}
    assert a["sharpness_laplacian_var"] > 3 * b["sharpness_laplacian_var"]
    assert c["mean_luminance"] < 10
    assert c["clipped_dark_fraction"] > 0.9
    assert a["clipped_fraction"] < 0.2


# --- hardening -------------------------------------------------------------------------------------


def png_declaring(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height pixels."""
    buf = io.BytesIO()
    Image.new("L", (1, 1)).save(buf, "PNG")
    data = bytearray(buf.getvalue())
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def test_decompression_bomb_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "bomb.png"
    src.write_bytes(png_declaring(30000, 30000))
    refused(src, tmp_path, "decompression_bomb", max_pixels=10**12)


def test_decompression_bomb_warning_range_is_refused_whatever_the_warning_filter(tmp_path: Path) -> None:
    src = tmp_path / "bomb.png"
    src.write_bytes(png_declaring(10000, 10000))  # 100 MP: Pillow only warns
    refused(src, tmp_path, "decompression_bomb", max_pixels=10**12)  # warnings are errors under pytest
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        refused(src, tmp_path, "decompression_bomb", max_pixels=10**12)


def test_too_many_pixels_is_refused(tmp_path: Path) -> None:
    src = write_jpeg(tmp_path / "big.bin", photo(2000, 1000))
    err = refused(src, tmp_path, "too_many_pixels", max_pixels=1_000_000)
    assert "megapixels" in err.message


@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("keep", ["half", "all_but_eoi", "all_but_300"])
def test_truncated_jpeg_is_refused(tmp_path: Path, progressive: bool, keep: str) -> None:
    buf = io.BytesIO()
    photo(1024, 768).save(buf, "JPEG", quality=90, progressive=progressive)
    data = buf.getvalue()
    cut = {"half": len(data) // 2, "all_but_eoi": len(data) - 2, "all_but_300": len(data) - 300}[keep]
    src = tmp_path / "cut.bin"
    src.write_bytes(data[:cut])
    refused(src, tmp_path, "truncated")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_dct_scaled_decode_still_detects_truncation(tmp_path: Path) -> None:
    # The fast path decodes at 1/4 scale with draft(); prove that still reads every byte of scan data.
    buf = io.BytesIO()
    photo(2048, 1536).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    with Image.open(io.BytesIO(data[: len(data) - 64])) as im:
        im.draft("RGB", (320, 320))
        assert im.size == (512, 384)
        with pytest.raises(OSError, match="truncated"):
            im.load()
    src = tmp_path / "cut.bin"
    src.write_bytes(data[: len(data) - 64])
    refused(src, tmp_path, "truncated")


def test_html_named_jpg_is_not_an_image(tmp_path: Path) -> None:
    src = tmp_path / "photo.jpg"
    src.write_bytes(b"<!doctype html><html><body><script>alert(1)</script></body></html>")
    refused(src, tmp_path, "not_an_image")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "empty.jpg"
    src.write_bytes(b"")
    refused(src, tmp_path, "empty")


def test_gif_and_heic_are_unsupported(tmp_path: Path) -> None:
    gif = tmp_path / "a.jpg"
    Image.new("P", (10, 10)).save(gif, "GIF")
    refused(gif, tmp_path, "unsupported_format")
    heic = tmp_path / "b.jpg"
    heic.write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 100)
    err = refused(heic, tmp_path, "unsupported_format")
    assert "HEIC" in err.message


def test_animated_images_are_unsupported(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in ("red", "green")]
    for fmt in ("PNG", "WEBP"):
        src = tmp_path / f"anim.{fmt}"
        frames[0].save(src, fmt, save_all=True, append_images=frames[1:])
        refused(src, tmp_path, "unsupported_format")


def test_garbage_after_a_jpeg_header_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    photo(64, 48).save(buf, "JPEG")
    data = buf.getvalue()
    src = tmp_path / "bad.bin"
    src.write_bytes(data[:20] + b"\x00" * 200)
    with pytest.raises(MediaRejected) as info:
        run(src, tmp_path)
    assert info.value.code in ("corrupt", "truncated")


def test_media_rejected_pickles() -> None:
    import pickle

    err = pickle.loads(pickle.dumps(MediaRejected("truncated", "cut short")))
    assert (err.code, err.message) == ("truncated", "cut short")


def _stock_bottle(tmp_path: Path, name: str, module_px: int, orientation: int = 1) -> Path:
    import datetime as dt

    from demo.photos import stock_bottle_photo

    im = stock_bottle_photo(
        "0093-1048-01",
        "Metformin HCl",
        "500 mg",
        "L7",
        dt.date(2029, 6, 30),
        size=(2000, 1500),
        module_px=module_px,
        seed=3,
    )
    if orientation == 6:
        # Stored sideways as a phone does, with the tag that turns it upright.
        im = im.transpose(Image.Transpose.ROTATE_90)
        exif = Image.Exif()
        exif[ExifTags.Base.Orientation] = 6
        return write_jpeg(tmp_path / name, im, exif=exif)
    return write_jpeg(tmp_path / name, im)


@pytest.mark.parametrize(
    ("module_px", "orientation"),
    [(8, 1), (3, 1), (8, 6)],
    ids=["read-at-half-scale", "small-code-read-at-full-resolution", "sideways-photo"],
)
def test_stock_bottle_datamatrix_is_read_from_the_photo(
    tmp_path: Path, module_px: int, orientation: int
) -> None:
    src = _stock_bottle(tmp_path, "stock.jpg", module_px, orientation)
    out = process_image(src, WorkFiles(tmp_path / "w"), max_pixels=MAX_PIXELS, read_barcodes=True)
    datamatrix = [b for b in out.barcodes if b.startswith("]d2")]
    assert datamatrix and "0100300931048011" in datamatrix[0].replace("]d2", "")
    assert "17290630" in datamatrix[0]
    # The variants are the same as without the barcode read.
    with Image.open(out.variants["320"].path) as thumb:
        assert max(thumb.size) == 320
