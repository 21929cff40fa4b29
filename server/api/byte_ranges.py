"""One stored media object over HTTP, whole or the byte range asked for (so videos seek).

Only what a MediaStore offers is used (its size, and reads of a range), so the same answer comes from
any store. An object never changes (it is named by its SHA-256), which is its ETag.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from server.media.store import MediaStore

# A range is read from the store and sent in pieces of at most this size: a photo in one.
_PIECE = 1024 * 1024


async def send_stored(
    request: web.Request, store: MediaStore, sha256: str, headers: Mapping[str, str]
) -> web.StreamResponse:
    """The object `sha256` with `headers`: 200 whole, 206 for a satisfiable Range, 416 otherwise, and
    304 when the client holds it already (If-None-Match)."""
    headers = {**headers, "ETag": f'"{sha256}"'}
    if request.if_none_match is not None and any(tag.value in (sha256, "*") for tag in request.if_none_match):
        return web.Response(status=304, headers=headers)
    size = await store.size(sha256)
    try:
        wanted = request.http_range
    except ValueError:
        return _unsatisfiable(headers, size)
    start, count, status = 0, size, 200
    if wanted.start is not None:
        start = wanted.start
        if start < 0 and wanted.stop is None:  # the last -start bytes
            start = max(start + size, 0)
            count = size - start
        else:
            count = min(wanted.stop if wanted.stop is not None else size, size) - start
        if start >= size:
            return _unsatisfiable(headers, size)
        status = 206
    response = web.StreamResponse(status=status, headers=headers)
    response.headers["Accept-Ranges"] = "bytes"
    if status == 206:
        response.headers["Content-Range"] = f"bytes {start}-{start + count - 1}/{size}"
    response.content_length = count
    await response.prepare(request)
    end = start + count
    while start < end:
        piece = await store.read(sha256, start, min(_PIECE, end - start))
        if not piece:
            break  # shorter than its size said (deleted meanwhile): the answer ends short, as a file's would
        await response.write(piece)
        start += len(piece)
    await response.write_eof()
    return response


def _unsatisfiable(headers: Mapping[str, str], size: int) -> web.Response:
    return web.Response(status=416, headers={**headers, "Content-Range": f"bytes */{size}"})
