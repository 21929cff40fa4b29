"""The console's files as the server hands them out: types, the CSP, and no way out of the folder."""

from __future__ import annotations

import re

import pytest

from pharmacist_console.assets import STATIC
from tests.browser.conftest import WorldFactory


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/", "text/html"),
        ("/console/js/main.js", "text/javascript"),
        ("/console/js/workspace.js", "text/javascript"),
        ("/console/console.css", "text/css"),
        ("/console/icon.svg", "image/svg+xml"),
    ],
)
async def test_console_files_are_served_with_their_type_and_the_csp(
    make_world: WorldFactory, path: str, content_type: str
) -> None:
    world = await make_world()
    client = await world.anonymous()
    resp = await client.get(path)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith(content_type)
    csp = resp.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp and "unsafe" not in csp
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(
    "path", ["/console/../assets.py", "/console/%2e%2e/assets.py", "/console/js/", "/console/nope.js"]
)
async def test_nothing_outside_the_static_folder_is_served(make_world: WorldFactory, path: str) -> None:
    world = await make_world()
    client = await world.anonymous()
    assert (await client.get(path)).status == 404


def test_the_console_never_builds_markup_from_strings_or_logs() -> None:
    """Data reaches the page only through textContent and attributes; nothing is written to the console."""
    sources = {p.name: p.read_text() for p in (STATIC / "js").glob("*.js")}
    assert len(sources) >= 10
    for name, text in sources.items():
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write", text), name
        assert not re.search(r"\bconsole\.(log|info|debug|warn|error)\b", text), name
        assert "eval(" not in text and "new Function" not in text, name
