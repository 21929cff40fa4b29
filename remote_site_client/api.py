"""The server's HTTP API as the site uses it: a device token, JSON in and out, errors sorted by what to do."""

from __future__ import annotations

import asyncio
import json
import os
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

import aiohttp

from remote_site_client.config import SiteConfig

# Statuses that may change by themselves: try again later.
RETRYABLE_STATUSES = frozenset({408, 423, 425, 429, 500, 502, 503, 504})


class ApiError(Exception):
    """A refusal or a failure talking to the server; `transient` says whether retrying can help."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str = "",
        detail: Mapping[str, Any] | None = None,
        transient: bool | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.detail: dict[str, Any] = dict(detail or {})
        if transient is None:
            transient = status is None or status in RETRYABLE_STATUSES or status >= 500
        self.transient = transient

    def __str__(self) -> str:
        return self.message


def enrol_again(how: str) -> str:
    """A refused device token in words, whatever was asked: what happened, and to enrol the computer
    again `how` (each front end's way: a command, or the station's page)."""
    return (
        "The server refused this computer's device token (revoked, or from another server): enrol it "
        f"again {how}."
    )


class TokenRefused(ApiError):
    """The server refused the device token (401): nothing gets through until the computer is enrolled
    again. What waits in the outbox stays there (`transient`), but trying again now cannot help."""

    CODE = "token_refused"
    # What the technician reads at the command line, whatever was asked.
    MESSAGE = enrol_again("with `tp-site enroll --token-file ...`")

    def __init__(self, message: str = MESSAGE) -> None:
        super().__init__(message, status=401, code=self.CODE, transient=True)


class Unreachable(ApiError):
    """The server could not be reached, or the connection dropped."""

    def __init__(self, message: str) -> None:
        super().__init__(message, transient=True)


async def error_from(resp: aiohttp.ClientResponse) -> ApiError:
    """An ApiError from a refusal, using the server's `{error, message}` body when it has one."""
    if resp.status == 401:
        return TokenRefused()
    text = await resp.text(errors="replace")
    code, message = "", ""
    detail: dict[str, Any] = {}
    try:
        body = json.loads(text)
        if isinstance(body, dict):
            code = str(body.get("error") or "")
            message = str(body.get("message") or "")
            if isinstance(body.get("detail"), dict):
                detail = body["detail"]
    except ValueError:
        message = text.strip()[:300]
    return ApiError(
        message or f"The server answered {resp.status} {resp.reason}.",
        status=resp.status,
        code=code,
        detail=detail,
    )


def _connect_failure(error: OSError) -> str:
    """Why a connection could not be made, in a few words: the system's, without the socket's details."""
    if isinstance(error, socket.gaierror):
        return f"its name is not found: {error.strerror}"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if error.errno and error.errno > 0:
        words = os.strerror(error.errno)
        return words[:1].lower() + words[1:]
    return str(error) or type(error).__name__


def network_error(exc: BaseException, server: str = "") -> Unreachable:
    """What went wrong on the way to `server` (its address as configured), for the technician."""
    if isinstance(exc, asyncio.TimeoutError | TimeoutError):
        return Unreachable("The server did not answer in time (slow or dropped link).")
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cause = exc.certificate_error
        why = getattr(cause, "verify_message", "") or getattr(cause, "reason", "") or str(cause)
        return Unreachable(
            f"The certificate of {exc.host}:{exc.port} is not trusted on this computer ({why}). If your "
            "organisation issues its own certificates, add its authority to this computer's trusted ones "
            "(update-ca-certificates) or name its file in SSL_CERT_FILE; the server's address must be a "
            "name the certificate is for."
        )
    if isinstance(exc, aiohttp.ClientSSLError) and "WRONG_VERSION_NUMBER" in str(exc):
        return Unreachable(
            f"No https answers at {exc.host}:{exc.port}: what listens there speaks plain http. Check the "
            "server's address, its http:// or https:// and its port."
        )
    if isinstance(exc, aiohttp.ClientConnectorError):
        where = server or f"{exc.host}:{exc.port}"
        return Unreachable(
            f"The server cannot be reached: cannot connect to {where} ({_connect_failure(exc.os_error)})"
        )
    return Unreachable(f"The server cannot be reached: {exc or type(exc).__name__}")


