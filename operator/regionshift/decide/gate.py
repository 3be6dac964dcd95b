"""The gate: a dark pod serves exactly when it carries its target's labels.

A gated dark pod runs its target's pod template, warm and Ready, but carries none of the
target's pod labels: only the dark-cluster label. No Service, PodDisruptionBudget or
HorizontalPodAutoscaler that selects the target's pods sees it, so a gated pod neither
takes traffic, nor counts against a disruption budget, nor skews an autoscaler.

The labels the target's pods carry (the *serving labels*) travel with every dark pod in
the annotation :data:`SERVING_LABELS_ANNOTATION` of the shadow's pod template. Ungating
is one metadata merge patch per pod that adds them, and the pod joins, in the same
instant, every object that selects the target; closing is one patch that removes them.
No restart, no rollout, no write to a status subresource.

One upstream behaviour needs a second write: kube-controller-manager's disruption
controller recounts a PodDisruptionBudget on a pod event only when the pod matches the
budget *after* the event, so a pod that loses the labels leaves the budget's status stale
(still counting it) until something else touches the budget or its pods. After a close,
the operator therefore asks every budget that selected a closed pod to recount
(:func:`budgets_to_recount`), with a metadata-only write that leaves the budget's spec and
generation alone.

Hands that hold a DarkCluster's gate. ``spec.gate`` is its owner's (a human, or a GitOps
tool that applies a hand-written manifest). The evacuation's is the ``status.evacuationGate``
of the RegionFailover that owns the DarkCluster (:data:`REGION_FAILOVER_HAND`): one write on
the RegionFailover's status subresource opens every DarkCluster it owns, however many, so
an evacuation costs one write before the dark pods' own writes, not one per DarkCluster.
A DarkCluster's own ``status.evacuationGate`` (:data:`EVACUATION_HAND`) is a hand too, for
a DarkCluster without a RegionFailover and for one an older regionshift opened there; the
evacuation closes it with its own. The evacuation's hands are written under their own field
manager on status subresources, where a GitOps tool neither diffs nor writes. The gate
enforced on the dark pods (:func:`effective_gate`) is Open when any hand holds it open: an
evacuation opens a DarkCluster whatever its manifest says, without a write the GitOps tool
would revert, and closing the evacuation's gate never closes a gate its owner holds open.

Pure decisions only: the gate in force and who opened it, what a pod's serving labels
are, whether it carries them, which pods need a write, what the write says, and which
budgets to recount after a close.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from regionshift.api.models import Gate

__all__ = [
    "EVACUATION_HAND",
    "REGION_FAILOVER_HAND",
    "RECOUNT_ANNOTATION",
    "SPEC_HAND",
    "EffectiveGate",
    "SERVING_LABELS_ANNOTATION",
    "budgets_to_recount",
    "carries_serving_labels",
    "effective_gate",
    "encode_serving_labels",
    "gate_label_patches",
    "label_patch",
    "pod_gate",
    "pods_needing_gate_write",
    "selector_matches",
    "serving_labels",
]

SERVING_LABELS_ANNOTATION = "regionshift.io/serving-labels"
"""On the shadow's pod template (so on every dark pod): its target's pod labels, as JSON."""

RECOUNT_ANNOTATION = "regionshift.io/recount-requested-at"
"""On a PodDisruptionBudget that selected a closed dark pod: when regionshift asked for a recount."""

LabelPatch = dict[str, str | None]
"""The ``metadata.labels`` of a JSON merge patch: a value sets a label, None removes it."""

SPEC_HAND = "spec"
"""The owner's hand on the gate: ``spec.gate``."""
EVACUATION_HAND = "evacuation"
"""An evacuation's hand on the gate kept on the DarkCluster: its own ``status.evacuationGate``."""
REGION_FAILOVER_HAND = "regionfailover"
"""The evacuation's hand on the gate: ``status.evacuationGate`` of the RegionFailover that owns the DarkCluster."""


@dataclass(frozen=True, kw_only=True)
class EffectiveGate:
    """The gate enforced on a DarkCluster's dark pods, and which hands hold it open."""

    gate: Gate
    opened_by: tuple[str, ...] = ()
    """:data:`SPEC_HAND`, :data:`EVACUATION_HAND`, :data:`REGION_FAILOVER_HAND`, in that order; empty when Closed."""

    @property
    def is_open(self) -> bool:
        """Whether the dark pods serve."""
        return self.gate is Gate.OPEN

    def describe(self) -> str:
        """Who holds the gate open (or that nobody does), for a condition message or an Event."""
        if not self.opened_by:
            return "closed: neither spec.gate nor status.evacuationGate is Open"
        held = {SPEC_HAND: "spec.gate (its owner)", EVACUATION_HAND: "status.evacuationGate (an evacuation)",
                REGION_FAILOVER_HAND: "its RegionFailover's status.evacuationGate (an evacuation)"}
        return "opened by " + " and ".join(held[hand] for hand in self.opened_by)

    @property
    def by_evacuation(self) -> bool:
        """Whether an evacuation holds it open (on the DarkCluster or on its RegionFailover)."""
        return EVACUATION_HAND in self.opened_by or REGION_FAILOVER_HAND in self.opened_by


