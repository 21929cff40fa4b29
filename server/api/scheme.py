"""Whether a request reached the server over HTTPS: its own TLS, or a trusted proxy's word for it."""

from __future__ import annotations

import functools
import ipaddress

from aiohttp import web

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def request_is_https(request: web.Request, trusted_proxies: tuple[str, ...]) -> bool:
    """True over the server's own TLS, or when a proxy in `trusted_proxies` (addresses or networks)
    says in X-Forwarded-Proto that its client came over https. Anyone else's header is ignored: a
    client could send it over plain http."""
    if request.secure:
        return True
    forwarded = request.headers.get("X-Forwarded-Proto")
    if not forwarded or not trusted_proxies or not _is_trusted(request.remote, trusted_proxies):
        return False
    # A proxy that appends to the header writes last what it saw itself.
    return forwarded.rsplit(",", 1)[-1].strip().lower() == "https"


@functools.lru_cache(maxsize=8)
def trusted_networks(trusted_proxies: tuple[str, ...]) -> tuple[Network, ...]:
    """The proxies as networks (an address is a network of one); ValueError names a malformed entry."""
    networks: list[Network] = []
    for entry in trusted_proxies:
        try:
            networks.append(ipaddress.ip_network(entry.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"TP_TRUSTED_PROXIES: {entry!r} is neither an IP address nor a network such as 10.0.0.0/8"
            ) from None
    return tuple(networks)


def _is_trusted(remote: str | None, trusted_proxies: tuple[str, ...]) -> bool:
    if remote is None:
        return False
    try:
        address = ipaddress.ip_address(remote)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # an IPv4 proxy seen through a dual-stack socket
    return any(address in network for network in trusted_networks(trusted_proxies))
