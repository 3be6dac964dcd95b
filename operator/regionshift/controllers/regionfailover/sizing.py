"""One sizing run of a RegionFailover: DarkClusters in line, each sized from data. Never raises.

The daemon runs :func:`size` as a task of its own, every ``refitIntervalSeconds`` and at once
when the spec or the set of participating Deployments changes, so detection never waits for
it. A run:

1. lists the participants and brings the DarkClusters in line (:mod:`.children`);
2. refreshes the forecasts (when due) and each participant's replica history, only what is
   new (:mod:`.domain`); with Prometheus down, from memory or the ConfigMap cache;
3. fits and sizes every participant in one worker thread shared by all RegionFailovers (one
   sizing at a time, off the event loop), within :data:`SIZING_BUDGET_SECONDS`: those not
   reached are deferred to a run that follows at once
   (:func:`regionshift.decide.sizing.plan_sizing`);
4. writes each owned DarkCluster's ``forecastReplicas`` and ``modelFit`` by server-side apply
   under the ``regionshift-sizing`` field manager, only when they changed;
5. saves the histories to the ConfigMap cache and writes the ``Sizing`` and
   ``DarkClustersSynced`` conditions (:mod:`.status`).

One participant that cannot be sized (no replica history, a DarkCluster the API server
refuses, a name another owner took) is a line in the condition and an Event; the others
are sized. The run's duration is observed in ``regionshift_sizing_duration_seconds``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from regionshift.adapters import kube
from regionshift.api.conditions import now_rfc3339
from regionshift.api.models import DarkClusterStatus, RegionFailoverSpec, RegionFailoverStatus
from regionshift.controllers import darkcluster
from regionshift.controllers.darkcluster import DARKCLUSTERS
from regionshift.controllers.regionfailover import status as rf_status
from regionshift.controllers.regionfailover.children import Children, Problem, sync_children
from regionshift.controllers.regionfailover.detection import participants as list_participants
from regionshift.controllers.regionfailover.detection import drops_under_way
from regionshift.controllers.regionfailover.domain import (
    Domain,
    forecast_sources,
    prometheus_client,
    refresh_replicas,
    refresh_signal,
    save_histories,
    utc,
)
from regionshift.decide.sizing import DarkSizing, ScalingFit, SizingPlan, SizingTarget, plan_sizing
from regionshift.errors import PrometheusUnavailable, SignalError
from regionshift.metrics import SIZING_SECONDS, SIZINGS

__all__ = ["SIZING_BUDGET_SECONDS", "size"]

log = logging.getLogger(__name__)

SIZING_BUDGET_SECONDS = 20.0
"""Longest one sizing run fits for; the Deployments it did not reach go first in the next run."""
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="regionshift-sizing")
"""One sizing fit at a time for the whole operator, off the event loop."""
MAX_EVENTS_PER_RUN = 10
"""Events about single Deployments (or their DarkClusters) per kind and run; more are summed up in one."""
EVENTS = {"Sizing": ("Sized", "SizingFailed"), "DarkClustersSynced": ("DarkClustersSynced", "DarkClustersNotSynced")}


def _same_fit(status: Mapping[str, Any], sizing: DarkSizing, fit: ScalingFit) -> bool:
    """Whether a DarkCluster's status already says this (its fit time aside)."""
    old = status.get("modelFit") or {}
    new = fit.to_model()

    def close(a: Any, b: float) -> bool:
        return isinstance(a, (int, float)) and math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-9)

    return (status.get("forecastReplicas") == sizing.forecast_replicas and old.get("samples") == new.samples
            and close(old.get("intercept"), new.intercept)
            and close(old.get("slopeReplicasPerUnit"), new.slope_replicas_per_unit)
            and close(old.get("rSquared"), new.r_squared) and old.get("method") == new.method)


def _write_dark_status(*, namespace: str, name: str, sizing: DarkSizing, fit: ScalingFit) -> None:
    status = DarkClusterStatus(forecast_replicas=sizing.forecast_replicas, model_fit=fit.to_model())
    kube.apply_custom_status(
        plural=DARKCLUSTERS, kind="DarkCluster", namespace=namespace, name=name, field_manager="regionshift-sizing",
        status=status.model_dump(by_alias=True, exclude_unset=True, exclude_none=True, mode="json"),
    )


async def _wake(*, namespace: str, name: str) -> None:
    """Tell the DarkCluster's own reconcile that its forecast changed.

    The DarkCluster controller is the one writer of its shadow; sizing never reconciles it
    itself. Should no daemon run for it yet, its first run reads the new size anyway.
    """
    darkcluster.wake(namespace=namespace, name=name, cause="sizing")


def _peaks(domain: Domain, spec: RegionFailoverSpec, now: float) -> tuple[float | None, dict[str, float]]:
    horizon = float(spec.dark_capacity.horizon_seconds)
    step = float(spec.signal.history_step_seconds)

    def peak(region: str) -> float | None:
        entry = domain.forecasts.get(region)
        if entry is None or entry.forecast is None:
            return None
        predicted = entry.forecast.predict(start=now, end=now + horizon, step_seconds=step).peak()
        return max(predicted, domain.latest.get(region, 0.0))

    peers = {p.name: value for p in spec.peers if (value := peak(p.name)) is not None}
    return peak(spec.region), peers


