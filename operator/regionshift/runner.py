"""Run the operator: logging, kopf's event loop and /metrics, in a process or a thread.

``regionshift run`` calls :func:`configure_logging` and :func:`run_operator`; the demo, the
benchmarks and the session fixture of the test suite use :class:`OperatorThread` to run
the same operator in-process against a local cluster (tests of restarts run the real
process instead: ``tests/support/operator_process.py``).

The log is what an on-call engineer greps, so ERROR means "a human should look". A 409
Conflict is not such a thing: optimistic concurrency told a writer that someone else wrote
first, and the write is tried again from a fresh read. kopf logs a handler's
``TemporaryError`` and any exception it will retry at ERROR, with a traceback; the filter
here logs routine retries (a ``TemporaryError``, or any exception caused by a 409) as one
WARNING line, and kopf's Events for them become Warnings too. Everything else keeps its level
and its traceback.
"""

from __future__ import annotations

import asyncio
import atexit
import ctypes
import gc
import logging
import logging.handlers
import queue
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

import kopf

from regionshift.adapters import kube
from regionshift.controllers import registry  # noqa: F401  (importing it registers the handlers)
from regionshift.metrics import serve_metrics

__all__ = [
    "GC_YOUNG_THRESHOLD", "LOG_FORMAT", "MALLOC_ARENAS", "SWITCH_INTERVAL_SECONDS", "OperatorThread", "RoutineRetries", "configure_logging", "run_operator",
    "stop_logging",
]

log = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
"""One line per record: time, level, logger, message (tracebacks follow on their own lines)."""

_QUIET_LOGGERS = ("httpx", "httpcore", "aiohttp.access")
"""Libraries that log every request at INFO: one line a second per Prometheus query."""
SWITCH_INTERVAL_SECONDS = 0.001
"""How long a thread may hold the GIL while another waits for it (Python's default: 5 ms).

The event loop gives the GIL away at every system call (a socket read or write, a poll)
and then waits for it behind the worker threads (kopf's handlers, the reconciles, decoding
and fitting): with a few of them busy, a loop iteration of a few dozen system calls waited
hundreds of milliseconds. A shorter interval hands the GIL back sooner, at the price of
more switches between the threads."""
GC_YOUNG_THRESHOLD = 50_000
"""Allocations between two collections of the youngest generation (Python's default: 700).

A Prometheus answer or an API list decodes into thousands of lists and dicts that die
within milliseconds; collected every 700 allocations, they were caught alive and promoted,
and the promotions set off full collections over the whole heap (150-400 ms each, holding
the GIL, at 100 DarkClusters). Every 50,000 they are mostly gone by then."""
MALLOC_ARENAS = 2
"""glibc malloc arenas for the operator process (glibc's default: up to 8 per core).

Each of the operator's threads (kopf's handlers, the reconciles, the decoders) that
allocates at the same time as another gets an arena of its own, and memory freed in one
arena is not reused by the others: the resident set grows with the threads, not with the
work. Two arenas keep it to what the work holds."""
_listener: logging.handlers.QueueListener | None = None


class RoutineRetries(logging.Filter):
    """Demote records of routine retries from ERROR to one WARNING line without a traceback.

    Routine: kopf's "failed temporarily" (a handler raised ``kopf.TemporaryError``, kopf will
    call it again) and any record whose exception is, or was caused by, an HTTP 409 Conflict.
    The record is changed in place, so every handler after the filter sees the new level.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.ERROR:
            return True
        conflict = _conflict_in(record.exc_info[1] if record.exc_info else None)
        temporary = record.name.startswith("kopf.") and "failed temporarily: " in record.getMessage() \
            and "will time out" not in record.getMessage() and "will exceed" not in record.getMessage()
        if conflict is None and not temporary:
            return True
        if conflict is not None:
            record.msg = f"{record.getMessage()} (routine conflict, retried: {conflict})"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        record.levelno = logging.WARNING
        record.levelname = logging.getLevelName(logging.WARNING)
        return True


def _conflict_in(exc: BaseException | None) -> str | None:
    """A one-line description of the 409 Conflict in ``exc``'s chain of causes, if any.

    Only explicit causes (``raise ... from conflict``) count: an exception that merely
    happened while a conflict was being handled is a failure of its own.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "status", None) == 409 or getattr(exc, "code", None) == 409:
            return f"{type(exc).__name__} 409 {getattr(exc, 'reason', None) or 'Conflict'}"
        exc = exc.__cause__
    return None


