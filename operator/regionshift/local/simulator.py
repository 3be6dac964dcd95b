"""The drill's traffic simulator: what each region's users demand, and what each region serves.

A drill needs a business signal that answers to what the operators do, or it proves nothing:
when a region's pods fail its signal must fall, and when regionshift ungates dark pods and
shifts weights the saviors' signal must rise by what they take over. This module produces
that signal from the live objects of each local region, the way real traffic would:

1. **Demand.** Each region's users start streams at a rate that follows a daily shape in the
   region's local time (:class:`DemandCurve`), with counting noise that is over-dispersed
   (gamma-Poisson) and has occasional bursts, so detection faces noise no easier than real
   traffic. The day's phase is relative to the start of the run, never the wall clock's hour.
2. **DNS.** A region's users resolve to their own region while its weighted record
   (external-dns ``DNSEndpoint``, ``aws/weight``) is above 0; when it is 0 they resolve to the
   other regions in proportion to their records' weights (every record at 0 counts as equal
   weights, as Route 53 answers).
3. **Gateway.** At the region they reach, the service's HTTPRoute splits them over the local
   Service and the peers' Services by backendRef weight (a route whose weights are all 0
   serves nothing). Traffic sent to a peer is served by the peer's pods (one hop).
4. **Pods.** A region serves what reaches it up to ``Ready endpoints × pod capacity`` per
   service, counting the Ready endpoints of the Service's EndpointSlices, so ungated dark
   pods add capacity the moment the endpoints controller adds them. A fault injected
   through the simulator (:meth:`TrafficSimulator.impair`) cuts a region's capacity by a
   fraction; a fault injected through the cluster (pods turned not Ready) shows up here by
   itself.

Steps 2 to 4 are the pure function :func:`flow` over plain data (:class:`RegionView`, read
from each cluster with three LISTs per tick by :class:`RegionReader`), unit-tested without a
cluster. :class:`TrafficSimulator` ticks them on a thread and exports, per region, on its own
``/metrics`` (loopback only), for the shared Prometheus to scrape:

* ``regionshift_drill_demanded_sps{region}``: stream starts per second its users demand;
* ``regionshift_drill_served_sps{region}``: stream starts per second its pods serve (the
  business signal a RegionFailover's query reads);
* ``regionshift_drill_expected_sps{region}``: the noise-free demand curve;
* ``regionshift_drill_ready_endpoints{region}``: Ready endpoints over the services;
* ``regionshift_drill_demanded_total`` / ``regionshift_drill_served_total`` ``{region}``:
  stream starts so far, so that the stream starts lost over an outage are
  ``demanded - served`` summed over the regions.
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from regionshift.adapters.traffic.base import conventional_backends
from regionshift.adapters.traffic.externaldns import region_weight
from regionshift.adapters.traffic.gatewayapi import managed_rule_weights
from regionshift.adapters.traffic.peers import PEER_LABEL
from regionshift.errors import TrafficError

__all__ = [
    "DemandCurve",
    "Flow",
    "RegionReader",
    "RegionView",
    "TrafficSimulator",
    "dns_weights_of",
    "flow",
    "ready_endpoints_of",
    "route_weights_of",
]

log = logging.getLogger(__name__)

HOUR = 3600.0
DAY = 24 * HOUR


@dataclass(frozen=True, kw_only=True)
class DemandCurve:
    """One region's demand: a daily shape in local time, with over-dispersed, bursty noise.

    The noise-free rate is ``peak_sps`` at ``peak_hour`` local time and ``trough_fraction ×
    peak_sps`` twelve hours away, on a raised cosine. ``start_local_hour`` is the local hour
    at the run's ``start`` (an epoch second): the day's phase is relative to the run.
    ``day_seconds`` compresses a day for a drill that shows a whole day in minutes (a real
    day by default).

    Noise per tick: the count over the tick is Poisson with a mean multiplied by a gamma
    factor of mean 1 and coefficient of variation ``dispersion`` (over-dispersion beyond
    Poisson), and with probability ``burst_probability`` per tick by ``1 + burst_size``
    (a burst: a push notification, a viral moment).
    """

    peak_sps: float
    start: float
    start_local_hour: float = 14.0
    peak_hour: float = 20.0
    trough_fraction: float = 0.35
    day_seconds: float = DAY
    dispersion: float = 0.05
    burst_probability: float = 0.002
    burst_size: float = 0.3
    counting_noise: bool = True
    """Poisson noise on the count; off only where a test needs exact figures."""

    def local_hour(self, at: float) -> float:
        """The local hour of the region's day at epoch second ``at``."""
        return (self.start_local_hour + 24.0 * (at - self.start) / self.day_seconds) % 24.0

    def expected(self, at: float) -> float:
        """The noise-free demand at ``at``, stream starts per second."""
        angle = 2 * math.pi * (self.local_hour(at) - self.peak_hour) / 24.0
        shape = self.trough_fraction + (1 - self.trough_fraction) * (1 + math.cos(angle)) / 2
        return self.peak_sps * shape

    def sample(self, at: float, *, seconds: float, rng: np.random.Generator) -> float:
        """The demand over a tick of ``seconds`` ending at ``at``, stream starts per second."""
        mean = self.expected(at) * seconds
        if self.dispersion > 0:
            shape = 1.0 / self.dispersion**2
            mean *= rng.gamma(shape, 1.0 / shape)
        if self.burst_probability > 0 and rng.random() < self.burst_probability:
            mean *= 1.0 + self.burst_size
        if not self.counting_noise:
            return max(mean, 0.0) / seconds
        return float(rng.poisson(max(mean, 0.0))) / seconds


