"""What the operator keeps in memory per RegionFailover: histories, forecasts, and their refresh.

Detection needs a forecast per region; sizing needs the region's traffic history and each
participating Deployment's replica history. All of it comes from Prometheus and is kept here,
one :class:`Domain` per RegionFailover (by uid), released when the RegionFailover goes.

The cache is keyed by what it depends on. Each series (``signal/<region>``,
``replicas/<deployment>``) carries its :class:`~regionshift.decide.history.SeriesKey` (the
filled-in query, the history step, the window): a changed query, step or window is another
series, fetched whole at once; a new peer is a new series, fetched at once. An unchanged
series is refreshed every ``refitIntervalSeconds`` with only what is new
(:func:`~regionshift.decide.history.fetch_window` and :func:`~regionshift.decide.history.merge`).

A region whose history spans less than a day, or whose query matches nothing, gets no
forecast and a note saying why (its verdict is then Unknown) while the others keep theirs.
With Prometheus down, forecasts fall back to the ConfigMap cache
(:mod:`regionshift.adapters.history_store`) and report its save time as their fit time.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from regionshift.adapters import kube
from regionshift.adapters.history_store import configmap_name, decode, encode
from regionshift.adapters.prometheus import PrometheusClient
from regionshift.api.models import API_GROUP, API_VERSION, PROMETHEUS_TOKEN_LABEL, RegionFailoverSpec
from regionshift.decide.calendar import Calendar, calendar_of
from regionshift.decide.forecast import SeasonalForecast
from regionshift.decide.history import DAY_SECONDS, History, SeriesKey, fetch_window, finite_span_seconds, merge
from regionshift.errors import NoData, NotANumber, PrometheusUnavailable, QueryRejected

__all__ = [
    "REGIONFAILOVER_LABEL",
    "REPLICAS_STEP_SECONDS",
    "Domain",
    "RegionForecast",
    "Series",
    "domain_of",
    "expand",
    "forecast_sources",
    "calendars",
    "forget",
    "load_fallback",
    "prometheus_client",
    "refresh_replicas",
    "refresh_signal",
    "regions",
    "replicas_key",
    "rfc3339",
    "save_histories",
    "signal_key",
    "utc",
]

log = logging.getLogger(__name__)

REGIONFAILOVER_LABEL = "regionshift.io/regionfailover"
"""On the DarkClusters and the ConfigMap a RegionFailover created: its name."""
FETCH_CONCURRENCY = 8
"""Replica-history queries in flight at once for one RegionFailover."""
REPLICAS_STEP_SECONDS = 300.0
"""Coarsest grid step of a replica history: fetched at the larger of this and ``historyStepSeconds``.

Sizing regresses a Deployment's replicas on the region's signal, which
:func:`~regionshift.decide.history.align` first averages to the replica history's step. An
autoscaler changes a replica count every few minutes at most (the HPA waits 5 minutes
before scaling down), so five-minute points lose nothing the fit uses, and fourteen days
are 4,176 points instead of 20,880: a fifth of the JSON to decode while the event loop
waits for the GIL, and of the memory held (the ConfigMap cache keeps 5 minutes too).
The signal's own history, which the forecast needs at its native step, keeps
``historyStepSeconds``."""


@dataclass(frozen=True, kw_only=True)
class Series:
    """One history and what it was fetched for."""

    key: SeriesKey
    history: History
    fetched_at: float
    """When it was last refreshed (unix seconds); for a cached series, the cache's save time."""
    cached: bool = False
    """Read back from the ConfigMap (downsampled), not fetched from Prometheus."""


@dataclass(frozen=True, kw_only=True)
class RegionForecast:
    """One region's forecast (None when there is none) and where it came from."""

    key: SeriesKey
    fitted_at: float
    """Time of the data it was fitted on: now for a fresh fetch, the save time for the cache."""
    forecast: SeasonalForecast | None
    source: str
    """``Prometheus`` or ``the cache saved <time>``."""
    note: str = ""
    """Why there is no forecast (forecast None)."""


