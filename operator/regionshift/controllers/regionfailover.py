"""RegionFailover: read the signal, judge every region, size the dark clusters.

Two periodic tasks per RegionFailover, as in the talk:

* :func:`detect` (every ``signal.stepSeconds``): the recent signal of every region of the
  domain against its seasonal forecast, through :func:`regionshift.decide.detection.evaluate`,
  with this region's rollouts and warm dark capacity as guards; the verdicts go to status,
  a changed verdict to an Event. It writes nothing else (acting on a verdict is a later
  step of the flow).
* :func:`size` (every ``signal.refitIntervalSeconds``): one DarkCluster per participating
  Deployment (created if missing, owned by the RegionFailover), each sized by
  :func:`regionshift.decide.sizing.dark_replicas` from the scaling fit and the forecast peaks; the
  size and the fit go to the DarkCluster's status and the DarkCluster is reconciled.

Forecasts are refitted from Prometheus when ``refitIntervalSeconds`` have passed and kept in
memory as a cache; the history behind them is saved to a ConfigMap
(:mod:`regionshift.adapters.history_store`) so that with Prometheus down sizing goes on from the last
good history while detection pauses with a condition, and both recover by themselves.
Everything the next run needs to resume lives in the resource's status or that ConfigMap.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import kopf

from regionshift.adapters import kube
from regionshift.api.conditions import condition, now_rfc3339, set_condition
from regionshift.decide.darkcapacity import DARK_CLUSTER_LABEL
from regionshift.decide.detection import RegionVerdict, Sample, WarmCapacity, evaluate
from regionshift.errors import NoData, NotANumber, PrometheusUnavailable, QueryRejected, SignalError
from regionshift.decide.forecast import SeasonalForecast
from regionshift.adapters.history_store import History, configmap_name, decode, encode
from regionshift.metrics import DETECTIONS, SIZINGS, VERDICTS
from regionshift.api.models import API_GROUP, API_VERSION, DarkCapacityPolicy, Gate, RegionFailoverSpec, Verdict
from regionshift.adapters.prometheus import PrometheusClient
from regionshift.controllers.darkcluster import DARKCLUSTERS, reconcile_dark_cluster_named
from regionshift.decide.sizing import dark_replicas, fit_scaling

__all__ = ["REGIONFAILOVER_LABEL", "detect", "domain_status", "expand", "forget", "size", "tick"]

log = logging.getLogger(__name__)
REGIONFAILOVER_LABEL = "regionshift.io/regionfailover"
"""On the DarkClusters a RegionFailover created: its name."""
REGIONFAILOVERS = "regionfailovers"


@dataclass
class _Domain:
    """Per-RegionFailover cache of fitted forecasts and the histories behind them."""

    forecasts: dict[str, SeasonalForecast] = field(default_factory=dict)
    histories: dict[str, History] = field(default_factory=dict)
    fitted_at: float | None = None
    sized_at: float | None = None
    source: str = "none"


_domains: dict[str, _Domain] = {}


def forget(*, uid: str) -> None:
    """Drop the cache of a deleted RegionFailover."""
    _domains.pop(uid, None)


def expand(template: str, **values: str) -> str:
    """Fill ``{region}``-style placeholders in PromQL (whose own braces stay as they are)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)


def _regions(spec: RegionFailoverSpec) -> list[str]:
    return [spec.region, *(p.name for p in spec.peers)]


async def _client(*, spec: RegionFailoverSpec, namespace: str) -> PrometheusClient:
    token = None
    if spec.signal.bearer_token_secret:
        token = await asyncio.to_thread(
            kube.read_secret_value, namespace=namespace, name=spec.signal.bearer_token_secret, key="token"
        )
    return PrometheusClient(
        base_url=spec.signal.prometheus_url,
        timeout_seconds=spec.signal.timeout_seconds,
        retries=2,
        backoff_seconds=0.2,
        bearer_token=token,
        verify_tls=not spec.signal.insecure_skip_tls_verify,
    )


def _dense(samples: tuple[tuple[float, float], ...] | list[tuple[float, float]], *, step: float) -> History:
    start = samples[0][0]
    values = [math.nan] * (int(round((samples[-1][0] - start) / step)) + 1)
    for ts, value in samples:
        values[int(round((ts - start) / step))] = value
    return History(start=start, step_seconds=step, values=tuple(values))


