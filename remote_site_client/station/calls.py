"""Video calls from the station's page: the station places them with the device token and relays signalling.

The page never holds the device token. It asks the station to request, answer or end a consultation
(HTTP, CSRF-checked like every call to the station), and speaks the server's signalling messages
(`consult.join`, `consult.signal`, `consult.hangup`) over one websocket to the station. For each page
socket the station opens one websocket of its own to the server, authenticated by the device token,
and relays between the two:

- page to server: only those three message types, with only the keys the server's relay reads. What
  the page sends before the server's socket said hello (a join right after a request, or while the
  uplink is back but not yet connected) waits, in order, and goes once it did;
- server to page: the consultation messages (`consult.*`) and the journal's consultation events
  (`consultation.*`: ids and states only); nothing else the site's live connection carries.

A dropped server socket is opened again from the last journal event the page was given, so an end or an
invitation journaled meanwhile still reaches the page. The page's socket closing closes the station's
server socket, so the server ends any call the page had joined ("dropped") and the pharmacist hears it.

Why a server socket per page rather than the station's live connection: that one only reads (decisions,
with its cursor kept in the outbox), and the server ties a call's room to the connection that joined
it, so a call's life follows its page's only when the page has a server connection of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from remote_site_client import backoff
from remote_site_client.api import ApiError, SiteApi
from remote_site_client.station.call_recordings import RecordingRefused, prepare_received, receive
from remote_site_client.station.errors import StationError, not_enrolled
from remote_site_client.station.keys import STATION
from remote_site_client.station.routes import Access, Route, add_routes

log = logging.getLogger(__name__)

# What the page may ask of a consultation, as the server names it.
KINDS = ("counsel", "live_look")
# How the site's side may end a call (the server knows more reasons: declining is the pharmacist's).
END_REASONS = ("hangup", "cancelled", "unanswered", "timeout", "failed", "reconnect_failed")
# The page's signalling, and the keys of each the server's relay reads.
PAGE_MESSAGES = {
    "consult.join": ("consultation_id",),
    "consult.signal": ("consultation_id", "description", "candidate", "restart", "generation"),
    "consult.hangup": ("consultation_id", "reason"),
}
# A page that sends this many messages while the uplink is down is told to wait, not buffered without end.
MAX_WAITING = 256
MAX_MESSAGE_BYTES = 256 * 1024  # an SDP with every candidate is a few kilobytes
# A recording from the page: about 70 MB an hour at the 600 kbps the page asks of its recorder.
MAX_RECORDING_BYTES = 512 * 1024 * 1024
MAX_RECORDING_SECONDS = 2 * 3600.0
RECORDINGS_FOLDER = "call-recordings"  # under the site's data folder, beside the outbox
# What the page is shown of a consultation: ids, states and times. The note is the pharmacist's word to
# this site (why a request was declined).
VIEW_KEYS = (
    "id",
    "kind",
    "state",
    "prescription_id",
    "fill_id",
    "requested_at",
    "answered_at",
    "connected_at",
    "ended_at",
    "end_reason",
    "duration_seconds",
    "outcome_note",
    "recording_consent_at",
)
MAX_JSON = 4096


def page_view(body: dict[str, Any]) -> dict[str, Any]:
    """A consultation as the page sees it; `invited` when a pharmacist asked this site."""
    asked_by = body.get("requested_by")
    invited = asked_by is not None and asked_by == body.get("pharmacist_id")
    return {**{k: body.get(k) for k in VIEW_KEYS}, "invited": invited}


async def _json_body(request: web.Request) -> dict[str, Any]:
    """The request's JSON object (an empty body is an empty object)."""
    raw = await request.content.read(MAX_JSON + 1)
    if len(raw) > MAX_JSON:
        raise StationError(413, "too_large", "That request is too large.")
    if raw and request.content_type != "application/json":
        raise StationError(415, "not_json", "Send JSON (Content-Type: application/json).")
    try:
        body = json.loads(raw or b"{}")
    except ValueError:
        raise StationError(400, "bad_json", "The request is not valid JSON.") from None
    if not isinstance(body, dict):
        raise StationError(400, "bad_json", "The request must be a JSON object.")
    return body


def _consultation_id(request: web.Request) -> int:
    return int(request.match_info["consultation_id"])


def _api(request: web.Request) -> SiteApi:
    api = request.app[STATION].api
    if api is None:
        raise not_enrolled()
    return api


