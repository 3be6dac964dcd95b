"""Operator processes on demand for a test: :class:`~regionshift.local.operator_process.OperatorProcess`.

The :func:`operator_process` fixture starts ``regionshift run`` processes on demand, kills
whatever is still running at teardown and prints each process's log then, so that pytest
shows it with a failed test (captured output of a passing test is not shown).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from regionshift.local.operator_process import STARTUP_TIMEOUT_SECONDS, OperatorProcess

__all__ = ["OperatorProcess", "StartOperator", "operator_process"]


StartOperator = Callable[..., OperatorProcess]
"""``start_operator(kubeconfig=..., namespaces=[...])``: a started :class:`OperatorProcess`."""


@pytest.fixture
def operator_process(tmp_path: Path) -> Iterator[StartOperator]:
    """Start ``regionshift run`` processes; kill leftovers and print their logs at teardown."""
    started: list[OperatorProcess] = []

    def start_operator(*, kubeconfig: Path, namespaces: list[str],
                       timeout_seconds: float = STARTUP_TIMEOUT_SECONDS) -> OperatorProcess:
        process = OperatorProcess(kubeconfig=kubeconfig, namespaces=namespaces,
                                  log_path=tmp_path / f"operator-{len(started) + 1}.log")
        started.append(process)
        return process.start(timeout_seconds=timeout_seconds)

    try:
        yield start_operator
    finally:
        for number, process in enumerate(started, start=1):
            if process.running():
                process.kill()
            print(f"----- log of operator process {number} ({process.log_path}) -----")
            print(process.log_tail(200))
