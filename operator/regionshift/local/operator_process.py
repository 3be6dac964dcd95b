"""The operator as its own process, the way users run it: ``regionshift run``.

The drill runs one per region, and restart tests must restart for real: a process that is SIGKILLed keeps nothing, neither its
caches nor its threads nor half-done writes, so whatever the next process does it can only
learn from the cluster. :class:`OperatorProcess` runs ``python -m regionshift.cli run`` with
its own kubeconfig, namespaces and metrics port, writes everything it prints to a log file,
waits until it serves ``/metrics`` (``regionshift run`` serves it once kopf is watching), and
stops it with SIGTERM (a clean stop, exit code 0) or kills it with SIGKILL (a crash).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

import httpx

from regionshift.local.cluster import free_port

__all__ = ["STARTUP_TIMEOUT_SECONDS", "OperatorProcess"]

STARTUP_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0


class OperatorProcess:
    """One ``regionshift run`` process watching ``namespaces`` of the cluster in ``kubeconfig``."""

    def __init__(self, *, kubeconfig: Path, namespaces: list[str], log_path: Path,
                 metrics_port: int | None = None, environment: Mapping[str, str] | None = None) -> None:
        self.kubeconfig = kubeconfig
        self.namespaces = namespaces
        self.log_path = log_path
        self.metrics_port = metrics_port or free_port()
        self.environment = dict(environment or {})
        """Extra environment variables, e.g. ``REGIONSHIFT_FAILPOINTS`` (see regionshift.failpoints)."""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        """The process id (the process is its own session leader)."""
        if self._process is None:
            raise RuntimeError("the operator process was not started")
        return self._process.pid

    @property
    def metrics_url(self) -> str:
        """``http://127.0.0.1:PORT/metrics``."""
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def running(self) -> bool:
        """Whether the process is alive."""
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout_seconds: float = STARTUP_TIMEOUT_SECONDS) -> Self:
        """Start ``regionshift run`` and wait until it serves ``/metrics``."""
        if self._process is not None:
            raise RuntimeError("an OperatorProcess starts once; make a new one to restart")
        command = [sys.executable, "-m", "regionshift.cli", "run", f"--kubeconfig={self.kubeconfig}",
                   *(f"--namespace={namespace}" for namespace in self.namespaces),
                   f"--metrics-port={self.metrics_port}"]
        with self.log_path.open("ab") as log:
            log.write(f"$ {' '.join(command)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), "PYTHONUNBUFFERED": "1",
                     "PYTHONFAULTHANDLER": "1",  # a crash in C code leaves its stack in the log
                     **self.environment},
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout_seconds
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"regionshift run exited with {self._process.returncode} before serving "
                                   f"/metrics:\n{self.log_tail()}")
            try:
                if httpx.get(self.metrics_url, timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"regionshift run did not serve /metrics in {timeout_seconds:g} s:\n{self.log_tail()}")

    def terminate(self, *, timeout_seconds: float = STOP_TIMEOUT_SECONDS) -> int:
        """A clean stop: SIGTERM, wait for the exit, return the exit code."""
        process = self._started()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            return process.wait(timeout=timeout_seconds)
        except subprocess.TimeoutExpired:
            self.kill()
            raise RuntimeError(f"regionshift run did not stop on SIGTERM in {timeout_seconds:g} s:\n{self.log_tail()}")

    def kill(self) -> int:
        """A crash: SIGKILL to the process (and anything it started), wait until it is gone."""
        process = self._started()
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return process.wait()

    def metrics(self) -> str:
        """The text of ``/metrics`` right now."""
        return httpx.get(self.metrics_url, timeout=5.0).text

    def log_text(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        """The last lines of the log."""
        return "\n".join(self.log_text().splitlines()[-lines:])

    def _started(self) -> subprocess.Popen[bytes]:
        if self._process is None:
            raise RuntimeError("the operator process was not started")
        return self._process

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._process is not None:
            self.kill()
