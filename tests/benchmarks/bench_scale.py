"""Benchmark: one operator for 20, 100 and 500 DarkClusters: idle API cost, sizing, stalls, memory.

For each size N, on a fresh local region (the real control plane of
:mod:`regionshift.local.cluster`, kwok nodes) and one real Prometheus shared by all sizes:

1. N participating Deployments (1 replica each, tiny requests) are created and run.
2. The operator starts as its own process (``python -m regionshift.cli run --kubeconfig ...
   --namespace bench --metrics-port ...``) under an identity of its own, which the API
   server alone audits (``LocalCluster(audited_operator=True)``).
3. A RegionFailover in DryRun selects the N Deployments: it creates one DarkCluster per
   Deployment, sized from Prometheus history (the signal of three regions and a replica
   history per Deployment, backfilled for ``--history-days`` at ``--history-step``, the
   operator's defaults), clamped to ``--dark-replicas`` dark pods each (min = max) so the
   region holds N × (1 + dark) pods.
4. Settled: the RegionFailover says ``Sizing: Sized`` and every DarkCluster has its
   forecast and all its dark replicas warm. Then ``--quiet-seconds`` of grace, then an idle
   window of ``--idle-seconds`` in which nothing but the operator acts.

Measured per size:

* idle API requests per second: every request of the operator's identity whose
  ``requestReceivedTimestamp`` falls in the idle window, from the kube-apiserver audit log
  (watches count once, when they start);
* one sizing run: ``regionshift_sizing_duration_seconds`` (sum / count) from the
  operator's /metrics when the operator observes it; otherwise from the audit log, from
  the operator's first DarkCluster create to the end of the RegionFailover status write
  that closes that run (the operator creates the DarkClusters at the start of its first
  sizing run and writes the Sizing condition at its end);
* the longest event-loop stall: ``regionshift_event_loop_lag_max_seconds`` (the
  operator's loop watch, :mod:`regionshift.loopwatch`), since the operator started, and
  how many stalls were over 100 ms (``regionshift_event_loop_stalls_total``: the loop's own
  work, or waits for the GIL or a CPU), and how many ticks of the loop watch were later than
  50 and 75 ms (``regionshift_event_loop_lateness_seconds``: how near 100 ms the run came);
  with ``--probe``, who ran in each stall (:mod:`tests.benchmarks.stall_probe`, from outside);
* the operator's peak RSS: ``VmHWM`` of its process (``/proc/<pid>/status``);
* wall time: Deployments created to all running (setup, not the operator's work), and
  RegionFailover created to settled.

The ratios compare each size with the smallest one of the same run (same process, same
machine, same minutes). Targets at 500 (figures, not asserts): at most 5 idle requests per
second, no stall over 100 ms, peak RSS at most 300 MiB.

    PYTHONPATH=operator:. python tests/benchmarks/bench_scale.py --sizes 20,100,500
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import ctypes
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families

from regionshift.api.crdgen import crd_manifests
from regionshift.local.cluster import LocalCluster, free_port
from regionshift.local.cluster.launcher import OPERATOR_USER
from tests.support.prometheus_server import Metric, PrometheusServer

NAMESPACE = "bench"
RF_NAME = "domain"
PARTICIPANT_LABEL = ("regionshift-bench", "participant")
REGIONS = {"east": 1000.0, "west": 800.0, "central": 600.0}
DAY = 86_400.0
USER_AGENT = "regionshift-bench"
TARGETS = {"idle requests/s": 5.0, "stall ms": 100.0, "peak RSS MiB": 300.0}
ROOT = Path(__file__).resolve().parents[2]


def say(text: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {text}", flush=True)


# ---------------------------------------------------------------------------- history


def signal_of(region: str, t: np.ndarray | float) -> np.ndarray | float:
    """The healthy signal: a daily wave around each region's level."""
    return REGIONS[region] * (1.0 + 0.3 * np.sin(2 * np.pi * np.asarray(t) / DAY))


def deployment_name(index: int) -> str:
    return f"svc-{index:04d}"


def replicas_of(index: int, t: np.ndarray) -> np.ndarray:
    """The replica history of participant ``index``: its autoscaler following the local signal."""
    per_replica = 150.0 + 7.0 * (index % 50)
    return np.round(1.0 + signal_of("east", t) / per_replica)


