"""Run the operator: kopf settings, login, and the event loop, in a process or a thread.

``regionshift run`` calls :func:`run_operator`; the test suite and the demo use
:class:`OperatorThread` to run the same operator in-process against a local cluster.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from pathlib import Path
from typing import Any

import kopf

from regionshift.adapters import kube
from regionshift.controllers import registry  # noqa: F401  (importing it registers the handlers)
from regionshift.metrics import serve_metrics

__all__ = ["OperatorThread", "run_operator"]

log = logging.getLogger(__name__)


async def _operate(
    *,
    namespaces: list[str],
    ready_flag: threading.Event | None,
    stop_flag: threading.Event | None,
) -> None:
    await kopf.operator(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        ready_flag=ready_flag,
        stop_flag=stop_flag,
    )


def run_operator(*, kubeconfig: Path | None, namespaces: list[str], metrics_port: int | None) -> None:
    """Run the operator in this process until SIGTERM or SIGINT stops it.

    ``/metrics`` is served from the moment kopf is at work (its startup done, its watches
    starting), so an answer on it doubles as a readiness probe.
    """
    kube.configure(kubeconfig=kubeconfig)
    ready = threading.Event()
    if metrics_port:
        threading.Thread(target=_serve_metrics_when_ready, kwargs={"ready": ready, "port": metrics_port},
                         name="regionshift-metrics", daemon=True).start()
    asyncio.run(_operate(namespaces=namespaces, ready_flag=ready, stop_flag=None))


def _serve_metrics_when_ready(*, ready: threading.Event, port: int) -> None:
    ready.wait()
    serve_metrics(port=port)
    log.info("regionshift is at work; metrics on http://127.0.0.1:%d/metrics", port)


class OperatorThread:
    """The operator in a background thread of this process, for tests and the demo."""

    def __init__(self, *, kubeconfig: Path, namespaces: list[str] | None = None) -> None:
        self._kubeconfig = kubeconfig
        self._namespaces = namespaces or []
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, name="regionshift-operator", daemon=True)

    def _main(self) -> None:
        try:
            asyncio.run(_operate(namespaces=self._namespaces, ready_flag=self._ready, stop_flag=self._stop))
        except BaseException as exc:  # reported by start()/stop()
            self._error = exc
            self._ready.set()

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
