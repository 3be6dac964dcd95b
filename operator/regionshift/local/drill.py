"""``regionshift drill``: three local regions, a regional outage evacuated in seconds, and a report.

What a newcomer runs to see regionshift do its job, and what measures it. The drill:

1. takes a lock (a second drill while one runs is refused with the first one's pid);
2. starts three local regions (a real control plane each, kwok nodes), and installs in each
   regionshift's CRDs, the Gateway API and DNSEndpoint CRDs and ``--services`` sample
   services (:mod:`regionshift.local.sample_traffic`: a Deployment, Service, HTTPRoute and
   DNSEndpoint each);
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
   ``--fault cluster``: its Deployments are scaled to 0, so its pods really go);
7. lets the operators detect, ungate and shift; holds the outage ``--outage-seconds``;
   heals the region and lets the operators fail back;
8. writes a report (Markdown, and a PNG plot when matplotlib is installed) and stops every
   process it started, removing its temporary state; Ctrl-C does the same at any step.

A progress line says which step runs, how long it has taken, and each region's signal and
phase. Not yet here (see the README): the baseline run with dark capacity switched off.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regionshift.api.crdgen import crd_manifests
from regionshift.api.models import API_GROUP, API_VERSION, RegionFailoverSpec
from regionshift.local.cluster import LocalCluster, free_port, state_root, third_party_crds
from regionshift.local.operator_process import OperatorProcess
from regionshift.local.prometheus import Metric, PrometheusServer
from regionshift.local.sample_traffic import (
    DNS_GROUP,
    GATEWAY_GROUP,
    HOST,
    PARTICIPANT_LABELS,
    deployment,
    dns_endpoint,
    http_route,
    service,
)
from regionshift.local.simulator import DemandCurve, RegionReader, TrafficSimulator

__all__ = ["DrillConfig", "DrillRegion", "DrillReport", "run_drill"]

NAMESPACE = "drill"
SIGNAL_METRIC = "regionshift_drill_served_sps"
REPLICAS_METRIC = "regionshift_drill_replicas"
HISTORY_DAYS = 8
HISTORY_STEP_SECONDS = 60
GATEWAY_DOMAIN = "localhost"


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
    """``simulator``: the region's pods serve nothing; ``cluster``: its Deployments go to 0."""
    sample_seconds: int = 5
    outage_seconds: float = 60.0
    pod_capacity_sps: float = 0.0
    """Stream starts per second one pod serves; 0 picks one giving 3 pods per service at peak."""
    report_dir: Path = Path("drill-report")
    timeout_seconds: float = 900.0
    """The longest any one step may take before the drill gives up."""
    seed: int = 7

    def capacity(self) -> float:
        if self.pod_capacity_sps > 0:
            return self.pod_capacity_sps
        return max(r.peak_sps for r in self.regions) / self.services / 3.0


@dataclass
class DrillReport:
    """What the drill measured."""

    timeline: dict[str, float] = field(default_factory=dict)
    """Seconds from the fault: detected, ungated, shifted, settled, healed, failback started, restored."""
    lost_stream_starts: float = 0.0
    demanded_stream_starts: float = 0.0
    samples: list[tuple[float, dict[str, float], dict[str, float], dict[str, str]]] = field(default_factory=list)
    """(seconds from the fault, demanded, served, phase) per region, once a second."""
    files: list[Path] = field(default_factory=list)


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
    """A week and a day of each region's signal and each service's replicas, at one minute, up to ``end``."""
    rng = np.random.default_rng(config.seed)
    steps = int(HISTORY_DAYS * 86_400 / HISTORY_STEP_SECONDS)
    times = [end - HISTORY_STEP_SECONDS * (steps - i) for i in range(steps + 1)]
    out: dict[Metric, list[tuple[float, float]]] = {}
    for region, curve in curves.items():
        values = [curve.sample(t, seconds=HISTORY_STEP_SECONDS, rng=rng) for t in times]
        out[Metric.of(SIGNAL_METRIC, region=region)] = list(zip(times, values, strict=True))
        replicas = [float(_replicas_for(v / len(services), capacity=config.capacity())) for v in values]
        for name in services:
            out[Metric.of(REPLICAS_METRIC, region=region, deployment=name)] = list(zip(times, replicas, strict=True))
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
        "darkCapacity": {"replicasQuery": f'{REPLICAS_METRIC}{{region="{{region}}",deployment="{{deployment}}"}}',
                         "headroomRatio": 1.2, "minReplicas": 1, "maxReplicas": 100, "horizonSeconds": 3600},
        "traffic": [{"kind": "GatewayAPI", "routes": services}, {"kind": "ExternalDNS", "routes": services}],
        "mode": "Automatic",
        "failback": {"stepPercent": 50, "stepIntervalSeconds": 10, "ratioThreshold": 0.7,
                     "cooldownSeconds": 20, "backoffSeconds": 30},
    }
    RegionFailoverSpec.model_validate(spec)
    return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": "RegionFailover",
            "metadata": {"name": "drill"}, "spec": spec}