@dataclass
class Domain:
    """Per-RegionFailover memory. Nothing here is state: a restarted operator rebuilds it."""

    series: dict[str, Series] = field(default_factory=dict)
    forecasts: dict[str, RegionForecast] = field(default_factory=dict)
    latest: dict[str, float] = field(default_factory=dict)
    """Latest signal sample per region, from the last detection run."""
    participants: frozenset[str] | None = None
    """Participating Deployments seen by the last detection run."""
    rollouts: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    """Deployment uid → (its revision annotation, creation time of its newest ReplicaSet)."""
    sized: tuple[int | None, frozenset[str]] | None = None
    """(generation, participants) of the last sizing run."""
    sizing_problems: dict[str, str] = field(default_factory=dict)
    """Deployment → reason of its last sizing failure, so an Event is posted once per new failure."""
    sizing_cursor: tuple[str, ...] = ()
    """Deployments deferred by the last sizing run's time budget: sized first next time."""
    fallback_tried_at: float | None = None
    saved_at: float | None = None
    """When the histories were last saved to the ConfigMap cache."""
    retry_soon: bool = False
    """The last sizing run could not even list what to size: the next comes after a short wait."""
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Wakes the sizing task (the spec or the participants changed)."""
    evacuation_wake: asyncio.Event = field(default_factory=asyncio.Event)
    """Wakes the evacuation task (detection wrote new verdicts)."""
    route_book: Any = None
    """The traffic providers of the RegionFailover (a :class:`.routes.RouteBook`), rebuilt when its routes change."""
    route_book_key: str | None = None
    last_run_error: str | None = None
    """The last evacuation run's unexpected error, so its Event is posted once, not every second."""
    refresh_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def nbytes(self) -> int:
        """Memory held by the histories."""
        return sum(s.history.nbytes for s in self.series.values())


_domains: dict[str, Domain] = {}


def domain_of(*, uid: str) -> Domain:
    """The memory of one RegionFailover (created empty on first use)."""
    return _domains.setdefault(uid, Domain())


def forget(*, uid: str) -> None:
    """Release everything kept for a RegionFailover (deleted, or its daemon stopped)."""
    _domains.pop(uid, None)


def expand(template: str, **values: str) -> str:
    """Fill ``{region}``-style placeholders in PromQL (whose own braces stay as they are)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


def utc(ts: float) -> dt.datetime:
    """A unix time as an aware UTC datetime."""
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc)


def rfc3339(ts: float) -> str:
    """A unix time as Kubernetes writes times."""
    return utc(ts).strftime("%Y-%m-%dT%H:%M:%SZ")


def regions(spec: RegionFailoverSpec) -> list[str]:
    """This region first, then the peers."""
    return [spec.region, *(p.name for p in spec.peers)]


def _window(spec: RegionFailoverSpec) -> float:
    # Half a day more than asked: the time-of-week slots next to "now" then rest on every week.
    return (spec.signal.history_days + 0.5) * DAY_SECONDS


def signal_key(spec: RegionFailoverSpec, region: str) -> SeriesKey:
    """What a region's signal history depends on."""
    return SeriesKey(query=expand(spec.signal.query, region=region),
                     step_seconds=float(spec.signal.history_step_seconds), window_seconds=_window(spec))


def replicas_key(spec: RegionFailoverSpec, *, namespace: str, deployment: str) -> SeriesKey:
    """What a Deployment's replica history depends on."""
    query = expand(spec.dark_capacity.replicas_query, namespace=namespace, deployment=deployment, region=spec.region)
    step = max(float(spec.signal.history_step_seconds), REPLICAS_STEP_SECONDS)
    return SeriesKey(query=query, step_seconds=step, window_seconds=_window(spec))


async def prometheus_client(*, spec: RegionFailoverSpec, namespace: str) -> PrometheusClient:
    """A client for the RegionFailover's Prometheus (its bearer token read from the Secret).

    The token comes only from a Secret labelled :data:`PROMETHEUS_TOKEN_LABEL`: ``"true"``; any
    other raises :class:`~regionshift.errors.TokenSecretNotOptedIn` before a client exists, so
    a RegionFailover cannot have another Secret's token sent to a URL of its writer's choosing.
    """
    token = None
    if spec.signal.bearer_token_secret:
        token = await asyncio.to_thread(
            kube.read_secret_value, namespace=namespace, name=spec.signal.bearer_token_secret, key="token",
            opt_in_label=PROMETHEUS_TOKEN_LABEL,
        )
    # Built in a thread: the first client for an https URL loads the CA bundle (see prometheus.py).
    return await asyncio.to_thread(
        PrometheusClient,
        base_url=spec.signal.prometheus_url,
        timeout_seconds=spec.signal.timeout_seconds,
        retries=2,
        backoff_seconds=0.2,
        bearer_token=token,
        verify_tls=not spec.signal.insecure_skip_tls_verify,
    )


def _merged(history: History | None, points: np.ndarray, *, now: float, key: SeriesKey) -> History:
    """The history with new (time, value) points merged in (CPU work for weeks of samples: run in a thread)."""
    return merge(history, points, now=now, step_seconds=key.step_seconds, window_seconds=key.window_seconds)


