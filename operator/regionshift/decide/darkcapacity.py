"""Dark capacity: what a DarkCluster's shadow Deployment should look like.

Pure decisions over plain data, no API calls: the reconciler reads the DarkCluster and its
target Deployment, asks this module for the shadow Deployment it should see, for the
replica count and for the status to report, and writes the answers. Everything here is
unit-tested without a cluster.

The shadow (Nimble's ``nimble_API``) runs the target's pod template with its labels
swapped out: its pods carry only the dark-cluster label, and the target's pod labels (the
serving labels) wait in an annotation until the gate opens (:mod:`regionshift.decide.gate`).
Its selector is the dark-cluster label alone, so gated pods match no Service,
PodDisruptionBudget or autoscaler of the target, and adding or removing the serving
labels never takes a pod away from its own ReplicaSet.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from regionshift.api.conditions import condition, set_condition
from regionshift.decide.gate import SERVING_LABELS_ANNOTATION, carries_serving_labels, encode_serving_labels
from regionshift.api.models import DarkClusterSpec, Gate, ReplicaSource

__all__ = [
    "DARK_CLUSTER_LABEL",
    "MANAGED_BY_LABEL",
    "TEMPLATE_HASH_ANNOTATION",
    "count_pods",
    "dark_status",
    "desired_replicas",
    "shadow_deployment",
    "shadow_name",
    "shadow_needs_recreate",
    "shadow_needs_write",
    "serving_labels_of",
    "conflict_status",
    "target_missing_status",
    "template_hash",
]

DARK_CLUSTER_LABEL = "regionshift.io/dark-cluster"
"""On the shadow Deployment and its pods: the name of the DarkCluster they belong to."""
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TEMPLATE_HASH_ANNOTATION = "regionshift.io/template-hash"
"""On the shadow Deployment: hash of everything the operator decided, to skip no-op writes."""
TARGET_ANNOTATION = "regionshift.io/target-deployment"
_OWN_POD_LABELS = frozenset({DARK_CLUSTER_LABEL, "pod-template-hash"})
"""Pod labels a gate never adds nor removes: the shadow's own and its ReplicaSet's."""


def shadow_name(target: str) -> str:
    """The shadow Deployment's name: ``<target>-dark``."""
    return f"{target}-dark"


def desired_replicas(*, spec: DarkClusterSpec, forecast_replicas: int | None) -> int:
    """How many dark replicas to keep: fixed or forecast, clamped to min..max."""
    policy = spec.replicas
    if policy.source == ReplicaSource.FIXED.value:
        wanted = policy.fixed_replicas if policy.fixed_replicas is not None else policy.min_replicas
    else:
        wanted = forecast_replicas if forecast_replicas is not None else policy.min_replicas
    return max(policy.min_replicas, min(policy.max_replicas, wanted))


def serving_labels_of(target: dict[str, Any]) -> dict[str, str]:
    """The labels the target's pods carry: what a dark pod adds when its gate opens."""
    labels = (target["spec"]["template"].get("metadata") or {}).get("labels") or {}
    return {key: value for key, value in labels.items() if key not in _OWN_POD_LABELS}


def _shadow_selector(dark_cluster_name: str) -> dict[str, Any]:
    return {"matchLabels": {DARK_CLUSTER_LABEL: dark_cluster_name}}


def _shadow_template(*, target: dict[str, Any], dark_cluster_name: str) -> dict[str, Any]:
    template = copy.deepcopy(target["spec"]["template"])
    metadata = template.setdefault("metadata", {})
    metadata["labels"] = {DARK_CLUSTER_LABEL: dark_cluster_name}
    metadata["annotations"] = {
        **(metadata.get("annotations") or {}),
        SERVING_LABELS_ANNOTATION: encode_serving_labels(serving_labels_of(target)),
    }
    return template


def _strategy(*, target: dict[str, Any]) -> dict[str, Any]:
    # Gated pods turn Ready like any other (they serve nothing while they lack the serving
    # labels), so the shadow rolls like its target whatever the gate, and keeps most of its
    # warm capacity through a rollout. The strategy does not depend on the gate, so
    # flipping the gate never rewrites the shadow.
    return copy.deepcopy(target["spec"].get("strategy") or {"type": "RollingUpdate"})


def template_hash(decided: dict[str, Any]) -> str:
    """A stable hash of the parts of the shadow the operator decides."""
    return hashlib.sha256(json.dumps(decided, sort_keys=True).encode()).hexdigest()[:16]