class BackfilledPrometheus(PrometheusServer):
    """A :class:`PrometheusServer` whose backfill is written as a stream, not held in memory.

    500 replica histories of two weeks at one minute are some ten million samples: as
    Python tuples and one joined string they would take gigabytes.
    """

    def __init__(self, *, series: dict[Metric, Callable[[np.ndarray], np.ndarray]], times: np.ndarray) -> None:
        super().__init__(history={metric: () for metric in series})
        self._series = series
        self._times = times

    def _backfill(self, input_path: Path, data_dir: Path) -> int:
        stamps = [str(int(t)) for t in self._times]
        with input_path.open("w") as out:
            for name in sorted({m.name for m in self._series}):
                out.write(f"# TYPE {name} gauge\n")
                for metric in sorted((m for m in self._series if m.name == name), key=lambda m: m.labels):
                    labels = ",".join(f'{k}="{v}"' for k, v in metric.labels)
                    prefix = f"{name}{{{labels}}} " if labels else f"{name} "
                    values = self._series[metric](self._times).tolist()
                    out.write("".join(f"{prefix}{v!r} {s}\n" for v, s in zip(values, stamps)))
            out.write("# EOF\n")
        completed = subprocess.run(
            ["promtool", "tsdb", "create-blocks-from", "openmetrics", "--max-block-duration=8760h", "--quiet",
             str(input_path), str(data_dir)],
            capture_output=True, text=True, timeout=1800, check=False,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"promtool failed: {completed.stderr.strip() or completed.stdout.strip()}")
        input_path.unlink()
        return len(self._series) * len(self._times)


def history_server(*, participants: int, days: float, step: int) -> BackfilledPrometheus:
    end = time.time() // 60 * 60
    times = np.arange(end - (days + 1) * DAY, end + 1, step, dtype=np.float64)
    series: dict[Metric, Callable[[np.ndarray], np.ndarray]] = {}
    for region in REGIONS:
        series[Metric.of("sps_bench", region=region)] = lambda t, r=region: signal_of(r, t)
    for index in range(participants):
        series[Metric.of("replicas_bench", deployment=deployment_name(index))] = lambda t, i=index: replicas_of(i, t)
    return BackfilledPrometheus(series=series, times=times)


# ---------------------------------------------------------------------------- objects


def participant(index: int) -> dict[str, Any]:
    name = deployment_name(index)
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "labels": {PARTICIPANT_LABEL[0]: PARTICIPANT_LABEL[1]}},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                 "template": {"metadata": {"labels": {"app": name}},
                              "spec": {"containers": [{"name": "c", "image": "registry.example/svc:1",
                                                       "resources": {"requests": {"cpu": "1m", "memory": "4Mi"}}}]}}},
    }


def region_failover(*, prometheus_url: str, dark: int, args: argparse.Namespace) -> dict[str, Any]:
    return {
        "apiVersion": "regionshift.io/v1alpha1", "kind": "RegionFailover", "metadata": {"name": RF_NAME},
        "spec": {
            "region": "east",
            "peers": [{"name": "west"}, {"name": "central"}],
            "signal": {"prometheusUrl": prometheus_url, "query": 'sps_bench{region="{region}"}',
                       "stepSeconds": args.step_seconds, "historyDays": args.history_days,
                       "historyStepSeconds": args.history_step, "refitIntervalSeconds": args.refit_seconds},
            "selector": {"matchLabels": {PARTICIPANT_LABEL[0]: PARTICIPANT_LABEL[1]}},
            "darkCapacity": {"minReplicas": dark, "maxReplicas": dark,
                             "replicasQuery": 'replicas_bench{deployment="{deployment}"}'},
            "mode": "DryRun",
        },
    }


# ---------------------------------------------------------------------------- the operator


def _die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def operator_process(*, kubeconfig: Path, metrics_port: int, log_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """``regionshift run`` as its own process; SIGTERM (then SIGKILL) on exit."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), str(ROOT), env.get("PYTHONPATH", "")])
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "regionshift.cli", "run", "--kubeconfig", str(kubeconfig),
             "--namespace", NAMESPACE, "--metrics-port", str(metrics_port)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
            start_new_session=True, preexec_fn=_die_with_parent,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the operator exited with {proc.returncode}; see {log_path}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=2).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the operator's /metrics did not answer in 60 s; see {log_path}")
            time.sleep(0.2)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def proc_status(pid: int) -> dict[str, int]:
    """VmHWM and VmRSS of a process, in KiB."""
    out = {}
    with contextlib.suppress(FileNotFoundError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def loop_thread_times(pid: int) -> tuple[float, float] | None:
    """Seconds the operator's main thread (kopf's event loop) ran on a CPU, and waited runnable for one.

    From ``/proc/<pid>/task/<pid>/schedstat``: the second figure is time the loop was ready to
    run while the machine's CPUs ran something else (other processes, or the operator's own
    threads), a cause of stalls no code of the operator's can remove.
    """
    with contextlib.suppress(OSError, ValueError):
        ran, waited, _ = Path(f"/proc/{pid}/task/{pid}/schedstat").read_text().split()
        return int(ran) / 1e9, int(waited) / 1e9
    return None


def process_cpu_seconds(pid: int) -> float | None:
    """User and system CPU seconds of the operator process, all its threads."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return None


