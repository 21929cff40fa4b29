"""Logging that never carries patient data."""

from __future__ import annotations

import logging

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


def keep_patient_data_out_of_logs() -> None:
    """Pins the loggers that would print SQL parameters to WARNING, whatever the root level is."""
    for name in PARAMETER_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(level: int = logging.INFO) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
