"""Logging that never carries patient data."""

from __future__ import annotations

import logging
import traceback

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web_request import BaseRequest
from aiohttp.web_response import StreamResponse

# These libraries log SQL with its bound parameters (patient names, dates of birth) at DEBUG/INFO.
PARAMETER_LOGGERS = (
    "aiosqlite",
    "sqlalchemy.engine",
    "sqlalchemy.pool",
    "asyncpg",
    "alembic.runtime.migration",
)


# aiohttp's own loggers record the exceptions of requests it could not parse or answer; the message of
# such an exception quotes the request (a parse error, the first hundred bytes of an over-long header:
# an Upload-Metadata filename, a cookie).
REQUEST_EXCEPTION_LOGGERS = ("aiohttp.server", "aiohttp.web", "aiohttp.websocket", "aiohttp.internal")


class ExceptionTypeAndFrames(logging.Filter):
    """Replaces a record's exception by its type and frames: its message and arguments stay out."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            frames = "".join(traceback.format_list(traceback.extract_tb(exc.__traceback__)))
            record.msg = f"{record.getMessage()}: {type(exc).__name__}" + (f"\n{frames}" if frames else "")
            record.args = ()
            record.exc_info = None
            record.exc_text = None
        return True


_EXCEPTION_TYPE_AND_FRAMES = ExceptionTypeAndFrames()


def keep_patient_data_out_of_logs() -> None:
    """Pins the loggers that would print SQL parameters to WARNING, whatever the root level is, and
    keeps the text of request exceptions out of aiohttp's records."""
    for name in PARAMETER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in REQUEST_EXCEPTION_LOGGERS:
        logging.getLogger(name).addFilter(_EXCEPTION_TYPE_AND_FRAMES)  # once: the same filter is kept once


# Loggers whose INFO lines say nothing to an operator: alembic's, each time a command opens the schema,
# one line per plugin it sets up (its migrations' own lines, "Running upgrade ...", stay).
QUIET_LOGGERS = ("alembic.runtime.plugins",)


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
    keep_patient_data_out_of_logs()


class AccessLog(AbstractAccessLogger):
    """One line per request: client, method, path, status, bytes sent and milliseconds taken.

    The path without its query string, and formatted only when the line is written (the root
    handler's timestamp serves): aiohttp's default format costs a strftime and a dict per request.
    """

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        self.logger.info(
            "%s %s %s %s %s %.1fms",
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time * 1000,
        )

    @property
    def enabled(self) -> bool:
        return self.logger.isEnabledFor(logging.INFO)
