"""Reading the FDA NDC Directory's product and package files, quirks and all, and comparing products."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from types import SimpleNamespace

import pytest

from server.reference.compare import classify, compare_drug, compare_form, compare_strength, strength_text
from server.reference.ndc_files import (
    PACKAGE_COLUMNS,
    PRODUCT_COLUMNS,
    ReferenceFileError,
    parse_directory,
    read_directory,
)
from tests.ndc_directory import (
    GENERIC_EQUIVALENT,
    OTHER_DOSAGE_FORM,
    OTHER_DRUG,
    OTHER_STRENGTH,
    PRESCRIBED,
    SAME_PRODUCT_OTHER_PACKAGE,
    sample,
    write_sample,
)


def test_the_sample_in_the_fdas_layout_loads_with_every_ndc_in_the_billing_form(tmp_path: Path) -> None:
    parsed = read_directory(*write_sample(tmp_path))
    assert len(parsed.products) == 7 and len(parsed.packages) == 8
    assert parsed.skipped == {}
    # The package file is plain ASCII, which reads the same either way.
    assert parsed.encodings == {"product": "cp1252", "package": "utf-8"}
    by_ndc = {p["ndc11"]: p for p in parsed.packages}
    # 4-4-2, 5-3-2 and 5-4-1 each take their leading zero where the billing form needs it.
    assert {"00378180501", "68180051301", "50090123400"} <= set(by_ndc)
    assert by_ndc["50090123400"]["end_marketing_date"] == dt.date(2020, 1, 31)
    assert by_ndc["00378180501"]["description"].endswith('"unit of use"')
    teva = next(p for p in parsed.products if p["product_ndc"] == "0093-1048")
    assert teva["proprietary_name"] == "Glucophage\u00ae" and teva["labeler"] == "Laboratoires S\u00e9rvier"
    assert teva["proprietary_name_suffix"] is None  # blank is nothing
    assert teva["start_marketing_date"] == dt.date(2002, 1, 24)


def test_bad_rows_are_left_out_and_counted_and_the_good_ones_kept(tmp_path: Path) -> None:
    products, packages = sample()
    tail = (
        "\r\n"  # a blank line
        f"{products[0]['PRODUCTID']}\t0378-1805\tNOT-AN-NDC\tsomething\r\n"  # short row, bad NDC
        "9999-9999_nope\t9999-9999\t9999-9999-99\t100 TABLET in 1 BOTTLE\t20200101\r\n"  # no such product
        f"{products[0]['PRODUCTID']}\t0378-1805\t{PRESCRIBED}\tthe same NDC again\t2002012\r\n"  # duplicate
        f"{products[1]['PRODUCTID']}\t0093-1048\t0093-1048-05\t500 TABLET in 1 BOTTLE\tbad-date\r\n"  # short
    )
    parsed = read_directory(*write_sample(tmp_path, package_tail=tail))
    assert parsed.skipped == {"bad_ndc": 1, "package_without_product": 1, "duplicate_package": 1}
    assert parsed.examples["bad_ndc"] == [f"package file:{len(packages) + 3}"]
    short = next(p for p in parsed.packages if p["ndc11"] == "00093104805")
    assert short["start_marketing_date"] is None and short["sample"] is None and short["exclude_flag"] is None


def test_a_utf8_copy_and_an_older_file_without_the_later_columns_load(tmp_path: Path) -> None:
    products, packages = sample()
    old_product_columns = PRODUCT_COLUMNS[:-2]
    old_package_columns = PACKAGE_COLUMNS[:-2]
    product_text = "\n".join(
        ["\t".join(old_product_columns)] + ["\t".join(r[c] for c in old_product_columns) for r in products]
    )
    package_text = "\n".join(
        ["\t".join(old_package_columns)] + ["\t".join(r[c] for c in old_package_columns) for r in packages]
    )
    parsed = parse_directory(b"\xef\xbb\xbf" + product_text.encode(), package_text.encode())
    assert parsed.encodings == {"product": "utf-8", "package": "utf-8"}
    assert len(parsed.products) == 7 and len(parsed.packages) == 8
    assert next(p for p in parsed.products if p["product_ndc"] == "0093-1048")["labeler"].endswith(
        "S\u00e9rvier"
    )


def test_a_file_that_is_not_the_directory_is_refused_naming_the_missing_columns(tmp_path: Path) -> None:
    product_file, package_file = write_sample(tmp_path)
    with pytest.raises(ReferenceFileError, match="NDCPACKAGECODE"):
        read_directory(product_file, product_file)
    with pytest.raises(ReferenceFileError, match="PRODUCTID"):
        parse_directory(b"", package_file.read_bytes())


@pytest.fixture
def products(tmp_path: Path) -> dict[str, SimpleNamespace]:
    product_file, package_file = write_sample(tmp_path)
    parsed = read_directory(product_file, package_file)
    return {p["product_ndc"]: SimpleNamespace(**p) for p in parsed.products}


def _of(ndc: str) -> str:
    return ndc.rsplit("-", 1)[0]


@pytest.mark.parametrize(
    ("scanned", "expected_class"),
    [
        (SAME_PRODUCT_OTHER_PACKAGE, "same_product_other_package"),
        (GENERIC_EQUIVALENT, "generic_equivalent"),
        (OTHER_STRENGTH, "other_strength"),
        (OTHER_DOSAGE_FORM, "other_dosage_form"),
        (OTHER_DRUG, "other_drug"),
    ],
)
def test_each_mismatch_class(products: dict[str, SimpleNamespace], scanned: str, expected_class: str) -> None:
    assert classify(products[_of(PRESCRIBED)], products[_of(scanned)]) == expected_class


def test_entries_are_compared_as_a_technician_writes_them(products: dict[str, SimpleNamespace]) -> None:
    metformin, combo = products["0378-1805"], products["0406-0123"]
    assert strength_text(metformin) == "500 mg" and strength_text(combo) == "5 mg; 325 mg"
    assert compare_drug("Metformin HCl", metformin) and not compare_drug("Lisinopril", metformin)
    assert compare_drug("Glucophage", products["0093-1048"])
    assert compare_strength("500 mg", metformin) and compare_strength("500mg", metformin)
    assert not compare_strength("850 mg", metformin) and not compare_strength("500 mcg", metformin)
    assert compare_strength("5 mg/325 mg", combo) and not compare_strength("7.5 mg/325 mg", combo)
    assert compare_form("tablet", metformin) == (True, None)
    assert compare_form("tab", metformin) == (True, None)
    assert compare_form("capsule", metformin) == (False, None)
    assert compare_form("tablet", products["0591-2719"]) == (True, "EXTENDED RELEASE")
    assert compare_form("ER tablet", products["0591-2719"]) == (True, None)
