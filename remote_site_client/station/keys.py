"""The station app's typed keys: what a handler (or a module adding routes) reaches from the app."""

from __future__ import annotations

from aiohttp import web

from remote_site_client.station.guard import Guard
from remote_site_client.station.hub import PageHub

# Who may call each route: every route is declared (deny by default); defined in routes.py.
from remote_site_client.station.routes import ROUTES as ROUTES
from remote_site_client.station.runtime import Station

# The running station: its SiteApi (`.api`), SiteConfig (`.config`), Outbox (`.outbox`), uplink state.
STATION = web.AppKey("station", Station)
# The pages' websockets: `await app[HUB].broadcast({...})` reaches every open page.
HUB = web.AppKey("hub", PageHub)
# Host/Origin/CSRF/pairing rules, and the CSRF token the page gets in its HTML.
GUARD = web.AppKey("guard", Guard)
