"""Benchmark: two regions, N participating Deployments with one route each; the decision to every route shifted
and every dark pod Ready, and the API writes it takes, against scaling the savior from zero.

For each size N, on two fresh local regions ``east`` and ``west`` (the real control plane of
:mod:`regionshift.local.cluster`, kwok nodes, the Gateway API CRDs; both started with
``audited_operator=True``, so every request of the operators and of no one else is in each
API server's audit log), one real Prometheus shared by both regions and all sizes, and one
operator process per region (``python -m regionshift.cli run``, each its own scrape target
of the shared Prometheus, as in production):

1. In each region's namespace ``bench``: N participating Deployments ``svc-NNNN``
   (``--replicas`` each), their Services and one HTTPRoute per Deployment (one rule to the
   local Service, weight 100). In ``east`` also N Deployments ``cold-NNNN`` at 0 replicas: the
   baseline. GatewayAPI is the only provider (no ingress-nginx canary, no DNS record).
2. In each region a RegionFailover ``domain`` in Automatic mode: the shared signal
   (:mod:`tests.support.shared_signal`, one sample a second, 8 days backfilled), the N
   Deployments by label, ``darkCapacity.minReplicas = maxReplicas = --dark-replicas`` (one
   DarkCluster per Deployment, that many warm gated pods each), and the N routes under
   ``spec.traffic`` as ⌈N / 64⌉ GatewayAPI entries of at most 64 routes each (the schema
   allows 8 providers × 128 routes: 1,024 routes per RegionFailover).
   Every Deployment's replica history is the region's one series (the replicas query names
   ``{deployment}`` in a matcher no series carries): sizing is not measured here
   (``bench_scale.py`` does that), and the backfill stays small.
3. Steady: both regions judge both Healthy, every DarkCluster has all its dark replicas
   warm, both RegionFailovers are in phase Steady. Then ``west``'s signal drops to 10 %.
4. Measured from the test side by polling every ``--poll`` seconds: the decision as each
   region's status records it (``status.evacuations[].timeline.decidedAt``), every ``west``
   HTTPRoute carrying local 0 and a non-zero weight for ``svc-NNNN-east``, every ``east``
   dark pod Ready and ungated (carrying its target's ``app`` label); and the evacuation's
   own ``ungated/shifted/settledAfterSeconds``. API writes per operator (create, update,
   patch, delete in ``bench``) from west's decision until both regions say Evacuated, from
   each audit log.
5. Baseline, same run, same east cluster, right after the evacuation finished (or at the
   decision with ``--baseline-at-decision``, where it competes with the evacuation for the
   same two cores): the N ``cold`` Deployments scaled from 0 to ``--dark-replicas`` (one
   scale patch each, 16 at a time) and timed until all their pods are Ready. kwok's pod
   stages as the local cluster has them start a pod without delay (no image pull, no
   application start), so this is the best case of scaling at failover time;
   ``--cold-start 30s`` gives the cold pods a simulated start (the
   ``regionshift.io/simulated-start`` annotation of the local cluster's pod stages). The
   baseline's writes are the N scale patches plus the same N route writes.

    PYTHONPATH=operator:. python tests/benchmarks/bench_evacuation.py --sizes 20,100,500
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import datetime as dt
import json
import math
import os
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client

from regionshift.api.crdgen import crd_manifests
from regionshift.api.models import TrafficProviderKind
from regionshift.local.cluster import LocalCluster, free_port, third_party_crds
from tests.support.audit import writes
from tests.support.operator_process import OperatorProcess
from tests.support.prometheus_server import PrometheusServer
from tests.support.region_failover import region_failover
from tests.support.region_traffic import HOST, deployment, http_route, service
from tests.support.shared_signal import LiveSignal, SignalScenario, shared_prometheus
from tests.support.synthetic_day import SyntheticDay

NAMESPACE = "bench"
REGIONS = ("east", "west")
EVACUATED, SAVIOR = "west", "east"
ROUTES_PER_PROVIDER = 64
DARK_LABEL = "regionshift.io/dark-cluster"
COLD_LABEL = ("bench-cold", "true")
GATEWAY = "gateway.networking.k8s.io"
RF = ("regionshift.io", "v1alpha1")
TARGET_SECONDS = 10.0
DROP_FACTOR = 0.1


def say(text: str) -> None:
    print(f"[{dt.datetime.now(dt.timezone.utc):%H:%M:%S}] {text}", flush=True)


def name_of(index: int) -> str:
    return f"svc-{index:04d}"


def parse_time(text: str | None) -> float | None:
    return None if not text else dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _parallel(calls: list[Callable[[], Any]], workers: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def scenario_now() -> SignalScenario:
    return SignalScenario(name="bench", run=SyntheticDay(start=time.time(), levels={"east": 1000.0, "west": 800.0}),
                          deployments=("all",))


REPLICAS_QUERY = 'replicas_bench{region="{region}",deployment="all",bench_participant!="{deployment}"}'
"""Every Deployment's replica history is its region's one series (no series carries ``bench_participant``)."""


# ---------------------------------------------------------------------------- one region


@dataclass
class Side:
    """One region of a size's run: its cluster, clients and operator."""

    name: str
    cluster: LocalCluster
    api: client.ApiClient
    gateway: str
    operator: OperatorProcess | None = None

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.api)

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def failover(self) -> dict[str, Any]:
        return self.custom.get_namespaced_custom_object(*RF, NAMESPACE, "regionfailovers", "domain")

    def status(self) -> dict[str, Any]:
        return self.failover().get("status") or {}

    def dark_clusters(self) -> list[dict[str, Any]]:
        return self.custom.list_namespaced_custom_object(*RF, NAMESPACE, "darkclusters")["items"]

    def pods(self, selector: str) -> list[dict[str, Any]]:
        items = self.core.list_namespaced_pod(NAMESPACE, label_selector=selector).items
        return [p for p in items if p.metadata.deletion_timestamp is None]


