"""Prescriptions from a pharmacy system's CSV export: columns found by their header, each line sent as
a prescription with the header and the line kept verbatim as its source.

A line that cannot be a prescription is reported by its line number and skipped; the good lines are
taken. Importing the same file again takes nothing twice: the server knows each line it has seen.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from server.evidence.text import decode_text

# What each prescription field is called in exports, lowercased, with every run of other characters
# (spaces, dashes, dots, "#") an underscore.
HEADER_NAMES: dict[str, tuple[str, ...]] = {
    "rx_number": ("rx_number", "rx", "rx_no", "rx_num", "prescription_number", "script_number"),
    "patient_name": ("patient_name", "patient", "name"),
    "patient_dob": ("patient_dob", "dob", "date_of_birth", "birth_date", "birthdate"),
    "prescriber": ("prescriber", "prescriber_name", "doctor", "physician"),
    "drug": ("drug", "drug_name", "medication", "product"),
    "strength": ("strength",),
    "dosage_form": ("dosage_form", "form"),
    "ndc": ("ndc", "ndc11", "ndc_code", "expected_ndc"),
    "quantity": ("quantity", "qty", "quantity_prescribed"),
    "days_supply": ("days_supply", "days", "day_supply"),
    "directions": ("directions", "sig", "sig_text", "instructions"),
    "dea_schedule": ("dea_schedule", "schedule"),
    "fill_type": ("fill_type", "type"),
    "refills_authorized": ("refills_authorized", "refills", "number_of_refills"),
}
REQUIRED = tuple(
    f for f in HEADER_NAMES if f not in ("days_supply", "dea_schedule", "fill_type", "refills_authorized")
)
NUMBERS = {"quantity": float, "days_supply": int, "refills_authorized": int}
DATE_FORMATS = ("%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y", "%Y%m%d")


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, or its header lacks a needed column)."""


@dataclass(frozen=True)
class Line:
    """One data line of the file: its first line number, the prescription body, or why it is not one."""

    number: int
    body: dict[str, Any] | None
    problem: str | None = None


@dataclass(frozen=True)
class Export:
    """The file's data lines, and the encoding its text was read in (server.evidence.text)."""

    lines: list[Line]
    encoding: str


def _key(header: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", header.strip().lower()).strip("_")


def column_map(header: list[str]) -> dict[str, int]:
    """Field -> column index; ImportFileError naming the columns that are missing."""
    keys = [_key(h) for h in header]
    found: dict[str, int] = {}
    for field, names in HEADER_NAMES.items():
        index = next((keys.index(n) for n in names if n in keys), None)
        if index is not None:
            found[field] = index
    missing = [f for f in REQUIRED if f not in found]
    if missing:
        raise ImportFileError(
            "The file's first line must name its columns; none is recognised as: "
            + ", ".join(f.replace("_", " ") for f in missing)
            + "."
        )
    return found


def _date(text: str) -> str:
    for fmt in DATE_FORMATS:
        try:
            return dt.datetime.strptime(text, fmt).date().isoformat()
        except ValueError:
            continue
    raise ValueError(f"the date of birth {text!r} is not a date like 1950-04-30 or 04/30/1950")


def _value(field: str, text: str) -> Any:
    if field == "patient_dob":
        return _date(text)
    if field in NUMBERS:
        try:
            return NUMBERS[field](text.replace(",", ""))
        except ValueError:
            raise ValueError(f"{field.replace('_', ' ')} {text!r} is not a number") from None
    if field == "fill_type":
        return "refill" if text.lower().startswith("r") else "new"
    return text


def _records(text: str) -> Iterator[tuple[int, list[str], str]]:
    """(first line number, fields, the line's text as written) for each record of the CSV text."""
    raw_lines = text.splitlines(keepends=True)
    reader = csv.reader(io.StringIO(text))
    start = 1
    for row in reader:
        end = reader.line_num
        yield start, row, "".join(raw_lines[start - 1 : end]).rstrip("\r\n")
        start = end + 1


def read_export(path: Path) -> Export:
    """Every data line of the export, each as a prescription body or with what is wrong with it. UTF-8,
    or Windows-1252 as a Windows program exports CSV (an accented name would otherwise refuse the file)."""
    try:
        text, encoding = decode_text(path.read_bytes())
    except OSError as exc:
        raise ImportFileError(f"{path} cannot be read: {exc.strerror}.") from exc
    records = _records(text)
    first = next(records, None)
    if first is None:
        raise ImportFileError(f"{path} is empty.")
    _, header, header_text = first
    columns = column_map(header)
    lines = []
    for number, row, raw in records:
        if not any(cell.strip() for cell in row):
            continue
        body: dict[str, Any] = {"source": f"{header_text}\n{raw}"}
        problems = []
        for field, index in columns.items():
            cell = row[index].strip() if index < len(row) else ""
            if not cell:
                if field in REQUIRED:
                    problems.append(f"{field.replace('_', ' ')} is empty")
                continue
            try:
                body[field] = _value(field, cell)
            except ValueError as exc:
                problems.append(str(exc))
        lines.append(Line(number, None, "; ".join(problems)) if problems else Line(number, body))
    return Export(lines, encoding)
