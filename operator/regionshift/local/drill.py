"""``regionshift drill``: three local regions, a regional outage evacuated in seconds, and a report.

What a newcomer runs to see regionshift do its job, and what measures it. The drill:

1. takes a lock (a second drill while one runs is refused with the first one's pid);
2. starts three local regions (a real control plane each, kwok nodes), and installs in each
   regionshift's CRDs, the Gateway API and DNSEndpoint CRDs and ``--services`` sample
   services (:mod:`regionshift.local.sample_traffic`: a Deployment, Service, HTTPRoute and
   DNSEndpoint each), whose new pods take ``--start-up-delay`` seconds to start (kwok's
   pod-ready stage, delayed by the ``regionshift.io/simulated-start`` annotation);
3. starts the traffic simulator (:mod:`regionshift.local.simulator`), which turns the live
   objects of each region into each region's served stream starts per second, and one
   Prometheus that holds a week of the same curve's history at one minute and scrapes the
   simulator every ``--sample-seconds``;
4. applies a RegionFailover per region in Automatic mode (signal sampled every
   ``--sample-seconds``, dark capacity sized from the replica history) and starts one
   ``regionshift run`` process per region;
5. waits for a steady state: every region judged Healthy by every operator, warm dark
   capacity in every region;
6. injects the fault into ``--fault-region`` (``--fault simulator``: its pods serve nothing;
   ``--fault cluster``: its pods turn not Ready through kwok, see :func:`set_cluster_fault`);
7. lets the operators detect, ungate and shift; holds the outage ``--outage-seconds``;
   heals the region and lets the operators fail back;
8. the baseline (``--baseline``, the default), the world before regionshift, on the same
   regions and the same traffic: every RegionFailover switched to Manual with its dark
   capacity off (``maxReplicas: 0``), so the operators only judge; once steady again, the
   same fault; at the moment an operator's verdict says the region is Unhealthy the drill
   does what a DNS health check and an autoscaler would: the failed region's weighted DNS
   records go to 0 (its users resolve to the saviors in proportion to their records) and
   each savior's main Deployments are scaled up by its share of the failed region's
   replicas (:func:`scale_at_failover`), whose new pods become Ready only after the
   start-up delay; the region heals after as long as the first run's outage lasted, and
   its DNS records come back;
9. writes a report (Markdown, and a PNG plot when matplotlib is installed) with both runs
   side by side, the ratio of stream starts lost, and each operator's CPU seconds, peak RSS
   and API requests; then stops every process it started, removing its temporary state;
   Ctrl-C does the same at any step.

A progress line says which step runs, how long it has taken, and each region's signal and
phase.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import fcntl
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regionshift.api.crdgen import crd_manifests
from regionshift.api.models import (
    API_GROUP,
    API_VERSION,
    ROUTES_PER_PROVIDER,
    TRAFFIC_PROVIDERS,
    RegionFailoverSpec,
)
from regionshift.local.cluster import LocalCluster, free_port, state_root, third_party_crds
from regionshift.local.operator_process import OperatorProcess
from regionshift.local.prometheus import Metric, PrometheusServer
from regionshift.local.sample_traffic import (
    DNS_GROUP,
    DNS_WEIGHT,
    GATEWAY_GROUP,
    HOST,
    PARTICIPANT_LABELS,
    deployment,
    dns_endpoint,
    http_route,
    service,
)
from regionshift.local.simulator import DemandCurve, RegionReader, TrafficSimulator

__all__ = [
    "DrillConfig",
    "DrillRefused",
    "DrillRegion",
    "DrillReport",
    "OperatorUsage",
    "RunResult",
    "api_requests",
    "failover_shares",
    "lost_ratio",
    "nodes_for",
    "process_usage",
    "warm_dark_clusters",
    "run_drill",
    "scale_at_failover",
    "set_cluster_fault",
    "write_report",
]

NAMESPACE = "drill"
SIGNAL_METRIC = "regionshift_drill_served_sps"
REPLICAS_METRIC = "regionshift_drill_replicas"
REPLICAS_QUERY = f'label_replace({REPLICAS_METRIC}{{region="{{region}}"}}, "deployment", "{{deployment}}", "", "")'
"""Each Deployment's replica history: its region's one series (every service runs the same), under its name."""
HISTORY_DAYS = 8
HISTORY_STEP_SECONDS = 60
GATEWAY_DOMAIN = "localhost"
SIMULATED_START = "regionshift.io/simulated-start"
"""Pod annotation the local cluster's pod-ready stage delays a pod's start by (a Go duration)."""
SIMULATED_FAULT = "regionshift.io/simulated-fault"
"""Pod annotation that turns a Running pod not Ready through kwok (pod-stages-fault.yaml)."""
MAX_SERVICES = ROUTES_PER_PROVIDER * TRAFFIC_PROVIDERS // 2
"""512: a RegionFailover names at most 8 providers of 128 routes, and each service has a route of each of two
kinds (Gateway API, external-dns)."""
PODS_PER_NODE = 500
"""Pods a local cluster's kwok node holds (its allocatable ``pods``)."""
PODS_PER_SERVICE_BOUND = 16
"""Pods of one service a region may run at once, at most, in the drill: its main Deployment (up to 6 with
the default capacity), its dark one (sized for a share of the largest peer), and the baseline's scale-up."""
STEP_TIMEOUT_SERVICES = 100
"""``timeout_seconds`` holds for up to this many services; a larger drill's steps may take proportionally longer."""
MILESTONES = ("fault", "detected", "ungated", "shifted", "scaled", "settled", "capacity ready", "failback started",
              "healed", "restored")
"""The report's rows: regionshift's milestones and the baseline's, in the order they usually come."""
WRITE_VERBS = frozenset({"create", "update", "patch", "delete", "deletecollection"})