async def _history(prom: PrometheusClient, query: str, *, now: float, days: int, step: float) -> History:
    # Half a day more than asked: the time-of-week slots next to "now" then rest on every week.
    series = await prom.range(query, start=_utc(now - (days + 0.5) * 86400), end=_utc(now), step_seconds=step)
    if len(series) != 1:
        raise QueryRejected(f"the query {query!r} yields {len(series)} series; aggregate it to one")
    return _dense(series[0].samples, step=step)


def _fit(
    histories: dict[str, History], regions: list[str], masked_from: dict[str, float]
) -> dict[str, SeasonalForecast]:
    """Fit every region's forecast, leaving out the samples of a drop under way (not normal)."""
    out = {}
    for region in regions:
        history = histories.get(f"signal/{region}")
        if history is None:
            continue
        timestamps = history.timestamps()
        values = [math.nan if t >= masked_from.get(region, math.inf) else v for t, v in zip(timestamps, history.values)]
        out[region] = SeasonalForecast.fit(timestamps=timestamps, values=values, step_seconds=history.step_seconds)
    return out


def _drops_under_way(status: dict[str, Any]) -> dict[str, float]:
    """Start of each region's current drop, from status: samples since then are not learnt."""
    out = {}
    for item in status.get("regions") or []:
        if item.get("dropStartedAt") and item.get("verdict") != Verdict.HEALTHY.value:
            out[item["name"]] = dt.datetime.fromisoformat(item["dropStartedAt"].replace("Z", "+00:00")).timestamp()
    return out


async def _refresh(
    *, body: dict[str, Any], spec: RegionFailoverSpec, prom: PrometheusClient, domain: _Domain, now: float,
    deployments: list[str],
) -> None:
    """Refit forecasts when due: from Prometheus, else from the ConfigMap cache."""
    if domain.fitted_at is not None and now - domain.fitted_at < spec.signal.refit_interval_seconds:
        return
    meta = body["metadata"]
    regions = _regions(spec)
    step = float(spec.signal.history_step_seconds)
    try:
        histories: dict[str, History] = {}
        for region in regions:
            histories[f"signal/{region}"] = await _history(
                prom, expand(spec.signal.query, region=region), now=now, days=spec.signal.history_days, step=step
            )
        for deployment in deployments:
            query = expand(spec.dark_capacity.replicas_query, namespace=meta["namespace"], deployment=deployment,
                           region=spec.region)
            try:
                histories[f"replicas/{deployment}"] = await _history(
                    prom, query, now=now, days=spec.signal.history_days, step=step
                )
            except NoData:
                log.info("no replica history for %s (%s)", deployment, query)
        source = "prometheus"
    except PrometheusUnavailable:
        if domain.forecasts:
            domain.source = f"the fit of {_utc(domain.fitted_at or 0):%Y-%m-%dT%H:%M:%SZ} (Prometheus unavailable)"
            raise
        data = await asyncio.to_thread(kube.read_configmap_data, namespace=meta["namespace"], name=configmap_name(meta["name"]))
        histories, saved_at = decode(data)
        if not histories:
            raise
        source = f"cache saved {_utc(saved_at or 0).strftime('%Y-%m-%dT%H:%M:%SZ')}"
    forecasts = await asyncio.to_thread(_fit, histories, regions, _drops_under_way(body.get("status") or {}))
    domain.forecasts, domain.histories, domain.fitted_at, domain.source = forecasts, histories, now, source
    if source == "prometheus":
        await asyncio.to_thread(_save_histories, body=body, histories=histories, now=now)


def _save_histories(*, body: dict[str, Any], histories: dict[str, History], now: float) -> None:
    meta = body["metadata"]
    kube.write_configmap(body={
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": configmap_name(meta["name"]),
            "namespace": meta["namespace"],
            "labels": {REGIONFAILOVER_LABEL: meta["name"], "app.kubernetes.io/managed-by": "regionshift"},
            "ownerReferences": [{"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "RegionFailover",
                                 "name": meta["name"], "uid": meta["uid"], "controller": True}],
        },
        "binaryData": encode(histories, saved_at=now),
    })


# ---------------------------------------------------------------------------- detection


