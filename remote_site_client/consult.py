"""A video consultation at the site's counter: camera and microphone through aiortc.

The site asks for a pharmacist, waits for one to answer, then offers the call over the server's
websocket (aiortc gathers every candidate before the offer, so one offer and one answer suffice).
Every wait has a deadline and a clear message: ICE gathering, the answer, connecting, the first frame.
When either side hangs up, or the websocket drops, the call ends on both sides.

When the media path drops while both websockets stay up (a short network blip), the call is
re-established inside the same consultation, within `Timeouts.reconnect`, or ended with the reason
"reconnect_failed". aiortc 1.16 cannot restart ICE: its offers take no iceRestart option, the ICE
credentials are fixed when a transport is made, and RTCIceTransport.start() returns at once when it
has run before. So recovery is a fresh RTCPeerConnection and a new offer/answer, numbered by a
`generation` that travels with each description so a late answer to an older offer is ignored.

This module is the call's state machine; the tracks it sends and feeds are in media_tracks.py, and
the file it records to in recorder.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.contrib.media import MediaPlayer, MediaRelay

from remote_site_client.api import SiteApi
from remote_site_client.media_tracks import CountingTrack, TestPattern, open_source
from remote_site_client.recorder import Mp4Recorder

# The sources a call sends are part of what a caller needs to place one.
__all__ = ["CallResult", "ConsultError", "Consultation", "TestPattern", "Timeouts", "open_source"]

log = logging.getLogger(__name__)


class ConsultError(Exception):
    """The call could not go on; the message says which step failed and what to check."""


@dataclass(frozen=True)
class Timeouts:
    answer: float = 120.0  # for a pharmacist to accept
    gathering: float = 10.0  # ICE candidate gathering
    remote_answer: float = 15.0  # the browser's SDP answer
    connect: float = 15.0  # ICE + DTLS to connected
    first_frame: float = 10.0
    # From noticing that the media path dropped to media flowing again on a new peer connection.
    reconnect: float = 12.0


@dataclass
class CallResult:
    consultation_id: int | None = None
    kind: str = "counsel"
    fill_id: str | None = None
    accepted_after: float | None = None  # seconds from the request to the answer
    connected_after: float | None = None  # seconds from the answer to ICE connected
    first_frame_after: float | None = None  # seconds from the answer to the first remote frame
    connected_wall: float | None = None  # time.time() at ICE connected (benchmarks compare with the browser)
    first_frame_wall: float | None = None  # time.time() at the first remote video frame
    frames_received: int = 0
    frames_sent: int = 0
    ended_by: str = ""  # "us", "peer", "server"
    reason: str = ""
    duration_seconds: float | None = None
    events: list[str] = field(default_factory=list)
    recorded: bool = False
    reconnections: int = 0  # times the media path was re-established during the call


def ice_configuration(body: dict[str, Any]) -> RTCConfiguration:
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in body.get("ice_servers", [])
    ]
    return RTCConfiguration(iceServers=servers)


class Consultation:
    """One call from the site. `run()` returns when the call is over (or raises ConsultError)."""

    def __init__(
        self,
        api: SiteApi,
        *,
        video: MediaStreamTrack | None = None,
        audio: MediaStreamTrack | None = None,
        player: MediaPlayer | None = None,
        timeouts: Timeouts | None = None,
        max_seconds: float | None = None,
        record_to: str | None = None,
        request: dict[str, Any] | None = None,
        on_status: Callable[[str], None] | None = None,
        wait_for_invite: bool = False,
    ) -> None:
        self.api = api
        self.player = player
        self.video = CountingTrack(video) if video is not None else None
        self.audio = audio
        self.timeouts = timeouts or Timeouts()
        self.max_seconds = max_seconds
        if record_to is not None and not record_to.lower().endswith(".mp4"):
            # webm with audio and video in one file loses the video now and then (see NOTES.md).
            raise ConsultError("Recordings are written as .mp4 (H.264 + AAC).")
        self.record_to = record_to
        self.request_body = request or {}
        # A counter kiosk that waits for a pharmacist to ask (counselling on a fill, a live look).
        self.wait_for_invite = wait_for_invite
        self.kind = str(self.request_body.get("kind", "counsel"))
        self.on_status = on_status or (lambda text: None)
        self.result = CallResult()
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self.pc: RTCPeerConnection | None = None
        self.recorder: Mp4Recorder | None = None
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._reader: asyncio.Task[None] | None = None
        self._consumers: list[asyncio.Task[None]] = []
        self._first_frame = asyncio.Event()
        self._connected = asyncio.Event()
        self._media_down = asyncio.Event()
        self._hangup = asyncio.Event()
        self.ice: dict[str, Any] = {}
        # Numbers the offers: 0 for the first, one more for each offer after a drop.
        self.generation = 0

    def status(self, text: str) -> None:
        self.result.events.append(text)
        self.on_status(text)

    def hang_up(self) -> None:
        """Ends the call from this side (a kiosk button, Ctrl-C)."""
        self._hangup.set()

    # -- websocket -------------------------------------------------------------------------------

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                break
            with contextlib.suppress(ValueError):
                data = json.loads(msg.data)
                if isinstance(data, dict):
                    await self._inbox.put(data)
        await self._inbox.put({"type": "socket.closed"})

    async def _send(self, message: dict[str, Any]) -> None:
        assert self.ws is not None
        await self.ws.send_json(message)

    def _mine(self, data: dict[str, Any]) -> bool:
        cid = self.result.consultation_id
        return data.get("consultation_id") == cid

    async def _next(
        self, wanted: Callable[[dict[str, Any]], bool], limit: float, what: str
    ) -> dict[str, Any]:
        """The next message matching wanted; a consultation end or a closed socket raises."""
        try:
            async with asyncio.timeout(limit):
                while True:
                    data = await self._inbox.get()
                    kind = data.get("type")
                    if kind == "socket.closed":
                        raise ConsultError(f"The server closed the live connection while waiting for {what}.")
                    if self._mine(data) and kind in ("consult.ended", "consultation.ended"):
                        self.result.ended_by = "peer"
                        self.result.reason = str(data.get("reason") or data.get("end_reason") or "ended")
                        raise _Ended()
                    if self._mine(data) and kind == "consult.error":
                        raise ConsultError(f"The server refused: {data.get('error')}")
                    if wanted(data):
                        return data
        except TimeoutError as exc:
            raise ConsultError(f"Timed out after {limit:g} s waiting for {what}.") from exc

    # -- the call --------------------------------------------------------------------------------

    async def run(self) -> CallResult:
        session = self.api.session
        try:
            _, ice = await self.api.call("GET", "/api/v1/ice-servers")
            self.ws = await session.ws_connect(self.api.websocket_url(None), heartbeat=10)
            self._reader = asyncio.create_task(self._read(), name="consult-ws")
            await self._next(lambda d: d.get("type") == "hello", 10, "the server's hello")
            t0 = time.monotonic()
            if self.wait_for_invite:
                body = await self._invitation()
            else:
                _, body = await self.api.call("POST", "/api/v1/consultations", self.request_body)
            self.result.consultation_id = cid = int(body["id"])
            self.kind = self.result.kind = str(body.get("kind", "counsel"))
            self.result.fill_id = body.get("fill_id")
            if not self.wait_for_invite:
                self.status(f"Asked for a pharmacist (consultation {cid}); waiting for an answer…")
            await self._send({"type": "consult.join", "consultation_id": cid})
            joined = await self._next(
                lambda d: d.get("type") == "consult.joined" and self._mine(d), 10, "the join"
            )
            if joined.get("state") != "accepted":
                try:
                    await self._next(
                        lambda d: (
                            self._mine(d) and d.get("type") in ("consult.accepted", "consultation.accepted")
                        ),
                        self.timeouts.answer,
                        "a pharmacist to answer",
                    )
                except ConsultError:
                    await self._end("unanswered")
                    self.result.ended_by, self.result.reason = "us", "unanswered"
                    raise
            t1 = time.monotonic()
            self.result.accepted_after = t1 - t0
            self.status("A pharmacist answered; connecting…")
            await self._call(ice, t1)
        except _Ended:
            pass
        finally:
            await self._close()
        return self.result

    async def _invitation(self) -> dict[str, Any]:
        """Waits for a pharmacist to ask this site for a consultation, then answers it."""

        def invited(c: dict[str, Any]) -> bool:
            return (
                c.get("state") == "accepted"
                and c.get("requested_by") == c.get("pharmacist_id")
                and (c.get("answered_at") is None)
            )

        self.status("Waiting for a pharmacist to ask for a consultation…")
        _, listing = await self.api.call("GET", "/api/v1/consultations")
        waiting = [c for c in listing.get("consultations", []) if invited(c)]
        if waiting:
            cid = int(waiting[0]["id"])
        else:
            event = await self._next(
                lambda d: d.get("type") == "consultation.invited", self.timeouts.answer, "a pharmacist to ask"
            )
            cid = int(event["consultation_id"])
        self.result.consultation_id = cid
        _, body = await self.api.call("POST", f"/api/v1/consultations/{cid}/answer", {})
        what = "a live look at the counting tray" if body.get("kind") == "live_look" else "counselling"
        self.status(f"A pharmacist asks for {what} (consultation {cid}); connecting…")
        return dict(body)

    async def _call(self, ice: dict[str, Any], t_answer: float) -> None:
        cid = self.result.consultation_id
        self.ice = ice
        if self.record_to:
            self.recorder = Mp4Recorder(self.record_to)
        try:
            await self._offer()
        except TimeoutError as exc:
            await self._end("failed")
            raise ConsultError(
                f"ICE gathering took over {self.timeouts.gathering:g} s: "
                "check the network and the STUN/TURN settings."
            ) from exc
        answer = await self._await_step(
            self._is_answer, self.timeouts.remote_answer, "the pharmacist's answer"
        )
        await self._accept(answer)
        if self.recorder is not None:
            # Consent goes on the consultation's record first; without it, nothing is recorded.
            try:
                await self.api.call("POST", f"/api/v1/consultations/{cid}/consent", {})
            except Exception as exc:
                self.recorder = None
                self.status(f"Not recording: the patient's consent could not be recorded ({exc}).")
            else:
                await self.recorder.start()
                self.result.recorded = True
                self.status("Recording (consent recorded).")
        await self._wait_event(self._connected, self.timeouts.connect, "the media connection (ICE/DTLS)")
        self.result.connected_after = time.monotonic() - t_answer
        self.status("Connected.")
        if self.kind != "live_look":  # a live look is one way: nothing comes back to the site
            await self._wait_event(self._first_frame, self.timeouts.first_frame, "the first video frame")
            self.result.first_frame_after = time.monotonic() - t_answer
        with contextlib.suppress(Exception):
            await self.api.call("POST", f"/api/v1/consultations/{cid}/connected", {})
        await self._in_call()

    async def _offer(self) -> None:
        """Offers on a fresh peer connection (the previous one, if any, closed), as the next generation.

        The site is the only side that ever offers: the console only answers, and asks the site for
        a new offer (`restart`) when it sees the media path drop. One offerer means no glare (two
        offers crossing), and the site must make the new peer connection anyway, since aiortc cannot
        restart ICE on the old one; aiortc also gathers every candidate before the offer leaves, so
        the offer is complete in one message.
        """
        old, self.pc = self.pc, None
        if old is not None:
            self.generation += 1
            await old.close()
        self._connected.clear()
        self._first_frame.clear()
        self._media_down.clear()
        pc = self._peer()
        offer = await pc.createOffer()
        await asyncio.wait_for(pc.setLocalDescription(offer), self.timeouts.gathering)
        local = pc.localDescription
        await self._send(
            {
                "type": "consult.signal",
                "consultation_id": self.result.consultation_id,
                "description": {"type": local.type, "sdp": local.sdp},
                "generation": self.generation,
            }
        )

    def _is_answer(self, d: dict[str, Any]) -> bool:
        """The console's answer to the current offer (a late answer to an older one is not)."""
        return (
            self._mine(d)
            and d.get("type") == "consult.signal"
            and isinstance(d.get("description"), dict)
            and d.get("generation", 0) == self.generation
        )

    def _is_restart_request(self, d: dict[str, Any]) -> bool:
        """The console lost the media of the current connection and asks for a new offer."""
        return (
            self._mine(d)
            and d.get("type") == "consult.signal"
            and bool(d.get("restart"))
            and d.get("generation", 0) >= self.generation
        )

    async def _accept(self, answer: dict[str, Any]) -> None:
        assert self.pc is not None
        desc = answer["description"]
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=desc["sdp"], type=desc["type"]))

    def _peer(self) -> RTCPeerConnection:
        pc = self.pc = RTCPeerConnection(ice_configuration(self.ice))
        relay = MediaRelay()  # the recorder and the frame counter each get every frame

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if self.recorder is not None:
                self.recorder.addTrack(relay.subscribe(track))
                track = relay.subscribe(track)
            if track.kind == "video":
                self._consumers.append(asyncio.create_task(self._count_frames(track)))
            else:
                self._consumers.append(asyncio.create_task(self._drain(track)))

        @pc.on("connectionstatechange")
        def on_state() -> None:
            if pc is not self.pc:  # a connection replaced after a reconnection, closing
                return
            state = pc.connectionState
            if state == "connected":
                if self.result.connected_wall is None:
                    self.result.connected_wall = time.time()
                self._connected.set()
            elif state in ("failed", "closed"):
                # aiortc has no "disconnected" state: failed and closed are final for this connection.
                self._media_down.set()

        self._add_media(pc)
        return pc

    def _add_media(self, pc: RTCPeerConnection) -> None:
        if self.kind == "live_look":
            # One way, video only: the tray camera to the pharmacist; the browser sends nothing back.
            if self.video is None:
                raise ConsultError("A live look needs a camera (--camera).")
            pc.addTransceiver(self.video, direction="sendonly")
            return
        if self.video is not None:
            pc.addTrack(self.video)
        else:
            pc.addTransceiver("video", direction="recvonly")
        if self.audio is not None:
            pc.addTrack(self.audio)
        else:
            pc.addTransceiver("audio", direction="recvonly")

    async def _await_step(
        self, wanted: Callable[[dict[str, Any]], bool], limit: float, what: str
    ) -> dict[str, Any]:
        try:
            return await self._next(wanted, limit, what)
        except ConsultError:
            await self._end("timeout")
            self.result.ended_by, self.result.reason = "us", "timeout"
            raise

    async def _watch(
        self,
        event: asyncio.Event,
        *,
        fails: asyncio.Event | None = None,
        gives_up: Callable[[dict[str, Any]], bool] | None = None,
    ) -> bool:
        """Waits for event while noticing the end of the consultation (raises _Ended or ConsultError);
        False if `fails` is set or a message matching `gives_up` arrives first."""
        waits: dict[asyncio.Task[Any], bool] = {asyncio.create_task(event.wait()): True}
        if fails is not None:
            waits[asyncio.create_task(fails.wait())] = False
        message = asyncio.create_task(self._next(gives_up or (lambda d: False), float("inf"), "the call"))
        try:
            done, _ = await asyncio.wait({*waits, message}, return_when=asyncio.FIRST_COMPLETED)
            if message in done:
                message.result()  # raises _Ended or ConsultError; else a message that gives up
            return any(waits[t] for t in done if t in waits)
        finally:
            for t in (*waits, message):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Ended, ConsultError):
                    await t

    async def _wait_event(self, event: asyncio.Event, limit: float, what: str) -> None:
        """Waits for event while still noticing the end of the consultation; ends the call on timeout."""
        try:
            async with asyncio.timeout(limit):
                await self._watch(event)
        except TimeoutError as exc:
            await self._end("timeout")
            self.result.ended_by, self.result.reason = "us", "timeout"
            raise ConsultError(f"Timed out after {limit:g} s waiting for {what}.") from exc
        except ConsultError:
            await self._end("timeout")
            self.result.ended_by, self.result.reason = "us", "timeout"
            raise

    async def _in_call(self) -> None:
        """Until someone hangs up: our button, the pharmacist (consult.ended), a dropped websocket, or
        max_seconds. A dropped media path is re-established on a new peer connection when it can be."""
        ends_at = None if self.max_seconds is None else time.monotonic() + self.max_seconds
        try:
            while True:
                left = None if ends_at is None else max(0.0, ends_at - time.monotonic())
                if await self._until_call_breaks(left) != "media":
                    break
                if not await self._reconnect():
                    return
        except _Ended:
            self.status(f"The pharmacist ended the call ({self.result.reason}).")
            return
        except ConsultError:
            await self._end("dropped")
            self.result.ended_by, self.result.reason = "server", "dropped"
            raise
        self.result.ended_by, self.result.reason = "us", "hangup"
        await self._end("hangup")
        self.status("Call ended.")

    async def _until_call_breaks(self, limit: float | None) -> str:
        """'hangup' (our button, or max_seconds) or 'media' (ours dropped, or the console asks)."""
        peer = asyncio.create_task(self._next(self._is_restart_request, float("inf"), "the end of the call"))
        hangup = asyncio.create_task(self._hangup.wait())
        down = asyncio.create_task(self._media_down.wait())
        tasks = {peer, hangup, down}
        try:
            done, _ = await asyncio.wait(tasks, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
            if peer in done:
                peer.result()  # raises _Ended or ConsultError; else a restart request
            if hangup in done or not done:
                return "hangup"
            return "media"
        finally:
            for t in tasks:
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Ended, ConsultError):
                    await t

    async def _reconnect(self) -> bool:
        """Re-establishes the call within the window: True when media flows again, False when the
        call ended here (our hang-up, or no recovery in time: ended as "reconnect_failed")."""
        window = self.timeouts.reconnect
        started = time.monotonic()
        self.status(f"The media connection dropped. Reconnecting… (up to {window:g} s)")
        attempt = asyncio.create_task(self._reattach(started + window))
        hangup = asyncio.create_task(self._hangup.wait())
        try:
            done, _ = await asyncio.wait({attempt, hangup}, return_when=asyncio.FIRST_COMPLETED)
            if attempt in done and attempt.result():
                self.result.reconnections += 1
                took = time.monotonic() - started
                self.status(f"Reconnected after {took:.1f} s (reconnection {self.result.reconnections}).")
                with contextlib.suppress(Exception):
                    await self.api.call(
                        "POST", f"/api/v1/consultations/{self.result.consultation_id}/reconnected", {}
                    )
                return True
        finally:
            for t in (attempt, hangup):
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError, _Ended, ConsultError):
                    await t
        if hangup in done:
            self.result.ended_by, self.result.reason = "us", "hangup"
            await self._end("hangup")
            self.status("Call ended.")
        else:
            self.result.ended_by, self.result.reason = "us", "reconnect_failed"
            await self._end("reconnect_failed")
            self.status(f"Could not reconnect within {window:g} s; call ended.")
        return False

    async def _reattach(self, deadline: float) -> bool:
        """New offers until media flows again (True) or the deadline passes (False)."""
        while (left := deadline - time.monotonic()) > 0:
            try:
                async with asyncio.timeout(left):
                    await self._offer()
                    await self._accept(await self._next(self._is_answer, float("inf"), "the answer"))
                    flowing = self._connected if self.kind == "live_look" else self._first_frame
                    # The console asking for a new offer of this connection means it gave up on it: a
                    # connection whose media never comes may take aioice half a minute to call failed.
                    if await self._watch(flowing, fails=self._media_down, gives_up=self._is_restart_request):
                        return True
            except TimeoutError:
                return False
            await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        return False

    async def _count_frames(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()
                self.result.frames_received += 1
                if self.result.first_frame_wall is None:
                    self.result.first_frame_wall = time.time()
                self._first_frame.set()

    async def _drain(self, track: MediaStreamTrack) -> None:
        with contextlib.suppress(Exception):
            while True:
                await track.recv()

    async def _end(self, reason: str) -> None:
        cid = self.result.consultation_id
        if cid is None:
            return
        try:
            _, body = await self.api.call("POST", f"/api/v1/consultations/{cid}/end", {"reason": reason})
            self.result.duration_seconds = body.get("duration_seconds")
        except Exception as exc:  # the server may be gone; the call still ends here
            log.warning("could not tell the server the call ended: %s", type(exc).__name__)

    def _stop_sources(self) -> None:
        sources = [self.video, self.audio]
        if self.player is not None:
            sources += [self.player.audio, self.player.video]
        for source in sources:
            if source is not None:
                source.stop()

    async def _close(self) -> None:
        if self.video is not None:
            self.result.frames_sent = self.video.count
        for t in self._consumers:
            t.cancel()
        for t in self._consumers:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        if self.recorder is not None:
            with contextlib.suppress(Exception):
                await self.recorder.stop()
        if self.pc is not None:
            await self.pc.close()
        self._stop_sources()
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


class _Ended(Exception):
    """The consultation ended from the other side or the server."""
