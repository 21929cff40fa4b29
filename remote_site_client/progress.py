"""A progress bar per uploaded file (bytes, rate, time left) on a terminal; nothing when not a terminal."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Protocol, TextIO


class FileProgress(Protocol):
    def update(self, done: int) -> None: ...

    def finish(self, note: str = "") -> None: ...


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def human_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.0f}s"
    if s < 3600:
        return f"{s // 60:.0f}m{s % 60:02.0f}s"
    return f"{s // 3600:.0f}h{(s % 3600) // 60:02.0f}m"


ProgressFactory = Callable[[str, int], FileProgress]


class Quiet:
    def update(self, done: int) -> None:
        pass

    def finish(self, note: str = "") -> None:
        pass


class Bar:
    """One file's line: bytes, percent, rate and time left."""

    WIDTH = 24

    def __init__(self, board: Board, label: str, total: int) -> None:
        self.board = board
        self.label = label[:24]
        self.total = max(1, total)
        self.started = time.monotonic()
        self.start_done: int | None = None
        self.done = 0
        self.note = ""

    def line(self, now: float) -> str:
        fraction = min(1.0, self.done / self.total)
        filled = int(fraction * self.WIDTH)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        elapsed = max(1e-6, now - self.started)
        rate = (self.done - (self.start_done or 0)) / elapsed
        left = (self.total - self.done) / rate if rate > 0 else None
        eta = self.note or ("ETA " + (human_seconds(left) if left is not None else "--"))
        return (
            f"{self.label:<24} [{bar}] {fraction * 100:5.1f}% "
            f"{human_bytes(self.done)}/{human_bytes(self.total)} {human_bytes(rate)}/s {eta}"
        )

    def update(self, done: int) -> None:
        if self.start_done is None:
            self.start_done = done
            self.started = time.monotonic()
        self.done = done
        self.board.draw(force=done >= self.total)

    def finish(self, note: str = "") -> None:
        self.note = note or "done"
        self.board.draw(force=True)


class Board:
    """The bars of files uploading side by side, redrawn in place at most ten times a second."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bars: list[Bar] = []
        self.lines_drawn = 0
        self.drawn_at = 0.0

    def add(self, label: str, total: int) -> FileProgress:
        bar = Bar(self, label, total)
        self.bars.append(bar)
        return bar

    def draw(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.drawn_at < 0.1:
            return
        self.drawn_at = now
        up = f"\x1b[{self.lines_drawn}F" if self.lines_drawn else ""
        body = "".join(f"{bar.line(now)}\x1b[K\n" for bar in self.bars)
        self.stream.write(up + body)
        self.stream.flush()
        self.lines_drawn = len(self.bars)


def progress_board(stream: TextIO | None = None) -> ProgressFactory:
    """Bars on a terminal, nothing otherwise (a service's log, a pipe)."""
    out = stream if stream is not None else sys.stderr
    if out.isatty():
        return Board(out).add
    return lambda label, total: Quiet()
