"""The station's app factory: the guard, the routes, the station's work opened and closed in one place."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from remote_site_client.station import errors, guard, handlers
from remote_site_client.station.hub import PageHub
from remote_site_client.station.keys import GUARD, HUB, ROUTES, STATION
from remote_site_client.station.routes import Access, Route, RouteTable, add_routes
from remote_site_client.station.runtime import Station

PAGE, PAIRING, PAIRED = Access.PAGE, Access.PAIRING, Access.PAIRED
FILL = r"/api/fills/{fill_id:[0-9a-fA-F-]{32,36}}"
CAPTURE = r"/api/captures/{capture_id:[0-9a-f]{16}}"

ROUTES_TABLE: tuple[Route, ...] = (
    Route("GET", "/", handlers.index, PAGE, "The technician's page (carries the CSRF token)"),
    Route("GET", "/static/{path:.+}", handlers.static, PAGE, "The page's scripts, styles and sounds"),
    Route("POST", "/api/pair", handlers.pair, PAIRING, "Pair a LAN device with the code on the station"),
    Route("GET", "/api/state", handlers.state, PAIRED, "Enrolled or not, who, views required, uplink"),
    Route("POST", "/api/enroll", handlers.enroll, PAIRED, "Enrol this station with a device token"),
    Route("GET", "/api/events", handlers.events, PAIRED, "The page's live feed (websocket, ?csrf=)"),
    Route("GET", "/api/prescriptions", handlers.prescriptions, PAIRED, "The site's prescriptions"),
    Route("POST", "/api/captures", handlers.add_capture, PAIRED, "A captured photo or video, checked"),
    Route("GET", CAPTURE, handlers.capture_file, PAIRED, "A captured file (?csrf= for an <img>)"),
    Route("DELETE", CAPTURE, handlers.drop_capture, PAIRED, "Drop a capture (retake)"),
    Route("POST", "/api/fills", handlers.save, PAIRED, "Save a fill into the outbox (durable)"),
    Route("GET", "/api/fills", handlers.fills, PAIRED, "The work list: the site's fills, newest first"),
    Route("GET", FILL, handlers.fill_detail, PAIRED, "One fill, with its decision or refusal"),
    Route("POST", FILL + "/resubmission", handlers.resubmission, PAIRED, "A rejected fill's photos to keep"),
    Route("POST", FILL + "/fix", handlers.fix, PAIRED, "Fix a refused fill, or send it again as it is"),
    Route("POST", FILL + "/discard", handlers.discard, PAIRED, "Discard a fill not delivered (audited)"),
    Route("POST", FILL + "/hand-out", handlers.hand_out, PAIRED, "Hand an approved fill to the patient"),
    Route(
        "POST", FILL + "/declined", handlers.decline_counselling, PAIRED, "The patient declined counselling"
    ),
    Route(
        "GET", r"/api/media/{media_id:\d+}", handlers.fill_media, PAIRED, "A stored photo (?csrf= for <img>)"
    ),
)


@dataclass(frozen=True)
class StationSettings:
    """What `tp-site station` is started with."""

    config_path: Path
    port: int
    listen: str | None = None
    data_dir: Path | None = None


def _optional_routes(app: web.Application) -> None:
    """Routes other modules bring, when they are installed: calls from the page."""
    if importlib.util.find_spec("remote_site_client.station.calls") is None:
        return
    calls = importlib.import_module("remote_site_client.station.calls")
    calls.add_call_routes(app)


def create_app(settings: StationSettings, *, announce: Callable[[str], None] = print) -> web.Application:
    table = RouteTable()
    the_guard = guard.Guard(settings.port, settings.listen, announce=announce)
    app = web.Application(
        middlewares=[guard.middleware(the_guard, table), errors.middleware()],
        client_max_size=1024**2,
    )
    hub = PageHub()
    station = Station(settings.config_path, hub, data_dir=settings.data_dir)
    app[ROUTES] = table
    app[GUARD] = the_guard
    app[HUB] = hub
    app[STATION] = station
    add_routes(app, ROUTES_TABLE)
    _optional_routes(app)

    async def work(app: web.Application) -> AsyncIterator[None]:
        await station.start()
        if the_guard.pairing_needed:
            the_guard.new_pair_code()
        yield
        await station.close()

    async def close_pages(app: web.Application) -> None:
        # Before the server waits for its open requests: a page's websocket would hold the stop up.
        await hub.close()

    app.on_shutdown.append(close_pages)
    app.cleanup_ctx.append(work)
    return app
