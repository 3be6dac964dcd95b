"""State lives in the resources: an operator that stops halfway and restarts converges."""

from __future__ import annotations

import pytest

from regionshift.local.cluster import LocalCluster
from regionshift.runner import OperatorThread
from tests.integration.test_dark_cluster import APP, dark_cluster, dark_pods, running
from tests.support.cluster import eventually, namespace_in

pytestmark = pytest.mark.integration


def test_changes_made_while_the_operator_is_down_converge_after_restart(kube_cluster: LocalCluster) -> None:
    # Its own namespace prefix: the session operator (t-*) does not watch it.
    with namespace_in(kube_cluster, prefix="r") as kube:
        with OperatorThread(kubeconfig=kube_cluster.kubeconfig, namespaces=["r-*"]):
            kube.apply(APP)
            kube.apply(dark_cluster(replicas=2))
            eventually(lambda: len(running(dark_pods(kube))) == 2, what="dark pods running")
            eventually(lambda: kube.get_custom("darkclusters", "api").get("status", {}).get("warmReplicas") == 2,
                       what="status written")

        # Operator down: the gate opens, the target's image changes, nothing acts yet.
        kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Open", "replicas": {"fixedReplicas": 3}}})
        kube.apps.patch_namespaced_deployment("api", kube.namespace, {"spec": {"template": {"spec": {"containers": [
            {"name": "api", "image": "registry.example/api:2"}]}}}})
        assert kube.deployment("api-dark")["spec"]["replicas"] == 2

        with OperatorThread(kubeconfig=kube_cluster.kubeconfig, namespaces=["r-*"]):
            eventually(lambda: kube.deployment("api-dark")["spec"]["replicas"] == 3, what="replicas follow after restart")
            eventually(lambda: kube.deployment("api-dark")["spec"]["template"]["spec"]["containers"][0]["image"]
                       == "registry.example/api:2", what="template follows after restart")
            eventually(lambda: len(kube.ready_endpoint_pods("api") & {p["metadata"]["name"] for p in dark_pods(kube)}) == 3,
                       timeout_seconds=60, what="the three dark pods serve after restart")
            status = eventually(lambda: (s := kube.get_custom("darkclusters", "api")["status"]).get("readyReplicas") == 3 and s,
                                what="status after restart")
            assert status["gated"] is False and status["desiredReplicas"] == 3
