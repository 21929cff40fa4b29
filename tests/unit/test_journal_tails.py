"""The journals' ends known without reading them (server.db.journal_tails): on SQLite the writer goes on
from where its own commits left them, and reads them again after anyone else wrote or a transaction
failed; on PostgreSQL every transaction reads them as it takes the journal lock."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import IntegrityError

from server.audit import chain as audit
from server.db.engine import Database
from server.db.journal_tails import JournalTails
from server.realtime import journal

REPO = Path(__file__).resolve().parents[2]


def test_ends_a_commit_left_hold_until_another_connection_commits() -> None:
    tails = JournalTails()
    tails.began(7)
    assert tails.audit() is None and tails.events() is None  # nothing known yet: read them
    tails.audit_appended((1, "a" * 64))
    tails.events_appended(1)
    assert tails.audit() == (1, "a" * 64) and tails.events() == 1  # as this transaction left them
    tails.committed()

    tails.began(7)  # nobody else committed: data_version as before
    assert tails.audit() == (1, "a" * 64) and tails.events() == 1
    tails.events_appended(2)
    tails.committed()

    tails.began(8)  # another connection committed meanwhile
    assert tails.audit() is None and tails.events() is None
    tails.events_appended(9)
    tails.committed()
    tails.began(8)
    # Only what the transaction after the other writer appended is known again.
    assert tails.audit() is None and tails.events() == 9


def test_a_failed_transaction_leaves_nothing_known_and_one_that_just_ended_keeps_what_was() -> None:
    tails = JournalTails()
    tails.began(1)
    tails.audit_appended((1, "a" * 64))
    tails.committed()

    tails.began(1)
    tails.audit_appended((2, "b" * 64))
    tails.ended()  # nothing to commit (a ROLLBACK sent as a statement, say): its append is dropped
    tails.began(1)
    assert tails.audit() == (1, "a" * 64)

    tails.audit_appended((2, "b" * 64))
    tails.failed()  # rolled back, or its commit raised
    tails.began(1)
    assert tails.audit() is None


def test_a_transaction_whose_start_is_unknown_knows_only_its_own_appends() -> None:
    """As on PostgreSQL: no data_version, so nothing is taken from an earlier transaction."""
    tails = JournalTails()
    tails.audit_appended((1, "a" * 64))
    tails.committed()
    assert tails.audit() is None
    tails.audit_appended((2, "b" * 64))
    assert tails.audit() == (2, "b" * 64)


class _JournalReads:
    """Counts the statements that read a journal's end (the audit chain's last row, the last event id;
    on PostgreSQL both, as the journal lock is taken)."""

    def __init__(self, db: Database) -> None:
        self.count = 0
        self.lock_and_read = 0
        event.listen(db.write_engine.sync_engine, "before_cursor_execute", self._seen)

    def _seen(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "ORDER BY audit_events.id DESC" in statement or "max(events.id)" in statement:
            self.count += 1
        if "tp_lock_journal" in statement:
            self.lock_and_read += 1


async def _append_both(db: Database, i: int, *, fail: bool = False, unfit: bool = False) -> None:
    """One transaction that appends to the audit chain once and to the event journal twice. `fail`:
    it fails after appending (rolled back); `unfit`: its commit raises."""
    async with db.write() as s:
        # As every change does, it reads what it changes first: that statement begins the transaction.
        await s.execute(text("SELECT count(*) FROM fills"))
        await audit.append(db, s, None, "test.appended", "test", i)
        await journal.record(db, s, "test.appended", site_id=None, us_state=None, payload={"i": i})
        await journal.record(db, s, "test.appended.again", site_id=None, us_state=None, payload={"i": i})
        if fail:
            raise RuntimeError("the transaction fails after appending")
        if unfit:
            # Checked only at COMMIT: a reference to an audit row that does not exist.
            await s.execute(text("INSERT INTO held_for_commit (audit_id) VALUES (999999)"))


_OTHER_PROCESS = """
import asyncio, sys
from server.db.engine import Database
from tests.unit.test_journal_tails import _append_both

async def main() -> None:
    db = Database(sys.argv[1])
    try:
        await _append_both(db, 100)
    finally:
        await db.dispose()

asyncio.run(main())
"""


def _append_in_another_process(url: str) -> None:
    """An admin command on the same database file, say."""
    subprocess.run([sys.executable, "-c", _OTHER_PROCESS, url], cwd=REPO, check=True, timeout=60)


async def _event_ids(db: Database) -> list[int]:
    async with db.read() as s:
        return list((await s.execute(text("SELECT id FROM events ORDER BY id"))).scalars())


async def test_the_writer_reads_the_journals_ends_again_only_after_someone_else_wrote(tmp_path: Path) -> None:
    """The audit chain and the event journal go on from where the server's own commits left them
    without reading them again; after another process wrote, a transaction failed or a commit raised,
    they are read again, so the chain stays whole and no id is handed out twice."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    db = Database(url)
    await db.create_schema()
    async with db.write() as s:
        await s.execute(
            text(
                "CREATE TABLE held_for_commit (audit_id INTEGER"
                " REFERENCES audit_events (id) DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    reads = _JournalReads(db)
    try:
        for i in range(5):
            await _append_both(db, i)
        assert reads.count == 2  # once each, in the first transaction

        await asyncio.to_thread(_append_in_another_process, url)
        await _append_both(db, 5)
        assert reads.count == 4

        with pytest.raises(RuntimeError):
            await _append_both(db, 6, fail=True)
        await _append_both(db, 7)
        assert reads.count == 6  # the failed one found them known; the next one read them again

        with pytest.raises(IntegrityError):
            await _append_both(db, 8, unfit=True)
        await _append_both(db, 9)
        assert reads.count == 8  # as after the failed one

        report = await audit.verify(db)
        assert report.ok and report.rows == 9
        assert await _event_ids(db) == list(range(1, 19))
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_on_postgresql_every_transaction_reads_the_journals_ends(postgres_url: str) -> None:
    """Several instances append to the same journals: each transaction reads both ends once, in the
    statement that takes the journal lock, and its later appends follow its own."""
    db = Database(postgres_url)
    await db.create_schema()
    reads = _JournalReads(db)
    try:
        for i in range(3):
            await _append_both(db, i)
        # One read more, once: the first transaction found the chain empty, and reads its start.
        assert (reads.lock_and_read, reads.count) == (3, 1)
        assert (await audit.verify(db)).ok
        assert await _event_ids(db) == list(range(1, 7))
    finally:
        await db.dispose()


@pytest.mark.postgres
async def test_on_postgresql_instances_appending_at_once_read_the_ends_each_left(postgres_url: str) -> None:
    """Two instances' transactions wait for the journal lock at once: each reads the ends as the one
    before it committed them (not as they were when it began waiting), so the chain stays whole and no
    event id is handed out twice."""
    one, two = Database(postgres_url), Database(postgres_url)
    await one.create_schema()
    try:
        await asyncio.gather(*(_append_both((one, two)[i % 2], i) for i in range(16)))
        report = await audit.verify(one)
        assert report.ok and report.rows == 16
        assert await _event_ids(one) == list(range(1, 33))
    finally:
        await one.dispose()
        await two.dispose()
