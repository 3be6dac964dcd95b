"""The thin slice of issue 1 against the real control plane: a DarkCluster at work.

Every test here runs the operator in-process against a real kube-apiserver; the
Deployments, ReplicaSets, EndpointSlices and the garbage collection come from a real
kube-controller-manager, the pods from kwok.
"""

from __future__ import annotations

import json

import pytest
from kubernetes import client

from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL
from regionshift.decide.gate import SERVING_LABELS_ANNOTATION
from tests.support.cluster import Kube, eventually

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("running_operator")]

APP = """
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
  labels: {app: api}
spec:
  replicas: 2
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers:
      - name: api
        image: registry.example/api:1
        env: [{name: VERSION, value: "1"}]
---
apiVersion: v1
kind: Service
metadata: {name: api}
spec:
  selector: {app: api}
  ports: [{port: 80}]
"""


def dark_cluster(name: str = "api", *, target: str = "api", replicas: int = 3, gate: str = "Closed") -> dict:
    return {
        "apiVersion": "regionshift.io/v1alpha1",
        "kind": "DarkCluster",
        "metadata": {"name": name},
        "spec": {
            "targetDeployment": target,
            "replicas": {"source": "Fixed", "fixedReplicas": replicas, "minReplicas": 0, "maxReplicas": 10},
            "gate": gate,
        },
    }


def dark_pods(kube: Kube, name: str = "api") -> list[dict]:
    return [p for p in kube.pods(f"{DARK_CLUSTER_LABEL}={name}") if not p["metadata"].get("deletionTimestamp")]


def running(pods: list[dict]) -> list[dict]:
    return [p for p in pods if p["status"].get("phase") == "Running"]


def main_pods_ready(kube: Kube) -> set[str]:
    return {p["metadata"]["name"] for p in kube.pods(f"app=api,!{DARK_CLUSTER_LABEL}")}


def endpoint_pods(kube: Kube, service: str) -> set[str]:
    """Names of every pod an EndpointSlice of the Service lists, ready or not."""
    slices = client.DiscoveryV1Api(kube.api).list_namespaced_endpoint_slice(
        kube.namespace, label_selector=f"kubernetes.io/service-name={service}").items
    return {ep.target_ref.name for s in slices for ep in s.endpoints or [] if ep.target_ref is not None}


def test_shadow_copies_target_with_gate_owner_and_replicas(kube: Kube) -> None:
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=3))
    shadow = eventually(lambda: kube.deployment("api-dark"), what="shadow Deployment created")
    dc = kube.get_custom("darkclusters", "api")

    owner = shadow["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == ("DarkCluster", "api", dc["metadata"]["uid"], True)
    assert shadow["spec"]["replicas"] == 3
    template = shadow["spec"]["template"]
    assert not template["spec"].get("readinessGates")
    assert template["spec"]["containers"][0]["image"] == "registry.example/api:1"
    assert template["spec"]["containers"][0]["env"] == [{"name": "VERSION", "value": "1"}]
    assert template["metadata"]["labels"] == {DARK_CLUSTER_LABEL: "api"}
    assert json.loads(template["metadata"]["annotations"][SERVING_LABELS_ANNOTATION]) == {"app": "api"}
    assert shadow["spec"]["selector"] == {"matchLabels": {DARK_CLUSTER_LABEL: "api"}}


def test_gated_pods_run_but_stay_out_of_endpoints_until_the_gate_opens(kube: Kube) -> None:
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=3))
    main = eventually(lambda: len(kube.ready_endpoint_pods("api")) == 2 and kube.ready_endpoint_pods("api"),
                      what="main pods in the EndpointSlice")
    pods = eventually(lambda: len(running(dark_pods(kube))) == 3 and dark_pods(kube), what="3 dark pods running")

    # Gated: running, containers ready, without the target's labels, so in no EndpointSlice of its Service.
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
        assert conditions["ContainersReady"] == "True"
        assert "app" not in pod["metadata"]["labels"]
    assert kube.ready_endpoint_pods("api") == main
    assert endpoint_pods(kube, "api") == main
    status = eventually(lambda: (s := kube.get_custom("darkclusters", "api").get("status", {})).get("warmReplicas") == 3 and s,
                        what="status counts 3 warm replicas")
    assert status["readyReplicas"] == 0 and status["gated"] is True
    uids_before = {p["metadata"]["uid"] for p in pods}

    # Ungate: the same pods (no restart) become Ready and join the EndpointSlice.
    kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Open"}})
    dark_names = {p["metadata"]["name"] for p in pods}
    eventually(lambda: kube.ready_endpoint_pods("api") == main | dark_names, timeout_seconds=10,
               what="dark pods ready in the EndpointSlice")
    after = dark_pods(kube)
    assert {p["metadata"]["uid"] for p in after} == uids_before
    assert all(c["restartCount"] == 0 for p in after for c in p["status"]["containerStatuses"])
    status = eventually(lambda: (s := kube.get_custom("darkclusters", "api")["status"]).get("readyReplicas") == 3 and s,
                        what="status counts 3 serving replicas")
    assert status["gated"] is False
    assert all(p["metadata"]["labels"]["app"] == "api" for p in after)
    eventually(lambda: any(e.reason == "GateOpened" for e in kube.events("api")), what="a GateOpened Event")

    # Close it again: out of the EndpointSlices altogether, still running, the same pods.
    kube.patch_custom("darkclusters", "api", {"spec": {"gate": "Closed"}})
    eventually(lambda: endpoint_pods(kube, "api") == main, timeout_seconds=10, what="dark pods leave the EndpointSlice")
    closed = dark_pods(kube)
    assert {p["metadata"]["uid"] for p in closed} == uids_before
    assert all("app" not in p["metadata"]["labels"] for p in closed)
    assert all(c["restartCount"] == 0 for p in closed for c in p["status"]["containerStatuses"])
    eventually(lambda: kube.get_custom("darkclusters", "api")["status"].get("readyReplicas") == 0,
               what="status counts none serving")


