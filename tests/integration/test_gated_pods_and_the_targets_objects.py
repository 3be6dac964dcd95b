"""Gated dark pods do no harm to the objects that select their target (issue 6, item 7).

A PodDisruptionBudget on the target is computed by kube-controller-manager's real
disruption controller, and the selector an autoscaler of the target uses is the one its
scale subresource reports; nothing here is mocked. Gated, the dark pods carry none of the
target's labels, so the budget and the autoscaler's selector see exactly what they see
without them; opened, the same pods carry the target's labels and count; closed, they
leave again.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL
from regionshift.decide.gate import RECOUNT_ANNOTATION
from tests.support.cluster import Kube, eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

MAIN_REPLICAS = 2
DARK_REPLICAS = 3

APP = f"""
apiVersion: apps/v1
kind: Deployment
metadata: {{name: api, labels: {{app: api}}}}
spec:
  replicas: {MAIN_REPLICAS}
  selector: {{matchLabels: {{app: api}}}}
  template:
    metadata: {{labels: {{app: api, tier: web}}}}
    spec:
      containers: [{{name: api, image: registry.example/api:1}}]
---
apiVersion: v1
kind: Service
metadata: {{name: api}}
spec:
  selector: {{app: api}}
  ports: [{{port: 80}}]
"""


def budget(name: str) -> dict[str, Any]:
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name},
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "api"}}}}


def dark_cluster(gate: str = "Closed") -> dict[str, Any]:
    return {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "api"},
            "spec": {"targetDeployment": "api", "gate": gate,
                     "replicas": {"source": "Fixed", "fixedReplicas": DARK_REPLICAS, "minReplicas": 0, "maxReplicas": 10}}}


def figures(kube: Kube, name: str) -> tuple[int, int, int] | None:
    """(disruptionsAllowed, currentHealthy, expectedPods) once the disruption controller has counted the budget."""
    pdb = client.PolicyV1Api(kube.api).read_namespaced_pod_disruption_budget(name, kube.namespace)
    status = pdb.status
    if status is None or status.observed_generation != pdb.metadata.generation:
        return None
    return status.disruptions_allowed, status.current_healthy, status.expected_pods


def dark_pod_names(kube: Kube) -> set[str]:
    return {p["metadata"]["name"] for p in kube.pods(f"{DARK_CLUSTER_LABEL}=api")
            if not p["metadata"].get("deletionTimestamp")}


def autoscaler_pods(kube: Kube) -> set[str]:
    """The pods an autoscaler of the target counts: those its scale subresource's selector matches."""
    scale = kube.apps.read_namespaced_deployment_scale("api", kube.namespace)
    return {p["metadata"]["name"] for p in kube.pods(scale.status.selector)}


def warm(kube: Kube) -> bool:
    return kube.get_custom("darkclusters", "api").get("status", {}).get("warmReplicas") == DARK_REPLICAS


def test_a_budget_on_the_target_counts_gated_dark_pods_only_once_they_serve(kube: Kube) -> None:
    kube.apply(APP)
    kube.apply(budget("api"))
    alone = (1, MAIN_REPLICAS, MAIN_REPLICAS)
    eventually(lambda: figures(kube, "api") == alone, what="the budget counts the target's 2 pods")

    kube.apply(dark_cluster())
    eventually(lambda: warm(kube), what=f"{DARK_REPLICAS} warm, gated dark pods")
    dark = dark_pod_names(kube)
    assert len(dark) == DARK_REPLICAS
    # A budget created now is counted from scratch while the gated dark pods run: it would see them if anything did.
    kube.apply(budget("api-later"))
    assert eventually(lambda: figures(kube, "api-later"), what="the new budget counted") == alone
    assert figures(kube, "api") == alone, "the budget created before the dark pods is unchanged"
    main = autoscaler_pods(kube)
    assert len(main) == MAIN_REPLICAS and not main & dark, "an autoscaler of the target sees no gated dark pod"

    # Opened, the same pods serve and count, for the budget as for the autoscaler.
    kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Open"}})
    serving = (1, MAIN_REPLICAS + DARK_REPLICAS, MAIN_REPLICAS + DARK_REPLICAS)
    eventually(lambda: figures(kube, "api") == serving, what="the budget counts the serving dark pods")
    assert autoscaler_pods(kube) == main | dark

    # Closed again, they leave the autoscaler's selector and the budget. The disruption controller does not see
    # a pod leave a selector; the operator's metadata-only write on the budget makes it recount.
    kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Closed"}})
    eventually(lambda: autoscaler_pods(kube) == main, what="the dark pods leave the target's selector")
    assert dark_pod_names(kube) == dark, "the same pods, still warm"
    eventually(lambda: figures(kube, "api") == alone, what="the budget recounted without the closed dark pods")
    eventually(lambda: figures(kube, "api-later") == alone, what="the other budget recounted too")
    pdb = client.PolicyV1Api(kube.api).read_namespaced_pod_disruption_budget("api", kube.namespace)
    assert RECOUNT_ANNOTATION in pdb.metadata.annotations and pdb.metadata.generation == 1, "metadata only"


def test_a_shadow_of_the_readiness_gate_design_is_replaced(kube: Kube) -> None:
    """A shadow whose selector includes the target's labels (the old design) is deleted and created anew."""
    kube.apply(dark_cluster())  # before its target: nothing to shadow yet
    dc = eventually(lambda: (d := kube.get_custom("darkclusters", "api")).get("status") and d, what="DarkCluster seen")
    old_labels = {"app": "api", DARK_CLUSTER_LABEL: "api"}
    kube.apply({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "api-dark", "labels": {DARK_CLUSTER_LABEL: "api"},
                     "ownerReferences": [{"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "name": "api",
                                          "uid": dc["metadata"]["uid"], "controller": True}]},
        "spec": {"replicas": 1, "selector": {"matchLabels": old_labels},
                 "template": {"metadata": {"labels": old_labels},
                              "spec": {"containers": [{"name": "api", "image": "registry.example/api:1"}]}}},
    })
    old_uid = kube.deployment("api-dark")["metadata"]["uid"]

    kube.apply(APP)
    shadow = eventually(lambda: (d := kube.deployment("api-dark")) and d["metadata"]["uid"] != old_uid and d,
                        what="the old shadow replaced")
    assert shadow["spec"]["selector"] == {"matchLabels": {DARK_CLUSTER_LABEL: "api"}}
    eventually(lambda: warm(kube), what="the new shadow's pods warm")
    eventually(lambda: not kube.pods(f"{DARK_CLUSTER_LABEL}=api,app"), timeout_seconds=30,
               what="the old shadow's pods gone, the new ones gated by label")
    eventually(lambda: any(e.reason == "ShadowRecreated" for e in kube.events("api")), what="a ShadowRecreated Event")
