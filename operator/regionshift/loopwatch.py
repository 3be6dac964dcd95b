"""Watch the operator's event loop for stalls, and export the longest one.

kopf runs every ``async def`` handler, every watch stream and every daemon on one asyncio
event loop. Code that computes or blocks on that loop (a regression over weeks of history,
a synchronous API call, a large JSON decode) delays everything else: watch events queue up,
the gate of a dark pod waits, detection runs late. Such a stall is invisible in the logs,
so it is measured instead: a task sleeps :data:`INTERVAL_SECONDS` in a loop and takes its
lateness (how much later than asked it woke up) as the length of the stall it just sat
through. The worst lateness since start is the gauge
``regionshift_event_loop_lag_max_seconds``, every lateness goes into the histogram
``regionshift_event_loop_lateness_seconds`` (how close the others come); every stall over :data:`WARN_SECONDS` is counted
(``regionshift_event_loop_stalls_total``) and logged (a new worst as a warning, the others
at INFO), so a stall can be matched with what the operator was doing, with the CPU time the
loop's thread used during it: a stall the loop spent running is its own work (a handler
computing on the loop, counted as ``own_work`` when that is most of it); one it spent
waiting is the GIL, held by a worker thread, or a CPU, taken by other processes.

The watch is started once per event loop by a ``@kopf.on.startup`` handler and ends with
the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time

from prometheus_client import Counter, Gauge, Histogram

from regionshift.metrics import EVENT_LOOP_LAG_SECONDS, EVENT_LOOP_LATENESS_SECONDS, EVENT_LOOP_STALLS

__all__ = ["INTERVAL_SECONDS", "WARN_SECONDS", "start_loop_watch", "watch_loop"]

INTERVAL_SECONDS = 0.02
"""How often the watch wakes: a stall shorter than this may go unseen."""
WARN_SECONDS = 0.1
"""A stall longer than this is counted and logged (a new worst as a warning)."""

log = logging.getLogger(__name__)
_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}


async def watch_loop(
    *, interval_seconds: float = INTERVAL_SECONDS, gauge: Gauge = EVENT_LOOP_LAG_SECONDS,
    warn_seconds: float = WARN_SECONDS, stalls: Counter = EVENT_LOOP_STALLS,
    lateness_seconds: Histogram | None = EVENT_LOOP_LATENESS_SECONDS,
) -> None:
    """Sleep ``interval_seconds`` forever; keep the worst lateness in ``gauge``, count and log each over ``warn_seconds``.

    Every lateness also goes into the histogram ``lateness_seconds``: how near the stalls
    under ``warn_seconds`` come to it."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    while True:
        asked = loop.time() + interval_seconds
        ran = time.thread_time()  # CPU time of this (the loop's) thread; no system call that gives the GIL away
        await asyncio.sleep(interval_seconds)
        lateness = loop.time() - asked
        if lateness_seconds is not None:
            lateness_seconds.observe(lateness)
        if lateness > worst:
            worst = lateness
            gauge.set(worst)
        if lateness > warn_seconds:
            ran = min(time.thread_time() - ran, lateness)
            stalls.labels("own_work" if ran > lateness / 2 else "waited").inc()
            log.log(logging.WARNING if lateness >= worst else logging.INFO,
                    "the event loop stalled for %.0f ms (%s; its thread ran %.0f ms of it and waited the rest for the"
                    " GIL or a CPU)", lateness * 1000, "the longest so far" if lateness >= worst else "not the longest",
                    ran * 1000)


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