def pod_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in (pod.status.conditions or []))


def evacuation_of(status: dict[str, Any], region: str) -> dict[str, Any] | None:
    return next((e for e in status.get("evacuations") or [] if e.get("region") == region), None)


# ---------------------------------------------------------------------------- result


@dataclass
class Result:
    participants: int
    replicas: int
    dark: int
    setup_seconds: float | None = None
    steady_seconds: float | None = None
    detection_seconds: float | None = None
    """Signal dropped (stored in Prometheus) to west's decidedAt."""
    decided_skew_seconds: float | None = None
    """east's decidedAt minus west's."""
    timeline: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each region's timeline of the evacuation of west, as its status has it."""
    routes_shifted_seconds: float | None = None
    """Test side: west's decidedAt to every west route seen shifted."""
    dark_ready_seconds: float | None = None
    """Test side: west's decidedAt to every east dark pod seen Ready and ungated."""
    both_seconds: float | None = None
    first_route_seconds: float | None = None
    first_dark_seconds: float | None = None
    writes: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per region: writes by ``verb resource`` from west's decision until both regions say Evacuated."""
    write_totals: dict[str, int] = field(default_factory=dict)
    failed_writes: dict[str, int] = field(default_factory=dict)
    reads: dict[str, int] = field(default_factory=dict)
    stages: dict[str, dict[str, tuple[int, float, float]]] = field(default_factory=dict)
    """Per region: the operator's succeeded writes by 'verb resource [field manager]': (count, first s, last s)
    after west's decision (where the seconds go)."""
    baseline_mode: str = "after"
    baseline_patch_seconds: float | None = None
    baseline_ready_seconds: float | None = None
    baseline_writes: int | None = None
    cold_start: str = "none (kwok default)"
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    operator_rss_mib: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def evacuation_seconds(self) -> float | None:
        return self.both_seconds

    @property
    def route_shift_seconds(self) -> float | None:
        """How long west's operator took writing the routes (its shiftedAfter minus its ungatedAfter)."""
        west = self.timeline.get(EVACUATED) or {}
        shifted, ungated = west.get("shiftedAfterSeconds"), west.get("ungatedAfterSeconds")
        return None if shifted is None or ungated is None else shifted - ungated

    @property
    def baseline_seconds(self) -> float | None:
        if self.baseline_ready_seconds is None:
            return None
        return self.baseline_ready_seconds + (self.route_shift_seconds or 0.0)


