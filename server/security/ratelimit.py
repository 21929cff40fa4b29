"""Login attempt limiting: a sliding window of failures per account and per client address."""

from __future__ import annotations

import time
from collections import defaultdict, deque


class LoginLimiter:
    def __init__(self, attempts: int, window_seconds: float) -> None:
        self.attempts = attempts
        self.window = window_seconds
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures[key]
        while q and q[0] <= now - self.window:
            q.popleft()
        return q

    def retry_after(self, keys: list[str]) -> float:
        """Seconds until another attempt is allowed for any of keys; 0 when allowed now."""
        now = time.monotonic()
        waits = [q[0] + self.window - now for k in keys if len(q := self._recent(k, now)) >= self.attempts]
        return max(waits, default=0.0)

    def failed(self, keys: list[str]) -> None:
        now = time.monotonic()
        for k in keys:
            self._recent(k, now).append(now)

    def succeeded(self, keys: list[str]) -> None:
        for k in keys:
            self._failures.pop(k, None)
