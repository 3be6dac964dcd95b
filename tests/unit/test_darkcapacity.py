"""Pure decisions about the shadow Deployment, without a cluster."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from regionshift.decide.darkcapacity import (
    DARK_CLUSTER_LABEL,
    count_pods,
    dark_status,
    desired_replicas,
    shadow_deployment,
    shadow_needs_write,
    target_missing_status,
)
from regionshift.decide.gate import GATE_CONDITION
from regionshift.api.models import DarkClusterSpec

TARGET: dict[str, Any] = {
    "metadata": {"name": "api", "namespace": "ns", "labels": {"app": "api", "team": "x"}},
    "spec": {
        "selector": {"matchLabels": {"app": "api"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": {"app": "api"}, "annotations": {"a": "b"}},
            "spec": {"containers": [{"name": "api", "image": "api:1"}], "readinessGates": [{"conditionType": "own/gate"}]},
        },
    },
}


def dark(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "regionshift.io/v1alpha1",
        "kind": "DarkCluster",
        "metadata": {"name": "api-dc", "namespace": "ns", "uid": "uid-1", "generation": 4},
        "spec": {"targetDeployment": "api", **spec},
    }


@pytest.mark.parametrize(
    ("replicas", "forecast", "expected"),
    [
        ({"source": "Fixed", "fixedReplicas": 3, "minReplicas": 0, "maxReplicas": 10}, None, 3),
        ({"source": "Fixed", "minReplicas": 2, "maxReplicas": 10}, None, 2),
        ({"source": "Forecast", "minReplicas": 1, "maxReplicas": 5}, 9, 5),
        ({"source": "Forecast", "minReplicas": 1, "maxReplicas": 5}, 0, 1),
        ({"source": "Forecast", "minReplicas": 1, "maxReplicas": 5}, None, 1),
        ({"source": "Forecast", "minReplicas": 0, "maxReplicas": 5}, 4, 4),
    ],
)
def test_desired_replicas(replicas: dict[str, Any], forecast: int | None, expected: int) -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "api", "replicas": replicas})
    assert desired_replicas(spec=spec, forecast_replicas=forecast) == expected


def test_shadow_copies_template_adds_gate_label_and_owner() -> None:
    target = copy.deepcopy(TARGET)
    shadow = shadow_deployment(dark_cluster=dark(), target=target, replicas=4)
    assert target == TARGET, "the target must not be modified"
    assert shadow["metadata"]["name"] == "api-dark"
    assert shadow["metadata"]["ownerReferences"] == [
        {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "name": "api-dc", "uid": "uid-1",
         "controller": True, "blockOwnerDeletion": True}
    ]
    template = shadow["spec"]["template"]
    assert template["spec"]["readinessGates"] == [{"conditionType": "own/gate"}, {"conditionType": GATE_CONDITION}]
    assert template["metadata"]["labels"] == {"app": "api", DARK_CLUSTER_LABEL: "api-dc"}
    assert template["metadata"]["annotations"] == {"a": "b"}
    assert shadow["spec"]["selector"] == {"matchLabels": {"app": "api", DARK_CLUSTER_LABEL: "api-dc"}}
    assert shadow["spec"]["replicas"] == 4


def test_strategy_replaces_all_at_once_while_gated_and_follows_target_when_open() -> None:
    closed = shadow_deployment(dark_cluster=dark(gate="Closed"), target=TARGET, replicas=1)
    opened = shadow_deployment(dark_cluster=dark(gate="Open"), target=TARGET, replicas=1)
    assert closed["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": "100%", "maxUnavailable": "100%"}
    assert opened["spec"]["strategy"] == TARGET["spec"]["strategy"]


def test_shadow_is_written_only_when_a_decided_part_changes() -> None:
    desired = shadow_deployment(dark_cluster=dark(), target=TARGET, replicas=2)
    assert shadow_needs_write(current=None, desired=desired)
    current = copy.deepcopy(desired)
    current["status"] = {"replicas": 2}
    assert not shadow_needs_write(current=current, desired=desired)
    current["spec"]["replicas"] = 5  # someone scaled the shadow by hand
    assert shadow_needs_write(current=current, desired=desired)
    new_image = copy.deepcopy(TARGET)
    new_image["spec"]["template"]["spec"]["containers"][0]["image"] = "api:2"
    assert shadow_needs_write(current=desired, desired=shadow_deployment(dark_cluster=dark(), target=new_image, replicas=2))


def pod(*, phase: str = "Running", ready: bool = False, containers: bool = True, deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "p"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "ContainersReady", "status": str(containers)}, {"type": "Ready", "status": str(ready)}]}}


def test_count_pods_warm_and_serving() -> None:
    pods = [pod(), pod(ready=True), pod(phase="Pending", containers=False), pod(deleting=True)]
    assert count_pods(pods) == (2, 1)


def test_status_reports_warming_then_warm_and_keeps_transition_time() -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "api", "replicas": {"fixedReplicas": 2}})
    first = dark_status(spec=spec, generation=1, old_status={}, replicas=2, pods=[pod()], now="t1")
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Warming")
    second = dark_status(spec=spec, generation=1, old_status=first, replicas=2, pods=[pod(), pod()], now="t2")
    ready = next(c for c in second["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("True", "Warm", "t2")
    third = dark_status(spec=spec, generation=1, old_status=second, replicas=2, pods=[pod(), pod()], now="t3")
    assert next(c for c in third["conditions"] if c["type"] == "Ready")["lastTransitionTime"] == "t2"
    assert (third["warmReplicas"], third["readyReplicas"], third["gated"]) == (2, 0, True)


def test_target_missing_status_names_the_target() -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "nope"})
    status = target_missing_status(spec=spec, generation=2, old_status={}, now="t")
    (ready,) = status["conditions"]
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "TargetNotFound", 2)
    assert "'nope'" in ready["message"]