# ---------------------------------------------------------------------------- setup


def install(side: Side, *, n: int, replicas: int, dark: int, cold_start: str | None) -> None:
    calls: list[Callable[[], Any]] = []
    for i in range(n):
        name = name_of(i)
        calls.append(lambda name=name: side.apps.create_namespaced_deployment(NAMESPACE, deployment(name, replicas=replicas)))
        calls.append(lambda name=name: side.core.create_namespaced_service(NAMESPACE, service(name)))
        calls.append(lambda name=name: side.custom.create_namespaced_custom_object(
            GATEWAY, "v1", NAMESPACE, "httproutes", http_route(name, host=f"{name}.{HOST}")))
        if side.name == SAVIOR:
            cold = deployment(f"cold-{i:04d}", replicas=0, labels={COLD_LABEL[0]: COLD_LABEL[1]})
            cold["spec"]["template"]["metadata"]["labels"][COLD_LABEL[0]] = COLD_LABEL[1]
            if cold_start:
                cold["spec"]["template"]["metadata"]["annotations"] = {"regionshift.io/simulated-start": cold_start}
            calls.append(lambda cold=cold: side.apps.create_namespaced_deployment(NAMESPACE, cold))
    _parallel(calls)


def failover(side: Side, *, peer: Side, n: int, dark: int, prometheus: PrometheusServer,
             scenario: SignalScenario) -> dict[str, Any]:
    names = [name_of(i) for i in range(n)]
    chunks = [names[i:i + ROUTES_PER_PROVIDER] for i in range(0, n, ROUTES_PER_PROVIDER)]
    return region_failover(
        region=side.name, peers=[{"name": peer.name, "gatewayAddress": peer.gateway, "dnsRecord": HOST}],
        prometheus_url=prometheus.url, scenario=scenario, mode="Automatic",
        providers=(TrafficProviderKind.GATEWAY_API,),
        detection={"dwellSeconds": 0},
        dark_capacity={"minReplicas": dark, "maxReplicas": dark, "replicasQuery": REPLICAS_QUERY},
        failback={"cooldownSeconds": 3600},
        traffic=[{"kind": TrafficProviderKind.GATEWAY_API.value, "routes": chunk} for chunk in chunks],
    )


def steady(side: Side, *, n: int, dark: int) -> str | None:
    """None when the region is steady; otherwise what it waits for."""
    status = side.status()
    verdicts = {r["name"]: r.get("verdict") for r in status.get("regions") or []}
    if verdicts != {"east": "Healthy", "west": "Healthy"}:
        return f"verdicts {verdicts}"
    if status.get("phase") != "Steady":
        return f"phase {status.get('phase')}"
    dcs = side.dark_clusters()
    warm = sum(1 for dc in dcs if (dc.get("status") or {}).get("warmReplicas", 0) >= dark)
    if len(dcs) != n or warm != n:
        return f"{len(dcs)} DarkClusters, {warm} warm"
    return None


# ---------------------------------------------------------------------------- measurement


def shifted_routes(west: Side) -> int:
    routes = west.custom.list_namespaced_custom_object(GATEWAY, "v1", NAMESPACE, "httproutes")["items"]
    count = 0
    for route in routes:
        name = route["metadata"]["name"]
        refs = {ref["name"]: int(ref.get("weight", 1)) for ref in route["spec"]["rules"][0].get("backendRefs") or []}
        if refs.get(name) == 0 and refs.get(f"{name}-{SAVIOR}", 0) > 0:
            count += 1
    return count


def dark_serving(east: Side) -> tuple[int, int]:
    pods = east.pods(DARK_LABEL)
    return sum(1 for p in pods if "app" in (p.metadata.labels or {}) and pod_ready(p)), len(pods)


