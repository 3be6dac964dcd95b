"""Evacuation metrics: what a RegionFailover's status says, as Prometheus series.

The evacuation state machine (:mod:`regionshift.decide.evacuation`) keeps everything in the
RegionFailover's status; this module turns that status into gauges an SRE can graph and
alert on, and counts what happened between two statuses. It reads models and sets metrics,
nothing else (no API calls), so the handler calls it after each step:

* :func:`record_status` after every status write: the domain's phase, each region's phase,
  role and share, the weights of every route and whether they hold, the recommended and
  deferred evacuations. Series of a route or region that left the status are removed, so
  nothing stale lingers (a route taken out of ``spec.traffic`` stops being reported).
* :func:`record_progress` with the status before and after a step: the milestones the step
  reached (:func:`record_stage`), the evacuations it started and every transition.
* :func:`record_action` once per action carried out, with its result.
* :func:`record_dark_capacity` with this region's DarkClusters: dark replicas ready and gated.
* :func:`forget` when the RegionFailover goes: every series it had is removed.

The metrics themselves are declared in :mod:`regionshift.metrics`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Protocol

from prometheus_client import Counter, Enum, Gauge

from regionshift.api.models import (
    Actor,
    EvacuationTimeline,
    Phase,
    RegionFailoverStatus,
    Role,
    TrafficProviderKind,
    Transition,
)
from regionshift.metrics import (
    ACTION_KINDS,
    ACTION_RESULTS,
    EVACUATION_ACTIONS,
    EVACUATION_DARK_REPLICAS,
    EVACUATION_DEFERRED,
    EVACUATION_PHASE,
    EVACUATION_RECOMMENDED,
    EVACUATION_SHARE,
    EVACUATION_STAGE_SECONDS,
    EVACUATION_STAGES,
    EVACUATION_TRANSITIONS,
    EVACUATIONS,
    REGION_ROLE,
    REGIONFAILOVER_PHASE,
    ROUTE_CONFLICT,
    ROUTE_HOLDS,
    ROUTE_WEIGHT,
)

__all__ = [
    "DarkClusterCounts",
    "forget",
    "record_action",
    "record_dark_capacity",
    "record_progress",
    "record_stage",
    "record_status",
]

Labels = tuple[str, ...]
Metric = Gauge | Enum | Counter

_lock = threading.Lock()
_series: dict[tuple[str, str], dict[str, set[Labels]]] = {}
"""Label sets this module set, per RegionFailover (namespace, name) and metric name."""


class DarkClusterCounts(Protocol):
    """What :func:`record_dark_capacity` reads of a DarkCluster (e.g. evacuation.DarkClusterObservation)."""

    @property
    def warm(self) -> int: ...

    @property
    def ready(self) -> int: ...


def _sync(metric: Gauge | Enum, *, owner: tuple[str, str], values: Mapping[Labels, float | str]) -> None:
    """Set ``values`` (full label tuples, owner first) and remove the owner's other series of ``metric``."""
    key = metric._name  # noqa: SLF001 (prometheus_client keeps the name there; it is stable)
    for labels, value in values.items():
        child = metric.labels(*labels)
        if isinstance(metric, Enum):
            child.state(str(value))
        else:
            child.set(float(value))
    with _lock:
        seen = _series.setdefault(owner, {})
        gone = seen.get(key, set()) - set(values)
        seen[key] = set(values)
    for labels in gone:
        _remove(metric, labels)


def _remove(metric: Metric, labels: Labels) -> None:
    try:
        metric.remove(*labels)
    except KeyError:  # already gone (e.g. cleared by a test)
        pass


def _note(metric: Counter, *, owner: tuple[str, str], labels: Labels) -> None:
    """Remember a counter's label set, so :func:`forget` removes it with the RegionFailover."""
    with _lock:
        _series.setdefault(owner, {}).setdefault(metric._name, set()).add(labels)  # noqa: SLF001