def _install_services(cluster: LocalCluster, *, region: str, services: list[str], replicas: int) -> Any:
    """Create the namespace and every sample service in one region; its API client."""
    from kubernetes import client, config as kube_config, utils

    api = kube_config.new_client_from_config(config_file=str(cluster.kubeconfig))
    core = client.CoreV1Api(api)
    custom = client.CustomObjectsApi(api)
    with contextlib.suppress(client.ApiException):
        core.create_namespace({"metadata": {"name": NAMESPACE}})
    for name in services:
        utils.create_from_dict(api, deployment(name, replicas=replicas), namespace=NAMESPACE)
        utils.create_from_dict(api, service(name), namespace=NAMESPACE)
        custom.create_namespaced_custom_object(GATEWAY_GROUP, "v1", NAMESPACE, "httproutes", http_route(name))
        custom.create_namespaced_custom_object(DNS_GROUP, "v1alpha1", NAMESPACE, "dnsendpoints",
                                               dns_endpoint(name, region=region))
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


def run_drill(config: DrillConfig, *, print_: Callable[[str], None] = print) -> DrillReport:
    """Run the whole drill; the report (its files written into ``config.report_dir``)."""
    from kubernetes import client

    if config.fault_region not in {r.name for r in config.regions}:
        raise ValueError(f"--fault-region {config.fault_region!r} is none of {[r.name for r in config.regions]}")
    report = DrillReport()
    progress = Progress(print_=print_)
    services = [f"svc-{i:03d}" for i in range(config.services)]
    names = [r.name for r in config.regions]
    capacity = config.capacity()
    with drill_lock(), contextlib.ExitStack() as stack:
        progress.start(f"starting {len(names)} local regions ({', '.join(names)})")
        crds = [*crd_manifests().values(), *third_party_crds()]
        clusters = {name: LocalCluster(name=f"drill-{name}", crds=crds, audited_operator=True) for name in names}
        # One after the other, from this thread: each component dies with the thread that started
        # it (PR_SET_PDEATHSIG), so a worker thread's exit would take its region down.
        for cluster in clusters.values():
            stack.callback(cluster.stop)
            cluster.start()

        progress.start(f"installing {config.services} sample services in each region")
        start = time.time()
        curves = _curves(config, start=start)
        apis: dict[str, Any] = {}
        for region in config.regions:
            replicas = _replicas_for(region.peak_sps / config.services, capacity=capacity)
            apis[region.name] = _install_services(clusters[region.name], region=region.name, services=services,
                                                  replicas=replicas)
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
        for name in names:
            operator = OperatorProcess(kubeconfig=clusters[name].operator_kubeconfig, namespaces=[NAMESPACE],
                                       log_path=config.report_dir.resolve() / f"operator-{name}.log")
            config.report_dir.mkdir(parents=True, exist_ok=True)
            stack.enter_context(operator)
            prometheus.add_scrape_target(f"127.0.0.1:{operator.metrics_port}", labels={"operator_region": name})

        def status(name: str) -> dict[str, Any]:
            try:
                obj = customs[name].get_namespaced_custom_object(API_GROUP, API_VERSION, NAMESPACE,
                                                                 "regionfailovers", "drill")
            except client.ApiException:
                return {}
            return obj.get("status") or {}

        def line() -> dict[str, str]:
            flow = simulator.last
            out = {}
            for name in names:
                served = flow.served.get(name, 0.0) if flow else 0.0
                out[name] = f"{served:5.0f} sps {status(name).get('phase') or '-'}"
            return out

        def steady() -> bool:
            for name in names:
                verdicts = {r.get("name"): r.get("verdict") for r in status(name).get("regions") or []}
                if verdicts != dict.fromkeys(names, "Healthy"):
                    return False
            return all(_warm(customs[name]) >= config.services for name in names)

        progress.start("waiting for a steady state: every region Healthy, warm dark capacity everywhere")
        _until(steady, progress=progress, regions=line, timeout_seconds=config.timeout_seconds,
               what="a steady state")

        # The outage.
        fault_at = time.time()
        totals_before = _totals(simulator)
        progress.start(f"fault: {config.fault_region} fails ({config.fault})")
        _inject(config, simulator=simulator, api=apis[config.fault_region], services=services, fail=True,
                replicas=_replicas_for(_peak(config, config.fault_region) / config.services, capacity=capacity))

        def record() -> None:
            flow = simulator.last
            if flow is not None:
                report.samples.append((time.time() - fault_at, dict(flow.demanded), dict(flow.served),
                                       {n: status(n).get("phase") or "" for n in names}))

        def evacuation_of_fault() -> dict[str, Any] | None:
            for evacuation in status(config.fault_region).get("evacuations") or []:
                if evacuation.get("region") == config.fault_region:
                    return evacuation
            return None

        def settled() -> bool:
            record()
            evacuation = evacuation_of_fault()
            return bool(evacuation and (evacuation.get("timeline") or {}).get("settledAt"))

        progress.start("the operators detect, ungate and shift")
        _until(settled, progress=progress, regions=line, timeout_seconds=config.timeout_seconds,
               what=f"{config.fault_region}'s evacuation to settle")
        timeline = (evacuation_of_fault() or {}).get("timeline") or {}
        progress.start(f"evacuated; holding the outage {config.outage_seconds:.0f} s")
        hold_until = time.monotonic() + config.outage_seconds
        while time.monotonic() < hold_until:
            record()
            progress.show(line())
            time.sleep(1.0)

        healed_at = time.time()
        progress.start(f"healing {config.fault_region}; the operators fail back")
        _inject(config, simulator=simulator, api=apis[config.fault_region], services=services, fail=False,
                replicas=_replicas_for(_peak(config, config.fault_region) / config.services, capacity=capacity))

        def restored() -> bool:
            record()
            return all((status(n).get("phase") or "Steady") == "Steady" and not status(n).get("evacuations")
                       for n in names)

        _until(restored, progress=progress, regions=line, timeout_seconds=config.timeout_seconds,
               what="the failback to finish")
        restored_at = time.time()
        last = (status(config.fault_region).get("lastEvacuation") or timeline)
        totals_after = _totals(simulator)

        report.timeline = {"fault": 0.0}
        for key, label in (("decidedAt", "detected"), ("ungatedAt", "ungated"), ("shiftedAt", "shifted"),
                           ("settledAt", "settled")):
            at = _epoch(last.get(key))
            if at is not None:
                report.timeline[label] = at - fault_at
        report.timeline["healed"] = healed_at - fault_at
        started_back = _epoch(last.get("failbackStartedAt"))
        if started_back is not None:
            report.timeline["failback started"] = started_back - fault_at
        report.timeline["restored"] = restored_at - fault_at
        report.demanded_stream_starts = totals_after[0] - totals_before[0]
        report.lost_stream_starts = max(0.0, (totals_after[0] - totals_before[0]) - (totals_after[1] - totals_before[1]))
        progress.start("writing the report")
        report.files = write_report(report, config=config)
        for path in report.files:
            print_(f"  {path}")
        progress.start("stopping every process the drill started")
    return report


