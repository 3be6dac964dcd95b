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

Names stay valid whatever the target is called: a target name may take all 63 characters
and dots, so ``<target>-dark`` and every label value are cut to 63 characters with a short
hash of the whole name (:func:`bounded_name`). The operator watches only Deployments that
carry :data:`ROLE_LABEL`: its shadows (``shadow``) and the targets it shadows (``target``).
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

from regionshift.api.conditions import condition, set_condition
from regionshift.api.models import Condition, DarkClusterSpec, DarkClusterStatus, Gate, ReplicaSource
from regionshift.decide.gate import (
    SERVING_LABELS_ANNOTATION,
    carries_serving_labels,
    effective_gate,
    encode_serving_labels,
)

__all__ = [
    "DARK_CLUSTER_LABEL",
    "MANAGED_BY_LABEL",
    "OWN_CONDITIONS",
    "OWN_STATUS_FIELDS",
    "ROLE_LABEL",
    "ROLE_SHADOW",
    "ROLE_TARGET",
    "TEMPLATE_HASH_ANNOTATION",
    "blocked_status",
    "bounded_name",
    "count_pods",
    "dark_cluster_label_value",
    "dark_status",
    "desired_replicas",
    "is_owned_by",
    "own_status",
    "shadow_deployment",
    "shadow_name",
    "shadow_needs_recreate",
    "shadow_needs_write",
    "serving_labels_of",
    "conflict_status",
    "target_label_patch",
    "target_missing_status",
    "template_hash",
]

NAME_LIMIT = 63
"""Longest shadow name and label value: an RFC 1123 label, and the label-value limit."""
DARK_CLUSTER_LABEL = "regionshift.io/dark-cluster"
"""On the shadow Deployment and its pods: its DarkCluster's name (:func:`dark_cluster_label_value`)."""
ROLE_LABEL = "regionshift.io/dark-cluster-role"
"""On the Deployments the operator watches: ``shadow`` on its shadows, ``target`` on their targets.

The operator's Deployment watch selects this label only, so it never lists or watches
the users' other Deployments. The ``target`` label is the operator's one write to a
user's Deployment (metadata only, no rollout), removed when no DarkCluster shadows it.
"""
ROLE_SHADOW = "shadow"
ROLE_TARGET = "target"
OWN_CONDITIONS = frozenset({"Ready", "GateOpen"})
"""Condition types the DarkCluster controller owns (server-side apply, one list-map entry each)."""
OWN_STATUS_FIELDS = frozenset(
    {"observedGeneration", "shadowDeployment", "desiredReplicas", "warmReplicas", "readyReplicas", "gated",
     "effectiveGate", "conditions"}
)
"""Status fields the DarkCluster controller owns; sizing owns forecastReplicas and modelFit, the
evacuation (field manager regionshift-evacuation) owns evacuationGate and evacuationGateSince."""
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
TEMPLATE_HASH_ANNOTATION = "regionshift.io/template-hash"
"""On the shadow Deployment: hash of everything the operator decided, to skip no-op writes."""
TARGET_ANNOTATION = "regionshift.io/target-deployment"
_OWN_POD_LABELS = frozenset({DARK_CLUSTER_LABEL, "pod-template-hash"})
"""Pod labels a gate never adds nor removes: the shadow's own and its ReplicaSet's."""


def bounded_name(name: str, *, suffix: str = "", limit: int = NAME_LIMIT) -> str:
    """``name + suffix`` if it fits ``limit`` characters, else a cut name, a hash, the suffix.

    The hash (8 hex digits of the whole name's SHA-256) keeps two long names that share a
    prefix apart. The cut never ends in ``.`` or ``-``, so a DNS name stays a DNS name and
    a label value starts and ends with an alphanumeric character.
    """
    if len(name) + len(suffix) <= limit:
        return name + suffix
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = limit - len(suffix) - len(digest) - 1
    return f"{name[:keep].rstrip('.-')}-{digest}{suffix}"


def shadow_name(target: str) -> str:
    """The shadow Deployment's name: ``<target>-dark``, cut with a hash past 63 characters."""
    return bounded_name(target, suffix="-dark")


def dark_cluster_label_value(name: str) -> str:
    """The value of :data:`DARK_CLUSTER_LABEL` for a DarkCluster (a name of up to 253 characters)."""
    return bounded_name(name)


def target_label_patch(*, target: dict[str, Any], shadowed: bool) -> dict[str, str | None] | None:
    """The label write a target needs (``{ROLE_LABEL: ...}``), or None if it is right already."""
    current = (target["metadata"].get("labels") or {}).get(ROLE_LABEL)
    if shadowed:
        return None if current == ROLE_TARGET else {ROLE_LABEL: ROLE_TARGET}
    return {ROLE_LABEL: None} if current == ROLE_TARGET else None


def is_owned_by(obj: dict[str, Any] | None, *, uid: str) -> bool:
    """Whether an object names ``uid`` as its controlling owner: only then is it ours to change."""
    owners = ((obj or {}).get("metadata") or {}).get("ownerReferences") or []
    return any(o.get("uid") == uid and o.get("controller") for o in owners)


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
    label = dark_cluster_label_value(name)
    spec = DarkClusterSpec.model_validate(dark_cluster["spec"])
    decided = {
        "replicas": replicas,
        "selector": _shadow_selector(label),
        "template": _shadow_template(target=target, dark_cluster_name=label),
        "strategy": _strategy(target=target),
    }
    labels = {
        **(target["metadata"].get("labels") or {}),
        DARK_CLUSTER_LABEL: label,
        ROLE_LABEL: ROLE_SHADOW,
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
        or (current.get("metadata", {}).get("labels") or {}).get(ROLE_LABEL) != ROLE_SHADOW
    )


