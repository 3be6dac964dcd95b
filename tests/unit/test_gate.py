"""Pure gate decisions: which dark pods need a label write, and what it says."""

from __future__ import annotations

from typing import Any

import pytest

from regionshift.api.models import Gate
from regionshift.decide.gate import (
    EVACUATION_HAND,
    REGION_FAILOVER_HAND,
    SERVING_LABELS_ANNOTATION,
    SPEC_HAND,
    EffectiveGate,
    budgets_to_recount,
    carries_serving_labels,
    effective_gate,
    encode_serving_labels,
    gate_label_patches,
    label_patch,
    pods_needing_gate_write,
    selector_matches,
    serving_labels,
)

SERVING = {"app": "api", "tier": "web"}
OWN = {"regionshift.io/dark-cluster": "api", "pod-template-hash": "5d8f"}


def pod(name: str, *, labels: dict[str, str] | None = None, serving: dict[str, str] | None = SERVING,
        deleting: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {**OWN, **(labels or {})}}
    if serving is not None:
        meta["annotations"] = {SERVING_LABELS_ANNOTATION: encode_serving_labels(serving)}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta}


GATED = pod("gated")
SERVING_POD = pod("serving", labels=SERVING)
HALF = pod("half", labels={"app": "api"})
WRONG_VALUE = pod("wrong", labels={"app": "api", "tier": "batch"})


def test_serving_labels_come_from_the_pod_annotation() -> None:
    assert serving_labels(GATED) == SERVING
    assert encode_serving_labels({"b": "2", "a": "1"}) == '{"a":"1","b":"2"}', "stable: sorted, compact"


@pytest.mark.parametrize("raw", ["", "not json", "[1, 2]", '{"app": 1}'])
def test_a_missing_or_malformed_annotation_means_no_serving_labels(raw: str) -> None:
    broken = pod("p")
    broken["metadata"]["annotations"][SERVING_LABELS_ANNOTATION] = raw
    assert serving_labels(broken) == {}
    assert serving_labels(pod("p", serving=None)) == {}


def test_a_pod_serves_only_with_every_serving_label_and_its_value() -> None:
    assert carries_serving_labels(SERVING_POD)
    assert not carries_serving_labels(GATED)
    assert not carries_serving_labels(HALF)
    assert not carries_serving_labels(WRONG_VALUE)


def test_open_adds_the_serving_labels_to_every_pod_that_lacks_one() -> None:
    pods = [GATED, SERVING_POD, HALF, WRONG_VALUE]
    assert gate_label_patches(pods=pods, gate="Open") == {"gated": SERVING, "half": SERVING, "wrong": SERVING}


def test_closed_removes_every_serving_label_key_from_any_pod_carrying_one() -> None:
    pods = [GATED, SERVING_POD, HALF, WRONG_VALUE]
    removal = {"app": None, "tier": None}
    assert gate_label_patches(pods=pods, gate="Closed") == {"serving": removal, "half": removal, "wrong": removal}


def test_a_patch_never_touches_the_shadows_own_labels() -> None:
    for gate in ("Open", "Closed"):
        assert not set(label_patch(pod=SERVING_POD, gate=gate)) & set(OWN)


def test_pods_in_agreement_deleting_or_without_serving_labels_get_no_write() -> None:
    assert pods_needing_gate_write(pods=[SERVING_POD], gate="Open") == []
    assert pods_needing_gate_write(pods=[GATED], gate="Closed") == []
    assert pods_needing_gate_write(pods=[pod("a", deleting=True)], gate="Open") == []
    assert pods_needing_gate_write(pods=[pod("a", labels=SERVING, deleting=True)], gate="Closed") == []
    legacy = pod("legacy", labels=SERVING, serving=None)  # an older regionshift's pod: not ours to relabel
    assert pods_needing_gate_write(pods=[legacy], gate="Open") == []
    assert pods_needing_gate_write(pods=[legacy], gate="Closed") == []


