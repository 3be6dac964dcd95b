"""The drill's pieces that need no cluster: its RegionFailovers, its history, its lock, its report,
the baseline's arithmetic and the operators' usage figures."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml

from regionshift.api.models import RegionFailoverSpec
from regionshift.local import drill
from regionshift.local.cluster import launcher
from regionshift.local.drill import (
    DrillConfig,
    DrillRefused,
    DrillReport,
    OperatorUsage,
    RunResult,
    api_requests,
    drill_lock,
    failover_shares,
    lost_ratio,
    process_usage,
    region_failover,
    scale_at_failover,
    traffic_providers,
    write_report,
)
from regionshift.local.sample_traffic import deployment

SERVICES = ["svc-000", "svc-001"]
GATEWAYS = {r.name: f"{r.name}.localhost:4000" for r in drill.DEFAULT_REGIONS}


def test_each_region_failover_is_automatic_sampled_as_configured_and_names_the_other_regions_as_peers() -> None:
    config = DrillConfig(services=2, sample_seconds=5)
    manifest = region_failover(config, region="us-west", gateways=GATEWAYS, prometheus_url="http://127.0.0.1:9090",
                               services=SERVICES)
    spec = RegionFailoverSpec.model_validate(manifest["spec"])
    assert getattr(spec.mode, "value", spec.mode) == "Automatic"
    assert spec.signal.step_seconds == 5
    assert sorted(p.name for p in spec.peers) == ["eu-west", "us-east"]
    assert {getattr(t.kind, "value", t.kind): t.routes for t in spec.traffic} == {"GatewayAPI": SERVICES, "ExternalDNS": SERVICES}


def test_the_history_covers_the_forecasts_window_for_the_signal_and_each_regions_replicas() -> None:
    config = DrillConfig(services=2)
    curves = drill._curves(config, start=1_000_000.0)
    history = drill._history(config, curves, end=1_000_000.0, services=SERVICES)
    signal = {m.labels: points for m, points in history.items() if m.name == drill.SIGNAL_METRIC}
    replicas = [m for m in history if m.name == drill.REPLICAS_METRIC]
    assert len(signal) == 3 and len(replicas) == 3  # one series a region, whatever the number of services
    points = next(iter(signal.values()))
    assert points[-1][0] == 1_000_000.0
    assert points[-1][0] - points[0][0] == drill.HISTORY_DAYS * 86_400
    assert all(value >= 0 for _, value in points)


def test_a_services_replicas_cover_its_traffic_with_headroom() -> None:
    assert drill._replicas_for(0.0, capacity=10.0) == 1
    assert drill._replicas_for(25.0, capacity=10.0) == 3  # 30 with 20 % headroom


def test_a_second_drill_is_refused_while_one_holds_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drill, "state_root", lambda: tmp_path)
    with drill_lock():
        with pytest.raises(DrillRefused, match="already running"):
            with drill_lock():
                pass
    with drill_lock():  # released: the next drill runs
        pass


def samples(served: float) -> list[drill.Sample]:
    return [(0.0, {"us-east": 600.0}, {"us-east": 600.0}, {"us-east": "Steady"}),
            (1.0, {"us-east": 600.0}, {"us-east": served}, {"us-east": "Steady"})]


def test_the_report_has_the_timeline_and_the_stream_starts_lost(tmp_path: Path) -> None:
    config = DrillConfig(services=2, report_dir=tmp_path, baseline=False)
    report = DrillReport(regionshift=RunResult("regionshift", timeline={"fault": 0.0, "detected": 16.2, "settled": 21.0},
                                               lost_stream_starts=1234.0, demanded_stream_starts=100_000.0,
                                               samples=samples(590.0)))
    files = write_report(report, config=config)
    text = (tmp_path / "report.md").read_text()
    assert "| detected | 16.2 |" in text and "lost (demanded minus served): 1,234" in text
    assert files == [tmp_path / "report.md", tmp_path / "report.png"]
    assert report.ratio is None


def test_the_report_shows_both_runs_side_by_side_the_ratio_and_each_operators_usage(tmp_path: Path) -> None:
    config = DrillConfig(services=2, report_dir=tmp_path)
    report = DrillReport(
        regionshift=RunResult("regionshift", timeline={"fault": 0.0, "detected": 16.2, "settled": 21.0,
                                                       "restored": 130.0},
                              lost_stream_starts=1_000.0, demanded_stream_starts=100_000.0, lost_after_detection=200.0,
                              samples=samples(590.0)),
        baseline=RunResult("baseline", timeline={"fault": 0.0, "detected": 17.0, "capacity ready": 78.5,
                                                 "restored": 90.0},
                           lost_stream_starts=12_500.0, demanded_stream_starts=70_000.0, lost_after_detection=11_700.0,
                           samples=samples(300.0)),
        operators=[OperatorUsage(region="us-east", cpu_seconds=42.5, peak_rss_bytes=150 * 2**20, api_requests=1_234,
                                 api_writes=321, outage_api_requests=200)],
    )
    write_report(report, config=config)
    text = (tmp_path / "report.md").read_text()
    assert "| milestone (seconds after the fault) | regionshift | baseline |" in text
    assert "| detected | 16.2 | 17.0 |" in text
    assert "| settled | 21.0 |  |" in text and "| capacity ready |  | 78.5 |" in text
    assert "| stream starts lost (demanded minus served) | 1,000 | 12,500 |" in text
    assert "The baseline lost **12.5×** the stream starts regionshift lost" in text
    assert "| of which after the detection | 200 | 11,700 |" in text
    assert "from the detection on, the baseline lost **58.5×** what regionshift lost" in text
    assert "| us-east | 42.5 | 150 MiB | 1,234 | 321 | 200 |" in text
    assert (tmp_path / "report.png").stat().st_size > 0


def test_dns_failover_sends_the_failed_regions_users_to_the_others_by_their_weights() -> None:
    assert failover_shares(failed="us-west", dns_weights={"us-east": 100, "us-west": 100, "eu-west": 100}) == {
        "us-east": 0.5, "eu-west": 0.5}
    assert failover_shares(failed="a", dns_weights={"a": 100, "b": 300, "c": 100}) == {"b": 0.75, "c": 0.25}
    assert failover_shares(failed="a", dns_weights={"a": 100, "b": 0, "c": 50}) == {"c": 1.0}
    assert failover_shares(failed="a", dns_weights={"a": 100, "b": 0, "c": 0}) == {"b": 0.5, "c": 0.5}
    with pytest.raises(ValueError, match="no region but a"):
        failover_shares(failed="a", dns_weights={"a": 100})


def test_at_failover_a_savior_scales_each_deployment_by_its_share_of_the_failed_regions_replicas() -> None:
    current = {"svc-000": 4, "svc-001": 2}
    evacuated = {"svc-000": 3, "svc-001": 5}
    assert scale_at_failover(current=current, evacuated=evacuated, share=0.5) == {"svc-000": 6, "svc-001": 5}
    assert scale_at_failover(current=current, evacuated=evacuated, share=1.0) == {"svc-000": 7, "svc-001": 7}
    assert scale_at_failover(current=current, evacuated=evacuated, share=0.0) == current
    assert scale_at_failover(current=current, evacuated={}, share=0.5) == current
    assert scale_at_failover(current={"s": 1}, evacuated={"s": 4}, share=0.25) == {"s": 2}  # exact, not rounded up
    with pytest.raises(ValueError):
        scale_at_failover(current=current, evacuated=evacuated, share=1.5)


def test_the_ratio_of_stream_starts_lost() -> None:
    assert lost_ratio(baseline=12_000.0, regionshift=1_000.0) == 12.0
    assert lost_ratio(baseline=5.0, regionshift=0.0) == math.inf
    assert lost_ratio(baseline=0.0, regionshift=0.0) is None


def test_cpu_seconds_and_peak_rss_come_from_proc() -> None:
    # /proc/PID/stat: the command may hold spaces and parentheses; utime and stime are fields 14 and 15.
    stat = "4242 (python (x) y) S 1 4242 4242 0 -1 4194560 9000 0 0 0 1234 266 0 0 20 0 7 0 100 0 0"
    status = "Name:\tpython\nVmPeak:\t  900000 kB\nVmHWM:\t  153600 kB\nVmRSS:\t  100000 kB\n"
    cpu, peak = process_usage(stat=stat, status=status, clock_ticks=100)
    assert cpu == pytest.approx(15.0)
    assert peak == 150 * 2**20


def test_api_requests_count_each_request_once_and_writes_apart() -> None:
    def event(audit_id: str, verb: str, stage: str, at: str) -> str:
        return json.dumps({"auditID": audit_id, "verb": verb, "stage": stage, "requestReceivedTimestamp": at})

    lines = [
        event("a", "watch", "ResponseStarted", "2026-11-29T05:00:00.000000Z"),
        event("b", "get", "ResponseComplete", "2026-11-29T05:00:01.000000Z"),
        event("c", "patch", "ResponseComplete", "2026-11-29T05:00:02.000000Z"),
        event("a", "watch", "ResponseComplete", "2026-11-29T05:00:00.000000Z"),
        event("d", "create", "ResponseComplete", "2026-11-29T05:00:10.000000Z"),
        "",
    ]
    assert api_requests(lines) == (4, 2)
    since = drill._epoch("2026-11-29T05:00:01Z")
    until = drill._epoch("2026-11-29T05:00:05Z")
    assert api_requests(lines, since=since, until=until) == (2, 1)


def test_the_replicas_query_hands_each_deployment_its_regions_series() -> None:
    query = drill.REPLICAS_QUERY.replace("{region}", "us-east").replace("{deployment}", "svc-007")
    assert query == 'label_replace(regionshift_drill_replicas{region="us-east"}, "deployment", "svc-007", "", "")'


def test_a_region_failover_for_500_services_splits_the_routes_over_providers_of_128() -> None:
    services = [f"svc-{i:03d}" for i in range(500)]
    manifest = region_failover(DrillConfig(services=500), region="us-east", gateways=GATEWAYS,
                               prometheus_url="http://127.0.0.1:9090", services=services)
    spec = RegionFailoverSpec.model_validate(manifest["spec"])
    kinds = [(getattr(t.kind, "value", t.kind), len(t.routes)) for t in spec.traffic]
    assert kinds == [("GatewayAPI", 128)] * 3 + [("GatewayAPI", 116)] + [("ExternalDNS", 128)] * 3 + [("ExternalDNS", 116)]
    assert sorted(r for t in spec.traffic if t.kind == "GatewayAPI" for r in t.routes) == services
    assert len(traffic_providers([f"s{i}" for i in range(drill.MAX_SERVICES)])) == 8
    with pytest.raises(ValueError, match="at most 512 services"):
        traffic_providers([f"s{i}" for i in range(drill.MAX_SERVICES + 1)])


def test_a_dark_cluster_counts_as_warm_only_once_every_desired_dark_pod_is() -> None:
    items = [{"status": {"desiredReplicas": 3, "warmReplicas": 3}},
             {"status": {"desiredReplicas": 3, "warmReplicas": 1}},
             {"status": {"desiredReplicas": 0, "warmReplicas": 0}},
             {"status": {}}, {}]
    assert drill.warm_dark_clusters(items) == (2, 1)
    assert drill.warm_dark_clusters([]) == (0, 0)


def test_each_region_has_kwok_nodes_for_every_pod_a_drill_may_run() -> None:
    assert drill.nodes_for(20) == 2
    assert drill.nodes_for(100) == 4
    assert drill.nodes_for(500) == 16
    for services in (1, 20, 63, 100, 257, 500, 512):
        assert drill.nodes_for(services) * drill.PODS_PER_NODE >= services * drill.PODS_PER_SERVICE_BOUND


def test_a_step_may_take_longer_in_proportion_beyond_100_services() -> None:
    assert DrillConfig(services=20, timeout_seconds=900).step_timeout_seconds() == 900
    assert DrillConfig(services=100, timeout_seconds=900).step_timeout_seconds() == 900
    assert DrillConfig(services=500, timeout_seconds=900).step_timeout_seconds() == 4500


def test_new_pods_take_the_start_up_delay_through_the_local_clusters_annotation() -> None:
    assert DrillConfig(start_up_delay_seconds=60).pod_annotations() == {drill.SIMULATED_START: "60s"}
    assert DrillConfig(start_up_delay_seconds=2.5).pod_annotations() == {drill.SIMULATED_START: "2.5s"}
    assert DrillConfig(start_up_delay_seconds=0).pod_annotations() == {}
    template = deployment("svc-000", replicas=2, pod_annotations={drill.SIMULATED_START: "60s"})["spec"]["template"]
    assert template["metadata"] == {"labels": {"app": "svc-000"}, "annotations": {drill.SIMULATED_START: "60s"}}
    assert "annotations" not in deployment("svc-000", replicas=2)["spec"]["template"]["metadata"]


def test_the_fault_stages_match_only_pods_the_fault_marked() -> None:
    stages = {doc["metadata"]["name"]: doc for path in sorted(launcher.STAGES_DIR.glob("*.yaml"))
              for doc in yaml.safe_load_all(path.read_text()) if doc}
    fault, heal = stages["pod-simulated-fault"], stages["pod-simulated-fault-heal"]
    annotation = f'.metadata.annotations["{drill.SIMULATED_FAULT}"]'
    assert {"key": annotation, "operator": "Exists"} in fault["spec"]["selector"]["matchExpressions"]
    heal_selector = heal["spec"]["selector"]["matchExpressions"]
    assert {"key": annotation, "operator": "DoesNotExist"} in heal_selector
    assert any(e.get("values") == ["SimulatedFault"] for e in heal_selector)
    assert "SimulatedFault" in fault["spec"]["next"]["patches"][0]["template"]
    assert {"pod-ready", "pod-readiness-gates", "pod-complete", "pod-delete"} <= set(stages)
