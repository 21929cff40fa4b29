"""The station's handlers: parse, call one function of the station, shape the answer."""

from __future__ import annotations

import importlib.util
import json
import uuid
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from remote_site_client.api import ApiError, TokenRefused, network_error
from remote_site_client.commands.submit import DEFAULT_PRIORITY, PRIORITIES
from remote_site_client.config import ConfigError, server_address
from remote_site_client.outbox import Outbox
from remote_site_client.station.captures import Capture, Captures
from remote_site_client.station.errors import StationError, not_enrolled
from remote_site_client.station.guard import PAIR_COOKIE
from remote_site_client.station.keys import GUARD, HUB, STATION
from remote_site_client.station.runtime import Station
from remote_site_client.station.saving import discard_entry, fix_entry, prepare_resubmission, save_fill
from remote_site_client.station.worklist import fill_view, work_list
from server.evidence.kinds import KIND_NAMES

STATIC = Path(__file__).parent / "static"
MAX_JSON = 64 * 1024
CSRF_MARK = "__STATION_CSRF_TOKEN__"
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' blob: data:; media-src 'self' blob: mediastream:; "
        "connect-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Permissions-Policy": "camera=(self), microphone=(self)",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".wav": "audio/wav",
}
MEDIA_TYPES = {".jpg": "image/jpeg", ".png": "image/png", ".webp": "image/webp", ".mp4": "video/mp4",
               ".webm": "video/webm"}  # fmt: skip


def _station(request: web.Request) -> Station:
    return request.app[STATION]


def _captures(request: web.Request) -> Captures:
    captures = _station(request).captures
    if captures is None:
        raise not_enrolled()
    return captures


def _outbox(request: web.Request) -> Outbox:
    outbox = _station(request).outbox
    if outbox is None:
        raise not_enrolled()
    return outbox


async def _json(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise StationError(415, "not_json", "Send JSON (Content-Type: application/json).")
    raw = await request.content.read(MAX_JSON + 1)
    if len(raw) > MAX_JSON:
        raise StationError(413, "too_large", "That request is too large.")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise StationError(400, "bad_json", "The request is not valid JSON.") from None
    if not isinstance(body, dict):
        raise StationError(400, "bad_json", "The request must be a JSON object.")
    return body


def _fill_id(request: web.Request) -> str:
    try:
        return str(uuid.UUID(request.match_info["fill_id"]))
    except ValueError:
        raise StationError(404, "no_fill", "There is no such fill.") from None


def _actor(station: Station) -> str:
    name = station.me.get("display_name") or station.me.get("username") or "technician"
    return f"{name} (station)"


# -- the page -------------------------------------------------------------------------------------


async def index(request: web.Request) -> web.Response:
    """The page, with this station's CSRF token written into it."""
    html = (STATIC / "index.html").read_text(encoding="utf-8")
    html = html.replace(CSRF_MARK, request.app[GUARD].csrf_token)
    return web.Response(
        text=html,
        headers={**SECURITY_HEADERS, "Cache-Control": "no-store", "Content-Type": CONTENT_TYPES[".html"]},
    )


async def static(request: web.Request) -> web.FileResponse:
    """One file under static/, by a path that cannot leave it."""
    rel = request.match_info["path"]
    try:
        target = (STATIC / rel).resolve()
        found = target.is_relative_to(STATIC.resolve()) and target.is_file()
    except (OSError, ValueError):
        found = False
    content_type = CONTENT_TYPES.get(target.suffix.lower()) if found else None
    if content_type is None or target.name == "index.html":
        raise StationError(404, "not_found", "There is nothing here.")
    return web.FileResponse(
        target, headers={**SECURITY_HEADERS, "Cache-Control": "no-cache", "Content-Type": content_type}
    )


async def state(request: web.Request) -> web.Response:
    """What the page needs to start: enrolled or not, who, the views required, the priorities, the uplink."""
    station = _station(request)
    return web.json_response(
        {
            **station.status(),
            "server_url": station.config.server_url if station.config else None,
            "me": {k: station.me.get(k) for k in ("display_name", "username", "site_id")},
            "site": {k: station.site.get(k) for k in ("code", "name", "state")},
            "required_views": station.required_views,
            "view_names": KIND_NAMES,
            "optional_views": ["count_video"],
            "priorities": PRIORITIES,
            "default_priority": DEFAULT_PRIORITY,
            "features": ["calls"] if importlib.util.find_spec("remote_site_client.station.calls") else [],
        }
    )


async def pair(request: web.Request) -> web.Response:
    body = await _json(request)
    cookie = request.app[GUARD].pair(str(body.get("code") or ""))
    if cookie is None:
        raise StationError(403, "wrong_code", "That code is not the one on the station's screen.")
    resp = web.json_response({"paired": True})
    resp.set_cookie(PAIR_COOKIE, cookie, httponly=True, samesite="Strict", path="/")
    return resp


async def enroll(request: web.Request) -> web.Response:
    body = await _json(request)
    try:
        server_url = server_address(str(body.get("server_url") or ""))
    except ConfigError as exc:
        raise StationError(400, "bad_server", str(exc)) from None
    token = str(body.get("token") or "")
    if not token.strip():
        raise StationError(400, "no_token", "Paste the device token, or the line from the token file.")
    try:
        user = await _station(request).enroll(server_url, token)
    except TokenRefused as exc:
        # The token given here is the one refused: its message says to ask for a new one.
        raise StationError(502, TokenRefused.CODE, exc.message) from None
    return web.json_response({"enrolled": True, "display_name": user.get("display_name")})


async def events(request: web.Request) -> web.WebSocketResponse:
    """The page's live feed: the station's status now, then whatever happens."""
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=64 * 1024)
    await ws.prepare(request)
    hub = request.app[HUB]
    hub.sockets.add(ws)
    try:
        await ws.send_json(_station(request).status())
        async for _ in ws:
            pass  # the page only listens; anything it sends is ignored
    finally:
        hub.sockets.discard(ws)
    return ws


