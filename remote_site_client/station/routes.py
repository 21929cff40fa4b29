"""The station's URL space, and who may call each route.

A route is added through `add_routes` with its access; the guard refuses any route without one (deny by
default). A module that brings its own routes (calls) adds them the same way from the app factory.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(enum.Enum):
    """Who may call a route. Every route checks the Host header and, when sent, the Origin."""

    # The page's HTML and static files: any client that reaches the address (it shows pairing).
    PAGE = "page"
    # Pairing a LAN tablet: the CSRF token, no pairing yet.
    PAIRING = "pairing"
    # Everything else: the CSRF token (header, or `?csrf=` on a websocket or an <img>), and a paired
    # device when the client is not on this computer.
    PAIRED = "paired"


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access
    summary: str


class RouteTable:
    """Each route's access, looked up by the matched route's method and path."""

    def __init__(self) -> None:
        self.routes: list[Route] = []
        self._access: dict[tuple[str, str], Access] = {}

    def access(self, method: str, canonical: str) -> Access | None:
        """The access of the route matched by `method` and its resource's canonical path."""
        return self._access.get((method, canonical))

    def add(self, app: web.Application, routes: Iterable[Route]) -> None:
        for route in routes:
            added = app.router.add_route(route.method, route.path, route.handler)
            path = added.resource.canonical if added.resource is not None else route.path
            self._access[(route.method, path)] = route.access
            self.routes.append(route)


# Who may call each route: every route is declared here (deny by default).
ROUTES = web.AppKey("routes", RouteTable)


def add_routes(app: web.Application, routes: Iterable[Route]) -> None:
    """Adds routes to the station's app with their access (the one way a route is added)."""
    app[ROUTES].add(app, routes)
