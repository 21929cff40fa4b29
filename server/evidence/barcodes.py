"""Stock-bottle barcodes: GS1 parsing, NDC derivation and the product check, with no I/O.

The same rules run on the site (right after the scan) and on the server (again, on what was uploaded),
so everything here is pure and deterministic given its arguments.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Literal

import biip
from biip.gs1_messages import GS1Message

Symbology = Literal["gs1_datamatrix", "gs1_128", "upc_a", "gtin", "unknown"]
ProductResult = Literal["match", "mismatch", "expired", "unreadable", "none"]

# Hyphenated NDC10 layouts and where the billing form (5-4-2) needs its leading zero.
_NDC_LAYOUTS: dict[tuple[int, int, int], int] = {(4, 4, 2): 0, (5, 3, 2): 1, (5, 4, 1): 2}
_DIGITS = re.compile(r"[0-9]+")
_SYMBOLOGY_ID = re.compile(r"\][A-Za-z][0-9A-Za-z]")
# Symbols whose GS1 mode means the payload is element strings, never a bare GTIN.
_MESSAGE_SYMBOLOGIES = ("GS1_DATAMATRIX", "GS1_128", "GS1_QR_CODE", "GS1_DOTCODE")
_HRI_SYMBOLOGY: dict[str, Symbology] = {"]d2": "gs1_datamatrix", "]C1": "gs1_128"}
# Scanners and keyboard wedges append CR/LF; \x1d (GS) is data and must survive, so no bare strip().
_EDGE_WHITESPACE = " \t\r\n"


def _is_digits(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


def normalize_ndc(text: str) -> str:
    """Return the 11-digit billing NDC (digits only) for a hyphenated NDC10 or an NDC11."""
    value = text.strip()
    parts = value.split("-")
    if len(parts) == 1:
        if _is_digits(value) and len(value) == 11:
            return value
        if _is_digits(value) and len(value) == 10:
            raise ValueError(
                f"NDC {value!r} has 10 digits and no hyphens: it could be 4-4-2, 5-3-2 or 5-4-1, "
                "so write it with hyphens or give the 11-digit form"
            )
        raise ValueError(f"NDC {value!r} is not a hyphenated NDC10 or an 11-digit NDC")
    if len(parts) != 3 or not all(_is_digits(p) for p in parts):
        raise ValueError(f"NDC {value!r} must be three groups of digits separated by hyphens")
    layout = (len(parts[0]), len(parts[1]), len(parts[2]))
    if layout == (5, 4, 2):
        return "".join(parts)
    if layout not in _NDC_LAYOUTS:
        shape = "-".join(map(str, layout))
        raise ValueError(f"NDC {value!r} has layout {shape}; expected 4-4-2, 5-3-2, 5-4-1 or 5-4-2")
    short = _NDC_LAYOUTS[layout]
    parts[short] = "0" + parts[short]
    return "".join(parts)


def format_ndc11(ndc11: str) -> str:
    """Format an NDC as 5-4-2 with hyphens, e.g. "12345-6789-01"."""
    digits = normalize_ndc(ndc11)
    return f"{digits[:5]}-{digits[5:9]}-{digits[9:]}"


def ndc11_candidates(ndc10: str) -> tuple[str, ...]:
    """Every 11-digit NDC an unhyphenated NDC10 (as carried in a barcode) could stand for."""
    if not (_is_digits(ndc10) and len(ndc10) == 10):
        raise ValueError(f"NDC10 {ndc10!r} must be exactly 10 digits")
    candidates = (
        "0" + ndc10,  # 4-4-2
        ndc10[:5] + "0" + ndc10[5:],  # 5-3-2
        ndc10[:9] + "0" + ndc10[9:],  # 5-4-1
    )
    return tuple(dict.fromkeys(candidates))


def ndc10_from_gtin(gtin: str) -> str | None:
    """The NDC10 inside a GTIN (8 to 14 digits), or None when the GTIN is not NDC-based."""
    gtin14 = gtin.zfill(14)
    # GS1 US reserves the "03" prefix (UPC number system 3) for drugs: indicator + 03 + NDC10 + check.
    if len(gtin14) != 14 or gtin14[1:3] != "03":
        return None
    return gtin14[3:13]


@dataclass(frozen=True)
class ScannedBarcode:
    """One scanned barcode as understood here; `error` says why it cannot identify a drug."""

    raw: str
    symbology: Symbology
    gtin: str | None = None
    ndc10: str | None = None
    ndc11_candidates: tuple[str, ...] = ()
    lot: str | None = None
    expiry: date | None = None
    error: str | None = None

    @property
    def usable(self) -> bool:
        """True when the barcode identifies an NDC-coded product."""
        return self.error is None and self.ndc10 is not None


@dataclass
class _Fields:
    gtin: str | None = None
    lot: str | None = None
    expiry: date | None = None
    error: str | None = None


def _symbology_for(identifier: str | None, gs1_name: str | None, payload: str) -> Symbology:
    if gs1_name == "GS1_DATAMATRIX":
        return "gs1_datamatrix"
    if gs1_name == "GS1_128":
        return "gs1_128"
    # zxing reports a UPC-A as EAN-13 (]E0) with a leading zero.
    if identifier == "]E0" and len(payload) == 13 and payload.startswith("0"):
        return "upc_a"
    if gs1_name == "ITF_14":
        return "gtin"
    if identifier is None and _is_digits(payload):
        if len(payload) == 12:
            return "upc_a"
        if len(payload) in (8, 13, 14):
            return "gtin"
    return "unknown"


def _from_element_strings(element_strings: Sequence[Any], out: _Fields) -> None:
    for es in element_strings:
        ai = es.ai.ai
        if ai == "01":
            if es.gtin is None:
                out.error = es.gtin_error or f"GTIN {es.value!r} is invalid"
            else:
                out.gtin = es.gtin.as_gtin_14()
        elif ai == "17":
            out.expiry = es.date
        elif ai == "10":
            out.lot = es.value


def _split_identifier(text: str) -> tuple[str | None, str]:
    if len(text) >= 3 and _SYMBOLOGY_ID.fullmatch(text[:3]):
        return text[:3], text[3:]
    return None, text


def _parse_hri(identifier: str | None, payload: str, out: _Fields) -> Symbology:
    try:
        message = GS1Message.parse_hri(payload)
    except (biip.BiipException, ValueError) as exc:
        out.error = f"not a valid GS1 element string: {exc}"
        return "unknown"
    _from_element_strings(message.element_strings, out)
    return _HRI_SYMBOLOGY.get(identifier or "", "unknown")


def _parse_scanned(text: str, out: _Fields) -> Symbology:
    try:
        result = biip.parse(text)
    except (biip.BiipException, ValueError) as exc:
        out.error = f"not a GS1 barcode: {exc}"
        return "unknown"
    sid = result.symbology_identifier
    identifier = sid.value if sid is not None else None
    gs1_name = sid.gs1_symbology.name if sid is not None and sid.gs1_symbology is not None else None
    payload = text[3:] if identifier else text
    symbology = _symbology_for(identifier, gs1_name, payload)
    plain_number = _is_digits(payload) and len(payload) <= 14
    if result.gs1_digital_link_uri is not None:
        _from_element_strings(result.gs1_digital_link_uri.element_strings, out)
    elif identifier is not None and gs1_name is None:
        # A Code 128 or QR code without FNC1 (e.g. the pharmacy's own Rx label) carries no product identity,
        # even when its digits happen to look like a UPC.
        out.error = f"not a GS1 product barcode (symbology identifier {identifier})"
    elif not plain_number:
        if result.gs1_message is not None:
            _from_element_strings(result.gs1_message.element_strings, out)
        else:
            out.error = f"not a valid GS1 message: {result.gs1_message_error}"
    elif gs1_name in _MESSAGE_SYMBOLOGIES:
        out.error = f"a GS1 {symbology} symbol must carry element strings, not a bare number"
    elif result.gtin is not None:
        out.gtin = result.gtin.as_gtin_14()
    else:
        out.error = result.gtin_error or "not a valid GTIN"
    return symbology


def parse_barcode(text: str) -> ScannedBarcode:
    """Parse what a site sends for one scan (zxing raw text, GS1 HRI, UPC-A or GTIN) into a ScannedBarcode."""
    raw = text
    stripped = text.strip(_EDGE_WHITESPACE)
    out = _Fields()
    if not stripped:
        return ScannedBarcode(raw=raw, symbology="unknown", error="empty barcode")
    identifier, payload = _split_identifier(stripped)
    if payload.startswith("("):
        symbology = _parse_hri(identifier, payload, out)
    else:
        symbology = _parse_scanned(stripped, out)
    ndc10 = None
    if out.error is None and out.gtin is None:
        out.error = "barcode carries no GTIN (AI 01)"
    elif out.error is None and out.gtin is not None:
        ndc10 = ndc10_from_gtin(out.gtin)
        if ndc10 is None:
            out.error = f"GTIN {out.gtin} is not an NDC: drug GTINs have 03 after the indicator digit"
    return ScannedBarcode(
        raw=raw,
        symbology=symbology,
        gtin=out.gtin,
        ndc10=ndc10,
        ndc11_candidates=ndc11_candidates(ndc10) if ndc10 else (),
        lot=out.lot,
        expiry=out.expiry,
        error=out.error,
    )


@dataclass(frozen=True)
class ProductCheck:
    """Outcome of comparing the scanned barcodes with the prescribed NDC.

    `detail` is plain JSON: ``expected_ndc11`` and ``matched_ndc11`` (5-4-2 with hyphens, the latter None
    unless a barcode matched), ``expiry`` (ISO date, earliest of the matching barcodes, only when one
    carried AI 17) and ``barcodes``: per scan raw, symbology, gtin, ndc10, ndc11_candidates (formatted),
    lot, expiry, error and matches.
    """

    result: ProductResult
    detail: dict[str, Any]


def _barcode_detail(scan: ScannedBarcode, expected: str) -> dict[str, Any]:
    return {
        "raw": scan.raw,
        "symbology": scan.symbology,
        "gtin": scan.gtin,
        "ndc10": scan.ndc10,
        "ndc11_candidates": [format_ndc11(c) for c in scan.ndc11_candidates],
        "lot": scan.lot,
        "expiry": scan.expiry.isoformat() if scan.expiry else None,
        "error": scan.error,
        "matches": expected in scan.ndc11_candidates,
    }


def check_product(barcodes: Sequence[str], expected_ndc11: str, today: date) -> ProductCheck:
    """Compare scanned barcodes with the expected NDC11.

    Precedence, first that applies wins:

    1. "none": no barcodes were sent.
    2. "mismatch": any barcode with a valid GTIN identifies a different product, either an NDC whose
       candidates do not include the expected NDC11 or a GTIN that is not NDC-based at all. A wrong
       product anywhere in the scan outweighs a right one elsewhere.
    3. "expired": a matching barcode carries an expiry (AI 17) earlier than `today` (expiry day is usable).
    4. "match": at least one barcode matches and none of the above applies.
    5. "unreadable": nothing identified a product (bad check digit, not GS1, garbage); such barcodes are
       ignored when another barcode decides.

    Raises ValueError when `expected_ndc11` is not a valid NDC (that is the caller's bug, not the scan's).
    """
    if isinstance(barcodes, str):
        raise TypeError("barcodes must be a sequence of scans, not one string")
    expected = normalize_ndc(expected_ndc11)
    scans = [parse_barcode(text) for text in barcodes]
    detail: dict[str, Any] = {
        "expected_ndc11": format_ndc11(expected),
        "matched_ndc11": None,
        "barcodes": [_barcode_detail(s, expected) for s in scans],
    }
    if not scans:
        return ProductCheck("none", detail)
    matched = [s for s in scans if s.usable and expected in s.ndc11_candidates]
    # A valid GTIN that is not the expected NDC is a readable, different product.
    wrong = [s for s in scans if s.gtin is not None and expected not in s.ndc11_candidates]
    if wrong:
        return ProductCheck("mismatch", detail)
    if not matched:
        return ProductCheck("unreadable", detail)
    detail["matched_ndc11"] = format_ndc11(expected)
    expiries = [s.expiry for s in matched if s.expiry is not None]
    if expiries:
        detail["expiry"] = min(expiries).isoformat()
    if any(e < today for e in expiries):
        return ProductCheck("expired", detail)
    return ProductCheck("match", detail)
