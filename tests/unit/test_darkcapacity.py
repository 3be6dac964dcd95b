"""Pure decisions about the shadow Deployment, without a cluster."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from regionshift.decide.darkcapacity import (
    DARK_CLUSTER_LABEL,
    OWN_STATUS_FIELDS,
    ROLE_LABEL,
    ROLE_SHADOW,
    ROLE_TARGET,
    blocked_status,
    count_pods,
    dark_cluster_label_value,
    dark_status,
    desired_replicas,
    is_owned_by,
    own_status,
    serving_labels_of,
    shadow_deployment,
    shadow_name,
    shadow_needs_recreate,
    shadow_needs_write,
    target_label_patch,
    target_missing_status,
)
from regionshift.decide.gate import SERVING_LABELS_ANNOTATION, carries_serving_labels, serving_labels
from regionshift.api.models import DarkClusterSpec

TARGET: dict[str, Any] = {
    "metadata": {"name": "api", "namespace": "ns", "labels": {"app": "api", "team": "x"}},
    "spec": {
        "selector": {"matchLabels": {"app": "api"}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {
            "metadata": {"labels": {"app": "api", "tier": "web"}, "annotations": {"a": "b"}},
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


def test_shadow_copies_template_swaps_labels_for_the_dark_cluster_label_and_owner() -> None:
    target = copy.deepcopy(TARGET)
    shadow = shadow_deployment(dark_cluster=dark(), target=target, replicas=4)
    assert target == TARGET, "the target must not be modified"
    assert shadow["metadata"]["name"] == "api-dark"
    assert shadow["metadata"]["ownerReferences"] == [
        {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "name": "api-dc", "uid": "uid-1",
         "controller": True, "blockOwnerDeletion": True}
    ]
    template = shadow["spec"]["template"]
    # Gated pods carry none of the target's pod labels: no Service, PDB or HPA of the target selects them.
    assert template["metadata"]["labels"] == {DARK_CLUSTER_LABEL: "api-dc"}
    assert shadow["spec"]["selector"] == {"matchLabels": {DARK_CLUSTER_LABEL: "api-dc"}}
    # The target's pod labels wait in an annotation until the gate opens.
    assert template["metadata"]["annotations"]["a"] == "b"
    assert serving_labels(template) == {"app": "api", "tier": "web"}
    assert not carries_serving_labels(template)
    # No readiness gate of regionshift's; the target's own readiness gates stay.
    assert template["spec"]["readinessGates"] == [{"conditionType": "own/gate"}]
    assert shadow["spec"]["replicas"] == 4


def test_serving_labels_leave_out_the_shadows_own_labels() -> None:
    target = copy.deepcopy(TARGET)
    target["spec"]["template"]["metadata"]["labels"].update({DARK_CLUSTER_LABEL: "x", "pod-template-hash": "h"})
    assert serving_labels_of(target) == {"app": "api", "tier": "web"}


def test_strategy_follows_the_target_and_a_gate_flip_never_rewrites_the_shadow() -> None:
    closed = shadow_deployment(dark_cluster=dark(gate="Closed"), target=TARGET, replicas=1)
    opened = shadow_deployment(dark_cluster=dark(gate="Open"), target=TARGET, replicas=1)
    assert closed["spec"]["strategy"] == opened["spec"]["strategy"] == TARGET["spec"]["strategy"]
    assert not shadow_needs_write(current=closed, desired=opened)


def test_a_target_label_change_reaches_the_annotation_and_rolls_the_shadow() -> None:
    relabelled = copy.deepcopy(TARGET)
    relabelled["spec"]["template"]["metadata"]["labels"]["version"] = "v2"
    before = shadow_deployment(dark_cluster=dark(), target=TARGET, replicas=1)
    after = shadow_deployment(dark_cluster=dark(), target=relabelled, replicas=1)
    assert serving_labels(after["spec"]["template"]) == {"app": "api", "tier": "web", "version": "v2"}
    assert shadow_needs_write(current=before, desired=after)
    assert not shadow_needs_recreate(current=before, desired=after), "the selector stays: a replace will do"


def test_a_shadow_of_the_readiness_gate_design_is_recreated() -> None:
    desired = shadow_deployment(dark_cluster=dark(), target=TARGET, replicas=2)
    assert not shadow_needs_recreate(current=None, desired=desired)
    assert not shadow_needs_recreate(current=copy.deepcopy(desired), desired=desired)
    old = copy.deepcopy(desired)  # selector and pod labels included the target's
    old["spec"]["selector"] = {"matchLabels": {"app": "api", DARK_CLUSTER_LABEL: "api-dc"}}
    old["metadata"]["annotations"]["regionshift.io/template-hash"] = "old"
    assert shadow_needs_write(current=old, desired=desired)
    assert shadow_needs_recreate(current=old, desired=desired)


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


def pod(*, phase: str = "Running", ready: bool = False, containers: bool = True, deleting: bool = False,
        labelled: bool | None = None) -> dict[str, Any]:
    """A dark pod; ``labelled`` (default: as Ready) says whether it carries its serving labels."""
    labelled = ready if labelled is None else labelled
    labels = {DARK_CLUSTER_LABEL: "api-dc", **({"app": "api"} if labelled else {})}
    meta: dict[str, Any] = {"name": "p", "labels": labels, "annotations": {SERVING_LABELS_ANNOTATION: '{"app":"api"}'}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "status": {"phase": phase, "conditions": [
        {"type": "ContainersReady", "status": str(containers)}, {"type": "Ready", "status": str(ready)}]}}


def test_count_pods_warm_and_serving() -> None:
    pods = [pod(), pod(ready=True), pod(phase="Pending", containers=False), pod(deleting=True)]
    assert count_pods(pods) == (2, 1)


def test_a_ready_pod_serves_only_while_it_carries_its_serving_labels() -> None:
    gated_ready = pod(ready=True, labelled=False)  # gated by label: Ready, but selected by nothing
    labelled_not_ready = pod(ready=False, labelled=True)
    assert count_pods([gated_ready, labelled_not_ready, pod(ready=True)]) == (3, 1)


def test_status_reports_warming_then_warm_and_keeps_transition_time() -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "api", "replicas": {"fixedReplicas": 2}})
    first = dark_status(spec=spec, generation=1, old_status={}, replicas=2, pods=[pod()], now="t1").wire()
    ready = next(c for c in first["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Warming")
    second = dark_status(spec=spec, generation=1, old_status=first, replicas=2, pods=[pod(), pod()], now="t2").wire()
    ready = next(c for c in second["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["lastTransitionTime"]) == ("True", "Warm", "t2")
    third = dark_status(spec=spec, generation=1, old_status=second, replicas=2, pods=[pod(), pod()], now="t3").wire()
    assert next(c for c in third["conditions"] if c["type"] == "Ready")["lastTransitionTime"] == "t2"
    assert (third["warmReplicas"], third["readyReplicas"], third["gated"]) == (2, 0, True)


def test_status_never_carries_the_sizing_writers_fields_or_conditions() -> None:
    """Server-side apply: what the controller sends is what it owns, nothing of sizing's."""
    spec = DarkClusterSpec.model_validate({"targetDeployment": "api", "replicas": {"fixedReplicas": 1}})
    old = {"forecastReplicas": 7, "modelFit": {"intercept": 0}, "conditions": [
        {"type": "Sized", "status": "True", "reason": "Fit", "lastTransitionTime": "t0"}]}
    sent = dark_status(spec=spec, generation=3, old_status=old, replicas=1, pods=[pod()], now="t1").wire()
    assert set(sent) <= OWN_STATUS_FIELDS
    assert {c["type"] for c in sent["conditions"]} == {"Ready", "GateOpen"}
    assert own_status(old).wire() == {"conditions": []}