def _order(names: list[str], deferred: tuple[str, ...]) -> list[str]:
    first = [n for n in deferred if n in names]
    return first + [n for n in names if n not in first]


async def size(*, body: Mapping[str, Any], domain: Domain) -> None:
    """One sizing run; writes the Sizing conditions whatever happens, never raises."""
    began = time.monotonic()
    domain.retry_soon = False
    try:
        await _size(body=body, domain=domain)
    except Exception as exc:  # a surprise: report it; the next run tries again soon
        domain.retry_soon = True
        log.exception("sizing run of %s/%s failed", body["metadata"]["namespace"], body["metadata"]["name"])
        reason, message = rf_status.describe(exc)
        await _report(body=body, sizing=(False, "InternalError", f"{reason}: {message}"), synced=None)
    finally:
        SIZING_SECONDS.observe(time.monotonic() - began)


async def _size(*, body: Mapping[str, Any], domain: Domain) -> None:
    meta = body["metadata"]
    namespace, generation = meta["namespace"], meta.get("generation")
    spec = RegionFailoverSpec.model_validate(body["spec"])
    now = time.time()
    try:
        deployments = await asyncio.to_thread(list_participants, namespace=namespace, spec=spec)
        names = sorted(d["metadata"]["name"] for d in deployments)
        children = await asyncio.to_thread(sync_children, owner=body, participants=names, policy=spec.dark_capacity)
    except Exception as exc:
        domain.retry_soon = True
        reason, message = rf_status.describe(exc)
        SIZINGS.labels(reason).inc()
        await _report(body=body, sizing=(False, reason, f"participants or DarkClusters unreadable: {message}"),
                      synced=(False, reason, message))
        return
    domain.sized = (generation, frozenset(names))
    await _children_events(body=body, children=children)
    sizable = [n for n in names if n in children.owned]
    problems: dict[str, str] = {n: f"{p.reason}: {p.message}" for n, p in children.problems.items()}
    unavailable = ""
    try:
        async with await prometheus_client(spec=spec, namespace=namespace) as prom:
            await refresh_signal(domain=domain, spec=spec, prom=prom, namespace=namespace, name=meta["name"],
                                 now=now, drops=drops_under_way(body.get("status") or {}))
            fetched = await refresh_replicas(domain=domain, spec=spec, prom=prom, namespace=namespace,
                                             deployments=sizable, now=now)
            problems.update({name: f"NoReplicaHistory: {problem}" for name, problem in fetched.items()})
    except PrometheusUnavailable as exc:
        unavailable = f"Prometheus unavailable, sizing from what was fetched before ({exc})"
    except SignalError as exc:
        SIZINGS.labels(type(exc).__name__).inc()
        await _report(body=body, sizing=(False, type(exc).__name__, str(exc)), synced=_synced(children))
        return

    traffic = domain.series.get(f"signal/{spec.region}")
    own_peak, peer_peaks = await asyncio.to_thread(_peaks, domain, spec, now)  # forecasts over the horizon: off the loop
    if traffic is None or own_peak is None:
        reason = "NoHistory"
        why = (domain.forecasts[spec.region].note if spec.region in domain.forecasts
               and domain.forecasts[spec.region].note else "no history of this region's signal yet")
        SIZINGS.labels(reason).inc()
        await _report(body=body, sizing=(False, reason, f"{why}{'; ' + unavailable if unavailable else ''}"),
                      synced=_synced(children))
        return
    current = {d["metadata"]["name"]: int(d["spec"].get("replicas") or 0) for d in deployments}
    targets = [SizingTarget(name=n, replicas=domain.series[f"replicas/{n}"].history, current_replicas=current[n])
               for n in _order(sizable, domain.sizing_cursor) if f"replicas/{n}" in domain.series]
    for n in sizable:
        if f"replicas/{n}" not in domain.series and n not in problems:
            problems[n] = "NoReplicaHistory: no replica history fetched yet"
    loop = asyncio.get_running_loop()
    plan: SizingPlan = await loop.run_in_executor(_executor, lambda: plan_sizing(
        targets=targets, traffic=traffic.history, policy=spec.dark_capacity, own_peak=own_peak,
        peer_peaks=peer_peaks, share=1.0 / max(1, len(spec.peers)), fitted_at=utc(now),
        deadline=time.monotonic() + SIZING_BUDGET_SECONDS, clock=time.monotonic))
    domain.sizing_cursor = plan.deferred
    if plan.deferred:
        domain.wake.set()  # go on with the rest at once, after detection had its turn
    for name, why in plan.failed.items():
        problems[name] = f"TooLittleHistory: {why}"
    lines = []
    for name, (fit, sizing) in plan.sized.items():
        dc = children.owned[name]
        try:
            if not _same_fit(dc.get("status") or {}, sizing, fit):
                await asyncio.to_thread(_write_dark_status, namespace=namespace, name=name, sizing=sizing, fit=fit)
                await _wake(namespace=namespace, name=name)
            lines.append(f"{name}: {sizing.message}")
        except Exception as exc:
            reason, message = rf_status.describe(exc)
            problems[name] = f"StatusNotWritten: {message}"
    if not unavailable:
        try:
            await asyncio.to_thread(save_histories, body=body, domain=domain, now=now)
        except Exception as exc:
            reason, message = rf_status.describe(exc)
            lines.append(f"history cache not saved: {message}")
    await _problem_events(body=body, domain=domain, problems=problems)
    sources = f"forecasts: {forecast_sources(domain, [spec.region, *peer_peaks])}"
    if unavailable:
        sources += f" ({unavailable})"
    deferred = f"{len(plan.deferred)} deferred to the next run (time budget {SIZING_BUDGET_SECONDS:g} s); " \
        if plan.deferred else ""
    failed = "; ".join(f"{n}: {p}" for n, p in sorted(problems.items()))
    if not problems and not plan.deferred:
        outcome = (True, "Sized" if names else "NoParticipants",
                   f"{sources}; " + ("; ".join(lines) if names else "no Deployment matches the selector"))
    else:
        reason = "PartlySized" if plan.sized else "NotSized"
        outcome = (False, reason, f"{len(plan.sized)} of {len(names)} sized; {deferred}{failed}; {sources}; "
                   + "; ".join(lines))
    SIZINGS.labels(outcome[1]).inc()
    await _report(body=body, sizing=outcome, synced=_synced(children))


