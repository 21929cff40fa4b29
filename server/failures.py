"""A background task's failures in the server's log, as an operator on a full disk can bear them.

A task that retries every second or every few seconds, logging each failure with its traceback, fills
what little room a full disk has left. A storage failure (a full or unwritable data path) is logged
once, in one line, for as long as it lasts, and the task's next success once too; anything else is
logged each time with its traceback, as a fault to look into.
"""

from __future__ import annotations

import logging
from collections.abc import Callable


class RepeatedFailures:
    def __init__(
        self,
        log: logging.Logger,
        what: str,
        storage_failure: Callable[[BaseException], object | None],
        *,
        meanwhile: str,
        recovered: str,
    ) -> None:
        """`what` names the task ("writing the access log"); `storage_failure` finds the full or
        unwritable disk behind an exception (DataPaths.failure_in), whose text names the path, the
        reason and the errno; `meanwhile` says what happens until the task succeeds, `recovered` that
        it did."""
        self.log = log
        self.what = what
        self.storage_failure = storage_failure
        self.meanwhile = meanwhile
        self.recovered = recovered
        self.failing: object | None = None

    def failed(self, exc: BaseException) -> None:
        failure = self.storage_failure(exc)
        if failure is None:
            self.log.error("%s failed; will retry", self.what, exc_info=exc)
        elif failure != self.failing:
            self.failing = failure
            self.log.error("%s failed: %s; %s", self.what, failure, self.meanwhile)

    def succeeded(self) -> None:
        if self.failing is not None:
            self.failing = None
            self.log.info("%s", self.recovered)