@dataclass(frozen=True)
class DrillRegion:
    """One region of the drill: its name, its local hour when the drill starts, its evening peak."""

    name: str
    start_local_hour: float
    peak_sps: float


DEFAULT_REGIONS = (
    DrillRegion("us-east", start_local_hour=19.0, peak_sps=600.0),
    DrillRegion("us-west", start_local_hour=16.0, peak_sps=400.0),
    DrillRegion("eu-west", start_local_hour=0.5, peak_sps=500.0),
)


@dataclass(frozen=True, kw_only=True)
class DrillConfig:
    """What the drill runs; every figure has a default that runs on a 2-core machine."""

    services: int = 20
    regions: tuple[DrillRegion, ...] = DEFAULT_REGIONS
    fault_region: str = "us-west"
    fault: str = "simulator"
    """``simulator``: the region's pods serve nothing; ``cluster``: its pods turn not Ready through kwok."""
    sample_seconds: int = 5
    outage_seconds: float = 60.0
    pod_capacity_sps: float = 0.0
    """Stream starts per second one pod serves; 0 picks one giving 5 pods per service at the largest peak."""
    baseline: bool = True
    """Run the baseline too: the same fault with dark capacity off, scaling the saviors at failover."""
    start_up_delay_seconds: float = 60.0
    """How long a new pod of a sample service takes to become Ready (kwok's stage delay); 0: at once."""
    report_dir: Path = Path("drill-report")
    timeout_seconds: float = 900.0
    """The longest any one step of a drill of up to 100 services may take before the drill gives up."""
    seed: int = 7

    def capacity(self) -> float:
        if self.pod_capacity_sps > 0:
            return self.pod_capacity_sps
        return max(r.peak_sps for r in self.regions) / self.services / 5.0

    def step_timeout_seconds(self) -> float:
        """How long one step may take: ``timeout_seconds``, growing in proportion beyond 100 services."""
        return self.timeout_seconds * max(1.0, self.services / STEP_TIMEOUT_SERVICES)

    def pod_annotations(self) -> dict[str, str]:
        """The sample services' pod template annotations: the start-up delay, if any."""
        if self.start_up_delay_seconds <= 0:
            return {}
        return {SIMULATED_START: f"{self.start_up_delay_seconds:g}s"}


Sample = tuple[float, dict[str, float], dict[str, float], dict[str, str]]
"""(seconds from the fault, demanded, served, phase) per region."""


@dataclass
class RunResult:
    """What one run of the fault measured: regionshift's, or the baseline's."""

    name: str
    timeline: dict[str, float] = field(default_factory=dict)
    """Seconds from the fault to each milestone."""
    lost_stream_starts: float = 0.0
    """Demanded minus served, summed over every region from the fault to the restore."""
    demanded_stream_starts: float = 0.0
    lost_after_detection: float | None = None
    """Lost from the moment the fault was detected to the restore: what the response itself cost."""
    samples: list[Sample] = field(default_factory=list)
    """Once a second."""


@dataclass(frozen=True, kw_only=True)
class OperatorUsage:
    """What one region's operator process used over the whole drill."""

    region: str
    cpu_seconds: float
    peak_rss_bytes: int
    api_requests: int
    """Requests to its region's API server (the audit log of its identity), whole drill."""
    api_writes: int
    outage_api_requests: int
    """Requests from regionshift's fault to its restore."""


@dataclass
class DrillReport:
    """What the drill measured."""

    regionshift: RunResult = field(default_factory=lambda: RunResult("regionshift"))
    baseline: RunResult | None = None
    operators: list[OperatorUsage] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)

    @property
    def ratio(self) -> float | None:
        """Stream starts the baseline lost per stream start regionshift lost (None without a baseline)."""
        if self.baseline is None:
            return None
        return lost_ratio(baseline=self.baseline.lost_stream_starts, regionshift=self.regionshift.lost_stream_starts)

    @property
    def ratio_after_detection(self) -> float | None:
        """The same ratio over what was lost once the fault was detected (what the response cost)."""
        if self.baseline is None or self.baseline.lost_after_detection is None \
                or self.regionshift.lost_after_detection is None:
            return None
        return lost_ratio(baseline=self.baseline.lost_after_detection,
                          regionshift=self.regionshift.lost_after_detection)


# ---------------------------------------------------------------------------- pure parts


def warm_dark_clusters(items: Iterable[Mapping[str, Any]]) -> tuple[int, int]:
    """DarkClusters with some warm dark pod (Ready, gated), and those whose every desired dark pod is warm.

    The steady state before the fault needs the second for every service: the saviors' guard
    (``SaviorsNotWarm``) weighs the warm pods against the whole need, so a fault injected while
    the dark pods still start is held back until they are warm, and the figures would measure
    the warm-up instead of the evacuation.
    """
    some = full = 0
    for dc in items:
        status = dc.get("status") or {}
        warm, desired = status.get("warmReplicas") or 0, status.get("desiredReplicas") or 0
        some += warm > 0
        full += desired > 0 and warm >= desired
    return some, full


def nodes_for(services: int) -> int:
    """kwok nodes a drill region needs for ``services`` sample services: 2, or more beyond 62 services.

    A kwok node holds :data:`PODS_PER_NODE` pods; a pod that fits on no node stays Pending,
    and the drill would wait for it until its step times out.
    """
    return max(2, math.ceil(services * PODS_PER_SERVICE_BOUND / PODS_PER_NODE))


def failover_shares(*, failed: str, dns_weights: Mapping[str, int]) -> dict[str, float]:
    """Where a failed region's users go once DNS fails it over (its record at 0).

    In proportion to the other regions' weighted records, as a weighted DNS answer does;
    every other record at 0 counts as equal weights.
    """
    others = {r: max(int(w), 0) for r, w in dns_weights.items() if r != failed}
    if not others:
        raise ValueError(f"no region but {failed} to fail over to")
    total = sum(others.values())
    if total == 0:
        return {r: 1.0 / len(others) for r in others}
    return {r: w / total for r, w in others.items() if w > 0}


