"""Fixtures shared by the whole suite (the real control plane, the operator, Prometheus)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from regionshift.local.cluster import LocalCluster
from regionshift.runner import OperatorThread
from tests.support.cluster import kube, kube_cluster, namespace_in
from tests.support.prometheus_server import prometheus_server

__all__ = ["kube", "kube_cluster", "prometheus_server", "running_operator"]


# The operator's and kopf's INFO lines (a routine 409, a retry, a watch or a daemon started)
# are captured too, so that a failing test shows what the operator did meanwhile.
logging.getLogger("regionshift").setLevel(logging.INFO)
logging.getLogger("kopf").setLevel(logging.INFO)


WARM_UP_TIMEOUT_SECONDS = 300.0
WARM_UP_SNAPSHOT_SECONDS = (15.0, 60.0)
"""When the warm-up is still waiting, it records what the operator is doing (shown at the session's end)."""
_warm_up_report: list[str] = []


@pytest.fixture(scope="session")
def running_operator(kube_cluster: LocalCluster) -> Iterator[OperatorThread]:
    """The regionshift operator, in-process, watching the test namespaces (``t-*``), seen serving a DarkCluster.

    kopf says it is ready before its watches run. Before the first test, a probe DarkCluster
    in a namespace of its own must get its shadow Deployment: twice in CI (never here), the
    first test's shadow did not come within 60 s of the operator's start, and nothing in its
    log said why. The probe's wait is reported at the session's end, with what the operator
    was doing while it waited, so that a slow start shows in a green run too.
    """
    with OperatorThread(kubeconfig=kube_cluster.kubeconfig, namespaces=["t-*"]) as running:
        _warm_up(running=running, cluster=kube_cluster)
        yield running


def _warm_up(*, running: OperatorThread, cluster: LocalCluster) -> None:
    started = time.monotonic()
    snapshots = list(WARM_UP_SNAPSHOT_SECONDS)
    with namespace_in(cluster, prefix="t") as probe:
        probe.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "probe"},
                     "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "probe"}},
                              "template": {"metadata": {"labels": {"app": "probe"}},
                                           "spec": {"containers": [{"name": "probe", "image": "registry.example/probe:1"}]}}}})
        probe.create_custom({"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "probe"},
                             "spec": {"targetDeployment": "probe", "gate": "Closed",
                                      "replicas": {"source": "Fixed", "fixedReplicas": 1, "minReplicas": 0, "maxReplicas": 1}}})
        while probe.deployment("probe-dark") is None:
            waited = time.monotonic() - started
            if snapshots and waited >= snapshots[0]:
                snapshots.pop(0)
                _warm_up_report.append(f"still no shadow after {waited:.0f} s; the operator:\n{running.describe()}")
            if waited > WARM_UP_TIMEOUT_SECONDS:
                pytest.fail("the session operator did not create a probe DarkCluster's shadow in "
                            f"{WARM_UP_TIMEOUT_SECONDS:.0f} s:\n" + "\n\n".join(_warm_up_report))
            time.sleep(0.1)
        _warm_up_report.insert(0, f"the session operator created its first shadow {time.monotonic() - started:.1f} s "
                                  "after kopf said it was ready")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The session operator's warm-up: how long until it served, and what it did while it did not."""
    if _warm_up_report:
        terminalreporter.section("the session operator's warm-up")
        for line in _warm_up_report:
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
            report.sections.append((f"the custom resources of {kube.namespace}", _custom_resources(kube)))
    return report


def _custom_resources(kube: Any) -> str:
    """The namespace's DarkClusters and RegionFailovers (metadata and status) and its Events, as text."""
    lines = []
    for plural in ("darkclusters", "regionfailovers"):
        try:
            items = client.CustomObjectsApi(kube.api).list_namespaced_custom_object(
                "regionshift.io", "v1alpha1", kube.namespace, plural)["items"]
        except Exception as exc:  # noqa: BLE001  (a report must not fail the report)
            lines.append(f"{plural}: {exc!r}")
            continue
        for item in items:
            meta = item.get("metadata", {})
            shown = {"name": meta.get("name"), "finalizers": meta.get("finalizers"),
                     "annotations": meta.get("annotations"), "deletionTimestamp": meta.get("deletionTimestamp"),
                     "status": item.get("status")}
            lines.append(f"{plural}: {json.dumps(shown, default=str)}")
    try:
        for event in client.CoreV1Api(kube.api).list_namespaced_event(kube.namespace).items:
            lines.append(f"event {event.last_timestamp} {event.involved_object.kind}/{event.involved_object.name} "
                         f"{event.type} {event.reason}: {event.message}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"events: {exc!r}")
    return "\n".join(lines)
