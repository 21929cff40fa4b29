"""Photo quality: the thresholds classify the generated photo set, with margins, in memory and from files."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import zxingcpp
from PIL import Image, ImageOps

from demo import photos
from server.evidence.barcodes import check_product, parse_barcode
from server.evidence.photo_quality import (
    DEFAULT,
    PRODUCT_SYMBOLOGIES,
    PhotoAssessment,
    QualityThresholds,
    assess_photo,
    assess_photo_file,
    decode_barcodes,
    decode_product_barcodes,
    kind_label,
)

TODAY = date(2026, 11, 26)
SIZE_3MP = (2048, 1536)
SIZE_12MP = (4000, 3000)


def stock(size: tuple[int, int], seed: int = 0) -> Image.Image:
    return photos.stock_bottle_photo(
        "12345-678-90", "Lisinopril", "10 mg", "A1B2C3", date(2027, 6, 30), size=size, seed=seed
    )


def vial(size: tuple[int, int], seed: int = 0) -> Image.Image:
    return photos.vial_label_photo(
        "6001234", "Maria Gonzalez", "Metformin HCl", "500 mg", "Take 1 tablet by mouth twice daily", 60,
        seed=seed, size=size,
    )  # fmt: skip


BASES: dict[str, tuple[str, tuple[int, int], Callable[[], Image.Image]]] = {
    "stock_3mp": ("stock_bottle", SIZE_3MP, lambda: stock(SIZE_3MP)),
    "pills_round_3mp": ("pills", SIZE_3MP, lambda: photos.pills_photo(30, seed=1, size=SIZE_3MP)),
    "pills_capsule_3mp": (
        "pills",
        SIZE_3MP,
        lambda: photos.pills_photo(
            24, shape="capsule", color="blue", imprint="MYL 123", seed=2, size=SIZE_3MP
        ),
    ),
    "vial_3mp": ("vial_label", SIZE_3MP, lambda: vial(SIZE_3MP)),
    # Pills carry the least detail of the three scenes: the hardest 12 MP case for the blur measure.
    "pills_oval_12mp": (
        "pills",
        SIZE_12MP,
        lambda: photos.pills_photo(20, shape="oval", color="yellow", imprint="G 5", seed=3, size=SIZE_12MP),
    ),
}


@pytest.fixture(scope="module")
def bases() -> dict[str, Image.Image]:
    return {name: make() for name, (_kind, _size, make) in BASES.items()}


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    out = Image.open(io.BytesIO(photos.to_jpeg_bytes(image, quality)))
    out.load()
    return out


@dataclass(frozen=True)
class Case:
    base: str
    variant: str
    expected: tuple[str, ...]
    assessment: PhotoAssessment


def variants(
    size: tuple[int, int],
) -> list[tuple[str, tuple[str, ...], Callable[[Image.Image], Image.Image]]]:
    big = max(size) >= 4000
    # The brief's limits: blur radius 3 must fail at 12 MP, radius 2 at 3 MP. Lighter variants only once
    # at 12 MP, where every pass over the pixels costs a tenth of a second.
    cases: list[tuple[str, tuple[str, ...], Callable[[Image.Image], Image.Image]]] = [
        ("clean", (), lambda im: im),
        (f"blur {3 if big else 2}", ("blurred",), lambda im: photos.degrade(im, blur=3 if big else 2)),
        ("dark 4", ("too_dark",), lambda im: photos.degrade(im, darkness=4)),
        ("over 1.5", ("too_bright",), lambda im: photos.degrade(im, overexpose=1.5)),
        ("glare 0.4", ("glare",), lambda im: photos.degrade(im, glare=0.4)),
    ]
    if not big:
        cases += [
            ("jpeg q85", (), lambda im: jpeg(im, 85)),
            ("one stop under", (), lambda im: photos.degrade(im, darkness=1)),
            ("dark 5", ("too_dark",), lambda im: photos.degrade(im, darkness=5)),
            ("over 2.5", ("too_bright",), lambda im: photos.degrade(im, overexpose=2.5)),
            ("glare 0.6", ("glare",), lambda im: photos.degrade(im, glare=0.6)),
        ]
    return cases


@pytest.fixture(scope="module")
def sweep(bases: dict[str, Image.Image]) -> list[Case]:
    cases: list[Case] = []
    for name, (kind, size, _make) in BASES.items():
        base = bases[name]
        for variant, expected, degrade in variants(size):
            cases.append(Case(name, variant, expected, assess_photo(degrade(base), kind=kind)))
    return cases


@pytest.mark.slow
def test_sweep_classifies_every_generated_photo(sweep: list[Case]) -> None:
    wrong = [
        f"{c.base}/{c.variant}: expected {list(c.expected)}, got {c.assessment.as_dict()}"
        for c in sweep
        if tuple(c.assessment.codes) != c.expected
    ]
    assert not wrong, "\n".join(wrong)


FAILURE_CODES = ("blurred", "too_dark", "too_bright", "glare")


@pytest.mark.slow
def test_sweep_margins(sweep: list[Case]) -> None:
    """The thresholds sit well inside the gaps between passing and failing photos, not on their edges."""
    t = DEFAULT
    passing = [c.assessment for c in sweep if not c.expected]
    by_code = {code: [c.assessment for c in sweep if c.expected == (code,)] for code in FAILURE_CODES}
    # Measured (Nov 2026): passing sharpness >= 33 vs blurred <= 3.3, threshold 8.
    assert min(a.sharpness for a in passing) >= 2.5 * t.min_sharpness
    assert max(a.sharpness for a in by_code["blurred"]) <= 0.5 * t.min_sharpness
    # Brightness: passing >= 100 (one stop under) vs too dark <= 51, threshold 65.
    assert min(a.brightness for a in passing) >= 1.3 * t.min_brightness
    assert max(a.brightness for a in by_code["too_dark"]) <= 0.85 * t.min_brightness
    # Clipped share: clean <= 0.15 %, glare spots 0.43-1.4 %, over-exposed >= 6 %.
    assert max(a.clipped_fraction for a in passing) <= 0.7 * t.max_glare_fraction
    assert min(a.clipped_fraction for a in by_code["glare"]) >= 1.4 * t.max_glare_fraction
    assert max(a.clipped_fraction for a in by_code["glare"]) <= 0.5 * t.max_bright_clipped_fraction
    assert min(a.clipped_fraction for a in by_code["too_bright"]) >= 1.5 * t.max_bright_clipped_fraction


def test_file_path_with_jpeg_draft_agrees_with_in_memory(
    bases: dict[str, Image.Image], tmp_path: Path
) -> None:
    base = bases["pills_oval_12mp"]
    for name, image, expected in [
        ("sharp", base, []),
        ("blurred", photos.degrade(base, blur=3), ["blurred"]),
        ("glare", photos.degrade(base, glare=0.5), ["glare"]),
    ]:
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(photos.to_jpeg_bytes(image, 90))
        from_file = assess_photo_file(path, kind="pills")
        in_memory = assess_photo(jpeg(image, 90), kind="pills")
        assert from_file.codes == in_memory.codes == expected, name
        assert (from_file.width, from_file.height) == SIZE_12MP
        assert from_file.sharpness == pytest.approx(in_memory.sharpness, rel=0.2, abs=1.0)
        assert from_file.brightness == pytest.approx(in_memory.brightness, abs=2.0)


def test_assess_photo_file_reads_png_too(tmp_path: Path) -> None:
    path = tmp_path / "vial.png"
    vial((1280, 960)).save(path)
    assessment = assess_photo_file(path, kind="vial_label")
    assert assessment.ok, assessment.as_dict()


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_assess_photo_file_decodes_grey_and_cmyk_jpeg_at_reduced_scale(tmp_path: Path, mode: str) -> None:
    path = tmp_path / f"{mode}.jpg"
    gradient = Image.linear_gradient("L").point(lambda v: 40 + v * 160 // 255)
    gradient.resize(SIZE_12MP).convert(mode).save(path, quality=90)
    assessment = assess_photo_file(path, kind="other")
    assert (assessment.width, assessment.height) == SIZE_12MP
    assert assessment.codes == ["blurred"]  # a smooth gradient has no detail at all


def test_assessment_is_fast_on_12_megapixels() -> None:
    image = Image.new("RGB", SIZE_12MP, (120, 110, 100))
    image.load()
    assess_photo(image, kind="stock_bottle")
    start = time.perf_counter()
    assess_photo(image, kind="stock_bottle")
    # About 20 ms on an idle 2-core machine; the bound only catches a full-resolution pass sneaking in.
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize(
    ("size", "small"),
    [
        ((1024, 768), False),
        ((768, 1024), False),
        ((800, 600), True),
        ((1200, 700), True),
        ((1000, 800), True),
    ],
)
def test_too_small(size: tuple[int, int], small: bool) -> None:
    assessment = assess_photo(stock(size), kind="stock_bottle")
    assert ("too_small" in assessment.codes) is small
    if small:
        message = assessment.problems[0].message
        assert f"{size[0]}x{size[1]}" in message and "1024x768" in message


def test_custom_thresholds() -> None:
    image = stock((1024, 768))
    strict = QualityThresholds(min_long_edge=2000, min_short_edge=1500, min_sharpness=1000.0)
    assert assess_photo(image, kind="stock_bottle", thresholds=strict).codes == ["too_small", "blurred"]


def test_messages_name_the_photo_and_say_what_to_do() -> None:
    image = photos.degrade(stock((1024, 768)), blur=4, glare=0.5)
    assessment = assess_photo(image, kind="stock_bottle")
    assert assessment.codes == ["blurred", "glare"]
    assert assessment.problems[0].message == (
        "The stock bottle photo is blurred: hold the camera still and retake it."
    )
    for problem in assessment.problems:
        assert problem.message.startswith("The stock bottle photo") and problem.message.endswith("retake it.")


def test_kind_labels() -> None:
    assert kind_label("stock_bottle") == "stock bottle"
    assert kind_label("pills") == "pill tray"
    assert kind_label("vial_label") == "vial label"
    assert kind_label("shelf_tag") == "shelf tag"


def test_blank_frame_counts_as_blurred_not_as_sharp() -> None:
    assessment = assess_photo(Image.new("RGB", (2048, 1536), (128, 128, 128)), kind="other")
    assert assessment.codes == ["blurred"]
    assert assessment.sharpness == 0.0


def test_dark_photo_is_not_also_called_blurred() -> None:
    assessment = assess_photo(photos.degrade(stock((1024, 768)), darkness=6, blur=3), kind="stock_bottle")
    assert assessment.codes == ["too_dark"]


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK"])
def test_any_image_mode(mode: str) -> None:
    image = vial((1024, 768)).convert(mode)
    assert assess_photo(image, kind="vial_label").ok


def test_as_dict_is_plain_json() -> None:
    data = assess_photo(photos.degrade(stock((1024, 768)), darkness=5), kind="stock_bottle").as_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["problems"][0]["code"] == "too_dark"
    assert set(data) == {
        "kind", "width", "height", "sharpness", "brightness", "dark_fraction", "clipped_fraction", "problems",
    }  # fmt: skip


# ------------------------------------------------------------------------------------------------ barcodes


def test_decode_barcodes_reads_the_stock_bottle_datamatrix_as_parse_barcode_expects(
    bases: dict[str, Image.Image],
) -> None:
    found = decode_barcodes(bases["stock_3mp"])
    assert len(found) == 1
    assert found[0].startswith("]d2") and "\x1d" not in found[0]  # lot last: no separator needed
    scan = parse_barcode(found[0])
    assert (scan.symbology, scan.ndc10, scan.lot, scan.expiry) == (
        "gs1_datamatrix",
        "1234567890",
        "A1B2C3",
        date(2027, 6, 30),
    )
    assert check_product(found, "12345-678-90", TODAY).result == "match"
    assert check_product(found, "12345-678-91", TODAY).result == "mismatch"


def symbol_image(content: str, fmt: zxingcpp.BarcodeFormat, scale: int, *, gs1: bool = False) -> Image.Image:
    """A barcode made by zxing-cpp, as a greyscale picture with its quiet zone."""
    raw = zxingcpp.create_barcode(content, fmt, gs1=gs1).to_image(scale=scale)
    return Image.frombytes("L", (raw.shape[1], raw.shape[0]), bytes(memoryview(raw)))


def test_decode_barcodes_keeps_group_separators() -> None:
    image = symbol_image(
        "(01)00312345678906(10)LOT7(17)280200", zxingcpp.BarcodeFormat.DataMatrix, 8, gs1=True
    )
    (text,) = decode_barcodes(image)
    assert text == "]d2010031234567890610LOT7\x1d17280200"
    assert parse_barcode(text).expiry == date(2028, 2, 29)


def test_decode_barcodes_reads_the_vial_rx_code_which_is_not_a_product(bases: dict[str, Image.Image]) -> None:
    found = decode_barcodes(bases["vial_3mp"])
    assert found == ["]C06001234"]
    assert parse_barcode(found[0]).error is not None
    assert check_product(found, "12345-678-90", TODAY).result == "unreadable"


def test_decode_barcodes_on_a_blank_image() -> None:
    assert decode_barcodes(Image.new("RGB", (640, 480), (200, 200, 200))) == []


@pytest.mark.parametrize("turn", ["upright", "quarter_turn", "upside_down", "inverted"])
def test_evidence_read_finds_the_stock_bottle_code_however_the_photo_shows_it(
    bases: dict[str, Image.Image], turn: str
) -> None:
    image = bases["stock_3mp"].convert("L")
    if turn == "quarter_turn":
        image = image.transpose(Image.Transpose.ROTATE_90)
    elif turn == "upside_down":
        image = image.transpose(Image.Transpose.ROTATE_180)
    elif turn == "inverted":
        image = ImageOps.invert(image)  # a light-on-dark (laser-etched) code
    found = decode_product_barcodes(image)
    assert check_product(found, "12345-678-90", TODAY).result == "match"
    # Only an upright, dark-on-light code is within the quick look that the evidence read starts with.
    assert bool(decode_barcodes(image, thorough=False)) == (turn == "upright")


def test_evidence_read_searches_on_when_the_quick_look_finds_no_product_code() -> None:
    # A vial's Rx code (upright, names no product) beside a stock bottle's code turned a quarter.
    rx = symbol_image("6001234", zxingcpp.BarcodeFormat.Code128, 4)
    product = symbol_image(
        "(01)00312345678906(17)271231(10)LOT9", zxingcpp.BarcodeFormat.DataMatrix, 8, gs1=True
    )
    canvas = Image.new("L", (900, 500), 255)
    canvas.paste(rx, (40, 40))
    canvas.paste(product.transpose(Image.Transpose.ROTATE_90), (600, 200))
    assert decode_barcodes(canvas, thorough=False) == ["]C06001234"]
    found = decode_product_barcodes(canvas)
    assert "]C06001234" in found
    assert check_product(found, "12345-678-90", TODAY).result == "match"


@pytest.mark.parametrize(
    ("fmt", "content", "gs1", "names_a_product"),
    [
        (zxingcpp.BarcodeFormat.DataMatrix, "(01)00312345678906(17)271231(10)LOT9", True, True),
        (zxingcpp.BarcodeFormat.Code128, "(01)00312345678906", True, True),
        (zxingcpp.BarcodeFormat.UPCA, "31234567890", False, True),
        (zxingcpp.BarcodeFormat.EAN13, "031234567890", False, True),
        (zxingcpp.BarcodeFormat.Code128, "6001234", False, False),  # a vial's Rx number
        (zxingcpp.BarcodeFormat.DataMatrix, "LOT9", False, False),
    ],
)
def test_the_quick_look_knows_which_symbols_carry_a_product_number(
    fmt: zxingcpp.BarcodeFormat, content: str, gs1: bool, names_a_product: bool
) -> None:
    (text,) = decode_barcodes(symbol_image(content, fmt, 6, gs1=gs1), thorough=False)
    assert text.startswith(PRODUCT_SYMBOLOGIES) == names_a_product
    assert parse_barcode(text).usable == names_a_product
