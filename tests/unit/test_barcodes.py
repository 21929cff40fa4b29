"""Barcode parsing, NDC derivation and the product check."""

from __future__ import annotations

import json
from datetime import date

import pytest

from server.evidence.barcodes import (
    ScannedBarcode,
    check_product,
    format_ndc11,
    ndc10_from_gtin,
    ndc11_candidates,
    normalize_ndc,
    parse_barcode,
)

GS = "\x1d"
TODAY = date(2026, 11, 26)


def check_digit(body: str) -> str:
    """GS1 mod-10, written independently of the code under test."""
    weights = [3 if i % 2 == 0 else 1 for i in range(len(body))]
    total = sum(int(d) * w for d, w in zip(reversed(body), weights, strict=True))
    return str((10 - total % 10) % 10)


def gtin14(ndc10: str, indicator: str = "0") -> str:
    body = indicator + "03" + ndc10
    return body + check_digit(body)


def break_check_digit(gtin: str) -> str:
    return gtin[:-1] + str((int(gtin[-1]) + 1) % 10)


def datamatrix(gtin: str, expiry: str = "271231", lot: str = "LOT123A") -> str:
    # Lot before expiry: the variable-length lot needs a GS separator, as on real symbols.
    return f"]d201{gtin}10{lot}{GS}17{expiry}"


# --------------------------------------------------------------------------------------------- check digits


def test_check_digit_helper_matches_the_documented_example() -> None:
    assert gtin14("1234567890") == "00312345678906"


# ------------------------------------------------------------------------------------------------ NDC forms


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1234-5678-90", "01234567890"),  # 4-4-2: labeler padded
        ("12345-678-90", "12345067890"),  # 5-3-2: product padded
        ("12345-6789-0", "12345678900"),  # 5-4-1: package padded
        ("12345-6789-01", "12345678901"),  # 5-4-2 already
        ("12345678901", "12345678901"),
        ("  0002-3228-30 ", "00002322830"),
    ],
)
def test_normalize_ndc_accepts_every_layout(text: str, expected: str) -> None:
    assert normalize_ndc(text) == expected


def test_normalize_ndc_refuses_plain_ten_digits_as_ambiguous() -> None:
    with pytest.raises(ValueError, match="4-4-2, 5-3-2 or 5-4-1"):
        normalize_ndc("1234567890")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "1234-567-89",
        "123456-789-0",
        "12345-6789-012",
        "12-34",
        "1234-5678-9O",
        "abcd",
        "1234--5678-90",
        "\u0661\u0662\u0663\u0664-5678-90",
        "123456789012",
    ],
)
def test_normalize_ndc_refuses_malformed_input(text: str) -> None:
    with pytest.raises(ValueError, match="NDC"):
        normalize_ndc(text)


def test_format_ndc11() -> None:
    assert format_ndc11("12345678901") == "12345-6789-01"
    assert format_ndc11("1234-5678-90") == "01234-5678-90"
    with pytest.raises(ValueError):
        format_ndc11("123")


def test_ndc11_candidates_cover_the_three_layouts_in_order() -> None:
    assert ndc11_candidates("1234567890") == ("01234567890", "12345067890", "12345678900")
    # Identical paddings collapse.
    assert ndc11_candidates("0000000000") == ("00000000000",)
    with pytest.raises(ValueError):
        ndc11_candidates("123456789")


@pytest.mark.parametrize("ndc", ["1234-5678-90", "12345-678-90", "12345-6789-0"])
def test_every_ndc10_layout_survives_the_barcode_round_trip(ndc: str) -> None:
    scan = parse_barcode(gtin14(ndc.replace("-", "")))
    assert scan.usable
    assert normalize_ndc(ndc) in scan.ndc11_candidates


def test_ndc10_from_gtin() -> None:
    assert ndc10_from_gtin("00312345678906") == "1234567890"
    assert ndc10_from_gtin("312345678906") == "1234567890"  # UPC-A, padded
    assert ndc10_from_gtin("50312345678901") == "1234567890"  # case-pack indicator
    assert ndc10_from_gtin("04006381333931") is None


# ------------------------------------------------------------------------------------------------ parsing


def test_parse_gs1_datamatrix_raw_text_with_group_separator() -> None:
    scan = parse_barcode(datamatrix(gtin14("1234567890"), expiry="270630", lot="A1B-2/C"))
    assert scan == ScannedBarcode(
        raw=datamatrix(gtin14("1234567890"), expiry="270630", lot="A1B-2/C"),
        symbology="gs1_datamatrix",
        gtin="00312345678906",
        ndc10="1234567890",
        ndc11_candidates=("01234567890", "12345067890", "12345678900"),
        lot="A1B-2/C",
        expiry=date(2027, 6, 30),
        error=None,
    )
    assert scan.usable


