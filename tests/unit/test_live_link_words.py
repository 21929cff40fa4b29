"""What the site's tools say when the live connection ends: the technician reads it at the counter."""

from __future__ import annotations

from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from remote_site_client.live import _why_lost
from server.realtime.hub import CLOSE_ACCESS_WITHDRAWN, WITHDRAWN_REASON


def closed(code: int, reason: str) -> ConnectionClosedError:
    return ConnectionClosedError(Close(code, reason), None)


def test_access_withdrawn_by_the_server_is_said_with_its_reason_not_as_a_close_code() -> None:
    reason = WITHDRAWN_REASON["device"].decode()
    said = _why_lost(closed(CLOSE_ACCESS_WITHDRAWN, reason))
    assert said == f"the server withdrew this computer's access: {reason}"
    assert "4401" not in said
    assert _why_lost(closed(CLOSE_ACCESS_WITHDRAWN, "")).endswith("access: no reason given")


def test_other_closes_keep_their_words() -> None:
    assert _why_lost(closed(4000, "too slow")) == "too slow for the event stream"
    assert _why_lost(closed(1011, "")) == "connection closed (1011)"
