"""The DarkClusters and dark pods as the operator's watches last delivered them, for the gate's fast path.

An evacuation opens the gates of hundreds of DarkClusters at once, and every dark pod
waits for its fast path (:func:`regionshift.controllers.darkcluster.open_gate_fast`). A
shared LIST of the namespace's DarkClusters and dark pods before the first pod write
takes twenty pages at 500 DarkClusters: 1.5-2.4 s on a loaded two-core machine, the
largest part of a savior's time before its pods serve. The operator already streams both:
kopf's DarkCluster events, and the dark pod watch of
:mod:`regionshift.controllers.dark_watches`. This module keeps the last copy of each.

A copy here may be older than the API server's, by the watch's lag. That is safe for what
reads it: the fast path only *opens* (a merge of labels, the same however often it is
written), and the full reconcile that follows it reads everything fresh; a change the copy
missed wakes the DarkCluster's daemon again when its event comes. The pods are kept slim:
only what the gate and the status read of them (:data:`POD_FIELDS`). A namespace's pods
count only once its watch has listed them (:func:`pods_listed`), and are forgotten when
its watch ends (:func:`watch_ended`); until then :func:`dark_pods` says None, and the
fast path lists.
"""

from __future__ import annotations

import threading
from typing import Any, Mapping

from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL

__all__ = [
    "POD_FIELDS",
    "dark_cluster",
    "dark_cluster_changed",
    "dark_pods",
    "pod_changed",
    "pods_listed",
    "watch_began",
    "watch_ended",
]

POD_FIELDS: Mapping[str, tuple[str, ...]] = {
    "metadata": ("name", "namespace", "labels", "annotations", "deletionTimestamp", "resourceVersion", "uid"),
    "status": ("phase", "conditions"),
}
"""What is kept of a dark pod: what :mod:`regionshift.decide.gate` and the DarkCluster's status read of it."""


class _Pods:
    """The dark pods of one namespace as one watch delivered them: by name, and the names by their
    DarkCluster label's value; complete once the watch has listed them."""

    def __init__(self, watch: object) -> None:
        self.watch = watch
        self.listed = False
        self.by_name: dict[str, dict[str, Any]] = {}
        self.by_label: dict[str, set[str]] = {}

    def _label_of(self, name: str) -> str | None:
        pod = self.by_name.get(name)
        return None if pod is None else (pod["metadata"].get("labels") or {}).get(DARK_CLUSTER_LABEL, "")

    def remove(self, name: str) -> None:
        label = self._label_of(name)
        if label is None:
            return
        del self.by_name[name]
        names = self.by_label.get(label)
        if names is not None:
            names.discard(name)
            if not names:
                del self.by_label[label]

    def put(self, pod: dict[str, Any]) -> None:
        name = pod["metadata"].get("name", "")
        self.remove(name)
        self.by_name[name] = pod
        self.by_label.setdefault((pod["metadata"].get("labels") or {}).get(DARK_CLUSTER_LABEL, ""), set()).add(name)

    def with_label(self, label: str) -> list[dict[str, Any]]:
        return [self.by_name[name] for name in sorted(self.by_label.get(label, ()))]


_lock = threading.Lock()
_dark_clusters: dict[tuple[str, str], dict[str, Any]] = {}
"""(namespace, name) → the DarkCluster as its last event showed it."""
_pods: dict[str, _Pods] = {}
"""namespace → its dark pods, fed by the watch that began last there (:func:`watch_began`); what an
earlier watch still sends is ignored."""


def dark_cluster_changed(*, namespace: str, name: str, body: Mapping[str, Any], type_: str | None) -> None:
    """A DarkCluster event: keep its body (a shallow copy without managedFields; every event carries new
    objects), or forget it when deleted."""
    key = (namespace, name)
    with _lock:
        if type_ == "DELETED":
            _dark_clusters.pop(key, None)
        else:
            kept = {k: body[k] for k in ("apiVersion", "kind", "spec", "status") if k in body}
            kept["metadata"] = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
            _dark_clusters[key] = kept


def dark_cluster(*, namespace: str, name: str) -> dict[str, Any] | None:
    """The DarkCluster as its last event showed it; None when no event of it came (or it was deleted)."""
    with _lock:
        return _dark_clusters.get((namespace, name))


def _slim(pod: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for part, keys in POD_FIELDS.items():
        source = pod.get(part) or {}
        out[part] = {key: source[key] for key in keys if key in source}
    return out


def watch_began(*, namespace: str, watch: object) -> None:
    """A watch of the namespace's dark pods began: it alone feeds the namespace from now on, from nothing."""
    with _lock:
        _pods[namespace] = _Pods(watch)


def _fed_by(namespace: str, watch: object) -> _Pods | None:
    pods = _pods.get(namespace)
    return pods if pods is not None and pods.watch is watch else None


def pod_changed(*, namespace: str, watch: object, type_: str | None, pod: Mapping[str, Any]) -> None:
    """A dark pod as the watch delivered it (type None: listed); DELETED forgets it."""
    slim = _slim(pod)
    with _lock:
        store = _fed_by(namespace, watch)
        if store is None:
            return
        if type_ == "DELETED":
            store.remove(slim["metadata"].get("name", ""))
        else:
            store.put(slim)


def pods_listed(*, namespace: str, watch: object) -> None:
    """The namespace's pod watch has listed (again): from now on its pods are complete, up to the watch's lag."""
    with _lock:
        store = _fed_by(namespace, watch)
        if store is not None:
            store.listed = True


def watch_ended(*, namespace: str, watch: object) -> None:
    """The namespace's watch ended: its pods are no longer followed."""
    with _lock:
        if _fed_by(namespace, watch) is not None:
            del _pods[namespace]


def dark_pods(*, namespace: str, label: str) -> list[dict[str, Any]] | None:
    """The dark pods of one DarkCluster (by its label value) as last delivered; None until the namespace's watch listed."""
    with _lock:
        store = _pods.get(namespace)
        if store is None or not store.listed:
            return None
        return store.with_label(label)