def shadow_needs_recreate(*, current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Whether the shadow must be deleted and created anew rather than replaced.

    A Deployment's selector is immutable: when the target is recreated with another
    selector, or a shadow was made by an older regionshift (whose selector took the
    target's labels too), only a new Deployment can follow.
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


def _conditions(old_status: dict[str, Any], *new: dict[str, Any]) -> list[Condition]:
    """Our conditions only (other writers own theirs), transition times kept from the old ones."""
    conditions = [c for c in old_status.get("conditions") or [] if c.get("type") in OWN_CONDITIONS]
    for one in new:
        conditions = set_condition(conditions, one)
    return [Condition.model_validate(c) for c in conditions]


def dark_status(
    *,
    spec: DarkClusterSpec,
    generation: int | None,
    old_status: dict[str, Any],
    replicas: int,
    pods: list[dict[str, Any]],
    now: str,
    evacuation_gate: Gate | str | None = None,
    region_failover_gate: Gate | str | None = None,
) -> DarkClusterStatus:
    """The status a reconciled DarkCluster reports, from its shadow's pods.

    The gate reported is the one in force (:func:`regionshift.decide.gate.effective_gate` of
    ``spec.gate``, ``evacuation_gate``, the DarkCluster's ``status.evacuationGate``, and
    ``region_failover_gate``, its RegionFailover's); the GateOpen condition says who holds it open.
    """
    warm, serving = count_pods(pods)
    shadow = shadow_name(spec.target_deployment)
    in_force = effective_gate(spec_gate=spec.gate, evacuation_gate=evacuation_gate,
                              region_failover_gate=region_failover_gate)
    gated = not in_force.is_open
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
        generation=generation, message=f"{in_force.describe()}; {serving} of {len(pods)} dark pods serve traffic",
    )
    return DarkClusterStatus(
        observed_generation=generation,
        shadow_deployment=shadow,
        desired_replicas=replicas,
        warm_replicas=warm,
        ready_replicas=serving,
        gated=gated,
        effective_gate=in_force.gate,
        conditions=_conditions(old_status, ready, gate),
    )


def target_missing_status(
    *, spec: DarkClusterSpec, generation: int | None, old_status: dict[str, Any], pods: list[dict[str, Any]], now: str
) -> DarkClusterStatus:
    """The status of a DarkCluster whose target Deployment does not exist (yet, or any more).

    Nothing serves: every dark pod's gate is closed and the shadow is scaled to zero, so
    the status reports the gate closed and no replica desired, whatever the spec says.
    """
    warm, serving = count_pods(pods)
    missing = condition(
        type_="Ready", status=False, reason="TargetNotFound", now=now, generation=generation,
        message=f"Deployment {spec.target_deployment!r} not found in this namespace; no dark pod serves,"
        " and the dark cluster is rebuilt as soon as it appears",
    )
    gate = condition(
        type_="GateOpen", status=False, reason="TargetNotFound", now=now, generation=generation,
        message=f"closed while the target is missing, whatever spec.gate and status.evacuationGate say;"
        f" {serving} of {len(pods)} dark pods serve traffic",
    )
    return DarkClusterStatus(
        observed_generation=generation,
        shadow_deployment=shadow_name(spec.target_deployment),
        desired_replicas=0,
        warm_replicas=warm,
        ready_replicas=serving,
        gated=True,
        effective_gate=Gate.CLOSED,
        conditions=_conditions(old_status, missing, gate),
    )


def blocked_status(
    *, generation: int | None, old_status: dict[str, Any], reason: str, message: str, now: str
) -> DarkClusterStatus:
    """The last status with a Ready condition saying why the DarkCluster cannot be acted on.

    The counts stay what they were (they are not known now); Ready turns False with the
    reason (ShadowConflict, Forbidden, Invalid, ...).
    """
    blocked = condition(type_="Ready", status=False, reason=reason, now=now, generation=generation, message=message)
    kept = own_status(old_status)
    return kept.model_copy(update={"observed_generation": generation, "conditions": _conditions(old_status, blocked)})


def conflict_status(
    *, spec: DarkClusterSpec, generation: int | None, old_status: dict[str, Any], now: str
) -> DarkClusterStatus:
    """The status of a DarkCluster whose shadow name is taken by a Deployment it does not own."""
    return blocked_status(
        generation=generation, old_status=old_status, reason="ShadowConflict", now=now,
        message=f"Deployment {shadow_name(spec.target_deployment)!r} exists and is not owned by this"
        " DarkCluster; regionshift leaves it untouched (delete or rename it to let the dark cluster be built)",
    )


def own_status(status: dict[str, Any]) -> DarkClusterStatus:
    """The part of a DarkCluster's status the controller owns, as a model (forecastReplicas and modelFit left out)."""
    mine = {key: value for key, value in status.items() if key in OWN_STATUS_FIELDS}
    mine["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") in OWN_CONDITIONS]
    return DarkClusterStatus.model_validate(mine)