async def _fetch(prom: PrometheusClient, domain: Domain, *, name: str, key: SeriesKey, now: float) -> History:
    """Refresh one series: only what is new when its key is unchanged, else the whole window."""
    current = domain.series.get(name)
    history = current.history if current is not None and current.key == key and not current.cached else None
    start, end = fetch_window(history, now=now, step_seconds=key.step_seconds, window_seconds=key.window_seconds)
    try:
        points = await prom.range_points(key.query, start=utc(start), end=utc(end), step_seconds=key.step_seconds)
    except NoData:
        if history is None:
            raise
        points = np.empty((0, 2))
    merged = await asyncio.to_thread(_merged, history, points, now=now, key=key)
    if not np.isfinite(merged.values).any():
        raise NoData(f"the query {key.query!r} has no samples in the last {key.window_seconds / DAY_SECONDS:.1f} days")
    domain.series[name] = Series(key=key, history=merged, fetched_at=now)
    return merged


def _fit_one(history: History, held_out_from: float | None, calendar: Calendar) -> SeasonalForecast:
    """Fit one region's forecast in its local time, holding out a drop under way (not normal)."""
    span = finite_span_seconds(history)
    if span < DAY_SECONDS:
        raise NoData(f"only {span / 3600:.1f} h of history; a forecast needs at least a day")
    return SeasonalForecast.fit(timestamps=history.timestamps(), values=history.values.astype(np.float64),
                                step_seconds=history.step_seconds, calendar=calendar, held_out_from=held_out_from)


def calendars(spec: RegionFailoverSpec, *, now: float) -> dict[str, Calendar | str]:
    """Each region's calendar (this region's ``spec.calendar``, each peer's own), or why it has none."""
    declared = {spec.region: spec.calendar, **{p.name: p.calendar for p in spec.peers}}
    out: dict[str, Calendar | str] = {}
    for region, calendar in declared.items():
        try:
            out[region] = calendar_of(calendar, now=now, history_seconds=_window(spec))
        except ValueError as exc:  # a country or subdivision the holidays library does not know
            out[region] = f"calendar of {region}: {exc}"
    return out


def _fit_all(
    histories: Mapping[str, History], held_out: Mapping[str, float],
    region_calendars: Mapping[str, Calendar | str] | None = None,
) -> dict[str, SeasonalForecast | str]:
    region_calendars = region_calendars or {}
    out: dict[str, SeasonalForecast | str] = {}
    for region, history in histories.items():
        calendar = region_calendars.get(region, Calendar())
        if isinstance(calendar, str):
            out[region] = calendar
            continue
        try:
            out[region] = _fit_one(history, held_out.get(region), calendar)
        except (NoData, ValueError) as exc:
            out[region] = str(exc)
    return out


def _due(entry: RegionForecast | None, *, key: SeriesKey, now: float, interval: float) -> bool:
    return entry is None or entry.key != key or now - entry.fitted_at >= interval


async def refresh_signal(
    *, domain: Domain, spec: RegionFailoverSpec, prom: PrometheusClient, namespace: str, name: str,
    now: float, drops: Mapping[str, float],
) -> None:
    """Refit the forecast of every region whose key changed or whose fit is a refit interval old.

    Each region's forecast is fitted in its own time zone with its calendar days
    (:func:`calendars`); ``drops`` holds, per region, the start of a drop detection still
    treats as a possible outage: its samples are held out of the refit
    (``held_out_from`` of :meth:`~regionshift.decide.forecast.SeasonalForecast.fit`).

    Regions that left the domain are forgotten. A region whose query matches nothing or whose
    history is too short gets a note instead of a forecast; the others go on. Raises
    :class:`PrometheusUnavailable` (after falling back to the ConfigMap for regions without
    any forecast) and :class:`QueryRejected` (the query is the user's to fix).
    """
    wanted = {region: signal_key(spec, region) for region in regions(spec)}
    for region in set(domain.forecasts) - set(wanted):
        domain.forecasts.pop(region, None)
    for series in [s for s in domain.series if s.startswith("signal/") and s[len("signal/"):] not in wanted]:
        domain.series.pop(series, None)
    interval = float(spec.signal.refit_interval_seconds)

    def due() -> list[str]:
        return [r for r, key in wanted.items() if _due(domain.forecasts.get(r), key=key, now=now, interval=interval)]

    if not due():
        return
    async with domain.refresh_lock:  # detection and sizing may both find a refit due: one does it
        fetched: dict[str, History] = {}
        try:
            for region in due():
                try:
                    fetched[region] = await _fetch(prom, domain, name=f"signal/{region}", key=wanted[region], now=now)
                except (NoData, NotANumber) as exc:
                    domain.forecasts[region] = RegionForecast(key=wanted[region], fitted_at=now, forecast=None,
                                                              source="Prometheus", note=str(exc))
        except PrometheusUnavailable:
            await load_fallback(domain=domain, spec=spec, namespace=namespace, name=name, now=now)
            raise
        finally:
            if fetched:
                # In a thread with the fits: the first use of a country's holidays computes them.
                fits = await asyncio.to_thread(lambda: _fit_all(fetched, drops, calendars(spec, now=now)))
                for region, fit in fits.items():
                    domain.forecasts[region] = RegionForecast(
                        key=wanted[region], fitted_at=now, source="Prometheus",
                        forecast=fit if isinstance(fit, SeasonalForecast) else None,
                        note=fit if isinstance(fit, str) else "",
                    )


