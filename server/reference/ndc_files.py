"""The FDA NDC Directory's product and package files, parsed with no I/O beyond reading them.

The files are tab-delimited text with a header row, no quoting (descriptions carry quotes and '>'),
published in Windows-1252 (a UTF-8 copy is read as UTF-8), CRLF or LF line ends, blank fields for
nothing, dates as YYYYMMDD, and several values in one field separated by "; ". Columns are found by
their header, so an older file without the later columns (NDC_EXCLUDE_FLAG,
LISTING_RECORD_CERTIFIED_THROUGH, SAMPLE_PACKAGE) still loads. Package NDCs are hyphenated 4-4-2,
5-3-2 or 5-4-1 and are keyed here by the 11-digit billing form (5-4-2), as everywhere else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.evidence.barcodes import normalize_ndc
from server.evidence.text import decode_text

PRODUCT_COLUMNS = (
    "PRODUCTID",
    "PRODUCTNDC",
    "PRODUCTTYPENAME",
    "PROPRIETARYNAME",
    "PROPRIETARYNAMESUFFIX",
    "NONPROPRIETARYNAME",
    "DOSAGEFORMNAME",
    "ROUTENAME",
    "STARTMARKETINGDATE",
    "ENDMARKETINGDATE",
    "MARKETINGCATEGORYNAME",
    "APPLICATIONNUMBER",
    "LABELERNAME",
    "SUBSTANCENAME",
    "ACTIVE_NUMERATOR_STRENGTH",
    "ACTIVE_INGRED_UNIT",
    "PHARM_CLASSES",
    "DEASCHEDULE",
    "NDC_EXCLUDE_FLAG",
    "LISTING_RECORD_CERTIFIED_THROUGH",
)
PACKAGE_COLUMNS = (
    "PRODUCTID",
    "PRODUCTNDC",
    "NDCPACKAGECODE",
    "PACKAGEDESCRIPTION",
    "STARTMARKETINGDATE",
    "ENDMARKETINGDATE",
    "NDC_EXCLUDE_FLAG",
    "SAMPLE_PACKAGE",
)
# Columns added to the files over the years: a file without them loads, the values are left blank.
_OPTIONAL = {"NDC_EXCLUDE_FLAG", "LISTING_RECORD_CERTIFIED_THROUGH", "SAMPLE_PACKAGE", "PRODUCTNDC"}

# Column -> the drug_products / drug_packages column it loads into.
_PRODUCT_FIELDS = {
    "PRODUCTID": "product_id",
    "PRODUCTNDC": "product_ndc",
    "PRODUCTTYPENAME": "product_type",
    "PROPRIETARYNAME": "proprietary_name",
    "PROPRIETARYNAMESUFFIX": "proprietary_name_suffix",
    "NONPROPRIETARYNAME": "nonproprietary_name",
    "DOSAGEFORMNAME": "dosage_form",
    "ROUTENAME": "route",
    "STARTMARKETINGDATE": "start_marketing_date",
    "ENDMARKETINGDATE": "end_marketing_date",
    "MARKETINGCATEGORYNAME": "marketing_category",
    "APPLICATIONNUMBER": "application_number",
    "LABELERNAME": "labeler",
    "SUBSTANCENAME": "substance_name",
    "ACTIVE_NUMERATOR_STRENGTH": "strength_numerator",
    "ACTIVE_INGRED_UNIT": "strength_unit",
    "PHARM_CLASSES": "pharm_classes",
    "DEASCHEDULE": "dea_schedule",
    "NDC_EXCLUDE_FLAG": "exclude_flag",
    "LISTING_RECORD_CERTIFIED_THROUGH": "certified_through",
}
_DATES = {"start_marketing_date", "end_marketing_date", "certified_through"}
# Column widths of the tables: a longer value is cut rather than refused (it is shown, not matched).
_WIDTHS = {
    "product_id": 80,
    "product_ndc": 10,
    "product_type": 80,
    "dosage_form": 120,
    "marketing_category": 80,
    "application_number": 40,
    "dea_schedule": 8,
    "exclude_flag": 2,
}


class ReferenceFileError(ValueError):
    """A file that cannot be the NDC Directory's: no header, or a required column missing."""


