"""The gate: a readiness gate on every dark pod whose condition the operator owns.

Gated (condition False) a dark pod runs, warm, but is not Ready, so the endpoints
controller keeps it out of every Service. Ungating is one write per pod to its
``pods/status`` subresource; the kubelet (kwok, locally) then marks the pod Ready and the
endpoints controller adds it within a second. No restart, no rollout.

Pure decisions only: which pods need a write, and what the write says.
"""

from __future__ import annotations

from typing import Any, Iterable

from regionshift.api.models import Gate

__all__ = ["GATE_CONDITION", "current_gate_status", "gate_condition", "gate_status", "pod_gate", "pods_needing_gate_write"]

GATE_CONDITION = "regionshift.io/gate-open"
"""The readiness-gate condition type on dark pods."""


def gate_status(gate: str) -> str:
    """The condition status a pod should carry for a DarkCluster gate."""
    return "True" if gate == Gate.OPEN.value else "False"


def gate_condition(*, gate: str, now: str) -> dict[str, Any]:
    """The pod condition that says whether the gate is open."""
    opened = gate == Gate.OPEN.value
    return {
        "type": GATE_CONDITION,
        "status": gate_status(gate),
        "reason": "GateOpen" if opened else "GateClosed",
        "message": "regionshift opened the gate: this dark pod takes traffic"
        if opened
        else "regionshift keeps this dark pod warm and out of every Service's endpoints",
        "lastTransitionTime": now,
    }


def current_gate_status(pod: dict[str, Any]) -> str | None:
    """The gate condition's status on a pod, or None if it has none yet."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == GATE_CONDITION:
            return str(condition.get("status"))
    return None


def pod_gate(pod: dict[str, Any]) -> Gate | None:
    """The gate a dark pod carries now: Open, Closed, or None before its first gate write."""
    status = current_gate_status(pod)
    if status is None:
        return None
    return Gate.OPEN if status == "True" else Gate.CLOSED


def pods_needing_gate_write(*, pods: Iterable[dict[str, Any]], gate: str) -> list[str]:
    """Names of the pods whose gate condition differs from the DarkCluster's gate."""
    wanted = gate_status(gate)
    return [
        pod["metadata"]["name"]
        for pod in pods
        if not (pod.get("metadata") or {}).get("deletionTimestamp") and current_gate_status(pod) != wanted
    ]
