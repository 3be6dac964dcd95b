"""State lives in the cluster: an operator process that is SIGKILLed and started again converges.

Each test runs ``regionshift run`` as its own process (``tests/support/operator_process.py``),
kills it with SIGKILL, never a clean stop, and starts a fresh process that knows only what
it reads from the API server. What the tests check is what a user sees: the pods the
Service's EndpointSlices list as ready, and the DarkCluster's status.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from kubernetes import client, watch

from regionshift.local.cluster import LocalCluster
from tests.support.cluster import Kube, eventually, namespace_in
from tests.support.manifests import APP, dark_cluster
from tests.support.operator_process import StartOperator, operator_process  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

SHADOW = "api-dark"
"""The shadow Deployment of the DarkCluster ``api``; its pods are named ``api-dark-...``."""



def dark_pods(kube: Kube) -> dict[str, dict[str, Any]]:
    """The shadow's live pods by name (found by name, whatever marks them as dark)."""
    pods = kube.core.list_namespaced_pod(kube.namespace).items
    return {p.metadata.name: kube.api.sanitize_for_serialization(p) for p in pods
            if p.metadata.name.startswith(f"{SHADOW}-") and not p.metadata.deletion_timestamp}


def running_dark_pods(kube: Kube) -> int:
    return sum(1 for p in dark_pods(kube).values() if p["status"].get("phase") == "Running")


def serving_dark_pods(kube: Kube) -> set[str]:
    """Dark pods the Service's EndpointSlices list as ready: the ones taking traffic."""
    return {name for name in kube.ready_endpoint_pods("api") if name.startswith(f"{SHADOW}-")}


def status(kube: Kube) -> dict[str, Any]:
    return kube.get_custom("darkclusters", "api").get("status") or {}


def ready_condition(kube: Kube) -> str | None:
    return next((c["status"] for c in status(kube).get("conditions", []) if c["type"] == "Ready"), None)


def test_changes_made_while_the_operator_is_dead_take_effect_in_a_new_process(
    kube_cluster: LocalCluster, operator_process: StartOperator
) -> None:
    # Its own namespace prefix: the session operator (t-*) does not watch it.
    with namespace_in(kube_cluster, prefix="r") as kube:
        first = operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        kube.apply(APP)
        kube.apply(dark_cluster(replicas=2))
        eventually(lambda: running_dark_pods(kube) == 2, timeout_seconds=60, what="two dark pods running")
        eventually(lambda: status(kube).get("warmReplicas") == 2, what="status written by the first process")
        assert serving_dark_pods(kube) == set(), "dark pods serve no traffic while the gate is closed"

        first.kill()

        # While no operator runs: the gate opens, the replicas and the target's image change.
        kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Open", "replicas": {"fixedReplicas": 3}}})
        kube.apps.patch_namespaced_deployment("api", kube.namespace, {"spec": {"template": {"spec": {
            "containers": [{"name": "api", "image": "registry.example/api:2"}]}}}})
        shadow = kube.deployment(SHADOW)
        assert shadow is not None and shadow["spec"]["replicas"] == 2, "nothing acts while the operator is dead"
        assert serving_dark_pods(kube) == set()

        operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        eventually(lambda: (d := kube.deployment(SHADOW)) and d["spec"]["replicas"] == 3,
                   timeout_seconds=60, what="the shadow follows the new replicas")
        eventually(lambda: (d := kube.deployment(SHADOW))
                   and d["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/api:2",
                   timeout_seconds=60, what="the shadow follows the target's new image")
        eventually(lambda: len(serving_dark_pods(kube)) == 3 and all(
                       p["spec"]["containers"][0]["image"] == "registry.example/api:2"
                       for name, p in dark_pods(kube).items() if name in serving_dark_pods(kube)),
                   timeout_seconds=90, what="three dark pods of the new image serve behind the Service")
        # The shadow rolls like its target (a surge pod for a while), so wait for the rollout's end too.
        eventually(lambda: (s := status(kube)).get("readyReplicas") == 3 and s.get("gated") is False
                   and s.get("desiredReplicas") == 3 and s.get("warmReplicas") == 3
                   and ready_condition(kube) == "True" and s,
                   timeout_seconds=90, what="the status of an open gate with three warm, serving pods")


def _kill_at_first_dark_pod_write(kube: Kube, *, since: str, kill: Any, timeout_seconds: float) -> None:
    """Watch the namespace's pods from ``since`` and call ``kill`` at the first write to a dark pod."""
    stream = watch.Watch()
    for event in stream.stream(kube.core.list_namespaced_pod, kube.namespace, resource_version=since,
                               timeout_seconds=int(timeout_seconds)):
        pod: client.V1Pod = event["object"]
        if event["type"] == "MODIFIED" and pod.metadata.name.startswith(f"{SHADOW}-"):
            kill()
            stream.stop()
            return
    pytest.fail(f"no dark pod was written within {timeout_seconds:g} s of opening the gate")


def test_a_process_killed_in_the_middle_of_an_ungate_is_finished_by_the_next(
    kube_cluster: LocalCluster, operator_process: StartOperator
) -> None:
    replicas = 30
    with namespace_in(kube_cluster, prefix="r") as kube:
        first = operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        kube.apply(APP)
        kube.apply(dark_cluster(replicas=replicas))
        eventually(lambda: running_dark_pods(kube) == replicas, timeout_seconds=120, what="30 dark pods running")
        eventually(lambda: status(kube).get("warmReplicas") == replicas, timeout_seconds=60,
                   what="the first process reports 30 warm pods")
        before = dark_pods(kube)
        since = kube.core.list_namespaced_pod(kube.namespace).metadata.resource_version

        # Open the gate and SIGKILL the operator the moment it writes its first dark pod.
        killed = threading.Event()
        watcher = threading.Thread(target=_kill_at_first_dark_pod_write, daemon=True, kwargs={
            "kube": kube, "since": since, "kill": lambda: (first.kill(), killed.set()), "timeout_seconds": 60})
        watcher.start()
        kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Open"}})
        watcher.join(90)
        assert killed.is_set(), "the operator was not killed during the ungate"
        written = sum(1 for name, pod in dark_pods(kube).items()
                      if pod["metadata"]["resourceVersion"] != before.get(name, {}).get("metadata", {}).get("resourceVersion"))
        print(f"the first process was SIGKILLed after writing {written} of {replicas} dark pods")

        operator_process(kubeconfig=kube_cluster.kubeconfig, namespaces=[kube.namespace])
        eventually(lambda: len(serving_dark_pods(kube)) == replicas, timeout_seconds=120,
                   what="every dark pod serves behind the Service")
        assert serving_dark_pods(kube) == set(dark_pods(kube)), "the dark pods that serve are the shadow's pods"
        eventually(lambda: (s := status(kube)).get("readyReplicas") == replicas and s.get("gated") is False
                   and s.get("warmReplicas") == replicas and s.get("desiredReplicas") == replicas
                   and ready_condition(kube) == "True" and s,
                   timeout_seconds=60, what="the status of an open gate with every dark pod warm and serving")
