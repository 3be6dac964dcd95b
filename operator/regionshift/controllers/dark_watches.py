"""The dark pods, shadows and targets of a namespace, watched off the event loop while a DarkCluster lives there.

Events of these objects only ever *wake* a DarkCluster's daemon (:mod:`.darkcluster`): a
dark pod appeared, changed or went; a shadow's or a target's spec, labels or owners moved.
kopf would process each of them on the event loop like an event of its own resources (a
body view, three loggers, the diff base, the handler's invocation, a log line): about 2 ms
of the loop's CPU per event, and at 500 DarkClusters the pods and Deployments make some
3,500 events while the dark capacity comes up, in bursts that kept the loop busy for over
100 ms at a time. So they are not kopf's: every namespace where at least one DarkCluster's
daemon runs (:func:`watching`) has two :class:`~regionshift.adapters.kube.ObjectWatch`
threads, one for the pods labelled :data:`~regionshift.decide.darkcapacity.DARK_CLUSTER_LABEL`,
one for the Deployments labelled :data:`~regionshift.decide.darkcapacity.ROLE_LABEL`
(shadows and the targets they shadow). The pods' watch also keeps each pod's last copy in
:mod:`regionshift.controllers.dark_store`, from which an opening gate's fast path reads them. Each event is parsed and judged in its thread by
:func:`regionshift.controllers.darkcluster.dark_pod_changed` and
:func:`~regionshift.controllers.darkcluster.deployment_woke`; only a wake crosses to the
loop. The watches end when the namespace's last daemon does.

Which DarkClusters an event concerns is known from maps kept by the daemons themselves
(by their label value, for pods and shadows, and by their target): only a running daemon
can be woken, so a DarkCluster is in them exactly while it can be. A target that no
DarkCluster names loses its label (its DarkCluster was deleted while the operator was
away); "no DarkCluster" also counts those listed when the namespace's watch began, whose
daemons may not have started yet. A namespace without any DarkCluster is not watched, so
a stale target label there stays until a DarkCluster appears in it again (the label only
makes the operator see that Deployment's events).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import urllib3.exceptions

from regionshift.adapters import kube
from regionshift.controllers import dark_store, darkcluster
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL, ROLE_LABEL, dark_cluster_label_value

__all__ = ["by_label", "by_target", "watched_namespaces", "watching"]

log = logging.getLogger(__name__)

by_label: dict[tuple[str, str], tuple[str, ...]] = {}
"""(namespace, value of the DarkCluster label) → the DarkClusters whose daemons run. Values are replaced, never changed."""
by_target: dict[tuple[str, str], tuple[str, ...]] = {}
"""(namespace, target Deployment) → the DarkClusters whose daemons run. Values are replaced, never changed."""


@dataclass
class _Namespace:
    """The watches of one namespace and how many daemons use them."""

    namespace: str
    users: int = 0
    watches: list[kube.ObjectWatch] = field(default_factory=list)
    listed_targets: frozenset[str] | None = None
    """Targets of the DarkClusters listed when the watch began; None until then, or when that LIST failed."""

    def start(self) -> None:
        pods = kube.ObjectWatch(plural="pods", namespace=self.namespace, label_selector=DARK_CLUSTER_LABEL,
                                on_event=self._pod, on_listed=self._pods_listed)
        deployments = kube.ObjectWatch(plural="deployments", namespace=self.namespace, label_selector=ROLE_LABEL,
                                       on_event=self._deployment)
        self.watches = [pods, deployments]
        dark_store.watch_began(namespace=self.namespace, watch=self)
        threading.Thread(target=pods.run, name=f"watch-pods-{self.namespace}", daemon=True).start()
        threading.Thread(target=self._watch_deployments, args=(deployments,), name=f"watch-deployments-{self.namespace}",
                         daemon=True).start()

    def stop(self) -> None:
        for watch in self.watches:
            watch.stop()
        dark_store.watch_ended(namespace=self.namespace, watch=self)

    def _watch_deployments(self, watch: kube.ObjectWatch) -> None:
        try:
            self.listed_targets = frozenset(
                str((dc.get("spec") or {}).get("targetDeployment", ""))
                for dc in kube.list_custom(plural=darkcluster.DARKCLUSTERS, namespace=self.namespace))
        except (kube.ApiException, urllib3.exceptions.HTTPError) as exc:  # then no target label is released
            log.info("could not list the DarkClusters of %s: %s; no target label is released", self.namespace, exc)
        watch.run()

    def _pods_listed(self) -> None:
        dark_store.pods_listed(namespace=self.namespace, watch=self)

    def _pod(self, type_: str | None, pod: dict[str, Any]) -> None:
        dark_store.pod_changed(namespace=self.namespace, watch=self, type_=type_, pod=pod)
        meta = pod.get("metadata") or {}
        darkcluster.dark_pod_changed(namespace=self.namespace, labels=meta.get("labels") or {},
                                     darkclusters_by_label=by_label, name=meta.get("name"),
                                     resource_version=meta.get("resourceVersion"), type_=type_)

    def _deployment(self, type_: str | None, deployment: dict[str, Any]) -> None:
        meta = deployment.get("metadata") or {}
        name = meta.get("name", "")
        orphan = darkcluster.deployment_woke(namespace=self.namespace, name=name, labels=meta.get("labels") or {},
                                             type_=type_, body=deployment, darkclusters_by_target=by_target,
                                             darkclusters_by_label=by_label)
        if orphan and self.listed_targets is not None and name not in self.listed_targets:
            darkcluster.release_target(namespace=self.namespace, target=name, leaving=None)


_namespaces: dict[str, _Namespace] = {}
_lock = threading.Lock()


def _added(mapping: dict[tuple[str, str], tuple[str, ...]], key: tuple[str, str], name: str) -> None:
    mapping[key] = tuple(sorted({*mapping.get(key, ()), name}))


def _removed(mapping: dict[tuple[str, str], tuple[str, ...]], key: tuple[str, str], name: str) -> None:
    rest = tuple(n for n in mapping.get(key, ()) if n != name)
    if rest:
        mapping[key] = rest
    else:
        mapping.pop(key, None)


@contextlib.contextmanager
def watching(*, namespace: str, name: str, target: str) -> Iterator[None]:
    """While a DarkCluster's daemon runs: its pods, shadow and target wake it; its namespace is watched."""
    label_key, target_key = (namespace, dark_cluster_label_value(name)), (namespace, target)
    with _lock:
        _added(by_label, label_key, name)
        _added(by_target, target_key, name)
        watched = _namespaces.get(namespace)
        if watched is None:
            watched = _namespaces[namespace] = _Namespace(namespace=namespace)
            watched.start()
        watched.users += 1
    try:
        yield
    finally:
        with _lock:
            _removed(by_label, label_key, name)
            _removed(by_target, target_key, name)
            watched.users -= 1
            if watched.users == 0:
                watched.stop()
                if _namespaces.get(namespace) is watched:
                    del _namespaces[namespace]


def watched_namespaces() -> list[str]:
    """The namespaces watched now (for tests and diagnostics)."""
    with _lock:
        return sorted(_namespaces)
