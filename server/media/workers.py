"""The media worker processes: what they preload, and a warm-up so the first upload does not wait."""

from __future__ import annotations

import concurrent.futures
import multiprocessing

# Only what image and video work needs: a worker that imported the whole server would cost ~100 MB more.
PRELOAD = ["server.media.images", "server.media.video", "server.evidence.photo_quality"]


def warm_up() -> int:
    """Runs in a worker: imports the media modules now rather than on the first upload."""
    import server.evidence.photo_quality
    import server.media.images
    import server.media.video  # noqa: F401

    return multiprocessing.current_process().pid or 0


def make_executor(workers: int) -> concurrent.futures.Executor:
    """Image decoding is CPU-bound: worker processes keep it off the event loop and the GIL.

    forkserver, not fork: the server has threads (database drivers), which fork would copy mid-state.
    """
    if workers <= 0:
        return concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="media")
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return concurrent.futures.ProcessPoolExecutor(max_workers=workers, mp_context=ctx)
