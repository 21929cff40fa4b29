"""What the reference says a product is, and how two products or an entry compare. Pure: no I/O.

Mismatch classes, from the scanned package's product against the prescribed one:

- ``same_product_other_package``: the same product (labeler and product code), another package size.
- ``generic_equivalent``: another product with the same active ingredients at the same strengths in
  the same dosage form (another labeler's generic, or the brand); forms that differ only in coating
  ("TABLET" and "TABLET, FILM COATED") are one form, release forms are not.
- ``other_dosage_form``: the same active ingredients in another dosage form (at whatever strength).
- ``other_strength``: the same active ingredients and form at another strength.
- ``other_drug``: other active ingredients.
- ``unknown_ndc``: the scanned NDC is not in the reference; ``unclassified``: the prescribed one is not.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from server.evidence.barcodes import format_ndc11

# Worst first: a barcode set's class is its worst barcode's.
MISMATCH_CLASSES = (
    "other_drug",
    "unknown_ndc",
    "not_an_ndc",
    "unclassified",
    "other_dosage_form",
    "other_strength",
    "generic_equivalent",
    "same_product_other_package",
)
_COATINGS = {"FILM COATED", "COATED", "SUGAR COATED"}
_WORDS = re.compile(r"[a-z0-9]+")
_NUMBER_UNIT = re.compile(r"(\d+(?:\.\d+)?)\s*([a-zA-Zµ%\[\]']+)?")
# Units as entered and as the files write them (the part before "/"), one spelling each.
_UNITS = {
    "mg": "mg",
    "mcg": "mcg",
    "ug": "mcg",
    "µg": "mcg",
    "g": "g",
    "gm": "g",
    "meq": "meq",
    "ml": "ml",
    "%": "%",
    "unit": "unit",
    "units": "unit",
    "iu": "unit",
    "[iu]": "unit",
    "[usp'u]": "unit",
}
# Entered abbreviations of the words the files use for a dosage form.
_FORM_WORDS = {
    "tab": "tablet",
    "tabs": "tablet",
    "tablets": "tablet",
    "cap": "capsule",
    "caps": "capsule",
    "capsules": "capsule",
    "soln": "solution",
    "sol": "solution",
    "susp": "suspension",
    "inj": "injection",
    "oint": "ointment",
    "crm": "cream",
    "supp": "suppository",
}
_NOT_FORMS = {"for", "release", "extended", "delayed", "orally", "with", "in", "and"}
# A release qualifier of a form and the words an entry may say it with.
_RELEASE_WORDS = {
    "EXTENDED RELEASE": {"extended", "er", "xr", "xl", "sr", "cr", "la"},
    "DELAYED RELEASE": {"delayed", "dr", "ec", "enteric"},
    "ORALLY DISINTEGRATING": {"odt", "disintegrating", "orally"},
    "CHEWABLE": {"chewable", "chew"},
}


def _split(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(";")] if value else []


def _decimal(text: str) -> Decimal | None:
    try:
        return Decimal(text).normalize()
    except InvalidOperation:
        return None


def _unit(text: str) -> str:
    head = text.split("/", 1)[0].strip().lower()
    return _UNITS.get(head, head)


@dataclass(frozen=True)
class Ingredient:
    substance: str
    strength: Decimal | None
    unit: str


def ingredients(product: Any) -> tuple[Ingredient, ...]:
    """A product's active ingredients, sorted, with their strengths as numbers and units."""
    names = _split(product.substance_name)
    numerators = _split(product.strength_numerator)
    units = _split(product.strength_unit)
    out = []
    for i, name in enumerate(names):
        number = _decimal(numerators[i]) if i < len(numerators) else None
        unit = units[i] if i < len(units) else ""
        out.append(Ingredient(name.upper(), number, unit.replace(" ", "").lower()))
    return tuple(sorted(out, key=lambda x: x.substance))


def strength_text(product: Any) -> str | None:
    """The strength as a label says it: "500 mg", "325 mg; 5 mg", "10 mg/5mL"."""
    numerators, units = _split(product.strength_numerator), _split(product.strength_unit)
    if not numerators:
        return None
    parts = []
    for i, n in enumerate(numerators):
        unit = units[i] if i < len(units) else ""
        unit = unit[:-2] if unit.endswith("/1") else unit
        parts.append(f"{n} {unit}".strip())
    return "; ".join(parts)


