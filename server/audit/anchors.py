"""Checkpoints of the audit chain's head, kept outside the database and signed.

The hash chain shows an edited or removed row in the middle, but not the newest rows deleted, nor the
whole chain rewritten by someone holding the database: either leaves a chain that verifies. So the
server writes the head (the last row's id and hash) to a file in its data folder at start, at least
hourly while rows are added, and at shutdown, each line signed with an Ed25519 key that lives only in
that folder. `verify` then finds every anchored row still there with the hash it had.

An anchor is a line of `audit/anchors.jsonl`: {"at", "id", "hash", "sig"}, the signature over
"tp-audit-anchor", the id, the hash and the time. The public key beside it (`anchor-key.pub.pem`)
is all a checker needs; keep a copy of it, and of the anchors, away from the server too.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy import select

from server.db.engine import Database
from server.db.models import AuditEvent

FOLDER = "audit"
KEY_FILE = "anchor-key.pem"
PUBLIC_FILE = "anchor-key.pub.pem"
ANCHORS_FILE = "anchors.jsonl"
# The anchor up to which a walk of the chain last found it whole: where the next walk begins.
CHECKPOINT_FILE = "verified.json"
# Rows looked up per statement when checking anchors.
CHECK_BATCH = 500


def _write_whole(path: Path, data: bytes, mode: int, *, replace: bool) -> None:
    """Puts `data` at `path` whole or not at all: written to a temporary file beside it and synced, then
    moved in (`replace`) or linked in unless `path` exists already (FileExistsError is not raised: the
    file there is kept). The temporary file goes in every case."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}")
    try:
        with open(os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if replace:
            os.replace(temporary, path)
        else:
            with contextlib.suppress(FileExistsError):
                os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the new name on disk too
    finally:
        os.close(folder)


def _holds_public_key(path: Path) -> bool:
    try:
        return isinstance(serialization.load_pem_public_key(path.read_bytes()), Ed25519PublicKey)
    except (FileNotFoundError, ValueError):
        return False


@dataclass(frozen=True)
class Anchor:
    at: dt.datetime
    id: int
    hash: str
    sig: str

    def message(self) -> bytes:
        return f"tp-audit-anchor\n{self.id}\n{self.hash}\n{self.at.isoformat()}".encode()


@dataclass(frozen=True)
class AnchorReport:
    ok: bool
    anchors: int
    latest: Anchor | None = None
    problem: str | None = None


class AnchorFile:
    """The signing key and the anchors of one server's data folder."""

    def __init__(self, data_dir: Path) -> None:
        self.folder = data_dir / FOLDER

    @property
    def path(self) -> Path:
        return self.folder / ANCHORS_FILE

    def _private_key(self) -> Ed25519PrivateKey:
        """The server's key, made on first use (readable by its owner only), with its public half.

        Each file is written whole or not at all: a disk that fills up, or a crash, while the key is
        made leaves no partial file for the next anchor to trip over, and the next one makes it again.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / KEY_FILE
        if path.exists() and path.stat().st_size == 0:
            # Left by a write cut short before this version: it never signed anything.
            path.unlink()
        if not path.exists():
            made = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            _write_whole(path, made, 0o600, replace=False)  # if another process made one first, theirs
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, Ed25519PrivateKey)
        public = self.folder / PUBLIC_FILE
        if not _holds_public_key(public):
            public_pem = key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            _write_whole(public, public_pem, 0o644, replace=True)
        return key

    def public_key(self) -> Ed25519PublicKey | None:
        path = self.folder / PUBLIC_FILE
        if not path.exists():
            return None
        key = serialization.load_pem_public_key(path.read_bytes())
        assert isinstance(key, Ed25519PublicKey)
        return key

    def write_unless_last(self, current: tuple[int, str], at: dt.datetime) -> Anchor | None:
        """Writes the head as an anchor unless it is the last one written."""
        last = self.last()
        if last is not None and (last.id, last.hash) == current:
            return None
        return self.write(current[0], current[1], at)

    def write(self, row_id: int, row_hash: str, at: dt.datetime) -> Anchor:
        """Appends a signed anchor and syncs it to disk before returning."""
        key = self._private_key()
        unsigned = Anchor(at, row_id, row_hash, "")
        anchor = Anchor(at, row_id, row_hash, base64.b64encode(key.sign(unsigned.message())).decode())
        line = json.dumps({"at": at.isoformat(), "id": row_id, "hash": row_hash, "sig": anchor.sig}) + "\n"
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
            os.fsync(fh.fileno())
        return anchor

    def read(self) -> list[Anchor]:
        """Every anchor written, oldest first; ValueError naming a line that is not one."""
        if not self.path.exists():
            return []
        out = []
        for number, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
                out.append(
                    Anchor(
                        dt.datetime.fromisoformat(item["at"]), int(item["id"]), str(item["hash"]), item["sig"]
                    )
                )
            except (ValueError, KeyError, TypeError) as exc:
                raise ValueError(f"line {number} of {self.path} is not an anchor ({exc})") from None
        return out

    def last(self) -> Anchor | None:
        anchors = self.read()
        return anchors[-1] if anchors else None

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / CHECKPOINT_FILE

    def mark_verified(self, anchor: Anchor, at: dt.datetime) -> None:
        """Records that the chain was found whole up to this anchor's row (written whole or not at all)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        body = {
            "id": anchor.id,
            "hash": anchor.hash,
            "at": anchor.at.isoformat(),
            "verified_at": at.isoformat(),
        }
        part = self.checkpoint_path.with_suffix(".part")
        with part.open("w", encoding="utf-8") as fh:
            json.dump(body, fh)
            fh.flush()
            os.fsync(fh.fileno())
        part.replace(self.checkpoint_path)

    def checkpoint(self) -> tuple[Anchor, dt.datetime] | None:
        """The anchor last verified up to, and when; None when there is none, or it names no anchor of
        the file (then a walk begins at the start)."""
        try:
            item = json.loads(self.checkpoint_path.read_text(encoding="utf-8"))
            key = (int(item["id"]), str(item["hash"]), dt.datetime.fromisoformat(item["at"]))
            verified_at = dt.datetime.fromisoformat(item["verified_at"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        for anchor in self.read():
            if (anchor.id, anchor.hash, anchor.at) == key:
                return anchor, verified_at
        return None


async def head(db: Database) -> tuple[int, str] | None:
    """The chain's newest row: (id, hash)."""
    async with db.read() as s:
        row = (
            await s.execute(select(AuditEvent.id, AuditEvent.hash).order_by(AuditEvent.id.desc()).limit(1))
        ).first()
    return (row.id, row.hash) if row else None


async def anchor_head(db: Database, anchors: AnchorFile, now: dt.datetime) -> Anchor | None:
    """Writes the head as an anchor unless it is anchored already; the anchor written, or None. The
    file is written and synced in a thread, off the event loop."""
    current = await head(db)
    if current is None:
        return None
    return await asyncio.to_thread(anchors.write_unless_last, current, now)


async def _gone(db: Database, a: Anchor) -> str:
    """What an anchored row missing from the database means. Past the chain's end, either its newest
    rows were deleted or the database is a copy older than the anchors (restored from a backup that
    copied audit/ after it): said both ways, as only the operator knows which."""
    said = f"row {a.id}, anchored at {a.at.isoformat(timespec='seconds')}, is gone: "
    newest = await head(db)
    if newest is None or newest[0] < a.id:
        ends = f"the chain ends at row {newest[0]}" if newest else "the chain has no rows"
        return (
            said + f"{ends}, so rows after it were deleted, or the database was restored from a copy made "
            "before this anchor was written"
        )
    return said + "rows were deleted"


async def check(db: Database, anchors: AnchorFile) -> AnchorReport:
    """Every anchor's signature holds and its row is in the database with the hash it had."""
    try:
        written = anchors.read()
    except ValueError as exc:
        return AnchorReport(False, 0, problem=str(exc))
    if not written:
        return AnchorReport(True, 0)
    key = anchors.public_key()
    if key is None:
        return AnchorReport(False, len(written), problem=f"anchors without their public key ({PUBLIC_FILE})")
    for a in written:
        try:
            key.verify(base64.b64decode(a.sig), a.message())
        except (InvalidSignature, ValueError):
            return AnchorReport(
                False, len(written), a, f"the anchor of row {a.id} at {a.at} is not signed by the key"
            )
    for start in range(0, len(written), CHECK_BATCH):
        batch = written[start : start + CHECK_BATCH]
        async with db.read() as s:
            found = dict(
                (
                    await s.execute(
                        select(AuditEvent.id, AuditEvent.hash).where(AuditEvent.id.in_([a.id for a in batch]))
                    )
                ).all()
            )
        for a in batch:
            if a.id not in found:
                return AnchorReport(False, len(written), a, await _gone(db, a))
            if found[a.id] != a.hash:
                return AnchorReport(
                    False,
                    len(written),
                    a,
                    f"row {a.id} has another hash than when it was anchored at "
                    f"{a.at.isoformat(timespec='seconds')}: the chain was rewritten",
                )
    return AnchorReport(True, len(written), written[-1])
