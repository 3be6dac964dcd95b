"""What the watches last delivered: complete only once listed, one feeding watch per namespace, slim pods."""

from __future__ import annotations

from typing import Any

import pytest

from regionshift.controllers import dark_store
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL


def _pod(name: str, label: str, *, ready: bool = True) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "shop", "resourceVersion": "7", "labels": {DARK_CLUSTER_LABEL: label},
                         "annotations": {"a": "b"}, "managedFields": [{"manager": "kubelet"}] * 3},
            "spec": {"containers": [{"name": "app", "image": "x"}]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}],
                       "containerStatuses": [{"name": "app"}]}}


@pytest.fixture
def watch() -> Any:
    token = object()
    dark_store.watch_began(namespace="shop", watch=token)
    yield token
    dark_store.watch_ended(namespace="shop", watch=token)


def test_pods_count_only_once_the_watch_has_listed_them(watch: object) -> None:
    dark_store.pod_changed(namespace="shop", watch=watch, type_=None, pod=_pod("api-dark-1", "api"))
    assert dark_store.dark_pods(namespace="shop", label="api") is None, "a listing under way is not complete"
    dark_store.pods_listed(namespace="shop", watch=watch)
    assert [p["metadata"]["name"] for p in dark_store.dark_pods(namespace="shop", label="api") or []] == ["api-dark-1"]
    assert dark_store.dark_pods(namespace="shop", label="web") == []
    assert dark_store.dark_pods(namespace="elsewhere", label="api") is None, "a namespace nobody watches"


def test_a_pod_is_kept_slim_replaced_moved_and_forgotten(watch: object) -> None:
    dark_store.pods_listed(namespace="shop", watch=watch)
    dark_store.pod_changed(namespace="shop", watch=watch, type_="ADDED", pod=_pod("api-dark-1", "api", ready=False))
    dark_store.pod_changed(namespace="shop", watch=watch, type_="MODIFIED", pod=_pod("api-dark-1", "api"))
    [kept] = dark_store.dark_pods(namespace="shop", label="api") or []
    assert kept == {"metadata": {"name": "api-dark-1", "namespace": "shop", "resourceVersion": "7",
                                 "labels": {DARK_CLUSTER_LABEL: "api"}, "annotations": {"a": "b"}},
                    "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}}
    dark_store.pod_changed(namespace="shop", watch=watch, type_="MODIFIED", pod=_pod("api-dark-1", "web"))
    assert dark_store.dark_pods(namespace="shop", label="api") == []
    assert len(dark_store.dark_pods(namespace="shop", label="web") or []) == 1
    dark_store.pod_changed(namespace="shop", watch=watch, type_="DELETED", pod=_pod("api-dark-1", "web"))
    assert dark_store.dark_pods(namespace="shop", label="web") == []


def test_only_the_namespaces_current_watch_feeds_it(watch: object) -> None:
    dark_store.pods_listed(namespace="shop", watch=watch)
    earlier = object()
    dark_store.pod_changed(namespace="shop", watch=earlier, type_="ADDED", pod=_pod("late-dark-1", "api"))
    dark_store.watch_ended(namespace="shop", watch=earlier)
    assert dark_store.dark_pods(namespace="shop", label="api") == [], "an ended watch's late event is ignored"
    dark_store.watch_ended(namespace="shop", watch=watch)
    assert dark_store.dark_pods(namespace="shop", label="api") is None
    dark_store.pod_changed(namespace="shop", watch=watch, type_="ADDED", pod=_pod("api-dark-1", "api"))
    dark_store.pods_listed(namespace="shop", watch=watch)
    assert dark_store.dark_pods(namespace="shop", label="api") is None, "nor does it after it ended"


def test_a_new_watch_starts_from_nothing(watch: object) -> None:
    dark_store.pod_changed(namespace="shop", watch=watch, type_=None, pod=_pod("gone-dark-1", "api"))
    dark_store.pods_listed(namespace="shop", watch=watch)
    again = object()
    dark_store.watch_began(namespace="shop", watch=again)
    dark_store.pods_listed(namespace="shop", watch=again)
    assert dark_store.dark_pods(namespace="shop", label="api") == []
    dark_store.watch_ended(namespace="shop", watch=again)


def test_dark_clusters_are_kept_from_their_events_until_deleted() -> None:
    body = {"apiVersion": "regionshift.io/v1alpha1", "kind": "DarkCluster", "metadata": {"name": "api"},
            "spec": {"targetDeployment": "api"}, "status": {"effectiveGate": "Closed"}}
    dark_store.dark_cluster_changed(namespace="shop", name="api", type_="ADDED",
                                    body={**body, "metadata": {"name": "api", "managedFields": [{"manager": "x"}]}})
    assert dark_store.dark_cluster(namespace="shop", name="api") == body
    dark_store.dark_cluster_changed(namespace="shop", name="api", body=body, type_="DELETED")
    assert dark_store.dark_cluster(namespace="shop", name="api") is None