def scrape(port: int) -> dict[str, float]:
    """The figures of the operator's /metrics this benchmark reads (absent ones left out)."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in ("regionshift_sizing_duration_seconds_sum", "regionshift_sizing_duration_seconds_count",
                               "regionshift_event_loop_lag_max_seconds"):
                out[sample.name] = sample.value
            elif sample.name == "regionshift_event_loop_stalls_total":
                out[f"stalls {sample.labels.get('kind', '?')}"] = sample.value
            elif sample.name == "regionshift_event_loop_lateness_seconds_bucket":
                out[f"lateness le {sample.labels['le']}"] = sample.value
            elif sample.name == "regionshift_event_loop_lateness_seconds_count":
                out["lateness count"] = sample.value
    return out


# ---------------------------------------------------------------------------- the audit log


@dataclass
class Request:
    received: float
    completed: float
    verb: str
    resource: str
    code: int | None


def _stamp(text: str) -> float:
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def read_audit(path: Path) -> list[Request]:
    """Every request of the operator's identity, once each (a watch's first stage carries it)."""
    seen: dict[str, Request] = {}
    with path.open() as lines:
        for line in lines:
            event = json.loads(line)
            if event.get("user", {}).get("username") != OPERATOR_USER:
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", event.get("requestURI", "?").split("?")[0])
            if ref.get("subresource"):
                resource += "/" + ref["subresource"]
            known = seen.get(event["auditID"])
            completed = _stamp(event["stageTimestamp"])
            if known is None:
                seen[event["auditID"]] = Request(
                    received=_stamp(event["requestReceivedTimestamp"]), completed=completed, verb=event["verb"],
                    resource=resource, code=(event.get("responseStatus") or {}).get("code"))
            else:
                known.completed = max(known.completed, completed)
    return sorted(seen.values(), key=lambda r: r.received)


def sizing_from_audit(requests: list[Request]) -> float | None:
    """First DarkCluster create to the end of the RegionFailover status write after it."""
    first = next((r for r in requests if r.verb == "create" and r.resource == "darkclusters"), None)
    if first is None:
        return None
    end = next((r for r in requests if r.received >= first.received and r.resource == "regionfailovers/status"
                and r.verb in ("patch", "update")), None)
    return None if end is None else end.completed - first.received


# ---------------------------------------------------------------------------- one size


@dataclass
class Result:
    participants: int
    dark_per_cluster: int
    pods: int
    setup_seconds: float | None = None
    settle_seconds: float | None = None
    settled: bool = False
    sizing_seconds: float | None = None
    sizing_source: str = "n/a"
    idle_window_seconds: float | None = None
    idle_requests: int | None = None
    idle_per_second: float | None = None
    idle_breakdown: dict[str, int] = field(default_factory=dict)
    requests_total: int | None = None
    stall_ms: float | None = None
    stalls_over_100ms: dict[str, int] = field(default_factory=dict)
    """Stalls over 100 ms by whose time they were: the loop's own work (it ran most of it), or waits."""
    late_ticks: dict[str, int] = field(default_factory=dict)
    """Ticks of the loop watch (one each 20 ms) later than 50 and 75 ms: how near the 100 ms the run came."""
    peak_rss_mib: float | None = None
    rss_end_mib: float | None = None
    loop_ran_seconds: float | None = None
    loop_waited_seconds: float | None = None
    process_cpu_seconds: float | None = None
    bench_cpu_seconds: float | None = None
    """CPU seconds this benchmark's own process used while the operator ran (its polling competes for the cores)."""
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)
    note: str = ""

    @property
    def idle_per_dark_cluster(self) -> float | None:
        return None if self.idle_per_second is None else self.idle_per_second / self.participants


def _parallel(calls: list[Callable[[], Any]], workers: int = 8) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()