def shadow_deployment(
    *,
    dark_cluster: dict[str, Any],
    target: dict[str, Any],
    replicas: int,
) -> dict[str, Any]:
    """The shadow Deployment a DarkCluster should have, as a Kubernetes object.

    ``dark_cluster`` and ``target`` are the objects as the API server returns them. The
    owner reference makes kube-controller-manager's garbage collector delete the shadow
    with its DarkCluster.
    """
    name = dark_cluster["metadata"]["name"]
    spec = DarkClusterSpec.model_validate(dark_cluster["spec"])
    decided = {
        "replicas": replicas,
        "selector": _shadow_selector(name),
        "template": _shadow_template(target=target, dark_cluster_name=name),
        "strategy": _strategy(target=target),
    }
    labels = {
        **(target["metadata"].get("labels") or {}),
        DARK_CLUSTER_LABEL: name,
        MANAGED_BY_LABEL: "regionshift",
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": shadow_name(spec.target_deployment),
            "namespace": dark_cluster["metadata"]["namespace"],
            "labels": labels,
            "annotations": {
                TEMPLATE_HASH_ANNOTATION: template_hash(decided),
                TARGET_ANNOTATION: spec.target_deployment,
            },
            "ownerReferences": [
                {
                    "apiVersion": dark_cluster["apiVersion"],
                    "kind": dark_cluster["kind"],
                    "name": name,
                    "uid": dark_cluster["metadata"]["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {**decided, "revisionHistoryLimit": 2},
    }


def shadow_needs_write(*, current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether the shadow as it stands differs from what the operator decided."""
    if current is None:
        return True
    annotations = current.get("metadata", {}).get("annotations") or {}
    owners = current.get("metadata", {}).get("ownerReferences") or []
    desired_owner = desired["metadata"]["ownerReferences"][0]["uid"]
    return (
        annotations.get(TEMPLATE_HASH_ANNOTATION) != desired["metadata"]["annotations"][TEMPLATE_HASH_ANNOTATION]
        or not any(o.get("uid") == desired_owner for o in owners)
        or (current.get("spec") or {}).get("replicas") != desired["spec"]["replicas"]
    )


def shadow_needs_recreate(*, current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether the shadow must be deleted and created anew rather than replaced.

    A Deployment's selector is immutable. A shadow made by an older regionshift selects
    its target's labels too (its gated pods carried them and a readiness gate); the only
    way to the dark-cluster-only selector is a new Deployment.
    """
    if current is None:
        return False
    return bool((current.get("spec") or {}).get("selector") != desired["spec"]["selector"])


def _has_condition(pod: dict[str, Any], type_: str) -> bool:
    return any(
        c.get("type") == type_ and c.get("status") == "True" for c in (pod.get("status") or {}).get("conditions") or []
    )


def count_pods(pods: list[dict[str, Any]]) -> tuple[int, int]:
    """(warm, serving): dark pods running with containers ready, and those Ready with their serving labels."""
    live = [p for p in pods if not (p.get("metadata") or {}).get("deletionTimestamp")]
    warm = sum(1 for p in live if (p.get("status") or {}).get("phase") == "Running" and _has_condition(p, "ContainersReady"))
    serving = sum(1 for p in live if _has_condition(p, "Ready") and carries_serving_labels(p))
    return warm, serving


def dark_status(
    *,
    spec: DarkClusterSpec,
    generation: int | None,
    old_status: dict[str, Any],
    replicas: int,
    pods: list[dict[str, Any]],
    now: str,
) -> dict[str, Any]:
    """The status a reconciled DarkCluster reports, from its shadow's pods."""
    warm, serving = count_pods(pods)
    shadow = shadow_name(spec.target_deployment)
    gated = spec.gate == Gate.CLOSED.value
    if warm >= replicas:
        ready = condition(
            type_="Ready", status=True, reason="Warm", now=now, generation=generation,
            message=f"{shadow} has {warm}/{replicas} dark replicas warm",
        )
    else:
        ready = condition(
            type_="Ready", status=False, reason="Warming", now=now, generation=generation,
            message=f"{shadow} has {warm}/{replicas} dark replicas warm",
        )
    gate = condition(
        type_="GateOpen", status=not gated, reason="GateClosed" if gated else "GateOpen", now=now,
        generation=generation, message=f"{serving} of {len(pods)} dark pods serve traffic",
    )
    conditions = set_condition(set_condition(old_status.get("conditions"), ready), gate)
    return {
        "observedGeneration": generation,
        "shadowDeployment": shadow,
        "desiredReplicas": replicas,
        "warmReplicas": warm,
        "readyReplicas": serving,
        "gated": gated,
        "conditions": conditions,
    }


def target_missing_status(
    *, spec: DarkClusterSpec, generation: int | None, old_status: dict[str, Any], now: str
) -> dict[str, Any]:
    """The status of a DarkCluster whose target Deployment does not exist (yet)."""
    missing = condition(
        type_="Ready", status=False, reason="TargetNotFound", now=now, generation=generation,
        message=f"Deployment {spec.target_deployment!r} not found in this namespace;"
        " the dark cluster is created as soon as it appears",
    )
    return {
        "observedGeneration": generation,
        "gated": spec.gate == Gate.CLOSED.value,
        "conditions": set_condition(old_status.get("conditions"), missing),
    }


def conflict_status(
    *, spec: DarkClusterSpec, generation: int | None, old_status: dict[str, Any], now: str
) -> dict[str, Any]:
    """The status of a DarkCluster whose shadow name is taken by a Deployment it does not own."""
    taken = condition(
        type_="Ready", status=False, reason="ShadowConflict", now=now, generation=generation,
        message=f"Deployment {shadow_name(spec.target_deployment)!r} exists and is not owned by this"
        " DarkCluster; regionshift leaves it untouched",
    )
    return {"observedGeneration": generation, "conditions": set_condition(old_status.get("conditions"), taken)}
