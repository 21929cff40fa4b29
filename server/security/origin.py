"""Where a request comes from: the page that sent it (Origin), the client's address and its scheme.

Behind a reverse proxy the connection comes from the proxy; the client's address and scheme are then
what the proxy forwarded, believed only from a proxy the operator named (`trusted_proxies`): anyone
else could write those headers to dodge the sign-in limits or claim HTTPS.
"""

from __future__ import annotations

import functools
import ipaddress
from urllib.parse import urlsplit

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def origin_allowed(request: web.Request, allowed_origins: tuple[str, ...]) -> bool:
    """The request's Origin is the server's own or one the operator allowed; False without an Origin.

    The one rule against cross-site requests: a websocket opened with a session cookie, and every
    request that changes something and carries an Origin (login CSRF, cross-site websocket hijacking).
    """
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    if origin in allowed_origins:
        return True
    parts = urlsplit(origin)
    return parts.netloc == request.host and parts.scheme in ("http", "https")


@functools.cache
def parse_networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    """Addresses or networks (`10.0.0.5`, `172.16.0.0/12`), as Config checked them."""
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in entries)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped  # an IPv4 proxy seen through a dual-stack socket
    return ip


def _trusted(address: str | None, trusted_proxies: tuple[str, ...]) -> bool:
    ip = _ip(address) if address else None
    return ip is not None and any(ip in net for net in parse_networks(trusted_proxies))


def from_trusted_proxy(request: web.Request, trusted_proxies: tuple[str, ...]) -> bool:
    return bool(trusted_proxies) and _trusted(request.remote, trusted_proxies)


def client_address(request: web.Request, trusted_proxies: tuple[str, ...]) -> str:
    """The client's address: the connection's peer, or behind trusted proxies the nearest address in
    X-Forwarded-For that is not one of them (the entries further left are the client's own words)."""
    peer = request.remote or "unknown"
    if not from_trusted_proxy(request, trusted_proxies):
        return peer
    forwarded = [hop.strip() for hop in request.headers.get("X-Forwarded-For", "").split(",") if hop.strip()]
    for hop in reversed(forwarded):
        if _ip(hop) is None:
            break
        if not _trusted(hop, trusted_proxies):
            return hop
    return peer


def is_https(request: web.Request, trusted_proxies: tuple[str, ...]) -> bool:
    """The client reached us over HTTPS: directly, or to a trusted proxy that says so."""
    if request.secure:
        return True
    if not from_trusted_proxy(request, trusted_proxies):
        return False
    # Where proxies append, the last value is the one the nearest (trusted) proxy wrote.
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[-1].strip().lower()
    return proto == "https"