def test_status_never_carries_the_evacuations_fields() -> None:
    """Server-side apply: the controller's status leaves evacuationGate and its time to their field manager."""
    spec = DarkClusterSpec.model_validate({"targetDeployment": "api"})
    old = {"evacuationGate": "Open", "evacuationGateSince": "t0"}
    sent = dark_status(spec=spec, generation=1, old_status=old, replicas=1, pods=[pod()], now="t1",
                       evacuation_gate="Open").wire()
    assert "evacuationGate" not in sent and "evacuationGateSince" not in sent
    assert set(sent) <= OWN_STATUS_FIELDS
    assert own_status({**old, "effectiveGate": "Open"}).wire() == {"effectiveGate": "Open", "conditions": []}


@pytest.mark.parametrize(("spec_gate", "evacuation_gate", "effective", "opened_by"), [
    ("Closed", None, "Closed", "closed"),
    ("Closed", "Open", "Open", "opened by status.evacuationGate"),
    ("Open", "Closed", "Open", "opened by spec.gate"),
])
def test_status_reports_the_gate_in_force_and_who_opened_it(
    spec_gate: str, evacuation_gate: str | None, effective: str, opened_by: str
) -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "api", "gate": spec_gate})
    status = dark_status(spec=spec, generation=1, old_status={}, replicas=1, pods=[pod(ready=True)], now="t",
                         evacuation_gate=evacuation_gate).wire()
    assert (status["effectiveGate"], status["gated"]) == (effective, effective == "Closed")
    gate = next(c for c in status["conditions"] if c["type"] == "GateOpen")
    assert (gate["status"], gate["reason"]) == (("True", "GateOpen") if effective == "Open" else ("False", "GateClosed"))
    assert gate["message"].startswith(opened_by)