def run_size(*, n: int, prometheus: PrometheusServer, args: argparse.Namespace, results_dir: Path) -> Result:
    dark = args.dark_replicas
    result = Result(participants=n, dark_per_cluster=dark, pods=n * (1 + dark), load_before=os.getloadavg())
    nodes = max(2, math.ceil(result.pods / 400))
    with LocalCluster(name=f"bench{n}", crds=list(crd_manifests().values()), nodes=nodes, audited_operator=True,
                      log=say) as cluster, cluster.api_client() as api:
        api.user_agent = USER_AGENT
        core, apps, custom = client.CoreV1Api(api), client.AppsV1Api(api), client.CustomObjectsApi(api)
        core.create_namespace({"metadata": {"name": NAMESPACE}})
        with contextlib.suppress(client.ApiException):  # kube-controller-manager creates it shortly
            core.create_namespaced_service_account(NAMESPACE, {"metadata": {"name": "default"}})

        started = time.monotonic()
        _parallel([lambda i=i: apps.create_namespaced_deployment(NAMESPACE, participant(i)) for i in range(n)])

        def running() -> int:
            return sum(1 for d in apps.list_namespaced_deployment(NAMESPACE).items if (d.status.ready_replicas or 0) >= 1)

        while (ready := running()) < n:
            if time.monotonic() - started > args.settle_timeout:
                raise RuntimeError(f"only {ready}/{n} Deployments running after {args.settle_timeout} s")
            time.sleep(2)
        result.setup_seconds = time.monotonic() - started
        say(f"N={n}: {n} Deployments running in {result.setup_seconds:.1f} s; starting the operator")

        port = free_port()
        op_log = results_dir / f"operator-{n}.log"
        with operator_process(kubeconfig=cluster.operator_kubeconfig, metrics_port=port, log_path=op_log) as proc:
            probe = None
            if args.probe:  # who ran in each stall, from outside the process (tests/benchmarks/stall_probe.py)
                probe = subprocess.Popen([sys.executable, str(Path(__file__).with_name("stall_probe.py")), "record",
                                          "--pid", str(proc.pid), "--out", str(results_dir / f"probe-{n}.json.gz")],
                                         preexec_fn=_die_with_parent)
            bench_cpu = time.process_time()
            now = time.time()
            for region in REGIONS:
                prometheus.exporter.set("sps_bench", {"region": region}, float(signal_of(region, now)))
            prometheus.exporter.wait_for_scrapes(2)
            peak_seen = 0
            started = time.monotonic()
            custom.create_namespaced_custom_object("regionshift.io", "v1alpha1", NAMESPACE, "regionfailovers",
                                                   region_failover(prometheus_url=prometheus.url, dark=dark, args=args))
            last_report = started
            while True:
                if proc.poll() is not None:
                    result.note = f"the operator exited with {proc.returncode}"
                    break
                rf = custom.get_namespaced_custom_object("regionshift.io", "v1alpha1", NAMESPACE, "regionfailovers", RF_NAME)
                sizing = next((c for c in (rf.get("status") or {}).get("conditions") or [] if c["type"] == "Sizing"), {})
                dcs = custom.list_namespaced_custom_object("regionshift.io", "v1alpha1", NAMESPACE, "darkclusters")["items"]
                statuses = [dc.get("status") or {} for dc in dcs]
                sized = sum(1 for s in statuses if s.get("forecastReplicas") is not None)
                warm = sum(1 for s in statuses if s.get("desiredReplicas") == dark and s.get("warmReplicas") == dark)
                peak_seen = max(peak_seen, proc_status(proc.pid).get("VmRSS", 0))
                elapsed = time.monotonic() - started
                if sizing.get("reason") == "Sized" and len(dcs) == n and sized == n and warm == n:
                    result.settled, result.settle_seconds = True, elapsed
                    break
                if time.monotonic() - last_report >= 30:
                    last_report = time.monotonic()
                    say(f"N={n}: {elapsed:.0f} s: {len(dcs)} DarkClusters, {sized} sized, {warm} warm; Sizing:"
                        f" {sizing.get('reason', '-')}; operator RSS {peak_seen / 1024:.0f} MiB")
                if elapsed > args.settle_timeout:
                    result.note = (f"not settled in {args.settle_timeout:.0f} s: {len(dcs)}/{n} DarkClusters,"
                                   f" {sized} sized, {warm} warm, Sizing {sizing.get('reason', '-')}"
                                   f" ({sizing.get('message', '')[:200]})")
                    break
                time.sleep(2)
            if result.settled:
                say(f"N={n}: settled {result.settle_seconds:.1f} s after the RegionFailover was created;"
                    f" {args.quiet_seconds:.0f} s of grace, then {args.idle_seconds:.0f} s idle")
            else:
                say(f"N={n}: {result.note}; measuring the idle window anyway")
            time.sleep(args.quiet_seconds)
            window_start = time.time()
            time.sleep(args.idle_seconds)
            window_end = time.time()
            alive = proc.poll() is None
            result.bench_cpu_seconds = time.process_time() - bench_cpu
            metrics = scrape(port) if alive else {}
            status = proc_status(proc.pid)
            result.peak_rss_mib = status.get("VmHWM", peak_seen) / 1024 if alive else peak_seen / 1024
            result.rss_end_mib = status.get("VmRSS", 0) / 1024 if alive else None
            times = loop_thread_times(proc.pid) if alive else None
            if times is not None:
                result.loop_ran_seconds, result.loop_waited_seconds = times
            result.process_cpu_seconds = process_cpu_seconds(proc.pid) if alive else None
            lag = metrics.get("regionshift_event_loop_lag_max_seconds")
            result.stall_ms = None if lag is None else lag * 1000
            result.stalls_over_100ms = {key.split(" ", 1)[1]: int(value) for key, value in metrics.items()
                                        if key.startswith("stalls ")}
            if "lateness count" in metrics:
                result.late_ticks = {f"over {bound} ms": int(metrics["lateness count"] - metrics[f"lateness le {le}"])
                                     for bound, le in (("50", "0.05"), ("75", "0.075")) if f"lateness le {le}" in metrics}
            if probe is not None:
                probe.send_signal(signal.SIGTERM)
                probe.wait(timeout=60)
            count = metrics.get("regionshift_sizing_duration_seconds_count") or 0
            requests = read_audit(cluster.audit_log)
            if count:
                result.sizing_seconds = metrics["regionshift_sizing_duration_seconds_sum"] / count
                result.sizing_source = f"metric, mean of {count:.0f}"
            else:
                result.sizing_seconds = sizing_from_audit(requests)
                result.sizing_source = "audit log" if result.sizing_seconds is not None else "n/a"
            idle = [r for r in requests if window_start <= r.received < window_end]
            result.idle_window_seconds = window_end - window_start
            result.idle_requests = len(idle)
            result.idle_per_second = len(idle) / result.idle_window_seconds
            result.idle_breakdown = dict(Counter(f"{r.verb} {r.resource}" for r in idle).most_common(8))
            result.requests_total = len(requests)
            if args.keep:
                (results_dir / f"audit-{n}.log").write_bytes(cluster.audit_log.read_bytes())
    result.load_after = os.getloadavg()
    return result


