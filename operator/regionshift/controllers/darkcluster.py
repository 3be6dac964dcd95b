"""The DarkCluster controller: one serialized reconcile path per DarkCluster.

Every DarkCluster has one kopf daemon (:func:`run`) that sleeps until it is woken and then
reconciles in a worker thread: it reads the DarkCluster, its target, its shadow and its
dark pods fresh from the API server, asks the pure modules
(:mod:`regionshift.decide.darkcapacity`, :mod:`regionshift.decide.gate`) what to do, and
writes only the difference. Nothing else writes a dark pod's gate, the shadow or this
controller's status fields, so no reconcile ever acts on an older copy than the one before
it: a gate that was opened cannot be closed again by a run that started earlier.

Everything else only *wakes* the daemon (:func:`wake`): a spec change, a dark pod or a
shadow that changed, the target that changed or went, sizing, which writes
``status.forecastReplicas`` under its own field manager (a wake only when the replicas the
policy makes of it move), an evacuation, which writes its RegionFailover's
``status.evacuationGate`` (and wakes every DarkCluster the RegionFailover owns, in this
process, right after) or a DarkCluster's own
(:func:`regionshift.adapters.kube.set_evacuation_gate`), and a transplant, which writes ``status.transplantedReplicas`` under its own
(:func:`regionshift.adapters.kube.set_transplanted_replicas`; the shadow then keeps
max(0, sized - transplanted) replicas, see :func:`dark_replicas`). All are status-only changes that bump no generation, which kopf's ``on.update`` and field
handlers are not made for; the raw ``on.event`` handler sees every watch event and wakes
the daemon when one of the values a run acts on moved (:func:`acted_on`). Wakes that
arrive during a run collapse into one more run. A slow jittered resync
(:data:`RESYNC_SECONDS`) repairs drift; a DarkCluster waiting for its target looks for it
with a backoff, since the operator does not watch Deployments that are not labelled as its
own.

An opening gate has a fast path (:func:`open_gate_fast`), since it is the hot path of an
evacuation: a savior opens the evacuation gate of hundreds of DarkClusters at once, and a
full reconcile of each (about nine requests) before its pods serve would make the last
pod wait for every other DarkCluster's bookkeeping. A run woken by a moved evacuation gate,
after a run that reconciled, takes the DarkCluster and its pods as the watches last
delivered them (:mod:`regionshift.controllers.dark_store`; this controller's own status
fields as it last wrote them) and the RegionFailover's gate as the evacuation of this
process wrote it. Where any of them is not known yet, it takes one shared LIST of the
namespace's RegionFailovers, DarkClusters and dark pods instead (coalesced: every daemon
woken meanwhile waits for the same LIST, which starts after each of them woke). A stored
copy may lag the API server by the watch's delay; the fast path only opens (a label merge,
the same however often written), a change it missed wakes the daemon again, and the full
reconcile that follows reads everything fresh. When the gate in force is Open, it merges the serving labels
into its pods, writes bounded by :data:`GATE_WRITERS` across all DarkClusters, tells the
status those pods make to :func:`on_status` at once (its serving replicas are what the
peers shift traffic on: the evacuation exports them from there), and writes that status
once no fast path's pod write is pending (at most :data:`STATUS_DEFER_SECONDS` later: the
pods serve, the status only reports it). The full reconcile (the shadow, the target's
label, the GateOpened Event) follows :data:`FOLLOW_UP_SECONDS` later and not while other
fast paths are under way, or at once when anything else woke the daemon; when the fast path could not write the status,
it follows in the same run, once no other DarkCluster's fast path is under way (at most
:data:`FAST_PATH_DEFER_SECONDS` later). Either way it is the one daemon of the DarkCluster,
one run after the other, so a DarkCluster keeps its single writer. Closing takes the full
reconcile only (it asks the PodDisruptionBudgets to recount, and no traffic waits for it).
A pod event that carries exactly the resourceVersion a gate write of this controller
returned wakes nothing: the run that wrote it reads the pods again anyway.

The gate enforced on the dark pods is the one in force
(:func:`regionshift.decide.gate.effective_gate`): Open when the owner's ``spec.gate``, the
DarkCluster's own ``status.evacuationGate`` or the one of the RegionFailover that owns it
is Open. The RegionFailover's is read from the fast path's LIST, or as the evacuation of
this process (its one writer) last read or wrote it (:func:`note_region_failover_gate`),
or else from one read shared by the reconciles that need it
(:func:`read_region_failover_gate`). This controller never writes any of them, only the
summary ``status.effectiveGate`` and the GateOpen condition, which says who opened it.

Status is built from :class:`regionshift.api.models.DarkClusterStatus` and written with
server-side apply under :data:`FIELD_MANAGER`, and only when it changed. The applied status
holds this controller's own fields only (:data:`~regionshift.decide.darkcapacity.OWN_STATUS_FIELDS`),
so the evacuation's and sizing's fields, owned by other field managers, are never removed
or overwritten by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, NamedTuple

import kopf
import urllib3.exceptions

from regionshift.adapters import events, kube, retries
from regionshift.controllers import dark_store
from regionshift.api.conditions import find_condition, now_rfc3339
from regionshift.api.models import DarkClusterSpec, DarkClusterStatus, Gate
from regionshift.decide.darkcapacity import (
    DARK_CLUSTER_LABEL,
    OWN_STATUS_FIELDS,
    ROLE_LABEL,
    ROLE_SHADOW,
    ROLE_TARGET,
    TEMPLATE_HASH_ANNOTATION,
    blocked_status,
    conflict_status,
    dark_cluster_label_value,
    dark_status,
    desired_replicas,
    is_owned_by,
    own_status,
    shadow_deployment,
    shadow_name,
    shadow_needs_recreate,
    shadow_needs_write,
    target_label_patch,
    target_missing_status,
)
from regionshift.decide.gate import (
    RECOUNT_ANNOTATION,
    SPEC_HAND,
    EffectiveGate,
    budgets_to_recount,
    effective_gate,
    gate_label_patches,
)
from regionshift.metrics import (
    BUDGET_RECOUNTS,
    DARK_CLUSTER_GATE_OPEN,
    DARK_CLUSTER_RECONCILE_SECONDS,
    DARK_CLUSTER_WAKES,
    FAST_PATH_LISTINGS,
    DARK_REPLICAS,
    GATE_WRITES,
    RECONCILIATIONS,
    SHADOW_WRITES,
    STATUS_WRITES,
    TARGET_LABEL_WRITES,
)

__all__ = [
    "DARKCLUSTERS",
    "FAST_PATH_DEFER_SECONDS",
    "Gated",
    "FIELD_MANAGER",
    "RESYNC_SECONDS",
    "ActedOn",
    "Outcome",
    "acted_on",
    "dark_cluster_changed",
    "dark_pod_changed",
    "deployment_acted_on",
    "deployment_changed",
    "deployment_woke",
    "dark_replicas",
    "executors",
    "next_delay",
    "note_region_failover_gate",
    "on_status",
    "open_gate_fast",
    "own_write",
    "read_region_failover_gate",
    "reconcile",
    "region_failover_gate",
    "region_failover_of",
    "release_target",
    "run",
    "wake",
    "written_status",
]

DARKCLUSTERS = "darkclusters"
REGIONFAILOVERS = "regionfailovers"
FIELD_MANAGER = "regionshift-darkcluster"
"""Server-side-apply field manager of the status fields this controller owns."""
GATE_WRITERS = 16
"""Parallel pod label writes when a gate flips: ungating N pods costs ~N/16 round trips.