def scale_from_zero(east: Side, *, n: int, dark: int, timeout: float) -> tuple[float, float]:
    """(seconds to send the N scale patches, seconds until all N × dark pods are Ready), from the first patch."""
    started = time.time()
    _parallel([lambda i=i: east.apps.patch_namespaced_deployment_scale(f"cold-{i:04d}", NAMESPACE,
                                                                        {"spec": {"replicas": dark}})
               for i in range(n)], workers=16)
    patched = time.time() - started
    selector = f"{COLD_LABEL[0]}={COLD_LABEL[1]}"
    while True:
        ready = sum(1 for p in east.pods(selector) if pod_ready(p))
        if ready >= n * dark:
            return patched, time.time() - started
        if time.time() - started > timeout:
            raise RuntimeError(f"baseline: only {ready}/{n * dark} cold pods Ready after {timeout:.0f} s")
        time.sleep(0.2)


def audit_counts(log: Path, *, start: float, end: float) -> tuple[Counter[str], int, int]:
    """(succeeded writes by 'verb resource', failed writes, reads) of the operator in ``bench`` within the window."""
    since = dt.datetime.fromtimestamp(start - 1, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    done: Counter[str] = Counter()
    failed = 0
    for write in writes(log, namespace=NAMESPACE, since=since):
        at = parse_time(write.at)
        if at is None or not start <= at <= end:
            continue
        if write.succeeded:
            done[f"{write.verb} {write.resource}"] += 1
        else:
            failed += 1
    reads = 0
    with log.open() as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("stage") != "ResponseComplete" or event.get("verb") not in ("get", "list"):
                continue
            at = parse_time(event.get("requestReceivedTimestamp"))
            if at is not None and start <= at <= end:
                reads += 1
    return done, failed, reads


def write_stages(log: Path, *, start: float, end: float, base: float) -> dict[str, tuple[int, float, float]]:
    """The operator's succeeded writes in ``bench`` within the window by kind and field manager: (count, first, last),
    in seconds after ``base`` (west's decision; the savior may decide a little earlier)."""
    since = dt.datetime.fromtimestamp(start - 1, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    spans: dict[str, list[float]] = {}
    for write in writes(log, namespace=NAMESPACE, since=since):
        at = parse_time(write.at)
        if at is None or not start <= at <= end or not write.succeeded:
            continue
        spans.setdefault(f"{write.verb} {write.resource} [{write.field_manager or '-'}]", []).append(at - base)
    return {kind: (len(times), min(times), max(times)) for kind, times in sorted(spans.items())}


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------- one size


@contextlib.contextmanager
def regions(n: int, *, replicas: int, dark: int) -> Iterator[dict[str, Side]]:
    crds = [*crd_manifests().values(), *third_party_crds(names=("gateway-api",))]
    pods = n * (replicas + 2 * dark)
    with contextlib.ExitStack() as stack:
        sides: dict[str, Side] = {}
        for name in REGIONS:
            cluster = stack.enter_context(LocalCluster(name=f"evac-{name}-{n}", crds=crds, audited_operator=True,
                                                       nodes=max(2, math.ceil(pods / 400)), log=lambda _: None))
            api = stack.enter_context(cluster.api_client())
            api.configuration.connection_pool_maxsize = 16
            sides[name] = Side(name=name, cluster=cluster, api=api, gateway=f"{name}.localhost:{free_port()}")
        try:
            yield sides
        finally:
            for side in sides.values():
                if side.operator is not None and side.operator.running():
                    side.operator.kill()


def run_size(*, n: int, prometheus: PrometheusServer, live: LiveSignal, scenario: SignalScenario,
             args: argparse.Namespace, results_dir: Path) -> Result:
    dark, replicas = args.dark_replicas, args.replicas
    result = Result(participants=n, replicas=replicas, dark=dark, load_before=os.getloadavg(),
                    baseline_mode="at the decision" if args.baseline_at_decision else "after the evacuation",
                    cold_start=args.cold_start or "none (kwok default: Ready at once)")
    with regions(n, replicas=replicas, dark=dark) as sides:
        east, west = sides[SAVIOR], sides[EVACUATED]
        started = time.monotonic()
        for side in sides.values():
            side.core.create_namespace({"metadata": {"name": NAMESPACE}})
            with contextlib.suppress(client.ApiException):
                side.core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "default"}})
        _parallel([lambda s=s: install(s, n=n, replicas=replicas, dark=dark, cold_start=args.cold_start)
                   for s in sides.values()], workers=2)
        for side in sides.values():
            while sum(1 for d in side.apps.list_namespaced_deployment(NAMESPACE, label_selector="regionshift.io/participant=true").items
                      if (d.status.ready_replicas or 0) >= replicas) < n:
                if time.monotonic() - started > args.timeout:
                    raise RuntimeError(f"{side.name}: Deployments not running after {args.timeout:.0f} s")
                time.sleep(2)
        result.setup_seconds = time.monotonic() - started
        say(f"N={n}: objects created and Deployments running in both regions in {result.setup_seconds:.1f} s")

        started = time.monotonic()
        for side in sides.values():
            peer = west if side is east else east
            side.custom.create_namespaced_custom_object(*RF, NAMESPACE, "regionfailovers",
                                                        failover(side, peer=peer, n=n, dark=dark,
                                                                 prometheus=prometheus, scenario=scenario))
            side.operator = OperatorProcess(kubeconfig=side.cluster.operator_kubeconfig, namespaces=[NAMESPACE],
                                            log_path=results_dir / f"operator-{side.name}-{n}.log")
            side.operator.start(timeout_seconds=120)
            prometheus.add_scrape_target(f"127.0.0.1:{side.operator.metrics_port}",
                                         labels={"operator_region": side.name})
        last = time.monotonic()
        while waiting := {s.name: w for s in sides.values() if (w := steady(s, n=n, dark=dark)) is not None}:
            for side in sides.values():
                assert side.operator is not None
                if not side.operator.running():
                    raise RuntimeError(f"{side.name}'s operator exited: {side.operator.log_tail(40)}")
            if time.monotonic() - started > args.timeout:
                raise RuntimeError(f"not steady after {args.timeout:.0f} s: {waiting}")
            if time.monotonic() - last > 30:
                last = time.monotonic()
                say(f"N={n}: {time.monotonic() - started:.0f} s, waiting for {waiting}")
            time.sleep(2)
        result.steady_seconds = time.monotonic() - started
        say(f"N={n}: steady {result.steady_seconds:.1f} s after the RegionFailovers; {args.quiet:.0f} s of quiet,"
            f" then west's signal drops to {DROP_FACTOR:.0%}")
        time.sleep(args.quiet)

        result.load_before = os.getloadavg()
        dropped = time.time()
        live.scale(**{EVACUATED: DROP_FACTOR})
        stored = time.time()
        decided: dict[str, float] = {}
        seen: dict[str, float] = {}
        baseline: concurrent.futures.Future[tuple[float, float]] | None = None
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        while True:
            now = time.time()
            for side in sides.values():
                if side.name not in decided:
                    evac = evacuation_of(side.status(), EVACUATED)
                    if evac and (at := parse_time((evac.get("timeline") or {}).get("decidedAt"))):
                        decided[side.name] = at
                        say(f"N={n}: {side.name} decided at +{at - dropped:.2f} s after the drop")
                        if side is east and args.baseline_at_decision:
                            baseline = pool.submit(scale_from_zero, east, n=n, dark=dark, timeout=args.timeout)
            if EVACUATED in decided:
                if "routes" not in seen:
                    count = shifted_routes(west)
                    if count and "first route" not in seen:
                        seen["first route"] = now
                    if count >= n:
                        seen["routes"] = now
                if "dark" not in seen:
                    serving, total = dark_serving(east)
                    if serving and "first dark" not in seen:
                        seen["first dark"] = now
                    if serving >= n * dark and total >= n * dark:
                        seen["dark"] = now
                if "routes" in seen and "dark" in seen:
                    break
            if now - dropped > args.timeout:
                result.note = f"not evacuated in {args.timeout:.0f} s: seen {sorted(seen)}, decided {sorted(decided)}"
                break
            time.sleep(args.poll)
        end = time.time()
        if EVACUATED in decided:
            base = decided[EVACUATED]
            result.detection_seconds = base - stored
            if SAVIOR in decided:
                result.decided_skew_seconds = decided[SAVIOR] - base
            for key, attr in (("routes", "routes_shifted_seconds"), ("dark", "dark_ready_seconds"),
                              ("first route", "first_route_seconds"), ("first dark", "first_dark_seconds")):
                if key in seen:
                    setattr(result, attr, seen[key] - base)
            if "routes" in seen and "dark" in seen:
                result.both_seconds = max(seen["routes"], seen["dark"]) - base
            # wait until both statuses say Evacuated, for the operators' own figures
            deadline = time.time() + 60
            while time.time() < deadline:
                statuses = {s.name: s.status() for s in sides.values()}
                if all(st.get("phase") == "Evacuated" for st in statuses.values()):
                    break
                time.sleep(0.5)
            for name, st in statuses.items():
                evac = evacuation_of(st, EVACUATED) or {}
                result.timeline[name] = {**(evac.get("timeline") or {}), "phase": st.get("phase")}
            settled = time.time()  # both regions say Evacuated: the evacuation's writes (and Events) are done
            time.sleep(2)  # the audit log is written as requests complete
            for side in sides.values():
                counts, failed, reads = audit_counts(side.cluster.audit_log, start=base, end=settled)
                result.writes[side.name] = dict(counts.most_common())
                result.write_totals[side.name] = sum(counts.values())
                result.failed_writes[side.name] = failed
                result.reads[side.name] = reads
                result.stages[side.name] = write_stages(side.cluster.audit_log, start=min(decided.values()),
                                                        end=settled, base=base)
        for side in sides.values():
            assert side.operator is not None
            result.operator_rss_mib[side.name] = rss_mib(side.operator.pid)
        if baseline is None and not result.note:
            say(f"N={n}: baseline: scaling {n} cold Deployments from 0 to {dark} in east")
            baseline = pool.submit(scale_from_zero, east, n=n, dark=dark, timeout=args.timeout)
        if baseline is not None:
            try:
                result.baseline_patch_seconds, result.baseline_ready_seconds = baseline.result()
                result.baseline_writes = n + n  # N scale patches, plus the N route writes of the shift
            except Exception as exc:  # a failed baseline is a result too
                result.note += f" baseline failed: {exc!r}"
        pool.shutdown()
        for side in sides.values():
            prometheus.remove_scrape_target(f"127.0.0.1:{side.operator.metrics_port}")  # type: ignore[union-attr]
            if args.keep:
                (results_dir / f"audit-{side.name}-{n}.log").write_bytes(side.cluster.audit_log.read_bytes())
        live.healthy()
    result.load_after = os.getloadavg()
    return result