async def _server(request: web.Request, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One consultation call to the server with the device token.

    The server's refusals keep their status (409: another station answered, the call has ended), so
    the page can tell them apart; an unreachable server is a 503 that says the call cannot go on."""
    try:
        return await _api(request).call(method, path, body)
    except ApiError as exc:
        if exc.transient or exc.status is None:
            raise StationError(
                503,
                "offline",
                "The pharmacy server cannot be reached now, so the call cannot go on. "
                "Try again when the station shows Connected.",
            ) from exc
        raise StationError(exc.status, exc.code or "refused", exc.message, exc.detail) from exc


async def _relay_call(request: web.Request, method: str, path: str, body: Any = None) -> web.Response:
    """A consultation call to the server; its answer as the page sees the consultation."""
    status, answer = await _server(request, method, path, body)
    return web.json_response(page_view(answer), status=status)


# -- HTTP: what the page asks of a consultation -------------------------------------------------------


async def ask(request: web.Request) -> web.Response:
    """Asks a pharmacist for counselling on a prescription (or a fill), or for a live look."""
    body = await _json_body(request)
    kind = body.get("kind", "counsel")
    if kind not in KINDS:
        raise StationError(400, "bad_kind", "A call is for counselling or a live look.")
    wanted: dict[str, Any] = {"kind": kind}
    rx = body.get("prescription_id")
    if rx is not None:
        if not isinstance(rx, int) or isinstance(rx, bool) or rx <= 0:
            raise StationError(400, "bad_prescription", "Pick the prescription the counselling is about.")
        wanted["prescription_id"] = rx
    fill = body.get("fill_id")
    if fill is not None:
        if not isinstance(fill, str) or not 0 < len(fill) <= 64:
            raise StationError(400, "bad_fill", "Pick the fill the counselling is about.")
        wanted["fill_id"] = fill
    return await _relay_call(request, "POST", "/api/v1/consultations", wanted)


async def answer(request: web.Request) -> web.Response:
    """Answers a pharmacist's invitation (counselling on a fill, or a live look at the tray)."""
    return await _relay_call(request, "POST", f"/api/v1/consultations/{_consultation_id(request)}/answer", {})


async def end(request: web.Request) -> web.Response:
    body = await _json_body(request)
    reason = body.get("reason", "hangup")
    if reason not in END_REASONS:
        raise StationError(400, "bad_reason", f"The reason is one of {', '.join(END_REASONS)}.")
    path = f"/api/v1/consultations/{_consultation_id(request)}/end"
    return await _relay_call(request, "POST", path, {"reason": reason})


async def connected(request: web.Request) -> web.Response:
    """The page saw media flowing: the call's record gets its connection time."""
    return await _relay_call(
        request, "POST", f"/api/v1/consultations/{_consultation_id(request)}/connected", {}
    )


async def reconnected(request: web.Request) -> web.Response:
    """The page re-established the media path inside the call (counted on the record)."""
    return await _relay_call(
        request, "POST", f"/api/v1/consultations/{_consultation_id(request)}/reconnected", {}
    )


async def consent(request: web.Request) -> web.Response:
    """The patient agreed to a recording: on the consultation's record before the page starts one."""
    return await _relay_call(
        request, "POST", f"/api/v1/consultations/{_consultation_id(request)}/consent", {}
    )


async def _consent_on_record(api: SiteApi, consultation_id: int) -> None:
    """Refuses a recording whose consultation has no consent on record; with the server out of reach
    the recording is kept, and the server checks again when it is delivered."""
    try:
        _, c = await api.call("GET", f"/api/v1/consultations/{consultation_id}")
    except ApiError as exc:
        if exc.transient:
            return
        raise StationError(exc.status or 409, exc.code or "refused", exc.message) from exc
    if not c.get("recording_consent_at"):
        raise StationError(
            409,
            "no_consent",
            "The patient's consent to recording is not on this call's record: the recording was not kept.",
        )


async def recording(request: web.Request) -> web.Response:
    """The page's recording of a call, after the patient's consent: kept here (fsynced) before the page
    is answered, then made an mp4 and handed to the outbox, which delivers it."""
    cid = _consultation_id(request)
    station = request.app[STATION]
    api = _api(request)
    if station.config is None:
        raise not_enrolled()
    await _consent_on_record(api, cid)
    folder = station.config.data_dir / RECORDINGS_FOLDER
    try:
        size = await receive(request.content.iter_chunked(256 * 1024), folder, cid, limit=MAX_RECORDING_BYTES)
    except RecordingRefused as exc:
        raise StationError(415, "not_webm", str(exc)) from exc
    except OverflowError:
        raise StationError(
            413, "too_large", f"A recording may be at most {MAX_RECORDING_BYTES // 2**20} MB."
        ) from None
    request.app[CALL_RECORDINGS].prepare(station.config.data_dir)
    return web.json_response({"consultation_id": cid, "bytes": size}, status=202)


class Preparer:
    """Prepares the received recordings one batch at a time, in a thread; a stop waits for the batch."""

    def __init__(self) -> None:
        self.task: asyncio.Task[None] | None = None
        self.again = False

    def prepare(self, data_dir: Path) -> None:
        """Prepares what waits in the folder now (and what comes in meanwhile)."""
        if self.task is not None and not self.task.done():
            self.again = True
            return
        self.task = asyncio.get_running_loop().create_task(self._run(data_dir), name="call-recordings")

    async def _run(self, data_dir: Path) -> None:
        loop = asyncio.get_running_loop()
        folder = data_dir / RECORDINGS_FOLDER
        self.again = True
        while self.again:
            self.again = False
            if not folder.is_dir():
                return
            try:
                await loop.run_in_executor(
                    None,
                    functools.partial(prepare_received, folder, data_dir, max_seconds=MAX_RECORDING_SECONDS),
                )
            except Exception:
                log.exception("preparing call recordings failed; they wait for the next try")
                return

    async def stop(self) -> None:
        if self.task is not None:
            with contextlib.suppress(Exception):
                await self.task


async def open_calls(request: web.Request) -> web.Response:
    """This site's open consultations: a page that opens late still answers a waiting invitation."""
    _, body = await _server(request, "GET", "/api/v1/consultations")
    return web.json_response({"consultations": [page_view(c) for c in body.get("consultations", [])]})


async def one_call(request: web.Request) -> web.Response:
    """One consultation of this site (an invitation's kind, why a request was declined)."""
    return await _relay_call(request, "GET", f"/api/v1/consultations/{_consultation_id(request)}")


async def ice_servers(request: web.Request) -> web.Response:
    """The STUN/TURN servers the server hands out: the page's peer connection needs them."""
    _, body = await _server(request, "GET", "/api/v1/ice-servers")
    return web.json_response({"ice_servers": body.get("ice_servers", [])})


# -- the signalling relay ---------------------------------------------------------------------------


def for_page(message: dict[str, Any]) -> bool:
    """Whether a message of the site's live connection concerns the page's calls."""
    kind = message.get("type")
    return isinstance(kind, str) and kind.startswith(("consult.", "consultation."))


def from_page(raw: str) -> dict[str, Any] | str:
    """The page's message as the server's relay takes it, or why it is refused."""
    try:
        data = json.loads(raw)
    except ValueError:
        return "Messages are JSON."
    if not isinstance(data, dict) or data.get("type") not in PAGE_MESSAGES:
        return f"The station relays {', '.join(PAGE_MESSAGES)} only."
    cid = data.get("consultation_id")
    if not isinstance(cid, int) or isinstance(cid, bool):
        return "The message needs its consultation_id."
    kind = data["type"]
    return {"type": kind, **{k: data[k] for k in PAGE_MESSAGES[kind] if k in data}}


class CallLink:
    """One page socket and the station's server socket for it, relaying both ways until the page goes."""

    def __init__(self, api: SiteApi, page: web.WebSocketResponse, *, retry_cap: float = 5.0) -> None:
        self.api = api
        self.page = page
        self.retry_cap = retry_cap
        self.server: aiohttp.ClientWebSocketResponse | None = None  # set once it said hello
        self.waiting: list[dict[str, Any]] = []
        self.lock = asyncio.Lock()  # orders the flush of what waited before what comes after
        self.cursor: int | None = None  # the last journal event the page was given

    async def to_page(self, message: dict[str, Any]) -> None:
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.page.send_json(message)

    async def to_server(self, message: dict[str, Any]) -> None:
        async with self.lock:
            if self.server is None:
                if len(self.waiting) >= MAX_WAITING:
                    await self.to_page(
                        {"type": "call.error", "error": "The pharmacy server is not reachable; try again."}
                    )
                    return
                self.waiting.append(message)
                return
            await self.server.send_json(message)

    async def _attached(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async with self.lock:
            for message in self.waiting:
                await ws.send_json(message)
            self.waiting.clear()
            self.server = ws
        await self.to_page({"type": "call.link", "up": True})

    async def _serve_once(self) -> None:
        async with self.api.session.ws_connect(
            self.api.websocket_url(self.cursor), heartbeat=10, max_msg_size=MAX_MESSAGE_BYTES
        ) as ws:
            try:
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        break
                    with contextlib.suppress(ValueError):
                        data = json.loads(msg.data)
                        if not isinstance(data, dict):
                            continue
                        if data.get("type") == "hello":
                            if self.cursor is None:
                                self.cursor = int(data.get("cursor") or 0)
                            await self._attached(ws)
                            continue
                        if for_page(data):
                            await self.to_page(data)
                        if isinstance(data.get("id"), int):
                            self.cursor = data["id"]
            finally:
                async with self.lock:
                    self.server = None

    async def serve_server(self) -> None:
        """Keeps the station's server socket for this page open, again and again, until cancelled."""
        failures = 0
        while True:
            try:
                await self._serve_once()
                why = "the server closed the connection"
                failures = 0
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                why = type(exc).__name__
                failures += 1
            log.info("call link to the server lost (%s); reconnecting", why)
            await self.to_page({"type": "call.link", "up": False})
            await asyncio.sleep(backoff.delay(failures, 0.5, self.retry_cap))

    async def serve_page(self) -> None:
        """Relays the page's signalling until its socket closes."""
        async for msg in self.page:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            message = from_page(msg.data)
            if isinstance(message, str):
                await self.to_page({"type": "call.error", "error": message})
                continue
            await self.to_server(message)

    async def run(self) -> None:
        server = asyncio.create_task(self.serve_server(), name="call-link")
        try:
            await self.serve_page()
        finally:
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server


# The pages' signalling sockets, closed when the station stops.
CALL_LINKS: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("call_links")
CALL_RECORDINGS: web.AppKey[Preparer] = web.AppKey("call_recordings")


async def call_socket(request: web.Request) -> web.WebSocketResponse:
    """The page's signalling socket (same origin and the page's CSRF token, checked by the guard)."""
    page = web.WebSocketResponse(heartbeat=20, max_msg_size=MAX_MESSAGE_BYTES)
    await page.prepare(request)
    link = CallLink(_api(request), page)
    station = request.app[STATION]
    if station.config is not None:
        # A recording received before the station last stopped is prepared now.
        request.app[CALL_RECORDINGS].prepare(station.config.data_dir)
    request.app[CALL_LINKS].add(page)
    try:
        await link.run()
    finally:
        request.app[CALL_LINKS].discard(page)
    return page


async def _close_links(app: web.Application) -> None:
    links: set[web.WebSocketResponse] = app[CALL_LINKS]
    for ws in list(links):
        with contextlib.suppress(Exception):
            await ws.close(code=1001, message=b"station stopping")


def add_call_routes(app: web.Application) -> None:
    """The page's calls: ask, answer, end, report the connection; the signalling socket."""
    app[CALL_LINKS] = set()
    app[CALL_RECORDINGS] = Preparer()
    app.on_shutdown.append(_close_links)
    app.on_cleanup.append(lambda app: app[CALL_RECORDINGS].stop())
    cid = r"{consultation_id:\d{1,12}}"
    add_routes(
        app,
        [
            Route("GET", "/api/calls", open_calls, Access.PAIRED, "This site's open consultations"),
            Route("GET", "/api/calls/ice-servers", ice_servers, Access.PAIRED, "STUN/TURN for the page"),
            Route("GET", f"/api/calls/{cid}", one_call, Access.PAIRED, "One consultation of this site"),
            Route("POST", "/api/calls", ask, Access.PAIRED, "Ask a pharmacist for counselling"),
            Route("POST", f"/api/calls/{cid}/answer", answer, Access.PAIRED, "Answer an invitation"),
            Route("POST", f"/api/calls/{cid}/end", end, Access.PAIRED, "Hang up"),
            Route("POST", f"/api/calls/{cid}/consent", consent, Access.PAIRED, "The patient agreed"),
            Route("POST", f"/api/calls/{cid}/recording", recording, Access.PAIRED, "The call's recording"),
            Route("POST", f"/api/calls/{cid}/connected", connected, Access.PAIRED, "Media flows"),
            Route("POST", f"/api/calls/{cid}/reconnected", reconnected, Access.PAIRED, "Media again"),
            Route("GET", "/api/calls/ws", call_socket, Access.PAIRED, "The page's signalling socket"),
        ],
    )
