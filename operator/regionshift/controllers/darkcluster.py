"""Reconcile a DarkCluster: read, decide, write.

The handlers in :mod:`regionshift.controllers.registry` call these functions; each reads what it
needs from the API server, asks the pure modules (:mod:`regionshift.decide.darkcapacity`,
:mod:`regionshift.decide.gate`) what to do, and writes only the difference. Running any of them
twice, or after a crash halfway, converges to the same state: the shadow Deployment is
replaced only when its decided parts differ, a pod's serving labels are written only when
they disagree with the gate, and status only when it changed.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import kopf

from regionshift.adapters import events, kube
from regionshift.api.conditions import find_condition, now_rfc3339
from regionshift.decide.darkcapacity import (
    DARK_CLUSTER_LABEL,
    conflict_status,
    dark_status,
    desired_replicas,
    shadow_deployment,
    shadow_name,
    shadow_needs_recreate,
    shadow_needs_write,
    target_missing_status,
)
from regionshift.decide.gate import RECOUNT_ANNOTATION, budgets_to_recount, gate_label_patches
from regionshift.metrics import BUDGET_RECOUNTS, DARK_REPLICAS, GATE_WRITES, RECONCILIATIONS, SHADOW_WRITES
from regionshift.api.models import DarkClusterSpec, Gate

__all__ = ["DARKCLUSTERS", "StatusRefresher", "reconcile_dark_cluster", "reconcile_dark_cluster_named", "sync_pod_gate"]

DARKCLUSTERS = "darkclusters"
GATE_WRITERS = 16
"""Parallel pod label writes when a gate flips: ungating N pods costs ~N/16 round trips."""
log = logging.getLogger(__name__)


def _selector(name: str) -> str:
    return f"{DARK_CLUSTER_LABEL}={name}"


def _event(body: dict[str, Any], *, type_: str, reason: str, message: str) -> None:
    events.post_event(involved=body, type_=type_, reason=reason, message=message)


def _write_status(body: dict[str, Any], status: dict[str, Any]) -> None:
    old = body.get("status") or {}
    if all(old.get(key) == value for key, value in status.items()):
        return
    meta = body["metadata"]
    kube.patch_custom_status(plural=DARKCLUSTERS, namespace=meta["namespace"], name=meta["name"], status=status)


def reconcile_dark_cluster(*, body: dict[str, Any]) -> str:
    """Bring a DarkCluster's shadow Deployment, its pods' gates and its status in line.

    Returns the outcome (also counted in ``regionshift_reconciliations_total``).
    """
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    spec = DarkClusterSpec.model_validate(body["spec"])
    old_status = body.get("status") or {}
    now = now_rfc3339()

    target = kube.read_deployment(namespace=namespace, name=spec.target_deployment)
    if target is None:
        return _blocked(body, reason="TargetNotFound",
                        message=f"Deployment {spec.target_deployment!r} not found; waiting for it to appear",
                        status=target_missing_status(spec=spec, generation=generation, old_status=old_status, now=now))

    replicas = desired_replicas(spec=spec, forecast_replicas=old_status.get("forecastReplicas"))
    desired = shadow_deployment(dark_cluster=body, target=target, replicas=replicas)
    current = kube.read_deployment(namespace=namespace, name=shadow_name(spec.target_deployment))
    if current is not None and (current["metadata"].get("labels") or {}).get(DARK_CLUSTER_LABEL) != name:
        return _blocked(body, reason="ShadowConflict",
                        message=f"Deployment {desired['metadata']['name']!r} exists and is not ours; left untouched",
                        status=conflict_status(spec=spec, generation=generation, old_status=old_status, now=now))

    # Gates first: ungating is the hot path of an evacuation and must not wait for the
    # shadow's own update (its rollout strategy follows the gate, see darkcapacity).
    pods = kube.list_pods(namespace=namespace, label_selector=_selector(name))
    written = _write_gates(namespace=namespace, pods=pods, gate=spec.gate)
    if written:
        verb = "opened" if spec.gate == Gate.OPEN.value else "closed"
        _event(body, type_="Normal", reason=f"Gate{verb.capitalize()}",
               message=f"gate {verb} on {written} dark pod(s) of {desired['metadata']['name']}")
    if shadow_needs_write(current=current, desired=desired):
        _write_shadow(body=body, current=current, desired=desired)
    if written or current is None:
        pods = kube.list_pods(namespace=namespace, label_selector=_selector(name))
    status = dark_status(spec=spec, generation=generation, old_status=old_status, replicas=replicas, pods=pods, now=now)
    _write_status(body, status)
    _export(namespace=namespace, name=name, status=status)
    RECONCILIATIONS.labels("DarkCluster", "Reconciled").inc()
    return "Reconciled"


def _blocked(body: dict[str, Any], *, reason: str, message: str, status: dict[str, Any]) -> str:
    """Report a DarkCluster that cannot be acted on: a Warning Event when the reason is new, status, metric."""
    previous = find_condition((body.get("status") or {}).get("conditions"), "Ready")
    if not previous or previous.get("reason") != reason:
        _event(body, type_="Warning", reason=reason, message=message)
    _write_status(body, status)
    RECONCILIATIONS.labels("DarkCluster", reason).inc()
    return reason


@contextlib.contextmanager
def _retry_on_conflict(what: str) -> Iterator[None]:
    """A 409 means someone else wrote the shadow meanwhile: let kopf retry with a fresh read."""
    try:
        yield
    except kube.ApiException as exc:
        if exc.status != 409:
            raise
        raise kopf.TemporaryError(f"{what}; retrying", delay=1) from exc


def _write_shadow(*, body: dict[str, Any], current: dict[str, Any] | None, desired: dict[str, Any]) -> None:
    shadow = desired["metadata"]["name"]
    if current is not None and shadow_needs_recreate(current=current, desired=desired):
        _delete_old_shadow(body=body, current=current)
        current = None
    if current is None:
        with _retry_on_conflict(f"{shadow} appeared while being created"):
            kube.create_deployment(body=desired)
        SHADOW_WRITES.labels("create").inc()
        _event(body, type_="Normal", reason="ShadowCreated",
               message=f"created {shadow} with {desired['spec']['replicas']} gated replica(s)")
        return
    replacement = {
        **desired,
        "metadata": {**desired["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
        "status": current.get("status") or {},
    }
    replacement["metadata"]["labels"] = {**(current["metadata"].get("labels") or {}), **desired["metadata"]["labels"]}
    with _retry_on_conflict(f"{shadow} changed while being updated"):
        kube.replace_deployment(body=replacement)
    SHADOW_WRITES.labels("replace").inc()
    _event(body, type_="Normal", reason="ShadowUpdated",
           message=f"updated {shadow}: {desired['spec']['replicas']} replica(s), its target's pod template and rollout strategy")


def _delete_old_shadow(*, body: dict[str, Any], current: dict[str, Any]) -> None:
    """Delete a shadow whose (immutable) selector is not the one decided; its pods go by garbage collection."""
    shadow = current["metadata"]["name"]
    try:
        kube.delete_deployment(namespace=current["metadata"]["namespace"], name=shadow, uid=current["metadata"]["uid"])
    except kube.ApiException as exc:
        if exc.status == 409:  # the uid precondition failed: someone replaced it meanwhile
            raise kopf.TemporaryError(f"{shadow} changed while being deleted; retrying", delay=1) from exc
        if exc.status != 404:
            raise
    SHADOW_WRITES.labels("delete").inc()
    _event(body, type_="Normal", reason="ShadowRecreated",
           message=f"deleted {shadow}: its selector cannot change to the dark-cluster label alone; creating it anew")


def _write_gates(*, namespace: str, pods: list[dict[str, Any]], gate: str) -> int:
    """Merge the gate's labels into every pod that disagrees, in parallel; return how many.

    Open adds each pod's serving labels (its target's pod labels), Closed removes them:
    one metadata merge patch per pod. After a close, the budgets that counted the pods
    are asked to recount.
    """
    patches = gate_label_patches(pods=pods, gate=gate)

    def write(pod: str) -> bool:
        try:
            kube.patch_pod_labels(namespace=namespace, name=pod, labels=patches[pod])
        except kube.ApiException as exc:
            if exc.status == 404:  # deleted meanwhile: nothing to gate
                return False
            raise
        GATE_WRITES.labels(gate).inc()
        return True

    if len(patches) <= 1:
        written = sum(write(pod) for pod in patches)
    else:
        with ThreadPoolExecutor(max_workers=min(GATE_WRITERS, len(patches)), thread_name_prefix="gate") as pool:
            written = sum(pool.map(write, patches))
    if written and gate == Gate.CLOSED.value:
        _recount_budgets(namespace=namespace, closed=[p for p in pods if p["metadata"]["name"] in patches])
    return written


def _recount_budgets(*, namespace: str, closed: list[dict[str, Any]]) -> None:
    """Ask every PodDisruptionBudget that counted a just-closed dark pod to recount.

    The disruption controller does not notice a pod leaving a budget's selector; a
    metadata-only write on the budget makes it recount. A failure is logged and counted,
    never fatal: the close itself is done.
    """
    try:
        names = budgets_to_recount(budgets=kube.list_pod_disruption_budgets(namespace=namespace), closed=closed)
        for name in names:
            kube.annotate_pod_disruption_budget(namespace=namespace, name=name,
                                                annotations={RECOUNT_ANNOTATION: now_rfc3339()})
            BUDGET_RECOUNTS.labels("Requested").inc()
    except kube.ApiException as exc:
        BUDGET_RECOUNTS.labels("Failed").inc()
        log.warning("could not ask the PodDisruptionBudgets of %s to recount after a close: %s", namespace, exc.reason)


def _export(*, namespace: str, name: str, status: dict[str, Any]) -> None:
    DARK_REPLICAS.labels(namespace, name, "desired").set(status["desiredReplicas"])
    DARK_REPLICAS.labels(namespace, name, "warm").set(status["warmReplicas"])
    DARK_REPLICAS.labels(namespace, name, "serving").set(status["readyReplicas"])


def reconcile_dark_cluster_named(*, namespace: str, name: str) -> str | None:
    """Reconcile a DarkCluster read fresh from the API server (None if it is gone)."""
    body = kube.read_custom(plural=DARKCLUSTERS, namespace=namespace, name=name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    return reconcile_dark_cluster(body=body)


def sync_pod_gate(*, pod: dict[str, Any], gate: str) -> bool:
    """Write one dark pod's serving labels if they disagree with its DarkCluster's gate."""
    return _write_gates(namespace=pod["metadata"]["namespace"], pods=[pod], gate=gate) > 0


class StatusRefresher:
    """Coalesces bursts of dark-pod events into one reconcile per DarkCluster.

    A pod event asks for a refresh; the refresh runs once, shortly after, for every
    request that arrived meanwhile. Nothing here is state: a lost request is made good by
    the periodic resync.
    """

    def __init__(self, *, delay_seconds: float = 0.3) -> None:
        self._delay = delay_seconds
        self._pending: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def request(self, *, namespace: str, name: str) -> None:
        """Ask for a refresh of one DarkCluster."""
        key = (namespace, name)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        timer = threading.Timer(self._delay, self._run, kwargs={"key": key})
        timer.daemon = True
        timer.start()

    def _run(self, *, key: tuple[str, str]) -> None:
        with self._lock:
            self._pending.discard(key)
        try:
            reconcile_dark_cluster_named(namespace=key[0], name=key[1])
        except Exception:  # the periodic resync retries; never kill the timer thread loudly
            log.exception("refresh of DarkCluster %s/%s failed", *key)
