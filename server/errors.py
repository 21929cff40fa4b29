"""Domain errors. Each carries the HTTP status it maps to, in one place, and a message safe to show."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, *, code: str | None = None, **detail: Any) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.detail = detail


class InvalidInput(DomainError):
    status = 400
    code = "invalid_input"


class NotAuthenticated(DomainError):
    status = 401
    code = "not_authenticated"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class NotYet(DomainError):
    """Well formed, but the fill is not ready for it: a flag unacknowledged, a photo unseen."""

    status = 422
    code = "not_yet"


class UnsupportedMediaType(DomainError):
    status = 415
    code = "unsupported_media_type"


class OutOfStorage(DomainError):
    """The server could not write its data (disk full or not writable): nothing of the request was kept,
    and the sender may try again later."""

    status = 507
    code = "out_of_storage"


class StorageUnavailable(DomainError):
    """The media's object storage could not be reached or refused the server: nothing of the request
    was lost (an upload stays, to be completed again), and the sender may try again shortly."""

    status = 503
    code = "storage_unavailable"


class TooManyRequests(DomainError):
    status = 429
    code = "too_many_requests"


class Locked(DomainError):
    """The console session sat idle past the idle time: proved again (password or second factor), it
    works again."""

    status = 423
    code = "locked"
