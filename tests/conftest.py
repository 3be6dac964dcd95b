"""Fixtures shared by the whole suite (the real control plane, the operator, Prometheus)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from regionshift.local.cluster import LocalCluster
from regionshift.runner import OperatorThread
from tests.support.cluster import kube, kube_cluster
from tests.support.prometheus_server import prometheus_server
from tests.support.session_operator import WARM_UP_PROBES, custom_resources, probe, warm_up_report

__all__ = ["kube", "kube_cluster", "prometheus_server", "running_operator"]


# The operator's and kopf's INFO lines (a routine 409, a retry, a watch or a daemon started)
# are captured too, so that a failing test shows what the operator did meanwhile.
logging.getLogger("regionshift").setLevel(logging.INFO)
logging.getLogger("kopf").setLevel(logging.INFO)


@pytest.fixture(scope="session")
def running_operator(kube_cluster: LocalCluster) -> Iterator[OperatorThread]:
    """The regionshift operator, in-process, watching the test namespaces (``t-*``), seen serving a DarkCluster.

    kopf says it is ready before its watches run. Before the first test, a probe DarkCluster
    in a namespace of its own must get its shadow Deployment: twice in CI (never here), the
    first test's shadow did not come within 60 s of the operator's start, and nothing in its
    log said why. A probe that waits 90 s in vain is followed by another in a fresh namespace
    (up to three; the warm-up itself never fails the session: a broken operator fails the
    tests). How long each probe waited, and what the operator was doing while it waited, is
    printed at the session's end, so that a slow start shows in a green run too.
    """
    with OperatorThread(kubeconfig=kube_cluster.kubeconfig, namespaces=["t-*"]) as running:
        for attempt in range(1, WARM_UP_PROBES + 1):
            if probe(running=running, cluster=kube_cluster, attempt=attempt):
                break
        yield running


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The session operator's warm-up: how long until it served, and what it did while it did not."""
    if warm_up_report:
        terminalreporter.section("the session operator's warm-up")
        for line in warm_up_report:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failing test that used the session operator reports what the operator was doing and what it wrote."""
    report = yield
    if report.failed and call.when == "call" and "running_operator" in getattr(item, "fixturenames", ()):
        fixtures = getattr(item, "funcargs", {})
        operator = fixtures.get("running_operator")
        if operator is not None:
            report.sections.append(("the session operator when the test failed", operator.describe()))
        kube = fixtures.get("kube")
        if kube is not None:
            report.sections.append((f"the custom resources of {kube.namespace}", custom_resources(kube)))
    return report
