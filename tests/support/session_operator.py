"""The session's in-process operator: seen serving before the first test, and described when a test fails.

:func:`probe` is the warm-up of the ``running_operator`` fixture (tests/conftest.py);
:func:`custom_resources` and :meth:`regionshift.runner.OperatorThread.describe` fill the
report of a failing test that used the operator.
"""

from __future__ import annotations

import json
import time

from regionshift.local.cluster import LocalCluster
from regionshift.runner import OperatorThread
from tests.support.cluster import Kube, namespace_in

__all__ = ["WARM_UP_PROBES", "custom_resources", "probe", "warm_up_report"]

WARM_UP_PROBES = 3
WARM_UP_PROBE_SECONDS = 90.0
WARM_UP_SNAPSHOT_SECONDS = (15.0, 60.0)
"""While a probe still waits, what the operator is doing is recorded (shown at the session's end)."""
warm_up_report: list[str] = []


def probe(*, running: OperatorThread, cluster: LocalCluster, attempt: int) -> bool:
    """One probe DarkCluster in a fresh ``t-*`` namespace: whether its shadow came in time (and a line saying so)."""
    started = time.monotonic()
    snapshots = list(WARM_UP_SNAPSHOT_SECONDS)
    with namespace_in(cluster, prefix="t") as probed:
        probed.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "probe"},
                      "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "probe"}},
                               "template": {"metadata": {"labels": {"app": "probe"}},
                                            "spec": {"containers": [{"name": "probe", "image": "registry.example/probe:1"}]}}}})
        probed.create_custom({"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "probe"},
                              "spec": {"targetDeployment": "probe", "gate": "Closed",
                                       "replicas": {"source": "Fixed", "fixedReplicas": 1, "minReplicas": 0, "maxReplicas": 1}}})
        while probed.deployment("probe-dark") is None:
            waited = time.monotonic() - started
            if snapshots and waited >= snapshots[0]:
                snapshots.pop(0)
                warm_up_report.append(f"probe {attempt} ({probed.namespace}): still no shadow after {waited:.0f} s; "
                                       f"the operator:\n{running.describe()}")
            if waited > WARM_UP_PROBE_SECONDS:
                warm_up_report.append(f"probe {attempt} ({probed.namespace}): no shadow in {WARM_UP_PROBE_SECONDS:.0f} s; "
                                       f"its namespace's resources:\n{custom_resources(probed)}")
                return False
            time.sleep(0.1)
    warm_up_report.append(f"probe {attempt} ({probed.namespace}): the session operator created its shadow "
                           f"{time.monotonic() - started:.1f} s after the probe was created")
    return True


def custom_resources(kube: Kube) -> str:
    """The namespace's DarkClusters and RegionFailovers (metadata and status) and its Events, as text."""
    lines = []
    for plural in ("darkclusters", "regionfailovers"):
        try:
            items = kube.custom.list_namespaced_custom_object("regionshift.io", "v1alpha1", kube.namespace, plural)["items"]
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
        for event in kube.core.list_namespaced_event(kube.namespace).items:
            lines.append(f"event {event.last_timestamp} {event.involved_object.kind}/{event.involved_object.name} "
                         f"{event.type} {event.reason}: {event.message}")
    except Exception as exc:  # noqa: BLE001
        lines.append(f"events: {exc!r}")
    return "\n".join(lines)
