"""The small state kept between runs: each listener's websocket cursor, and the prescriptions last
fetched (so a technician can work from them while the link is down)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from remote_site_client.outbox.store import Store


class LocalState(Store):
    """Websocket cursors and the prescription cache."""

    def cursor(self, name: str) -> int | None:
        row = self.db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else None

    def set_cursor(self, name: str, value: int) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO cursors (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = MAX(value, excluded.value)",
                (name, value),
            )

    def cache_prescriptions(self, prescriptions: Sequence[dict[str, Any]]) -> None:
        now = time.time()
        with self.transaction() as db:
            for rx in prescriptions:
                db.execute(
                    "INSERT INTO prescriptions (id, data, fetched_at) VALUES (?, ?, ?)"
                    " ON CONFLICT(id) DO UPDATE SET data = excluded.data, fetched_at = excluded.fetched_at",
                    (int(rx["id"]), json.dumps(rx), now),
                )

    def cached_prescriptions(self) -> list[dict[str, Any]]:
        return [
            dict(json.loads(r[0])) for r in self.db.execute("SELECT data FROM prescriptions ORDER BY id DESC")
        ]

    def cached_prescription(
        self, *, rx_id: int | None = None, rx_number: str | None = None
    ) -> dict[str, Any] | None:
        """A cached prescription by its id or by its Rx number."""
        if rx_id is not None:
            row = self.db.execute("SELECT data FROM prescriptions WHERE id = ?", (rx_id,)).fetchone()
            return dict(json.loads(row[0])) if row else None
        for (data,) in self.db.execute("SELECT data FROM prescriptions ORDER BY id DESC"):
            rx = json.loads(data)
            if rx_number is not None and str(rx.get("rx_number")) == rx_number:
                return dict(rx)
        return None