def _synced(children: Children) -> tuple[bool, str, str]:
    if not children.problems:
        done = [f"{verb} {', '.join(names)}" for verb, names in
                (("created", children.created), ("updated", children.updated), ("removed", children.removed)) if names]
        return True, "InSync", f"{len(children.owned)} DarkCluster(s) in line" + (f"; {'; '.join(done)}" if done else "")
    first: Problem = next(iter(children.problems.values()))
    return False, first.reason, "; ".join(f"{n}: {p.message}" for n, p in sorted(children.problems.items()))


async def _report(*, body: Mapping[str, Any], sizing: tuple[bool, str, str], synced: tuple[bool, str, str] | None) -> None:
    meta = body["metadata"]
    old = (body.get("status") or {}).get("conditions")
    now = now_rfc3339()
    conditions = [rf_status.make_condition(type_="Sizing", ok=sizing[0], reason=sizing[1], message=sizing[2], now=now,
                                           generation=meta.get("generation"), old=old)]
    if synced is not None:
        conditions.append(rf_status.make_condition(type_="DarkClustersSynced", ok=synced[0], reason=synced[1],
                                                   message=synced[2], now=now, generation=meta.get("generation"),
                                                   old=old))
    await rf_status.write(body=body, status=RegionFailoverStatus(conditions=conditions), manager=rf_status.SIZING_MANAGER)
    await rf_status.post_transitions(body=body, old=old, new=conditions, events_for=EVENTS)


async def _children_events(*, body: Mapping[str, Any], children: Children) -> None:
    """An Event per DarkCluster created, updated or removed, at most a few per kind and run.

    A new RegionFailover over 500 Deployments creates 500 DarkClusters in one run: 500 Events
    about it would be 500 more writes to the API server in the busiest minute, and no more
    readable than one that names the first few and counts the rest.
    """
    kinds = (
        (children.created, "DarkClusterCreated", "created DarkCluster {}", "created {} more DarkClusters"),
        (children.updated, "DarkClusterUpdated", "DarkCluster {} follows the darkCapacity policy's min/max",
         "{} more DarkClusters follow the darkCapacity policy's min/max"),
        (children.removed, "DarkClusterRemoved", "removed DarkCluster {}: its Deployment left the selector",
         "removed {} more DarkClusters: their Deployments left the selector"),
    )
    for names, reason, one, more in kinds:
        for name in names[:MAX_EVENTS_PER_RUN]:
            await rf_status.post(body=body, type_="Normal", reason=reason, message=one.format(name))
        if len(names) > MAX_EVENTS_PER_RUN:
            await rf_status.post(body=body, type_="Normal", reason=reason,
                                 message=more.format(len(names) - MAX_EVENTS_PER_RUN))


async def _problem_events(*, body: Mapping[str, Any], domain: Domain, problems: Mapping[str, str]) -> None:
    """A Warning Event per participant whose problem is new (not every run), at most a few per run."""
    now = {name: text.split(":", 1)[0] for name, text in problems.items()}
    new = sorted(name for name, reason in now.items() if domain.sizing_problems.get(name) != reason)
    for name in new[:MAX_EVENTS_PER_RUN]:
        await rf_status.post(body=body, type_="Warning", reason=now[name], message=f"{name}: {problems[name]}")
    if len(new) > MAX_EVENTS_PER_RUN:
        await rf_status.post(body=body, type_="Warning", reason="SizingFailed",
                             message=f"{len(new) - MAX_EVENTS_PER_RUN} more Deployments cannot be sized; see the"
                             " Sizing condition")
    domain.sizing_problems = now