def base_form(form: str | None) -> str:
    """The dosage form without its coating: "TABLET, FILM COATED" is a "TABLET"."""
    parts = [p.strip().upper() for p in (form or "").split(",")]
    return ", ".join(p for p in parts if p and p not in _COATINGS)


def is_discontinued(end: dt.date | None, today: dt.date) -> bool:
    """The end marketing date is past (the last day of marketing is still a marketed day)."""
    return end is not None and end < today


def describe(package: Any, product: Any, today: dt.date) -> dict[str, Any]:
    """What the reference says a package is, as plain JSON (the product check's detail, intake)."""
    end = min((d for d in (package.end_marketing_date, product.end_marketing_date) if d), default=None)
    excluded = next((f for f in (package.exclude_flag, product.exclude_flag) if f and f != "N"), None)
    return {
        "ndc11": format_ndc11(package.ndc11),
        "package_code": package.package_code,
        "product_ndc": product.product_ndc,
        "proprietary_name": product.proprietary_name,
        "nonproprietary_name": product.nonproprietary_name,
        "strength": strength_text(product),
        "dosage_form": product.dosage_form,
        "route": product.route,
        "labeler": product.labeler,
        "package_description": package.description,
        "product_type": product.product_type,
        "marketing_category": product.marketing_category,
        "dea_schedule": product.dea_schedule,
        "end_marketing_date": end.isoformat() if end else None,
        "discontinued": is_discontinued(end, today),
        "exclude_flag": excluded,
    }


def classify(expected: Any, scanned: Any) -> str:
    """The mismatch class of a scanned product against the prescribed one (both drug_products rows)."""
    if expected.product_id == scanned.product_id or expected.product_ndc == scanned.product_ndc:
        return "same_product_other_package"
    want, got = ingredients(expected), ingredients(scanned)
    if not want or [i.substance for i in want] != [i.substance for i in got]:
        return "other_drug"
    if base_form(expected.dosage_form) != base_form(scanned.dosage_form):
        return "other_dosage_form"
    if [(i.strength, i.unit) for i in want] != [(i.strength, i.unit) for i in got]:
        return "other_strength"
    return "generic_equivalent"


def worst(classes: list[str]) -> str | None:
    return min(classes, key=MISMATCH_CLASSES.index) if classes else None


# -- an entered prescription against the reference --------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """An entered field the reference contradicts: refused at entry."""

    field: str
    entered: str
    reference: str


def _words(text: str) -> set[str]:
    return {_FORM_WORDS.get(w, w) for w in _WORDS.findall(text.lower())}


def _entered_strengths(text: str) -> list[tuple[Decimal, str | None]]:
    out = []
    for number, unit in _NUMBER_UNIT.findall(text):
        value = _decimal(number)
        if value is not None:
            out.append((value, _UNITS.get(unit.lower()) if unit else None))
    return out


def compare_drug(entered: str, product: Any) -> bool:
    """The entered name names the product: an active ingredient's first word, or the proprietary name's."""
    words = _words(entered)
    names = [i.substance for i in ingredients(product)] + [product.proprietary_name or ""]
    firsts = {w for n in names if (w := next(iter(_WORDS.findall(n.lower())), None))}
    return not firsts or bool(words & firsts)


def compare_strength(entered: str, product: Any) -> bool:
    """The entered strengths are the reference's numbers, with the same units wherever both say one."""
    reference = sorted(
        (
            (i.strength, _unit(i.unit) if i.unit else None)
            for i in ingredients(product)
            if i.strength is not None
        ),
        key=lambda x: x[0],
    )
    if not reference:
        return True
    typed = sorted(_entered_strengths(entered), key=lambda x: x[0])
    if [n for n, _ in typed] != [n for n, _ in reference]:
        return False
    known = set(_UNITS.values())
    return all(
        a == b or a not in known or b not in known for (_, a), (_, b) in zip(typed, reference, strict=True)
    )


def compare_form(entered: str, product: Any) -> tuple[bool, str | None]:
    """(the entered form is the reference's kind of form, the release qualifier it does not say)."""
    form = base_form(product.dosage_form)
    if not form:
        return True, None
    qualifiers = [p.strip() for p in form.split(",")][1:]
    words = _words(entered)
    # Any word of the form counts ("suspension" for "POWDER, FOR SUSPENSION"), not its qualifiers'.
    form_words = set(_WORDS.findall(form.lower())) - _NOT_FORMS
    if not form_words & words:
        return False, None
    for q in qualifiers:
        if q in _RELEASE_WORDS and not _RELEASE_WORDS[q] & words:
            return True, q
    return True, None
