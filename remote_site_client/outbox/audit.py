"""The outbox's own audit: who fixed or discarded a refused fill, when and why.

Rows are only ever appended. They stay on the site's computer (the server never saw a discarded fill),
so an inspector, or the pharmacist on the phone, can ask the site what became of it.
"""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from remote_site_client.outbox.store import Store


@dataclass(frozen=True)
class AuditRow:
    at: float
    fill_id: str
    action: str
    actor: str
    reason: str
    detail: dict[str, Any]


class AuditTrail(Store):
    def _audit(
        self,
        db: sqlite3.Connection,
        fill_id: str,
        action: str,
        actor: str,
        reason: str,
        detail: dict[str, Any],
        *,
        now: float | None = None,
    ) -> None:
        """Appends one row, inside the caller's transaction (the change and its record commit together)."""
        db.execute(
            "INSERT INTO audit (at, fill_id, action, actor, reason, detail) VALUES (?, ?, ?, ?, ?, ?)",
            (time.time() if now is None else now, fill_id, action, actor, reason, json.dumps(detail)),
        )

    def audit_log(self, fill_id: str | None = None) -> list[AuditRow]:
        """The audit rows, oldest first; of one fill (and the fills it was replaced by) when given."""
        if fill_id is None:
            rows = self.db.execute("SELECT * FROM audit ORDER BY id").fetchall()
        else:
            rows = self.db.execute("SELECT * FROM audit WHERE fill_id = ? ORDER BY id", (fill_id,)).fetchall()
        return [
            AuditRow(r["at"], r["fill_id"], r["action"], r["actor"], r["reason"], json.loads(r["detail"]))
            for r in rows
        ]