async def refresh_replicas(
    *, domain: Domain, spec: RegionFailoverSpec, prom: PrometheusClient, namespace: str,
    deployments: Iterable[str], now: float,
) -> dict[str, str]:
    """Refresh the replica history of each Deployment that is due; returns Deployment → problem.

    Up to :data:`FETCH_CONCURRENCY` queries are in flight at once. Histories of Deployments
    no longer listed are released. Raises :class:`PrometheusUnavailable` when Prometheus did
    not answer for some Deployment (the others' answers are kept).
    """
    names = list(deployments)
    keep = {f"replicas/{d}" for d in names}
    for series in [s for s in domain.series if s.startswith("replicas/") and s not in keep]:
        domain.series.pop(series, None)
    interval = float(spec.signal.refit_interval_seconds)
    problems: dict[str, str] = {}
    slots = asyncio.Semaphore(FETCH_CONCURRENCY)

    async def one(deployment: str) -> None:
        key = replicas_key(spec, namespace=namespace, deployment=deployment)
        current = domain.series.get(f"replicas/{deployment}")
        if current is not None and current.key == key and not current.cached and now - current.fetched_at < interval:
            return
        async with slots:
            try:
                await _fetch(prom, domain, name=f"replicas/{deployment}", key=key, now=now)
            except (NoData, NotANumber, QueryRejected) as exc:
                domain.series.pop(f"replicas/{deployment}", None)
                problems[deployment] = f"{type(exc).__name__}: {exc}"

    outcomes = await asyncio.gather(*(one(d) for d in names), return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return problems


async def load_fallback(*, domain: Domain, spec: RegionFailoverSpec, namespace: str, name: str, now: float) -> None:
    """With Prometheus down, take the ConfigMap's histories for what memory lacks.

    Read at most once a refit interval. Forecasts fitted from it carry the cache's save time
    as their fit time, and say so in their source.
    """
    interval = float(spec.signal.refit_interval_seconds)
    if domain.fallback_tried_at is not None and now - domain.fallback_tried_at < interval:
        return
    domain.fallback_tried_at = now
    queries = {f"signal/{r}": signal_key(spec, r).query for r in regions(spec)}
    data = await asyncio.to_thread(kube.read_configmap_data, namespace=namespace, name=configmap_name(name))
    histories, saved_at = decode(data, queries=queries)
    if not histories or saved_at is None:
        return
    source = f"the cache saved {rfc3339(saved_at)}"
    window = _window(spec)
    for series_name, history in histories.items():
        if series_name not in domain.series:
            domain.series[series_name] = Series(
                key=SeriesKey(query=queries.get(series_name, ""), step_seconds=history.step_seconds,
                              window_seconds=window),
                history=history, fetched_at=saved_at, cached=True,
            )
    missing = {r: histories[f"signal/{r}"] for r in regions(spec)
               if f"signal/{r}" in histories and (domain.forecasts.get(r) is None or domain.forecasts[r].forecast is None)}
    fits = await asyncio.to_thread(lambda: _fit_all(missing, {}, calendars(spec, now=now)))
    for region, fit in fits.items():
        domain.forecasts[region] = RegionForecast(
            key=signal_key(spec, region), fitted_at=saved_at, source=source,
            forecast=fit if isinstance(fit, SeasonalForecast) else None, note=fit if isinstance(fit, str) else "",
        )


def save_histories(*, body: Mapping[str, Any], domain: Domain, now: float) -> None:
    """Save the histories fetched from Prometheus to the ConfigMap cache, if any is new (blocking)."""
    meta = body["metadata"]
    fresh = {n: s for n, s in domain.series.items() if not s.cached}
    if not fresh or (domain.saved_at is not None and all(s.fetched_at <= domain.saved_at for s in fresh.values())):
        return  # nothing fetched since the last save
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
        "binaryData": encode({n: s.history for n, s in fresh.items()}, saved_at=now,
                             queries={n: s.key.query for n, s in fresh.items()}),
    })
    domain.saved_at = now


def forecast_sources(domain: Domain, region_names: Iterable[str]) -> str:
    """Where the forecasts come from, for a condition message."""
    sources: dict[str, list[str]] = {}
    for region in region_names:
        entry = domain.forecasts.get(region)
        if entry is None or entry.forecast is None:
            continue
        label = "Prometheus" if entry.source == "Prometheus" else entry.source
        sources.setdefault(f"{label}, fitted {rfc3339(entry.fitted_at)}" if label == "Prometheus" else label,
                           []).append(region)
    if not sources:
        return "no forecast yet"
    return "; ".join(f"{', '.join(r)} from {s}" for s, r in sources.items())
