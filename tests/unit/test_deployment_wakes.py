"""Which Deployment events wake a DarkCluster's reconcile: a change of what it acts on, never a status update."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest

from regionshift.controllers import darkcluster
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL, ROLE_LABEL, ROLE_SHADOW, TEMPLATE_HASH_ANNOTATION

LABELS = {ROLE_LABEL: ROLE_SHADOW, DARK_CLUSTER_LABEL: "api"}
SHADOW: dict[str, Any] = {
    "metadata": {"name": "api-dark", "namespace": "shop", "generation": 1, "labels": LABELS,
                 "annotations": {TEMPLATE_HASH_ANNOTATION: "abc"}, "ownerReferences": [{"uid": "dc-1"}]},
    "spec": {"replicas": 1},
    "status": {"observedGeneration": 0},
}


def _wakes(monkeypatch: pytest.MonkeyPatch, events: list[tuple[str | None, dict[str, Any]]]) -> list[str]:
    """The causes of the wakes the events give, with a recording stand-in for :func:`darkcluster.wake`."""
    woken: list[str] = []
    monkeypatch.setattr(darkcluster, "wake", lambda *, namespace, name, cause: woken.append(cause) or True)
    monkeypatch.setattr(darkcluster, "_deployments_seen", {})

    async def scenario() -> None:
        for type_, body in events:
            await darkcluster.deployment_changed(
                namespace="shop", name="api-dark", labels=body["metadata"]["labels"], type_=type_, body=body,
                darkclusters_by_target={}, darkclusters_by_label={("shop", "api"): ["api"]})

    asyncio.run(scenario())
    return woken


def _with(body: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(body)
    place = changed
    for key in path[:-1]:
        place = place[key]
    place[path[-1]] = value
    return changed


def test_status_updates_of_a_shadow_wake_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    started = _with(SHADOW, ("status",), {"observedGeneration": 1, "replicas": 1})
    ready = _with(started, ("status",), {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1})
    assert _wakes(monkeypatch, [("ADDED", SHADOW), ("MODIFIED", started), ("MODIFIED", ready)]) == ["shadow"]


@pytest.mark.parametrize("path, value", [
    (("metadata", "generation"), 2),
    (("metadata", "labels"), {DARK_CLUSTER_LABEL: "api", ROLE_LABEL: ROLE_SHADOW, "extra": "x"}),
    (("metadata", "annotations"), {TEMPLATE_HASH_ANNOTATION: "def"}),
    (("metadata", "ownerReferences"), []),
    (("metadata", "deletionTimestamp"), "2026-11-29T02:00:00Z"),
])
def test_a_change_a_reconcile_acts_on_wakes_it(monkeypatch: pytest.MonkeyPatch, path: tuple[str, ...], value: Any) -> None:
    assert _wakes(monkeypatch, [("ADDED", SHADOW), ("MODIFIED", _with(SHADOW, path, value))]) == ["shadow", "shadow"]


def test_a_deleted_shadow_wakes_and_one_made_again_wakes_again(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _wakes(monkeypatch, [("ADDED", SHADOW), ("DELETED", SHADOW), ("ADDED", SHADOW)]) == ["shadow"] * 3
