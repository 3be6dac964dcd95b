"""One detection run of a RegionFailover: read, judge every region, write status. Never raises.

Every ``signal.stepSeconds`` the daemon calls :func:`detect`. It reads the recent signal of
every region and judges it against that region's forecast
(:func:`regionshift.decide.detection.evaluate`), with this region's last rollout and its
warm dark capacity as guards. Each part fails on its own and says so in a condition:

* the signal (``Detecting``): Prometheus down or the query rejected pauses detection, every
  verdict Unknown (never evacuate on no data);
* the guards (``GuardsKnown``): rollouts or dark capacity that cannot be read leave that
  guard out and say so, the verdicts still come;
* anything unexpected: ``Detecting=False`` with the error, verdicts Unknown.

Whatever happened, status is written (``lastEvaluatedAt`` included) under detection's own
field manager; a changed verdict or condition posts an Event. Detection never waits for
sizing: sizing runs as its own task (:mod:`.sizing`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

from regionshift.adapters import kube
from regionshift.adapters.prometheus import PrometheusClient
from regionshift.api.conditions import now_rfc3339
from regionshift.api.models import Condition, RegionFailoverSpec, RegionFailoverStatus, Verdict
from regionshift.controllers.darkcluster import DARKCLUSTERS
from regionshift.controllers.regionfailover import status as rf_status
from regionshift.controllers.regionfailover.domain import (
    Domain,
    expand,
    forecast_sources,
    prometheus_client,
    refresh_signal,
    regions,
    utc,
)
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL
from regionshift.decide.detection import RegionVerdict, Sample, WarmCapacity, evaluate, refit_excludes_since
from regionshift.errors import NoData, PrometheusUnavailable, QueryRejected, SignalError
from regionshift.metrics import (
    DETECTIONS,
    REGION_EVIDENCE_SAMPLES,
    REGION_EXPECTED,
    REGION_SHARE_RATIO,
    REGION_SIGNAL,
    VERDICT_REASONS,
    VERDICTS,
)

__all__ = ["detect", "drops_under_way", "last_rollout", "owned_by", "participants"]

log = logging.getLogger(__name__)
REVISION_ANNOTATION = "deployment.kubernetes.io/revision"
EVENTS = {"Detecting": ("DetectionRunning", "DetectionPaused"), "GuardsKnown": ("GuardsKnown", "GuardsUnknown")}


def owned_by(obj: Mapping[str, Any], uid: str) -> bool:
    """Whether ``obj`` carries an owner reference to the object ``uid``."""
    return any(o.get("uid") == uid for o in obj.get("metadata", {}).get("ownerReferences") or [])


def drops_under_way(status: Mapping[str, Any]) -> dict[str, float]:
    """Start of each region's current drop, from status: samples since then are not learnt.

    Which drops count is detection's word (:func:`regionshift.decide.detection.refit_excludes_since`):
    Unhealthy and HeldBack ones; not one that turned Unknown because the forecast no longer fits,
    whose samples the refit must learn.
    """
    out = {}
    for item in status.get("regions") or []:
        started = item.get("dropStartedAt")
        excluded = refit_excludes_since(
            verdict=item.get("verdict", Verdict.UNKNOWN.value), held_back_by=item.get("heldBackBy"),
            drop_started_at=dt.datetime.fromisoformat(started.replace("Z", "+00:00")) if started else None)
        if excluded is not None:
            out[item["name"]] = excluded.timestamp()
    return out


def _selector(spec: RegionFailoverSpec) -> str:
    """The RegionFailover's selector, and no shadow: a shadow carries its target's labels and the DarkCluster label."""
    return ",".join([*(f"{k}={v}" for k, v in spec.selector.match_labels.items()), f"!{DARK_CLUSTER_LABEL}"])


def participants(*, namespace: str, spec: RegionFailoverSpec) -> list[dict[str, Any]]:
    """The Deployments the selector picks, shadows left out by the API server (half the answer to parse; blocking)."""
    return [d for d in kube.list_deployments(namespace=namespace, label_selector=_selector(spec))
            if DARK_CLUSTER_LABEL not in (d["metadata"].get("labels") or {})]


def last_rollout(
    *, namespace: str, deployments: list[dict[str, Any]], memo: dict[str, tuple[str, float | None]]
) -> dt.datetime | None:
    """The creation time of the newest ReplicaSet among the Deployments: this region's last rollout.

    ``memo`` keeps, per Deployment uid, its revision and newest ReplicaSet time, so
    ReplicaSets are listed only for Deployments whose revision changed: an idle domain
    costs no list (blocking).
    """
    current = {d["metadata"]["uid"]: d for d in deployments}
    changed = [d for uid, d in current.items()
               if uid not in memo or memo[uid][0] != (d["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, "")]
    if changed:
        if len(changed) > 3:
            replicasets = kube.list_replicasets(namespace=namespace)
        else:
            replicasets = [rs for d in changed for rs in kube.list_replicasets(
                namespace=namespace,
                label_selector=",".join(f"{k}={v}" for k, v in (d["spec"]["selector"].get("matchLabels") or {}).items()))]
        # By owner first: matching every changed Deployment against every ReplicaSet was 500 x 500
        # owner checks at the first run, a quarter of a second of one thread holding the GIL.
        created: dict[str, list[str]] = {}
        for rs in replicasets:
            for owner in (rs.get("metadata") or {}).get("ownerReferences") or []:
                created.setdefault(str(owner.get("uid")), []).append(rs["metadata"]["creationTimestamp"])
        for deployment in changed:
            uid = deployment["metadata"]["uid"]
            times = [dt.datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() for stamp in created.get(uid, [])]
            memo[uid] = ((deployment["metadata"].get("annotations") or {}).get(REVISION_ANNOTATION, ""),
                         max(times) if times else None)
    for uid in set(memo) - set(current):
        del memo[uid]
    newest = max((t for _, t in memo.values() if t is not None), default=None)
    return utc(newest) if newest is not None else None


def _warm_capacity(*, namespace: str, uid: str) -> WarmCapacity | None:
    owned = [dc for dc in kube.list_custom(plural=DARKCLUSTERS, namespace=namespace) if owned_by(dc, uid)]
    if not owned:
        return None
    status = [dc.get("status") or {} for dc in owned]
    return WarmCapacity(warm=sum(s.get("warmReplicas") or 0 for s in status),
                        need=sum(s.get("desiredReplicas") or 0 for s in status))


async def _recent(prom: PrometheusClient, query: str, *, now: float, step: float, samples: int) -> list[tuple[float, float]]:
    try:
        series = await prom.range(query, start=utc(now - step * samples), end=utc(now), step_seconds=step)
    except NoData:
        return []
    if len(series) != 1:
        raise QueryRejected(f"the query {query!r} yields {len(series)} series; aggregate it to one")
    return [(ts, v) for ts, v in series[0].samples if math.isfinite(v)]


async def _read_signal(
    *, body: Mapping[str, Any], spec: RegionFailoverSpec, domain: Domain, now: float
) -> tuple[dict[str, list[tuple[float, float]]], tuple[bool, str, str]]:
    """Recent samples per region and the Detecting condition's (ok, reason, message)."""
    meta = body["metadata"]
    recent: dict[str, list[tuple[float, float]]] = {}
    step = float(spec.signal.step_seconds)
    window = max(spec.detection.consecutive_samples + 2, spec.detection.evidence_window_samples + 1)
    names = regions(spec)
    try:
        async with await prometheus_client(spec=spec, namespace=meta["namespace"]) as prom:
            await refresh_signal(domain=domain, spec=spec, prom=prom, namespace=meta["namespace"], name=meta["name"],
                                 now=now, drops=drops_under_way(body.get("status") or {}))
            for region in names:
                recent[region] = await _recent(prom, expand(spec.signal.query, region=region), now=now, step=step,
                                               samples=window)
    except PrometheusUnavailable as exc:
        return {}, (False, "PrometheusUnavailable", f"detection paused, never evacuating on no data: {exc}")
    except SignalError as exc:
        return {}, (False, type(exc).__name__, str(exc))
    except Exception as exc:  # a Secret we may not read, anything unexpected: a condition, not a crash
        log.exception("reading the signal of %s/%s failed", meta["namespace"], meta["name"])
        reason, message = rf_status.describe(exc)
        return {}, (False, reason, f"detection paused: {message}")
    return recent, (True, "SignalRead", f"signal read from Prometheus; forecasts: {forecast_sources(domain, names)}")