def test_a_missing_target_closes_the_gate_in_force_whatever_the_evacuation_holds() -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "nope"})
    status = target_missing_status(spec=spec, generation=1, old_status={"evacuationGate": "Open"}, pods=[pod()],
                                   now="t").wire()
    assert (status["effectiveGate"], status["gated"]) == ("Closed", True)


def test_target_missing_status_names_the_target_and_reports_nothing_serving() -> None:
    spec = DarkClusterSpec.model_validate({"targetDeployment": "nope", "gate": "Open"})
    status = target_missing_status(spec=spec, generation=2, old_status={}, pods=[pod()], now="t").wire()
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["observedGeneration"]) == ("False", "TargetNotFound", 2)
    assert "'nope'" in ready["message"]
    assert (status["desiredReplicas"], status["gated"]) == (0, True)


def test_blocked_status_keeps_the_counts_and_says_why() -> None:
    old = dark_status(spec=DarkClusterSpec.model_validate({"targetDeployment": "api"}), generation=1, old_status={},
                      replicas=1, pods=[pod()], now="t1").wire()
    blocked = blocked_status(generation=2, old_status=old, reason="Forbidden", message="HTTP 403", now="t2").wire()
    assert blocked["warmReplicas"] == 1 and blocked["observedGeneration"] == 2
    ready = next(c for c in blocked["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"], ready["message"]) == ("False", "Forbidden", "HTTP 403")


@pytest.mark.parametrize("target", [
    "api",
    "a" * 58,
    "a" * 59,
    "a" * 63,
    "payments.api.v2-" + "x" * 40 + ".eu",
    "x" * 50 + ".abcdefghijkl",
    "x" * 50 + "-." + "y" * 11,
])
def test_shadow_names_are_valid_dns_labels_of_at_most_63_characters(target: str) -> None:
    name = shadow_name(target)
    assert len(name) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?", name), name
    assert all(part and not part.startswith("-") and not part.endswith("-") for part in name.split(".")), name
    assert name.endswith("-dark")
    if len(target) <= 58:
        assert name == f"{target}-dark"


def test_cut_names_keep_two_long_targets_apart_and_are_stable() -> None:
    first, second = "a" * 62 + "1", "a" * 62 + "2"
    assert shadow_name(first) != shadow_name(second)
    assert shadow_name(first) == shadow_name(first)


