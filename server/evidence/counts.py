"""The counted quantity a site sends with a fill. The server holds it to MAX_COUNT; the site's tools
refuse a count out of bounds where it is typed, before a fill is stored and sent only to be refused."""

from __future__ import annotations

import contextlib
import math

MAX_COUNT = 100_000


def count_problem(count: float) -> str | None:
    """Why a technician's count cannot be sent, or None. Zero is refused too: a count is of something
    in the vial (the server takes 0, which no site tool sends)."""
    if not math.isfinite(count) or not 0 < count <= MAX_COUNT:
        return (
            f"The counted quantity must be more than 0 and at most {MAX_COUNT} "
            "(e.g. 60, or 2.5 for millilitres)."
        )
    return None


def read_count(typed: object) -> float:
    """The count a technician typed (text, or a number from JSON), else ValueError saying why it cannot
    be sent: the one rule for `tp-site submit --count` and the station's Save."""
    count = None
    # JSON's true is not a count, though Python would read it as 1.
    if isinstance(typed, int | float | str) and not isinstance(typed, bool):
        with contextlib.suppress(ValueError):
            count = float(typed)
    if count is None:
        # What was typed, when short, so that a letter O for a zero shows.
        shown = f", not {typed!r}" if isinstance(typed, str) and 0 < len(typed) <= 20 else ""
        raise ValueError(f"The counted quantity must be a number, e.g. 60{shown}.")
    if problem := count_problem(count):
        raise ValueError(problem)
    return count