The fast path (:func:`open_gate_fast`) shares this bound across every DarkCluster."""
FAST_PATH_SETTLE_SECONDS = 0.5
"""After its fast path, a run waits until no fast path started for this long before its full reconcile."""
FAST_PATH_DEFER_SECONDS = 10.0
"""... but never longer than this: a gate that keeps flipping must not starve the shadow and the status."""
FOLLOW_UP_SECONDS = 10.0
"""A fast path that wrote the pods and the status leaves the full reconcile for 10-20 s later
(and then until no fast path is under way, at most :data:`FAST_PATH_DEFER_SECONDS` more)."""
STATUS_DEFER_SECONDS = 10.0
"""A fast path's status waits until no fast path's pod write is pending, at most this long."""
RECONCILERS = 4
"""Worker threads that run reconciles (each DarkCluster runs at most one at a time)."""
RESYNC_SECONDS = 600.0
"""A DarkCluster nobody woke is reconciled again after this long (±20 % jitter)."""
TARGET_POLL_SECONDS = (2.0, 60.0)
"""A DarkCluster whose target is missing looks again after 2 s, doubling up to 60 s."""
RETRY_SECONDS = (0.5, 30.0)
"""After a routine refusal (409, 429, 5xx, no answer): 0.5 s, doubling up to 30 s."""
ERROR_SECONDS = (5.0, 300.0)
"""After any other failure (403, 422, a bug): 5 s, doubling up to 5 minutes."""

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- waking


@dataclass
class _Waker:
    """The wake-up of one DarkCluster's daemon; lives on the operator's event loop."""

    loop: asyncio.AbstractEventLoop
    event: asyncio.Event = field(default_factory=asyncio.Event)
    causes: set[str] = field(default_factory=set)
    seen: tuple[Any, ...] | None = None
    """:func:`acted_on` of what the last run read: a DarkCluster event wakes only when it moved."""

    def set(self, cause: str) -> None:
        self.causes.add(cause)
        self.event.set()


_wakers: dict[tuple[str, str], _Waker] = {}


def wake(*, namespace: str, name: str, cause: str = "sizing") -> bool:
    """Wake a DarkCluster's reconcile; safe from any thread or coroutine.

    Returns False when no daemon runs for it (not created yet, being deleted, or another
    operator instance owns it); the daemon's first run then reads everything anyway.
    Sizing calls this after writing ``status.forecastReplicas``.
    """
    waker = _wakers.get((namespace, name))
    if waker is None:
        return False
    DARK_CLUSTER_WAKES.labels(cause).inc()
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is waker.loop:
        waker.set(cause)
        return True
    try:
        waker.loop.call_soon_threadsafe(waker.set, cause)
    except RuntimeError:  # the operator's loop has closed: nothing left to wake
        return False
    return True



class ActedOn(NamedTuple):
    """The values of a DarkCluster a reconcile acts on that another writer may move.

    Everything else in its status is this controller's own output.
    """

    generation: Any
    """metadata.generation: its owner's spec."""
    forecast_replicas: Any
    """The replicas sizing asks for: status.forecastReplicas (written by sizing) clamped by the
    spec's policy. A forecast that moves inside the clamp changes nothing a reconcile does, so it
    wakes nothing (sizing rewrites hundreds of forecasts when a verdict moves, in the middle of
    an evacuation)."""
    evacuation_gate: Any
    """status.evacuationGate, written by the evacuation."""
    transplanted_replicas: Any = None
    """status.transplantedReplicas, written by a transplant."""


def acted_on(body: Mapping[str, Any]) -> ActedOn:
    """What a DarkCluster event must move to wake its daemon (see :class:`ActedOn`)."""
    status = body.get("status") or {}
    return ActedOn(generation=(body.get("metadata") or {}).get("generation"),
                   forecast_replicas=_sized(body), evacuation_gate=status.get("evacuationGate"),
                   transplanted_replicas=status.get("transplantedReplicas"))


def _sized(body: Mapping[str, Any]) -> Any:
    """The replicas the spec's policy makes of the forecast (the raw forecast when the spec does not parse)."""
    forecast = (body.get("status") or {}).get("forecastReplicas")
    try:
        return desired_replicas(spec=DarkClusterSpec.model_validate(body.get("spec") or {}), forecast_replicas=forecast)
    except (ValueError, TypeError):
        return ("forecast", forecast)


def dark_replicas(*, spec: DarkClusterSpec, status: Mapping[str, Any]) -> int:
    """The dark replicas to keep: the sized count (fixed or forecast, clamped) less what a transplant moved."""
    sized = desired_replicas(spec=spec, forecast_replicas=status.get("forecastReplicas"))
    return max(0, sized - int(status.get("transplantedReplicas") or 0))


def dark_cluster_changed(*, namespace: str, name: str, body: Mapping[str, Any], type_: str | None) -> None:
    """A DarkCluster event: wake its daemon if its spec, its forecast or its evacuation gate moved since the last run.

    Our own status writes come back as events too; they do not wake anything. Every event's
    body is kept for the gate's fast path (:mod:`regionshift.controllers.dark_store`).
    """
    dark_store.dark_cluster_changed(namespace=namespace, name=name, body=body, type_=type_)
    waker = _wakers.get((namespace, name))
    if waker is None or type_ == "DELETED":
        return
    seen = acted_on(body)
    if seen != waker.seen:
        before = ActedOn(*waker.seen) if waker.seen is not None else None
        gate_moved = before is not None and seen.evacuation_gate != before.evacuation_gate
        transplant_moved = before is not None and seen.transplanted_replicas != before.transplanted_replicas
        cause = "evacuation" if gate_moved else "transplant" if transplant_moved else "darkcluster"
        wake(namespace=namespace, name=name, cause=cause)


def dark_pod_changed(*, namespace: str, labels: Mapping[str, str],
                     darkclusters_by_label: Mapping[tuple[str, str], Any], name: str | None = None,
                     resource_version: str | None = None, type_: str | None = None) -> None:
    """A dark pod appeared, changed or went: wake its DarkCluster (it gets its gate from there).

    Not when the event shows exactly what this controller's own gate write returned
    (:func:`own_write`): the run that wrote it reads the pods again anyway.
    """
    if name is not None and type_ != "DELETED" and own_write(namespace=namespace, pod=name,
                                                             resource_version=resource_version):
        return
    for dark_cluster in darkclusters_by_label.get((namespace, labels.get(DARK_CLUSTER_LABEL, "")), []):
        wake(namespace=namespace, name=dark_cluster, cause="pod")