def _peak(config: DrillConfig, name: str) -> float:
    return next(r.peak_sps for r in config.regions if r.name == name)


def _warm(custom: Any) -> int:
    """DarkClusters with at least one warm dark pod (Ready, gated)."""
    found = custom.list_namespaced_custom_object(API_GROUP, API_VERSION, NAMESPACE, "darkclusters")
    return sum(1 for dc in found.get("items") or [] if ((dc.get("status") or {}).get("warmReplicas") or 0) > 0)


def _totals(simulator: TrafficSimulator) -> tuple[float, float]:
    """Stream starts demanded and served so far, over every region."""
    sample = simulator.registry.get_sample_value
    demanded = sum(sample("regionshift_drill_demanded_total", {"region": r}) or 0.0 for r in simulator.curves)
    served = sum(sample("regionshift_drill_served_total", {"region": r}) or 0.0 for r in simulator.curves)
    return demanded, served


def _inject(config: DrillConfig, *, simulator: TrafficSimulator, api: Any, services: list[str], fail: bool,
            replicas: int) -> None:
    """Fail (or heal) the fault region, through the simulator or through its cluster."""
    from kubernetes import client

    if config.fault == "simulator":
        simulator.impair(config.fault_region, 1.0 if fail else 0.0)
        return
    apps = client.AppsV1Api(api)
    for name in services:
        apps.patch_namespaced_deployment_scale(name, NAMESPACE, {"spec": {"replicas": 0 if fail else replicas}})


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def write_report(report: DrillReport, *, config: DrillConfig) -> list[Path]:
    """``report.md`` (and ``report.png`` when matplotlib is there) in ``config.report_dir``."""
    config.report_dir.mkdir(parents=True, exist_ok=True)
    lines = [
        "# regionshift drill",
        "",
        f"{len(config.regions)} regions ({', '.join(r.name for r in config.regions)}), {config.services} services, "
        f"fault in {config.fault_region} through the {config.fault}, signal sampled every {config.sample_seconds} s.",
        "",
        "| milestone | seconds after the fault |",
        "|---|---|",
        *(f"| {name} | {seconds:.1f} |" for name, seconds in report.timeline.items()),
        "",
        f"Stream starts demanded from the fault to the restore: {report.demanded_stream_starts:,.0f}; "
        f"lost (demanded minus served): {report.lost_stream_starts:,.0f}.",
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
    if not report.samples:
        return None
    fig, ax = plt.subplots(figsize=(10, 5))
    times = [s[0] for s in report.samples]
    for region in (r.name for r in config.regions):
        line, = ax.plot(times, [s[2].get(region, 0.0) for s in report.samples], label=f"{region} served")
        ax.plot(times, [s[1].get(region, 0.0) for s in report.samples], linestyle=":", color=line.get_color(),
                label=f"{region} demanded")
    for name, seconds in report.timeline.items():
        ax.axvline(seconds, color="grey", linewidth=0.8)
        ax.text(seconds, ax.get_ylim()[1], name, rotation=90, va="top", fontsize=8)
    ax.set_xlabel("seconds after the fault")
    ax.set_ylabel("stream starts per second")
    ax.legend(fontsize=8)
    path = config.report_dir / "report.png"
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path
