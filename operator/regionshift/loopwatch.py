"""Watch the operator's event loop for stalls, and export the longest one.

kopf runs every ``async def`` handler, every watch stream and every daemon on one asyncio
event loop. Code that computes or blocks on that loop (a regression over weeks of history,
a synchronous API call, a large JSON decode) delays everything else: watch events queue up,
the gate of a dark pod waits, detection runs late. Such a stall is invisible in the logs,
so it is measured instead: a task sleeps :data:`INTERVAL_SECONDS` in a loop and takes its
lateness (how much later than asked it woke up) as the length of the stall it just sat
through. The worst lateness since start is the gauge
``regionshift_event_loop_lag_max_seconds``; each new worst over :data:`WARN_SECONDS` is also
logged, so a stall can be matched with what the operator was doing, with the CPU time the
loop's thread used during it: a stall the loop spent running is its own work (a handler
computing on the loop); one it spent waiting is the GIL, held by a worker thread, or a CPU,
taken by other processes.

The watch is started once per event loop by a ``@kopf.on.startup`` handler and ends with
the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Gauge

from regionshift.metrics import EVENT_LOOP_LAG_SECONDS

__all__ = ["INTERVAL_SECONDS", "WARN_SECONDS", "start_loop_watch", "watch_loop"]

INTERVAL_SECONDS = 0.02
"""How often the watch wakes: a stall shorter than this may go unseen."""
WARN_SECONDS = 0.1
"""A new worst stall longer than this is logged as a warning."""

log = logging.getLogger(__name__)
_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


async def watch_loop(
    *, interval_seconds: float = INTERVAL_SECONDS, gauge: Gauge = EVENT_LOOP_LAG_SECONDS,
    warn_seconds: float = WARN_SECONDS,
) -> None:
    """Sleep ``interval_seconds`` forever; keep the worst lateness in ``gauge``."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while True:
        asked = loop.time() + interval_seconds
        ran = time.thread_time()  # CPU time of this (the loop's) thread; no system call that gives the GIL away
        await asyncio.sleep(interval_seconds)
        lateness = loop.time() - asked
        if lateness > worst:
            worst = lateness
            gauge.set(worst)
            if worst > warn_seconds:
                ran = time.thread_time() - ran
                log.warning("the event loop stalled for %.0f ms (the longest so far; its thread ran %.0f ms of"
                            " it and waited the rest for the GIL or a CPU)", worst * 1000, min(ran, worst) * 1000)


def start_loop_watch(*, interval_seconds: float = INTERVAL_SECONDS) -> asyncio.Task[None]:
    """Start :func:`watch_loop` on the running loop, once per loop; returns its task."""
    loop = asyncio.get_running_loop()
    for other in [known for known in _tasks if known.is_closed()]:
        del _tasks[other]
    task = _tasks.get(loop)
    if task is None or task.done():
        task = loop.create_task(watch_loop(interval_seconds=interval_seconds), name="regionshift-loop-watch")
        _tasks[loop] = task
    return task