def scale_at_failover(*, current: Mapping[str, int], evacuated: Mapping[str, int], share: float) -> dict[str, int]:
    """The old world's scale-up: a savior's main Deployments at failover time.

    Each Deployment (by service) grows by its ``share`` of the failed region's replicas of
    the same service, rounded up: what the failed region ran for its users, in proportion
    to the users this savior receives (the same sizing dark capacity is warmed to).
    """
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in 0..1, got {share}")
    return {name: replicas + math.ceil(evacuated.get(name, 0) * share - 1e-9) for name, replicas in current.items()}


def lost_ratio(*, baseline: float, regionshift: float) -> float | None:
    """Stream starts the baseline lost per one regionshift lost (inf when regionshift lost none)."""
    if regionshift <= 0:
        return math.inf if baseline > 0 else None
    return baseline / regionshift


def process_usage(*, stat: str, status: str, clock_ticks: int) -> tuple[float, int]:
    """CPU seconds (user + system) and peak RSS in bytes from ``/proc/PID/stat`` and ``/proc/PID/status``."""
    fields = stat.rsplit(")", 1)[1].split()  # after the command name: field 3 (state) onwards
    cpu = (int(fields[11]) + int(fields[12])) / clock_ticks  # utime, stime: fields 14 and 15
    peak = 0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return cpu, peak


def api_requests(lines: Iterable[str], *, since: float | None = None, until: float | None = None) -> tuple[int, int]:
    """Requests and writes in an audit log (one JSON event a line), each request counted once.

    A request has one event per stage (a watch two: started, completed); they share an
    ``auditID``. ``since``/``until`` (epoch seconds) bound the time the request was received.
    """
    seen: dict[str, bool] = {}
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        audit_id = event.get("auditID")
        if not audit_id or audit_id in seen:
            continue
        at = _epoch(event.get("requestReceivedTimestamp"))
        if at is not None and ((since is not None and at < since) or (until is not None and at > until)):
            continue
        seen[audit_id] = event.get("verb") in WRITE_VERBS
    return len(seen), sum(seen.values())


def traffic_providers(services: Sequence[str]) -> list[dict[str, Any]]:
    """The RegionFailover's traffic providers: Gateway API and external-dns, 128 routes a provider at most."""
    if len(services) > MAX_SERVICES:
        raise ValueError(f"at most {MAX_SERVICES} services: a RegionFailover has at most {TRAFFIC_PROVIDERS} traffic "
                         f"providers of at most {ROUTES_PER_PROVIDER} routes, and each service has two routes")
    chunks = [list(services[i:i + ROUTES_PER_PROVIDER]) for i in range(0, len(services), ROUTES_PER_PROVIDER)]
    return [*({"kind": "GatewayAPI", "routes": c} for c in chunks), *({"kind": "ExternalDNS", "routes": c} for c in chunks)]


class DrillRefused(RuntimeError):
    """Another drill holds the lock."""


@contextlib.contextmanager
def drill_lock() -> Iterator[None]:
    """One drill at a time on a machine: a lock file under regionshift's state directory."""
    path = state_root() / "drill.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "unknown"
            raise DrillRefused(f"a drill is already running (pid {holder}); wait for it or stop it "
                               f"with Ctrl-C, then run this again") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()


class Progress:
    """The terminal's progress line: the step, its duration, each region's signal and phase."""

    def __init__(self, *, print_: Callable[[str], None] = print) -> None:
        self.print = print_
        self.began = time.monotonic()
        self.step = ""
        self.step_began = self.began
        self.last_line = 0.0

    def start(self, step: str) -> None:
        self.step, self.step_began = step, time.monotonic()
        self.print(f"[{self.elapsed():6.1f} s] {step}")

    def elapsed(self) -> float:
        return time.monotonic() - self.began

    def show(self, regions: Mapping[str, str], *, every_seconds: float = 5.0) -> None:
        now = time.monotonic()
        if now - self.last_line < every_seconds:
            return
        self.last_line = now
        parts = " | ".join(f"{name} {text}" for name, text in regions.items())
        self.print(f"[{self.elapsed():6.1f} s]   {self.step} ({now - self.step_began:.0f} s): {parts}")


def _curves(config: DrillConfig, *, start: float) -> dict[str, DemandCurve]:
    return {r.name: DemandCurve(peak_sps=r.peak_sps, start=start, start_local_hour=r.start_local_hour)
            for r in config.regions}


def _replicas_for(sps_per_service: float, *, capacity: float) -> int:
    """What a service's autoscaler runs for its traffic: 20 % headroom, at least one pod."""
    return max(1, math.ceil(sps_per_service * 1.2 / capacity))


def _history(config: DrillConfig, curves: Mapping[str, DemandCurve], *, end: float,
             services: list[str]) -> dict[Metric, list[tuple[float, float]]]:
    """A week and a day of each region's signal and its services' replicas, at one minute, up to ``end``.

    Every service of a region has the same share of its demand, so its autoscaler ran the same
    replicas: one replica series per region, which :data:`REPLICAS_QUERY` hands each Deployment
    under its own name. (One series per service would make 500 services' backfill 17 million
    samples, for the same figures.)
    """
    rng = np.random.default_rng(config.seed)
    steps = int(HISTORY_DAYS * 86_400 / HISTORY_STEP_SECONDS)
    times = [end - HISTORY_STEP_SECONDS * (steps - i) for i in range(steps + 1)]
    out: dict[Metric, list[tuple[float, float]]] = {}
    for region, curve in curves.items():
        values = [curve.sample(t, seconds=HISTORY_STEP_SECONDS, rng=rng) for t in times]
        out[Metric.of(SIGNAL_METRIC, region=region)] = list(zip(times, values, strict=True))
        replicas = [float(_replicas_for(v / len(services), capacity=config.capacity())) for v in values]
        out[Metric.of(REPLICAS_METRIC, region=region)] = list(zip(times, replicas, strict=True))
    return out


