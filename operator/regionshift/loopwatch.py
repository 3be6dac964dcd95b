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

The garbage collector is watched too (:func:`watch_collections`): a collection holds the
GIL from start to end, in whichever thread happened to allocate, and a full one over a
large heap takes tens of milliseconds. Each collection's pause goes into the histogram
``regionshift_gc_pause_seconds`` (by generation), and a stall's log line says how much of
it collections took and in which thread.

The watch is started once per event loop by a ``@kopf.on.startup`` handler and ends with
the loop.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import logging
import threading
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

from regionshift.metrics import EVENT_LOOP_LAG_SECONDS, EVENT_LOOP_LATENESS_SECONDS, EVENT_LOOP_STALLS, GC_PAUSE_SECONDS

__all__ = ["INTERVAL_SECONDS", "WARN_SECONDS", "collections_between", "start_loop_watch", "watch_collections",
           "watch_loop"]

INTERVAL_SECONDS = 0.02
"""How often the watch wakes: a stall shorter than this may go unseen."""
WARN_SECONDS = 0.1
"""A stall longer than this is counted and logged (a new worst as a warning)."""

log = logging.getLogger(__name__)
_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = {}
_collections: collections.deque[tuple[float, float, int, str]] = collections.deque(maxlen=1000)
"""The latest garbage collections: (end, pause, generation, thread name), end on the ``time.monotonic`` clock."""
_collection_began = 0.0


def _on_collection(phase: str, info: dict[str, Any]) -> None:
    """``gc.callbacks`` hook: time each collection (it holds the GIL, so one runs at a time)."""
    global _collection_began
    now = time.monotonic()
    if phase == "start":
        _collection_began = now
    else:  # only remembered here (no lock taken inside the collector's callback); the loop watch reports them
        _collections.append((now, now - _collection_began, int(info.get("generation", -1)),
                             threading.current_thread().name))


def watch_collections() -> None:
    """Time every garbage collection of this process from now on (once; :func:`collections_between` reads them)."""
    if _on_collection not in gc.callbacks:
        gc.callbacks.append(_on_collection)


def collections_between(start: float, end: float) -> list[tuple[float, float, int, str]]:
    """The collections that ended between ``start`` and ``end`` (``time.monotonic``): (end, pause, generation, thread)."""
    return [c for c in list(_collections) if start <= c[0] <= end]


def _report_collections(histogram: Histogram, reported: float) -> float:
    """Observe the pauses of the collections that ended since ``reported``; returns the latest end seen."""
    latest = reported
    for end, pause, generation, _ in collections_between(reported, float("inf")):
        if end > reported:
            histogram.labels(str(generation)).observe(pause)
            latest = max(latest, end)
    return latest


async def watch_loop(
    *, interval_seconds: float = INTERVAL_SECONDS, gauge: Gauge = EVENT_LOOP_LAG_SECONDS,
    warn_seconds: float = WARN_SECONDS, stalls: Counter = EVENT_LOOP_STALLS,
    lateness_seconds: Histogram | None = EVENT_LOOP_LATENESS_SECONDS, gc_pauses: Histogram = GC_PAUSE_SECONDS,
) -> None:
    """Sleep ``interval_seconds`` forever; keep the worst lateness in ``gauge``, count and log each over ``warn_seconds``.

    Every lateness also goes into the histogram ``lateness_seconds``: how near the stalls
    under ``warn_seconds`` come to it."""
    loop = asyncio.get_running_loop()
    worst = 0.0
    reported = time.monotonic()
    while True:
        reported = _report_collections(gc_pauses, reported)
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
            now = time.monotonic()
            during = collections_between(now - lateness - interval_seconds, now)
            pauses = sum(pause for _, pause, _, _ in during)
            log.log(logging.WARNING if lateness >= worst else logging.INFO,
                    "the event loop stalled for %.0f ms (%s; its thread ran %.0f ms of it and waited the rest for the"
                    " GIL or a CPU; garbage collections took %.0f ms of it%s)", lateness * 1000,
                    "the longest so far" if lateness >= worst else "not the longest", ran * 1000, pauses * 1000,
                    "".join(f", {p * 1000:.0f} ms of generation {g} in {t}" for _, p, g, t in during if p >= 0.005))


def start_loop_watch(*, interval_seconds: float = INTERVAL_SECONDS) -> asyncio.Task[None]:
    """Start :func:`watch_loop` on the running loop, once per loop; returns its task."""
    loop = asyncio.get_running_loop()
    watch_collections()
    for other in [known for known in _tasks if known.is_closed()]:
        del _tasks[other]
    task = _tasks.get(loop)
    if task is None or task.done():
        task = loop.create_task(watch_loop(interval_seconds=interval_seconds), name="regionshift-loop-watch")
        _tasks[loop] = task
    return task
