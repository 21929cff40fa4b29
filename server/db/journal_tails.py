"""The ends of the append-only journals (the audit chain's last row, the event journal's last id) as a
writer knows them without reading them.

Appending to a journal takes its end. A transaction knows the ends it moved itself. On SQLite there is
one writer connection, and its driver (server.db.sqlite_driver) also remembers the ends its own commits
left: while no other connection has committed since, they are still the ends, and a transaction
appending to both journals runs no statement to read them. SQLite says whether another connection
committed: `PRAGMA data_version`, read under the write lock as the transaction begins, changes only
then. A transaction that failed, or a commit that raised, leaves nothing remembered: the next one reads
the ends from the tables.

On PostgreSQL several server instances append to the same journals, so each transaction reads the
ends from the tables under the journal lock (as it takes the lock, server.db.engine); it knows only
what it read and appended itself.
"""

from __future__ import annotations

from dataclasses import dataclass

# The audit chain's end: its last row's id and hash; (0, GENESIS) when it is empty.
AuditEnd = tuple[int, str]


@dataclass
class _Ends:
    audit: AuditEnd | None = None
    events: int | None = None

    def update(self, other: _Ends) -> None:
        if other.audit is not None:
            self.audit = other.audit
        if other.events is not None:
            self.events = other.events

    def __bool__(self) -> bool:
        return self.audit is not None or self.events is not None


class JournalTails:
    """The journals' ends as one connection's transactions left them.

    The appenders ask `audit()` / `events()` (None: read it from the table) and say where they left
    each end (`audit_appended`, `events_appended`). The SQLite driver says how each write transaction
    began and ended (`began`, `committed`, `failed`, `ended`). An instance that never hears of a
    begun write transaction knows only what the transaction under way appended.
    """

    def __init__(self) -> None:
        # As the commits of this connection left them, valid while data_version is `_remembered_at`.
        self._remembered = _Ends()
        self._remembered_at: int | None = None
        # data_version as the write transaction under way found it (None: not known to be one).
        self._began_at: int | None = None
        # Where the transaction under way moved the ends; remembered once it commits.
        self._appended = _Ends()

    def audit(self) -> AuditEnd | None:
        """The audit chain's last row (id, hash) when known without reading it; None: read it."""
        if self._appended.audit is not None:
            return self._appended.audit
        return self._remembered.audit if self._still_valid() else None

    def events(self) -> int | None:
        """The event journal's last id when known without reading it; None: read it."""
        if self._appended.events is not None:
            return self._appended.events
        return self._remembered.events if self._still_valid() else None

    def found(self, audit: AuditEnd | None, events: int) -> None:
        """The ends the transaction read under the journal lock (audit None: the chain has no row)."""
        if audit is not None:
            self._appended.audit = audit
        self._appended.events = events

    def audit_appended(self, end: AuditEnd) -> None:
        """The transaction appended the chain's row `end` (id, hash)."""
        self._appended.audit = end

    def events_appended(self, last_id: int) -> None:
        """The transaction appended the event `last_id`."""
        self._appended.events = last_id

    def _still_valid(self) -> bool:
        return self._began_at is not None and self._began_at == self._remembered_at

    def began(self, data_version: int) -> None:
        """A write transaction began; `data_version` was read under its write lock."""
        self._began_at = data_version

    def committed(self) -> None:
        """The transaction under way committed: the ends it moved are remembered."""
        appended, began_at = self._appended, self._began_at
        self.ended()
        if not appended or began_at is None:
            return
        # The connection's own commits leave its data_version as it was: the next transaction finds
        # `began_at` again unless another connection commits meanwhile.
        if began_at != self._remembered_at:
            self._remembered = _Ends()
        self._remembered.update(appended)
        self._remembered_at = began_at

    def failed(self) -> None:
        """The transaction under way failed (rolled back, or its commit raised): whatever made it fail
        might have been a stale end, so nothing is remembered."""
        self.ended()
        self._remembered, self._remembered_at = _Ends(), None

    def ended(self) -> None:
        """The transaction under way ended without a commit of its own: its ends are dropped."""
        self._appended, self._began_at = _Ends(), None