_deployments_seen: dict[tuple[str, str], tuple[Any, ...]] = {}
""":func:`deployment_acted_on` of each watched Deployment as last seen by :func:`deployment_changed`."""


def deployment_acted_on(body: Mapping[str, Any]) -> tuple[Any, ...]:
    """What of a shadow or a target a reconcile acts on: everything but its status.

    Its spec (by its generation), its labels, its template hash, its owners and its deletion.
    A Deployment's status moves several times while its pods start (observed generation,
    replicas, ready and available counts, conditions), and a reconcile reads none of it: it
    counts the dark pods themselves, whose own events wake it.
    """
    meta = body.get("metadata") or {}
    return (meta.get("generation"), meta.get("deletionTimestamp"), tuple(sorted((meta.get("labels") or {}).items())),
            (meta.get("annotations") or {}).get(TEMPLATE_HASH_ANNOTATION),
            tuple(sorted(str(o.get("uid")) for o in meta.get("ownerReferences") or [])))


def deployment_woke(
    *, namespace: str, name: str, labels: Mapping[str, str], type_: str | None,
    darkclusters_by_target: Mapping[tuple[str, str], Any], darkclusters_by_label: Mapping[tuple[str, str], Any],
    body: Mapping[str, Any] | None = None,
) -> bool:
    """A shadow or a target changed (or went): wake the DarkClusters concerned; True when the target must lose its label.

    Only when something a reconcile acts on moved (:func:`deployment_acted_on`; ``body``
    omitted: always): at 500 DarkClusters, the status updates of the shadows alone woke some
    1,200 reconciles that had nothing to do. True for a Deployment labelled as a target that
    no DarkCluster shadows any more (its DarkCluster was deleted while the operator was
    away): :func:`release_target` then removes the label. Safe from any thread.
    """
    key = (namespace, name)
    if type_ == "DELETED":
        _deployments_seen.pop(key, None)
    elif body is not None:
        seen = deployment_acted_on(body)
        if _deployments_seen.get(key) == seen:
            return False
        _deployments_seen[key] = seen
    role = labels.get(ROLE_LABEL)
    if role == ROLE_SHADOW:
        for dark_cluster in darkclusters_by_label.get((namespace, labels.get(DARK_CLUSTER_LABEL, "")), ()):
            wake(namespace=namespace, name=dark_cluster, cause="shadow")
        return False
    if role != ROLE_TARGET:
        return False
    shadowing = list(darkclusters_by_target.get((namespace, name), ()))
    for dark_cluster in shadowing:
        wake(namespace=namespace, name=dark_cluster, cause="target")
    return not shadowing and type_ != "DELETED"


async def deployment_changed(
    *, namespace: str, name: str, labels: Mapping[str, str], type_: str | None,
    darkclusters_by_target: Mapping[tuple[str, str], Any], darkclusters_by_label: Mapping[tuple[str, str], Any],
    body: Mapping[str, Any] | None = None,
) -> None:
    """:func:`deployment_woke` on the event loop, the release of a target's label in a thread."""
    if deployment_woke(namespace=namespace, name=name, labels=labels, type_=type_, body=body,
                       darkclusters_by_target=darkclusters_by_target, darkclusters_by_label=darkclusters_by_label):
        await asyncio.to_thread(release_target, namespace=namespace, target=name, leaving=None)


# ---------------------------------------------------------------------------- the daemon


@dataclass(frozen=True)
class Outcome:
    """What one reconcile did, and when the next one is due if nobody wakes it."""

    reason: str
    """Reconciled, TargetNotFound, ShadowConflict, Gone, Conflict, Retrying, Forbidden, Invalid, ..."""
    seen: tuple[Any, ...] | None = None


_ROUTINE = frozenset({"Conflict", "Retrying"})
_POLLED = frozenset({"TargetNotFound", "ShadowConflict"})
_executor_instance: ThreadPoolExecutor | None = None


def _executor() -> ThreadPoolExecutor:
    global _executor_instance
    if _executor_instance is None:
        _executor_instance = ThreadPoolExecutor(max_workers=RECONCILERS, thread_name_prefix="darkcluster")
    return _executor_instance


def next_delay(*, reason: str, streak: int, jitter: float) -> float:
    """Seconds until a DarkCluster nobody wakes is reconciled again (pure, unit-tested).

    ``streak`` counts the runs in a row with this same reason (1 for the first);
    ``jitter`` is in [0, 1). Reconciled: the slow resync, ±20 %. TargetNotFound or
    ShadowConflict: a backoff poll, since neither a new target nor a user's Deployment in
    the shadow's place is watched. A routine refusal: a quick retry. Anything else: a
    slower retry, so that a broken object does not hammer the API server.
    """
    if reason == "Reconciled":
        return RESYNC_SECONDS * (0.8 + 0.4 * jitter)
    low, high = (
        TARGET_POLL_SECONDS if reason in _POLLED else RETRY_SECONDS if reason in _ROUTINE else ERROR_SECONDS
    )
    ceiling = min(high, low * 2 ** max(0, streak - 1))
    return ceiling * (0.75 + 0.25 * jitter)


async def _until(stopped: kopf.DaemonStopped) -> None:
    await stopped.wait()


