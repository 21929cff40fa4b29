"""Errors a station handler answers with, mapped to HTTP in one place (the app's `answer_errors`)."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware

from remote_site_client.api import ApiError, TokenRefused, enrol_again
from remote_site_client.commands.common import UsageError
from remote_site_client.config import ConfigError
from remote_site_client.outbox import NotFixable
from remote_site_client.station.captures import CaptureRefused
from remote_site_client.station.routes import Handler

log = logging.getLogger(__name__)

# A refused device token, as the page says it: tp-site's words, with the page's way to enrol again. Not
# the server "cannot be reached": the link is fine, and only a new token gets anything through.
TOKEN_REFUSED = enrol_again("here, with a new device token from the administrator (Enrol again)")


class StationError(Exception):
    """A request the station cannot do; `message` is for the technician, `detail` for the page."""

    def __init__(self, status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or {}


class Question(Exception):
    """Nothing was done: the technician must say yes first (the page asks, then sends again saying so).
    Answered 200, as a question is no failure (a 4xx would log one in the browser's console)."""

    def __init__(self, code: str, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}


def not_enrolled() -> StationError:
    return StationError(409, "not_enrolled", "This station is not enrolled yet: enrol it first.")


def _answer(status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> web.Response:
    return web.json_response({"error": code, "message": message, "detail": detail or {}}, status=status)


def middleware() -> Middleware:
    @web.middleware
    async def answer_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except StationError as exc:
            return _answer(exc.status, exc.code, exc.message, exc.detail)
        except Question as exc:
            return web.json_response({"question": exc.code, "message": exc.message, "detail": exc.detail})
        except CaptureRefused as exc:
            return _answer(exc.status, exc.code, exc.message)
        except NotFixable as exc:
            return _answer(409, "not_fixable", str(exc))
        except UsageError as exc:
            # The command line's rules, shared with the page (a rejected fill resubmitted already): its
            # message says what to do.
            return _answer(409, "not_possible", str(exc))
        except ConfigError as exc:
            return _answer(400, "config", str(exc))
        except TokenRefused:
            return _answer(502, TokenRefused.CODE, TOKEN_REFUSED)
        except ApiError as exc:
            if exc.transient:
                return _answer(
                    503,
                    "offline",
                    f"The server cannot be reached right now ({exc.message}). What is saved here is safe.",
                )
            return _answer(502, exc.code or "refused", f"The server refused: {exc.message}", exc.detail)

    return answer_errors
