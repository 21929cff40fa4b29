"""Logging that never carries patient data."""

from __future__ import annotations

import logging

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