def test_writing_the_patch_converges_so_a_second_run_writes_nothing() -> None:
    for gate in ("Open", "Closed"):
        pods = [GATED, SERVING_POD, HALF, WRONG_VALUE]
        for p in pods:
            merged = {**p["metadata"]["labels"], **label_patch(pod=p, gate=gate)}
            p_after = {"metadata": {**p["metadata"], "labels": {k: v for k, v in merged.items() if v is not None}}}
            assert pods_needing_gate_write(pods=[p_after], gate=gate) == []


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        (None, False),
        ({}, True),
        ({"matchLabels": {"app": "api"}}, True),
        ({"matchLabels": {"app": "api", "tier": "batch"}}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web", "edge"]}]}, True),
        ({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["web"]}]}, False),
        ({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, True),
        ({"matchExpressions": [{"key": "app", "operator": "Exists"}]}, True),
        ({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, False),
        ({"matchExpressions": [{"key": "app", "operator": "DoesNotExist"}]}, False),
        ({"matchLabels": {"app": "api"}, "matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, False),
    ],
)
def test_selector_matching_follows_kubernetes(selector: dict[str, Any] | None, matches: bool) -> None:
    assert selector_matches(selector, {"app": "api", "tier": "web"}) is matches


def budget(name: str, selector: dict[str, Any] | None) -> dict[str, Any]:
    return {"metadata": {"name": name}, "spec": {"selector": selector}}


def test_after_a_close_only_the_budgets_the_pods_left_are_recounted() -> None:
    budgets = [
        budget("target", {"matchLabels": {"app": "api"}}),
        budget("tier", {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["web"]}]}),
        budget("other", {"matchLabels": {"app": "other"}}),
        budget("everything", {}),  # selected the dark pods gated or not: its count does not move
        budget("darkness", {"matchLabels": {"regionshift.io/dark-cluster": "api"}}),
        budget("none", None),
    ]
    assert budgets_to_recount(budgets=budgets, closed=[SERVING_POD]) == ["target", "tier"]
    assert budgets_to_recount(budgets=budgets, closed=[]) == []


# ---------------------------------------------------------------------------- the gate in force


@pytest.mark.parametrize(("spec_gate", "evacuation_gate", "expected", "opened_by"), [
    (Gate.CLOSED, None, Gate.CLOSED, ()),
    (Gate.CLOSED, Gate.CLOSED, Gate.CLOSED, ()),
    (Gate.CLOSED, Gate.OPEN, Gate.OPEN, (EVACUATION_HAND,)),
    (Gate.OPEN, None, Gate.OPEN, (SPEC_HAND,)),
    (Gate.OPEN, Gate.CLOSED, Gate.OPEN, (SPEC_HAND,)),  # the owner's hand wins for opening
    (Gate.OPEN, Gate.OPEN, Gate.OPEN, (SPEC_HAND, EVACUATION_HAND)),
    ("Closed", "Open", Gate.OPEN, (EVACUATION_HAND,)),  # as read from the wire (the models keep enum values)
])
def test_the_gate_in_force_is_open_when_either_hand_holds_it_open(
    spec_gate: Gate | str, evacuation_gate: Gate | str | None, expected: Gate, opened_by: tuple[str, ...]
) -> None:
    in_force = effective_gate(spec_gate=spec_gate, evacuation_gate=evacuation_gate)
    assert in_force == EffectiveGate(gate=expected, opened_by=opened_by)
    assert in_force.is_open is (expected is Gate.OPEN)


def test_the_gate_in_force_says_which_hand_opened_it() -> None:
    assert effective_gate(spec_gate=Gate.OPEN, evacuation_gate=None).describe() == "opened by spec.gate (its owner)"
    assert effective_gate(spec_gate=Gate.CLOSED, evacuation_gate=Gate.OPEN).describe() == (
        "opened by status.evacuationGate (an evacuation)")
    assert "spec.gate (its owner) and status.evacuationGate" in effective_gate(
        spec_gate=Gate.OPEN, evacuation_gate=Gate.OPEN).describe()
    assert effective_gate(spec_gate=Gate.CLOSED, evacuation_gate=Gate.CLOSED).describe().startswith("closed")


def test_the_region_failovers_gate_opens_a_dark_cluster_as_an_evacuation_and_says_so() -> None:
    in_force = effective_gate(spec_gate=Gate.CLOSED, evacuation_gate=None, region_failover_gate="Open")
    assert in_force == EffectiveGate(gate=Gate.OPEN, opened_by=(REGION_FAILOVER_HAND,)) and in_force.by_evacuation
    assert in_force.describe() == "opened by its RegionFailover's status.evacuationGate (an evacuation)"
    assert not effective_gate(spec_gate=Gate.OPEN, evacuation_gate=None, region_failover_gate=None).by_evacuation
    assert not effective_gate(spec_gate=Gate.CLOSED, evacuation_gate=Gate.CLOSED,
                              region_failover_gate=Gate.CLOSED).is_open


def test_an_unknown_gate_value_is_refused_not_taken_for_closed() -> None:
    with pytest.raises(ValueError):
        effective_gate(spec_gate=Gate.CLOSED, evacuation_gate="open")