# -- capture --------------------------------------------------------------------------------------


async def prescriptions(request: web.Request) -> web.Response:
    """The site's prescriptions: from the server, else (offline) the copy kept here. With `rx_number`,
    the one with that number is asked for too, however old (the list has the newest only), and kept."""
    station, outbox = _station(request), _outbox(request)
    rx_number = request.query.get("rx_number", "").strip()
    online = False
    if station.api is not None:
        try:
            outbox.cache_prescriptions(await station.api.prescriptions())
            if rx_number and outbox.cached_prescription(rx_number=rx_number) is None:
                found = await station.api.prescription_numbered(rx_number)
                outbox.cache_prescriptions([found] if found else [])
            online = True
        except ApiError as exc:
            if not exc.transient:
                raise  # offline is an answer: the copy kept here
    fields = ("id", "rx_number", "patient_name", "patient_dob", "drug", "strength", "dosage_form",
              "quantity", "directions", "expected_ndc", "days_supply", "required_media_kinds",
              "verification_state")  # fmt: skip
    items = [{k: rx.get(k) for k in fields} for rx in outbox.cached_prescriptions()]
    return web.json_response({"prescriptions": items, "online": online})


async def add_capture(request: web.Request) -> web.Response:
    """One captured photo or count video, checked at once."""
    station = _station(request)
    outbox = _outbox(request)
    try:
        prescription_id = int(request.query["prescription_id"])
    except (KeyError, ValueError):
        raise StationError(400, "no_prescription", "Pick the prescription first.") from None
    rx = outbox.cached_prescription(rx_id=prescription_id)
    if rx is None:
        raise StationError(400, "unknown_prescription", "Pick the prescription from the list again.")
    assert station.config is not None
    capture = await _captures(request).receive(
        request.query.get("kind", ""),
        prescription_id,
        request.content,
        expected_ndc=rx.get("expected_ndc"),
        thresholds=station.config.thresholds(),
    )
    return web.json_response(capture.view(), status=201)


def _capture(request: web.Request) -> Capture:
    c = _captures(request).get(request.match_info["capture_id"])
    if c is None:
        raise StationError(404, "capture_gone", "That photo is no longer here: retake it.")
    return c


