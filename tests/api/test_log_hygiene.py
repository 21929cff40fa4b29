"""No request header reaches a log, even one the HTTP parser refuses."""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path

import pytest

from tests.api.world import build_world

# Fifteen bytes, so its base64 repeats every twenty characters whatever stretch of it is quoted.
SECRET = b"Zelda Uniquena-"
UNIT = base64.b64encode(SECRET).decode()


def _quoted(text: str) -> bool:
    """Whether `text` holds twelve characters or more of the repeated base64 at any offset."""
    return any((UNIT * 2)[i : i + 12] in text for i in range(len(UNIT)))


async def test_an_oversized_upload_metadata_header_is_refused_and_never_logged(
    tmp_path: Path, sqlite_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    world = await build_world(tmp_path, sqlite_url)
    try:
        # Longer than aiohttp's largest header field (8190 bytes): the parser refuses the request.
        metadata = f"filename {UNIT * 500}"
        assert len(metadata) > 8190 and _quoted(metadata)
        host, port = world.server.host, world.server.port
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(
            (
                f"POST /api/v1/uploads HTTP/1.1\r\nHost: {host}:{port}\r\nTus-Resumable: 1.0.0\r\n"
                f"Upload-Length: 10\r\nUpload-Metadata: {metadata}\r\n\r\n"
            ).encode()
        )
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
        writer.close()
        await writer.wait_closed()
    finally:
        await world.close()

    status = int(answer.split(b" ", 2)[1])
    assert 400 <= status < 500, answer[:200]
    refused = [r for r in caplog.records if r.name.startswith("aiohttp")]
    assert refused, "the refusal should be logged, by the exception's type"
    assert any("LineTooLong" in caplog.handler.format(r) for r in refused)
    for record in caplog.records:
        assert not _quoted(caplog.handler.format(record)), record.name