def _phase_of(status: RegionFailoverStatus) -> Phase:
    if status.phase is not None:
        return Phase(status.phase)
    phases = {Phase(e.phase) for e in status.evacuations}
    return next((p for p in (Phase.EVACUATING, Phase.FAILING_BACK, Phase.EVACUATED) if p in phases), Phase.STEADY)


def _regions(status: RegionFailoverStatus) -> list[str]:
    """Every region the status knows: those detection judges, those evacuated, those with a role."""
    names = {r.name for r in status.regions} | {e.region for e in status.evacuations} | set(status.roles or {})
    return sorted(names)


def record_status(*, namespace: str, name: str, status: RegionFailoverStatus) -> None:
    """Set every evacuation gauge of one RegionFailover from its status; drop series that left it."""
    owner = (namespace, name)
    evacs = {e.region: e for e in status.evacuations}
    roles = status.roles or {}
    regions = _regions(status)
    _sync(REGIONFAILOVER_PHASE, owner=owner, values={owner: _phase_of(status).value})
    _sync(EVACUATION_PHASE, owner=owner, values={
        (*owner, r): Phase(evacs[r].phase).value if r in evacs else Phase.STEADY.value for r in regions})
    _sync(REGION_ROLE, owner=owner, values={
        (*owner, r): Role(roles.get(r, Role.EVACUATED if r in evacs else Role.SERVING)).value for r in regions})
    _sync(EVACUATION_SHARE, owner=owner, values={
        (*owner, r): evacs[r].share if r in evacs else 1.0 for r in regions})
    recommended = set(status.recommendation.regions if status.recommendation else ())
    recommended |= set(status.plan.regions if status.plan else ())
    deferred = set(status.deferred or {})
    # 0 for every other region: a dashboard or an alert then sees "no" rather than no series.
    _sync(EVACUATION_RECOMMENDED, owner=owner, values={
        (*owner, r): 1.0 if r in recommended else 0.0 for r in sorted(set(regions) | recommended)})
    _sync(EVACUATION_DEFERRED, owner=owner, values={
        (*owner, r): 1.0 if r in deferred else 0.0 for r in sorted(set(regions) | deferred)})
    weights: dict[Labels, float] = {}
    holds: dict[Labels, float] = {}
    conflict: dict[Labels, float] = {}
    for route in status.weights:
        key = (*owner, TrafficProviderKind(route.provider).value, route.route)
        holds[key] = 1.0 if route.holds else 0.0
        conflict[key] = 1.0 if route.conflict else 0.0
        for region, weight in (route.current or {}).items():
            weights[(*key, region)] = float(weight)
    _sync(ROUTE_WEIGHT, owner=owner, values=weights)
    _sync(ROUTE_HOLDS, owner=owner, values=holds)
    _sync(ROUTE_CONFLICT, owner=owner, values=conflict)


def record_dark_capacity(*, namespace: str, name: str, dark_clusters: Iterable[DarkClusterCounts]) -> None:
    """This region's dark replicas in the domain: ready (ungated, serving) and gated (warm, not serving)."""
    owner = (namespace, name)
    ready = warm = 0
    for dc in dark_clusters:
        ready += dc.ready
        warm += dc.warm
    _sync(EVACUATION_DARK_REPLICAS, owner=owner,
          values={(*owner, "ready"): ready, (*owner, "gated"): max(warm - ready, 0)})


def record_action(*, kind: str, result: str) -> None:
    """Count one action of the state machine by kind (OpenGates, SetWeights, ...) and result (Done, Failed, Skipped)."""
    if kind not in ACTION_KINDS:
        raise ValueError(f"unknown action kind {kind!r}: one of {', '.join(ACTION_KINDS)}")
    if result not in ACTION_RESULTS:
        raise ValueError(f"unknown action result {result!r}: one of {', '.join(ACTION_RESULTS)}")
    EVACUATION_ACTIONS.labels(kind, result).inc()


