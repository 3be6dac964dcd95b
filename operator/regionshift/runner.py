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

from . import kube
from .metrics import serve_metrics
from .models import API_GROUP

__all__ = ["OperatorThread", "configure_settings", "connection_info", "run_operator"]

log = logging.getLogger(__name__)


def configure_settings(settings: kopf.OperatorSettings) -> None:
    """kopf settings for regionshift.

    Handler progress and the diff base go into annotations: the CRDs' structural schemas
    would prune unknown status fields, and kopf would re-run handlers forever.
    """
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=API_GROUP)
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 16


def connection_info() -> kopf.ConnectionInfo:
    """kopf's credentials, from the configuration :mod:`regionshift.kube` uses."""
    configuration = kube.configure_once()
    api_key = (configuration.api_key or {}).get("authorization") or (configuration.api_key or {}).get("BearerToken")
    scheme, token = (api_key.split(" ", 1) + [""])[:2] if api_key else (None, None)
    return kopf.ConnectionInfo(
        server=configuration.host,
        ca_path=configuration.ssl_ca_cert,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file,
        private_key_path=configuration.key_file,
        scheme=scheme,
        token=token or None,
    )


async def _operate(
    *,
    namespaces: list[str],
    ready_flag: threading.Event | None,
    stop_flag: threading.Event | None,
) -> None:
    from . import handlers  # noqa: F401  (registers the handlers)

    await kopf.operator(
        standalone=True,
        clusterwide=not namespaces,
        namespaces=namespaces,
        ready_flag=ready_flag,
        stop_flag=stop_flag,
    )


def run_operator(*, kubeconfig: Path | None, namespaces: list[str], metrics_port: int | None) -> None:
    """Run the operator in this process until it is signalled to stop."""
    kube.configure(kubeconfig=kubeconfig)
    if metrics_port:
        serve_metrics(port=metrics_port)
    asyncio.run(_operate(namespaces=namespaces, ready_flag=None, stop_flag=None))


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
