"""Exponential backoff with jitter, so sites whose link came back do not all retry at the same instant."""

from __future__ import annotations

import random


def delay(attempt: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds to wait before try number `attempt` + 1: half fixed, half random, doubling up to `cap`."""
    r: random.Random = rng or random.Random()
    ceiling = min(cap, base * float(1 << min(max(attempt, 0), 30)))
    return ceiling / 2 + r.uniform(0, ceiling / 2)