async def _guards(
    *, body: Mapping[str, Any], spec: RegionFailoverSpec, domain: Domain
) -> tuple[dt.datetime | None, WarmCapacity | None, tuple[bool, str, str]]:
    """This region's last rollout and warm capacity, and the GuardsKnown condition."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    problems: list[tuple[str, str]] = []
    rollout = capacity = None
    try:
        deployments = await asyncio.to_thread(participants, namespace=namespace, spec=spec)
        domain.participants = frozenset(d["metadata"]["name"] for d in deployments)
        rollout = await asyncio.to_thread(last_rollout, namespace=namespace, deployments=deployments,
                                          memo=domain.rollouts)
    except Exception as exc:
        reason, message = rf_status.describe(exc)
        problems.append(("RolloutsUnreadable", f"rollouts unreadable, the RecentRollout guard is off: {message}"))
    try:
        capacity = await asyncio.to_thread(_warm_capacity, namespace=namespace, uid=meta["uid"])
    except Exception as exc:
        reason, message = rf_status.describe(exc)
        problems.append(("CapacityUnreadable", f"dark capacity unreadable, the SaviorsNotWarm guard is off: {message}"))
    if problems:
        return rollout, capacity, (False, problems[0][0], "; ".join(m for _, m in problems))
    return rollout, capacity, (True, "Read", "rollouts and dark capacity read")


def _judge(
    *, spec: RegionFailoverSpec, names: list[str], recent: Mapping[str, list[tuple[float, float]]],
    forecasts: Mapping[str, Any], now: float, rollout: dt.datetime | None, capacity: WarmCapacity | None,
    previous: Any,
) -> tuple[dict[str, RegionVerdict], dict[str, dict[str, float]]]:
    """Each region's verdict, and the expected interval at its last sample (pure; run in a thread).

    Every recent sample is compared with its forecast's expectation, a computation over the
    seasonal forecasts of every region: on the event loop, a py-spy dump caught it holding the
    loop in a 673 ms stall of the scale benchmark (on a machine loaded far beyond its cores).
    """

    def expected(region: str, ts: float) -> float | None:
        forecast = forecasts.get(region)
        return forecast.expected(at=ts).mean if forecast is not None else None

    samples = {r: [Sample(at=utc(ts), actual=v, expected=expected(r, ts)) for ts, v in recent.get(r, [])]
               for r in names}
    verdicts = evaluate(
        samples=samples, policy=spec.detection, now=utc(now), last_rollouts={spec.region: rollout},
        capacity={spec.region: capacity} if capacity is not None else {}, previous=previous,
        step_seconds=float(spec.signal.step_seconds),
    )
    intervals = {}
    for region, verdict in verdicts.items():
        forecast = forecasts.get(region)
        if forecast is not None and verdict.sampled_at is not None:
            expectation = forecast.expected(at=verdict.sampled_at.timestamp())
            intervals[region] = {"expectedLower": expectation.lower, "expectedUpper": expectation.upper}
    return verdicts, intervals


async def detect(*, body: Mapping[str, Any], domain: Domain) -> None:
    """One detection run; writes status whatever happens, never raises."""
    meta = body["metadata"]
    now = time.time()
    evaluated_at = now_rfc3339()
    old_status = body.get("status") or {}
    generation = meta.get("generation")
    try:
        spec = RegionFailoverSpec.model_validate(body["spec"])
    except Exception as exc:  # the CRD schema should have refused it; say so rather than stop
        cond = rf_status.make_condition(type_="Detecting", ok=False, reason="InvalidSpec", message=str(exc),
                                        now=evaluated_at, generation=generation, old=old_status.get("conditions"))
        await _finish(body=body, status=RegionFailoverStatus(
            observed_generation=generation, last_evaluated_at=evaluated_at, conditions=[cond]), old=old_status)
        return
    names = regions(spec)
    guards = (False, "NotRead", "the detection run failed before the guards were read")
    try:
        (recent, signal), (rollout, capacity, guards) = await asyncio.gather(
            _read_signal(body=body, spec=spec, domain=domain, now=now), _guards(body=body, spec=spec, domain=domain))
        forecasts = {r: domain.forecasts[r].forecast for r in names if r in domain.forecasts}
        # The forecasts' expectations for every recent sample: computing, so off the event loop.
        verdicts, intervals = await asyncio.to_thread(
            _judge, spec=spec, names=names, recent=recent, forecasts=forecasts, now=now, rollout=rollout,
            capacity=capacity, previous=rf_status.previous_verdicts(old_status))
    except Exception as exc:  # a bug or a surprise: report it, keep the loop and the status alive
        log.exception("detection run of %s/%s failed", meta["namespace"], meta["name"])
        reason, message = rf_status.describe(exc)
        signal = (False, "InternalError", f"{reason}: {message}")
        verdicts = {r: RegionVerdict(region=r, verdict=Verdict.UNKNOWN, message=f"not evaluated: {message}")
                    for r in names}
        intervals = {}
    domain.latest = {r: v.actual for r, v in verdicts.items() if v.actual is not None}
    notes = {r: e.note for r, e in domain.forecasts.items() if e.forecast is None and e.note}
    conditions = [
        rf_status.make_condition(type_="Detecting", ok=signal[0], reason=signal[1], message=signal[2],
                                 now=evaluated_at, generation=generation, old=old_status.get("conditions")),
        rf_status.make_condition(type_="GuardsKnown", ok=guards[0], reason=guards[1], message=guards[2],
                                 now=evaluated_at, generation=generation, old=old_status.get("conditions")),
    ]
    status = rf_status.detection_status(
        verdicts=verdicts, regions=names, conditions=conditions, generation=generation, evaluated_at=evaluated_at,
        intervals=intervals, notes=notes)
    DETECTIONS.labels(signal[1]).inc()
    for region, verdict in verdicts.items():
        VERDICTS.labels(meta["namespace"], meta["name"], region).state(verdict.verdict.value)
        VERDICT_REASONS.labels(verdict.verdict.value, _reason(verdict)).inc()
        REGION_SIGNAL.labels(meta["namespace"], meta["name"], region).set(
            verdict.actual if verdict.actual is not None else math.nan)
        REGION_EXPECTED.labels(meta["namespace"], meta["name"], region).set(
            verdict.expected if verdict.expected is not None else math.nan)
        REGION_SHARE_RATIO.labels(meta["namespace"], meta["name"], region).set(
            verdict.share_ratio if verdict.share_ratio is not None else math.nan)
        REGION_EVIDENCE_SAMPLES.labels(meta["namespace"], meta["name"], region).set(
            verdict.evidence_samples if verdict.evidence_samples is not None else math.nan)
    await _finish(body=body, status=status, old=old_status)
    before = {item["name"]: item.get("verdict") for item in old_status.get("regions") or []}
    for region, verdict in verdicts.items():
        if before.get(region) != verdict.verdict.value:
            await rf_status.post(body=body, type_="Warning" if verdict.verdict == Verdict.UNHEALTHY else "Normal",
                                 reason=f"Region{verdict.verdict.value}", message=f"{region}: {verdict.message}")


def _reason(verdict: RegionVerdict) -> str:
    """The deciding reason of a verdict, for the verdicts counter."""
    if verdict.held_back_by is not None:
        return verdict.held_back_by.value
    if verdict.verdict is Verdict.UNHEALTHY:
        return "Regional" if verdict.regional else "Uncompared"
    return "None"


async def _finish(*, body: Mapping[str, Any], status: RegionFailoverStatus, old: Mapping[str, Any]) -> None:
    await rf_status.write(body=body, status=status, manager=rf_status.DETECTION_MANAGER)
    new: list[Condition] = list(status.conditions)
    await rf_status.post_transitions(body=body, old=old.get("conditions"), new=new, events_for=EVENTS)