@dataclass
class ParsedDirectory:
    """Rows ready to insert, and what was left out (by reason) with the first few line numbers."""

    products: list[dict[str, Any]]
    packages: list[dict[str, Any]]
    skipped: Counter[str] = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    encodings: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)

    def skip(self, reason: str, where: str) -> None:
        self.skipped[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < 5:
            seen.append(where)


def _lines(text: str) -> list[str]:
    # Not splitlines(): it also splits on form feeds and other separators a description may hold.
    return [line.rstrip("\r") for line in text.split("\n")]


def _header(first: str, expected: tuple[str, ...], name: str) -> dict[str, int]:
    columns = {c.strip().upper(): i for i, c in enumerate(first.split("\t"))}
    missing = [c for c in expected if c not in columns and c not in _OPTIONAL]
    if missing:
        raise ReferenceFileError(
            f"{name}: the header lacks {', '.join(missing)}; is this the NDC Directory's {name}?"
        )
    return columns


def parse_date(value: str | None) -> dt.date | None:
    """YYYYMMDD as the files write it; None for blank or malformed."""
    if not value or len(value) != 8 or not value.isdigit():
        return None
    try:
        return dt.date(int(value[:4]), int(value[4:6]), int(value[6:]))
    except ValueError:
        return None


def _cells(line: str, columns: dict[str, int]) -> dict[str, str | None]:
    cells = line.split("\t")
    out: dict[str, str | None] = {}
    for name, i in columns.items():
        value = cells[i].strip() if i < len(cells) else ""
        out[name] = value or None
    return out


def parse_products(text: str, parsed: ParsedDirectory, name: str = "product file") -> dict[str, str]:
    """Adds the product file's rows to `parsed`; returns each PRODUCTID's product NDC."""
    lines = _lines(text)
    columns = _header(lines[0] if lines else "", PRODUCT_COLUMNS, name)
    known: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = _cells(line, columns)
        product_id = cells.get("PRODUCTID")
        if not product_id:
            parsed.skip("product_without_id", f"{name}:{number}")
            continue
        if product_id in known:
            parsed.skip("duplicate_product", f"{name}:{number}")
            continue
        row: dict[str, Any] = {}
        for column, target in _PRODUCT_FIELDS.items():
            value = cells.get(column)
            if target in _DATES:
                row[target] = parse_date(value)
                if value and row[target] is None:
                    parsed.skip("bad_date_left_blank", f"{name}:{number}")
            else:
                width = _WIDTHS.get(target)
                row[target] = value[:width] if value and width else value
        if len(product_id) > _WIDTHS["product_id"]:
            parsed.skip("product_id_too_long", f"{name}:{number}")
            continue
        row["product_ndc"] = row["product_ndc"] or product_id.split("_", 1)[0][:10]
        row["product_type"] = row["product_type"] or ""
        known[product_id] = row["product_ndc"]
        parsed.products.append(row)
    return known


def parse_packages(
    text: str, parsed: ParsedDirectory, products: dict[str, str], name: str = "package file"
) -> None:
    """Adds the package file's rows whose product is known and whose NDC is valid to `parsed`."""
    lines = _lines(text)
    columns = _header(lines[0] if lines else "", PACKAGE_COLUMNS, name)
    seen: set[str] = set()
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        cells = _cells(line, columns)
        where = f"{name}:{number}"
        code = cells.get("NDCPACKAGECODE") or ""
        try:
            ndc11 = normalize_ndc(code)
        except ValueError:
            parsed.skip("bad_ndc", where)
            continue
        product_id = cells.get("PRODUCTID")
        if product_id is None or product_id not in products:
            parsed.skip("package_without_product", where)
            continue
        if ndc11 in seen:
            parsed.skip("duplicate_package", where)
            continue
        seen.add(ndc11)
        sample = cells.get("SAMPLE_PACKAGE")
        flag = cells.get("NDC_EXCLUDE_FLAG")
        parsed.packages.append(
            {
                "ndc11": ndc11,
                "product_id": product_id,
                "package_code": code.strip()[:14],
                "description": cells.get("PACKAGEDESCRIPTION"),
                "start_marketing_date": parse_date(cells.get("STARTMARKETINGDATE")),
                "end_marketing_date": parse_date(cells.get("ENDMARKETINGDATE")),
                "exclude_flag": flag[:2] if flag else None,
                "sample": None if sample is None else sample.upper() == "Y",
            }
        )


def parse_directory(product_bytes: bytes, package_bytes: bytes) -> ParsedDirectory:
    """Both files parsed: the products, then the packages that belong to one of them."""
    parsed = ParsedDirectory([], [])
    product_text, parsed.encodings["product"] = decode_text(product_bytes)
    package_text, parsed.encodings["package"] = decode_text(package_bytes)
    parsed.sha256 = {
        "product": hashlib.sha256(product_bytes).hexdigest(),
        "package": hashlib.sha256(package_bytes).hexdigest(),
    }
    products = parse_products(product_text, parsed)
    parse_packages(package_text, parsed, products)
    return parsed


def read_directory(product_file: Path, package_file: Path) -> ParsedDirectory:
    return parse_directory(product_file.read_bytes(), package_file.read_bytes())