async def run(*, namespace: str, name: str, spec: Mapping[str, Any], stopped: kopf.DaemonStopped) -> None:
    """The daemon of one DarkCluster: reconcile now, then whenever woken or due, one run at a time."""
    loop = asyncio.get_running_loop()
    key = (namespace, name)
    waker = _Waker(loop=loop)
    _wakers[key] = waker
    waker.set("start")
    stop = asyncio.ensure_future(_until(stopped))
    delay, last, streak = 0.0, "", 0
    gone = False
    pending: Gated | None = None  # a fast path's writes, told by the full reconcile that follows it
    try:
        while not stopped:
            if not waker.event.is_set():
                sleeper = asyncio.ensure_future(waker.event.wait())
                await asyncio.wait({sleeper, stop}, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
                sleeper.cancel()
                if stopped:
                    break
                if not waker.event.is_set():
                    waker.causes.add("resync" if last == "Reconciled" else "retry")
            waker.event.clear()
            woken_by, waker.causes = waker.causes, set()
            causes = ",".join(sorted(woken_by))
            earlier, pending = pending, None
            if earlier is not None and "evacuation" not in woken_by and not woken_by - {"pod", "resync", "retry"}:
                await _after_fast_paths()  # a follow-up: not while other DarkClusters' pods are being ungated
            if "evacuation" in woken_by and last == "Reconciled":
                gated = await open_gate_fast(namespace=namespace, name=name, since=time.monotonic())
                if gated is not None:
                    earlier = gated.after(earlier)
                    if gated.seen is not None and woken_by <= {"evacuation", "pod", "resync"}:
                        # Pods and status done: the rest (shadow, target, Event) follows a little later.
                        pending, waker.seen = earlier, gated.seen
                        delay = FOLLOW_UP_SECONDS * (1.0 + random.random())
                        continue
                    await _after_fast_paths()
            outcome = await loop.run_in_executor(_executor(), functools.partial(
                _reconcile_logged, namespace=namespace, name=name, causes=causes, earlier=earlier))
            if outcome.reason == "Gone":
                gone = True
                break
            waker.seen = outcome.seen
            streak = streak + 1 if outcome.reason == last else 1
            last = outcome.reason
            delay = next_delay(reason=outcome.reason, streak=streak, jitter=random.random())
    finally:
        stop.cancel()
        if _wakers.get(key) is waker:
            del _wakers[key]
            _written.pop(key, None)
    deleted = stopped.reason is not None and bool(stopped.reason & kopf.DaemonStoppingReason.RESOURCE_DELETED)
    if gone or deleted:
        target = str(spec.get("targetDeployment", ""))
        if target:
            await loop.run_in_executor(_executor(), functools.partial(
                release_target, namespace=namespace, target=target, leaving=name))


def _reconcile_logged(*, namespace: str, name: str, causes: str, earlier: Gated | None = None) -> Outcome:
    """One reconcile; every failure becomes an outcome (and, when it is news, a condition and an Event)."""
    started = time.monotonic()
    try:
        outcome = reconcile(namespace=namespace, name=name, earlier=earlier)
    except kube.ApiException as exc:
        outcome = _failed(namespace=namespace, name=name, status=exc.status, detail=f"HTTP {exc.status} {exc.reason}")
    except urllib3.exceptions.HTTPError as exc:
        outcome = _failed(namespace=namespace, name=name, status=None, detail=type(exc).__name__)
    except Exception as exc:  # a bug: say so loudly, report it, retry later
        log.exception("reconcile of DarkCluster %s/%s failed", namespace, name)
        outcome = _failed(namespace=namespace, name=name, status=-1, detail=f"{type(exc).__name__}: {exc}")
    DARK_CLUSTER_RECONCILE_SECONDS.observe(time.monotonic() - started)
    RECONCILIATIONS.labels("DarkCluster", outcome.reason).inc()
    log.debug("DarkCluster %s/%s woken by %s: %s", namespace, name, causes, outcome.reason)
    return outcome


_API_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 422: "Invalid"}


def _failed(*, namespace: str, name: str, status: int | None, detail: str) -> Outcome:
    if retries.is_retryable(status):
        # Routine: someone wrote meanwhile, the API server asked us to slow down, or it hiccuped.
        log.info("DarkCluster %s/%s: %s; reconciling again shortly", namespace, name, detail)
        return Outcome(reason="Conflict" if status == 409 else "Retrying")
    reason = _API_REASONS.get(status or 0, "ReconcileError")
    try:
        body = kube.read_custom(plural=DARKCLUSTERS, namespace=namespace, name=name)
        if body is not None:
            old = body.get("status") or {}
            _report_blocked(body, reason=reason, message=f"reconcile failed: {detail}",
                            status=blocked_status(generation=body["metadata"].get("generation"), old_status=old,
                                                  reason=reason, message=f"reconcile failed: {detail}"[:1000],
                                                  now=now_rfc3339()))
    except (kube.ApiException, urllib3.exceptions.HTTPError) as exc:
        log.warning("DarkCluster %s/%s: could not report %s: %s", namespace, name, reason, exc)
    log.warning("DarkCluster %s/%s: %s", namespace, name, detail)
    return Outcome(reason=reason)


# ---------------------------------------------------------------------------- the gate's fast path


@dataclass(frozen=True)
class Gated:
    """What a run's fast path wrote before its full reconcile."""

    gate: str
    written: int
    described: str
    """Who holds the gate open (:meth:`~regionshift.decide.gate.EffectiveGate.describe`), for the Event."""
    seen: ActedOn | None = None
    """What the fast path acted on, when it also wrote the status: the full reconcile may then wait."""

    def after(self, earlier: Gated | None) -> Gated:
        """This fast path's writes added to an earlier one's of the same gate (not yet told)."""
        if earlier is None or earlier.gate != self.gate:
            return self
        return Gated(gate=self.gate, written=self.written + earlier.written, described=self.described,
                     seen=self.seen)


@dataclass(frozen=True)
class _GateListing:
    """The namespace's DarkClusters by name, its dark pods by their DarkCluster label, and its
    RegionFailovers' evacuation gates by uid, from one LIST each."""

    dark_clusters: dict[str, dict[str, Any]]
    pods: dict[str, list[dict[str, Any]]]
    region_failover_gates: dict[str, str | None] = field(default_factory=dict)
    stored: bool = False
    """Taken from what the watches last delivered (:func:`_stored_listing`), not listed."""


@dataclass
class _Listing:
    started: float
    future: asyncio.Future[_GateListing]


_listings: dict[str, _Listing] = {}
_fast_paths = 0
"""Fast paths under way in this process."""
_last_fast_path = -math.inf
"""When the latest fast path started (monotonic)."""
_gate_executor_instance: ThreadPoolExecutor | None = None
_gate_writes = 0
"""Pod gate writes of fast paths pending in this process."""
_gate_writes_idle_event: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
_own_writes: dict[tuple[str, str], str] = {}
"""(namespace, pod) → the resourceVersion this controller's last gate write of it returned."""
OWN_WRITES_MAX = 20_000


def _gate_executor() -> ThreadPoolExecutor:
    global _gate_executor_instance
    if _gate_executor_instance is None:
        _gate_executor_instance = ThreadPoolExecutor(max_workers=GATE_WRITERS, thread_name_prefix="gate")
    return _gate_executor_instance


def executors() -> list[tuple[ThreadPoolExecutor, int]]:
    """This controller's thread pools (made if need be) and their sizes: the reconciles', the gate writes'."""
    return [(_executor(), RECONCILERS), (_gate_executor(), GATE_WRITERS)]


def _remember_own_write(*, namespace: str, pod: str, resource_version: str) -> None:
    if len(_own_writes) >= OWN_WRITES_MAX:  # events that never came (pods deleted): forget them all
        _own_writes.clear()
    _own_writes[(namespace, pod)] = resource_version


def own_write(*, namespace: str, pod: str, resource_version: str | None) -> bool:
    """Whether a pod event shows exactly what a gate write of this controller returned (and forget it)."""
    key = (namespace, pod)
    if resource_version is None or _own_writes.get(key) != resource_version:
        return False
    _own_writes.pop(key, None)
    return True


