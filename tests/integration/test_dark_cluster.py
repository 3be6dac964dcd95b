"""The thin slice of issue 1 against the real control plane: a DarkCluster at work.

Every test here runs the operator in-process against a real kube-apiserver; the
Deployments, ReplicaSets, EndpointSlices and the garbage collection come from a real
kube-controller-manager, the pods from kwok.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from kubernetes import client
from prometheus_client import REGISTRY

from regionshift.adapters import kube as operator_kube
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL, ROLE_LABEL, ROLE_TARGET, shadow_deployment, shadow_name
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
    # A new target is not watched (only labelled Deployments are): the DarkCluster looks for it with a backoff.
    eventually(lambda: kube.deployment("api-dark"), timeout_seconds=90, what="shadow created once the target appears")
    eventually(lambda: ready_reason("orphan") in ("Warm", "Warming"), what="condition leaves TargetNotFound")


def ready_reason(kube: Kube, name: str = "api") -> str | None:
    conditions = kube.get_custom("darkclusters", name).get("status", {}).get("conditions", [])
    return next((c["reason"] for c in conditions if c["type"] == "Ready"), None)


def deployment(name: str, *, labels: dict[str, str], replicas: int = 2, image: str = "registry.example/api:1") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": "api"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "api", "image": image}]}}}}


def test_the_target_is_labelled_while_shadowed_and_released_with_its_dark_cluster(kube: Kube) -> None:
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=1))
    eventually(lambda: (kube.deployment("api")["metadata"].get("labels") or {}).get(ROLE_LABEL) == ROLE_TARGET,
               what="the target labelled as shadowed (so the label-selected watch sees it)")
    # A change of the target reaches the shadow through that watch alone (the resync is minutes away).
    kube.apps.patch_namespaced_deployment("api", kube.namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "api", "image": "registry.example/api:3"}]}}}})
    eventually(lambda: kube.deployment("api-dark")["spec"]["template"]["spec"]["containers"][0]["image"]
               == "registry.example/api:3", what="shadow follows the labelled target")
    kube.delete_custom("darkclusters", "api")
    eventually(lambda: ROLE_LABEL not in (kube.deployment("api")["metadata"].get("labels") or {}),
               what="the target label removed with the DarkCluster")
    assert kube.deployment("api")["metadata"]["labels"] == {"app": "api"}


def test_a_deleted_target_leaves_no_dark_pod_serving_and_a_recreated_one_gets_a_rebuilt_shadow(kube: Kube) -> None:
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=2, gate="Open"))
    old = eventually(lambda: len(running(dark_pods(kube))) == 2 and dark_pods(kube), what="2 dark pods running")
    old_names = {p["metadata"]["name"] for p in old}
    eventually(lambda: old_names <= kube.ready_endpoint_pods("api"), what="open dark pods serve")

    # The target goes: the gate closes on every dark pod and the shadow scales to zero.
    kube.apps.delete_namespaced_deployment("api", kube.namespace)
    eventually(lambda: not (kube.ready_endpoint_pods("api") & old_names), timeout_seconds=30,
               what="no dark pod serves once the target is gone")
    eventually(lambda: kube.deployment("api-dark")["spec"]["replicas"] == 0, what="shadow scaled to zero")
    eventually(lambda: ready_reason(kube) == "TargetNotFound", what="TargetNotFound condition")
    eventually(lambda: not dark_pods(kube), timeout_seconds=30, what="dark pods gone")
    status = kube.get_custom("darkclusters", "api")["status"]
    assert (status["desiredReplicas"], status["gated"]) == (0, True)

    # It comes back with another selector: a shadow that follows it, with new pods only.
    new_labels = {"app": "api", "track": "v2"}
    kube.apply(deployment("api", labels=new_labels, image="registry.example/api:2"))
    eventually(lambda: len(running(dark_pods(kube))) == 2, timeout_seconds=90,
               what="the dark cluster rebuilt for the recreated target")
    # Every dark pod is born gated; the open gate's labels (the new ones) follow in a moment.
    pods = eventually(lambda: (ps := dark_pods(kube)) and all(
                          {k: p["metadata"]["labels"].get(k) for k in new_labels} == new_labels for p in ps) and ps,
                      timeout_seconds=30, what="the rebuilt dark pods carry the new serving labels")
    assert not {p["metadata"]["name"] for p in pods} & old_names
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {"registry.example/api:2"}
    shadow = kube.deployment("api-dark")
    dc = kube.get_custom("darkclusters", "api")
    assert shadow["spec"]["selector"] == shadow_deployment(
        dark_cluster=dc, target=kube.deployment("api"), replicas=2)["spec"]["selector"]
    assert shadow["metadata"]["ownerReferences"][0]["uid"] == dc["metadata"]["uid"]
    eventually(lambda: {p["metadata"]["name"] for p in pods} <= kube.ready_endpoint_pods("api"),
               what="the rebuilt dark pods serve (the gate is open)")


@pytest.mark.parametrize("mimic", [False, True], ids=["plain-deployment", "carries-our-labels"])
def test_a_deployment_in_the_shadows_place_is_never_adopted(kube: Kube, mimic: bool) -> None:
    labels = {"app": "squatter"}
    squatter = deployment("api-dark", labels=labels, replicas=1)
    if mimic:  # even regionshift's own labels do not make it ours: only an owner reference does
        squatter["metadata"]["labels"] = {DARK_CLUSTER_LABEL: "api", ROLE_LABEL: "shadow"}
        squatter["spec"]["template"]["metadata"]["labels"] = {**labels, DARK_CLUSTER_LABEL: "api"}
        squatter["spec"]["selector"]["matchLabels"] = {**labels, DARK_CLUSTER_LABEL: "api"}
    kube.apply(squatter)
    before = kube.deployment("api-dark")
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=2))

    eventually(lambda: ready_reason(kube) == "ShadowConflict", what="ShadowConflict condition")
    eventually(lambda: any(e.reason == "ShadowConflict" and e.type == "Warning" for e in kube.events("api")),
               what="ShadowConflict Event")
    after = kube.deployment("api-dark")
    assert after["metadata"]["uid"] == before["metadata"]["uid"]
    assert after["metadata"].get("ownerReferences") is None
    assert after["spec"]["template"] == before["spec"]["template"] and after["spec"]["replicas"] == 1
    assert after["metadata"]["labels"] == before["metadata"]["labels"]
    template_labels = before["spec"]["template"]["metadata"]["labels"]
    for pod in kube.pods("app=squatter"):  # never gated: its pods keep exactly their template's labels
        assert SERVING_LABELS_ANNOTATION not in (pod["metadata"].get("annotations") or {})
        assert {k: v for k, v in pod["metadata"]["labels"].items() if k in template_labels} == template_labels

    # Its owner deletes it: the dark cluster is built in its place.
    kube.apps.delete_namespaced_deployment("api-dark", kube.namespace)
    shadow = eventually(lambda: (d := kube.deployment("api-dark")) and d["metadata"].get("ownerReferences") and d,
                        timeout_seconds=90, what="our shadow built once the name is free")
    assert shadow["metadata"]["ownerReferences"][0]["uid"] == kube.get_custom("darkclusters", "api")["metadata"]["uid"]
    eventually(lambda: ready_reason(kube) in ("Warm", "Warming"), what="condition leaves ShadowConflict")


LONG_TARGET = "payments.checkout-api." + "v" * 33 + ".eu-west"


def test_a_63_character_target_name_with_dots_gets_a_valid_shadow(kube: Kube) -> None:
    assert len(LONG_TARGET) == 63
    kube.apply(deployment(LONG_TARGET, labels={"app": "long"}, replicas=1))
    body = dark_cluster("long." + "n" * 200, target=LONG_TARGET, replicas=1)
    try:
        kube.create_custom(body)
    except client.ApiException as exc:
        if exc.status == 422 and "targetDeployment" in exc.body:
            pytest.skip("this CRD still limits targetDeployment to a 58-character DNS label (the api change lifts it)")
        raise
    shadow = eventually(lambda: kube.deployment(shadow_name(LONG_TARGET)), what="shadow of a long dotted target")
    assert len(shadow["metadata"]["name"]) <= 63 and shadow["metadata"]["name"].endswith("-dark")
    assert all(len(v) <= 63 for v in shadow["metadata"]["labels"].values())
    eventually(lambda: len(running(kube.pods(f"{DARK_CLUSTER_LABEL}={shadow['metadata']['labels'][DARK_CLUSTER_LABEL]}"))) == 1,
               what="its dark pod running")
    eventually(lambda: kube.get_custom("darkclusters", body["metadata"]["name"]).get("status", {}).get("warmReplicas") == 1,
               what="status of the long-named DarkCluster")


def test_an_idle_dark_cluster_costs_no_api_requests(kube: Kube) -> None:
    """No per-object timer: once warm, nothing wakes the DarkCluster and the operator stays silent."""
    kube.apply(APP)
    kube.apply(dark_cluster(replicas=3))
    eventually(lambda: kube.get_custom("darkclusters", "api").get("status", {}).get("warmReplicas") == 3,
               what="3 warm replicas")
    api = operator_kube.api_client()
    calls: list[str] = []
    original = api.call_api

    def counted(resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        if kube.namespace in resource_path:
            calls.append(f"{method} {resource_path}")
        return original(resource_path, method, *args, **kwargs)

    eventually(_settled_reconciles, timeout_seconds=30, what="no reconcile for 3 s")
    version = kube.get_custom("darkclusters", "api")["metadata"]["resourceVersion"]
    # Watched for longer than the former 15 s per-object timer. Only this namespace's requests
    # count: the operator's reconcile counter is process-wide, and an earlier test's
    # DarkCluster may still be going away meanwhile.
    api.call_api = counted  # type: ignore[method-assign]
    try:
        time.sleep(20)
    finally:
        del api.call_api
    assert calls == []
    assert kube.get_custom("darkclusters", "api")["metadata"]["resourceVersion"] == version, "nothing wrote it"


def _reconciles() -> float:
    return sum(sample.value for metric in REGISTRY.collect() if metric.name == "regionshift_reconciliations"
               for sample in metric.samples if sample.labels.get("kind") == "DarkCluster" and sample.name.endswith("_total"))


def _settled_reconciles() -> tuple[float] | None:
    before = _reconciles()
    time.sleep(3)
    return (before,) if _reconciles() == before else None