def test_parse_gs1_128_raw_text() -> None:
    scan = parse_barcode(f"]C101{gtin14('5555512345')}17280115{GS}10XYZ")
    assert scan.symbology == "gs1_128"
    assert scan.ndc10 == "5555512345"
    assert scan.expiry == date(2028, 1, 15)
    assert scan.lot == "XYZ"


def test_parse_hri_text() -> None:
    scan = parse_barcode("(01)00312345678906(17)271231(10)LOT123A")
    assert scan.error is None
    assert scan.symbology == "unknown"  # HRI alone does not say which symbol carried it
    assert (scan.gtin, scan.lot, scan.expiry) == ("00312345678906", "LOT123A", date(2027, 12, 31))


def test_parse_hri_text_with_symbology_identifier() -> None:
    scan = parse_barcode("]d2(01)00312345678906(10)LOT9")
    assert scan.symbology == "gs1_datamatrix"
    assert scan.lot == "LOT9"


def test_parse_upc_a() -> None:
    scan = parse_barcode("312345678906")
    assert scan.symbology == "upc_a"
    assert scan.gtin == "00312345678906"
    assert scan.ndc10 == "1234567890"
    assert scan.expiry is None and scan.lot is None


def test_parse_upc_a_as_zxing_reports_it() -> None:
    # zxing-cpp reads a UPC-A as EAN-13 with a leading zero and the ]E0 identifier.
    scan = parse_barcode("]E00312345678906")
    assert scan.symbology == "upc_a"
    assert scan.ndc10 == "1234567890"


def test_parse_bare_gtin14_including_case_pack_indicator() -> None:
    scan = parse_barcode("00312345678906")
    assert (scan.symbology, scan.ndc10) == ("gtin", "1234567890")
    case = parse_barcode(gtin14("1234567890", indicator="5"))
    assert case.usable and case.ndc10 == "1234567890"


def test_scanner_line_endings_are_ignored() -> None:
    assert parse_barcode("312345678906\r\n").usable
    assert parse_barcode(" (01)00312345678906 \n").usable


@pytest.mark.parametrize(
    ("expiry", "expected"),
    [("271100", date(2027, 11, 30)), ("280200", date(2028, 2, 29)), ("270200", date(2027, 2, 28))],
)
def test_expiry_day_00_means_end_of_month(expiry: str, expected: date) -> None:
    assert parse_barcode(datamatrix(gtin14("1234567890"), expiry=expiry)).expiry == expected
    assert parse_barcode(f"(01)00312345678906(17){expiry}").expiry == expected


@pytest.mark.parametrize(
    "text",
    [
        datamatrix(break_check_digit(gtin14("1234567890"))),
        f"(01){break_check_digit(gtin14('1234567890'))}(17)271231",
        "312345678907",
        break_check_digit(gtin14("1234567890")),
        "]E00312345678907",
    ],
)
def test_bad_check_digit_is_an_error_not_a_product(text: str) -> None:
    scan = parse_barcode(text)
    assert scan.error is not None and "check digit" in scan.error
    assert scan.gtin is None and scan.ndc10 is None and not scan.usable


def test_non_ndc_gtin_is_an_error_but_keeps_the_gtin() -> None:
    scan = parse_barcode("4006381333931")  # EAN-13 of a German product
    assert scan.gtin == "04006381333931"
    assert scan.ndc10 is None and scan.ndc11_candidates == ()
    assert scan.error is not None and "not an NDC" in scan.error


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("]C0312345678906", "not a GS1 product barcode"),  # plain Code 128, e.g. the pharmacy's Rx label
        ("]Q1https://example.com/rx/12", "not a GS1 product barcode"),
        ("hello", "not a valid GS1 message"),
        ("", "empty"),
        ("   ", "empty"),
        ("(01)00312345678906(17)271341", "not a valid GS1 element string"),
        ("(17)271231(10)ABC", "no GTIN"),
        ("]d200312345678906", "element strings"),
        ("1234567890", "GTIN"),
    ],
)
def test_unusable_input_is_reported(text: str, fragment: str) -> None:
    scan = parse_barcode(text)
    assert scan.error is not None and fragment in scan.error
    assert not scan.usable


def test_gs1_digital_link_uri() -> None:
    scan = parse_barcode("https://id.gs1.org/01/00312345678906/10/ABC?17=271231")
    assert scan.usable
    assert (scan.lot, scan.expiry) == ("ABC", date(2027, 12, 31))


# ------------------------------------------------------------------------------------------- product check


def test_no_barcodes_is_none() -> None:
    check = check_product([], "01234567890", TODAY)
    assert check.result == "none"
    assert check.detail["barcodes"] == []


@pytest.mark.parametrize("ndc", ["1234-5678-90", "12345-678-90", "12345-6789-0"])
def test_match_for_every_layout(ndc: str) -> None:
    digits = ndc.replace("-", "")
    check = check_product([datamatrix(gtin14(digits))], normalize_ndc(ndc), TODAY)
    assert check.result == "match"
    assert check.detail["matched_ndc11"] == format_ndc11(normalize_ndc(ndc))


