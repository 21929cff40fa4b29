"""Fixtures shared with the API tests (the test world) and the console tests (Chromium)."""

from __future__ import annotations

from tests.api.conftest import world
from tests.browser.conftest import browser, make_world

__all__ = ["browser", "make_world", "world"]