def region_failover(config: DrillConfig, *, region: str, gateways: Mapping[str, str], prometheus_url: str,
                    services: list[str]) -> dict[str, Any]:
    """The RegionFailover one region applies: Automatic, sampled every ``sample_seconds``."""
    spec = {
        "region": region,
        "peers": [{"name": peer, "gatewayAddress": gateways[peer], "dnsRecord": HOST}
                  for peer in gateways if peer != region],
        "signal": {"prometheusUrl": prometheus_url, "query": f'{SIGNAL_METRIC}{{region="{{region}}"}}',
                   "stepSeconds": config.sample_seconds, "historyDays": HISTORY_DAYS - 1,
                   "historyStepSeconds": HISTORY_STEP_SECONDS, "refitIntervalSeconds": 3600, "timeoutSeconds": 5},
        # The services were created moments before: no rollout guard, or the fault would be held back.
        "detection": {"rolloutGuardSeconds": 0, "staleAfterSeconds": max(30, 3 * config.sample_seconds)},
        "selector": {"matchLabels": dict(PARTICIPANT_LABELS)},
        "darkCapacity": {"replicasQuery": REPLICAS_QUERY,
                         "headroomRatio": 1.2, "minReplicas": 1, "maxReplicas": 100, "horizonSeconds": 3600},
        "traffic": traffic_providers(services),
        "mode": "Automatic",
        "failback": {"stepPercent": 50, "stepIntervalSeconds": 10, "ratioThreshold": 0.7,
                     "cooldownSeconds": 20, "backoffSeconds": 30},
    }
    RegionFailoverSpec.model_validate(spec)
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "RegionFailover",
            "metadata": {"name": "drill"}, "spec": spec}


def _install_services(cluster: LocalCluster, *, region: str, services: list[str], replicas: int,
                      pod_annotations: Mapping[str, str]) -> Any:
    """Create the namespace and every sample service in one region; its API client."""
    from kubernetes import client, config as kube_config, utils

    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    with contextlib.suppress(client.ApiException):
        core.create_namespace({"metadata": {"name": NAMESPACE}})

    def install(name: str) -> None:
        utils.create_from_dict(api, deployment(name, replicas=replicas, pod_annotations=pod_annotations),
                               namespace=NAMESPACE)
        utils.create_from_dict(api, service(name), namespace=NAMESPACE)
        custom.create_namespaced_custom_object(GATEWAY_GROUP, "v1", NAMESPACE, "httproutes", http_route(name))
        custom.create_namespaced_custom_object(DNS_GROUP, "v1alpha1", NAMESPACE, "dnsendpoints",
                                               dns_endpoint(name, region=region))

    _parallel([lambda name=name: install(name) for name in services], workers=4)
    return api


def _until(check: Callable[[], Any], *, progress: Progress, regions: Callable[[], Mapping[str, str]],
           timeout_seconds: float, what: str) -> Any:
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        answer = check()
        if answer:
            return answer
        progress.show(regions())
        time.sleep(1.0)
    raise TimeoutError(f"the drill gave up waiting for {what} after {timeout_seconds:.0f} s")


@dataclass
class _Drill:
    """The running drill's parts, shared by its two runs."""

    config: DrillConfig
    progress: Progress
    names: list[str]
    services: list[str]
    clusters: dict[str, LocalCluster]
    apis: dict[str, Any]
    customs: dict[str, Any]
    simulator: TrafficSimulator
    replicas: dict[str, int]
    """Each region's main replicas per service, as installed."""
    warm: dict[str, int] = field(default_factory=dict)
    """DarkClusters with every dark pod warm per region, as the last steady-state check counted them (progress)."""

    def status(self, name: str) -> dict[str, Any]:
        from kubernetes import client

        try:
            obj = self.customs[name].get_namespaced_custom_object(API_GROUP, API_VERSION, NAMESPACE,
                                                                  "regionfailovers", "drill")
        except client.ApiException:
            return {}
        return obj.get("status") or {}

    def line(self) -> dict[str, str]:
        flow = self.simulator.last
        out = {}
        for name in self.names:
            served = flow.served.get(name, 0.0) if flow else 0.0
            status = self.status(name)
            verdict = next((r.get("verdict") for r in status.get("regions") or []
                            if r.get("name") == self.config.fault_region), None) or "-"
            out[name] = f"{served:5.0f} sps {status.get('phase') or '-'} ({self.config.fault_region} {verdict})"
            if name in self.warm:
                out[name] += f" warm {self.warm[name]}/{len(self.services)}"
        return out

    def until(self, check: Callable[[], Any], *, what: str) -> Any:
        return _until(check, progress=self.progress, regions=self.line, timeout_seconds=self.config.step_timeout_seconds(),
                      what=what)

    def steady(self, *, warm: bool) -> bool:
        """Every region Healthy for every operator, no evacuation; warm dark capacity everywhere (or none)."""
        for name in self.names:
            status = self.status(name)
            verdicts = {r.get("name"): r.get("verdict") for r in status.get("regions") or []}
            if verdicts != dict.fromkeys(self.names, "Healthy") or status.get("evacuations"):
                return False
        counts = {name: _warm(self.customs[name]) for name in self.names}
        self.warm = {name: full for name, (_, full) in counts.items()}
        done = all(full >= self.config.services for _, full in counts.values()) if warm \
            else not any(some for some, _ in counts.values())
        if done:
            self.warm = {}
        return done

    def unhealthy(self) -> bool:
        """Whether some operator judges the fault region Unhealthy."""
        return any(r.get("name") == self.config.fault_region and r.get("verdict") == "Unhealthy"
                   for name in self.names for r in self.status(name).get("regions") or [])

    def recorder(self, run: RunResult, *, fault_at: float) -> Callable[[], None]:
        def record() -> None:
            flow = self.simulator.last
            if flow is not None and (not run.samples or time.time() - fault_at - run.samples[-1][0] >= 0.5):
                run.samples.append((time.time() - fault_at, dict(flow.demanded), dict(flow.served),
                                    {n: self.status(n).get("phase") or "" for n in self.names}))
        return record

    def hold(self, seconds: float, record: Callable[[], None]) -> None:
        hold_until = time.monotonic() + seconds
        while time.monotonic() < hold_until:
            record()
            self.progress.show(self.line())
            time.sleep(1.0)

    def fault(self, *, fail: bool) -> None:
        _inject(self.config, simulator=self.simulator, api=self.apis[self.config.fault_region], fail=fail)