@pytest.mark.parametrize("name", ["api", "a" * 63, "a" * 64, "team.payments." + "b" * 200])
def test_label_values_are_valid_and_at_most_63_characters(name: str) -> None:
    value = dark_cluster_label_value(name)
    assert len(value) <= 63
    assert re.fullmatch(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]", value), value
    assert (value == name) == (len(name) <= 63)


def test_a_long_dark_cluster_name_gives_valid_labels_and_selector_on_the_shadow() -> None:
    body = dark()
    body["metadata"]["name"] = "team.payments." + "b" * 100
    shadow = shadow_deployment(dark_cluster=body, target=TARGET, replicas=1)
    value = shadow["metadata"]["labels"][DARK_CLUSTER_LABEL]
    assert len(value) <= 63
    assert shadow["spec"]["selector"]["matchLabels"][DARK_CLUSTER_LABEL] == value
    assert shadow["spec"]["template"]["metadata"]["labels"][DARK_CLUSTER_LABEL] == value
    assert all(len(v) <= 63 for v in shadow["metadata"]["labels"].values())


def test_shadow_is_labelled_as_a_shadow_not_as_a_target() -> None:
    target = copy.deepcopy(TARGET)
    target["metadata"]["labels"][ROLE_LABEL] = ROLE_TARGET
    shadow = shadow_deployment(dark_cluster=dark(), target=target, replicas=1)
    assert shadow["metadata"]["labels"][ROLE_LABEL] == ROLE_SHADOW


def test_target_label_is_written_once_and_removed_once() -> None:
    bare = copy.deepcopy(TARGET)
    assert target_label_patch(target=bare, shadowed=True) == {ROLE_LABEL: ROLE_TARGET}
    assert target_label_patch(target=bare, shadowed=False) is None
    bare["metadata"]["labels"][ROLE_LABEL] = ROLE_TARGET
    assert target_label_patch(target=bare, shadowed=True) is None
    assert target_label_patch(target=bare, shadowed=False) == {ROLE_LABEL: None}


def test_only_a_controller_reference_with_our_uid_makes_a_deployment_ours() -> None:
    shadow = shadow_deployment(dark_cluster=dark(), target=TARGET, replicas=1)
    assert is_owned_by(shadow, uid="uid-1")
    assert not is_owned_by(shadow, uid="uid-2")
    foreign = copy.deepcopy(shadow)
    foreign["metadata"]["ownerReferences"][0]["controller"] = False
    assert not is_owned_by(foreign, uid="uid-1")
    assert not is_owned_by({"metadata": {"name": "api-dark"}}, uid="uid-1")


def test_a_changed_target_selector_rolls_the_shadow_without_recreating_it() -> None:
    desired = shadow_deployment(dark_cluster=dark(), target=TARGET, replicas=1)
    assert not shadow_needs_recreate(current=None, desired=desired)
    assert not shadow_needs_recreate(current=copy.deepcopy(desired), desired=desired)
    moved = copy.deepcopy(TARGET)
    moved["spec"]["selector"] = {"matchLabels": {"app": "api", "track": "v2"}}
    moved["spec"]["template"]["metadata"]["labels"] = {"app": "api", "track": "v2"}
    rolled = shadow_deployment(dark_cluster=dark(), target=moved, replicas=1)
    # The shadow selects the dark-cluster label alone: a new target selector changes only
    # the serving labels its pods wait with, so the shadow rolls and is never recreated.
    assert rolled["spec"]["selector"] == desired["spec"]["selector"]
    assert not shadow_needs_recreate(current=desired, desired=rolled)
    assert shadow_needs_write(current=desired, desired=rolled)
    old_design = copy.deepcopy(desired)
    old_design["spec"]["selector"] = {"matchLabels": {"app": "api", DARK_CLUSTER_LABEL: "api"}}
    assert shadow_needs_recreate(current=old_design, desired=desired)


