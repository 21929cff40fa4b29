"""The station's guard: Host, Origin, CSRF and, for a device on the LAN, pairing with the code shown."""

from __future__ import annotations

from unittest import mock

from aiohttp.test_utils import make_mocked_request

from remote_site_client.station.guard import PAIR_COOKIE, WRONG_CODES_ALLOWED, Guard
from remote_site_client.station.routes import Access


def _request(guard: Guard, *, host: str, remote: str, cookie: str = "", origin: str | None = None) -> object:
    headers = {"Host": host, "X-CSRF-Token": guard.csrf_token}
    if cookie:
        headers["Cookie"] = f"{PAIR_COOKIE}={cookie}"
    if origin:
        headers["Origin"] = origin
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        (remote, 40000) if name == "peername" else default
    )
    return make_mocked_request("GET", "/api/state", headers=headers, transport=transport)


def test_a_lan_tablet_pairs_with_the_code_shown_once_and_then_holds_a_cookie() -> None:
    shown: list[str] = []
    guard = Guard(8765, "192.168.1.20", announce=shown.append)
    code = guard.new_pair_code()
    assert shown == [f"Pairing code for a tablet: {code}"]
    tablet = _request(guard, host="192.168.1.20:8765", remote="192.168.1.31")
    refusal = guard.check(tablet, Access.PAIRED)  # type: ignore[arg-type]
    assert refusal is not None and refusal.status == 401
    assert guard.check(tablet, Access.PAIRING) is None  # type: ignore[arg-type]
    assert guard.check(tablet, Access.PAGE) is None  # type: ignore[arg-type]

    cookie = guard.pair(code)
    assert cookie
    assert guard.pair(code) is None  # one code, one device: a new one is shown
    assert guard.pair_code != code
    paired = _request(guard, host="192.168.1.20:8765", remote="192.168.1.31", cookie=cookie)
    assert guard.check(paired, Access.PAIRED) is None  # type: ignore[arg-type]
    forged = _request(guard, host="192.168.1.20:8765", remote="192.168.1.31", cookie="x" * 43)
    assert guard.check(forged, Access.PAIRED) is not None  # type: ignore[arg-type]
    # The station's own computer needs no pairing.
    local = _request(guard, host="127.0.0.1:8765", remote="127.0.0.1")
    assert guard.check(local, Access.PAIRED) is None  # type: ignore[arg-type]


def test_wrong_codes_replace_the_code() -> None:
    guard = Guard(8765, "192.168.1.20", announce=lambda _: None)
    code = guard.new_pair_code()
    for _ in range(WRONG_CODES_ALLOWED):
        assert guard.pair("000000" if code != "000000" else "111111") is None
    assert guard.pair_code != code
    assert guard.pair(code) is None


def test_host_and_origin_must_be_the_stations_own() -> None:
    guard = Guard(8765, "192.168.1.20", announce=lambda _: None)
    for host in ("evil.example:8765", "192.168.1.20:9999", "192.168.1.21:8765"):
        refusal = guard.check(_request(guard, host=host, remote="127.0.0.1"), Access.PAGE)  # type: ignore[arg-type]
        assert refusal is not None and refusal.status == 421, host
    cross = _request(guard, host="localhost:8765", remote="127.0.0.1", origin="http://evil.example")
    refusal = guard.check(cross, Access.PAGE)  # type: ignore[arg-type]
    assert refusal is not None and refusal.status == 403
    own = _request(guard, host="localhost:8765", remote="127.0.0.1", origin="http://localhost:8765")
    assert guard.check(own, Access.PAIRED) is None  # type: ignore[arg-type]
    assert guard.check(own, None) is not None  # type: ignore[arg-type]  # a route nobody declared