def test_expected_ndc_may_be_hyphenated() -> None:
    assert check_product(["312345678906"], "12345-678-90", TODAY).result == "match"


def test_mismatch() -> None:
    check = check_product([datamatrix(gtin14("9999912345"))], "01234567890", TODAY)
    assert check.result == "mismatch"
    assert check.detail["matched_ndc11"] is None
    assert check.detail["barcodes"][0]["matches"] is False


def test_the_same_ten_digits_under_another_padding_do_not_match() -> None:
    # 1234567890 can be 0123456789-0, 12345-0678-90 or 12345-6789-00, never 12345-6789-01.
    assert check_product(["312345678906"], "12345678901", TODAY).result == "mismatch"


@pytest.mark.parametrize(
    "others",
    [
        [datamatrix(gtin14("1234567890"))],  # a matching barcode
        [datamatrix(gtin14("1234567890"), expiry="200101")],  # an expired matching barcode
        ["garbage"],  # an unreadable one
    ],
)
def test_mismatch_wins_over_everything(others: list[str]) -> None:
    barcodes = [*others, datamatrix(gtin14("9999912345"))]
    assert check_product(barcodes, "01234567890", TODAY).result == "mismatch"


def test_non_ndc_product_is_a_mismatch() -> None:
    assert check_product(["4006381333931"], "01234567890", TODAY).result == "mismatch"


def test_expired() -> None:
    check = check_product([datamatrix(gtin14("1234567890"), expiry="261125")], "01234567890", TODAY)
    assert check.result == "expired"
    assert check.detail["expiry"] == "2026-11-25"
    assert check.detail["matched_ndc11"] == "01234-5678-90"


def test_expiry_day_itself_is_still_usable() -> None:
    assert (
        check_product([datamatrix(gtin14("1234567890"), expiry="261126")], "01234567890", TODAY).result
        == "match"
    )


def test_end_of_month_expiry_boundary() -> None:
    barcode = datamatrix(gtin14("1234567890"), expiry="271100")
    assert check_product([barcode], "01234567890", date(2027, 11, 30)).result == "match"
    assert check_product([barcode], "01234567890", date(2027, 12, 1)).result == "expired"


def test_any_expired_matching_barcode_makes_it_expired() -> None:
    fresh = datamatrix(gtin14("1234567890"), expiry="291231")
    stale = datamatrix(gtin14("1234567890"), expiry="250101")
    assert check_product([fresh, "312345678906", stale], "01234567890", TODAY).result == "expired"


def test_upc_without_expiry_matches() -> None:
    assert check_product(["312345678906"], "01234567890", TODAY).result == "match"


@pytest.mark.parametrize(
    "barcodes",
    [["garbage"], ["312345678907"], [datamatrix(break_check_digit(gtin14("1234567890")))], ["", "]C0600123"]],
)
def test_unreadable(barcodes: list[str]) -> None:
    assert check_product(barcodes, "01234567890", TODAY).result == "unreadable"


def test_bad_check_digit_never_matches_even_though_the_digits_look_right() -> None:
    bad = datamatrix(break_check_digit(gtin14("1234567890")))
    check = check_product([bad], "01234567890", TODAY)
    assert check.result == "unreadable"
    assert check.detail["barcodes"][0]["matches"] is False


def test_unreadable_barcodes_are_ignored_when_another_decides() -> None:
    barcodes = ["garbage", "]C0600123", datamatrix(gtin14("1234567890"))]
    assert check_product(barcodes, "01234567890", TODAY).result == "match"


def test_detail_is_plain_json() -> None:
    barcodes = [datamatrix(gtin14("1234567890")), "garbage", "4006381333931"]
    detail = check_product(barcodes, "01234567890", TODAY).detail
    assert json.loads(json.dumps(detail)) == detail
    first = detail["barcodes"][0]
    assert first == {
        "raw": barcodes[0],
        "symbology": "gs1_datamatrix",
        "gtin": "00312345678906",
        "ndc10": "1234567890",
        "ndc11_candidates": ["01234-5678-90", "12345-0678-90", "12345-6789-00"],
        "lot": "LOT123A",
        "expiry": "2027-12-31",
        "error": None,
        "matches": True,
    }
    assert detail["barcodes"][1]["error"]
    assert detail["expected_ndc11"] == "01234-5678-90"


def test_invalid_expected_ndc_is_the_callers_bug() -> None:
    with pytest.raises(ValueError):
        check_product(["312345678906"], "1234567890", TODAY)


def test_a_single_string_is_not_a_list_of_scans() -> None:
    with pytest.raises(TypeError):
        check_product("312345678906", "01234567890", TODAY)