async def capture_file(request: web.Request) -> web.FileResponse:
    c = _capture(request)
    return web.FileResponse(
        c.path, headers={"Content-Type": MEDIA_TYPES.get(c.path.suffix, "application/octet-stream"),
                         "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
    )  # fmt: skip


async def drop_capture(request: web.Request) -> web.Response:
    _captures(request).drop(request.match_info["capture_id"])
    return web.json_response({"dropped": True})


# -- fills ----------------------------------------------------------------------------------------


async def save(request: web.Request) -> web.Response:
    """Save: the fill is in the outbox, fsynced, when this answers."""
    result = save_fill(_station(request), _captures(request), await _json(request))
    return web.json_response(result, status=201)


async def fills(request: web.Request) -> web.Response:
    station = _station(request)
    items, online = await work_list(station.api, _outbox(request))
    for item in items:
        p = station.progress.get(item["fill_id"])
        if p is not None:
            item["sent"], item["total"] = p.sent, p.total
    return web.json_response({"fills": items, "online": online})


async def fill_detail(request: web.Request) -> web.Response:
    """One fill: the server's view of it with its decision in words, and what the outbox holds."""
    station = _station(request)
    fill_id = _fill_id(request)
    found = await fill_view(station.api, station.decisions, _outbox(request), fill_id)
    if found is None:
        raise StationError(404, "no_fill", "There is no such fill here.")
    return web.json_response({"fill_id": fill_id, **found})


async def fill_media(request: web.Request) -> web.StreamResponse:
    """A photo the server stored for one of this site's fills, passed through (the page holds no token;
    the server decides whether this site may see it)."""
    station = _station(request)
    if station.api is None:
        raise not_enrolled()
    media_id = int(request.match_info["media_id"])
    try:
        async with station.api.session.get(station.api.url(f"/api/v1/media/{media_id}")) as upstream:
            if upstream.status != 200:
                raise StationError(404, "no_media", "That photo cannot be shown now.")
            resp = web.StreamResponse(
                headers={"Content-Type": upstream.headers.get("Content-Type", "application/octet-stream"),
                         "Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"},
            )  # fmt: skip
            await resp.prepare(request)
            async for chunk in upstream.content.iter_chunked(256 * 1024):
                await resp.write(chunk)
            await resp.write_eof()
            return resp
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise network_error(exc) from exc


async def resubmission(request: web.Request) -> web.Response:
    result = await prepare_resubmission(_station(request), _captures(request), _fill_id(request))
    return web.json_response(result)


async def fix(request: web.Request) -> web.Response:
    station = _station(request)
    new_id = fix_entry(station, _captures(request), _fill_id(request), await _json(request), _actor(station))
    return web.json_response({"fill_id": new_id})


async def discard(request: web.Request) -> web.Response:
    station = _station(request)
    body = await _json(request)
    discard_entry(station, _fill_id(request), body.get("reason"), _actor(station))
    return web.json_response({"discarded": True})


# -- the counter: counselling and hand-out --------------------------------------------------------


async def hand_out(request: web.Request) -> web.Response:
    """The fill was handed to the patient: the server refuses while its counselling is due."""
    station = _station(request)
    if station.api is None:
        raise not_enrolled()
    fill = await station.api.hand_out(_fill_id(request))
    _outbox(request).set_fill_state(fill["id"], fill["state"])
    return web.json_response({"state": fill["state"], "counselling": fill.get("counselling")})


async def decline_counselling(request: web.Request) -> web.Response:
    """The patient (or their agent) declined counselling: recorded where the state's rules allow it."""
    station = _station(request)
    if station.api is None:
        raise not_enrolled()
    body = await _json(request)
    who = body.get("declined_by", "patient")
    note = body.get("note") if isinstance(body.get("note"), str) and body["note"].strip() else None
    fill = await station.api.decline_counselling(_fill_id(request), str(who), note)
    return web.json_response({"state": fill["state"], "counselling": fill.get("counselling")})