# ---------------------------------------------------------------------------- report


def _f(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[Result]) -> str:
    head = ("N", "dark pods", "detect s", "routes shifted s", "dark Ready s", "both s", "operator: ungated/shifted/settled s (west ; east)",
            "writes west", "writes east", "scale from 0 s", "+ route writes s", "writes", "ratio", "load 1m")
    rows = [head]
    for r in results:
        w, e = r.timeline.get(EVACUATED) or {}, r.timeline.get(SAVIOR) or {}
        fields = ("ungatedAfterSeconds", "shiftedAfterSeconds", "settledAfterSeconds")
        op = " / ".join(_f(w.get(k)) for k in fields) + " ; " + " / ".join(_f(e.get(k)) for k in fields)
        ratio = (f"{r.both_seconds / r.baseline_seconds:.2f}" if r.both_seconds and r.baseline_seconds else "-")
        rows.append((str(r.participants), str(r.participants * r.dark), _f(r.detection_seconds),
                     _f(r.routes_shifted_seconds), _f(r.dark_ready_seconds), _f(r.both_seconds), op,
                     str(r.write_totals.get(EVACUATED, "-")), str(r.write_totals.get(SAVIOR, "-")),
                     _f(r.baseline_ready_seconds), _f(r.baseline_seconds),
                     "-" if r.baseline_writes is None else str(r.baseline_writes), ratio,
                     f"{r.load_before[0]:.1f}-{r.load_after[0]:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(cell.ljust(width) for cell, width in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * width for width in widths) + " |")
    out = ["\n".join(lines), ""]
    for r in results:
        out.append(f"N={r.participants}: writes west {r.writes.get(EVACUATED)} (failed {r.failed_writes.get(EVACUATED)},"
                   f" reads {r.reads.get(EVACUATED)}); east {r.writes.get(SAVIOR)} (failed"
                   f" {r.failed_writes.get(SAVIOR)}, reads {r.reads.get(SAVIOR)})")
        out.append(f"N={r.participants}: east decided {_f(r.decided_skew_seconds)} s after west; first route"
                   f" {_f(r.first_route_seconds)} s, first dark pod {_f(r.first_dark_seconds)} s after west's decision;"
                   f" baseline {r.baseline_mode}, cold start {r.cold_start}, patches sent in"
                   f" {_f(r.baseline_patch_seconds)} s; setup {_f(r.setup_seconds, '.0f')} s, steady after"
                   f" {_f(r.steady_seconds, '.0f')} s; operators' peak RSS {r.operator_rss_mib}"
                   + (f"; {r.note}" if r.note else ""))
    for r in results:
        for region, stages in r.stages.items():
            out.append(f"N={r.participants}: {region}'s writes after west's decision (count, first s, last s): "
                       + "; ".join(f"{kind} {n}, {first:.1f}-{last:.1f}" for kind, (n, first, last) in stages.items()))
    top = results[-1]
    if top.both_seconds is not None:
        verdict = "met" if top.both_seconds < TARGET_SECONDS else "MISSED"
        out.append(f"target at N={top.participants}: decision to every route shifted and every dark pod Ready"
                   f" {top.both_seconds:.2f} s < {TARGET_SECONDS:g} s: {verdict}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,100,500", help="participating Deployments per run, comma-separated")
    parser.add_argument("--replicas", type=int, default=1, help="replicas of each participating Deployment")
    parser.add_argument("--dark-replicas", type=int, default=1, help="dark replicas per DarkCluster (min = max)")
    parser.add_argument("--poll", type=float, default=0.2, help="seconds between the test side's polls")
    parser.add_argument("--quiet", type=float, default=10.0, help="seconds of quiet after steady, before the drop")
    parser.add_argument("--timeout", type=float, default=1200.0, help="give up a stage after this many seconds")
    parser.add_argument("--baseline-at-decision", action="store_true",
                        help="scale the cold Deployments when east decides, beside the evacuation")
    parser.add_argument("--cold-start", default=None, help="simulated start of each cold pod (a Go duration)")
    parser.add_argument("--results-dir", type=Path, default=None, help="operator logs and JSON (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="also keep the audit logs in the results dir")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results_dir = args.results_dir or Path(tempfile.mkdtemp(prefix="regionshift-bench-evacuation-"))
    results_dir.mkdir(parents=True, exist_ok=True)
    say(f"sizes {sizes}, {args.replicas} replica(s) and {args.dark_replicas} dark replica(s) per Deployment;"
        f" results in {results_dir}; load {os.getloadavg()}")
    started = time.monotonic()
    scenario = scenario_now()
    results: list[Result] = []
    with shared_prometheus([scenario]) as prometheus, LiveSignal(prometheus=prometheus, scenario=scenario) as live:
        say(f"Prometheus ready at {prometheus.url} in {time.monotonic() - started:.0f} s")
        for n in sizes:
            try:
                results.append(run_size(n=n, prometheus=prometheus, live=live, scenario=scenario, args=args,
                                        results_dir=results_dir))
            except Exception as exc:  # a failed size is a result too
                say(f"N={n} failed: {exc!r}")
                results.append(Result(participants=n, replicas=args.replicas, dark=args.dark_replicas,
                                      note=f"failed: {exc!r}"[:400]))
            (results_dir / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
            say(f"N={n} done")
            print(report(results[-1:]), flush=True)
    print()
    print(report(results))
    print(f"\ntotal {time.monotonic() - started:.0f} s; results in {results_dir}")


if __name__ == "__main__":
    main()