class SiteApi:
    """An HTTP session for one enrolled site; use as an async context manager."""

    def __init__(self, config: SiteConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> SiteApi:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                headers={"Authorization": f"Bearer {self.config.token}", "User-Agent": "tp-site/0.1"},
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=15, sock_connect=15, sock_read=self.config.request_timeout_seconds
                ),
                # Cookies never authenticate a site device.
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def use_token(self, token: str) -> None:
        """Goes on with another device token (the computer was enrolled again): the requests and live
        connections made from now on carry it."""
        self.config = self.config.with_(token=token)
        await self.close()

    def url(self, path: str) -> str:
        """An absolute URL for an API path ("/fills") or a server path ("/api/v1/uploads/x")."""
        if path.startswith(("http://", "https://")):
            return path
        if path.startswith("/api/"):
            return self.config.server_url.rstrip("/") + path
        return self.config.api_url + path

    def websocket_url(self, cursor: int | None) -> str:
        parts = urlsplit(self.url("/ws"))
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = urlencode({"cursor": cursor}) if cursor is not None else ""
        return urlunsplit((scheme, parts.netloc, parts.path, query, ""))

    async def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Sends one JSON request; returns (status, body) for 2xx, raises ApiError otherwise."""
        try:
            async with self.session.request(method, self.url(path), json=body) as resp:
                if resp.status >= 400:
                    raise await error_from(resp)
                text = await resp.text()
                return resp.status, json.loads(text) if text else None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise network_error(exc, self.config.server_url) from exc

    # -- endpoints -------------------------------------------------------------------------------

    async def whoami(self) -> dict[str, Any]:
        """Who the token is; the first call at enrolment, so a 404 means the address is not the server's."""
        try:
            _, body = await self.call("GET", "/session")
        except Unreachable as exc:
            plain = self.config.server_url.startswith("http://")
            if not plain or not isinstance(exc.__cause__, aiohttp.ServerDisconnectedError):
                raise
            # A server that serves https closes a plain http request's connection without a word.
            raise Unreachable(
                f"The server at {self.config.server_url} closed the connection without answering: if it "
                "serves https, its address starts with https://."
            ) from exc
        except TokenRefused as exc:
            raise TokenRefused(
                f"The server at {self.config.server_url} refused this device token (revoked, or from "
                "another server): ask the administrator for a new one."
            ) from exc
        except ApiError as exc:
            if exc.status != 404:
                raise
            raise ApiError(
                f"No telepharmacy server answers at {self.config.server_url} ({self.url('/session')} was "
                "not found): check the server's address.",
                status=404,
                transient=False,
            ) from exc
        return dict(body)

    async def pages(self, path: str, key: str, at_most: int) -> list[dict[str, Any]]:
        """Up to `at_most` rows of a paged list (`key` in each page), following its `next` cursors."""
        rows: list[dict[str, Any]] = []
        query: dict[str, str] = {}
        while len(rows) < at_most:
            sep = "&" if "?" in path else "?"
            _, body = await self.call("GET", path + (sep + urlencode(query) if query else ""))
            rows.extend(body[key])
            if not body.get("next"):
                break
            query = {"after": body["next"]}
        return rows[:at_most]

    async def prescriptions(self, at_most: int = 200) -> list[dict[str, Any]]:
        """The site's prescriptions, newest first (up to `at_most`)."""
        return await self.pages("/prescriptions", "prescriptions", at_most)

    async def prescription_numbered(self, rx_number: str) -> dict[str, Any] | None:
        """The site's prescription with this Rx number, however old, or None when there is none."""
        try:
            _, body = await self.call("GET", "/prescriptions?" + urlencode({"rx_number": rx_number}))
        except ApiError as exc:
            if exc.status == 400:  # no Rx number could be this (too long, say): there is none
                return None
            raise
        found = body["prescriptions"]
        return dict(found[0]) if found else None

    async def create_prescription(self, rx: Mapping[str, Any]) -> dict[str, Any]:
        _, body = await self.call("POST", "/prescriptions", dict(rx))
        return dict(body)

    async def create_fill(self, fill: Mapping[str, Any]) -> tuple[bool, dict[str, Any]]:
        """Creates the draft fill, or finds it when this id was created before: (created, fill)."""
        status, body = await self.call("POST", "/fills", dict(fill))
        return status == 201, dict(body)

    async def submit_fill(self, fill_id: str) -> dict[str, Any]:
        _, body = await self.call("POST", f"/fills/{fill_id}/submit")
        return dict(body)

    async def fill(self, fill_id: str) -> dict[str, Any]:
        _, body = await self.call("GET", f"/fills/{fill_id}")
        return dict(body)

    async def fills(self, state: str | None = None, at_most: int = 100) -> list[dict[str, Any]]:
        """The site's fills, newest first (up to `at_most`)."""
        path = "/fills" + (f"?{urlencode({'state': state})}" if state else "")
        return await self.pages(path, "fills", at_most)

    async def resubmission_of(self, fill_id: str) -> dict[str, Any] | None:
        """The site's fill that resubmits the rejected fill `fill_id`, if there is one. Looked for among
        the fills made since it: the list is newest first, so its pages are read down to that fill."""
        query: dict[str, str] = {}
        while True:
            _, body = await self.call("GET", "/fills" + (f"?{urlencode(query)}" if query else ""))
            for f in body["fills"]:
                if f.get("previous_fill_id") == fill_id:
                    return dict(f)
                if f["id"] == fill_id:
                    return None
            if not body.get("next"):
                return None
            query = {"after": body["next"]}

    async def hand_out(self, fill_id: str) -> dict[str, Any]:
        """Marks an approved fill handed to the patient; refused (409) while its counselling is due."""
        _, body = await self.call("POST", f"/fills/{fill_id}/hand-out")
        return dict(body)

    async def decline_counselling(self, fill_id: str, declined_by: str, note: str | None) -> dict[str, Any]:
        """Records that the patient (or their agent) declined counselling, where the state allows it."""
        _, body = await self.call(
            "POST",
            f"/fills/{fill_id}/counselling",
            {"kind": "declined", "declined_by": declined_by, "note": note},
        )
        return dict(body)

    async def download(self, path: str, dest: Path) -> None:
        """Writes what the server serves at `path` (a stored photo) to `dest`."""
        try:
            async with self.session.get(self.url(path)) as resp:
                if resp.status >= 400:
                    raise await error_from(resp)
                with dest.open("wb") as fh:
                    async for chunk in resp.content.iter_chunked(256 * 1024):
                        fh.write(chunk)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise network_error(exc, self.config.server_url) from exc

    async def reasons(self) -> dict[str, str]:
        _, body = await self.call("GET", "/reasons")
        return {r["code"]: r["label"] for r in body["reasons"]}