def effective_gate(*, spec_gate: Gate | str, evacuation_gate: Gate | str | None,
                   region_failover_gate: Gate | str | None = None) -> EffectiveGate:
    """The gate in force: Open when ``spec.gate``, ``status.evacuationGate`` or the RegionFailover's is Open.

    An absent evacuation gate (no evacuation ever touched the DarkCluster or its
    RegionFailover) counts as Closed. The owner's hand wins for opening (an evacuation that
    closes its gate leaves a gate the owner holds open as it is); the evacuation's hands win
    for opening too (a manifest with ``gate: Closed``, re-applied, does not close a gate an
    evacuation holds open).
    """
    opened_by = tuple(
        hand for hand, gate in ((SPEC_HAND, spec_gate), (EVACUATION_HAND, evacuation_gate),
                                (REGION_FAILOVER_HAND, region_failover_gate))
        if gate is not None and Gate(gate) is Gate.OPEN
    )
    return EffectiveGate(gate=Gate.OPEN if opened_by else Gate.CLOSED, opened_by=opened_by)


def encode_serving_labels(labels: Mapping[str, str]) -> str:
    """The annotation value for a set of serving labels (stable: sorted, compact JSON)."""
    return json.dumps(dict(labels), sort_keys=True, separators=(",", ":"))


def serving_labels(pod: Mapping[str, Any]) -> dict[str, str]:
    """The labels a dark pod (or a pod template) carries while it serves.

    Empty for a pod without the annotation (made by an older regionshift, or by hand) and
    for an annotation that is not a JSON object of strings: such a pod is never written.
    """
    raw = ((pod.get("metadata") or {}).get("annotations") or {}).get(SERVING_LABELS_ANNOTATION)
    if not raw:
        return {}
    try:
        labels = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(labels, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
        return {}
    return labels


def _labels(pod: Mapping[str, Any]) -> dict[str, str]:
    return dict((pod.get("metadata") or {}).get("labels") or {})


def carries_serving_labels(pod: Mapping[str, Any]) -> bool:
    """Whether a dark pod carries every one of its serving labels, with its value."""
    labels = _labels(pod)
    return all(labels.get(key) == value for key, value in serving_labels(pod).items())


def pod_gate(pod: Mapping[str, Any]) -> Gate | None:
    """The gate a dark pod carries now: Open with its serving labels, Closed without them.

    None for a pod that has no serving labels to carry (no annotation): the gate means
    nothing for it.
    """
    if not serving_labels(pod):
        return None
    return Gate.OPEN if carries_serving_labels(pod) else Gate.CLOSED


def label_patch(*, pod: Mapping[str, Any], gate: str) -> LabelPatch:
    """The labels to merge into a pod for a gate: its serving labels, or their removal."""
    wanted = serving_labels(pod)
    if gate == Gate.OPEN.value:
        return dict(wanted)
    return {key: None for key in wanted}


def _needs_write(pod: Mapping[str, Any], *, gate: str) -> bool:
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        return False
    wanted = serving_labels(pod)
    if gate == Gate.OPEN.value:
        return not carries_serving_labels(pod)
    labels = _labels(pod)
    return any(key in labels for key in wanted)


def gate_label_patches(*, pods: Iterable[Mapping[str, Any]], gate: str) -> dict[str, LabelPatch]:
    """For every pod whose labels disagree with the gate: its name and the labels to merge.

    Open: pods missing a serving label (or carrying another value) get all of them.
    Closed: pods carrying any serving-label key lose all of them. Pods being deleted are
    left alone.
    """
    return {pod["metadata"]["name"]: label_patch(pod=pod, gate=gate) for pod in pods if _needs_write(pod, gate=gate)}


def pods_needing_gate_write(*, pods: Iterable[Mapping[str, Any]], gate: str) -> list[str]:
    """Names of the pods whose labels disagree with the DarkCluster's gate."""
    return list(gate_label_patches(pods=pods, gate=gate))


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """Whether a Kubernetes label selector matches a set of labels.

    ``None`` matches nothing and ``{}`` everything (a policy/v1 PodDisruptionBudget's
    empty selector selects every pod of its namespace).
    """
    if selector is None:
        return False
    if any(labels.get(key) != value for key, value in (selector.get("matchLabels") or {}).items()):
        return False
    for requirement in selector.get("matchExpressions") or []:
        key, operator, values = requirement["key"], requirement["operator"], requirement.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def budgets_to_recount(*, budgets: Iterable[Mapping[str, Any]], closed: Iterable[Mapping[str, Any]]) -> list[str]:
    """Names of the budgets that selected a dark pod while it served but no longer do once closed.

    ``closed`` are the pods a close wrote, as they were before the write.
    """
    moves = []
    for pod in closed:
        wanted = serving_labels(pod)
        labels = _labels(pod)
        moves.append(({**labels, **wanted}, {k: v for k, v in labels.items() if k not in wanted}))
    return [
        budget["metadata"]["name"]
        for budget in budgets
        if any(
            selector_matches((budget.get("spec") or {}).get("selector"), serving)
            and not selector_matches((budget.get("spec") or {}).get("selector"), gated)
            for serving, gated in moves
        )
    ]
