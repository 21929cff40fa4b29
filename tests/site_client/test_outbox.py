"""The outbox keeps every submission, files included, before anything is sent; the config stays private."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from remote_site_client import config as site_config
from remote_site_client.backoff import delay
from remote_site_client.config import ConfigError, SiteConfig
from remote_site_client.outbox import CREATED, FAILED, PENDING, QUEUED, Outbox


def _files(tmp_path: Path) -> list[tuple[str, Path]]:
    out = []
    for kind in ("stock_bottle", "pills", "vial_label"):
        p = tmp_path / f"{kind}.jpg"
        p.write_bytes(os.urandom(1000) + kind.encode())
        out.append((kind, p))
    return out


def test_submission_is_stored_with_copies_of_its_files_before_any_network_call(tmp_path: Path) -> None:
    files = _files(tmp_path)
    with Outbox(tmp_path / "data") as outbox:
        fill_id = outbox.add(
            {"prescription_id": 7, "priority": "waiting", "barcodes": []}, files, rx_number="100234"
        )
    for _, src in files:
        src.unlink()  # the technician's camera roll may be emptied: the outbox has its own copies
    with Outbox(tmp_path / "data") as outbox:
        entry = outbox.get(fill_id)
        assert entry is not None
        assert entry.state == PENDING and entry.body["id"] == fill_id and entry.body["prescription_id"] == 7
        assert [f.kind for f in entry.files] == ["stock_bottle", "pills", "vial_label"]
        for f in entry.files:
            assert f.original.read_bytes().endswith(f.kind.encode())
            assert f.original_bytes == 1000 + len(f.kind)
        assert outbox.due() == [fill_id]


def test_an_entry_is_worked_by_one_live_process_at_a_time(tmp_path: Path) -> None:
    with Outbox(tmp_path / "data") as outbox:
        fill_id = outbox.add({"prescription_id": 1}, _files(tmp_path))
        # A process that died holding the lease does not block the entry.
        dead = subprocess.Popen([sys.executable, "-c", "pass"])
        dead.wait()
        outbox.db.execute(
            "UPDATE entries SET lease_pid = ?, lease_until = ? WHERE fill_id = ?",
            (dead.pid, time.time() + 60, fill_id),
        )
        assert outbox.acquire(fill_id)
        # A live one does.
        outbox.db.execute("UPDATE entries SET lease_pid = 1 WHERE fill_id = ?", (fill_id,))
        assert not outbox.acquire(fill_id)


def test_a_killed_sender_not_yet_reaped_does_not_hold_its_entries(tmp_path: Path) -> None:
    with Outbox(tmp_path / "data") as outbox:
        fill_id = outbox.add({"prescription_id": 1}, _files(tmp_path))
        sender = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        try:
            outbox.db.execute(
                "UPDATE entries SET lease_pid = ?, lease_until = ? WHERE fill_id = ?",
                (sender.pid, time.time() + 120, fill_id),
            )
            assert not outbox.acquire(fill_id)
            sender.kill()  # a zombie until its parent reaps it: its pid still answers signals
            deadline = time.monotonic() + 5
            while Path(f"/proc/{sender.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert outbox.acquire(fill_id)
        finally:
            sender.kill()
            sender.wait()


def test_failed_entries_keep_their_reason_and_can_be_sent_again(tmp_path: Path) -> None:
    with Outbox(tmp_path / "data") as outbox:
        fill_id = outbox.add({"prescription_id": 1}, _files(tmp_path))
        outbox.set_state(fill_id, CREATED)
        outbox.retry_later(fill_id, "The server cannot be reached", 60)
        assert outbox.due() == []
        assert outbox.get(fill_id).attempts == 1  # type: ignore[union-attr]
        outbox.mark_failed(fill_id, "The server refused the pills photo: not an image")
        entry = outbox.get(fill_id)
        assert entry is not None and entry.state == FAILED and "not an image" in (entry.failed_reason or "")
        assert outbox.requeue(fill_id)
        assert outbox.due() == [fill_id]


def test_originals_are_pruned_only_after_approval_and_retention(tmp_path: Path) -> None:
    with Outbox(tmp_path / "data") as outbox:
        approved = outbox.add({"prescription_id": 1}, _files(tmp_path))
        rejected = outbox.add({"prescription_id": 1}, _files(tmp_path))
        for fill_id in (approved, rejected):
            outbox.mark_queued(fill_id, "queued")
        outbox.record_decision(approved, "approved", "approve", [], None, now=time.time() - 3 * 86400)
        outbox.record_decision(
            rejected, "rejected", "reject", ["wrong_drug"], "x", now=time.time() - 3 * 86400
        )
        assert outbox.prune(retention_days=7) == []
        assert outbox.prune(retention_days=2) == [approved]
        assert not (outbox.files_dir / approved).exists()
        assert all(f.original.exists() for f in outbox.get(rejected).files)  # type: ignore[union-attr]
        assert outbox.get(approved).state == QUEUED  # type: ignore[union-attr]


def test_cursor_never_moves_back(tmp_path: Path) -> None:
    with Outbox(tmp_path / "data") as outbox:
        assert outbox.cursor("watch") is None
        outbox.set_cursor("watch", 10)
        outbox.set_cursor("watch", 4)
        assert outbox.cursor("watch") == 10


def test_config_file_is_private_and_refused_when_others_can_read_it(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "config.json"
    cfg = SiteConfig(server_url="http://x", token="secret-token", data_dir=tmp_path / "d")
    site_config.save(cfg, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert site_config.load(path) == cfg
    path.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        site_config.load(path)


def test_backoff_grows_with_jitter_up_to_the_cap() -> None:
    waits = [delay(n, 1.0, 60.0) for n in range(12)]
    assert 0.5 <= waits[0] <= 1.0
    assert 4.0 <= waits[3] <= 8.0
    assert all(30.0 <= w <= 60.0 for w in waits[6:])
    assert len({round(delay(5, 1.0, 60.0), 6) for _ in range(20)}) > 1


def test_a_setting_the_client_cannot_work_with_is_refused_naming_it(tmp_path: Path) -> None:
    """Enrolled with --retention-days -2, or with the file edited so: originals would be pruned at once,
    and --chunk-bytes -1 broke every upload. Refused at enrolment, and when the file is read."""
    with pytest.raises(
        ConfigError, match=r"^The setting retention_days must be a number from 0 to 3650, not -2\.$"
    ):
        SiteConfig(server_url="http://x", token="t", data_dir=tmp_path, retention_days=-2)
    with pytest.raises(ConfigError, match="jpeg_quality must be a number from 1 to 100, not 500"):
        SiteConfig(server_url="http://x", token="t", data_dir=tmp_path, jpeg_quality=500)
    path = tmp_path / "config.json"
    site_config.save(SiteConfig(server_url="http://x", token="t", data_dir=tmp_path), path)
    edited = json.loads(path.read_text())
    path.write_text(json.dumps({**edited, "chunk_bytes": -1}))
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}: The setting chunk_bytes must be"):
        site_config.load(path)