def run_drill(config: DrillConfig, *, print_: Callable[[str], None] = print) -> DrillReport:
    """Run the whole drill; the report (its files written into ``config.report_dir``)."""
    from kubernetes import client

    if config.fault_region not in {r.name for r in config.regions}:
        raise ValueError(f"--fault-region {config.fault_region!r} is none of {[r.name for r in config.regions]}")
    if config.fault not in ("simulator", "cluster"):
        raise ValueError(f"--fault must be simulator or cluster, not {config.fault!r}")
    services = [f"svc-{i:03d}" for i in range(config.services)]
    traffic_providers(services)  # refuse too many services before starting anything
    report = DrillReport()
    progress = Progress(print_=print_)
    names = [r.name for r in config.regions]
    capacity = config.capacity()
    with drill_lock(), contextlib.ExitStack() as stack:
        progress.start(f"starting {len(names)} local regions ({', '.join(names)})")
        crds = [*crd_manifests().values(), *third_party_crds()]
        clusters = {name: LocalCluster(name=f"drill-{name}", crds=crds, audited_operator=True,
                                       nodes=nodes_for(config.services)) for name in names}
        # One after the other, from this thread: each component dies with the thread that started
        # it (PR_SET_PDEATHSIG), so a worker thread's exit would take its region down.
        for cluster in clusters.values():
            stack.callback(cluster.stop)
            cluster.start()

        delay = f", pods starting in {config.start_up_delay_seconds:g} s" if config.start_up_delay_seconds > 0 else ""
        progress.start(f"installing {config.services} sample services in each region{delay}")
        start = time.time()
        curves = _curves(config, start=start)
        apis: dict[str, Any] = {}
        replicas: dict[str, int] = {}
        for region in config.regions:
            # What the service's autoscaler runs for the demand now, as the replica history says.
            replicas[region.name] = _replicas_for(curves[region.name].expected(start) / config.services,
                                                  capacity=capacity)
            apis[region.name] = _install_services(clusters[region.name], region=region.name, services=services,
                                                  replicas=replicas[region.name],
                                                  pod_annotations=config.pod_annotations())
            progress.print(f"[{progress.elapsed():6.1f} s]   {region.name}: {config.services} services, "
                           f"{replicas[region.name]} pods each")
        # Every pod Ready before the operators watch: pods coming up region by region would look
        # like a regional drop to them (the start-up delay holds each region's pods back a while).
        progress.start("waiting for the sample services' pods to be Ready")
        wanted = {name: dict.fromkeys(services, replicas[name]) for name in names}
        ready: dict[str, dict[str, int]] = {n: {} for n in names}

        def all_ready() -> bool:
            for n in names:
                ready[n] = _ready_replicas(apis[n])
            return all(_ready_at_least(apis[n], wanted[n], ready=ready[n]) for n in names)

        _until(all_ready, progress=progress,
               regions=lambda: {n: f"{sum(ready[n].values()):,}/{replicas[n] * len(services):,} pods Ready"
                                for n in names},
               timeout_seconds=config.step_timeout_seconds(), what="the sample services' pods")
        readers = {name: RegionReader(api=apis[name], namespace=NAMESPACE, region=name,
                                      peers=[p for p in names if p != name], services=services).read
                   for name in names}
        simulator = TrafficSimulator(curves=curves, readers=readers, services=services, pod_capacity_sps=capacity,
                                     tick_seconds=1.0, seed=config.seed)
        port = simulator.start()
        stack.callback(simulator.stop)

        progress.start("starting Prometheus with a week of each region's history")
        history = _history(config, curves, end=time.time() // 60 * 60, services=services)
        prometheus = stack.enter_context(PrometheusServer(
            history=history, scrape_interval=f"{config.sample_seconds}s", live_targets=[f"127.0.0.1:{port}"]))

        progress.start("applying a RegionFailover per region and starting one operator process per region")
        gateways = {name: f"{name}.{GATEWAY_DOMAIN}:{free_port()}" for name in names}
        customs = {name: client.CustomObjectsApi(apis[name]) for name in names}
        for name in names:
            customs[name].create_namespaced_custom_object(
                API_GROUP, API_VERSION, NAMESPACE, "regionfailovers",
                region_failover(config, region=name, gateways=gateways, prometheus_url=prometheus.url,
                                services=services))
        config.report_dir.mkdir(parents=True, exist_ok=True)
        operators: dict[str, OperatorProcess] = {}
        for name in names:
            operator = OperatorProcess(kubeconfig=clusters[name].operator_kubeconfig, namespaces=[NAMESPACE],
                                       log_path=config.report_dir.resolve() / f"operator-{name}.log")
            stack.enter_context(operator)
            operators[name] = operator
            prometheus.add_scrape_target(f"127.0.0.1:{operator.metrics_port}", labels={"operator_region": name})

        drill = _Drill(config=config, progress=progress, names=names, services=services, clusters=clusters,
                       apis=apis, customs=customs, simulator=simulator, replicas=replicas)
        progress.start("waiting for a steady state: every region Healthy, warm dark capacity everywhere")
        drill.until(lambda: drill.steady(warm=True), what="a steady state")

        report.regionshift, window = _regionshift_run(drill)
        if config.baseline:
            report.baseline = _baseline_run(drill, heal_after=report.regionshift.timeline["healed"])

        progress.start("measuring each operator's CPU, memory and API requests")
        report.operators = [_usage(name, operator=operators[name], cluster=clusters[name], window=window)
                            for name in names]
        progress.start("writing the report")
        report.files = write_report(report, config=config)
        for path in report.files:
            print_(f"  {path}")
        progress.start("stopping every process the drill started")
    return report


def _regionshift_run(drill: _Drill) -> tuple[RunResult, tuple[float, float]]:
    """The fault with regionshift: detect, ungate, shift, hold, heal, fail back; and its (fault, restored) times."""
    config, progress = drill.config, drill.progress
    run = RunResult("regionshift")
    fault_at = time.time()
    totals_before = _totals(drill.simulator)
    progress.start(f"fault: {config.fault_region} fails ({config.fault})")
    drill.fault(fail=True)
    record = drill.recorder(run, fault_at=fault_at)

    def evacuation_of_fault() -> dict[str, Any] | None:
        for evacuation in drill.status(config.fault_region).get("evacuations") or []:
            if evacuation.get("region") == config.fault_region:
                return evacuation
        return None

    at_detection: list[tuple[float, float]] = []

    def settled() -> bool:
        record()
        evacuation = evacuation_of_fault()
        if evacuation and not at_detection:
            at_detection.append(_totals(drill.simulator))
        return bool(evacuation and (evacuation.get("timeline") or {}).get("settledAt"))

    progress.start("the operators detect, ungate and shift")
    drill.until(settled, what=f"{config.fault_region}'s evacuation to settle")
    timeline = (evacuation_of_fault() or {}).get("timeline") or {}
    progress.start(f"evacuated; holding the outage {config.outage_seconds:.0f} s")
    drill.hold(config.outage_seconds, record)

    healed_at = time.time()
    progress.start(f"healing {config.fault_region}; the operators fail back")
    drill.fault(fail=False)

    def restored() -> bool:
        record()
        return all((drill.status(n).get("phase") or "Steady") == "Steady" and not drill.status(n).get("evacuations")
                   for n in drill.names)

    drill.until(restored, what="the failback to finish")
    restored_at = time.time()
    last = drill.status(config.fault_region).get("lastEvacuation") or timeline
    totals_after = _totals(drill.simulator)

    run.timeline = {"fault": 0.0}
    for key, label in (("decidedAt", "detected"), ("ungatedAt", "ungated"), ("shiftedAt", "shifted"),
                       ("settledAt", "settled")):
        at = _epoch(last.get(key))
        if at is not None:
            run.timeline[label] = at - fault_at
    run.timeline["healed"] = healed_at - fault_at
    started_back = _epoch(last.get("failbackStartedAt"))
    if started_back is not None:
        run.timeline["failback started"] = started_back - fault_at
    run.timeline["restored"] = restored_at - fault_at
    run.demanded_stream_starts = totals_after[0] - totals_before[0]
    run.lost_stream_starts = max(0.0, run.demanded_stream_starts - (totals_after[1] - totals_before[1]))
    if at_detection:
        run.lost_after_detection = _lost_between(at_detection[0], totals_after)
    progress.print(f"  regionshift: {run.lost_stream_starts:,.0f} of {run.demanded_stream_starts:,.0f} "
                   "stream starts lost")
    return run, (fault_at, restored_at)


def _baseline_run(drill: _Drill, *, heal_after: float) -> RunResult:
    """The same fault the old way: no dark capacity; DNS failover and scaling the saviors at the verdict."""
    config, progress = drill.config, drill.progress
    fault, names = config.fault_region, drill.names
    saviors = [n for n in names if n != fault]
    run = RunResult("baseline")
    progress.start("baseline: every RegionFailover to Manual with its dark capacity off")
    for name in names:
        drill.customs[name].patch_namespaced_custom_object(
            API_GROUP, API_VERSION, NAMESPACE, "regionfailovers", "drill",
            {"spec": {"mode": "Manual", "darkCapacity": {"minReplicas": 0, "maxReplicas": 0}}})
    progress.start("baseline: waiting for a steady state without dark capacity")
    drill.until(lambda: drill.steady(warm=False), what="a steady state without dark capacity")

    fault_at = time.time()
    totals_before = _totals(drill.simulator)
    record = drill.recorder(run, fault_at=fault_at)
    progress.start(f"baseline fault: {fault} fails ({config.fault})")
    drill.fault(fail=True)

    def detected() -> bool:
        record()
        return drill.unhealthy()

    progress.start("baseline: waiting for a verdict Unhealthy")
    drill.until(detected, what=f"a verdict that {fault} is Unhealthy")
    run.timeline = {"fault": 0.0, "detected": time.time() - fault_at}
    at_detection = _totals(drill.simulator)

    progress.start(f"baseline: DNS fails {fault} over; the saviors scale up (pods start in "
                   f"{config.start_up_delay_seconds:g} s)")
    _set_dns_weight(drill.customs[fault], services=drill.services, region=fault, weight=0)
    run.timeline["shifted"] = time.time() - fault_at
    shares = failover_shares(failed=fault, dns_weights={n: DNS_WEIGHT for n in names})
    targets = {}
    for savior in saviors:
        targets[savior] = scale_at_failover(current=dict.fromkeys(drill.services, drill.replicas[savior]),
                                            evacuated=dict.fromkeys(drill.services, drill.replicas[fault]),
                                            share=shares.get(savior, 0.0))
        _scale(drill.apis[savior], targets[savior])
    run.timeline["scaled"] = time.time() - fault_at

    def capacity_ready() -> bool:
        record()
        return all(_ready_at_least(drill.apis[s], targets[s]) for s in saviors)

    progress.start("baseline: waiting for the saviors' new pods")
    drill.until(capacity_ready, what="the saviors' new pods to be Ready")
    run.timeline["capacity ready"] = time.time() - fault_at
    if (left := heal_after - (time.time() - fault_at)) > 0:
        progress.start(f"baseline: holding the outage as long as regionshift's ({left:.0f} s more)")
        drill.hold(left, record)

    healed_at = time.time()
    progress.start(f"baseline: healing {fault}; its DNS records come back")
    drill.fault(fail=False)
    _set_dns_weight(drill.customs[fault], services=drill.services, region=fault, weight=DNS_WEIGHT)

    def restored() -> bool:
        record()
        flow = drill.simulator.last
        return bool(flow and flow.served.get(fault, 0.0) >= 0.9 * flow.demanded.get(fault, 0.0) > 0)

    drill.until(restored, what=f"{fault} to serve its users again")
    restored_at = time.time()
    totals_after = _totals(drill.simulator)
    for savior in saviors:
        _scale(drill.apis[savior], dict.fromkeys(drill.services, drill.replicas[savior]))
    run.timeline["healed"] = healed_at - fault_at
    run.timeline["restored"] = restored_at - fault_at
    run.demanded_stream_starts = totals_after[0] - totals_before[0]
    run.lost_stream_starts = max(0.0, run.demanded_stream_starts - (totals_after[1] - totals_before[1]))
    run.lost_after_detection = _lost_between(at_detection, totals_after)
    progress.print(f"  baseline: {run.lost_stream_starts:,.0f} of {run.demanded_stream_starts:,.0f} "
                   "stream starts lost")
    return run


def _warm(custom: Any) -> tuple[int, int]:
    """One region's DarkClusters, as :func:`warm_dark_clusters` counts them."""
    found = custom.list_namespaced_custom_object(API_GROUP, API_VERSION, NAMESPACE, "darkclusters")
    return warm_dark_clusters(found.get("items") or [])


def _totals(simulator: TrafficSimulator) -> tuple[float, float]:
    """Stream starts demanded and served so far, over every region."""
    sample = simulator.registry.get_sample_value
    demanded = sum(sample("regionshift_drill_demanded_total", {"region": r}) or 0.0 for r in simulator.curves)
    served = sum(sample("regionshift_drill_served_total", {"region": r}) or 0.0 for r in simulator.curves)
    return demanded, served


def _lost_between(before: tuple[float, float], after: tuple[float, float]) -> float:
    """Stream starts lost between two readings of :func:`_totals`."""
    return max(0.0, (after[0] - before[0]) - (after[1] - before[1]))


def _parallel(calls: Sequence[Callable[[], Any]], *, workers: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def _scale(api: Any, replicas: Mapping[str, int]) -> None:
    """Scale each named Deployment of the drill's namespace."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    _parallel([lambda name=name, n=n: apps.patch_namespaced_deployment_scale(name, NAMESPACE, {"spec": {"replicas": n}})
               for name, n in replicas.items()])


def _ready_replicas(api: Any) -> dict[str, int]:
    """Each Deployment of the drill's namespace and its Ready pods (one LIST)."""
    from kubernetes import client

    answer = client.AppsV1Api(api).list_namespaced_deployment(NAMESPACE, _preload_content=False, _request_timeout=30)
    return {d["metadata"]["name"]: (d.get("status") or {}).get("readyReplicas") or 0
            for d in json.loads(answer.data).get("items") or []}


def _ready_at_least(api: Any, replicas: Mapping[str, int], *, ready: Mapping[str, int] | None = None) -> bool:
    """Whether each named Deployment has at least that many Ready pods (``ready``: a :func:`_ready_replicas`)."""
    ready = _ready_replicas(api) if ready is None else ready
    return all(ready.get(name, 0) >= n for name, n in replicas.items())


def _set_dns_weight(custom: Any, *, services: Sequence[str], region: str, weight: int) -> None:
    """This region's weighted DNS record of every service (what a DNS health check fails over)."""
    _parallel([lambda name=name: custom.patch_namespaced_custom_object(
        DNS_GROUP, "v1alpha1", NAMESPACE, "dnsendpoints", name,
        {"spec": dns_endpoint(name, region=region, weight=weight)["spec"]}) for name in services])


def set_cluster_fault(api: Any, *, namespace: str, fail: bool) -> int:
    """Turn every pod of ``namespace`` not Ready (or Ready again) through kwok; the pods patched.

    The pods get (or lose) the annotation :data:`SIMULATED_FAULT`, and the local cluster's
    ``pod-simulated-fault`` stage sets their ContainersReady and Ready conditions False, as a
    kubelet does when a readiness probe fails: the pods keep running, and the endpoints
    controller marks their endpoints not ready. Healing restores the conditions.
    """
    from kubernetes import client

    core = client.CoreV1Api(api)
    answer = core.list_namespaced_pod(namespace, _preload_content=False, _request_timeout=30)
    pods = [p["metadata"] for p in json.loads(answer.data).get("items") or []]
    names = [m["name"] for m in pods if fail or SIMULATED_FAULT in (m.get("annotations") or {})]
    patch = {"metadata": {"annotations": {SIMULATED_FAULT: "true" if fail else None}}}
    _parallel([lambda name=name: core.patch_namespaced_pod(name, namespace, patch) for name in names])
    return len(names)


def _inject(config: DrillConfig, *, simulator: TrafficSimulator, api: Any, fail: bool) -> None:
    """Fail (or heal) the fault region, through the simulator or through its cluster."""
    if config.fault == "simulator":
        simulator.impair(config.fault_region, 1.0 if fail else 0.0)
        return
    set_cluster_fault(api, namespace=NAMESPACE, fail=fail)


def _usage(region: str, *, operator: OperatorProcess, cluster: LocalCluster,
           window: tuple[float, float]) -> OperatorUsage:
    """One operator's CPU seconds and peak RSS (from /proc) and API requests (from its audit log)."""
    cpu, peak = 0.0, 0
    with contextlib.suppress(OSError):
        cpu, peak = process_usage(stat=Path(f"/proc/{operator.pid}/stat").read_text(),
                                  status=Path(f"/proc/{operator.pid}/status").read_text(),
                                  clock_ticks=os.sysconf("SC_CLK_TCK"))
    lines = cluster.audit_log.read_text().splitlines() if cluster.audit_log.exists() else []
    requests, writes = api_requests(lines)
    during, _ = api_requests(lines, since=window[0], until=window[1])
    return OperatorUsage(region=region, cpu_seconds=cpu, peak_rss_bytes=peak, api_requests=requests,
                         api_writes=writes, outage_api_requests=during)


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _seconds(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}"


def write_report(report: DrillReport, *, config: DrillConfig) -> list[Path]:
    """``report.md`` (and ``report.png`` when matplotlib is there) in ``config.report_dir``."""
    config.report_dir.mkdir(parents=True, exist_ok=True)
    runs = [report.regionshift, *([report.baseline] if report.baseline is not None else [])]
    milestones = [m for m in MILESTONES if any(m in r.timeline for r in runs)]
    for run in runs:
        milestones += [m for m in run.timeline if m not in milestones]
    lines = [
        "# regionshift drill",
        "",
        f"{len(config.regions)} regions ({', '.join(r.name for r in config.regions)}), {config.services} services, "
        f"fault in {config.fault_region} through the {config.fault}, signal sampled every {config.sample_seconds} s"
        f", new pods Ready {config.start_up_delay_seconds:g} s after they are created.",
        "",
    ]
    if report.baseline is not None:
        lines += [
            "Two runs of the same fault on the same regions and traffic: **regionshift** (warm dark capacity,"
            " ungated and shifted onto by the operators) and the **baseline** (dark capacity off; at the"
            " operators' verdict the failed region's DNS records go to 0 and the saviors' Deployments are scaled"
            " up, their new pods Ready after the start-up delay; healed after as long as regionshift's outage).",
            "",
        ]
    lines += [
        "| milestone (seconds after the fault) | " + " | ".join(r.name for r in runs) + " |",
        "|---|" + "---|" * len(runs),
        *(f"| {m} | " + " | ".join(_seconds(r.timeline.get(m)) for r in runs) + " |" for m in milestones),
        "| stream starts demanded, fault to restore | "
        + " | ".join(f"{r.demanded_stream_starts:,.0f}" for r in runs) + " |",
        "| stream starts lost (demanded minus served) | "
        + " | ".join(f"{r.lost_stream_starts:,.0f}" for r in runs) + " |",
        "| of which after the detection | "
        + " | ".join("" if r.lost_after_detection is None else f"{r.lost_after_detection:,.0f}" for r in runs) + " |",
        "",
    ]
    ratio = report.ratio
    if ratio is not None:
        lines += [f"The baseline lost **{ratio:,.1f}×** the stream starts regionshift lost"
                  f" ({report.baseline.lost_stream_starts:,.0f} against"  # type: ignore[union-attr]
                  f" {report.regionshift.lost_stream_starts:,.0f})."]
        after = report.ratio_after_detection
        if after is not None:
            lines += [f"Both runs lose the same until the fault is detected; from the detection on, the baseline"
                      f" lost **{after:,.1f}×** what regionshift lost."]
        lines += [""]
    else:
        lines += [f"Stream starts demanded from the fault to the restore: "
                  f"{report.regionshift.demanded_stream_starts:,.0f}; lost (demanded minus served): "
                  f"{report.regionshift.lost_stream_starts:,.0f}.", ""]
    if report.operators:
        lines += [
            "Each operator over the whole drill (CPU and peak RSS from /proc; API requests from its region's"
            " audit log, each request once):",
            "",
            "| operator | CPU seconds | peak RSS | API requests | of which writes | requests from fault to restore |",
            "|---|---|---|---|---|---|",
            *(f"| {u.region} | {u.cpu_seconds:.1f} | {u.peak_rss_bytes / 2**20:.0f} MiB | {u.api_requests:,} | "
              f"{u.api_writes:,} | {u.outage_api_requests:,} |" for u in report.operators),
            "",
        ]
    files = [config.report_dir / "report.md"]
    plot = _plot(report, config=config)
    if plot is not None:
        lines += ["![served and demanded per region](report.png)", ""]
        files.append(plot)
    files[0].write_text("\n".join(lines))
    return files


def _plot(report: DrillReport, *, config: DrillConfig) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = [r for r in (report.regionshift, report.baseline) if r is not None and r.samples]
    if not runs:
        return None
    fig, axes = plt.subplots(1, len(runs), figsize=(10 * len(runs), 5), sharey=True, squeeze=False)
    for ax, run in zip(axes[0], runs, strict=True):
        times = [s[0] for s in run.samples]
        for region in (r.name for r in config.regions):
            line, = ax.plot(times, [s[2].get(region, 0.0) for s in run.samples], label=f"{region} served")
            ax.plot(times, [s[1].get(region, 0.0) for s in run.samples], linestyle=":", color=line.get_color(),
                    label=f"{region} demanded")
        top = max((v for s in run.samples for v in (*s[1].values(), *s[2].values())), default=1.0) * 1.05
        ax.set_ylim(0, top)
        for name, seconds in run.timeline.items():
            ax.axvline(seconds, color="grey", linewidth=0.8)
            ax.text(seconds, top, name, rotation=90, va="top", fontsize=8)
        ax.set_title(f"{run.name}: {run.lost_stream_starts:,.0f} stream starts lost")
        ax.set_xlabel("seconds after the fault")
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel("stream starts per second")
    path = config.report_dir / "report.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
