"""A prescription as read from a pharmacy system's message, and the problems that refuse a message."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Issue:
    """One problem with a message: a FHIR issue type code, what is wrong, and the element it is in."""

    code: str
    diagnostics: str
    expression: str


class MessageRejected(Exception):
    """The message cannot be taken; nothing of it was stored."""

    def __init__(self, issues: list[Issue], *, status: int = 400) -> None:
        super().__init__("; ".join(f"{i.expression}: {i.diagnostics}" for i in issues))
        self.issues = issues
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        # Raised in a worker process and raised again in the server's: pickled with its issues.
        return (_rejected, (self.issues, self.status))


def _rejected(issues: list[Issue], status: int) -> MessageRejected:
    return MessageRejected(issues, status=status)


@dataclass
class Received:
    """One prescription of a message: the prescription body it maps to, the sender's identifier of it,
    the element each field came from (to name it in an error), problems found while reading it, and
    reference codes the body has no field for."""

    body: dict[str, Any]
    source_id: str
    elements: dict[str, str]
    issues: list[Issue] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