def _list_for_gates(namespace: str) -> _GateListing:
    """The DarkClusters and their RegionFailovers' gates first, then the dark pods: all at least as fresh
    as the moment the LIST began.

    The RegionFailovers (large objects) are listed only when one of them is not known: the
    evacuation of this process notes its gate at every read and write
    (:func:`note_region_failover_gate`), the write that woke the fast path included.
    """
    dark_clusters = {dc["metadata"]["name"]: dc for dc in kube.list_custom(plural=DARKCLUSTERS, namespace=namespace)}
    owners = {owner[1] for dc in dark_clusters.values() if (owner := region_failover_of(dc)) is not None}
    known = {uid: _known_gates[uid][1] for uid in owners if uid in _known_gates}
    if len(known) == len(owners):
        gates = known
    else:
        gates = {rf["metadata"].get("uid", ""): (rf.get("status") or {}).get("evacuationGate")
                 for rf in kube.list_custom(plural=REGIONFAILOVERS, namespace=namespace)}
    pods: dict[str, list[dict[str, Any]]] = {}
    for pod in kube.list_pods(namespace=namespace, label_selector=DARK_CLUSTER_LABEL):
        pods.setdefault(((pod.get("metadata") or {}).get("labels") or {}).get(DARK_CLUSTER_LABEL, ""), []).append(pod)
    return _GateListing(dark_clusters=dark_clusters, pods=pods, region_failover_gates=gates)


