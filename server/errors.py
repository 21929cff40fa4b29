"""Domain errors. Each carries the HTTP status it maps to, in one place, and a message safe to show."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any


def behind(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and every exception behind it, each once: what caused it or was being handled when it was
    raised, and the driver's error SQLAlchemy keeps as `orig`. Where a failure is told apart by its
    kind (a full disk, a bucket unreachable, a database refusing a connection), however wrapped."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        orig = getattr(e, "orig", None)
        todo.extend([e.__cause__, e.__context__, orig if isinstance(orig, BaseException) else None])


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