def _previous(status: dict[str, Any]) -> dict[str, RegionVerdict]:
    def parse(text: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None

    out = {}
    for item in status.get("regions") or []:
        out[item["name"]] = RegionVerdict(
            region=item["name"], verdict=Verdict(item.get("verdict", "Unknown")), message="",
            unhealthy_since=parse(item.get("unhealthySince")), drop_started_at=parse(item.get("dropStartedAt")),
        )
    return out


def _last_rollout(*, namespace: str, spec: RegionFailoverSpec) -> dt.datetime | None:
    """The newest ReplicaSet among this region's participating Deployments: its last rollout."""
    selector = ",".join(f"{k}={v}" for k, v in spec.selector.match_labels.items())
    newest: dt.datetime | None = None
    for deployment in kube.list_deployments(namespace=namespace, label_selector=selector):
        if DARK_CLUSTER_LABEL in (deployment["metadata"].get("labels") or {}):
            continue
        match = deployment["spec"]["selector"].get("matchLabels") or {}
        for rs in kube.list_replicasets(namespace=namespace, label_selector=",".join(f"{k}={v}" for k, v in match.items())):
            owners = rs["metadata"].get("ownerReferences") or []
            if any(o.get("uid") == deployment["metadata"]["uid"] for o in owners):
                created = dt.datetime.fromisoformat(rs["metadata"]["creationTimestamp"].replace("Z", "+00:00"))
                newest = created if newest is None or created > newest else newest
    return newest


def _warm_capacity(*, namespace: str, name: str) -> WarmCapacity | None:
    owned = [dc for dc in kube.list_custom(plural=DARKCLUSTERS, namespace=namespace)
             if (dc["metadata"].get("labels") or {}).get(REGIONFAILOVER_LABEL) == name]
    if not owned:
        return None
    status = [dc.get("status") or {} for dc in owned]
    return WarmCapacity(warm=sum(s.get("warmReplicas") or 0 for s in status),
                        need=sum(s.get("desiredReplicas") or 0 for s in status))


def domain_status(
    *, verdicts: dict[str, RegionVerdict], old_status: dict[str, Any], detecting: dict[str, Any],
    generation: int | None, regions: list[str], intervals: dict[str, dict[str, float | None]] | None = None,
) -> dict[str, Any]:
    """The RegionFailover status for a set of verdicts (pure); ``intervals`` adds the forecast's bounds."""
    entries = []
    for region in regions:
        verdict = verdicts[region]
        entry = verdict.to_status().wire()
        entry["message"] = verdict.message
        entry.update({k: v for k, v in (intervals or {}).get(region, {}).items() if v is not None})
        if verdict.drop_started_at is not None:
            entry["dropStartedAt"] = verdict.drop_started_at.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        for key in ("actual", "expected", "expectedLower", "expectedUpper", "ratio"):
            if key in entry:
                entry[key] = round(entry[key], 4)
        entries.append(entry)
    return {
        "observedGeneration": generation,
        "phase": old_status.get("phase") or "Steady",
        "regions": entries,
        "unhealthy": [r for r in regions if verdicts[r].verdict == Verdict.UNHEALTHY],
        "heldBack": [r for r in regions if verdicts[r].verdict == Verdict.HELD_BACK],
        "conditions": set_condition(old_status.get("conditions"), detecting),
    }


async def _recent(prom: PrometheusClient, query: str, *, now: float, step: float, samples: int) -> list[tuple[float, float]]:
    try:
        series = await prom.range(query, start=_utc(now - step * samples), end=_utc(now), step_seconds=step)
    except NoData:
        return []
    if len(series) != 1:
        raise QueryRejected(f"the query {query!r} yields {len(series)} series; aggregate it to one")
    return [(ts, v) for ts, v in series[0].samples if math.isfinite(v)]


async def detect(*, body: dict[str, Any]) -> tuple[dict[str, RegionVerdict], dict[str, Any]]:
    """One detection run: the verdicts and the status to write; posts an Event per changed verdict."""
    meta = body["metadata"]
    spec = RegionFailoverSpec.model_validate(body["spec"])
    old_status = body.get("status") or {}
    domain = _domains.setdefault(meta["uid"], _Domain())
    regions = _regions(spec)
    now = time.time()
    step = float(spec.signal.step_seconds)
    window = spec.detection.consecutive_samples + 2
    recent: dict[str, list[tuple[float, float]]] = {}
    detecting = condition(type_="Detecting", status=True, reason="SignalRead", now=now_rfc3339(),
                          generation=meta.get("generation"), message="")
    try:
        async with await _client(spec=spec, namespace=meta["namespace"]) as prom:
            await _refresh(body=body, spec=spec, prom=prom, domain=domain, now=now, deployments=[])
            for region in regions:
                recent[region] = await _recent(prom, expand(spec.signal.query, region=region), now=now, step=step,
                                               samples=window)
        detecting["message"] = f"signal read from Prometheus; forecasts from {domain.source}"
    except PrometheusUnavailable as exc:
        detecting.update(status="False", reason="PrometheusUnavailable",
                         message=f"detection paused, never evacuating on no data: {exc}")
    except (QueryRejected, NotANumber, SignalError) as exc:
        detecting.update(status="False", reason=type(exc).__name__, message=str(exc))

    def expected(region: str, ts: float) -> float | None:
        forecast = domain.forecasts.get(region)
        return forecast.expected(at=ts).mean if forecast is not None else None

    samples = {r: [Sample(at=_utc(ts), actual=v, expected=expected(r, ts)) for ts, v in recent.get(r, [])]
               for r in regions}
    rollout = await asyncio.to_thread(_last_rollout, namespace=meta["namespace"], spec=spec)
    capacity = await asyncio.to_thread(_warm_capacity, namespace=meta["namespace"], name=meta["name"])
    verdicts = evaluate(
        samples=samples, policy=spec.detection, now=_utc(now), last_rollouts={spec.region: rollout},
        capacity={spec.region: capacity} if capacity is not None else {}, previous=_previous(old_status),
    )
    intervals = {}
    for region, verdict in verdicts.items():
        forecast = domain.forecasts.get(region)
        if forecast is not None and verdict.sampled_at is not None:
            expectation = forecast.expected(at=verdict.sampled_at.timestamp())
            intervals[region] = {"expectedLower": expectation.lower, "expectedUpper": expectation.upper}
    status = domain_status(verdicts=verdicts, old_status=old_status, detecting=detecting,
                           generation=meta.get("generation"), regions=regions, intervals=intervals)
    DETECTIONS.labels(detecting["reason"]).inc()
    was = next((c for c in old_status.get("conditions") or [] if c.get("type") == "Detecting"), {})
    if (was.get("status"), was.get("reason")) != (detecting["status"], detecting["reason"]):
        paused = detecting["status"] == "False"
        kopf.event(body, type="Warning" if paused else "Normal",
                   reason=f"Detection{'Paused' if paused else 'Running'}",
                   message=f"{detecting['reason']}: {detecting['message']}"[:1000])
    before = {item["name"]: item.get("verdict") for item in old_status.get("regions") or []}
    for region, verdict in verdicts.items():
        VERDICTS.labels(meta["namespace"], meta["name"], region).state(verdict.verdict.value)
        if before.get(region) != verdict.verdict.value:
            kopf.event(body, type="Warning" if verdict.verdict == Verdict.UNHEALTHY else "Normal",
                       reason=f"Region{verdict.verdict.value}", message=f"{region}: {verdict.message}")
    return verdicts, status


# ---------------------------------------------------------------------------- sizing


def _participants(*, namespace: str, spec: RegionFailoverSpec) -> list[dict[str, Any]]:
    selector = ",".join(f"{k}={v}" for k, v in spec.selector.match_labels.items())
    return [d for d in kube.list_deployments(namespace=namespace, label_selector=selector)
            if DARK_CLUSTER_LABEL not in (d["metadata"].get("labels") or {})]


def _ensure_dark_cluster(*, body: dict[str, Any], deployment: str, policy: DarkCapacityPolicy) -> None:
    meta = body["metadata"]
    kube.create_custom(plural=DARKCLUSTERS, body={
        "apiVersion": f"{API_GROUP}/{API_VERSION}",
        "kind": "DarkCluster",
        "metadata": {
            "name": deployment,
            "namespace": meta["namespace"],
            "labels": {REGIONFAILOVER_LABEL: meta["name"]},
            "ownerReferences": [{"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "RegionFailover",
                                 "name": meta["name"], "uid": meta["uid"], "controller": True,
                                 "blockOwnerDeletion": True}],
        },
        "spec": {
            "targetDeployment": deployment,
            "replicas": {"source": "Forecast", "minReplicas": policy.min_replicas, "maxReplicas": policy.max_replicas},
            "gate": Gate.CLOSED.value,
        },
    })


async def size(*, body: dict[str, Any]) -> dict[str, Any]:
    """Size every participating Deployment's DarkCluster; returns the Sizing condition."""
    meta = body["metadata"]
    namespace = meta["namespace"]
    spec = RegionFailoverSpec.model_validate(body["spec"])
    domain = _domains.setdefault(meta["uid"], _Domain())
    now = time.time()
    deployments = await asyncio.to_thread(_participants, namespace=namespace, spec=spec)
    names = [d["metadata"]["name"] for d in deployments]
    for name in names:
        await asyncio.to_thread(_ensure_dark_cluster, body=body, deployment=name, policy=spec.dark_capacity)
    domain.fitted_at = None if any(f"replicas/{n}" not in domain.histories for n in names) else domain.fitted_at
    latest: dict[str, float] = {}
    try:
        async with await _client(spec=spec, namespace=namespace) as prom:
            await _refresh(body=body, spec=spec, prom=prom, domain=domain, now=now, deployments=names)
            for peer in spec.peers:
                with_samples = await _recent(prom, expand(spec.signal.query, region=peer.name), now=now,
                                             step=float(spec.signal.step_seconds), samples=3)
                if with_samples:
                    latest[peer.name] = with_samples[-1][1]
    except PrometheusUnavailable:
        if not domain.forecasts:
            SIZINGS.labels("NoHistory").inc()
            return _sizing_condition(body=body, ok=False, reason="NoHistory",
                                     message="Prometheus unavailable and no cached history yet")
    horizon = float(spec.dark_capacity.horizon_seconds)
    step = float(spec.signal.history_step_seconds)

    def peak(region: str) -> float:
        forecast = domain.forecasts[region]
        predicted = forecast.predict(start=now, end=now + horizon, step_seconds=step).peak()
        return max(predicted, latest.get(region, 0.0))

    own = domain.forecasts.get(spec.region)
    peers = {p.name: peak(p.name) for p in spec.peers if p.name in domain.forecasts}
    messages = []
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        traffic = domain.histories.get(f"signal/{spec.region}")
        replicas = domain.histories.get(f"replicas/{name}")
        if own is None or traffic is None or replicas is None:
            messages.append(f"{name}: no history to fit")
            continue
        pairs = _align(traffic, replicas)
        fit = fit_scaling(traffic=[p[0] for p in pairs], replicas=[p[1] for p in pairs], fitted_at=_utc(now))
        sizing = dark_replicas(fit=fit, policy=spec.dark_capacity, own_peak=peak(spec.region), peer_peaks=peers,
                               share=1.0 / max(1, len(spec.peers)),
                               current_replicas=int(deployment["spec"].get("replicas") or 0))
        await asyncio.to_thread(
            kube.patch_custom_status, plural=DARKCLUSTERS, namespace=namespace, name=name,
            status={"forecastReplicas": sizing.forecast_replicas, "modelFit": fit.to_model().wire()},
        )
        await asyncio.to_thread(reconcile_dark_cluster_named, namespace=namespace, name=name)
        messages.append(f"{name}: {sizing.message}")
    SIZINGS.labels("Sized").inc()
    domain.sized_at = now
    return _sizing_condition(body=body, ok=True, reason="Sized",
                             message=f"forecasts from {domain.source}; " + "; ".join(messages))


def _align(traffic: History, replicas: History) -> list[tuple[float, float]]:
    by_time = {round(t): v for t, v in zip(replicas.timestamps(), replicas.values) if math.isfinite(v)}
    return [(v, by_time[round(t)]) for t, v in zip(traffic.timestamps(), traffic.values)
            if math.isfinite(v) and round(t) in by_time]


def _sizing_condition(*, body: dict[str, Any], ok: bool, reason: str, message: str) -> dict[str, Any]:
    return condition(type_="Sizing", status=ok, reason=reason, message=message[:1000], now=now_rfc3339(),
                     generation=body["metadata"].get("generation"))


async def tick(*, body: dict[str, Any]) -> dict[str, Any]:
    """One run of a RegionFailover's periodic tasks: detect, size when due, write status once."""
    meta = body["metadata"]
    spec = RegionFailoverSpec.model_validate(body["spec"])
    domain = _domains.setdefault(meta["uid"], _Domain())
    _, status = await detect(body=body)
    if domain.sized_at is None or time.time() - domain.sized_at >= spec.signal.refit_interval_seconds:
        try:
            sizing = await size(body=body)
        except SignalError as exc:
            sizing = _sizing_condition(body=body, ok=False, reason=type(exc).__name__, message=str(exc))
        status["conditions"] = set_condition(status["conditions"], sizing)
    status["lastEvaluatedAt"] = now_rfc3339()
    await asyncio.to_thread(
        kube.patch_custom_status, plural=REGIONFAILOVERS, namespace=meta["namespace"], name=meta["name"], status=status
    )
    return status
