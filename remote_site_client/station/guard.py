"""The station's guard: the page is served to its own address only, and changes need the page's token.

- Host: only the address the station serves (127.0.0.1:P, localhost:P, [::1]:P, or the --listen
  address): a foreign name resolving here (DNS rebinding) is refused.
- Origin: when a browser sends one, it must be the page's own.
- CSRF: a token made when the station starts and written into the page's HTML; every call but the
  page's files carries it (the X-CSRF-Token header, or `?csrf=` on a websocket or an <img>).
- Pairing: a client that is not this computer (a tablet on the LAN) first gives the code shown in the
  station's terminal, and then holds a cookie; a few wrong codes make a new one.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Middleware

from remote_site_client.station.routes import Access, Handler, RouteTable

log = logging.getLogger(__name__)

CSRF_HEADER = "X-CSRF-Token"
PAIR_COOKIE = "tp_station_pair"
WRONG_CODES_ALLOWED = 5


def _refuse(status: int, code: str, message: str) -> web.Response:
    return web.json_response({"error": code, "message": message}, status=status)


def is_loopback(address: str | None) -> bool:
    try:
        return address is not None and ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def host_names(port: int, listen: str | None) -> frozenset[str]:
    """The Host header values the station answers: its loopback names and the --listen address."""
    names = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if listen and listen not in ("127.0.0.1", "localhost", "::1"):
        names.add(f"[{listen}]:{port}" if ":" in listen else f"{listen}:{port}")
    return frozenset(n.lower() for n in names)


@dataclass
class Guard:
    """The rules above, with the station's CSRF token and its pairing state."""

    port: int
    listen: str | None = None
    announce: Callable[[str], None] = print
    csrf_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    pair_code: str = ""
    wrong_codes: int = 0
    paired: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.hosts = host_names(self.port, self.listen)

    @property
    def pairing_needed(self) -> bool:
        return self.listen is not None and not is_loopback_name(self.listen)

    def new_pair_code(self) -> str:
        self.pair_code = f"{secrets.randbelow(1_000_000):06d}"
        self.wrong_codes = 0
        self.announce(f"Pairing code for a tablet: {self.pair_code}")
        return self.pair_code

    def pair(self, code: str) -> str | None:
        """A cookie value for a device that gave the right code; None (and a count) otherwise."""
        if self.pair_code and hmac.compare_digest(code.strip().encode(), self.pair_code.encode()):
            cookie = secrets.token_urlsafe(32)
            self.paired.add(cookie)
            self.new_pair_code()  # one code, one device
            return cookie
        self.wrong_codes += 1
        if self.wrong_codes >= WRONG_CODES_ALLOWED:
            self.announce("Too many wrong pairing codes: a new code replaces the old one.")
            self.new_pair_code()
        return None

    def is_paired(self, request: web.Request) -> bool:
        if is_loopback(request.remote) or not self.pairing_needed:
            return True
        cookie = request.cookies.get(PAIR_COOKIE, "")
        return any(hmac.compare_digest(cookie.encode(), p.encode()) for p in self.paired)

    def csrf_ok(self, request: web.Request) -> bool:
        given = request.headers.get(CSRF_HEADER) or request.query.get("csrf") or ""
        return hmac.compare_digest(given.encode(), self.csrf_token.encode())

    def host_ok(self, request: web.Request) -> bool:
        return request.headers.get("Host", "").lower() in self.hosts

    def origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return True
        return origin.lower() == f"http://{request.headers.get('Host', '').lower()}"

    def check(self, request: web.Request, access: Access | None) -> web.Response | None:
        """The refusal for this request, or None when it may go on."""
        if not self.host_ok(request):
            return _refuse(421, "wrong_host", "This station answers only at its own address.")
        if not self.origin_ok(request):
            return _refuse(403, "wrong_origin", "Only the station's own page may call the station.")
        if access is None:
            return _refuse(404, "not_found", "There is nothing here.")
        if access is Access.PAGE:
            return None
        if not self.csrf_ok(request):
            return _refuse(
                403, "csrf", "The page's token is missing or stale: reload the page and try again."
            )
        if access is Access.PAIRED and not self.is_paired(request):
            return _refuse(
                401, "not_paired", "Pair this device first: type the code shown on the station's screen."
            )
        return None


def is_loopback_name(name: str) -> bool:
    return name == "localhost" or is_loopback(name)


def middleware(guard: Guard, table: RouteTable) -> Middleware:
    @web.middleware
    async def guarded(request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route
        info = route.resource.canonical if route.resource is not None else None
        access = table.access(route.method, info) if info is not None else None
        if access is None and request.match_info.http_exception is not None:
            refusal = guard.check(request, Access.PAGE)  # an unknown path: still only at our address
            if refusal is not None:
                return refusal
            return _refuse(request.match_info.http_exception.status, "not_found", "There is nothing here.")
        refusal = guard.check(request, access)
        if refusal is not None:
            log.info("refused %s %s: %s", request.method, request.path, refusal.status)
            return refusal
        response = await handler(request)
        if not response.prepared:
            response.headers.setdefault("Cache-Control", "no-store")
        return response

    return guarded
