"""The counted quantity a site sends with a fill. The server holds it to MAX_COUNT; the site's tools
refuse a count out of bounds where it is typed, before a fill is stored and sent only to be refused."""

from __future__ import annotations

import math

MAX_COUNT = 100_000


def count_problem(count: float) -> str | None:
    """Why a technician's count cannot be sent, or None. Zero is refused too: a count is of something
    in the vial (the server takes 0, which no site tool sends)."""
    if not math.isfinite(count) or not 0 < count <= MAX_COUNT:
        return f"The counted quantity must be between 1 and {MAX_COUNT}."
    return None
