"""Who is asking, as far as a request can tell: its client's address and scheme behind trusted proxies."""

from __future__ import annotations

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from server.security.origin import client_address, is_https
from server.security.ratelimit import address_key

PROXIES = ("10.0.0.0/8",)


def request(peer: str, **headers: str) -> web.Request:
    return make_mocked_request("POST", "/api/v1/session", headers=headers).clone(remote=peer)


def test_the_client_is_the_nearest_address_a_trusted_proxy_did_not_add() -> None:
    chain = {"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 10.0.0.7"}
    assert client_address(request("10.0.0.5", **chain), PROXIES) == "203.0.113.9"
    # From anyone else the header is the caller's own claim.
    assert client_address(request("192.0.2.4", **chain), PROXIES) == "192.0.2.4"
    assert client_address(request("10.0.0.5"), PROXIES) == "10.0.0.5"
    assert client_address(request("10.0.0.5", **chain), ()) == "10.0.0.5"


def test_https_is_believed_from_a_trusted_proxy_only() -> None:
    said = {"X-Forwarded-Proto": "https"}
    assert is_https(request("10.0.0.5", **said), PROXIES)
    assert not is_https(request("192.0.2.4", **said), PROXIES)
    assert not is_https(request("10.0.0.5", **{"X-Forwarded-Proto": "http"}), PROXIES)


def test_an_ipv6_client_is_counted_by_its_slash_64() -> None:
    assert address_key("2001:db8:1:2::1") == address_key("2001:db8:1:2:ffff::9")
    assert address_key("2001:db8:1:2::1") != address_key("2001:db8:1:3::1")
    assert address_key("192.0.2.4") != address_key("192.0.2.5")