def test_target_template_change_updates_the_shadow(kube: Kube) -> None:
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=1))
    eventually(lambda: kube.deployment("api-dark"), what="shadow created")
    kube.apps.patch_namespaced_deployment("api", kube.namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "registry.example/api:2"}]}}}})
    eventually(lambda: kube.deployment("api-dark")["spec"]["template"]["spec"]["containers"][0]["image"]
               == "registry.example/api:2", what="shadow follows the target's image")
    eventually(lambda: {c["image"] for p in running(dark_pods(kube)) for c in p["spec"]["containers"]}
               == {"registry.example/api:2"}, what="dark pods roll to the new template")


def test_deleting_the_dark_cluster_garbage_collects_the_shadow(kube: Kube) -> None:
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=2))
    eventually(lambda: len(running(dark_pods(kube))) == 2, what="dark pods running")
    kube.delete_custom("darkclusters", "api")
    # No operator code deletes the shadow: the garbage collector in kube-controller-manager does.
    eventually(lambda: kube.deployment("api-dark") is None, timeout_seconds=30, what="shadow garbage-collected")
    eventually(lambda: not dark_pods(kube), timeout_seconds=30, what="dark pods gone")
    assert kube.deployment("api") is not None


def test_missing_target_is_reported_and_reconciled_when_it_appears(kube: Kube) -> None:
    kube.apply(dark_cluster("orphan", target="api", replicas=1))
    kube.apply(dark_cluster("other", target="other", replicas=1))
    kube.apply({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "other"},
                "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}},
                         "template": {"metadata": {"labels": {"app": "other"}},
                                      "spec": {"containers": [{"name": "c", "image": "registry.example/other:1"}]}}}})

    def ready_reason(name: str) -> str | None:
        conditions = kube.get_custom("darkclusters", name).get("status", {}).get("conditions", [])
        return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)

    eventually(lambda: ready_reason("orphan") == "TargetNotFound", what="TargetNotFound condition")
    eventually(lambda: any(e.reason == "TargetNotFound" and e.type == "Warning" for e in kube.events("orphan")),
               what="TargetNotFound Event")
    # The other DarkCluster keeps working meanwhile.
    eventually(lambda: kube.deployment("other-dark"), what="the other shadow exists")
    assert kube.deployment("api-dark") is None

    kube.apply(APP)
    eventually(lambda: kube.deployment("api-dark"), timeout_seconds=10, what="shadow created once the target appears")
    eventually(lambda: ready_reason("orphan") in ("Warm", "Warming"), what="condition leaves TargetNotFound")


@pytest.mark.parametrize(
    ("spec", "field", "message"),
    [
        ({"gate": "Closed"}, "spec.targetDeployment", "Required value"),
        ({"targetDeployment": "api", "replicas": {"minReplicas": -1, "maxReplicas": 2}}, "spec.replicas.minReplicas",
         "should be greater than or equal to 0"),
        ({"targetDeployment": "api", "replicas": {"source": "Forecast", "minReplicas": 5, "maxReplicas": 2}},
         "spec.replicas.minReplicas", "minReplicas must be less than or equal to maxReplicas"),
        ({"targetDeployment": "api", "gate": "ajar"}, "spec.gate", 'supported values: "Closed", "Open"'),
    ],
    ids=["no-target", "negative-min", "inverted-min-max", "unknown-gate"],
)
def test_api_server_rejects_bad_dark_clusters_naming_the_field(kube: Kube, spec: dict, field: str, message: str) -> None:
    body = {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "bad"}, "spec": spec}
    with pytest.raises(client.ApiException) as err:
        kube.create_custom(body)
    assert err.value.status == 422
    text = json.loads(err.value.body)["message"]
    assert f"{field}:" in text and message in text, text
