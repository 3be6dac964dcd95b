"""The operator's worker threads, all started before the work comes.

A :class:`~concurrent.futures.ThreadPoolExecutor` starts its threads one per submit, as
work arrives, and ``Thread.start`` waits until the new thread runs: the new thread needs
the GIL to begin, and in a storm of work (500 DarkClusters' first reconciles, detection's
and sizing's reads) it waits behind every busy thread, with the event loop waiting for it.
py-spy caught the loop so in a 342 ms stall at 500 DarkClusters. Started at start-up, when
nothing competes, a pool's threads cost that wait once, and a few megabytes of stack.

:func:`start_all` starts the threads of the event loop's default executor (``asyncio.to_thread``,
``run_in_executor(None, ...)``: the size Python would pick) and of the DarkCluster
controller's two pools.
"""

from __future__ import annotations

import asyncio
import os
import threading
from concurrent.futures import ThreadPoolExecutor

from regionshift.controllers import darkcluster

__all__ = ["DEFAULT_WORKERS", "prestart", "start_all"]

DEFAULT_WORKERS = min(32, (os.cpu_count() or 1) + 4)
"""Threads of the event loop's default executor: what Python gives it when it makes it itself."""
_PRESTART_TIMEOUT_SECONDS = 10.0


def prestart(executor: ThreadPoolExecutor, *, workers: int) -> None:
    """Start ``workers`` threads of ``executor`` now (it starts one per submit that finds none idle).

    Each of ``workers`` tasks waits until all have started, so no thread takes two of them.
    """
    everyone = threading.Barrier(workers, timeout=_PRESTART_TIMEOUT_SECONDS)

    def wait_for_the_others() -> None:
        try:
            everyone.wait()
        except threading.BrokenBarrierError:  # a pool that starts fewer threads: started what it could
            pass

    for _ in range(workers):
        executor.submit(wait_for_the_others)


def start_all() -> None:
    """The event loop's default executor and the DarkCluster controller's pools, started (on the running loop)."""
    default = ThreadPoolExecutor(max_workers=DEFAULT_WORKERS, thread_name_prefix="asyncio")
    asyncio.get_running_loop().set_default_executor(default)
    prestart(default, workers=DEFAULT_WORKERS)
    for executor, workers in darkcluster.executors():
        prestart(executor, workers=workers)
