"""The DarkClusters a RegionFailover creates follow it: created, kept in line, removed.

Each participating Deployment (picked by the RegionFailover's selector) gets a DarkCluster of
its own name with an owner reference to the RegionFailover. :func:`sync_children` makes the
DarkClusters match the domain, and touches only those the RegionFailover owns (an owner
reference with its uid; labels are not proof of anything):

* a participant without one gets it created; a 409 on create is checked: a DarkCluster of
  that name that another owner (or a human) created is never adopted: the participant is
  reported (``NameTaken``) and left alone; nor is one created when another DarkCluster
  already shadows the Deployment under another name;
* an owned DarkCluster whose ``minReplicas``/``maxReplicas`` differ from the
  ``darkCapacity`` policy is patched to follow it;
* an owned DarkCluster whose Deployment left the selector (or went) is deleted, with a uid
  precondition, and garbage collection takes its shadow.

Each write fails on its own (a 403 or 422 from the API server, say) and becomes a problem
for the ``DarkClustersSynced`` condition and an Event; the other participants go on.
All functions here block: run them in a thread.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from regionshift.adapters import kube
from regionshift.api.models import API_GROUP, API_VERSION, DarkCapacityPolicy, Gate, ReplicaSource
from regionshift.controllers.darkcluster import DARKCLUSTERS
from regionshift.controllers.regionfailover.domain import REGIONFAILOVER_LABEL
from regionshift.controllers.regionfailover.status import describe

__all__ = ["Children", "Problem", "sync_children"]


@dataclass(frozen=True, kw_only=True)
class Problem:
    """Why one participant's DarkCluster is not as it should be."""

    reason: str
    """One CamelCase word: NameTaken, CreateRefused, UpdateRefused, DeleteRefused."""
    message: str


@dataclass(kw_only=True)
class Children:
    """What :func:`sync_children` found and did."""

    owned: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Participant → its DarkCluster, owned by this RegionFailover (the ones to size)."""
    problems: dict[str, Problem] = field(default_factory=dict)
    """Participant (or removed DarkCluster) → what went wrong."""
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def _owned(obj: Mapping[str, Any], uid: str) -> bool:
    return any(o.get("uid") == uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


def _new_dark_cluster(*, owner: Mapping[str, Any], deployment: str, policy: DarkCapacityPolicy) -> dict[str, Any]:
    meta = owner["metadata"]
    return {
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "DarkCluster",
        "metadata": {
            "name": deployment,
            "namespace": meta["namespace"],
            "labels": {REGIONFAILOVER_LABEL: meta["name"], "app.kubernetes.io/managed-by": "regionshift"},
            "ownerReferences": [{"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "RegionFailover",
                                 "name": meta["name"], "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "targetDeployment": deployment,
            "replicas": {"source": ReplicaSource.FORECAST.value, "minReplicas": policy.min_replicas,
                         "maxReplicas": policy.max_replicas},
            "gate": Gate.CLOSED.value,
        },
    }


def _problem(reason: str, what: str, exc: BaseException) -> Problem:
    _, message = describe(exc)
    return Problem(reason=reason, message=f"{what}: {message}")


def sync_children(
    *, owner: Mapping[str, Any], participants: list[str], policy: DarkCapacityPolicy
) -> Children:
    """Create, update and remove this RegionFailover's DarkClusters to match its participants.

    Raises only when the DarkClusters cannot be listed at all.
    """
    meta = owner["metadata"]
    namespace, uid = meta["namespace"], meta["uid"]
    existing = {dc["metadata"]["name"]: dc for dc in kube.list_custom(plural=DARKCLUSTERS, namespace=namespace)}
    shadowed = {dc.get("spec", {}).get("targetDeployment"): name for name, dc in existing.items()}
    out = Children()
    wanted = set(participants)
    for deployment in participants:
        dc = existing.get(deployment)
        if dc is None and shadowed.get(deployment) not in (None, deployment):
            other = existing[shadowed[deployment]]
            if not _owned(other, uid):
                out.problems[deployment] = Problem(
                    reason="NameTaken", message=f"DarkCluster {shadowed[deployment]!r}, not created by this"
                    " RegionFailover, already shadows it; left to its owner")
                continue
        if dc is None:
            try:
                created = kube.create_custom(plural=DARKCLUSTERS, body=_new_dark_cluster(
                    owner=owner, deployment=deployment, policy=policy))
            except kube.ApiException as exc:
                out.problems[deployment] = _problem("CreateRefused", f"DarkCluster {deployment!r} not created", exc)
                continue
            if created is None:  # 409: one appeared since the list; ours only if it says so
                dc = kube.read_custom(plural=DARKCLUSTERS, namespace=namespace, name=deployment)
                if dc is None:
                    continue  # deleted meanwhile: the next run creates it
            else:
                out.created.append(deployment)
                out.owned[deployment] = created
                continue
        if not _owned(dc, uid):
            out.problems[deployment] = Problem(
                reason="NameTaken", message=f"a DarkCluster named {deployment!r} exists and was not created by this"
                " RegionFailover; regionshift does not adopt it")
            continue
        replicas = (dc.get("spec") or {}).get("replicas") or {}
        if (replicas.get("minReplicas"), replicas.get("maxReplicas")) != (policy.min_replicas, policy.max_replicas):
            try:
                dc = kube.patch_custom(plural=DARKCLUSTERS, namespace=namespace, name=deployment, uid=dc["metadata"]["uid"],
                                       patch={"spec": {"replicas": {"minReplicas": policy.min_replicas,
                                                                    "maxReplicas": policy.max_replicas}}})
                out.updated.append(deployment)
            except kube.ApiException as exc:
                out.problems[deployment] = _problem("UpdateRefused", f"DarkCluster {deployment!r} not updated", exc)
        out.owned[deployment] = dc
    for name, dc in existing.items():
        target = (dc.get("spec") or {}).get("targetDeployment")
        if not _owned(dc, uid) or target in wanted:
            continue
        try:
            if kube.delete_custom(plural=DARKCLUSTERS, namespace=namespace, name=name, uid=dc["metadata"]["uid"]):
                out.removed.append(name)
        except kube.ApiException as exc:
            out.problems[name] = _problem("DeleteRefused", f"DarkCluster {name!r} of a Deployment that left not removed",
                                          exc)
    return out