def configure_logging(*, level: int = logging.INFO, background: bool = True) -> None:
    """Log to stderr in :data:`LOG_FORMAT`, with routine retries as WARNING (see the module doc).

    With ``background`` (the operator process), records are formatted where they are logged
    and written to stderr by a thread of their own (:class:`logging.handlers.QueueHandler`):
    a write to stderr is a system call, and on kopf's event loop each one gave the GIL away
    and waited to get it back from the worker threads (at 500 DarkClusters, kopf logs
    thousands of lines while the shadows start). :func:`stop_logging` writes what is queued.
    """
    global _listener
    stop_logging()
    routine = RoutineRetries()
    stream = logging.StreamHandler()
    stream.setFormatter(logging.Formatter(LOG_FORMAT))
    handler: logging.Handler = stream
    if background:
        records: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
        handler = logging.handlers.QueueHandler(records)
        handler.setFormatter(logging.Formatter("%(message)s"))  # the message and its traceback; the stream adds the rest
        _listener = logging.handlers.QueueListener(records, stream)
        _listener.start()
        atexit.register(stop_logging)
    handler.addFilter(routine)  # before the queue: the filter reads the exception, the queue drops it
    logging.basicConfig(level=level, handlers=[handler], force=True)
    # kopf posts its per-object records as Events from a handler of this logger: a filter on
    # the logger itself changes the record before that handler and the stream see it.
    logging.getLogger("kopf.objects").addFilter(routine)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))


def stop_logging() -> None:
    """Write the records still queued by :func:`configure_logging` and stop its thread."""
    global _listener
    if _listener is not None:
        _listener.stop()
        _listener = None


async def _operate(
    *,
    namespaces: list[str],
    ready_flag: threading.Event | None,
    stop_flag: threading.Event | None,
    liveness_endpoint: str | None = None,
) -> None:
    settings = kopf.OperatorSettings()
    settings.scanning.disabled = not any(_is_pattern(namespace) for namespace in namespaces)
    await kopf.operator(
        settings=settings,
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        ready_flag=ready_flag,
        stop_flag=stop_flag,
        liveness_endpoint=liveness_endpoint,
    )


def _is_pattern(namespace: str) -> bool:
    """Whether a ``--namespace`` is a kopf pattern (``t-*``, ``!kube-*``) rather than one namespace's name."""
    return any(char in namespace for char in "*?[!,")


def run_operator(
    *, kubeconfig: Path | None, namespaces: list[str], metrics_port: int | None, metrics_address: str = "127.0.0.1",
    liveness_endpoint: str | None = None,
) -> None:
    """Run the operator in this process until SIGTERM or SIGINT stops it.

    ``/metrics`` is served from the moment kopf is at work (its startup done, its watches
    starting), so an answer on it doubles as a readiness probe. ``liveness_endpoint`` (e.g.
    ``http://0.0.0.0:8081/healthz``) is kopf's health endpoint: served by kopf's event loop
    itself, so it stops answering when the loop hangs, which is what a liveness probe is for.

    kopf watches the cluster's namespaces and CRDs (its "scanning") only where it needs to:
    for namespace patterns. Given namespaces by name, or none (every namespace), the operator
    serves the CRDs that exist when it starts (install them first, as the chart does) and needs
    no permission on Namespaces or CustomResourceDefinitions: without scanning, kopf would
    retry the refused list for a minute at ERROR at every start.
    """
    kube.configure(kubeconfig=kubeconfig)
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    _limit_malloc_arenas(MALLOC_ARENAS)
    _import_api_modules()
    # Everything imported so far (kopf, the kubernetes client's models, pydantic's schemas,
    # numpy) lives as long as the process: out of the garbage collector's sight, a full
    # collection no longer walks it (one took 150 ms, holding the GIL, at 20 DarkClusters).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
    ready = threading.Event()
    if metrics_port:
        threading.Thread(target=_serve_metrics_when_ready,
                         kwargs={"ready": ready, "port": metrics_port, "address": metrics_address},
                         name="regionshift-metrics", daemon=True).start()
    try:
        asyncio.run(_operate(namespaces=namespaces, ready_flag=ready, stop_flag=None,
                             liveness_endpoint=liveness_endpoint))
    finally:
        stop_logging()


