"""The server's heap after start: what it holds then is kept out of the collector's full passes.

A full (oldest-generation) collection walks every object the process holds, and the loop waits for it:
with the modules, the schema, SQLAlchemy's compiled statements and the rules loaded, that walk paused
every request for 50-90 ms a few times a minute under load, which is what the slowest requests of a
busy queue were made of (docs/decisions/0025-request-paths-under-a-year-of-history.md). Those objects
live as long as the process; gc.freeze() moves them to a generation no collection walks, so later full
passes walk only what was made since. Only `tp-server serve` does this: a process that builds many
apps (the tests) would keep each one's garbage.
"""

from __future__ import annotations

import gc

from aiohttp import web


async def freeze_after_start(app: web.Application) -> None:
    """An on_startup step, after the app's resources are open: collect once, then freeze the rest."""
    gc.collect()
    gc.freeze()