def record_stage(*, stage: str, seconds: float) -> None:
    """Observe the seconds from an evacuation's decision to one of its milestones."""
    if stage not in EVACUATION_STAGES:
        raise ValueError(f"unknown stage {stage!r}: one of {', '.join(EVACUATION_STAGES)}")
    EVACUATION_STAGE_SECONDS.labels(stage).observe(max(float(seconds), 0.0))


def _reached(before: EvacuationTimeline | None, after: EvacuationTimeline) -> list[tuple[str, float]]:
    """Milestones set (or, for a new failback attempt, set anew) in ``after`` since ``before``."""
    out = []
    for stage in EVACUATION_STAGES:
        at = getattr(after, f"{stage}_at")
        seconds = getattr(after, f"{stage}_after_seconds")
        if at is None or seconds is None:
            continue
        if before is None or getattr(before, f"{stage}_at") != at:
            out.append((stage, float(seconds)))
    return out


def _same_evacuation(a: EvacuationTimeline | None, b: EvacuationTimeline | None) -> bool:
    return a is not None and b is not None and (a.region, a.decided_at) == (b.region, b.decided_at)


def _key(t: Transition) -> tuple[str, ...]:
    return (t.region, Phase(t.from_phase).value, Phase(t.to_phase).value, Actor(t.actor).value, t.at, t.reason)


def record_progress(*, namespace: str, name: str, before: RegionFailoverStatus, after: RegionFailoverStatus) -> None:
    """Count what one step did: milestones reached, evacuations started, transitions made.

    Call it once the step's status is written, with the status the step started from: a step
    repeated after a crash (the same ``before``) counts again only if its write had failed.
    """
    owner = (namespace, name)
    old = {e.region: e.timeline for e in before.evacuations}
    for evac in after.evacuations:
        previous = old.get(evac.region)
        for stage, seconds in _reached(previous if _same_evacuation(previous, evac.timeline) else None,
                                       evac.timeline):
            record_stage(stage=stage, seconds=seconds)
    last, earlier = after.last_evacuation, before.last_evacuation
    if last is not None and (earlier is None or not _same_evacuation(earlier, last)
                             or earlier.failback_done_at != last.failback_done_at):
        # An evacuation ended in this step: its timeline moved from evacuations to lastEvacuation.
        previous = old.get(last.region)
        for stage, seconds in _reached(previous if _same_evacuation(previous, last) else None, last):
            record_stage(stage=stage, seconds=seconds)
    seen = {_key(t) for t in before.history}
    for transition in after.history:
        key = _key(transition)
        if key in seen:
            continue
        labels = (*owner, key[1], key[2], key[3])
        EVACUATION_TRANSITIONS.labels(*labels).inc()
        _note(EVACUATION_TRANSITIONS, owner=owner, labels=labels)
        if key[1] == Phase.STEADY.value and key[2] == Phase.EVACUATING.value:
            EVACUATIONS.labels(*owner, key[3]).inc()
            _note(EVACUATIONS, owner=owner, labels=(*owner, key[3]))


def forget(*, namespace: str, name: str) -> None:
    """Remove every series of one RegionFailover (it was deleted, or this operator stopped serving it)."""
    with _lock:
        seen = _series.pop((namespace, name), {})
    metrics: dict[str, Metric] = {m._name: m for m in (  # noqa: SLF001
        REGIONFAILOVER_PHASE, EVACUATION_PHASE, REGION_ROLE, EVACUATION_SHARE, EVACUATION_RECOMMENDED,
        EVACUATION_DEFERRED, EVACUATION_DARK_REPLICAS, ROUTE_WEIGHT, ROUTE_HOLDS, ROUTE_CONFLICT,
        EVACUATIONS, EVACUATION_TRANSITIONS)}
    for metric_name, label_sets in seen.items():
        for labels in label_sets:
            _remove(metrics[metric_name], labels)