@dataclass(frozen=True, kw_only=True)
class RegionView:
    """What the simulator reads from one region's cluster in one tick (plain data).

    ``route_weights``: per service, the HTTPRoute's weights by region (a service without a
    route, or whose route cannot be read, sends everything to the local Service).
    ``dns_weights``: per service, this region's own weighted record (missing: 1).
    """

    ready_endpoints: Mapping[str, int] = field(default_factory=dict)
    route_weights: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    dns_weights: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Flow:
    """Where one tick's demand went, stream starts per second per region."""

    demanded: dict[str, float]
    """By the region's users."""
    arriving: dict[str, float]
    """At the region's gateway, after DNS."""
    served: dict[str, float]
    """By the region's pods."""

    @property
    def lost(self) -> float:
        """Demanded minus served over every region."""
        return max(sum(self.demanded.values()) - sum(self.served.values()), 0.0)


def _resolve(origin: str, service: str, views: Mapping[str, RegionView]) -> dict[str, float]:
    """DNS: the fraction of ``origin``'s users of ``service`` resolving to each region."""
    weights = {r: max(v.dns_weights.get(service, 1), 0) for r, v in views.items()}
    if weights.get(origin, 0) > 0:
        return {origin: 1.0}
    total = sum(weights.values())
    if total == 0:  # every record at 0: Route 53 answers them all alike
        return {r: 1.0 / len(weights) for r in weights}
    return {r: w / total for r, w in weights.items() if w > 0}


def _split(region: str, service: str, view: RegionView, regions: Sequence[str]) -> dict[str, float]:
    """Gateway: the fraction of what reaches ``region`` for ``service`` each region's pods get."""
    weights = view.route_weights.get(service)
    if not weights:
        return {region: 1.0}
    usable = {r: w for r, w in weights.items() if r in regions and w > 0}
    total = sum(usable.values())
    return {r: w / total for r, w in usable.items()} if total else {}


def flow(
    *,
    demand: Mapping[str, float],
    views: Mapping[str, RegionView],
    services: Sequence[str],
    pod_capacity_sps: float,
    impaired: Mapping[str, float] | None = None,
) -> Flow:
    """One tick's traffic through DNS, the gateways and the pods (pure).

    ``demand`` is each region's users' stream starts per second, spread evenly over
    ``services``; ``impaired`` cuts a region's pod capacity by a fraction (0..1).
    """
    regions = list(views)
    impaired = impaired or {}
    arriving = dict.fromkeys(regions, 0.0)
    served = dict.fromkeys(regions, 0.0)
    if not services:
        return Flow(demanded={r: demand.get(r, 0.0) for r in regions}, arriving=arriving, served=served)
    for service in services:
        at_pods = dict.fromkeys(regions, 0.0)
        for origin in regions:
            per_service = demand.get(origin, 0.0) / len(services)
            for gateway, share in _resolve(origin, service, views).items():
                arriving[gateway] += per_service * share
                for target, part in _split(gateway, service, views[gateway], regions).items():
                    at_pods[target] += per_service * share * part
        for region in regions:
            capacity = views[region].ready_endpoints.get(service, 0) * pod_capacity_sps
            capacity *= 1.0 - min(max(impaired.get(region, 0.0), 0.0), 1.0)
            served[region] += min(at_pods[region], capacity)
    return Flow(demanded={r: demand.get(r, 0.0) for r in regions}, arriving=arriving, served=served)