# ---------------------------------------------------------------------------- report


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(results: list[Result]) -> str:
    head = ("N", "dark pods", "setup s", "settle s", "sizing s", "idle req/s", "req/s per DC", "max stall ms",
            "peak RSS MiB", "load 1m")
    rows = [head]
    for r in results:
        rows.append((str(r.participants), str(r.participants * r.dark_per_cluster), _fmt(r.setup_seconds, ".1f"),
                     _fmt(r.settle_seconds, ".1f") + ("" if r.settled else " (not settled)"),
                     _fmt(r.sizing_seconds, ".2f") + f" ({r.sizing_source})", _fmt(r.idle_per_second, ".2f"),
                     _fmt(r.idle_per_dark_cluster, ".3f"), _fmt(r.stall_ms, ".0f"), _fmt(r.peak_rss_mib, ".0f"),
                     f"{r.load_before[0]:.1f}-{r.load_after[0]:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths)) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    out = ["\n".join(lines), ""]
    for r in results:
        out.append(f"N={r.participants}: idle window {_fmt(r.idle_window_seconds, '.0f')} s,"
                   f" {r.idle_requests} requests; top: {r.idle_breakdown}")
        out.append(f"N={r.participants}: operator requests in all {r.requests_total}; RSS at the end"
                   f" {_fmt(r.rss_end_mib, '.0f')} MiB" + (f"; {r.note}" if r.note else ""))
        out.append(f"N={r.participants}: operator CPU {_fmt(r.process_cpu_seconds, '.1f')} s in all (the benchmark's own"
                   f" {_fmt(r.bench_cpu_seconds, '.1f')} s meanwhile); its event loop's"
                   f" thread ran {_fmt(r.loop_ran_seconds, '.1f')} s and waited {_fmt(r.loop_waited_seconds, '.1f')} s"
                   f" for a CPU; stalls over 100 ms: {r.stalls_over_100ms or 'none'}; late ticks: {r.late_ticks}")
    base = results[0]
    for r in results[1:]:
        ratios = []
        if r.idle_per_dark_cluster is not None and base.idle_per_dark_cluster:
            ratios.append(f"idle requests per DarkCluster x{r.idle_per_dark_cluster / base.idle_per_dark_cluster:.2f}")
        if r.sizing_seconds is not None and base.sizing_seconds:
            per = (r.sizing_seconds / r.participants) / (base.sizing_seconds / base.participants)
            ratios.append(f"sizing time per Deployment x{per:.2f}")
        if r.peak_rss_mib and base.peak_rss_mib:
            ratios.append(f"peak RSS x{r.peak_rss_mib / base.peak_rss_mib:.2f}")
        if r.stall_ms is not None and base.stall_ms:
            ratios.append(f"longest stall x{r.stall_ms / base.stall_ms:.2f}")
        out.append(f"N={r.participants} against N={base.participants}: " + ", ".join(ratios))
    top = results[-1]
    checks = {
        "idle requests/s": top.idle_per_second,
        "stall ms": top.stall_ms,
        "peak RSS MiB": top.peak_rss_mib,
    }
    out.append(f"targets at N={top.participants}: " + ", ".join(
        f"{name} {_fmt(value, '.1f')} <= {limit:g}: {'met' if value is not None and value <= limit else 'MISSED'}"
        for (name, limit), value in zip(TARGETS.items(), checks.values())))
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="20,100,500", help="participating Deployments per run, comma-separated")
    parser.add_argument("--dark-replicas", type=int, default=1, help="dark replicas per DarkCluster (min = max)")
    parser.add_argument("--history-days", type=int, default=14, help="signal.historyDays (operator default 14)")
    parser.add_argument("--history-step", type=int, default=60, help="signal.historyStepSeconds (default 60)")
    parser.add_argument("--step-seconds", type=int, default=60, help="signal.stepSeconds: detection period")
    parser.add_argument("--refit-seconds", type=int, default=3600, help="signal.refitIntervalSeconds")
    parser.add_argument("--quiet-seconds", type=float, default=30.0, help="grace after settling")
    parser.add_argument("--idle-seconds", type=float, default=120.0, help="idle window measured")
    parser.add_argument("--settle-timeout", type=float, default=1200.0, help="give up settling after this")
    parser.add_argument("--results-dir", type=Path, default=None, help="operator logs and JSON (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="also keep the audit logs in the results dir")
    parser.add_argument("--probe", action="store_true",
                        help="record the operator's threads (stall_probe.py) and say who ran in each stall")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    results_dir = args.results_dir or Path(tempfile.mkdtemp(prefix="regionshift-bench-scale-"))
    results_dir.mkdir(parents=True, exist_ok=True)
    say(f"sizes {sizes}, {args.dark_replicas} dark replica(s) per DarkCluster, history {args.history_days} d at"
        f" {args.history_step} s; results in {results_dir}; load {os.getloadavg()}")
    started = time.monotonic()
    results: list[Result] = []
    with history_server(participants=max(sizes), days=args.history_days, step=args.history_step) as prometheus:
        say(f"Prometheus ready at {prometheus.url} in {time.monotonic() - started:.0f} s")
        for n in sizes:
            try:
                results.append(run_size(n=n, prometheus=prometheus, args=args, results_dir=results_dir))
            except Exception as exc:  # report what completed; a failed size is a result too
                say(f"N={n} failed: {exc!r}")
                results.append(Result(participants=n, dark_per_cluster=args.dark_replicas,
                                      pods=n * (1 + args.dark_replicas), note=f"failed: {exc!r}"[:300]))
            (results_dir / "results.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
            say(f"N={n} done: {results[-1]}")
            probe_file = results_dir / f"probe-{n}.json.gz"
            if args.probe and probe_file.exists():
                from tests.benchmarks.stall_probe import analyse

                say(f"N={n}: the stalls, seen from outside:\n" + analyse(probe=probe_file, log=results_dir / f"operator-{n}.log"))
    print()
    print(report(results))
    print(f"\ntotal {time.monotonic() - started:.0f} s; results in {results_dir}")


if __name__ == "__main__":
    main()