def _import_api_modules() -> None:
    """Import the kubernetes client's API modules the operator calls, now.

    The client imports them on first use, and each builds the pydantic models of its
    methods' signatures as it does, under the import lock and holding the GIL (18 s for these
    three on the development machine while it was loaded far beyond its two cores). Left to the
    first reconciles, that happened in the storm of events of a new RegionFailover's
    DarkClusters (a py-spy dump caught a thread in it during a 1.9 s stall of the event loop);
    before the loop starts it costs nothing but start-up time, and the garbage collector's
    freeze below keeps the models out of every collection.
    """
    from kubernetes import client

    # The first three every reconcile calls; the others an evacuation, a transplant, the
    # routes or the budgets' recount call first from a worker thread, where their import is
    # one suspect (not confirmed) for a 128 ms stall of the event loop at 500 DarkClusters in
    # which one worker thread held the GIL (docs/benchmarks.md, "Third pass on the stalls").
    for api in (client.AppsV1Api, client.CoreV1Api, client.CustomObjectsApi, client.AutoscalingV2Api,
                client.DiscoveryV1Api, client.NetworkingV1Api, client.PolicyV1Api):
        log.debug("imported %s", api.__module__)


def _limit_malloc_arenas(arenas: int) -> None:
    """``mallopt(M_ARENA_MAX, arenas)`` where the C library is glibc; nothing elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mallopt(-8, arenas)  # M_ARENA_MAX; arenas made from now on (the threads start later)
    except (OSError, AttributeError):
        log.debug("not glibc: malloc arenas left as they are")


def _serve_metrics_when_ready(*, ready: threading.Event, port: int, address: str) -> None:
    ready.wait()
    serve_metrics(port=port, address=address)
    log.info("regionshift is at work; metrics on http://%s:%d/metrics", address, port)


class OperatorThread:
    """The operator in a background thread of this process, for tests and the demo."""

    def __init__(self, *, kubeconfig: Path, namespaces: list[str] | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._namespaces = namespaces or []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._main, name="regionshift-operator", daemon=True)

    def _main(self) -> None:
        async def operate() -> None:
            self._loop = asyncio.get_running_loop()
            await _operate(namespaces=self._namespaces, ready_flag=self._ready, stop_flag=self._stop)

        try:
            asyncio.run(operate())
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()

    def describe(self, *, timeout_seconds: float = 5.0) -> str:
        """What the operator is doing now: every thread's stack and every task of kopf's event loop.

        For a failing test's report: a test that waited in vain for the operator shows whether
        it was stuck (and where) or never saw the object. The tasks are listed by the loop
        itself; a loop that does not answer within ``timeout_seconds`` is reported as such.
        """
        lines = [f"operator thread alive: {self._thread.is_alive()}, error: {self._error!r}"]
        names = {thread.ident: thread.name for thread in threading.enumerate()}
        for ident, frame in sys._current_frames().items():
            lines.append(f"--- thread {names.get(ident, ident)}")
            lines.extend(line.rstrip() for line in traceback.format_stack(frame)[-12:])
        loop = self._loop
        if loop is not None and loop.is_running():
            async def tasks() -> list[str]:
                found = []
                for task in asyncio.all_tasks():
                    stack = task.get_stack(limit=3)
                    where = " <- ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in stack) or "(not started)"
                    found.append(f"task {task.get_name()}: {where}")
                return sorted(found)
            try:
                lines.append("--- tasks of the event loop")
                lines.extend(asyncio.run_coroutine_threadsafe(tasks(), loop).result(timeout_seconds))
            except TimeoutError:
                lines.append(f"the event loop did not answer within {timeout_seconds} s")
        return "\n".join(lines)

    def start(self, *, timeout_seconds: float = 30.0) -> OperatorThread:
        """Start and wait until kopf is watching."""
        kube.configure(kubeconfig=self._kubeconfig)
        self._thread.start()
        if not self._ready.wait(timeout_seconds) or self._error:
            raise RuntimeError(f"the operator did not start: {self._error!r}")
        return self

    def stop(self, *, timeout_seconds: float = 30.0) -> None:
        """Ask kopf to stop and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout_seconds)
        if self._thread.is_alive():
            raise RuntimeError("the operator thread did not stop in time")

    def __enter__(self) -> OperatorThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
