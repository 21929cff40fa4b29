"""Errors raised by media validation and storage."""

from __future__ import annotations


class MediaRejected(Exception):
    """An upload that cannot become evidence; `message` is safe to show a technician and holds no PHI."""

    def __init__(self, code: str, message: str) -> None:
        # Both go to args so the exception survives pickling across a ProcessPoolExecutor.
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class MediaNotFound(LookupError):
    """No stored object has this SHA-256."""


class ObjectStorageError(OSError):
    """The bucket could not be reached or refused a request; the message names the operation and the
    bucket's answer, never an object's content."""
