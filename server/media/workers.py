"""The media worker processes: what they preload, how they keep their heap, their priority, and a
warm-up so the first upload does not wait."""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import multiprocessing
import os
import select
import signal
import threading
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from server.media.store import MediaStore

T = TypeVar("T")
log = logging.getLogger(__name__)

# Only what image and video work needs: a worker that imported the whole server would cost ~100 MB more.
PRELOAD = ["server.media.images", "server.media.video", "server.evidence.photo_quality"]

# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# A photo's decoded pixels (a 3 MP photo at half scale is 3 MB) come from the heap and go back to it
# for the next photo, instead of being handed to the kernel and faulted in again page by page: 600
# page faults for an upright 3 MP photo, 6000 for one turned upright. Larger buffers (a 12 MP photo
# decoded whole) are still mapped apart and returned at once, and at most this much free heap is
# kept: the memory a worker may hold idle.
HEAP_MMAP_THRESHOLD = 16 * 1024 * 1024
HEAP_TRIM_THRESHOLD = 32 * 1024 * 1024
# How much lower a worker's CPU priority is than the server's. The event loop's process coordinates
# every upload and holds SQLite's writer and the GIL while it runs: preempted by a worker, it held up
# every request. With the cores contended it now goes first, and the decoding takes what is left
# (all of it when the loop waits). Not the lowest (19): other work on the host still leaves workers
# a share.
WORKER_NICENESS = 10


def keep_heap() -> None:
    """Tells the C allocator to keep freed image buffers for reuse (glibc's; elsewhere nothing changes)."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the interpreter runs on
    except (OSError, AttributeError):
        return
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Fixing the thresholds also ends glibc's own adjusting of them.
    mallopt(_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)


def follow_server(server_pid: int) -> None:
    """Ends this process as soon as the server's process ends, however it ends (SIGKILL included).

    A worker's parent is the forkserver, not the server, so the kernel's parent-death signal cannot
    tell it; it watches the server's pid instead. The forkserver and multiprocessing's resource tracker
    end by themselves once the server and every worker are gone (their pipes reach end of file).
    """
    threading.Thread(target=_exit_with, args=(server_pid,), name="follow-server", daemon=True).start()


def _exit_with(pid: int) -> None:
    try:
        handle = os.pidfd_open(pid)
    except ProcessLookupError:
        os._exit(0)
    except OSError:  # a kernel without pidfd (before Linux 5.3): ask every half second
        while _alive(pid):
            threading.Event().wait(0.5)
        os._exit(0)
    select.select([handle], [], [])  # readable once the process has exited
    os._exit(0)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        pass
    return True


def start_worker(server_pid: int) -> None:
    """Runs first in each worker process: it ends with the server, its heap kept, its priority lowered.

    Ctrl-C in a terminal reaches every process of the server's group; a worker leaves it to the server,
    which finishes or cancels its jobs and then stops the workers (each would otherwise end on its own
    with a KeyboardInterrupt's traceback, mid-job)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    follow_server(server_pid)
    keep_heap()
    os.nice(WORKER_NICENESS)


def warm_up(store: MediaStore | None = None) -> int:
    """Runs in a worker: imports the media modules, and readies the store's blocking side, now rather
    than on the first upload."""
    import server.evidence.photo_quality
    import server.media.images
    import server.media.video  # noqa: F401

    if store is not None:
        store.prepare_blocking()

    return multiprocessing.current_process().pid or 0


class MediaWorkers(concurrent.futures.Executor):
    """Worker processes that are replaced when one dies (a decoder crashing on a file, the kernel's
    out-of-memory killer). A ProcessPoolExecutor is unusable for good once a worker has died: every
    upload after it would fail until the server restarted. Here the jobs that were running then fail
    with BrokenProcessPool, and the next job starts new workers."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._lock = threading.Lock()
        self._pool = self._start()

    def _start(self) -> concurrent.futures.ProcessPoolExecutor:
        # forkserver, not fork: the server has threads (database drivers), which fork would copy mid-state.
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return concurrent.futures.ProcessPoolExecutor(
            max_workers=self.workers, mp_context=ctx, initializer=start_worker, initargs=(os.getpid(),)
        )

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[T]:
        with self._lock:
            try:
                return self._pool.submit(fn, *args, **kwargs)
            except BrokenProcessPool:
                broken, self._pool = self._pool, self._start()
                log.warning("a media worker died; starting new ones")
                broken.shutdown(wait=False, cancel_futures=True)
                return self._pool.submit(fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._pool.shutdown(wait=wait, cancel_futures=cancel_futures)


def make_executor(workers: int) -> concurrent.futures.Executor:
    """Image decoding is CPU-bound: worker processes keep it off the event loop and the GIL."""
    if workers <= 0:
        return concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="media")
    return MediaWorkers(workers)
