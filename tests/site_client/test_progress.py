"""Progress per file on a terminal; silence in a service's log."""

from __future__ import annotations

import io

from remote_site_client.progress import Quiet, progress_board


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_each_file_gets_a_bar_with_bytes_rate_and_time_left() -> None:
    term = FakeTerminal()
    board = progress_board(term)
    bottle = board("stock bottle photo", 200_000)
    pills = board("pills photo", 100_000)
    bottle.update(100_000)
    pills.update(100_000)
    bottle.update(200_000)
    bottle.finish("stored")
    pills.finish("stored")
    text = term.getvalue()
    assert "stock bottle photo" in text and "pills photo" in text
    assert "100.0%" in text and "195.3 KB/195.3 KB" in text and "/s" in text
    assert "\x1b[2F" in text  # redrawn in place


def test_nothing_is_drawn_when_not_a_terminal() -> None:
    out = io.StringIO()
    bar = progress_board(out)("pills photo", 10)
    bar.update(5)
    bar.finish()
    assert isinstance(bar, Quiet) and out.getvalue() == ""