def ready_endpoints_of(slices: Sequence[Mapping[str, Any]], *, services: Sequence[str]) -> dict[str, int]:
    """Ready endpoints per service from EndpointSlices (peer slices regionshift writes are skipped)."""
    wanted = set(services)
    out = dict.fromkeys(services, 0)
    for s in slices:
        labels = (s.get("metadata") or {}).get("labels") or {}
        service = labels.get("kubernetes.io/service-name")
        if service not in wanted or PEER_LABEL in labels:
            continue
        for endpoint in s.get("endpoints") or []:
            if (endpoint.get("conditions") or {}).get("ready") is not False:
                out[service] += 1
    return out


def route_weights_of(
    routes: Sequence[Mapping[str, Any]], *, region: str, peers: Sequence[str], services: Sequence[str]
) -> dict[str, dict[str, int]]:
    """Per service, the weights by region of its HTTPRoute's first rule to the local Service.

    The route of a service has the service's name (the drill's convention, as regionshift's
    conventional backends); a route regionshift cannot parse is left out (all local).
    """
    wanted = set(services)
    backends = conventional_backends(region=region, peers=list(peers))
    out: dict[str, dict[str, int]] = {}
    for route in routes:
        name = route["metadata"]["name"]
        if name not in wanted:
            continue
        try:
            out[name] = managed_rule_weights(route, backends=backends(name))[0]
        except TrafficError as exc:
            log.debug("route %s: %s", name, exc)
    return out


def dns_weights_of(records: Sequence[Mapping[str, Any]], *, region: str, services: Sequence[str]) -> dict[str, int]:
    """Per service, this region's own weight in its DNSEndpoint (named after the service)."""
    wanted = set(services)
    out: dict[str, int] = {}
    for record in records:
        name = record["metadata"]["name"]
        if name not in wanted:
            continue
        try:
            out[name] = region_weight(record, region=region)
        except TrafficError as exc:
            log.debug("DNSEndpoint %s: %s", name, exc)
    return out