def region_failover_of(body: Mapping[str, Any]) -> tuple[str, str] | None:
    """(name, uid) of the RegionFailover that owns a DarkCluster (its controller owner reference), if any."""
    for owner in (body.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == "RegionFailover" and owner.get("controller") and owner.get("name"):
            return str(owner["name"]), str(owner.get("uid") or "")
    return None


_known_gates: dict[str, tuple[float, str | None]] = {}
"""RegionFailover uid → (monotonic start of the read or write that showed it, its ``status.evacuationGate``)."""


def note_region_failover_gate(*, uid: str, gate: str | None, read_at: float) -> None:
    """A RegionFailover's ``status.evacuationGate`` as a read or a write that began at ``read_at`` showed it.

    The evacuation of this process, the gate's one writer, notes every fresh read and every
    write of it, so a reconcile (a resync of hundreds of DarkClusters) takes it from here
    instead of reading the RegionFailover again. Kept only when not older than what is known.
    """
    with _gate_reads_lock:
        known = _known_gates.get(uid)
        if known is None or read_at >= known[0]:
            _known_gates[uid] = (read_at, gate)


def region_failover_gate(*, namespace: str, owner: tuple[str, str], since: float) -> str | None:
    """The evacuation gate of a DarkCluster's RegionFailover: as last noted in this process, else read (shared)."""
    name, uid = owner
    known = _known_gates.get(uid)
    if known is not None:
        return known[1]
    return read_region_failover_gate(namespace=namespace, name=name, since=since, uid=uid)


@dataclass
class _GateRead:
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    gate: str | None = None
    uid: str | None = None
    error: BaseException | None = None


_gate_reads: dict[tuple[str, str], _GateRead] = {}
_gate_reads_lock = threading.Lock()
GATE_READ_WAIT_SECONDS = 60.0


def read_region_failover_gate(*, namespace: str, name: str, since: float, uid: str | None = None) -> str | None:
    """A RegionFailover's ``status.evacuationGate``, from a read that began at or after ``since`` (monotonic).

    One read at a time per RegionFailover, shared by every reconcile it suits: the
    reconciles of hundreds of DarkClusters that an evacuation wakes together read their
    RegionFailover (a large object) once or twice, not once each, and none acts on a copy
    older than its own start. None when it does not exist (or, given ``uid``, is another
    object of that name); raises what the read raised.
    """
    key = (namespace, name)
    while True:
        with _gate_reads_lock:
            current = _gate_reads.get(key)
            if current is not None and current.started >= since:
                lead = False
            elif current is not None and not current.done.is_set():
                lead = None  # an older read under way: wait for it, then start (or share) a newer one
            else:
                current = _gate_reads[key] = _GateRead(started=time.monotonic())
                lead = True
        if lead is None:
            current.done.wait(GATE_READ_WAIT_SECONDS)
            continue
        if lead:
            try:
                body = kube.read_custom(plural=REGIONFAILOVERS, namespace=namespace, name=name)
                current.gate = None if body is None else (body.get("status") or {}).get("evacuationGate")
                current.uid = None if body is None else (body.get("metadata") or {}).get("uid")
                if current.uid:
                    note_region_failover_gate(uid=current.uid, gate=current.gate, read_at=current.started)
            except BaseException as exc:
                current.error = exc
            finally:
                current.done.set()
        elif not current.done.wait(GATE_READ_WAIT_SECONDS):
            raise TimeoutError(f"the read of RegionFailover {namespace}/{name} did not end")
        if current.error is not None:
            raise current.error
        return None if uid and current.uid and current.uid != uid else current.gate


async def _fresh_listing(*, namespace: str, since: float) -> _GateListing:
    """A listing of the namespace that began at or after ``since`` (monotonic), shared by every caller it suits.

    One LIST at a time per namespace: callers that woke while one was under way wait for it
    to end and share the next one.
    """
    while True:
        current = _listings.get(namespace)
        if current is not None and current.started >= since:
            return await asyncio.shield(current.future)
        if current is not None and not current.future.done():
            await asyncio.wait({current.future})
            continue
        loop = asyncio.get_running_loop()
        listing = _Listing(started=time.monotonic(),
                           future=loop.run_in_executor(None, _list_for_gates, namespace))
        _listings[namespace] = listing


def _stored_listing(*, namespace: str, name: str) -> _GateListing | None:
    """This DarkCluster, its pods and its RegionFailover's gate as the watches and the evacuation last told them.

    None when any of them is not known here: the DarkCluster's event has not come, the
    namespace's pod watch has not listed yet or has not yet shown a gate write of this
    controller to one of its pods (a gate closed and opened again within the watch's lag),
    or the RegionFailover's gate was never read or written in this process. The status this controller last wrote (:func:`written_status`)
    stands over the event's own fields, which may not have caught up with it.
    """
    body = dark_store.dark_cluster(namespace=namespace, name=name)
    if body is None:
        return None
    pods = dark_store.dark_pods(namespace=namespace, label=dark_cluster_label_value(name))
    if pods is None or any((namespace, pod["metadata"].get("name")) in _own_writes for pod in pods):
        return None  # not listed yet, or behind a gate write of ours (a close the watch has not shown yet)
    gates: dict[str, str | None] = {}
    owner = region_failover_of(body)
    if owner is not None:
        known = _known_gates.get(owner[1])
        if known is None:
            return None
        gates[owner[1]] = known[1]
    written = _written.get((namespace, name))
    if written is not None:
        status = body.get("status") or {}
        body = {**body, "status": {**{k: v for k, v in status.items() if k not in OWN_STATUS_FIELDS},
                                   **{k: v for k, v in written.items() if k in OWN_STATUS_FIELDS}}}
    return _GateListing(dark_clusters={name: body}, pods={dark_cluster_label_value(name): pods},
                        region_failover_gates=gates, stored=True)


async def open_gate_fast(*, namespace: str, name: str, since: float) -> Gated | None:
    """The fast path of an opening gate: serving labels on this DarkCluster's pods before anything else.

    Reads the DarkCluster and its pods from a shared listing (:func:`_fresh_listing`); when
    the gate in force is Open, writes the pods' labels through the shared
    :data:`GATE_WRITERS`, then the status those pods make (:func:`_fast_status`: the
    serving replicas are what a savior exports to its peers, who shift traffic on them).
    Returns what it wrote, or None when it did not apply (the gate in force is Closed, the
    DarkCluster is gone, or the LIST failed): the full reconcile that follows does
    everything anyway.
    """
    global _fast_paths, _last_fast_path
    _fast_paths += 1
    _last_fast_path = time.monotonic()
    try:
        listing = _stored_listing(namespace=namespace, name=name)
        if listing is None:
            try:
                listing = await _fresh_listing(namespace=namespace, since=since)
            except (kube.ApiException, urllib3.exceptions.HTTPError) as exc:
                log.info("DarkCluster %s/%s: no fast path for the gate (%s); reconciling in full", namespace, name, exc)
                return None
        FAST_PATH_LISTINGS.labels("stored" if listing.stored else "listed").inc()
        body = listing.dark_clusters.get(name)
        if body is None or body["metadata"].get("deletionTimestamp"):
            return None
        spec = DarkClusterSpec.model_validate(body["spec"])
        owner = region_failover_of(body)
        owner_gate = None if owner is None else listing.region_failover_gates.get(owner[1])
        in_force = effective_gate(spec_gate=spec.gate, evacuation_gate=(body.get("status") or {}).get("evacuationGate"),
                                  region_failover_gate=owner_gate)
        if not in_force.is_open:
            return None
        gate = in_force.gate.value
        pods = listing.pods.get(dark_cluster_label_value(name), [])
        patches = gate_label_patches(pods=pods, gate=gate)
        loop = asyncio.get_running_loop()
        outcomes = await asyncio.gather(*(_gate_write_counted(loop, functools.partial(
            _write_gate, namespace=namespace, pod=pod, labels=labels, gate=gate))
            for pod, labels in patches.items()), return_exceptions=True)
        failed = [o for o in outcomes if isinstance(o, BaseException)]
        for outcome in failed:  # the full reconcile writes it again, and reports
            log.info("DarkCluster %s/%s: a gate write of the fast path failed: %s", namespace, name, outcome)
        written = {o["metadata"]["name"]: o for o in outcomes if isinstance(o, dict)}
        seen = None
        if not failed:
            try:
                status = _fast_status(body=body, spec=spec, pods=[written.get(p["metadata"]["name"], p) for p in pods],
                                      opened_by=in_force.opened_by, region_failover_gate=owner_gate)
                # The pods first: this status waits (within bounds) until no gate write is under way.
                await _after_gate_writes()
                await loop.run_in_executor(_gate_executor(), _write_status, body, status)
                seen = acted_on(body)
            except (kube.ApiException, urllib3.exceptions.HTTPError) as exc:  # the full reconcile writes it
                log.info("DarkCluster %s/%s: the fast path's status write failed: %s", namespace, name, exc)
        return Gated(gate=gate, written=len(written), described=in_force.describe(), seen=seen)
    finally:
        _fast_paths -= 1


async def _gate_write_counted(loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> Any:
    """One pod's gate write on the gate writers' threads, counted in :data:`_gate_writes` while it is pending."""
    global _gate_writes
    _gate_writes += 1
    _gate_writes_idle().clear()
    try:
        return await loop.run_in_executor(_gate_executor(), call)
    finally:
        _gate_writes -= 1
        if _gate_writes == 0:
            _gate_writes_idle().set()


def _gate_writes_idle() -> asyncio.Event:
    """Set while no fast path's pod write is pending; one per event loop (the operator has one, tests several)."""
    global _gate_writes_idle_event
    loop = asyncio.get_running_loop()
    if _gate_writes_idle_event is None or _gate_writes_idle_event[0] is not loop:
        _gate_writes_idle_event = (loop, asyncio.Event())
        if _gate_writes == 0:
            _gate_writes_idle_event[1].set()
    return _gate_writes_idle_event[1]


async def _after_gate_writes() -> None:
    """Wait until no fast path's pod write is pending (at most :data:`STATUS_DEFER_SECONDS`).

    An ungate's writes of pods and of statuses share one API server: the pods are what
    serves, the statuses only report it, and the capacity the peers shift on is exported
    before the status is written (:func:`_fast_status`). So the statuses go last.
    """
    if _gate_writes == 0:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(_gate_writes_idle().wait(), timeout=STATUS_DEFER_SECONDS)


def _fast_status(*, body: dict[str, Any], spec: DarkClusterSpec, pods: list[dict[str, Any]],
                 opened_by: tuple[str, ...], region_failover_gate: str | None) -> DarkClusterStatus:
    """The status the fast path's pods make, exactly as the full reconcile would write it from them.

    Exported (and told to :func:`on_status`) at once, before it is written: the pods are
    already what it says.
    """
    meta, old_status = body["metadata"], body.get("status") or {}
    status = dark_status(spec=spec, generation=meta.get("generation"), old_status=old_status,
                         replicas=dark_replicas(spec=spec, status=old_status), pods=pods, now=now_rfc3339(),
                         evacuation_gate=old_status.get("evacuationGate"), region_failover_gate=region_failover_gate)
    _tell_status(body, status.wire())
    _export(namespace=meta["namespace"], name=meta["name"], status=status, opened_by=opened_by)
    return status


async def _after_fast_paths() -> None:
    """Wait until no fast path is under way or started lately (at most :data:`FAST_PATH_DEFER_SECONDS`)."""
    deadline = time.monotonic() + FAST_PATH_DEFER_SECONDS
    while True:
        now = time.monotonic()
        if (_fast_paths == 0 and now - _last_fast_path >= FAST_PATH_SETTLE_SECONDS) or now >= deadline:
            return
        await asyncio.sleep(min(deadline - now, FAST_PATH_SETTLE_SECONDS * (0.5 + random.random())))


# ---------------------------------------------------------------------------- one reconcile


def _selector(name: str) -> str:
    return f"{DARK_CLUSTER_LABEL}={dark_cluster_label_value(name)}"


def _event(body: dict[str, Any], *, type_: str, reason: str, message: str) -> None:
    events.post_event(involved=body, type_=type_, reason=reason, message=message)


def reconcile(*, namespace: str, name: str, earlier: Gated | None = None) -> Outcome:
    """Bring one DarkCluster's shadow, its pods' gates and its status in line, read fresh.

    Only the DarkCluster's daemon calls this (one run at a time per DarkCluster).
    ``earlier``: what this run's fast path wrote (:func:`open_gate_fast`), told in its Event.
    """
    started = time.monotonic()
    body = kube.read_custom(plural=DARKCLUSTERS, namespace=namespace, name=name)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return Outcome(reason="Gone")
    meta = body["metadata"]
    uid, generation = meta["uid"], meta.get("generation")
    spec = DarkClusterSpec.model_validate(body["spec"])
    old_status = body.get("status") or {}
    seen = acted_on(body)
    now = now_rfc3339()
    evacuation_gate = old_status.get("evacuationGate")  # an enum in the schema: Open, Closed or absent
    owner = region_failover_of(body)
    owner_gate = None if owner is None else region_failover_gate(namespace=namespace, owner=owner, since=started)
    in_force = effective_gate(spec_gate=spec.gate, evacuation_gate=evacuation_gate, region_failover_gate=owner_gate)

    target = kube.read_deployment(namespace=namespace, name=spec.target_deployment)
    current = kube.read_deployment(namespace=namespace, name=shadow_name(spec.target_deployment))
    if current is not None and not is_owned_by(current, uid=uid):
        return _conflict(body, spec=spec, seen=seen)
    pods = kube.list_pods(namespace=namespace, label_selector=_selector(name))

    if target is None:
        return _target_missing(body, spec=spec, current=current, pods=pods, seen=seen, in_force=in_force)
    _label_target(target)

    replicas = dark_replicas(spec=spec, status=old_status)
    desired = shadow_deployment(dark_cluster=body, target=target, replicas=replicas)
    # Gates first: ungating is the hot path of an evacuation and must not wait for the
    # shadow's own update.
    written = _write_gates(namespace=namespace, pods=pods, gate=in_force.gate.value)
    told = written
    if earlier is not None and earlier.written:
        if earlier.gate == in_force.gate.value:
            told += earlier.written
        else:  # the gate flipped back since the fast path: say both
            _event(body, type_="Normal", reason="GateOpened",
                   message=f"gate opened on {earlier.written} dark pod(s) of {desired['metadata']['name']}"
                           f" ({earlier.described})")
    if told:
        verb = "opened" if in_force.is_open else "closed"
        _event(body, type_="Normal", reason=f"Gate{verb.capitalize()}",
               message=f"gate {verb} on {told} dark pod(s) of {desired['metadata']['name']}"
                       f" ({in_force.describe()})")
    if current is not None and shadow_needs_recreate(current=current, desired=desired):
        _delete_shadow(body=body, current=current)
        current = None
    if shadow_needs_write(current=current, desired=desired):
        if not _write_shadow(body=body, current=current, desired=desired):
            return _conflict(body, spec=spec, seen=seen)
    if written or current is None:
        pods = kube.list_pods(namespace=namespace, label_selector=_selector(name))
    status = dark_status(spec=spec, generation=generation, old_status=old_status, replicas=replicas, pods=pods, now=now,
                         evacuation_gate=evacuation_gate, region_failover_gate=owner_gate)
    _write_status(body, status)
    _export(namespace=namespace, name=name, status=status, opened_by=in_force.opened_by)
    return Outcome(reason="Reconciled", seen=seen)


def _conflict(body: dict[str, Any], *, spec: DarkClusterSpec, seen: tuple[Any, ...]) -> Outcome:
    """The shadow's name is taken by a Deployment this DarkCluster does not own: touch nothing of it."""
    status = conflict_status(spec=spec, generation=body["metadata"].get("generation"),
                             old_status=body.get("status") or {}, now=now_rfc3339())
    _report_blocked(body, reason="ShadowConflict", status=status,
                    message=f"Deployment {shadow_name(spec.target_deployment)!r} exists and is not owned by this"
                    " DarkCluster; left untouched")
    return Outcome(reason="ShadowConflict", seen=seen)


def _target_missing(body: dict[str, Any], *, spec: DarkClusterSpec, current: dict[str, Any] | None,
                    pods: list[dict[str, Any]], seen: tuple[Any, ...], in_force: EffectiveGate) -> Outcome:
    """No target (never created, or deleted): nothing of the dark cluster may serve.

    Every dark pod's gate closes (at once: out of the endpoints) and the shadow scales to
    zero; it is kept, so a target that comes back gets its dark capacity with one write.
    """
    namespace = body["metadata"]["namespace"]
    written = _write_gates(namespace=namespace, pods=pods, gate=Gate.CLOSED.value)
    scaled = current is not None and (current.get("spec") or {}).get("replicas") != 0
    if scaled:
        assert current is not None
        kube.scale_deployment(namespace=namespace, name=current["metadata"]["name"], replicas=0,
                              uid=current["metadata"]["uid"])
        SHADOW_WRITES.labels("scale_to_zero").inc()
        _event(body, type_="Normal", reason="ShadowScaledToZero",
               message=f"{current['metadata']['name']} scaled to 0 and its gate closed: its target"
               f" {spec.target_deployment!r} is gone")
    if written or scaled:
        pods = kube.list_pods(namespace=namespace, label_selector=_selector(body["metadata"]["name"]))
    status = target_missing_status(spec=spec, generation=body["metadata"].get("generation"),
                                   old_status=body.get("status") or {}, pods=pods, now=now_rfc3339())
    _report_blocked(body, reason="TargetNotFound", status=status,
                    message=f"Deployment {spec.target_deployment!r} not found; nothing of the dark cluster serves"
                    " until it appears")
    _export(namespace=namespace, name=body["metadata"]["name"], status=status, opened_by=in_force.opened_by)
    return Outcome(reason="TargetNotFound", seen=seen)


def _report_blocked(body: dict[str, Any], *, reason: str, message: str, status: DarkClusterStatus) -> None:
    """A DarkCluster that cannot be acted on: a Warning Event when the reason is new, and status."""
    previous = find_condition((body.get("status") or {}).get("conditions"), "Ready")
    if not previous or previous.get("reason") != reason:
        _event(body, type_="Warning", reason=reason, message=message)
    _write_status(body, status)


def _write_status(body: dict[str, Any], status: DarkClusterStatus) -> bool:
    """Server-side apply of this controller's status fields, only when they changed; then tell :func:`on_status`."""
    desired = status.wire()
    meta = body["metadata"]
    if own_status(body.get("status") or {}).wire() == desired:
        STATUS_WRITES.labels("DarkCluster", "Unchanged").inc()
        _tell_status(body, desired)
        return False
    kube.apply_custom_status(plural=DARKCLUSTERS, kind="DarkCluster", namespace=meta["namespace"], name=meta["name"],
                             status=desired, field_manager=FIELD_MANAGER)
    STATUS_WRITES.labels("DarkCluster", "Written").inc()
    _tell_status(body, desired)
    return True


_written: dict[tuple[str, str], dict[str, Any]] = {}
"""(namespace, name) → the DarkCluster's status as this controller last wrote (or found) it, its own fields over the rest."""
_status_listeners: list[Callable[[str, str, Mapping[str, Any], Mapping[str, Any]], None]] = []


def on_status(listener: Callable[[str, str, Mapping[str, Any], Mapping[str, Any]], None]) -> None:
    """Call ``listener(namespace, name, metadata, status)`` after every status this controller writes or finds current.

    From the reconcile's thread, right after the write: the evacuation exports its region's
    dark capacity from it as it changes (:mod:`regionshift.controllers.regionfailover.progress`),
    instead of at the start of its next run. A listener must be quick and must not raise.
    """
    if listener not in _status_listeners:
        _status_listeners.append(listener)


def written_status(*, namespace: str, name: str) -> Mapping[str, Any] | None:
    """The DarkCluster's status as this controller last wrote (or found) it; None before its first run here.

    Never older than a status the API server returned before that write: the evacuation
    reads the capacity from it over a listed DarkCluster's status.
    """
    return _written.get((namespace, name))


def _tell_status(body: Mapping[str, Any], own: Mapping[str, Any]) -> None:
    meta = body["metadata"]
    status = {**(body.get("status") or {}), **own}
    _written[(meta["namespace"], meta["name"])] = status
    for listener in _status_listeners:
        try:
            listener(meta["namespace"], meta["name"], meta, status)
        except Exception:  # an observer's bug must not fail the reconcile that wrote the status
            log.exception("a DarkCluster status listener failed")


def _label_target(target: dict[str, Any]) -> None:
    """Label the target as shadowed, so that the operator's Deployment watch sees its changes."""
    patch = target_label_patch(target=target, shadowed=True)
    if patch is None:
        return
    meta = target["metadata"]
    kube.patch_deployment_labels(namespace=meta["namespace"], name=meta["name"], labels=patch)
    TARGET_LABEL_WRITES.labels("add").inc()


def release_target(*, namespace: str, target: str, leaving: str | None) -> None:
    """Remove the target label from a Deployment no DarkCluster (but ``leaving``) shadows any more."""
    try:
        others = [dc for dc in kube.list_custom(plural=DARKCLUSTERS, namespace=namespace)
                  if dc["metadata"]["name"] != leaving and not dc["metadata"].get("deletionTimestamp")
                  and (dc.get("spec") or {}).get("targetDeployment") == target]
        if others:
            return
        deployment = kube.read_deployment(namespace=namespace, name=target)
        patch = None if deployment is None else target_label_patch(target=deployment, shadowed=False)
        if patch is not None:
            kube.patch_deployment_labels(namespace=namespace, name=target, labels=patch)
            TARGET_LABEL_WRITES.labels("remove").inc()
    except (kube.ApiException, urllib3.exceptions.HTTPError) as exc:  # the next event or restart tries again
        log.info("could not release target %s/%s: %s", namespace, target, exc)


def _write_shadow(*, body: dict[str, Any], current: dict[str, Any] | None, desired: dict[str, Any]) -> bool:
    """Create or replace the shadow; False when its name turned out to be taken by someone else."""
    shadow = desired["metadata"]["name"]
    if current is None:
        try:
            kube.create_deployment(body=desired)
        except kube.ApiException as exc:
            if exc.status != 409:
                raise
            existing = kube.read_deployment(namespace=desired["metadata"]["namespace"], name=shadow)
            if existing is not None and not is_owned_by(existing, uid=body["metadata"]["uid"]):
                return False  # never adopt a Deployment regionshift did not create for this DarkCluster
            raise  # ours after all, or gone again: reconcile anew
        SHADOW_WRITES.labels("create").inc()
        _event(body, type_="Normal", reason="ShadowCreated",
               message=f"created {shadow} with {desired['spec']['replicas']} gated replica(s)")
        return True
    replacement = {
        **desired,
        "metadata": {**desired["metadata"], "resourceVersion": current["metadata"]["resourceVersion"]},
        "status": current.get("status") or {},
    }
    replacement["metadata"]["labels"] = {**(current["metadata"].get("labels") or {}), **desired["metadata"]["labels"]}
    kube.replace_deployment(body=replacement)  # a 409 (changed meanwhile) is retried by the daemon
    SHADOW_WRITES.labels("replace").inc()
    _event(body, type_="Normal", reason="ShadowUpdated",
           message=f"updated {shadow}: {desired['spec']['replicas']} replica(s), its target's pod template and rollout strategy")
    return True


def _delete_shadow(*, body: dict[str, Any], current: dict[str, Any]) -> None:
    """Delete a shadow whose (immutable) selector is not the one decided; its pods go by garbage collection."""
    shadow = current["metadata"]["name"]
    try:
        kube.delete_deployment(namespace=current["metadata"]["namespace"], name=shadow, uid=current["metadata"]["uid"])
    except kube.ApiException as exc:
        if exc.status != 404:
            raise  # 409: the uid precondition failed, someone replaced it meanwhile; reconcile anew
    SHADOW_WRITES.labels("delete").inc()
    _event(body, type_="Normal", reason="ShadowRecreated",
           message=f"deleted {shadow}: its selector must change (its target's selector changed, or an older regionshift"
                   " made it) and a selector cannot; creating it anew")


def _write_gates(*, namespace: str, pods: list[dict[str, Any]], gate: str) -> int:
    """Merge the gate's labels into every pod that disagrees, in parallel; return how many.

    Open adds each pod's serving labels (its target's pod labels), Closed removes them:
    one metadata merge patch per pod, retried with backoff and jitter on 409, 429 and 5xx.
    After a close, the budgets that counted the pods are asked to recount.
    """
    patches = gate_label_patches(pods=pods, gate=gate)

    def write(pod: str) -> bool:
        return _write_gate(namespace=namespace, pod=pod, labels=patches[pod], gate=gate) is not None

    if len(patches) <= 1:
        written = sum(write(pod) for pod in patches)
    else:
        with ThreadPoolExecutor(max_workers=min(GATE_WRITERS, len(patches)), thread_name_prefix="gate") as pool:
            written = sum(pool.map(write, patches))
    if written and gate == Gate.CLOSED.value:
        _recount_budgets(namespace=namespace, closed=[p for p in pods if p["metadata"]["name"] in patches])
    return written


def _write_gate(*, namespace: str, pod: str, labels: Mapping[str, str | None], gate: str) -> dict[str, Any] | None:
    """One pod's gate labels (retried on 409, 429, 5xx); the pod as written, None when it is gone. Remembers the write."""
    try:
        written = retries.call(lambda: kube.patch_pod_labels(namespace=namespace, name=pod, labels=labels),
                               what=f"gate of pod {namespace}/{pod}")
    except kube.ApiException as exc:
        if exc.status == 404:  # deleted meanwhile: nothing to gate
            return None
        raise
    version = (written.get("metadata") or {}).get("resourceVersion")
    if version:
        _remember_own_write(namespace=namespace, pod=pod, resource_version=version)
    GATE_WRITES.labels(gate).inc()
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


def _export(*, namespace: str, name: str, status: DarkClusterStatus, opened_by: tuple[str, ...]) -> None:
    DARK_CLUSTER_GATE_OPEN.labels(namespace, name, SPEC_HAND).set(1 if SPEC_HAND in opened_by else 0)
    by_evacuation = EffectiveGate(gate=Gate.OPEN if opened_by else Gate.CLOSED, opened_by=opened_by).by_evacuation
    DARK_CLUSTER_GATE_OPEN.labels(namespace, name, "evacuation").set(1 if by_evacuation else 0)
    DARK_CLUSTER_GATE_OPEN.labels(namespace, name, "effective").set(1 if status.effective_gate == Gate.OPEN.value else 0)
    DARK_REPLICAS.labels(namespace, name, "desired").set(status.desired_replicas or 0)
    DARK_REPLICAS.labels(namespace, name, "warm").set(status.warm_replicas or 0)
    DARK_REPLICAS.labels(namespace, name, "serving").set(status.ready_replicas or 0)