class RegionReader:
    """Reads one region's :class:`RegionView`: three LISTs in one namespace, as plain JSON."""

    def __init__(self, *, api: Any, namespace: str, region: str, peers: Sequence[str],
                 services: Sequence[str]) -> None:
        self.api = api
        self.namespace = namespace
        self.region = region
        self.peers = list(peers)
        self.services = list(services)

    def _slices(self) -> list[dict[str, Any]]:
        from kubernetes import client

        answer = client.DiscoveryV1Api(self.api).list_namespaced_endpoint_slice(
            self.namespace, _preload_content=False, _request_timeout=10)
        return json.loads(answer.data).get("items") or []

    def _custom(self, group: str, version: str, plural: str) -> list[dict[str, Any]]:
        """A LIST of custom objects; none when the kind's CRD is not installed."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        try:
            answer = client.CustomObjectsApi(self.api).list_namespaced_custom_object(
                group, version, self.namespace, plural, _request_timeout=10)
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise
        return answer.get("items") or []

    def read(self) -> RegionView:
        """The region's view now; raises the API's error when the region does not answer."""
        slices = self._slices()
        routes = self._custom("gateway.networking.k8s.io", "v1", "httproutes")
        records = self._custom("externaldns.k8s.io", "v1alpha1", "dnsendpoints")
        return RegionView(
            ready_endpoints=ready_endpoints_of(slices, services=self.services),
            route_weights=route_weights_of(routes, region=self.region, peers=self.peers, services=self.services),
            dns_weights=dns_weights_of(records, region=self.region, services=self.services),
        )


class TrafficSimulator:
    """Ticks :func:`flow` over the regions' live views and exports the result on ``/metrics``.

    ``readers`` read each region's cluster; a region whose API does not answer keeps its last
    view (its users are still there, its routes as they were). ``clock`` is injected for
    tests; ``seed`` fixes the noise. Use as a context manager, or :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        *,
        curves: Mapping[str, DemandCurve],
        readers: Mapping[str, Callable[[], RegionView]],
        services: Sequence[str],
        pod_capacity_sps: float,
        tick_seconds: float = 1.0,
        seed: int = 7,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if set(curves) != set(readers):
            raise ValueError(f"curves for {sorted(curves)} but readers for {sorted(readers)}")
        self.curves = dict(curves)
        self.readers = dict(readers)
        self.services = list(services)
        self.pod_capacity_sps = pod_capacity_sps
        self.tick_seconds = tick_seconds
        self.clock = clock
        self.rng = np.random.default_rng(seed)
        self.views: dict[str, RegionView] = {r: RegionView() for r in curves}
        self.impaired: dict[str, float] = {}
        self.last: Flow | None = None
        self.last_tick_at: float | None = None
        self.read_errors: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._server: Any = None
        self.port: int | None = None
        self.registry = CollectorRegistry()
        labels = ["region"]
        self._demanded = Gauge("regionshift_drill_demanded_sps", "Stream starts per second the region's users demand.",
                               labels, registry=self.registry)
        self._served = Gauge("regionshift_drill_served_sps", "Stream starts per second the region's pods serve.",
                             labels, registry=self.registry)
        self._expected = Gauge("regionshift_drill_expected_sps", "The region's noise-free demand curve.",
                               labels, registry=self.registry)
        self._ready = Gauge("regionshift_drill_ready_endpoints", "Ready endpoints over the drill's services.",
                            labels, registry=self.registry)
        self._demanded_total = Counter("regionshift_drill_demanded", "Stream starts the region's users demanded.",
                                       labels, registry=self.registry)
        self._served_total = Counter("regionshift_drill_served", "Stream starts the region's pods served.",
                                     labels, registry=self.registry)

    def impair(self, region: str, fraction: float) -> None:
        """A fault through the simulator: cut ``region``'s pod capacity by ``fraction`` (0 heals it)."""
        with self._lock:
            self.impaired[region] = fraction

    def tick(self) -> Flow:
        """Read every region, run one tick of :func:`flow`, and export it."""
        now = self.clock()
        seconds = self.tick_seconds if self.last_tick_at is None else max(now - self.last_tick_at, 1e-3)
        self.last_tick_at = now
        for region, read in self.readers.items():
            try:
                self.views[region] = read()
                self.read_errors.pop(region, None)
            except Exception as exc:  # a region whose API is down keeps its last view
                self.read_errors[region] = f"{type(exc).__name__}: {exc}"
        demand = {r: c.sample(now, seconds=seconds, rng=self.rng) for r, c in self.curves.items()}
        with self._lock:
            impaired = dict(self.impaired)
        result = flow(demand=demand, views=self.views, services=self.services,
                      pod_capacity_sps=self.pod_capacity_sps, impaired=impaired)
        for region in self.curves:
            self._demanded.labels(region).set(result.demanded[region])
            self._served.labels(region).set(result.served[region])
            self._expected.labels(region).set(self.curves[region].expected(now))
            self._ready.labels(region).set(sum(self.views[region].ready_endpoints.values()))
            self._demanded_total.labels(region).inc(result.demanded[region] * seconds)
            self._served_total.labels(region).inc(result.served[region] * seconds)
        self.last = result
        return result

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self.tick()
            except Exception:  # never let one bad tick end the drill's signal
                log.exception("traffic simulator tick failed")
            self._stop.wait(max(self.tick_seconds - (time.monotonic() - started), 0.0))

    def start(self, *, port: int = 0) -> int:
        """Serve ``/metrics`` on 127.0.0.1 (``port`` 0 picks a free one) and start ticking; the port."""
        self._server, _ = start_http_server(port, addr="127.0.0.1", registry=self.registry)
        self.port = self._server.server_port
        self.tick()
        self._thread = threading.Thread(target=self._run, name="traffic-simulator", daemon=True)
        self._thread.start()
        return self.port

    def stop(self) -> None:
        """Stop ticking and serving."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> TrafficSimulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
